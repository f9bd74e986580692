"""Checks of the user's plain arguments — tokens, timeouts, numbers — before anything is sent.

Without them a wrong value surfaces deep inside requests or urllib3 as a ValueError or an
InvalidHeader, and the header checks of requests quote the header's value: the token. Here
it is an InputError naming the argument and the fix, and a token never appears in it.
"""

from __future__ import annotations

import math
import operator
from typing import Any, Optional, Tuple, Union

from neomaril_codex.exceptions import InputError

Timeout = Union[float, Tuple[Optional[float], Optional[float]]]


def _token_problem(token: str) -> Optional[str]:
    """Why `token` (already stripped) cannot be sent in an HTTP header, or None.

    Names the kind of character and its position, never the character: it is part of a secret.
    """
    for position, char in enumerate(token, 1):
        if char.isspace():
            kind = "a line break" if char in "\r\n\x0b\x0c\x85\u2028\u2029" else "a space or a tab"
        elif not char.isprintable():
            kind = "a control character"
        elif ord(char) > 255:  # requests sends header values as Latin-1
            kind = "a character that is not Latin-1"
        else:
            continue
        return f"{kind} at character {position} of {len(token)}"
    return None


def sendable_token(value: Optional[str], source: str) -> Optional[str]:
    """`value` without the whitespace around it (a token read from a file keeps its newline),
    or None when it is missing or blank.

    Args:
        value: the token as given.
        source: where it came from, for the message: ``"group_token="``, ``"NEOMARIL_TOKEN"``…

    Raises:
        InputError: the token has whitespace or control characters inside it, or characters
            an HTTP header cannot carry. The message never contains the token.
    """
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"The token from {source} must be a string, got {type(value).__name__}.")
    token = value.strip()
    if not token:
        return None
    problem = _token_problem(token)
    if problem:
        raise InputError(
            f"The token from {source} has {problem}, so it cannot be sent in an HTTP header. "
            "A token is one word of letters, digits, '-' and '_': copy it again."
        )
    return token


def first_token(*candidates: Tuple[Optional[str], str]) -> Optional[str]:
    """The first of `candidates`, ``(value, source)`` pairs in order of precedence, that is
    not blank, checked by :func:`sendable_token`; None when all are."""
    for value, source in candidates:
        token = sendable_token(value, source)
        if token:
            return token
    return None


def _seconds(value: Any) -> Optional[float]:
    """`value` as a positive, finite number of seconds, or None when it is not one."""
    if isinstance(value, (bool, str, bytes)):
        return None
    try:
        seconds = float(value)
    except (TypeError, ValueError):
        return None
    return seconds if math.isfinite(seconds) and seconds > 0 else None


def checked_timeout(argument: str, value: Any) -> Timeout:
    """`value` if it is a timeout requests takes: seconds (a positive number), or a
    ``(connect, read)`` pair of them (None in it: no limit on that part).

    Raises:
        InputError: anything else (a string, zero, a negative number, a list…).
    """
    if isinstance(value, tuple) and len(value) == 2:
        if all(part is None or _seconds(part) is not None for part in value):
            return value
    elif _seconds(value) is not None:
        return value
    raise InputError(
        f"{argument} must be a positive number of seconds (or a (connect, read) pair of them), got {value!r}."
    )


def whole_number(argument: str, value: Any) -> int:
    """`value` as an int: an int, a whole float (``5.0``) or a string of one (``"5"``).

    Raises:
        InputError: anything else (``"abc"``, ``5.5``, None…).
    """
    if not isinstance(value, bool):
        if isinstance(value, str):
            try:
                return int(value.strip())
            except ValueError:
                pass
        elif isinstance(value, float):
            if value.is_integer():
                return int(value)
        else:
            try:
                return operator.index(value)  # int, numpy integers
            except TypeError:
                pass
    raise InputError(f"{argument} must be a whole number, e.g. 5; got {value!r}.")
