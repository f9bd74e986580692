"""How an Async model's input file streams in on the run URLs.

`POST /api/v1/run/<hash>` (and `/versions/<n>`, and their `/try` twins for a member's
session) take one file, streamed to disk under the executions' own size limit
(NEOMARIL_MAX_EXECUTION_UPLOAD_MB, which replaces the model-upload limits there). Upload
handlers can only be chosen before anything reads the body, and on `/try` Django's CSRF
check reads it (request.POST) before the view runs; so ExecutionUploadMiddleware, placed
before CsrfViewMiddleware, prepares these requests, and both URLs parse the body the
same way.

Django's parser drops some file parts without a word (one cut off, one whose file name
is not UTF-8, or is "." or ".."); the platform's handler, which ExecutionUploadHandler
extends, keeps track of them (groups.uploads.lost_parts), so that the view can say why
no file arrived instead of "send a file".
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404, resolve

from groups.uploads import LimitedTemporaryFileUploadHandler

MULTIPART = "multipart/form-data"
# The routes (portal/run_urls.py) whose POST starts an execution of an Async model.
RUN_ROUTES = {"run-model", "run-model-version", "run-model-try", "run-model-version-try"}
# Room for the multipart framing and a few small form fields beside the file.
MULTIPART_OVERHEAD = 1024 * 1024


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
    """The platform's streaming handler (which also notes the file parts Django's parser
    drops: groups.uploads.lost_parts), with the executions' own size limit."""

    def __init__(self, request: HttpRequest | None = None) -> None:
        super().__init__(request)
        self.file_limit = settings.MAX_EXECUTION_UPLOAD_BYTES
        self.total_limit = self.file_limit + MULTIPART_OVERHEAD


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
