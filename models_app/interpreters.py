"""Discovery of the Python interpreters available on this host.

Model environments are built on the Python version the analyst asks for, so the
platform needs to know which versions it can offer. Candidates come from PATH, pyenv,
uv-managed installs and configured extra folders; each one is *run* to learn its
version, because names and symlinks lie (pyenv shims, distro aliases).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from django.utils.functional import lazy
from django.utils.translation import gettext

# The runner is written for 3.8+; older interpreters exist on build hosts but must not be offered.
MIN_VERSION = (3, 8)
CACHE_SECONDS = 60.0
PROBE_TIMEOUT = 10.0

# Prints "3.9.18 cpython"; uses only what Python 2.7 also has so old interpreters answer
# cleanly (and are then filtered) instead of erroring. sys.implementation rather than the
# platform module, and no site (-S): a probe then takes ~15 ms instead of ~45.
_PROBE = (
    "import sys; print('%d.%d.%d %s' % (sys.version_info[:3]"
    " + (getattr(getattr(sys, 'implementation', None), 'name', 'cpython'),)))"
)
_PATH_NAME_RE = re.compile(r"^python3(\.\d+)?$")
_VERSION_RE = re.compile(r"^(\d+)\.(\d+)\.(\d+)$")
_REQUEST_RE = re.compile(r"^([0-9]{1,3})\.([0-9]{1,3})(?:\.([0-9]{1,3}))?$")  # ASCII: \d takes "٣"


@dataclass(frozen=True)
class Interpreter:
    """A real CPython executable on this host and its full version."""

    version: str  # full, e.g. "3.9.18"
    path: Path  # resolved executable, never a shim

    @property
    def minor(self) -> str:
        """The "3.9" part of the version."""
        major, minor, _ = self.version.split(".")
        return f"{major}.{minor}"

    @property
    def version_tuple(self) -> tuple[int, int, int]:
        """The version as integers, for sorting."""
        major, minor, patch = self.version.split(".")
        return int(major), int(minor), int(patch)


class InterpreterNotFound(Exception):
    """The requested Python version is malformed or not installed; the message lists what is."""


_cache: dict[tuple[object, ...], tuple[float, list[Interpreter]]] = {}
_cache_lock = threading.Lock()


def clear_cache() -> None:
    """Forget cached discovery results (for tests, or after installing a Python)."""
    with _cache_lock:
        _cache.clear()
        _probed.clear()


def discover_interpreters(
    extra_dirs: Sequence[str | Path] = (), *, uv_bin: str | None = None
) -> list[Interpreter]:
    """Return one interpreter per available minor version (the newest patch), sorted by version.

    Only CPython 3.8 and newer are kept. The result is cached for CACHE_SECONDS per
    combination of arguments, PATH and PYENV_ROOT.
    """
    key = (
        tuple(str(d) for d in extra_dirs),
        uv_bin,
        os.environ.get("PATH", ""),
        os.environ.get("PYENV_ROOT", ""),
    )
    now = time.monotonic()
    with _cache_lock:
        hit = _cache.get(key)
        if hit and now - hit[0] < CACHE_SECONDS:
            return list(hit[1])

    result = _discover(extra_dirs, uv_bin)
    with _cache_lock:
        _cache[key] = (time.monotonic(), result)
    return list(result)


def find_interpreter(requested: str, interpreters: list[Interpreter]) -> Interpreter:
    """Pick the interpreter for a requested version: "3.9" (newest 3.9) or "3.9.18" (exactly).

    Raises InterpreterNotFound with a message naming the available versions.
    """
    available = lazy(_available_text, str)(interpreters)  # words only a refusal needs
    match = _REQUEST_RE.match((requested or "").strip())
    if not match:
        raise InterpreterNotFound(
            gettext(
                "python_version must look like 3.9 (major.minor), got %(requested)s. Available: %(available)s."
            )
            % {"requested": repr(requested), "available": available}
        )
    major, minor, patch = match.groups()
    wanted_minor = f"{int(major)}.{int(minor)}"
    candidates = [i for i in interpreters if i.minor == wanted_minor]
    if patch is None:
        if candidates:
            return max(candidates, key=lambda i: i.version_tuple)
        raise InterpreterNotFound(
            gettext("Python %(version)s is not available on this host. Available: %(available)s.")
            % {"version": wanted_minor, "available": available}
        )
    wanted = f"{wanted_minor}.{int(patch)}"
    for interpreter in candidates:
        if interpreter.version == wanted:
            return interpreter
    if candidates:
        raise InterpreterNotFound(
            gettext(
                "Python %(version)s is not available on this host (it has %(patches)s; ask for %(minor)s). "
                "Available: %(available)s."
            )
            % {
                "version": wanted,
                "patches": ", ".join(i.version for i in candidates),
                "minor": wanted_minor,
                "available": available,
            }
        )
    raise InterpreterNotFound(
        gettext("Python %(version)s is not available on this host. Available: %(available)s.")
        % {"version": wanted, "available": available}
    )


def _available_text(interpreters: list[Interpreter]) -> str:
    minors = sorted({i.minor for i in interpreters}, key=lambda m: tuple(int(p) for p in m.split(".")))
    return ", ".join(minors) if minors else gettext("none (no CPython 3.8+ interpreter was found)")


# --------------------------------------------------------------------------- discovery


def _discover(extra_dirs: Sequence[str | Path], uv_bin: str | None) -> list[Interpreter]:
    candidates: dict[Path, None] = {}  # resolved path → insertion order = preference on ties
    for path in [*_from_path(), *_from_pyenv(), *_from_uv(uv_bin), *_from_extra_dirs(extra_dirs)]:
        resolved = _resolve_real(path)
        if resolved is not None:
            candidates.setdefault(resolved, None)

    # Each probe starts an interpreter (~20-100 ms); run them side by side, and only
    # for executables not probed before (every upload and build looks the version up).
    with ThreadPoolExecutor(max_workers=8) as pool:
        versions = list(pool.map(_known_version, candidates))

    best: dict[str, Interpreter] = {}
    for path, version in zip(candidates, versions, strict=True):
        if version is None:
            continue
        interpreter = Interpreter(version=version, path=path)
        if interpreter.version_tuple[:2] < MIN_VERSION:
            continue
        current = best.get(interpreter.minor)
        if current is None or interpreter.version_tuple > current.version_tuple:
            best[interpreter.minor] = interpreter
    return sorted(best.values(), key=lambda i: i.version_tuple)


def _from_path() -> list[Path]:
    found: list[Path] = []
    for entry in os.environ.get("PATH", "").split(os.pathsep):
        if not entry or _is_shim_dir(Path(entry)):
            continue
        found.extend(_pythons_in(Path(entry), _PATH_NAME_RE))
    return found


def _path_without_shims() -> str:
    """PATH for `uv python list`: uv runs every python* it finds on PATH to learn its
    version, and a pyenv shim is a bash script that starts pyenv (≈ 0.3 s each, 2 s with
    one shim per installed minor version). The shims' interpreters are found in pyenv's
    own folder anyway (_from_pyenv)."""
    entries = os.environ.get("PATH", "").split(os.pathsep)
    return os.pathsep.join(e for e in entries if e and not _is_shim_dir(Path(e)))


def _from_pyenv() -> list[Path]:
    root = Path(os.environ.get("PYENV_ROOT") or Path.home() / ".pyenv")
    try:
        return sorted(p for p in root.glob("versions/*/bin/python") if p.is_file())
    except OSError:
        return []


def _from_uv(uv_bin: str | None) -> list[Path]:
    """Interpreters uv knows about; any failure just means no extra candidates."""
    if uv_bin is None:
        try:
            from uv import find_uv_bin

            uv_bin = find_uv_bin()
        except (ImportError, FileNotFoundError):
            return []
    try:
        completed = subprocess.run(
            [uv_bin, "python", "list", "--only-installed", "--output-format", "json", "--no-config"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
            env={**os.environ, "PATH": _path_without_shims(), "UV_NO_PROGRESS": "1", "NO_COLOR": "1"},
        )
        entries = json.loads(completed.stdout) if completed.returncode == 0 else []
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    found: list[Path] = []
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or not entry.get("path"):
            continue
        # Free-threaded and debug builds need their own wheels; offer only the default build.
        if entry.get("variant") not in (None, "default") or entry.get("implementation") not in (
            None,
            "cpython",
        ):
            continue
        found.append(Path(entry["path"]))
    return found


def _from_extra_dirs(extra_dirs: Sequence[str | Path]) -> list[Path]:
    """Accept an executable, a folder of pythonX.Y executables, or a prefix with bin/."""
    found: list[Path] = []
    any_python = re.compile(r"^python(3(\.\d+)?)?$")
    for raw in extra_dirs:
        path = Path(raw).expanduser()
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(_pythons_in(path, any_python))
            found.extend(_pythons_in(path / "bin", any_python))
    return found


def _pythons_in(folder: Path, pattern: re.Pattern[str]) -> list[Path]:
    try:
        names = sorted(os.listdir(folder))
    except OSError:
        return []
    return [folder / name for name in names if pattern.match(name)]


def _is_shim_dir(folder: Path) -> bool:
    # pyenv, pyenv-virtualenv and asdf all call their wrapper folders "shims".
    return "shims" in folder.parts


def _resolve_real(path: Path) -> Path | None:
    """The resolved executable, or None when it is missing, not executable or a shim script."""
    try:
        resolved = path.resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not resolved.is_file() or not os.access(resolved, os.X_OK):
        return None
    if _is_shim_dir(path.parent) or _is_shim_dir(resolved.parent) or _is_shim_script(resolved):
        return None
    return resolved


def _is_shim_script(path: Path) -> bool:
    """A version manager's wrapper script: running it picks *some* Python, not this one."""
    try:
        with path.open("rb") as handle:
            head = handle.read(4096)
    except OSError:
        return True
    if not head.startswith(b"#!"):
        return False
    return b"pyenv" in head or b"asdf" in head or b"PYENV" in head


# Executable (path, device, inode, size, mtime) -> its version: the same file gives the
# same answer, so a new discovery (every CACHE_SECONDS) runs only new or changed ones.
_probed: dict[tuple[object, ...], str] = {}


def _known_version(path: Path) -> str | None:
    """The version of this executable, probed once per file (a replaced file is probed again).

    Failures are not remembered: a probe that timed out on a busy machine is tried again
    at the next discovery.
    """
    try:
        info = path.stat()
    except OSError:
        return None
    key = (path, info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns)
    with _cache_lock:
        if key in _probed:
            return _probed[key]
    version = _probe_version(path)
    if version is not None:
        with _cache_lock:
            _probed[key] = version
    return version


def _probe_version(path: Path) -> str | None:
    """Run the interpreter to learn its version; None for anything that is not CPython."""
    try:
        completed = subprocess.run(
            # -E -S: ignore PYTHON* variables and skip site (and with it user site-packages,
            # .pth files), which can break or slow start-up.
            [str(path), "-E", "-S", "-c", _PROBE],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if completed.returncode != 0:
        return None
    words = completed.stdout.strip().split()
    if not words or not _VERSION_RE.match(words[0]):
        return None
    implementation = words[1] if len(words) > 1 else "cpython"
    return words[0] if implementation.lower() == "cpython" else None
