"""Exceptions raised by the SDK: one class per kind of failure.

Every error answer of the server becomes one of these, with the server's readable
`detail` as the message. Catch :class:`NeomarilError` to handle them all.

=====================  ===========================  ===========================================
class                  server answer                when
=====================  ===========================  ===========================================
AuthenticationError    401                          no, wrong, revoked or expired credentials
PermissionDeniedError  403                          authenticated but not allowed (subclass of
                                                    AuthenticationError)
InputError             400, 413, 422, other 4xx     bad arguments, files or input data
StateError             409                          the object's state forbids it (subclass of
                                                    InputError)
ModelError             422                          the model's own code raised (subclass of
                                                    InputError; carries the traceback)
NotFoundError          404                          no such model, group or execution
ServerError            5xx, or a 2xx that is not    the server or the model could not answer;
                       JSON                         something else answered (a wrong URL, a
                                                    proxy's page); an answer lacked a field
TooManyRequestsError   429                          try again later: too many calls at once,
                                                    or logins locked out for a while
                                                    (subclass of ServerError; the message
                                                    ends with the Retry-After wait, also in
                                                    ``retry_after``)
NetworkError           (none)                       the server could not be reached, did not
                                                    answer in time, or the connection dropped
                                                    mid-answer (subclass of ServerError)
ExecutionError         (none)                       a background job failed: an async
                                                    execution
BuildError             (none)                       a model's build failed (subclass of
                                                    ExecutionError)
TrainingRunError       (none)                       a training run Failed (subclass of
                                                    ExecutionError and TrainingError)
WaitTimeout            (none)                       ``wait_ready`` ran out of time
=====================  ===========================  ===========================================

The original SDK's other names are here too, so ``from neomaril_codex.exceptions import
TrainingError`` works: :class:`TrainingError` (a training run's failure is one, as
:class:`TrainingRunError`); :class:`GroupError`, :class:`PreprocessingError`,
:class:`PipelineError`, :class:`DataSorceError` (sic), :class:`DatasetNotFoundError`,
:class:`CredentialError` and :class:`ExternalMonitoringError` are never raised: their
features (preprocessing, pipelines, data sources and their cloud credentials, external
monitoring) are not part of this portal, and group errors keep the class of their cause
(``PermissionDeniedError``, ``NotFoundError``, ``InputError``…).
"""

from __future__ import annotations

from typing import Any, Dict, Optional

__all__ = [
    "AuthenticationError",
    "BuildError",
    "CredentialError",
    "DataSorceError",
    "DatasetNotFoundError",
    "ExecutionError",
    "ExternalMonitoringError",
    "GroupError",
    "InputError",
    "ModelError",
    "NeomarilError",
    "NetworkError",
    "NotFoundError",
    "PermissionDeniedError",
    "PipelineError",
    "PreprocessingError",
    "ServerError",
    "StateError",
    "TrainingError",
    "TooManyRequestsError",
    "TrainingRunError",
    "WaitTimeout",
    "error_for_status",
]


class NeomarilError(Exception):
    """Base class of every error raised by the SDK.

    Attributes:
        message: the readable message (the server's ``detail`` for HTTP errors).
        status_code: the HTTP status of the answer, or None when there was none.
        code: the server's machine-readable ``code`` (e.g. ``"not_deployed"``), or None.
        body: the whole JSON error answer (an empty dict when it was not JSON).
        retry_after: the seconds the answer's ``Retry-After`` asks to wait before trying
            again (a 429, a 503), or None.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: Optional[int] = None,
        code: Optional[str] = None,
        body: Optional[Dict[str, Any]] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.code = code
        self.body: Dict[str, Any] = body or {}
        self.retry_after = retry_after

    @property
    def errors(self) -> Dict[str, Any]:
        """For a 400: every field with its messages (``{"schema": ["..."]}``); else empty."""
        errors = self.body.get("errors")
        return errors if isinstance(errors, dict) else {}


class AuthenticationError(NeomarilError):
    """Missing, wrong, revoked or expired credentials (HTTP 401), or none configured."""


class PermissionDeniedError(AuthenticationError):
    """Authenticated, but not allowed to do this (HTTP 403): e.g. another group's token."""


class InputError(NeomarilError, ValueError):
    """Bad input: the server refused the request (400, 413, 422) or the SDK did before sending it."""


class StateError(InputError):
    """The object's state does not allow this (HTTP 409), e.g. predicting with a model
    that is still ``Building``."""


class ModelError(InputError):
    """The model's own code raised while answering (HTTP 422).

    The message ends with the model's traceback (user frames only), also in
    :attr:`traceback`.
    """

    @property
    def traceback(self) -> str:
        info = self.body.get("model_error")
        return str(info.get("traceback", "")) if isinstance(info, dict) else ""


class NotFoundError(NeomarilError):
    """No such object (HTTP 404) — or one that belongs to a group you are not in."""


class ServerError(NeomarilError):
    """The server, or the model behind it, could not answer (HTTP 5xx)."""


class NetworkError(ServerError):
    """The server could not be reached, or did not answer within the timeout."""


class TooManyRequestsError(ServerError):
    """Try again later (HTTP 429): the server is answering as many of these calls as it
    takes, or refuses logins from your address for a while. :attr:`retry_after` says how
    many seconds to wait."""


class ExecutionError(NeomarilError):
    """A background job failed. The message carries its error and the tail of its log.

    Attributes:
        log: the tail of the job's log (may be empty).
    """

    def __init__(self, message: str, *, log: str = "", **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.log = log


class BuildError(ExecutionError):
    """A model's build failed (status ``Failed``); the message ends with the build log's tail."""


class WaitTimeout(NeomarilError, TimeoutError):
    """``wait_ready`` gave up before the model or execution reached a final state."""


# The original SDK's names ------------------------------------------------------------------
# Its programs import and catch these; the features behind most of them are not part of
# this portal, so only TrainingError is ever raised (as TrainingRunError).


class TrainingError(NeomarilError):
    """Something went wrong with a training run (the original SDK's name): raised here as
    :class:`TrainingRunError` when a run Failed."""


class TrainingRunError(ExecutionError, TrainingError):
    """A training run Failed: an :class:`ExecutionError` (the message has its error and
    the end of its log, also in :attr:`log`) and a :class:`TrainingError`."""


class GroupError(NeomarilError):
    """The original SDK's error about groups. Never raised: a refused group call keeps
    the class of its cause (PermissionDeniedError, NotFoundError, InputError…)."""


class PreprocessingError(NeomarilError):
    """The original SDK's error about preprocessing scripts. Never raised: preprocessing
    is not part of this portal."""


class PipelineError(NeomarilError):
    """The original SDK's error about pipeline configurations. Never raised: pipelines are
    not part of this portal."""


class DataSorceError(NeomarilError):
    """The original SDK's error about data sources (its spelling). Never raised: data
    sources are not part of this portal."""


class DatasetNotFoundError(NotFoundError):
    """The original SDK's error for a missing dataset of a data source. Never raised."""


class CredentialError(NeomarilError):
    """The original SDK's error for a data source's invalid cloud credentials. Never
    raised: a refused login is an :class:`AuthenticationError`, as in the original."""


class ExternalMonitoringError(NeomarilError):
    """The original SDK's error about monitoring models served elsewhere. Never raised:
    external monitoring is not part of this portal."""


_BY_STATUS = {
    400: InputError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: StateError,
    413: InputError,
    422: ModelError,
    429: TooManyRequestsError,
}

# Answers of a server restarting, overloaded or behind a balancer between nodes: a wait
# asks again after them (base.polled), where any other error ends it.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})


def error_for_status(
    status_code: int, body: Optional[Dict[str, Any]], text: str = "", *, retry_after: Optional[str] = None
) -> NeomarilError:
    """The exception matching an error answer, with the server's ``detail`` as its message,
    followed by the answer's ``Retry-After`` (a 429, a 503) when it has one."""
    body = body or {}
    detail = body.get("detail")
    if not isinstance(detail, str) or not detail:
        snippet = " ".join(text.split())[:600]
        detail = f"HTTP {status_code}" + (f": {snippet}" if snippet else "")
    seconds = None
    if retry_after and retry_after.strip():
        wait = retry_after.strip()
        detail += f" (Retry-After: {wait} s)" if wait.isdigit() else f" (Retry-After: {wait})"
        seconds = float(wait) if wait.isdigit() else None  # an HTTP date: in the message only
    code = body.get("code") if isinstance(body.get("code"), str) else None
    if status_code in _BY_STATUS:
        cls = _BY_STATUS[status_code]
    elif status_code >= 500:
        cls = ServerError
    else:
        cls = InputError
    if cls is ModelError and code != "model_error":
        cls = InputError  # a 422 that is not the model's own failure
    if cls is ModelError:
        info = body.get("model_error")
        trace = info.get("traceback") if isinstance(info, dict) else None
        if trace:
            detail = f"{detail}\n\nThe model's traceback:\n{str(trace).rstrip()}"
    return cls(detail, status_code=status_code, code=code, body=body, retry_after=seconds)
