"""Typed readers for environment variables.

Every setting comes from the environment through one of these helpers, so a bad
value fails at start-up with the variable's name instead of misbehaving later.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import stat
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _raw(name: str) -> str | None:
    value = os.environ.get(name)
    return None if value is None else value.strip()


def envstr(name: str, default: str | None = None) -> str | None:
    value = _raw(name)
    return default if value is None or value == "" else value


def envchoice(name: str, default: str, choices: list[str]) -> str:
    """One of `choices` (compared ignoring case, answered as written in `choices`)."""
    value = _raw(name)
    if value is None or value == "":
        return default
    for choice in choices:
        if value.lower() == choice.lower():
            return choice
    raise ImproperlyConfigured(f"{name}={value!r} is not one of: {', '.join(choices)}.")


def envbool(name: str, default: bool = False) -> bool:
    value = _raw(name)
    if value is None:
        return default
    lowered = value.lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use 1/0, true/false, yes/no or on/off.")


def envint(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    value = _raw(name)
    if value is None or value == "":
        return default
    try:
        number = int(value.replace("_", ""))
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not a whole number.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}.")
    if maximum is not None and number > maximum:
        raise ImproperlyConfigured(f"{name}={number} is above the maximum of {maximum}.")
    return number


def envlist(name: str, default: list[str] | None = None) -> list[str]:
    value = _raw(name)
    if value is None or value == "":
        return list(default or [])
    return [item.strip() for item in value.split(",") if item.strip()]


def envnetworks(name: str, default: list[str] | None = None) -> list[str]:
    """Comma-separated IP addresses or networks (``10.0.0.0/8``), normalised.

    Unset or empty: `default` (none unless given); ``none``: no network at all.
    """
    value = _raw(name)
    if value is not None and value.lower() == "none":
        return []
    networks = []
    for item in envlist(name, default):
        try:
            networks.append(str(ipaddress.ip_network(item, strict=False)))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name}: {item!r} is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)."
            ) from None
    return networks


def envpath(name: str, default: Path) -> Path:
    """An absolute path; relative values are taken from the working directory."""
    value = _raw(name)
    path = Path(value).expanduser() if value else default
    path = path.resolve()
    if path.exists() and not path.is_dir():
        raise ImproperlyConfigured(f"{name}={str(path)!r} exists and is not a directory.")
    return path


def closed_folder(path: Path) -> Path:
    """`path`, made if missing, closed to other local users: mode 0700 when this user owns
    it (made so when it was not). The data and node folders hold the database, the keys,
    every group's files and results; the sandboxes see only what is bind-mounted into them."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):
        info = path.stat()
        if info.st_uid == os.geteuid() and info.st_mode & 0o077:
            path.chmod(0o700)
    return path


def private_folder(path: Path, why: str) -> Path:
    """`path`, made if missing, as this user's own folder (mode 0700, not a link).

    For a folder of sockets in a place every local user can write (/tmp): one that
    someone else made first could have its sockets replaced by theirs."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=0o700)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o077:
        raise ImproperlyConfigured(
            f"{path} ({why}) is not this user's private folder (a folder of mode 0700 owned by uid "
            f"{os.geteuid()}, not a link): someone else may have made it. Remove it, or set "
            "NEOMARIL_NODE_DIR to a shorter path."
        )
    return path
