"""Upload handling that enforces size limits while the body streams in.

Files are written to temporary files on disk as they arrive (never held whole in
memory). A file over the per-file limit is skipped and remembered so the view can
answer 400 naming it; a body over the total limit stops the upload.
"""

from __future__ import annotations

import os

from django import forms
from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.files.uploadhandler import SkipFile, StopUpload, TemporaryFileUploadHandler
from django.http import HttpRequest
from django.http.multipartparser import MultiPartParserError

# What Django's parser raises for a body it cannot read (malformed, or over its field limits).
UNREADABLE_BODY = (MultiPartParserError, RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent)
# Django names the temporary file tmpXXXXXXXX.upload<the sent name's extension>. A longer
# extension than this is left off that name (the upload keeps its own name): with one of
# 250 bytes ("a." + 70 emoji) the name would be too long for the filesystem and the parser
# would fail (a 500) before the view could refuse the file name.
MAX_TEMPORARY_EXTENSION_BYTES = 32


def unreadable_body(exc: Exception) -> str:
    """The API's message (400) for a body Django's parser refused (one of UNREADABLE_BODY)."""
    return f"The request body could not be read: {exc}"


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):.0f} MB"


class LimitedTemporaryFileUploadHandler(TemporaryFileUploadHandler):
    def __init__(self, request=None):
        super().__init__(request)
        self.file_limit = settings.MAX_UPLOAD_FILE_BYTES
        self.total_limit = settings.MAX_UPLOAD_TOTAL_BYTES
        self.total = 0
        self.received = 0
        if request is not None:
            request.upload_limit_errors = {}

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # Raising here would escape Django's parser as a 500; the first chunk stops it instead.
        if content_length and content_length > self.total_limit:
            self.total = content_length
        return None

    def new_file(self, field_name, file_name, *args, **kwargs):
        _stem, extension = os.path.splitext(file_name)
        if len(extension.encode("utf-8", "surrogatepass")) > MAX_TEMPORARY_EXTENSION_BYTES:
            super().new_file(field_name, "upload", *args, **kwargs)  # tmpXXXXXXXX.upload
            self.file_name = self.file.name = file_name
        else:
            super().new_file(field_name, file_name, *args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        self.total += len(raw_data)
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
            raise SkipFile()
        return super().receive_data_chunk(raw_data, start)

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
        form.add_error(None if field == "__all__" or field not in form.fields else field, message)
    return bool(limits)
