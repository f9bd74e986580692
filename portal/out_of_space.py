"""A full disk is answered 507 saying so, not a 500 "Internal error".

Whatever a request was writing when the data folder's disk filled (an upload's copy into
a model's folder, a database row), the view's exception reaches this middleware: the API
answers its JSON error (`insufficient_storage`), pages a page saying what happened. Uploads
are refused before they fill it (groups.uploads keeps NEOMARIL_DISK_RESERVE_MB free).
"""

from __future__ import annotations

import logging

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.template import loader

from groups.api.errors import error_response
from groups.api.middleware import API_PREFIX
from groups.uploads import OUT_OF_SPACE_ERRORS, out_of_space_message

logger = logging.getLogger(__name__)

# PostgreSQL's disk_full condition; SQLite says "database or disk is full" (SQLITE_FULL).
POSTGRES_DISK_FULL = "53100"


def is_out_of_space(exc: BaseException) -> bool:
    if isinstance(exc, OSError) and exc.errno in OUT_OF_SPACE_ERRORS:
        return True
    if isinstance(exc, DatabaseError):
        cause = exc.__cause__
        return (
            "database or disk is full" in str(exc)
            or getattr(cause, "sqlstate", None) == POSTGRES_DISK_FULL
            or (isinstance(cause, OSError) and cause.errno in OUT_OF_SPACE_ERRORS)
        )
    return False


class OutOfSpaceMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_out_of_space(exception):
            return None
        logger.error("out of disk space answering %s %s: %s", request.method, request.path, exception)
        if request.path_info.startswith(API_PREFIX):
            return error_response(507, out_of_space_message(), "insufficient_storage")
        # No request context: its processors would read the database, which may be what is full.
        return HttpResponse(loader.get_template("507.html").render(), status=507)
