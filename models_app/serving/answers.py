"""What a Sync call answers, as bytes: shared by the Django view and the ASGI fast path.

Both front ends (``views.predict`` under plain WSGI, ``front.ServingFront`` under
gunicorn's uvicorn workers) build their answers here, so a caller gets the same status,
body and message whichever one served the call. That includes the 503 of a database
that can't be reached, which Django gives every other API URL too (portal.database_outage).
"""

from __future__ import annotations

import json
import sqlite3
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson
from django.conf import settings
from django.db import InterfaceError, OperationalError

from groups import metrics
from groups.api.errors import JSON_KINDS, error_json
from groups.api.parsers import MAX_INTEGER_DIGITS, lone_surrogate_problem
from models_app.runtime.protocol import OK_PREFIX, ProtocolError, decode_payload
from models_app.sandboxes import limits_for
from monitoring.recorder import Call, recorder

if TYPE_CHECKING:
    from models_app.calls import CalledModel

SERVING_ERROR_CODES = {502: "runner_crashed", 503: "unavailable", 504: "timeout"}


class BadInput(Exception):
    """The request body cannot be given to the model; ``status`` is the HTTP status."""

    def __init__(self, status: int, detail: str, code: str):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code


NESTED_TOO_DEEPLY = (
    "The request body is JSON nested too deeply (objects or arrays inside one another about "
    "1,000 levels deep or more): send a flatter input."
)


# Fewer opening brackets than this: nested too shallow for either parser's depth limit.
SHALLOW_FOR_BOTH_PARSERS = 500


BODY_TIMEOUT_MESSAGE = (
    "The request body did not arrive within {timeout:g} s (NEOMARIL_REQUEST_BODY_TIMEOUT): send it again."
)


def body_too_slow(timeout: float) -> BadInput:
    return BadInput(408, BODY_TIMEOUT_MESSAGE.format(timeout=timeout), "request_timeout")


def too_large(limit: int) -> BadInput:
    return BadInput(
        413,
        f"The request body is larger than the {limit}-byte limit for Sync calls "
        "(DATA_UPLOAD_MAX_MEMORY_SIZE); send large inputs to an Async model as a file.",
        "too_large",
    )


FORM_BODY = (
    "The request body is not valid JSON: it was sent as a multipart form (multipart/form-data); "
    "a Sync model takes its input as a JSON body (Content-Type: application/json)."
)


def _not_json(body: bytes, error: ValueError) -> str:
    if not body.strip():
        return "The request body is empty: send one input as JSON, like the model's schema example."
    if body.startswith(b"\x1f\x8b"):
        return (
            "The request body is gzip-compressed: send it as plain JSON (Content-Encoding is not supported)."
        )
    if body.startswith(b"--") and b"content-disposition: form-data" in body[:1024].lower():
        return FORM_BODY  # curl -F sends this
    if "int_max_str_digits" in str(error):
        # Its message ends with advice for the server's code ("use sys.set_int_max_str_digits()").
        return (
            f"The request body has a number with more than {MAX_INTEGER_DIGITS} digits, "
            "more than an integer may have here: send it as a string."
        )
    return f"The request body is not valid JSON: {error}."


def _text_only(payload):
    """`payload` unless a string in it is not text: json accepts a lone surrogate ("\\ud800",
    which orjson refuses), and the model would get a value it cannot encode (its error
    was then blamed on the model, as a 422)."""
    problem = lone_surrogate_problem(payload)
    if problem:
        raise BadInput(400, problem, "invalid")
    return payload


def check_input(body: bytes, schema_is_object: bool) -> str:
    """The body as the JSON text the runner gets, once it is known to be valid input.

    orjson parses it (strict RFC 8259 JSON, several times faster, on every call); what
    it refuses goes to the standard library's parser, which accepts a little more
    (NaN, Infinity, lone surrogates: what Python's json.dumps sends) and words the error.
    The two stop at different depths (orjson at 1,024 levels, json at its recursion
    limit), so a body with enough brackets to nest that deep is json's alone to judge.
    """
    try:
        text = body.decode("utf-8")
        if body.count(b"[") + body.count(b"{") < SHALLOW_FOR_BOTH_PARSERS:
            try:
                payload = orjson.loads(body)
            except orjson.JSONDecodeError:
                payload = _text_only(json.loads(text))
        else:
            payload = _text_only(json.loads(text))
    except BadInput:
        raise
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput(400, _not_json(body, exc), "invalid") from None
    except RecursionError:
        # json's parser recurses once per level and stops near the interpreter's
        # recursion limit (about 1,000 levels, a little less on a deeper stack).
        raise BadInput(400, NESTED_TOO_DEEPLY, "invalid") from None
    # Several records at once are a list of such objects (models promoted from AutoML
    # answer lists; a user's score decides for itself what a list means).
    records = isinstance(payload, list) and bool(payload) and all(isinstance(item, dict) for item in payload)
    if schema_is_object and not isinstance(payload, dict) and not records:
        what = JSON_KINDS.get(type(payload), type(payload).__name__)
        if isinstance(payload, list):
            what = "list of nothing"
            if payload:  # not all objects, or it would be records
                index, odd = next((i, x) for i, x in enumerate(payload) if not isinstance(x, dict))
                kind = JSON_KINDS.get(type(odd), type(odd).__name__)
                mixed = any(isinstance(item, dict) for item in payload)
                what = (
                    f"list with a {kind} among its objects (item {index})"
                    if mixed
                    else f"list of {kind} values"
                )
        raise BadInput(
            400,
            f"This model takes a JSON object (like its schema example), or a list of such objects, not a JSON {what}.",
            "invalid",
        )
    return text


def answer_for_payload(payload: bytes) -> tuple[int, bytes]:
    """The HTTP status and body for the payload of the runner's answer frame.

    A success is passed through: the result's JSON as the runner encoded it.
    """
    if payload.startswith(OK_PREFIX) and payload.endswith(b"}"):
        return 200, payload[len(OK_PREFIX) : -1]
    try:
        frame = decode_payload(payload)
    except ProtocolError as exc:
        return answer_for_frame({"ok": False, "phase": "protocol", "error": str(exc)})
    return answer_for_frame(frame)


def answer_for_frame(frame: dict) -> tuple[int, bytes]:
    """The HTTP status and body for the runner's (decoded) answer frame."""
    if frame.get("ok"):
        return 200, json.dumps(frame["result"]).encode()
    if frame.get("phase") == "protocol":
        return 500, error_json(f"Internal error talking to the model's runner: {frame.get('error')}", "error")
    # The platform worked; the model's own code failed on this input (or hit a limit
    # of its sandbox, which the message then names with the setting that raises it).
    limit = limits_for("serve").explain(f"{frame.get('error')}\n{frame.get('traceback') or ''}", None)
    detail = f"The model raised an error: {frame.get('error')}"
    if limit:
        # The error is often a bare exception name ("MemoryError"): end its sentence before the limit's.
        detail = detail.rstrip()
        detail += (" " if detail.endswith((".", "!", "?")) else ". ") + limit
    return 422, error_json(
        detail,
        "model_error",
        model_error={
            "error": frame.get("error"),
            "phase": frame.get("phase"),
            "traceback": frame.get("traceback"),
            "limit": limit,
        },
    )


def answer_for_serving_error(status: int, message: str, code: str | None = None) -> tuple[int, bytes]:
    return status, error_json(message, code or SERVING_ERROR_CODES[status])


# What a database that can't be reached (stopped, restarting, failing over, out of
# connections, a lost connection) raises: Django's errors, and sqlite3's own from the
# fast path's SQLite lookup, which has a connection of its own.
DATABASE_OUTAGE_ERRORS = (OperationalError, InterfaceError, sqlite3.OperationalError)
DATABASE_RETRY_AFTER = 5  # seconds: a restart or a failover is usually over by then
DATABASE_UNAVAILABLE = (
    "The database did not answer (unreachable or too busy), so the server could not answer this "
    "request. It is usually back within moments: retry in a few seconds (Retry-After); if it "
    "lasts, tell your Neomaril admin."
)


def database_busy(exc: BaseException) -> bool:
    """SQLite's "database is locked": a writer held it past the reader's busy timeout."""
    return "database is locked" in str(exc)


def database_unavailable() -> tuple[int, bytes]:
    """The answer to a request that met the database unreachable (send `Retry-After:
    DATABASE_RETRY_AFTER` with it): the run URL's on either front end, any API URL's.
    Counted in DATABASE_UNAVAILABLE_ANSWERS (the pages' 503, portal.database_outage, too)."""
    metrics.DATABASE_UNAVAILABLE_ANSWERS.inc()
    return 503, error_json(DATABASE_UNAVAILABLE, "unavailable")


def count(model: CalledModel, status: int, started: float) -> float:
    """Count the answered call in the metrics (groups.metrics); returns its latency in seconds."""
    seconds = time.perf_counter() - started
    metrics.observe_call(model, status, seconds)
    return seconds


def record(model: CalledModel, body: str, status: int, content: bytes, started: float) -> None:
    """Count the call, and queue it for monitoring against the model and the version that
    answered (never blocks; see monitoring.recorder)."""
    seconds = count(model, status, started)
    if settings.RECORD_PREDICTIONS:
        recorder.record(
            Call(
                model_id=model.model_pk,
                version=model.version,
                at=datetime.now(UTC),  # timezone.now(), without its settings lookup (USE_TZ is on)
                status_code=status,
                latency_ms=seconds * 1000,
                input=body,
                output=content.decode(),
                live=model.live,
            )
        )
