"""How an Async model's input file streams in on the run URLs.

`POST /api/v1/run/<hash>` (and `/versions/<n>`, and their `/try` twins for a member's
session) take one file, streamed to disk under the executions' own size limit
(NEOMARIL_MAX_EXECUTION_UPLOAD_MB, which replaces the model-upload limits there). Upload
handlers can only be chosen before anything reads the body, and on `/try` Django's CSRF
check reads it (request.POST) before the view runs; so ExecutionUploadMiddleware, placed
before CsrfViewMiddleware, prepares these requests, and both URLs parse the body the
same way.

Django's parser drops some file parts without a word: one cut off before its closing
boundary, one whose file name is not UTF-8, or is "." or "..". ExecutionUploadHandler
keeps track of them (lost_parts), so that the view can say why no file arrived instead
of "send a file".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParser
from django.urls import Resolver404, resolve
from django.utils.http import parse_header_parameters

from groups.uploads import LimitedTemporaryFileUploadHandler

MULTIPART = "multipart/form-data"
# The routes (portal/run_urls.py) whose POST starts an execution of an Async model.
RUN_ROUTES = {"run-model", "run-model-version", "run-model-try", "run-model-version-try"}
# Room for the multipart framing and a few small form fields beside the file.
MULTIPART_OVERHEAD = 1024 * 1024
# A part's headers are a few hundred bytes; longer ones are not kept (nor reported).
_MAX_HEADER_BYTES = 16 * 1024
_MAX_KEPT_PARTS = 100


def is_multipart(request: HttpRequest) -> bool:
    """A multipart/form-data body (Django lower-cases `content_type`: media types ignore case)."""
    return request.content_type == MULTIPART


def prepare(request: HttpRequest) -> None:
    """Have the request's multipart body parsed with ExecutionUploadHandler (once; nothing
    to do for a body that is not multipart, or that was parsed already)."""
    if not is_multipart(request) or hasattr(request, "_files"):
        return
    if any(isinstance(handler, ExecutionUploadHandler) for handler in request.upload_handlers):
        return
    # Django's parser checks the media type case-sensitively; "Multipart/Form-Data" is the
    # same type (RFC 9110), so it is given in lower case. The boundary keeps its case.
    media_type, separator, parameters = request.META.get("CONTENT_TYPE", "").partition(";")
    request.META["CONTENT_TYPE"] = media_type.strip().lower() + separator + parameters
    request.upload_handlers = [ExecutionUploadHandler(request)]


class ExecutionUploadHandler(LimitedTemporaryFileUploadHandler):
    """The platform's streaming handler, with the executions' own size limit; it also
    notes the file parts Django's parser drops (see lost_parts)."""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.file_limit = settings.MAX_EXECUTION_UPLOAD_BYTES
        self.total_limit = self.file_limit + MULTIPART_OVERHEAD
        self.headers: PartHeaders | None = None
        self.started: list[tuple[str, str]] = []  # (field, file name) of each file part begun
        self.cut_off: tuple[str, str] | None = None

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        super().handle_raw_input(input_data, META, content_length, boundary, encoding)
        if self.headers is not None:
            return None  # the parser below asks again: it does the parsing
        # Django's own parser, reading through PartHeaders, which keeps each part's
        # headers: the parser drops some file parts without calling any handler.
        self.headers = PartHeaders(input_data, boundary)
        handlers = self.request.upload_handlers if self.request is not None else [self]
        return MultiPartParser(META, self.headers, handlers, encoding).parse()

    def new_file(self, field_name, file_name, *args, **kwargs):
        super().new_file(field_name, file_name, *args, **kwargs)
        self.started.append((field_name, file_name))

    def upload_interrupted(self):
        # The body ended inside a file part: Django drops the part.
        self.cut_off = (self.field_name, self.file_name)
        return super().upload_interrupted()


class PartHeaders:
    """A multipart body, read through: keeps the header block of each part that names a
    file (`filename=`), as sent."""

    def __init__(self, stream, boundary: bytes) -> None:
        self._stream = stream
        self._delimiter = b"\r\n--" + boundary
        self._pending = b"\r\n"  # the first delimiter opens the body, with no line break before it
        self._header: bytearray | None = None  # the header block being read, after a delimiter
        self.blocks: list[bytes] = []

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
    """A file part that was sent but did not arrive; the API words why (executions.api)."""

    why: Literal["cut_off", "not_utf8", "bad_header", "no_field_name", "unusable_name"]
    field: str
    name: str  # the file name as sent, bytes that are not UTF-8 as \\x escapes ("bad_header": the header)


def lost_parts(request: HttpRequest) -> list[LostPart]:
    """The file parts of the request's body that were cut off, or dropped by Django's parser
    for their headers; [] when none can be told."""
    handler = next(
        (h for h in getattr(request, "upload_handlers", []) if isinstance(h, ExecutionUploadHandler)), None
    )
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


class ExecutionUploadMiddleware:
    """Prepares multipart POSTs to the run URLs before anything reads their body (see module doc)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.method == "POST" and is_multipart(request) and _on_a_run_url(request):
            prepare(request)
        return self.get_response(request)


def _on_a_run_url(request: HttpRequest) -> bool:
    try:
        return resolve(request.path_info).url_name in RUN_ROUTES
    except Resolver404:
        return False
