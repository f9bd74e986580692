"""Validation of the files an analyst uploads to create a model.

Everything here is a pure function over text: user code is parsed, never imported or
executed, and nothing reads Django settings. Each problem raises `UploadError` naming
the form/API field it belongs to and a message that says what is wrong and how to fix
it, so the API can return it as a 400 unchanged.
"""

from __future__ import annotations

import ast
import hashlib
import json
import keyword
import re
import unicodedata
from typing import Any
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name


class UploadError(Exception):
    """An uploaded file or field is unusable; `message` tells the user how to fix it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --------------------------------------------------------------------------- source


def check_source(
    text: str,
    entrypoint: str,
    *,
    field: str = "source",
    filename: str | None = None,
) -> None:
    """Check that `text` parses and defines `def <entrypoint>(a, b)` at module level.

    The runner calls the entrypoint with two positional arguments (sync: data and
    base_path; async: data_path and model_path), so the signature must accept exactly
    that. `filename` only makes the messages read better.
    """
    if not entrypoint or not entrypoint.isidentifier() or keyword.iskeyword(entrypoint):
        raise UploadError(
            "model_reference",
            f"{entrypoint!r} is not a valid Python function name; give the name of the function "
            "to call, e.g. score.",
        )

    label = filename or "The source file"
    # Python itself accepts a UTF-8 BOM at the start of a file, ast.parse on a str does not.
    text = text.removeprefix("\ufeff")
    try:
        tree = ast.parse(text, filename=filename or "<source>")
    except SyntaxError as exc:
        raise UploadError(field, f"{label} does not parse as Python: {_describe_syntax_error(exc)}") from None
    except (ValueError, RecursionError, MemoryError) as exc:
        # ValueError: NUL bytes (Python 3.11); the others: absurdly nested code.
        raise UploadError(field, f"{label} does not parse as Python: {exc}") from None

    # Only direct statements of the module body count: a def inside `if`/`try` may or may
    # not exist at import time, and the message says so.
    found: ast.stmt | None = None
    top_level_functions: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            top_level_functions.append(node.name)
        if _binds_name(node, entrypoint):
            found = node  # the last binding wins, as at import time

    if found is None:
        available = ", ".join(dict.fromkeys(top_level_functions)) or "none"
        raise UploadError(
            field,
            f"{label} has no top-level function named {entrypoint!r}. Define it with "
            f"`def {entrypoint}(data, base_path):` directly in the module body (not inside an if, "
            f"a class or another function), or set model_reference to the right name. "
            f"Top-level functions found: {available}.",
        )
    if isinstance(found, ast.AsyncFunctionDef):
        raise UploadError(
            field,
            f"{entrypoint!r} in {label} is an `async def`; the platform calls it synchronously, "
            f"so define it with a plain `def {entrypoint}(...)`.",
        )
    if not isinstance(found, ast.FunctionDef):
        how = {ast.ClassDef: "a class", ast.Import: "imported", ast.ImportFrom: "imported"}.get(
            type(found), "assigned"
        )
        raise UploadError(
            field,
            f"{entrypoint!r} in {label} is {how} (line {found.lineno}) rather than defined with def; "
            f"define it with `def {entrypoint}(data, base_path):` directly in the module body.",
        )
    problem = _two_positional_problem(found.args)
    if problem:
        raise UploadError(
            field,
            f"{entrypoint}() in {label} (line {found.lineno}) must accept exactly two positional "
            f"arguments, e.g. `def {entrypoint}(data, base_path):`, but {problem}.",
        )


def _describe_syntax_error(exc: SyntaxError) -> str:
    where = f" at line {exc.lineno}" if exc.lineno else ""
    offending = (exc.text or "").strip()
    return f"{exc.msg}{where}" + (f": {offending}" if offending else "")


def _binds_name(node: ast.stmt, name: str) -> bool:
    """True when a module-level statement binds `name` (def, class, assignment, import)."""
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return node.name == name
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign | ast.AugAssign):
        return isinstance(node.target, ast.Name) and node.target.id == name
    if isinstance(node, ast.Import | ast.ImportFrom):
        return any((alias.asname or alias.name.split(".")[0]) == name for alias in node.names)
    return False


def _two_positional_problem(args: ast.arguments) -> str | None:
    """Why `f(a, b)` would fail for this signature, or None when it works."""
    positional = len(args.posonlyargs) + len(args.args)
    required = positional - len(args.defaults)
    if required > 2:
        return f"it requires {required}"
    if positional < 2 and args.vararg is None:
        return f"it takes only {positional}"
    missing_kwonly = [a.arg for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d is None]
    if missing_kwonly:
        return "it also requires the keyword-only argument(s) " + ", ".join(missing_kwonly)
    return None


# --------------------------------------------------------------------------- schema

_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def parse_schema(text: str, *, require_object: bool, field: str = "schema") -> Any:
    """Parse the JSON example input; with `require_object`, it must be a JSON object."""

    def reject_constant(name: str) -> Any:
        # json.loads accepts NaN/Infinity, which are not JSON and break other clients.
        raise ValueError(f"{name} is not valid JSON")

    try:
        value = json.loads(text.removeprefix("\ufeff"), parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise UploadError(
            field,
            f"The schema is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}. "
            "Upload one example input as a JSON document.",
        ) from None
    except ValueError as exc:
        raise UploadError(
            field, f"The schema is not valid JSON: {exc}; use null or a number instead."
        ) from None
    except RecursionError:
        raise UploadError(field, "The schema is nested too deeply to be an example input.") from None
    if require_object and not isinstance(value, dict):
        got = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
        raise UploadError(
            field,
            f'The schema must be a JSON object such as {{"feature": 1.5}} (one example input), '
            f"but it is {got}.",
        )
    return value


# --------------------------------------------------------------------------- requirements

# pip's own rule: `#` starts a comment at the start of a line or after whitespace, so
# URL fragments such as `...whl#sha256=...` survive.
_COMMENT_RE = re.compile(r"(^|\s+)#.*$")
_DIRECT_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@")
_WINDOWS_PATH_RE = re.compile(r"^[A-Za-z]:[\\/]")
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".zip")
_HASH_RE = re.compile(r"^(sha256|sha384|sha512):[0-9a-fA-F]+$")
_URL_SCHEMES = {"https", "http", "git+https", "git+http"}

_EDITABLE_OPTIONS = {"-e", "--editable"}
_INCLUDE_OPTIONS = {"-r", "--requirement", "-c", "--constraint"}
# Options that only point at an index or tune how it is used; anything else (e.g.
# --global-option, --use-feature) changes how packages are built and is refused.
_INDEX_OPTIONS = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "--no-index",
    "-f",
    "--find-links",
    "--trusted-host",
    "--no-binary",
    "--only-binary",
}
_OPTIONS_WITH_LOCATION = {"-i", "--index-url", "--extra-index-url", "-f", "--find-links"}


def parse_requirements(text: str, *, allow_options: bool = False, field: str = "requirements") -> list[str]:
    """Parse requirements.txt into canonical lines, in file order.

    Requirement lines come back as `str(Requirement)` with the project name (and extras)
    canonicalised, plus any `--hash=` options. Index options are kept verbatim when
    `allow_options` is true. Editables, includes and local paths are always refused: the
    build only has this one file and the network.
    """
    result: list[str] = []
    for lineno, line in _logical_lines(text):
        line = _COMMENT_RE.sub("", line).strip()
        if not line:
            continue
        if line.startswith("-"):
            result.append(_check_option_line(line, lineno, allow_options=allow_options, field=field))
        else:
            result.append(_canonical_requirement(line, lineno, field=field))
    return result


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Join `\\` continuations like pip does, keeping the number of the first line."""
    joined: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, line in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
        # A full-line comment ending in a backslash does not continue (pip's rule).
        if line.endswith("\\") and not _COMMENT_RE.match(line):
            if not pending:
                start = number
            pending.append(line[:-1])
            continue
        if pending:
            pending.append(line)
            joined.append((start, "".join(pending)))
            pending = []
        else:
            joined.append((number, line))
    if pending:  # trailing backslash on the last line
        joined.append((start, "".join(pending)))
    return joined


def _option_name(token: str) -> str:
    if token.startswith("--"):
        return token.split("=", 1)[0]
    return token[:2]  # short options may be glued to their value: -e. / -rfile.txt


def _check_option_line(line: str, lineno: int, *, allow_options: bool, field: str) -> str:
    name = _option_name(line.split()[0])
    if name in _EDITABLE_OPTIONS:
        raise UploadError(
            field,
            f"Line {lineno}: editable installs ({name}) are not supported; the environment is built "
            "from published packages only. List the package by name (e.g. mypkg==1.2) or as "
            "`mypkg @ https://.../mypkg.whl`.",
        )
    if name in _INCLUDE_OPTIONS:
        raise UploadError(
            field,
            f"Line {lineno}: {name} includes another file, which the build does not have; copy the "
            "lines of that file into this requirements.txt instead.",
        )
    if not allow_options:
        raise UploadError(
            field,
            f"Line {lineno}: pip options such as {name} are not allowed; packages are installed from "
            "the platform's configured package index. Remove the line, or ask an administrator if "
            "you need another index.",
        )
    if name not in _INDEX_OPTIONS:
        raise UploadError(
            field,
            f"Line {lineno}: the option {name} is not supported; only index options "
            f"({', '.join(sorted(_INDEX_OPTIONS))}) may appear in requirements.txt.",
        )
    if name in _OPTIONS_WITH_LOCATION:
        value = line[len(name) :].lstrip(" =\t")
        if not value:
            raise UploadError(field, f"Line {lineno}: {name} needs a URL after it.")
        if _is_local_location(value.split()[0]):
            raise UploadError(
                field,
                f"Line {lineno}: {name} points at a local path, which the build cannot see; "
                "use an http(s) URL.",
            )
    return line


def _is_local_location(text: str) -> bool:
    lowered = text.lower()
    return (
        text.startswith((".", "/", "~", "\\"))
        or bool(_WINDOWS_PATH_RE.match(text))
        or lowered.startswith("file:")
        or ("://" not in text and ("/" in text or "\\" in text or lowered.endswith(_ARCHIVE_SUFFIXES)))
    )


def _canonical_requirement(line: str, lineno: int, *, field: str) -> str:
    # Per-requirement options start at the first token beginning with "-" (pip's rule);
    # only --hash is accepted, so hash-pinned files from pip-compile work.
    tokens = line.split()
    cut = next((i for i, tok in enumerate(tokens) if tok.startswith("-")), len(tokens))
    spec = " ".join(tokens[:cut])
    hashes = _parse_hash_options(tokens[cut:], lineno, field=field)

    if _is_local_location(spec) and not _DIRECT_REF_RE.match(spec):
        raise UploadError(
            field,
            f"Line {lineno}: {spec!r} is a local path, which the build cannot see. Publish the "
            "package to an index, or reference a downloadable file as `name @ https://...`.",
        )
    if "://" in spec and not _DIRECT_REF_RE.match(spec):
        raise UploadError(
            field,
            f"Line {lineno}: write a URL requirement as `name @ {spec}` so the package name is known.",
        )
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0]
        raise UploadError(
            field,
            f"Line {lineno}: {spec!r} is not a valid requirement ({reason}). "
            "Use the form name==1.2.3, name>=1.0 or name[extra]==1.2.3.",
        ) from None
    if req.url is not None:
        scheme = urlsplit(req.url).scheme.lower()
        if scheme in ("", "file") or _is_local_location(req.url):
            raise UploadError(
                field,
                f"Line {lineno}: {req.name} points at a local file ({req.url}), which the build cannot "
                "see; use an https:// URL or a published version.",
            )
        if scheme not in _URL_SCHEMES:
            raise UploadError(
                field,
                f"Line {lineno}: {req.name} uses an unsupported URL scheme {scheme!r}; use one of "
                f"{', '.join(sorted(_URL_SCHEMES))}.",
            )
    req.name = canonicalize_name(req.name)
    req.extras = {canonicalize_name(extra) for extra in req.extras}
    return " ".join([str(req), *(f"--hash={h}" for h in hashes)])


def _parse_hash_options(tokens: list[str], lineno: int, *, field: str) -> list[str]:
    hashes: list[str] = []
    i = 0
    while i < len(tokens):
        word = tokens[i]
        if word == "--hash" and i + 1 < len(tokens):
            value, i = tokens[i + 1], i + 2
        elif word.startswith("--hash="):
            value, i = word[len("--hash=") :], i + 1
        else:
            raise UploadError(
                field,
                f"Line {lineno}: the option {_option_name(word)} is not supported after a "
                "requirement; only --hash=sha256:... is.",
            )
        if not _HASH_RE.match(value):
            raise UploadError(
                field, f"Line {lineno}: {value!r} is not a valid hash; use --hash=sha256:<hex digest>."
            )
        hashes.append(value.lower())
    return hashes


def requirements_fingerprint(python_version: str, lines: list[str]) -> str:
    """Content address of an environment: sha256 of the full Python version + the requirement set.

    Lines are sorted and de-duplicated so the order of requirements.txt does not matter.
    """
    # A version tag lets a future change in how environments are built invalidate old ones.
    payload = json.dumps(
        {"layout": 1, "python": python_version, "requirements": sorted(set(lines))},
        separators=(",", ":"),
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


# --------------------------------------------------------------------------- file names

MAX_FILENAME_LENGTH = 128
# Bidirectional overrides let a name display as something else ("gpj.exe" → "exe.jpg").
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


def sanitize_filename(name: str, *, field: str) -> str:
    """Return the client-sent file name if it is a safe bare name, else raise UploadError.

    The name is NFC-normalised and stripped of surrounding whitespace. It must not be a
    path, be hidden (start with a dot; `.env` is allowed for the "env" field), contain
    control characters or exceed MAX_FILENAME_LENGTH characters.
    """
    clean = unicodedata.normalize("NFC", name or "").strip()
    if not clean:
        raise UploadError(field, "The file has no name; upload it with a file name such as app.py.")
    if "\x00" in clean:
        raise UploadError(field, "The file name contains a NUL byte; rename the file.")
    if "/" in clean or "\\" in clean or _WINDOWS_PATH_RE.match(clean):
        raise UploadError(
            field,
            f"The file name {clean!r} is a path; upload the file with a plain name such as app.py "
            "(no / or \\).",
        )
    if set(clean) == {"."}:
        raise UploadError(field, f"{clean!r} is not a file name; rename the file.")
    bad = next(
        (c for c in clean if unicodedata.category(c) == "Cc" or c in _BIDI_CONTROLS),
        None,
    )
    if bad is not None:
        raise UploadError(
            field, f"The file name contains the control character U+{ord(bad):04X}; rename the file."
        )
    if len(clean) > MAX_FILENAME_LENGTH:
        raise UploadError(
            field,
            f"The file name is {len(clean)} characters long; shorten it to at most {MAX_FILENAME_LENGTH}.",
        )
    if clean.startswith(".") and not (field == "env" and clean == ".env"):
        raise UploadError(field, f"The file name {clean!r} starts with a dot; rename it without the dot.")
    return clean


def check_unique_names(named: dict[str, list[str]]) -> None:
    """Reject two uploads that would be saved under the same name in the model folder.

    `named` maps each field to the (sanitised) names uploaded through it; names are
    compared case-insensitively because the model folder may live on a case-insensitive
    share and because `Model.pkl` next to `model.pkl` is a mistake anyway.
    """
    seen: dict[str, tuple[str, str]] = {}
    for field, names in named.items():
        for name in names:
            key = unicodedata.normalize("NFC", name).casefold()
            if key in seen:
                other_field, other_name = seen[key]
                where = f"the {other_field} field" if other_field != field else "the same field"
                raise UploadError(
                    field,
                    f"{name!r} ({field}) and {other_name!r} ({where}) would be saved under the same "
                    "name in the model folder; rename one of them.",
                )
            seen[key] = (field, name)


# --------------------------------------------------------------------------- .env

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
