"""The `.env` file of secrets: KEY=VALUE lines. Messages never quote a value."""

from __future__ import annotations

import re

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from .errors import UploadError

_DOTENV_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTENV_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\"}
# Why each key cannot be set (lazy: translated into the active language when a message is built).
_JOB_FOLDER = gettext_lazy("the platform sets it to the job's own folder")
# The launcher starts bubblewrap (as root, on a worker running as root) with the job's
# variables, before the sandbox exists: a variable that changes how a program loads its
# libraries or where it writes is one the platform's own programs must never see.
_BEFORE_THE_SANDBOX = gettext_lazy(
    "the C library reads it in the platform's programs that start the sandbox, before it exists"
)
_RESERVED_KEYS = {
    "PATH": gettext_lazy("the runner needs the platform's PATH to find its tools"),
    "HOME": _JOB_FOLDER,
    "TMPDIR": _JOB_FOLDER,
    "LD_PRELOAD": gettext_lazy("it would load a library into the interpreter before the model runs"),
    "LD_LIBRARY_PATH": gettext_lazy("it would change which native libraries the interpreter loads"),
    "LD_AUDIT": gettext_lazy("it would load a library into the interpreter before the model runs"),
    "inputFileName": gettext_lazy("the platform sets it for each async execution"),
    # The rest of glibc's list of variables it keeps from privileged programs (UNSECURE_ENVVARS).
    **dict.fromkeys(
        (
            "GCONV_PATH",
            "GETCONF_DIR",
            "GLIBC_TUNABLES",
            "HOSTALIASES",
            "LOCALDOMAIN",
            "LOCPATH",
            "MALLOC_TRACE",
            "NIS_PATH",
            "NLSPATH",
            "RESOLV_HOST_CONF",
            "RES_OPTIONS",
            "TZDIR",
        ),
        _BEFORE_THE_SANDBOX,
    ),
}
_RESERVED_PREFIXES = {
    "PYTHON": gettext_lazy(
        "PYTHON* variables change how the interpreter starts (PYTHONPATH, PYTHONHOME, ...)"
    ),
    "LD_": gettext_lazy(
        "LD_* variables change how programs load their libraries (LD_DEBUG_OUTPUT writes files), "
        "in the platform's programs that start the sandbox too"
    ),
    "NEOMARIL_": gettext_lazy("NEOMARIL_* variables are reserved for the platform"),
}
# Line breaks are these three only: str.splitlines() also breaks at \f, \v, \x1c-\x1e,
# \x85, \u2028 and \u2029, which would cut a secret holding one and read its rest as a line.
# Linux's limit on one NAME=value string of a process environment (MAX_ARG_STRLEN, 128
# KiB with its closing NUL).
MAX_VARIABLE_BYTES = 32 * 4096 - 1
_LINE_BREAK_RE = re.compile(r"\r\n|\r|\n")
# python-dotenv's interpolation: ${NAME} and ${NAME:-default}, in unquoted and
# double-quoted values.
_VARIABLE_RE = re.compile(r"\$\{(?P<name>[^}:]*)(?::-(?P<default>[^}]*))?\}")


def parse_dotenv(text: str, *, field: str = "env") -> dict[str, str]:
    """Parse a .env file into a dict; the last assignment of a key wins.

    Supports `KEY=VALUE`, `export KEY=VALUE`, `#` comments, single quotes (literal),
    double quotes (\\n \\t \\r \\" \\\\ escapes; may span lines) and unquoted values with a
    trailing ` # comment`; unquoted and double-quoted values expand `${NAME}` and
    `${NAME:-default}` from the lines above. Error messages carry line numbers and key
    names but never a value: values are secrets.
    """
    lines = _LINE_BREAK_RE.split(text.removeprefix("\ufeff"))
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
                field,
                _("Line %(line)s: expected KEY=VALUE; the line has no '=' (its content is not shown).")
                % {"line": lineno},
            )
        _check_dotenv_key(key, lineno, field=field)
        rest = rest.lstrip()
        if rest[:1] in ("'", '"'):
            value, i = _quoted_dotenv_value(rest, lines, i, lineno, field=field)
        else:
            value = re.sub(r"\s+#.*$", "", rest).strip()
        if rest[:1] != "'":
            value = _expand_variables(value, values, lineno, key, field=field)
        if "\x00" in value:
            # The process environment cannot hold it: the model would fail at every start.
            raise UploadError(
                field,
                _(
                    "Line %(line)s: the value of %(key)s contains a NUL byte, which an environment "
                    "variable cannot hold; remove it."
                )
                % {"line": lineno, "key": key},
            )
        size = len(f"{key}={value}".encode("utf-8", "surrogatepass"))
        if size > MAX_VARIABLE_BYTES:
            # Linux refuses to start a process holding it (E2BIG): the build would fail
            # saying the interpreter could not start.
            raise UploadError(
                field,
                _(
                    "Line %(line)s: %(key)s is %(size)s bytes with its name; a process environment "
                    "holds at most %(limit)s bytes per variable. Shorten the value."
                )
                % {"line": lineno, "key": key, "size": size, "limit": MAX_VARIABLE_BYTES},
            )
        values[key] = value
    return values


def _expand_variables(value: str, earlier: dict[str, str], lineno: int, key: str, *, field: str) -> str:
    """Replace ${NAME} and ${NAME:-default} with the values of the lines above.

    Only the file's own variables: python-dotenv would also read the environment of the
    process, which here is the platform's own (its keys and database URL).
    """

    def substitute(match: re.Match) -> str:
        if match["name"] in earlier:
            return earlier[match["name"]]
        if match["default"] is not None:
            return match["default"]
        raise UploadError(
            field,
            # Translators: ${...} and ${NAME:-default} are written as is in a .env file.
            _(
                "Line %(line)s: the value of %(key)s uses a ${...} variable that no line above sets "
                "(a model's .env sees only its own variables). Set it on an earlier line, give a "
                "default as ${NAME:-default}, or put the value in single quotes to keep ${...} as written."
            )
            % {"line": lineno, "key": key},
        )

    return _VARIABLE_RE.sub(substitute, value) if "${" in value else value


def _check_dotenv_key(key: str, lineno: int, *, field: str) -> None:
    if not key:
        raise UploadError(
            field, _("Line %(line)s: the variable name before '=' is empty.") % {"line": lineno}
        )
    if not _DOTENV_KEY_RE.match(key):
        # Describe the problem without echoing the text: a pasted secret may sit there.
        if key[0].isdigit():
            what = _("starts with a digit")
        else:
            bad = next(c for c in key if not (c.isascii() and (c.isalnum() or c == "_")))
            if bad.isprintable() and not bad.isspace():
                what = _("contains %(character)s") % {"character": repr(bad)}
            elif bad.isspace():
                what = _("contains a space")
            else:  # a control character: its code, since it has no glyph to show
                what = _("contains the control character %(code)s") % {"code": f"U+{ord(bad):04X}"}
        raise UploadError(
            field,
            _(
                # Translators: %(problem)s is "starts with a digit", "contains 'x'" or
                # "contains a space".
                "Line %(line)s: the variable name %(problem)s; names must start with a letter or _ and "
                "contain only letters, digits and _."
            )
            % {"line": lineno, "problem": what},
        )
    why = _RESERVED_KEYS.get(key)
    if why is None:
        why = next((reason for prefix, reason in _RESERVED_PREFIXES.items() if key.startswith(prefix)), None)
    if why is not None:
        raise UploadError(
            field,
            # Translators: %(key)s is a variable name (PATH); %(reason)s says why it cannot be set.
            _("Line %(line)s: %(key)s cannot be set from .env: %(reason)s.")
            % {"line": lineno, "key": key, "reason": why},
        )


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
                        _(
                            "Line %(line)s: unexpected text after the closing quote; put a comment "
                            "after '#' or remove it."
                        )
                        % {"line": lineno},
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
                _(
                    "Line %(line)s: the value opened with %(quote)s is never closed; "
                    "add the closing %(quote)s."
                )
                % {"line": lineno, "quote": quote},
            )
        out.append("\n")
        buffer = lines[i]
        i += 1
