"""requirements.txt: what may be installed into a model's environment, and its content address.

The parser keeps the build to published packages and the network (no editables, includes
or local paths); the fingerprint names the environment those lines and a Python build.
"""

from __future__ import annotations

import hashlib
import json
import re
from urllib.parse import urlsplit

from django.utils.translation import gettext as _
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from .errors import UploadError
from .filenames import is_windows_path

# pip's own rule: `#` starts a comment at the start of a line or after whitespace, so
# URL fragments such as `...whl#sha256=...` survive.
_COMMENT_RE = re.compile(r"(^|\s+)#.*$")
_DIRECT_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*@")
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".tgz", ".tar.bz2", ".zip")
# A digest of the length its algorithm gives: a shorter one was accepted here and failed
# the build later ("Invalid hash digest length").
_HASH_RE = re.compile(r"^(?:sha256:[0-9a-fA-F]{64}|sha384:[0-9a-fA-F]{96}|sha512:[0-9a-fA-F]{128})$")
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
    canonicalised, plus any `--hash=` options. Index options and `name @ URL` lines are
    kept only when `allow_options` is true (an admin's choice). Editables, includes and
    local paths are always refused: the build only has this one file and the network.
    """
    result: list[str] = []
    for lineno, line in _logical_lines(text):
        line = _COMMENT_RE.sub("", line).strip()
        if not line:
            continue
        if line.startswith("-"):
            result.append(_check_option_line(line, lineno, allow_options=allow_options, field=field))
        else:
            result.append(_canonical_requirement(line, lineno, allow_urls=allow_options, field=field))
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
        if allow_options:
            message = _(
                "Line %(line)s: editable installs (%(option)s) are not supported; the environment is built "
                "from published packages only. List the package by name (e.g. mypkg==1.2) or as "
                "`mypkg @ https://.../mypkg.whl`."
            )
        else:  # a `name @ URL` line would be refused too: advise what this installation takes
            message = _(
                "Line %(line)s: editable installs (%(option)s) are not supported; the environment is built "
                "from published packages only. Pin a version published on the package index (e.g. "
                "mypkg==1.2.3); an administrator can allow download URLs with "
                "NEOMARIL_ALLOW_REQUIREMENT_OPTIONS."
            )
        raise UploadError(field, message % {"line": lineno, "option": name})
    if name in _INCLUDE_OPTIONS:
        raise UploadError(
            field,
            _(
                "Line %(line)s: %(option)s includes another file, which the build does not have; copy the "
                "lines of that file into this requirements.txt instead."
            )
            % {"line": lineno, "option": name},
        )
    if not allow_options:
        raise UploadError(
            field,
            _(
                "Line %(line)s: pip options such as %(option)s are not allowed; packages are installed from "
                "the platform's configured package index. Remove the line, or ask an administrator if "
                "you need another index."
            )
            % {"line": lineno, "option": name},
        )
    if name not in _INDEX_OPTIONS:
        raise UploadError(
            field,
            _(
                # Translators: %(allowed)s is a list of pip options, e.g. --index-url, --no-index.
                "Line %(line)s: the option %(option)s is not supported; only index options "
                "(%(allowed)s) may appear in requirements.txt."
            )
            % {"line": lineno, "option": name, "allowed": ", ".join(sorted(_INDEX_OPTIONS))},
        )
    if name in _OPTIONS_WITH_LOCATION:
        value = line[len(name) :].lstrip(" =\t")
        if not value:
            raise UploadError(
                field, _("Line %(line)s: %(option)s needs a URL after it.") % {"line": lineno, "option": name}
            )
        if _is_local_location(value.split()[0]):
            raise UploadError(
                field,
                _(
                    "Line %(line)s: %(option)s points at a local path, which the build cannot see; "
                    "use an http(s) URL."
                )
                % {"line": lineno, "option": name},
            )
    return line


def _is_local_location(text: str) -> bool:
    lowered = text.lower()
    return (
        text.startswith((".", "/", "~", "\\"))
        or is_windows_path(text)
        or lowered.startswith("file:")
        or ("://" not in text and ("/" in text or "\\" in text or lowered.endswith(_ARCHIVE_SUFFIXES)))
    )


def _canonical_requirement(line: str, lineno: int, *, allow_urls: bool, field: str) -> str:
    # Per-requirement options start at the first token beginning with "-" (pip's rule);
    # only --hash is accepted, so hash-pinned files from pip-compile work.
    tokens = line.split()
    cut = next((i for i, tok in enumerate(tokens) if tok.startswith("-")), len(tokens))
    spec = " ".join(tokens[:cut])
    hashes = _parse_hash_options(tokens[cut:], lineno, field=field)

    if _is_local_location(spec) and not _DIRECT_REF_RE.match(spec):
        if allow_urls:
            message = _(
                "Line %(line)s: %(requirement)s is a local path, which the build cannot see. Publish the "
                "package to an index, or reference a downloadable file as `name @ https://...`."
            )
        else:  # `name @ https://...` would be refused too
            message = _(
                "Line %(line)s: %(requirement)s is a local path, which the build cannot see. Publish the "
                "package to the package index and pin its version (e.g. mypkg==1.2.3); an administrator "
                "can allow download URLs with NEOMARIL_ALLOW_REQUIREMENT_OPTIONS."
            )
        raise UploadError(field, message % {"line": lineno, "requirement": repr(spec)})
    if "://" in spec and not _DIRECT_REF_RE.match(spec):
        if allow_urls:
            message = _(
                "Line %(line)s: write a URL requirement as `name @ %(url)s` so the package name is known."
            )
        else:  # `name @ URL` would be refused too
            message = _(
                "Line %(line)s: %(url)s is downloaded from outside the package index. Pin a version "
                "published on the package index (e.g. mypkg==1.2.3); an administrator can allow "
                "download URLs with NEOMARIL_ALLOW_REQUIREMENT_OPTIONS."
            )
        raise UploadError(field, message % {"line": lineno, "url": spec})
    try:
        req = Requirement(spec)
    except InvalidRequirement as exc:
        reason = str(exc).splitlines()[0]
        raise UploadError(
            field,
            _(
                # Translators: %(reason)s is the (English) explanation of the requirement parser.
                "Line %(line)s: %(requirement)s is not a valid requirement (%(reason)s). "
                "Use the form name==1.2.3, name>=1.0 or name[extra]==1.2.3."
            )
            % {"line": lineno, "requirement": repr(spec), "reason": reason},
        ) from None
    if req.url is not None:
        scheme = urlsplit(req.url).scheme.lower()
        if scheme in ("", "file") or _is_local_location(req.url):
            if allow_urls:
                message = _(
                    "Line %(line)s: %(package)s points at a local file (%(url)s), which the build cannot "
                    "see; use an https:// URL or a published version."
                )
            else:  # e.g. a conda freeze's `numpy @ file:///...`; an https:// URL would be refused too
                message = _(
                    "Line %(line)s: %(package)s points at a local file (%(url)s), which the build cannot "
                    "see. Pin a version published on the package index (e.g. %(package)s==<version>); an "
                    "administrator can allow download URLs with NEOMARIL_ALLOW_REQUIREMENT_OPTIONS."
                )
            raise UploadError(field, message % {"line": lineno, "package": req.name, "url": req.url})
        if scheme not in _URL_SCHEMES:
            raise UploadError(
                field,
                _(
                    # Translators: %(allowed)s is a list of URL schemes, e.g. git+https, https.
                    "Line %(line)s: %(package)s uses an unsupported URL scheme %(scheme)s; "
                    "use one of %(allowed)s."
                )
                % {
                    "line": lineno,
                    "package": req.name,
                    "scheme": repr(scheme),
                    "allowed": ", ".join(sorted(_URL_SCHEMES)),
                },
            )
        if not allow_urls:
            # The worker would fetch any address a member names (the node's own network
            # included), from outside the configured index: the same admin switch as
            # --index-url decides.
            raise UploadError(
                field,
                _(
                    "Line %(line)s: %(package)s is downloaded from %(url)s, outside the package index; "
                    "publish it to the index, or ask an administrator to allow download URLs "
                    "(NEOMARIL_ALLOW_REQUIREMENT_OPTIONS)."
                )
                % {"line": lineno, "package": req.name, "url": req.url},
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
                _(
                    "Line %(line)s: the option %(option)s is not supported after a "
                    "requirement; only --hash=sha256:... is."
                )
                % {"line": lineno, "option": _option_name(word)},
            )
        if not _HASH_RE.match(value):
            raise UploadError(
                field,
                _("Line %(line)s: %(value)s is not a valid hash; use --hash=sha256:<hex digest>.")
                % {"line": lineno, "value": repr(value)},
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
