"""Upload handling that enforces size limits while the body streams in, and notes the
file parts that never arrive.

Files are written to temporary files on disk as they arrive (never held whole in
memory). A file over the per-file limit is skipped and remembered so the view can
answer 400 naming it; a body over the total limit stops the upload.

Django's parser drops some file parts without a word: one cut off before its closing
boundary, one whose file name is not UTF-8, or is "." or "..". The handler keeps track
of them (`lost_parts`), so that a view can say why a file did not arrive instead of
asking for it as if nothing had been sent (`lost_part_message`). Every upload goes
through it: model uploads and versions (models_app), and Async inputs (executions,
with their own size limit). A body in which the boundary never occurs, which Django's
parser reads as an empty form, is refused as unreadable (NO_PARTS) on the way.
"""

from __future__ import annotations

import contextlib
import errno
import html
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from django import forms
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadhandler import SkipFile, StopUpload, TemporaryFileUploadHandler
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParser, MultiPartParserError
from django.utils.http import parse_header_parameters
from django.utils.translation import gettext_lazy

# What Django's parser raises for a body it cannot read (malformed, or over its field limits).
UNREADABLE_BODY = (MultiPartParserError, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)
# Django names the temporary file tmpXXXXXXXX.upload<the sent name's extension>. A longer
# extension than this is left off that name (the upload keeps its own name): with one of
# 250 bytes ("a." + 70 emoji) the name would be too long for the filesystem and the parser
# would fail (a 500) before the view could refuse the file name.
MAX_TEMPORARY_EXTENSION_BYTES = 32
# A part's headers are a few hundred bytes; longer ones are not kept (nor reported).
_MAX_HEADER_BYTES = 16 * 1024
_MAX_KEPT_PARTS = 100


NO_PARTS = (
    "The multipart body has no parts: its boundary '{boundary}' (from the Content-Type) does not "
    "occur in it. Send the fields as multipart/form-data parts (curl -F name=value), or a JSON body."
)


def unreadable_body(exc: Exception) -> str:
    """The API's message (400) for a body Django's parser refused (one of UNREADABLE_BODY)."""
    return f"The request body could not be read: {exc}"


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"


# A full disk is the server's condition, not the request's fault: answered 507.
OUT_OF_SPACE_ERRORS = (errno.ENOSPC, errno.EDQUOT)


def free_bytes(folder) -> int:
    """Bytes an unprivileged process may still write on `folder`'s file system."""
    stats = os.statvfs(folder)
    return stats.f_bavail * stats.f_frsize


# What any entry costs its file system at least: an empty file, a folder or a link takes
# an inode, and a link's long target a block, though st_blocks says 0 for most of them.
# Counting only the files' blocks let a job fill the disk (or run it out of inodes) with
# links and empty files while its count stayed at zero.
MIN_ENTRY_BYTES = 4096


def folder_bytes(folder: Path, stop_above: int | None = None) -> int:
    """Bytes the entries under ``folder`` take (what a job wrote there): every file, folder
    and link, each at least MIN_ENTRY_BYTES. Stops counting once past ``stop_above``."""
    total = 0
    stack = [str(folder)]
    while stack:
        with contextlib.suppress(OSError), os.scandir(stack.pop()) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    total += max(entry.stat(follow_symlinks=False).st_blocks * 512, MIN_ENTRY_BYTES)
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                if stop_above is not None and total > stop_above:
                    return total
    return total


def out_of_space_message(needed: int | None = None) -> str:
    wanted = f" for {_mb(needed)}" if needed else ""
    return (
        f"The server has no disk space left{wanted} (it keeps NEOMARIL_DISK_RESERVE_MB = "
        f"{settings.DISK_RESERVE_MB} MB free for its database): nothing was stored. Try again "
        "later, or ask an admin to free space."
    )


class LimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    """Streams each file to a temporary file under the size limits, and notes the file
    parts Django's parser drops (see lost_parts)."""

    def __init__(self, request=None):
        super().__init__(request)
        self.file_limit = settings.MAX_UPLOAD_FILE_BYTES
        self.total_limit = settings.MAX_UPLOAD_TOTAL_BYTES
        self.total = 0
        self.received = 0
        self.headers: PartHeaders | None = None
        self.started: list[tuple[str, str]] = []  # (field, file name) of each file part begun
        self.cut_off: tuple[str, str] | None = None
        self.skipped: tuple[str, str] | None = None  # the last file part dropped for its size
        self.no_space: str | None = None
        if request is not None:
            request.upload_limit_errors = {}
            request.upload_out_of_space = None

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # Raising here would escape Django's parser as a 500; the first chunk stops it instead.
        if content_length and content_length > self.total_limit:
            self.total = content_length
        elif content_length and self._leaves_too_little(content_length):
            self.no_space = out_of_space_message(content_length)  # refused at the first chunk
        if self.headers is not None:
            return None  # the parser below asks again: it does the parsing
        # Django's own parser, reading through PartHeaders, which keeps each part's
        # headers: the parser drops some file parts without calling any handler.
        self.headers = PartHeaders(input_data, boundary)
        handlers = self.request.upload_handlers if self.request is not None else [self]
        fields, files = MultiPartParser(META, self.headers, handlers, encoding).parse()
        if not (fields or files or self.headers.delimited):
            # Django's parser reads a body in which the boundary never occurs as an empty
            # form: `garbage` issued an unnamed token. An empty body is still one (Django
            # answers it before asking the handlers), and so is `--zz--`, a browser's
            # empty FormData.
            raise MultiPartParserError(NO_PARTS.format(boundary=boundary.decode("ascii", "replace")))
        return fields, files

    def new_file(self, field_name, file_name, *args, **kwargs):
        _stem, extension = os.path.splitext(file_name)
        if len(extension.encode("utf-8", "surrogatepass")) > MAX_TEMPORARY_EXTENSION_BYTES:
            super().new_file(field_name, "upload", *args, **kwargs)  # tmpXXXXXXXX.upload
            self.file_name = self.file.name = file_name
        else:
            super().new_file(field_name, file_name, *args, **kwargs)
        self.received = 0
        self.started.append((field_name, file_name))

    def upload_interrupted(self):
        # The body ended inside a file part: Django drops the part. Django says so too when
        # the body's last file part was skipped for its size: that one has its own message.
        if (self.field_name, self.file_name) != self.skipped:
            self.cut_off = (self.field_name, self.file_name)
        return super().upload_interrupted()

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        self.total += len(raw_data)
        if self.no_space:
            self._stop_out_of_space(self.no_space)
        if self.total > self.total_limit:
            self._record("__all__", f"The upload is larger than the limit of {_mb(self.total_limit)} in all.")
            self._discard()
            raise StopUpload(connection_reset=False)
        if self.received > self.file_limit:
            self._record(
                self.field_name,
                f"'{self.file_name}' is larger than the per-file limit of {_mb(self.file_limit)}.",
            )
            self._discard()
            self.skipped = (self.field_name, self.file_name)
            raise SkipFile()
        try:
            return super().receive_data_chunk(raw_data, start)
        except OSError as exc:
            if exc.errno not in OUT_OF_SPACE_ERRORS:
                raise
            self._stop_out_of_space(out_of_space_message())

    def file_complete(self, file_size):
        try:  # the last buffered bytes reach the disk here
            return super().file_complete(file_size)
        except OSError as exc:
            if exc.errno not in OUT_OF_SPACE_ERRORS:
                raise
            self._stop_out_of_space(out_of_space_message())

    def _leaves_too_little(self, size: int) -> bool:
        try:
            free = free_bytes(settings.FILE_UPLOAD_TEMP_DIR)
        except OSError:
            return False  # unknown: the writes will tell
        return free - size < settings.DISK_RESERVE_MB * 1024 * 1024

    def _stop_out_of_space(self, message: str):
        """Close (so delete) the part written so far at once, and stop reading the body:
        the disk must not stay full until the garbage collector closes the file."""
        self._record("__all__", message)
        if self.request is not None:
            self.request.upload_out_of_space = message
        self._discard()
        raise StopUpload(connection_reset=False)

    def _discard(self) -> None:
        file = getattr(self, "file", None)
        if file is not None:
            file.close()  # a NamedTemporaryFile deletes itself on close

    def _record(self, field: str, message: str) -> None:
        if self.request is not None:
            self.request.upload_limit_errors[field] = message


def add_limit_errors(request: HttpRequest, form: forms.BaseForm) -> bool:
    """Put the upload handler's size refusals on a page's form; True when there were any."""
    limits = getattr(request, "upload_limit_errors", {})
    for field, message in limits.items():
        if field in form.fields:
            # Validating (form.errors does) found the skipped file missing: it was sent, too large.
            form.errors.pop(field, None)
            form.add_error(field, message)
        else:
            form.add_error(None, message)
    return bool(limits)


def upload_form_data(request: HttpRequest) -> tuple:
    """An upload page's form data and files: bound on every POST, even one whose body
    left no field (an upload refused at its first chunk), so the refusal can be shown on
    it; unbound (None, None) on GET."""
    return (request.POST, request.FILES) if request.method == "POST" else (None, None)


def refused_upload_status(request: HttpRequest) -> int:
    """The status of a page's refused upload form: 507 when the disk had no room for it
    (the server's state, worth a retry once space is freed, as the API answers), else 400."""
    return 507 if getattr(request, "upload_out_of_space", None) else 400


def sent_by_upload_script(request: HttpRequest) -> bool:
    """The upload forms' script (static/js/upload_form.js) posts with XMLHttpRequest, for
    its progress bar, and reads JSON answers: ``form_errors`` with 400 (507 when the disk had
    no room: refused_upload_status), a redirect with 201."""
    return request.headers.get("X-Requested-With") == "XMLHttpRequest"


def form_errors(form: forms.BaseForm) -> dict[str, list[str]]:
    return {field: [str(message) for message in messages] for field, messages in form.errors.items()}


class PartHeaders:
    """A multipart body, read through: keeps the header block of each part that names a
    file (`filename=`), as sent."""

    def __init__(self, stream, boundary: bytes) -> None:
        self._stream = stream
        self._delimiter = b"\r\n--" + boundary
        self._pending = b"\r\n"  # the first delimiter opens the body, with no line break before it
        self._header: bytearray | None = None  # the header block being read, after a delimiter
        self.blocks: list[bytes] = []
        self.delimited = False  # whether a delimiter (the boundary) has been seen at all

    def read(self, size: int = -1) -> bytes:
        data = self._stream.read(size)
        if data and len(self.blocks) < _MAX_KEPT_PARTS:
            self._see(data)
        return data

    def _see(self, data: bytes) -> None:
        while data:
            if self._header is None:
                # A delimiter cut by the last chunk's end lies in the few bytes kept from it:
                # join only those (copying each chunk whole cost a pass over every upload).
                width = len(self._delimiter)
                seam = self._pending + data[: width - 1]
                found = seam.find(self._delimiter)
                if found >= 0:
                    data = data[found + width - len(self._pending) :]
                else:
                    found = data.find(self._delimiter)
                    if found < 0:
                        # Keep what could be the start of a delimiter cut by the chunk's end.
                        self._pending = (self._pending + data)[-(width - 1) :]
                        return
                    data = data[found + width :]
                self._pending = b""
                self._header = bytearray()
                self.delimited = True
            else:
                searched_from = max(0, len(self._header) - 3)
                self._header += data
                end = self._header.find(b"\r\n\r\n", searched_from)
                if end < 0:
                    if len(self._header) > _MAX_HEADER_BYTES:
                        self._header = None  # not headers we can report on; look for the next part
                    return
                block, data = bytes(self._header[:end]), bytes(self._header[end + 4 :])
                self._header = None
                if b"filename" in block.lower():
                    self.blocks.append(block)


@dataclass(frozen=True)
class LostPart:
    """A file part that was sent but did not arrive (lost_part_message words why)."""

    why: Literal["cut_off", "not_utf8", "bad_header", "no_field_name", "unusable_name"]
    field: str
    name: str  # the file name as sent, bytes that are not UTF-8 as \\x escapes ("bad_header": the header)


def _limited_handler(request: HttpRequest) -> LimitedTemporaryFileUploadHandler | None:
    return next(
        (
            h
            for h in getattr(request, "upload_handlers", [])
            if isinstance(h, LimitedTemporaryFileUploadHandler)
        ),
        None,
    )


def name_as_sent(request: HttpRequest, field: str, arrived: str) -> str:
    """The file name of `field`'s part as the client sent it, when Django's parser changed it
    into `arrived`: it keeps only the last part of a path and drops unprintable characters,
    which would turn `../x.csv` into `x.csv` silently instead of refusing it. The HTML
    entities some browsers send for other characters stay decoded, as Django decodes them."""
    handler = _limited_handler(request)
    if handler is None or handler.headers is None:
        return arrived
    for block in handler.headers.blocks:
        part = _file_part(block)
        if part is None or part.field != field:
            continue
        sent = html.unescape(part.name)
        if sent == arrived:
            return arrived
        kept = "".join(c for c in sent.rsplit("/")[-1].rsplit("\\")[-1] if c.isprintable())
        if kept == arrived:
            return sent
    return arrived


def lost_parts(request: HttpRequest) -> list[LostPart]:
    """The file parts of the request's body that were cut off, or dropped by Django's parser
    for their headers; [] when none can be told."""
    handler = _limited_handler(request)
    if handler is None or handler.headers is None:
        return []
    lost = []
    if handler.cut_off is not None:
        lost.append(LostPart("cut_off", *handler.cut_off))
    # The parts that reached the handler come in the body's order: the others were dropped.
    started = iter(handler.started)
    waiting_for = next(started, None)
    for block in handler.headers.blocks:
        part = _file_part(block)  # as lost, should it not have arrived
        if part is None:
            continue
        arrived = part.why == "unusable_name" and waiting_for is not None and part.field == waiting_for[0]
        if arrived:
            waiting_for = next(started, None)
        else:
            lost.append(part)
    return lost


def _file_part(block: bytes) -> LostPart | None:
    """The file part whose headers are `block`, as lost for the reason it would be if it
    did not arrive (Django's parser reads a part's headers so: it drops a header line it
    cannot read, and the part with it); None: not a file part."""
    for line in block.split(b"\r\n"):
        header, _colon, _value = line.partition(b":")
        if header.strip().lower() != b"content-disposition":
            continue
        shown = line.decode("utf-8", "backslashreplace")
        try:
            _main, params = parse_header_parameters(line.decode())
        except UnicodeDecodeError:
            try:
                _main, params = parse_header_parameters(shown)
            except ValueError:
                return LostPart("bad_header", "", shown)
            return LostPart("not_utf8", params.get("name", "").strip(), params.get("filename", ""))
        except ValueError:
            return LostPart("bad_header", "", shown)
        field, file_name = params.get("name", "").strip(), params.get("filename", "")
        if not file_name:
            return None  # an empty filename= makes a form field of the part
        return LostPart("unusable_name" if field else "no_field_name", field, file_name)
    return None


_LOST_MESSAGES = {
    "cut_off": gettext_lazy(
        "The file part '%(field)s' ('%(name)s') was cut off: the body ended before the part's "
        "closing boundary. Send the file again."
    ),
    "not_utf8": gettext_lazy(
        "The file name of the part '%(field)s' is not valid UTF-8 ('%(name)s'), so the file "
        "could not be read: send the name in UTF-8, or rename the file."
    ),
    "bad_header": gettext_lazy(
        "A file part's header could not be read (%(name)s), so the file was not read: "
        "send the file with curl -F %(expected)s=@%(example)s or an HTTP library's multipart upload."
    ),
    "no_field_name": gettext_lazy(
        "The file part with the file name '%(name)s' has no field name, so the file was "
        "not read: send it in the field '%(expected)s' (Content-Disposition: form-data; "
        'name="%(expected)s"; filename=…).'
    ),
    "unusable_name": gettext_lazy(
        "The file part '%(field)s' has the file name '%(name)s', which cannot be used as a "
        "file name, so the file was not read: send it with a plain name such as %(example)s."
    ),
}


def lost_part_message(part: LostPart, *, expected: str, example: str) -> str:
    """Why `part` did not arrive and what to send instead, in the active language.

    `expected` is the field the file belongs in (for a part that names none, the one it
    most likely was meant for), `example` a plain file name for that field.
    """
    return str(_LOST_MESSAGES[part.why]) % {
        "field": part.field,
        "name": part.name,
        "expected": expected,
        "example": example,
    }
