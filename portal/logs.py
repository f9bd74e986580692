"""Logging filters: what a flood of bad requests would otherwise write.

Every refused run call (a wrong token, a body that is not JSON) is a client's mistake,
already counted in /metrics (per model and status, or by status when refused before a
model); logged too, one line each, they
filled 86,745 lines in 17 minutes of the soak audit. A request with a Host nobody
allowed logged a whole traceback each time.
"""

from __future__ import annotations

import logging

RUN_PREFIX = "/api/v1/run/"


class RunCallClientErrors(logging.Filter):
    """Drops django.request's lines for run calls answered 4xx (5xx stay)."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        request = getattr(record, "request", None)
        path = getattr(request, "path", "")
        return not (status is not None and 400 <= status < 500 and path.startswith(RUN_PREFIX))


class OneLine(logging.Filter):
    """A client's mistake in one warning line, without the traceback Django attaches."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info = record.exc_text = None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True
