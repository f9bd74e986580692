"""A database that can't be reached is answered 503 saying so, not a 500 "Internal error".

While PostgreSQL is stopped, restarting or failing over, every request that reads it
fails with Django's OperationalError or InterfaceError. That is no bug of ours and says
nothing about the request: the API answers its JSON error (`unavailable`, the same bytes
the run URL's fast path answers, models_app.serving.answers.database_unavailable), pages
a page saying what happened, both with `Retry-After`. A full disk, which the database
also reports as an OperationalError, stays portal.out_of_space's 507.

A view's exception reaches `process_exception`, as for portal.out_of_space. A middleware
reads the database too (the page's time zone reads the user, so the session), and what
a middleware raises never reaches `process_exception`: Django turns it into the 500 page
where it was raised. So this middleware sits near the outside, notes the exception when
Django signals it (got_request_exception), and answers in place of that 500.
"""

from __future__ import annotations

import logging
import sys

from django.conf import settings
from django.core.signals import got_request_exception
from django.http import HttpRequest, HttpResponse
from django.template import loader
from django.utils import translation

from groups import metrics
from groups.api.middleware import API_PREFIX
from groups.api.shape import JSON
from models_app.serving.answers import DATABASE_OUTAGE_ERRORS, DATABASE_RETRY_AFTER, database_unavailable
from portal.out_of_space import is_out_of_space

logger = logging.getLogger(__name__)

# Where the exception of a request that met the outage in a middleware is kept.
NOTED = "_database_outage"


def is_database_outage(exc: BaseException | None) -> bool:
    return isinstance(exc, DATABASE_OUTAGE_ERRORS) and not is_out_of_space(exc)


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    """The 503 for this request: the API's JSON error under /api/, the page elsewhere."""
    if request.path_info.startswith(API_PREFIX):
        status, content = database_unavailable()
        response = HttpResponse(content, status=status, content_type=JSON)
    else:
        metrics.DATABASE_UNAVAILABLE_ANSWERS.inc()
        # No request context: its processors would read the database.
        with translation.override(getattr(request, "LANGUAGE_CODE", None) or settings.LANGUAGE_CODE):
            response = HttpResponse(loader.get_template("503.html").render(), status=503)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


def _note(sender, request: HttpRequest | None = None, **kwargs) -> None:
    """got_request_exception: sent while Django handles the exception (sys.exc_info has it)."""
    exc = sys.exc_info()[1]
    if request is not None and is_database_outage(exc):
        setattr(request, NOTED, exc)


got_request_exception.connect(_note, dispatch_uid="portal.database_outage")


class DatabaseOutageMiddleware:
    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        exc = getattr(request, NOTED, None)
        if exc is not None and response.status_code == 500:
            return self._answer(request, exc)
        return response

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not is_database_outage(exception):
            return None
        return self._answer(request, exception)

    @staticmethod
    def _answer(request: HttpRequest, exc: BaseException) -> HttpResponse:
        logger.error(
            "the database is unreachable: %s %s answered 503 (%s)", request.method, request.path, exc
        )
        return database_unavailable_response(request)
