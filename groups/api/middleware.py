"""Request-size limits of the API, and its query strings' repeated parameters, answered
in the API's error shape.

A body over a limit is refused from its declared Content-Length, before a byte of it
is read: 413 `too_large`, not Django's HTML "Bad Request (400)" after it has read
(or tried to read) the whole body. Limits:

- multipart uploads (a model's files, an Async model's input file): the upload limit
  of the endpoint (NEOMARIL_MAX_UPLOAD_TOTAL_MB for models, NEOMARIL_MAX_EXECUTION_UPLOAD_MB
  under /api/v1/run/), plus DATA_UPLOAD_MAX_MEMORY_SIZE for the form fields and the
  multipart framing, so an upload within its limit always gets through; the upload
  handlers then count the files' bytes exactly as they stream to disk;
- any other body (JSON, forms): DATA_UPLOAD_MAX_MEMORY_SIZE, since such bodies are
  read into memory. Sync calls on the run URL are left to the serving code, which
  answers the same 413 with its own message on both of its front ends.

Django errors that only show once the body is read (form fields over
DATA_UPLOAD_MAX_MEMORY_SIZE inside a multipart body, too many fields) are turned into
the same JSON answers.
"""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, UnreadablePostError

from groups.api.errors import error_response

API_PREFIX = "/api/"
RUN_PREFIX = "/api/v1/run/"


def _size(size: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def _declared_length(request: HttpRequest) -> int | None:
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None  # Django itself reads a malformed length as 0
    return length if length > 0 else None


def body_limit(request: HttpRequest) -> tuple[int, str] | None:
    """The largest body this API request may declare, and what sets it; None: no limit here."""
    is_multipart = request.META.get("CONTENT_TYPE", "").lower().startswith("multipart/")
    on_run_url = request.path_info.startswith(RUN_PREFIX)
    fields = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    if is_multipart:
        if on_run_url:
            files, name = settings.MAX_EXECUTION_UPLOAD_BYTES, "NEOMARIL_MAX_EXECUTION_UPLOAD_MB"
        else:
            files, name = settings.MAX_UPLOAD_TOTAL_BYTES, "NEOMARIL_MAX_UPLOAD_TOTAL_MB"
        return files + (fields or 0), name
    if on_run_url or fields is None:
        return None
    return fields, "DATA_UPLOAD_MAX_MEMORY_SIZE"


def _first(errors: dict[str, list[str]]) -> str:
    name, messages = next(iter(errors.items()))
    return f"{name}: {messages[0]}"


class BodyTimeout(UnreadablePostError):
    """The client sent its body too slowly (portal.wsgi_bridge cuts it)."""


def _caused_by(exception: BaseException, kind: type) -> bool:
    """Whether `exception`, or one it was raised from, is a `kind`: Django's request.read()
    raises a plain UnreadablePostError from the stream's own error."""
    seen: BaseException | None = exception
    while seen is not None:
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


class ApiRequestSizeMiddleware:
    """413 in JSON for API requests whose declared body is over the limit (see module doc)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith(API_PREFIX):
            coding = request.headers.get("Content-Encoding", "").strip().lower()
            if coding not in ("", "identity") and not request.path_info.startswith(RUN_PREFIX):
                # The parsers would read the compressed bytes as text: "JSON parse error - 'utf-8'
                # codec can't decode byte 0x8b". The run URL words its own (serving.answers).
                return error_response(
                    415,
                    f"The request body is sent with Content-Encoding: {coding[:40]}, which this API "
                    "does not accept: send it uncompressed, without that header.",
                    "unsupported_media_type",
                )
            repeated = {name: len(values) for name, values in request.GET.lists() if len(values) > 1}
            if repeated and not request.path_info.startswith(RUN_PREFIX):
                # Django keeps the last: ?language=curl&language=python answered python
                # without a word. No endpoint takes a query parameter more than once. The
                # run URL takes none, and its fast path never reads the query string: a
                # call answers the same whichever path serves it.
                errors = {
                    name: [f"Given {count} times in the query string; send it once."]
                    for name, count in sorted(repeated.items())
                }
                return error_response(400, f"{_first(errors)}", "invalid", errors=errors)
            length = _declared_length(request)
            limit = body_limit(request) if length else None
            if length and limit and length > limit[0]:
                return self._too_large(length, *limit)
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, UnreadablePostError):
            # The client's fault, not a 500 with a traceback: it went away, or sent too slowly.
            timed_out = _caused_by(exception, BodyTimeout)
            if not request.path_info.startswith(API_PREFIX):
                status = 408 if timed_out else 400
                return HttpResponse(str(exception), status=status, content_type="text/plain; charset=utf-8")
            if timed_out:
                return error_response(408, str(exception), "request_timeout")
            return error_response(400, str(exception), "invalid")
        if not request.path_info.startswith(API_PREFIX):
            return None
        if isinstance(exception, RequestDataTooBig):
            return error_response(
                413,
                f"The form fields of this request are larger than the limit of "
                f"{_size(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)} (DATA_UPLOAD_MAX_MEMORY_SIZE); "
                "send large content as a file.",
                "too_large",
            )
        if isinstance(exception, TooManyFieldsSent):
            most = settings.DATA_UPLOAD_MAX_NUMBER_FIELDS
            return error_response(
                400,
                f"The request has more than {most} fields, the limit (DATA_UPLOAD_MAX_NUMBER_FIELDS): "
                "send fewer.",
                "invalid",
            )
        if isinstance(exception, TooManyFilesSent):
            most = settings.DATA_UPLOAD_MAX_NUMBER_FILES
            return error_response(
                400,
                f"The request has more than {most} files, the limit (DATA_UPLOAD_MAX_NUMBER_FILES): "
                "send fewer.",
                "invalid",
            )
        return None

    @staticmethod
    def _too_large(length: int, limit: int, setting: str) -> HttpResponse:
        body, most = _size(length), _size(limit)
        if body == most:  # just over: rounded, both would read "2 GB"
            body, most = f"{length:,} bytes", f"{limit:,} bytes"
        return error_response(
            413,
            f"The request body ({body}) is larger than the limit of {most} for this request ({setting}).",
            "too_large",
        )
