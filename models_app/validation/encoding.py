"""Uploaded text files, decoded the way the program that reads them would decode them.

Windows writes UTF-16 with a byte-order mark (PowerShell 5's `pip freeze >
requirements.txt`, `Set-Content .env`), JSON may be UTF-16 or UTF-32, and a Python script
may declare its encoding in a coding line (PEP 263). pip, `json.loads` and Python read
those, so the upload reads them too, in one place: `decode_upload`. What none of them
would read is refused with a message that says how to save the file instead.
"""

from __future__ import annotations

import codecs
import io
import json
import re
import tokenize
from typing import Literal

from django.utils.translation import gettext as _

from .errors import UploadError

# "text": a .env (UTF-8 unless a BOM says otherwise); "requirements": as pip reads
# requirements.txt; "json": as json.loads reads bytes; "python": as Python imports a script.
TextKind = Literal["text", "requirements", "json", "python"]

# UTF-32 first: the UTF-16 LE mark is the start of the UTF-32 LE one (pip's order).
_BOMS = (
    (codecs.BOM_UTF8, "utf-8", "UTF-8"),
    (codecs.BOM_UTF32_BE, "utf-32-be", "UTF-32 BE"),
    (codecs.BOM_UTF32_LE, "utf-32-le", "UTF-32 LE"),
    (codecs.BOM_UTF16_BE, "utf-16-be", "UTF-16 BE"),
    (codecs.BOM_UTF16_LE, "utf-16-le", "UTF-16 LE"),
)
# pip's rule for requirements files: a coding comment on one of the first two lines.
_PIP_CODING_RE = re.compile(rb"coding[:=]\s*([-\w.]+)")


def decode_upload(data: bytes, kind: TextKind, *, field: str, name: str) -> str:
    """The text of an uploaded file, or UploadError(field) saying why it cannot be read.

    A byte-order mark decides the encoding (and is dropped); then, by kind, a coding line
    (Python, pip) or json's detection of BOM-less UTF-16/32; else UTF-8. A Python script
    in UTF-16/32 is refused: Python cannot import it.
    """
    codec, declared, body = _encoding(data, kind, field=field, name=name)
    if declared is None and kind != "json" and b"\x00" in body:
        raise UploadError(
            field,
            _(
                "'%(name)s' contains a NUL byte (line %(line)s) and does not start with a "
                "byte-order mark: it is not text, or it is UTF-16 or UTF-32 text saved without "
                "one. Save it as UTF-8 and upload it again."
            )
            % {"name": name, "line": body[: body.index(b"\x00")].count(b"\n") + 1},
        )
    try:
        return body.decode(codec)
    except UnicodeDecodeError as exc:
        line = body[: exc.start].decode(codec, errors="replace").count("\n") + 1
        if declared is not None:
            message = _(
                "'%(name)s' declares the encoding %(encoding)s (by its byte-order mark or a "
                "coding line), but line %(line)s is not valid %(encoding)s. Save it as UTF-8 and "
                "upload it again."
            )
        elif kind == "python":
            message = _(
                "'%(name)s' is not UTF-8 text (line %(line)s) and declares no other encoding, so "
                "Python could not import it. Save it as UTF-8, or declare its encoding on its "
                "first or second line, e.g. # -*- coding: latin-1 -*-"
            )
        else:
            message = _("'%(name)s' is not UTF-8 text (line %(line)s). Save it as UTF-8 and upload it again.")
        raise UploadError(field, message % {"name": name, "encoding": declared, "line": line}) from None


def _encoding(data: bytes, kind: TextKind, *, field: str, name: str) -> tuple[str, str | None, bytes]:
    """(codec, the encoding the file declares or None for plain UTF-8, the bytes to decode)."""
    for bom, codec, shown in _BOMS:
        if not data.startswith(bom):
            continue
        if kind != "python":
            return codec, shown if codec != "utf-8" else None, data[len(bom) :]
        if codec != "utf-8":  # Python's own reading (below) would call it a syntax error
            raise UploadError(
                field,
                _(
                    "'%(name)s' is %(encoding)s text, which Python cannot import: it reads a "
                    "script as UTF-8, or in the encoding its coding line declares. Save it as "
                    "UTF-8 and upload it again."
                )
                % {"name": name, "encoding": shown},
            )
    if kind == "json":
        # Also BOM-less UTF-16/32, told apart by where the NUL bytes fall.
        codec = json.detect_encoding(data)
        return codec, codec.upper() if codec != "utf-8" else None, data
    if kind == "python":
        try:
            codec, _lines = tokenize.detect_encoding(io.BytesIO(data).readline)
        except SyntaxError as exc:
            if exc.msg.startswith("invalid or missing encoding declaration"):
                return "utf-8", None, data  # not UTF-8 in its first lines: decoding says where
            raise _unusable_coding_line(field, name, exc.msg) from None
        # utf-8-sig: a UTF-8 BOM, which Python skips.
        return codec, codec if codec not in ("utf-8", "utf-8-sig") else None, data
    if kind == "requirements" and not _is_utf8(data):
        # pip honours a coding comment. Looked for only in a file that is not UTF-8, so a
        # comment that happens to read "coding: ..." never refuses a file accepted before.
        for line in data.split(b"\n")[:2]:
            found = _PIP_CODING_RE.search(line) if line.startswith(b"#") else None
            if found:
                declared = found.group(1).decode("ascii")
                try:
                    return codecs.lookup(declared).name, declared, data
                except LookupError:
                    raise _unusable_coding_line(field, name, f"unknown encoding: {declared}") from None
    return "utf-8", None, data


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _unusable_coding_line(field: str, name: str, error: str) -> UploadError:
    return UploadError(
        field,
        _(
            # Translators: %(error)s is Python's own (English) description, e.g. "unknown encoding: latin-9".
            "'%(name)s' has a coding line that cannot be used (%(error)s). Correct it, or remove "
            "it and save the file as UTF-8."
        )
        % {"name": name, "error": error},
    )
