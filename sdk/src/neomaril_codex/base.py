"""The client base (connection, login, groups) and async executions.

Connect with arguments or with environment variables (a ``.env`` file in the working
directory is read first, without overriding variables already set):

==================  ===========================================================
NEOMARIL_URL        the portal's address, e.g. ``http://neomaril.example:8000``
NEOMARIL_USER       your username …
NEOMARIL_PASSWORD   … and password, exchanged for an API token on connection
NEOMARIL_TOKEN      or a personal API token (``nmu_…``) used as it is
NEOMARIL_GROUP      default ``group`` of ``create_model``
NEOMARIL_GROUP_TOKEN  the group token used to call models (``nmg_…``)
==================  ===========================================================
"""

from __future__ import annotations

import contextlib
import logging
import time
import weakref
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Type, Union

import requests

from neomaril_codex._args import first_token, whole_number
from neomaril_codex._dotenv import load_dotenv
from neomaril_codex._http import Connection, env
from neomaril_codex.exceptions import (
    TRANSIENT_STATUSES,
    AuthenticationError,
    ExecutionError,
    InputError,
    NeomarilError,
    NetworkError,
    ServerError,
    WaitTimeout,
)

__all__ = ["BaseNeomarilClient", "NeomarilExecution"]

logger = logging.getLogger(__name__)

EXECUTION_FINAL = ("Succeeded", "Failed")
LOG_TAIL_LINES = 40


def backoff(
    first: float = 0.5, factor: float = 1.5, cap: float = 10.0, steady_for: float = 0.0
) -> Iterator[float]:
    """Waits between status polls: quick at first (builds of small models take seconds),
    then slower, never more than `cap` seconds. With `steady_for`, the waits stay at
    `first` until that many seconds have been waited, and only then grow."""
    wait, waited = first, 0.0
    while True:
        yield wait
        waited += wait
        if waited >= steady_for:
            wait = min(wait * factor, cap)


# While the server does not answer a wait's poll, it asks again this often (or after the
# answer's Retry-After), at most this long apart.
OUTAGE_RETRY_SECONDS = 2.0
OUTAGE_RETRY_CAP_SECONDS = 30.0


def polled(poll: Callable[[], Any], what: str, deadline: float, log: logging.Logger) -> Any:
    """`poll()`, asked again through a server restart, an overload or a node leaving its
    balancer (no connection, 429, 502, 503, 504) until `deadline`: a wait is only reads,
    and a restart of a few seconds ended every wait while the job went on. Other errors,
    and the outage's last one at the deadline, are raised."""
    outage = False
    while True:
        try:
            state = poll()
        except NeomarilError as exc:
            transient = isinstance(exc, NetworkError) or exc.status_code in TRANSIENT_STATUSES
            remaining = deadline - time.monotonic()
            if not transient or remaining <= 0:
                raise
            if not outage:
                log.warning("%s: no answer from the server (%s); asking again until the wait ends", what, exc)
                outage = True
            time.sleep(min(exc.retry_after or OUTAGE_RETRY_SECONDS, OUTAGE_RETRY_CAP_SECONDS, remaining))
            continue
        if outage:
            log.warning("%s: the server answers again", what)
        return state


# Seconds a revocation at the interpreter's exit may take (a server gone must not hold the exit).
REVOKE_AT_EXIT_TIMEOUT = 3.0


def _revoke_quietly(session: requests.Session, url: str, token: str) -> None:
    with contextlib.suppress(Exception):
        session.delete(url, headers={"Authorization": f"Token {token}"}, timeout=REVOKE_AT_EXIT_TIMEOUT)


def log_tail(log: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(log.rstrip().splitlines()[-lines:])


def wait_finished(
    poll: Callable[[], Dict[str, Any]],
    key: str,
    what: str,
    failure: Callable[[Dict[str, Any]], Exception],
    timeout: float,
    log: logging.Logger,
    *,
    done: Sequence[str] = ("Succeeded",),
    failed: Sequence[str] = ("Failed",),
) -> Dict[str, Any]:
    """Wait until a job (an execution, a training run, a monitoring's validation or
    period) has finished, polling with a growing interval.

    Args:
        poll: fetches the job's state now; `key` is its status (Succeeded, Failed…).
        what: the job, for people: "Execution 5 of M…".
        failure: the exception raised for a failed job's last state.
        timeout: seconds to wait at most.
        log: the caller's logger, told each new status.
        done, failed: the statuses that end the wait, well or badly.

    Returns:
        The job's last state (its status one of `done`).

    Raises:
        the `failure` of a failed job, or WaitTimeout after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    last = None
    for wait in backoff():
        state = polled(poll, what, deadline, log)
        if state[key] != last:
            last = state[key]
            log.info("%s: %s", what, last, stacklevel=2)
        if last in done:
            return state
        if last in failed:
            raise failure(state)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(f"{what} is still {last} after {timeout:g} s.")
        time.sleep(min(wait, remaining))
    raise AssertionError("unreachable")  # pragma: no cover


def failure_with_log(
    what: str,
    error: Optional[str],
    get_logs: Callable[[], str],
    body: Dict[str, Any],
    cls: Type[ExecutionError] = ExecutionError,
) -> ExecutionError:
    """The ExecutionError (or subclass `cls`) of a Failed job: "<what> failed: <error>",
    then the end of its log."""
    try:
        tail = log_tail(get_logs())
    except Exception as exc:  # the failure matters more than its log
        tail = f"(the log could not be read: {exc})"
    message = f"{what} failed: {error or 'no message'}"
    if tail:
        message += f"\n--- end of its log ---\n{tail}"
    return cls(message, log=tail, body=body)


def _load_dotenv() -> None:
    path = Path.cwd() / ".env"
    try:
        loaded = load_dotenv(path)
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(
            f"Could not read {path}, where the client looks for NEOMARIL_* settings: {exc}. "
            "Save it as UTF-8 and make it readable, or run from another folder."
        ) from None
    if loaded:
        logger.info("Loading .env (%s)", ", ".join(sorted(loaded)))


class BaseNeomarilClient:
    """Connection to a Neomaril portal, and its groups.

    Args:
        login: your username (default: ``NEOMARIL_USER``).
        password: your password (default: ``NEOMARIL_PASSWORD``); with `login`, it is
            exchanged for a personal API token on connection.
        url: the portal's address (default: ``NEOMARIL_URL``).
        token: a personal API token (default: ``NEOMARIL_TOKEN``), instead of a password.
        timeout: seconds to wait for an answer (default 60).
        upload_timeout: seconds to wait while uploading files (default 600).
        progress: show a progress bar while uploading: None (default) when running in
            a terminal or a notebook and the upload is over 1 MB, True always, False never.
        verify: TLS certificate verification, or the path of a CA bundle.
        session: a ``requests.Session`` to send requests with (proxies, client
            certificates, custom adapters); a new one by default.

    Raises:
        AuthenticationError: no credentials, or the server refused them.
        InputError: no URL.
        NetworkError: the server could not be reached.

    Explicit arguments win over the environment; a username and password (arguments
    or environment) win over ``NEOMARIL_TOKEN`` only when given as arguments.
    """

    def __init__(
        self,
        login: Optional[str] = None,
        password: Optional[str] = None,
        url: Optional[str] = None,
        *,
        token: Optional[str] = None,
        timeout: float = 60.0,
        upload_timeout: float = 600.0,
        progress: Optional[bool] = None,
        verify: Union[bool, str] = True,
        session: Optional[requests.Session] = None,
    ) -> None:
        _load_dotenv()
        url = url or env("NEOMARIL_URL")
        if not url:
            raise InputError("No Neomaril URL: pass url= or set NEOMARIL_URL (e.g. in a .env file).")
        self._conn = Connection(
            url,
            timeout=timeout,
            upload_timeout=upload_timeout,
            progress=progress,
            verify=verify,
            session=session,
        )
        self.url = self._conn.url
        self._issued_token_id: Optional[str] = None
        self._revoke_later: Optional[weakref.finalize] = None
        self.user: Dict[str, Any] = {}
        self._authenticate(login, password, token)

    def _authenticate(self, login: Optional[str], password: Optional[str], token: Optional[str]) -> None:
        explicit_password = bool(login or password)
        login = login or env("NEOMARIL_USER")
        password = password or env("NEOMARIL_PASSWORD")
        token = first_token(
            (token, "token="), (None if explicit_password else env("NEOMARIL_TOKEN"), "NEOMARIL_TOKEN")
        )
        if token:
            self._conn.user_token = token
            self.user = self._conn.get_json("/auth/me", ())
        elif login and password:
            answer = self._conn.post_json(
                "/auth/login",
                {"username": login, "password": password, "token_name": "neomaril_codex"},
                auth=False,
            )
            if not isinstance(answer, dict) or not answer.get("token"):
                raise ServerError(
                    f"The login at {self._conn.absolute('/auth/login')} answered without a token: "
                    f"{str(answer)[:200]}. Is NEOMARIL_URL (url=) the portal's address?"
                )
            self._conn.user_token = answer["token"]
            self._issued_token_id = answer.get("token_id")
            self.user = answer.get("user", {})
            if self._issued_token_id:
                # Scripts that never call close() (the original's examples don't) left a
                # live token per run. Revoked once nothing uses the connection (the client,
                # its models and executions share it), or when the interpreter exits.
                self._revoke_later = weakref.finalize(
                    self._conn,
                    _revoke_quietly,
                    self._conn.session,
                    self._conn.absolute(f"/auth/tokens/{self._issued_token_id}"),
                    answer["token"],
                )
        else:
            missing = "NEOMARIL_PASSWORD" if login else "NEOMARIL_USER" if password else None
            raise AuthenticationError(
                "No credentials for Neomaril: set NEOMARIL_USER and NEOMARIL_PASSWORD, or NEOMARIL_TOKEN "
                "(environment or a .env file), or pass login= and password=, or token=."
                + (f" {missing} is missing." if missing else "")
            )
        logger.info("Connected to Neomaril at %s as %s", self.url, self.user.get("username", "?"))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} as {self.user.get('username', '?')!r}>"

    def __enter__(self) -> BaseNeomarilClient:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Revoke the API token this client got by logging in (if any) and close its connections.

        A client given a token (``token=``/``NEOMARIL_TOKEN``) leaves it valid.
        """
        if self._revoke_later is not None:
            self._revoke_later.detach()  # revoked here, with the warning below when it can't be
        if self._issued_token_id and self._conn.user_token:
            try:
                self._conn.request("DELETE", f"/auth/tokens/{self._issued_token_id}")
            except Exception as exc:  # closing must not fail because the server is gone
                logger.warning("Could not revoke the session's API token: %s", exc)
            self._issued_token_id = None
        self._conn.user_token = None
        self._conn.closed = True
        self._conn.session.close()

    # Groups ------------------------------------------------------------------------------

    def create_group(self, name: str, description: str = "") -> str:
        """Create a group (admins only) and return its token.

        The group token is shown only now: store it (e.g. in ``NEOMARIL_GROUP_TOKEN``).
        Models of the group are called with it.

        Args:
            name: the group's name (letters, digits, ``-`` and ``_``).
            description: a short description.

        Returns:
            The group token (``nmg_…``).
        """
        answer = self._conn.post_json("/groups", {"name": name, "description": description}, ("group_token",))
        logger.info(
            "Group '%s' created. Its token is returned only this once: store it (e.g. in NEOMARIL_GROUP_TOKEN).",
            name,
        )
        return answer["group_token"]

    def list_groups(self) -> List[Dict[str, Any]]:
        """Your groups (admins: all of them), each with its members and token prefix and expiry."""
        return self._conn.get_json("/groups")

    def refresh_group_token(self, name: str, force: bool = False) -> Optional[str]:
        """Issue a new token for the group `name` (admins and the group's owners).

        A token that is still valid is kept unless `force` is True; a new token
        replaces the old one at once (callers using it stop working).

        Returns:
            The new group token, or None when the current one was kept.
        """
        answer = self._conn.post_json(f"/groups/{name}/refresh-token", {"force": force}, ())
        logger.info("Group '%s': %s", name, answer.get("detail", ""))
        return answer.get("group_token") if answer.get("refreshed") else None


class ExecutionStatus(str):
    """An execution's status, ``'Succeeded'``, that also reads as the original product's
    answer: ``status['Status']``, ``status['ExecutionId']`` and ``status['Message']`` (a
    Failed execution's error, else None). Its notebooks read ``get_status()['Status']``."""

    _fields: Dict[str, Any]

    def __new__(cls, status: str, fields: Dict[str, Any]) -> ExecutionStatus:
        made = super().__new__(cls, status)
        made._fields = fields
        return made

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return self._fields[key]
        return str.__getitem__(self, key)

    def keys(self) -> Any:
        return self._fields.keys()

    def get(self, key: str, default: Any = None) -> Any:
        return self._fields.get(key, default)


class NeomarilExecution:
    """One execution of an Async model: its status, its log and its result file.

    You get one from ``NeomarilModel.predict(path)`` or ``NeomarilModel.get_execution(n)``
    (``get_model_execution(n)``, the original's name).

    Attributes:
        execution_id: the execution's number (1, 2, 3 … per model).
        model_hash: the model it belongs to.
        status: the last status seen: Requested, Running, Succeeded or Failed.

    Calls use the group token given to ``predict``/``set_token``, else
    ``NEOMARIL_GROUP_TOKEN``, else your own login (members of the group may read
    executions).
    """

    def __init__(
        self,
        connection: Connection,
        model_hash: str,
        execution_id: int,
        *,
        group_token: Optional[str] = None,
        info: Optional[Dict[str, Any]] = None,
    ) -> None:
        self._conn = connection
        self.model_hash = model_hash
        self.execution_id = whole_number("execution_id", execution_id)
        self._group_token = group_token
        self._info: Dict[str, Any] = dict(info or {})
        self.status: str = self._info.get("status", "Requested")

    @property
    def exec_id(self) -> int:
        """The execution's number, under the original product's name for it."""
        return self.execution_id

    def __repr__(self) -> str:
        return f"<NeomarilExecution {self.execution_id} of {self.model_hash} {self.status}>"

    @property
    def url(self) -> str:
        """The execution's API URL."""
        return self._conn.absolute(f"/run/{self.model_hash}/executions/{self.execution_id}")

    def _headers(self) -> Dict[str, str]:
        token = first_token(
            (self._group_token, "the execution's group_token"),
            (env("NEOMARIL_GROUP_TOKEN"), "NEOMARIL_GROUP_TOKEN"),
        )
        return self._conn.group_headers(token) if token else self._conn.user_headers()

    def execution_info(self) -> Dict[str, Any]:
        """Everything the server says about the execution: status, times, duration, input
        and output files and sizes, ``error_message``, URLs."""
        self._info = self._conn.get_json(self.url, ("status",), headers=self._headers())
        self.status = self._info["status"]
        return dict(self._info)

    @property
    def execution_data(self) -> Dict[str, Any]:
        """The execution's details, fetched now (the same as :meth:`execution_info`), under
        the original product's name for them."""
        return self.execution_info()

    def get_status(self) -> ExecutionStatus:
        """The execution's current status: Requested, Running, Succeeded or Failed, a string
        that also reads as the original product's dict (``['Status']``, ``['ExecutionId']``,
        ``['Message']``: see ExecutionStatus)."""
        info = self.execution_info()
        fields = {
            "ExecutionId": self.execution_id,
            "Status": info["status"],
            "Message": info.get("error_message") or None,
        }
        return ExecutionStatus(info["status"], fields)

    def get_logs(self) -> str:
        """The execution's log: the model's stdout and stderr, timestamped."""
        return self._conn.get_json(self.url + "/log", ("log",), headers=self._headers())["log"]

    def wait_ready(self, timeout: float = 3600.0) -> NeomarilExecution:
        """Wait until the execution has finished, polling with a growing interval.

        Args:
            timeout: seconds to wait at most.

        Returns:
            The execution itself, Succeeded.

        Raises:
            ExecutionError: it Failed; the message has its error and the end of its log.
            WaitTimeout: still not finished after `timeout` seconds.
        """
        what = f"Execution {self.execution_id} of {self.model_hash}"
        wait_finished(self.execution_info, "status", what, self._failure, timeout, logger)
        return self

    def _failure(self, info: Dict[str, Any]) -> ExecutionError:
        what = f"Execution {self.execution_id} of {self.model_hash}"
        return failure_with_log(what, info.get("error_message"), self.get_logs, info)

    def download_result(self, path: str = "./", filename: Optional[str] = None) -> str:
        """Download the result file of a Succeeded execution, streamed to disk.

        Args:
            path: the folder to save it in (created if missing); the current one by default.
            filename: the name to save it under; by default the name the model gave it,
                with a leading dot made ``_`` (``.env`` is saved as ``_env``).

        Returns:
            The path of the saved file.

        Raises:
            StateError: the execution has not Succeeded (yet); the message says why.
            NotFoundError: the result is no longer on the server (removed by retention, or
                deleted by hand); the message says which.
            InputError: `path` is a file, not a folder.
            NetworkError: the connection was dropped during the download; nothing is kept.
        """
        target = self._conn.download(
            self.url + "/result",
            path,
            filename=filename,
            default=f"execution_{self.execution_id}_result",
            headers=self._headers(),
        )
        logger.info("Result of execution %s saved to %s", self.execution_id, target)
        return str(target)
