"""The `.env` file of secrets: KEY=VALUE lines. Messages never quote a value."""

from __future__ import annotations

import re

from .errors import UploadError

_DOTENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTENV_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
_RESERVED_KEYS = {
    "PATH": "the runner needs the platform's PATH to find its tools",
    "LD_PRELOAD": "it would load a library into the interpreter before the model runs",
    "LD_LIBRARY_PATH": "it would change which native libraries the interpreter loads",
    "LD_AUDIT": "it would load a library into the interpreter before the model runs",
    "inputFileName": "the platform sets it for each async execution",
}
_RESERVED_PREFIXES = {
    "PYTHON": "PYTHON* variables change how the interpreter starts (PYTHONPATH, PYTHONHOME, ...)",
    "NEOMARIL_": "NEOMARIL_* variables are reserved for the platform",
}


def parse_dotenv(text: str, *, field: str = "env") -> dict[str, str]:
    """Parse a .env file into a dict; the last assignment of a key wins.

    Supports `KEY=VALUE`, `export KEY=VALUE`, `#` comments, single quotes (literal),
    double quotes (\\n \\t \\r \\" \\\\ escapes; may span lines) and unquoted values with a
    trailing ` # comment`. Error messages carry line numbers and key names but never a
    value: values are secrets.
    """
    lines = text.removeprefix("\ufeff").splitlines()
    values: dict[str, str] = {}
    i = 0
    while i < len(lines):
        lineno = i + 1
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        if line.startswith("export") and line[6:7] in (" ", "\t"):
            line = line[6:].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep:
            raise UploadError(
                field, f"Line {lineno}: expected KEY=VALUE; the line has no '=' (its content is not shown)."
            )
        _check_dotenv_key(key, lineno, field=field)
        rest = rest.lstrip()
        if rest[:1] in ("'", '"'):
            value, i = _quoted_dotenv_value(rest, lines, i, lineno, field=field)
        else:
            value = re.sub(r"\s+#.*$", "", rest).strip()
        values[key] = value
    return values


def _check_dotenv_key(key: str, lineno: int, *, field: str) -> None:
    if not key:
        raise UploadError(field, f"Line {lineno}: the variable name before '=' is empty.")
    if not _DOTENV_KEY_RE.match(key):
        # Describe the problem without echoing the text: a pasted secret may sit there.
        if key[0].isdigit():
            what = "starts with a digit"
        else:
            bad = next(c for c in key if not (c.isascii() and (c.isalnum() or c == "_")))
            what = f"contains {bad!r}" if bad.isprintable() and not bad.isspace() else "contains a space"
        raise UploadError(
            field,
            f"Line {lineno}: the variable name {what}; names must start with a letter or _ and "
            "contain only letters, digits and _.",
        )
    if key in _RESERVED_KEYS:
        raise UploadError(field, f"Line {lineno}: {key} cannot be set from .env: {_RESERVED_KEYS[key]}.")
    for prefix, why in _RESERVED_PREFIXES.items():
        if key.startswith(prefix):
            raise UploadError(field, f"Line {lineno}: {key} cannot be set from .env: {why}.")


def _quoted_dotenv_value(rest: str, lines: list[str], i: int, lineno: int, *, field: str) -> tuple[str, int]:
    """Read a quoted value starting at `rest`, continuing onto following lines if needed.

    Returns the value and the index of the next unread line.
    """
    quote = rest[0]
    buffer = rest[1:]
    out: list[str] = []
    while True:
        pos = 0
        while pos < len(buffer):
            char = buffer[pos]
            if char == quote:
                trailer = buffer[pos + 1 :].strip()
                if trailer and not trailer.startswith("#"):
                    raise UploadError(
                        field,
                        f"Line {lineno}: unexpected text after the closing quote; put a comment "
                        "after '#' or remove it.",
                    )
                return "".join(out), i
            if quote == '"' and char == "\\" and pos + 1 < len(buffer):
                nxt = buffer[pos + 1]
                out.append(_DOTENV_ESCAPES.get(nxt, "\\" + nxt))
                pos += 2
                continue
            out.append(char)
            pos += 1
        if i >= len(lines):
            raise UploadError(
                field,
                f"Line {lineno}: the value opened with {quote} is never closed; add the closing {quote}.",
            )
        out.append("\n")
        buffer = lines[i]
        i += 1
