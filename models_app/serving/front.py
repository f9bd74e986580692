"""The ASGI fast path for Sync calls: `POST /api/v1/run/<hash>` answered on the event loop.

A prediction is the product's hot path: the platform's own work per call must stay
well under the model's. Django's request cycle costs about as much CPU as a small
model, so under gunicorn's uvicorn workers (portal.asgi) this app answers authorised
calls to deployed Sync models itself: the model and token lookup (run_api's query),
the body check, the runner round trip on pooled asyncio connections, recording.

Everything else goes to Django through the WSGI bridge, and so does every call this
path cannot serve as a plain success — no or unknown token, other group, unknown or
undeployed model, Async model, disallowed host, a redirect to HTTPS — so each error
keeps one implementation (run_api) and one wording. A revoked token or a disabled
model is refused from the next call on (SQLite), or once PostgreSQL's notification of
the commit has arrived (see CallLookup). One error is answered here: a lookup that finds
the database unreachable gets the 503 Django gives every API URL then (answers.
database_unavailable), rather than a trip through Django to wait on the database again.

The decision needs the headers alone (`accept`), and the answer the whole body
(`answer`): the web worker's HTTP protocol (portal.workers.WebProtocol) calls
`accept_now` and `answer` itself, without an ASGI request cycle, whenever the lookup
can answer without waiting; the ASGI entry (`__call__`) serves the calls it leaves to
uvicorn (on PostgreSQL, those whose lookup is not cached), and every other ASGI server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import mmap
import os
import re
import sqlite3
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from django.conf import settings
from django.core.signals import setting_changed
from django.db import DatabaseError, connections
from django.http.request import split_domain_port, validate_host
from django.urls import reverse
from rest_framework.exceptions import AuthenticationFailed

from groups import tokens
from groups.api.errors import error_json
from groups.authentication import credentials_from_header, group_token_problem
from groups.outages import RepeatedFailure
from models_app.calls import CALL_SQL, CalledModel, CallTarget, call_target, lookup_call
from models_app.models import MLModel
from models_app.serving.aio import AsyncRunnerPool, ServingError
from models_app.serving.answers import (
    DATABASE_OUTAGE_ERRORS,
    DATABASE_RETRY_AFTER,
    BadInput,
    answer_for_payload,
    answer_for_serving_error,
    body_too_slow,
    check_input,
    count,
    database_busy,
    database_unavailable,
    record,
    too_large,
)
from models_app.serving.headers import joined_header

logger = logging.getLogger(__name__)

DEPLOYED = MLModel.Status.DEPLOYED.value
SYNC = MLModel.Operation.SYNC.value
# With every 503 of the run URL: the database unreachable (database_unavailable()), the
# model host or a runner restarting, a model that could not start yet.
RETRY_LATER = ((b"retry-after", str(DATABASE_RETRY_AFTER).encode()),)

HeaderGetter = Callable[[bytes], bytes | None]  # a request header's value by its lower-case name
Accepted = tuple[CalledModel, bool]  # the model called, and whether the call came over HTTPS


class WalIndexHeader:
    """The header of a SQLite database's WAL index (its `-shm` file), read from memory.

    Every commit changes it (a change counter, the last frame, the salts: sqlite.org/
    walformat.html, "The WAL-Index Header"), so a header byte for byte as last seen means
    nothing was committed since. Reading it costs a memory copy; `PRAGMA data_version`
    costs a read transaction, with two fcntl locks, which was about 7 % of the web
    worker's main thread under load.

    SQLite keeps two copies and a writer updates the second one first: copies that
    differ are a commit in progress. `header()` answers None whenever it can't vouch
    for the header: not open (yet), a write in progress, not initialised, a layout
    version other than the one documented. The caller then asks SQLite. The file stays
    the same while the caller's own connection is open: SQLite truncates or deletes it
    only when no connection has the database open.
    """

    VERSION = 3007000  # iVersion of the layout described in walformat.html
    SIZE = 48

    def __init__(self, database_path: str) -> None:
        self._path = database_path + "-shm"
        self._map: mmap.mmap | None = None
        self._tried = False

    def open(self) -> None:
        """Map the header: once, after the caller's connection has read the database (in
        WAL mode, that maps the -shm file). Another journal mode, or an in-memory
        database, has no such file: `header()` then stays None."""
        if self._tried:
            return
        self._tried = True
        try:
            with open(self._path, "rb") as file:
                if os.fstat(file.fileno()).st_size >= 2 * self.SIZE:
                    self._map = mmap.mmap(file.fileno(), 2 * self.SIZE, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            self._map = None

    def header(self) -> bytes | None:
        shared = self._map
        if shared is None:
            return None
        first = shared[: self.SIZE]
        if first != shared[self.SIZE : 2 * self.SIZE]:
            return None
        if int.from_bytes(first[:4], sys.byteorder) != self.VERSION or not first[12]:
            return None
        return first


class NotCached(Exception):
    """`CallLookup.now` has no answer it can vouch for: await the lookup instead."""


class DatabaseUnreachable(Exception):
    """The call's lookup found the database unreachable: the call is answered 503."""

    def __init__(self, secure: bool) -> None:
        super().__init__()
        self.secure = secure  # whether the call came over HTTPS (the answer's headers)


class CommitListener:
    """PostgreSQL's word that the tables the call lookup reads have changed.

    A trigger on each of them (migration 0011) sends a notification on CHANNEL at every
    commit that writes to them; this listens on a connection of its own, on the web
    worker's event loop, and calls `on_change` for each one. The lookup's answers can be
    reused while it is `live()`: for 2 × HEARTBEAT after the last proof that
    notifications reach it. The proof is a notification it sends itself, every
    HEARTBEAT, on a channel of its own: a connection that breaks, a server that stops
    answering, or a pooler that does not carry notifications all end the reuse within
    that time. After a reconnection `on_change` is called once, for whatever was
    committed while nobody listened.
    """

    CHANNEL = "neomaril_calls"  # the migration's
    HEARTBEAT = 1.0  # seconds between proofs
    PROBE_SQL = "SELECT pg_notify(%s, '')"
    RETRY = (0.5, 5.0)  # seconds before reconnecting: first, and at most

    def __init__(self, connection_params: dict, on_change: Callable[[], None]) -> None:
        self._params = connection_params
        self._on_change = on_change
        self._live_until = 0.0
        self._task: asyncio.Task | None = None
        self._failing = False
        self._retry = self.RETRY[0]
        self.backend_pid: int | None = None  # the listening connection's server process

    def live(self) -> bool:
        return time.monotonic() < self._live_until

    def start(self) -> None:
        """Listen from the running loop on (once per loop: a loop that ended took its task with it)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        self._failing = False
        self._retry = self.RETRY[0]
        try:
            while True:
                try:
                    await self._listen()
                except Exception as exc:  # the server went away, stopped answering, or lost notifications
                    if asyncio.current_task().cancelling():  # see _listen
                        raise asyncio.CancelledError from exc
                    self._live_until = 0.0
                    self._on_change()
                    if not self._failing:
                        logger.warning(
                            "listening for changes to the run calls' lookup failed (%s): every call "
                            "asks the database until it works again",
                            exc or type(exc).__name__,
                        )
                        self._failing = True
                await asyncio.sleep(self._retry)
                self._retry = min(self._retry * 2, self.RETRY[1])
        finally:
            self._live_until = 0.0
            self.backend_pid = None

    def _proven(self) -> None:
        self._live_until = time.monotonic() + 2 * self.HEARTBEAT
        if self._failing:
            logger.warning("listening for changes to the run calls' lookup works again")
            self._failing = False
        self._retry = self.RETRY[0]

    async def _listen(self) -> None:
        import psycopg  # only PostgreSQL deployments have a listener

        probe = f"neomaril_listener_{os.getpid()}_{id(self)}"
        async with await psycopg.AsyncConnection.connect(**self._params, autocommit=True) as db:
            await db.execute(f"LISTEN {self.CHANNEL}")
            await db.execute(f"LISTEN {probe}")
            self.backend_pid = db.info.backend_pid
            self._on_change()  # anything may have changed while nobody listened
            while True:
                await asyncio.wait_for(db.execute(self.PROBE_SQL, (probe,)), self.HEARTBEAT)
                proven = False
                async for notification in db.notifies(timeout=self.HEARTBEAT):
                    if notification.channel == probe:
                        proven = True
                        self._proven()
                    else:
                        self._on_change()
                # psycopg waits with asyncio.wait_for, which before Python 3.12 can swallow a
                # cancellation that comes as its wait ends: the loop's end would wait forever.
                if asyncio.current_task().cancelling():
                    raise asyncio.CancelledError
                if not proven:
                    raise TimeoutError(f"its own notification did not come back within {self.HEARTBEAT} s")


class CallLookup:
    """CALL_SQL for the event loop, with its answers reused for as long as nothing the
    query reads has changed: a token's expiry is still checked on every call, from the
    time it holds.

    SQLite answers a point query in microseconds, so it runs inline on a connection of
    its own (a hop to a thread would cost more than the query), and its answers are
    reused while no connection has committed anything since: exact. `PRAGMA
    data_version` says so, and is asked only when the WAL index's header has changed
    (WalIndexHeader).

    PostgreSQL is a network round trip away: one thread per process runs lookup_call on
    Django's connection, so the loop never waits on the network. Its answers are reused
    while the CommitListener is live, until its next notification: a revoked token or a
    disabled model is refused once the notification has arrived, which leaves the server
    at the commit. Without a live listener every call asks.
    """

    MAX_CACHED = 1024  # (model, token) pairs; the token is the caller's choice

    def __init__(self) -> None:
        database = connections["default"]
        self._sqlite_name = database.settings_dict["NAME"] if database.vendor == "sqlite" else None
        self._sqlite: sqlite3.Connection | None = None
        self._sql = CALL_SQL.replace("%s", "?")
        self._data_version = None
        self._commits = WalIndexHeader(str(self._sqlite_name)) if self._sqlite_name else None
        self._seen_header: bytes | None = None
        self._cache: dict[tuple[str, str], CallTarget | None] = {}
        self._executor: ThreadPoolExecutor | None = None
        self.listener: CommitListener | None = None
        self._changes = 0  # notifications so far: a lookup that saw one arrive is not reused
        if database.vendor == "postgresql":
            params = database.get_connection_params()
            for synchronous_only in ("cursor_factory", "context"):
                params.pop(synchronous_only, None)
            self.listener = CommitListener(params, self._changed)

    @property
    def inline_sqlite(self) -> bool:
        """Whether this is SQLite's lookup, on a connection of its own in the caller's thread."""
        return self._sqlite_name is not None

    @property
    def inline(self) -> bool:
        """Whether `now` may answer: always on SQLite; on PostgreSQL from the reused
        answers (NotCached when it has none); on other databases never."""
        return self._sqlite_name is not None or self.listener is not None

    async def __call__(self, model_hash: str, token: str) -> CallTarget | None:
        if self._sqlite_name is not None:
            return self._sqlite_lookup(model_hash, token)
        listener = self.listener
        if listener is not None:
            listener.start()
            with contextlib.suppress(NotCached):
                return self.now(model_hash, token)
        changes = self._changes
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="call-lookup")
        target = await asyncio.get_running_loop().run_in_executor(
            self._executor, self._django_lookup, model_hash, token
        )
        if listener is not None and listener.live() and self._changes == changes:
            self._remember((model_hash, token), target)
        return target

    def now(self, model_hash: str, token: str) -> CallTarget | None:
        """The lookup, answered without waiting: only when `inline`."""
        if self._sqlite_name is not None:
            return self._sqlite_lookup(model_hash, token)
        if self.listener is None:
            raise RuntimeError("this database's lookup runs on a thread: await the lookup instead")
        key = (model_hash, token)
        if not self.listener.live() or key not in self._cache:
            raise NotCached
        return self._cache[key]

    def _changed(self) -> None:
        self._changes += 1
        self._cache.clear()

    def _remember(self, key: tuple[str, str], target: CallTarget | None) -> None:
        if len(self._cache) >= self.MAX_CACHED:
            self._cache.clear()
        self._cache[key] = target

    def _sqlite_lookup(self, model_hash: str, token: str) -> CallTarget | None:
        database = self._sqlite
        if database is None:
            # Autocommit: every statement is its own read and sees the latest commit (WAL).
            database = self._sqlite = sqlite3.connect(
                str(self._sqlite_name), isolation_level=None, check_same_thread=False, timeout=5
            )
            database.execute("PRAGMA query_only = ON")
        header = self._commits.header()
        if header is None or header != self._seen_header:
            (version,) = database.execute("PRAGMA data_version").fetchone()
            if version != self._data_version:
                self._cache.clear()
                self._data_version = version
            self._seen_header = header  # read before the PRAGMA: a commit in between is seen next time
            self._commits.open()
        key = (model_hash, token)
        try:
            return self._cache[key]
        except KeyError:
            pass
        row = database.execute(self._sql, (tokens.digest(token), model_hash)).fetchone()
        target = call_target(model_hash, row)
        self._remember(key, target)
        return target

    @staticmethod
    def _django_lookup(model_hash: str, token: str) -> CallTarget | None:
        try:
            return lookup_call(model_hash, token)
        except DatabaseError:
            connections["default"].close()  # reconnect on the next call
            raise


def _header(scope: dict, name: bytes) -> bytes | None:
    return joined_header(scope["headers"], name)


def _bearer(value: bytes | None) -> str | None:
    """The token of a well-formed `Bearer <token>` header (anything else: Django says why)."""
    try:
        return credentials_from_header(value or b"", "Bearer")
    except AuthenticationFailed:
        return None


class ServingFront:
    def __init__(self, fallback) -> None:
        self.fallback = fallback
        # The run URL as routed (run_urls: "<str:model_hash>"), so the two can't drift.
        prefix = reverse("run-model", kwargs={"model_hash": "M"})[:-1]
        # No NUL in a hash: such a path (and a query with one) is Django's 404 or 400
        # (portal.nul_bytes); PostgreSQL could not even look it up.
        self.run_path = re.compile(re.escape(prefix) + r"([^/\x00]+)")
        self.pool = AsyncRunnerPool()
        self.lookup = CallLookup()
        # The database away fails every call's lookup: logged once per outage.
        self._lookup_failures = RepeatedFailure(logger, "looking up calls in the database")
        self._read_settings()
        setting_changed.connect(self._setting_changed)  # override_settings, in tests

    def _read_settings(self) -> None:
        """What the settings say for every call, read once: a read through Django's
        LazySettings costs about half a microsecond, and a call needs several."""
        self.max_body = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        self.body_timeout = settings.REQUEST_BODY_TIMEOUT
        self._host_header = b"x-forwarded-host" if settings.USE_X_FORWARDED_HOST else b"host"
        self._ssl_redirect = settings.SECURE_SSL_REDIRECT
        self._proxy_ssl_header: tuple[bytes, str] | None = None
        if settings.SECURE_PROXY_SSL_HEADER:
            name, expected = settings.SECURE_PROXY_SSL_HEADER
            self._proxy_ssl_header = (name.removeprefix("HTTP_").lower().replace("_", "-").encode(), expected)
        self._hosts: dict[bytes, bool] = {}
        self._headers = {secure: self._security_headers(secure) for secure in (False, True)}

    def _setting_changed(self, **_kwargs) -> None:
        self._read_settings()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and not scope.get("root_path"):
            model_hash = self.run_call_hash(scope["path"], scope.get("query_string", b""))
            if model_hash is not None and await self._serve(model_hash, scope, receive, send):
                return
        await self.fallback(scope, receive, send)

    def run_call_hash(self, path: str, query: bytes = b"") -> str | None:
        """The model hash of a run URL's path, else None (also for a query string with a
        NUL, %00: Django refuses it, as on every URL)."""
        if b"%00" in query:
            return None
        match = self.run_path.fullmatch(path)
        return None if match is None else match[1]

    # -------------------------------------------------------------- the fast path

    async def _serve(self, model_hash: str, scope, receive, send) -> bool:
        """Answer the call, or return False (before reading the body) to let Django answer."""

        def header(name: bytes) -> bytes | None:
            return _header(scope, name)

        try:
            accepted = await self.accept(model_hash, header, scope.get("scheme"))
        except DatabaseUnreachable as outage:  # answered before the body is read
            status, content = database_unavailable()
            await self._respond(send, status, content, outage.secure, RETRY_LATER)
            return True
        if accepted is None:
            return False
        model, secure = accepted
        started = time.perf_counter()
        try:
            body = await self._read_body(scope, receive)
        except BadInput as problem:
            status, content = self.refuse(model, problem, started)
        except _Disconnected:
            return True
        else:
            status, content = await self.answer(model, body, started)
        await self._respond(send, status, content, secure, RETRY_LATER if status == 503 else ())
        return True

    async def accept(self, model_hash: str, header: HeaderGetter, scheme: str | None) -> Accepted | None:
        """The model and whether the call came over HTTPS, when this path may answer the call
        with these headers; None leaves it to Django. Decided before the body is read.
        Raises DatabaseUnreachable when the lookup could not reach the database."""
        head = self._head(header, scheme)
        if head is None:
            return None
        token, secure = head
        try:
            target = await self._lookup(model_hash, token)
        except DATABASE_OUTAGE_ERRORS as exc:
            if database_busy(exc):  # past the lookup's 5 s: Django's connection waits longer
                logger.warning(
                    "looking up the call to %s found the database busy: left to Django", model_hash
                )
                return None
            self._lookup_failures.failed(exc, "calls are answered 503 until a lookup works again")
            raise DatabaseUnreachable(secure) from exc
        except Exception:  # not the database being away: Django answers (and reports) it
            logger.exception("looking up the call to %s failed", model_hash)
            return None
        self._lookup_failures.worked()
        return self._servable(target, secure)

    async def _lookup(self, model_hash: str, token: str) -> CallTarget | None:
        try:
            return await self.lookup(model_hash, token)
        except DATABASE_OUTAGE_ERRORS:
            if self.lookup.inline_sqlite:
                raise
        # The lookup's thread keeps its connection from call to call, and the first call after
        # a restart of the server meets it closed; the lookup then dropped it. One more try, on
        # a new connection, tells a restart that is over from an outage (answered 503).
        return await self.lookup(model_hash, token)

    def accept_now(self, model_hash: str, header: HeaderGetter, scheme: str | None) -> Accepted | None:
        """`accept` without waiting, for a lookup that answers inline: what the web worker's
        HTTP protocol calls as soon as a request's headers are in. None also when the
        lookup has no answer it can vouch for (PostgreSQL): the ASGI path then awaits it."""
        head = self._head(header, scheme)
        if head is None:
            return None
        token, secure = head
        try:
            target = self.lookup.now(model_hash, token)
        except NotCached:
            return None
        except DATABASE_OUTAGE_ERRORS:  # the ASGI path's lookup meets it too, and answers the 503
            return None
        except Exception:  # Django answers (and reports) it
            logger.exception("looking up the call to %s failed", model_hash)
            return None
        return self._servable(target, secure)

    def _head(self, header: HeaderGetter, scheme: str | None) -> tuple[str, bool] | None:
        """The call's token and whether it came over HTTPS, if its headers let this path answer."""
        if not self._host_allowed(header):
            return None
        secure = self._is_secure(header, scheme)
        if self._ssl_redirect and not secure:
            return None
        token = _bearer(header(b"authorization"))
        if token is None:
            return None
        return token, secure

    @staticmethod
    def _servable(target: CallTarget | None, secure: bool) -> Accepted | None:
        if target is None:
            return None
        model = target.model
        if (
            model.status != DEPLOYED
            or model.operation != SYNC
            or group_token_problem(target.token, model.group_id) is not None
        ):
            return None
        return model, secure

    async def answer(self, model: CalledModel, body: bytes, started: float) -> tuple[int, bytes]:
        """The status and JSON of the answer to an accepted call's whole body: checked,
        run by the model, counted and recorded."""
        try:
            text = check_input(body, model.schema_is_object)
        except BadInput as problem:
            return self.refuse(model, problem, started)
        try:
            status, content = answer_for_payload(await self.pool.predict(model, text))
        except ServingError as exc:
            status, content = answer_for_serving_error(exc.status, exc.message, exc.code)
        except Exception as exc:  # answer in the API's shape, and keep the traceback in the log
            logger.exception("serving %s failed", model.model_hash)
            status, content = 500, error_json(f"Internal error while serving the model: {exc}", "error")
        record(model, text, status, content, started)
        return status, content

    @staticmethod
    def refuse(model: CalledModel, problem: BadInput, started: float) -> tuple[int, bytes]:
        """The answer to a body the model can't be given (counted, not recorded)."""
        count(model, problem.status, started)
        return problem.status, error_json(problem.detail, problem.code)

    def headers_for(self, secure: bool) -> list[tuple[bytes, bytes]]:
        """The headers of an answer besides its length (and the server's date)."""
        return self._headers[secure]

    async def _read_body(self, scope, receive) -> bytes:
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            raise too_large(self.max_body)
        try:
            return await asyncio.wait_for(self._whole_body(receive), self.body_timeout)
        except TimeoutError:
            raise body_too_slow(self.body_timeout) from None

    async def _whole_body(self, receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Disconnected
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                raise too_large(self.max_body)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    async def _respond(
        self, send, status: int, content: bytes, secure: bool, extra: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-length", str(len(content)).encode()), *self._headers[secure], *extra],
            }
        )
        await send({"type": "http.response.body", "body": content})

    # ------------------------------------------- what Django's middleware would do

    def _host_allowed(self, header: HeaderGetter) -> bool:
        """ALLOWED_HOSTS, as HttpRequest.get_host() checks it (Django answers the 400)."""
        host = header(self._host_header)
        if host is None:
            return False
        allowed = self._hosts.get(host)
        if allowed is None:
            allowed_hosts = settings.ALLOWED_HOSTS
            if settings.DEBUG and not allowed_hosts:
                allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
            domain, _port = split_domain_port(host.decode("latin-1"))
            allowed = bool(domain) and validate_host(domain, allowed_hosts)
            if len(self._hosts) < 256:  # bounded: the Host header is the client's choice
                self._hosts[host] = allowed
        return allowed

    def _is_secure(self, header: HeaderGetter, scheme: str | None) -> bool:
        if self._proxy_ssl_header is not None:
            name, expected = self._proxy_ssl_header
            value = header(name)
            if value is not None:
                return value.decode("latin-1").split(",")[0].strip() == expected
        return scheme == "https"

    @staticmethod
    def _security_headers(secure: bool) -> list[tuple[bytes, bytes]]:
        """A JSON answer's type, and the headers SecurityMiddleware and XFrameOptionsMiddleware add."""
        headers = [(b"content-type", b"application/json")]
        if secure and settings.SECURE_HSTS_SECONDS:
            value = f"max-age={settings.SECURE_HSTS_SECONDS}"
            if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
                value += "; includeSubDomains"
            if settings.SECURE_HSTS_PRELOAD:
                value += "; preload"
            headers.append((b"strict-transport-security", value.encode()))
        if settings.SECURE_CONTENT_TYPE_NOSNIFF:
            headers.append((b"x-content-type-options", b"nosniff"))
        policy = settings.SECURE_REFERRER_POLICY
        if policy:
            if not isinstance(policy, str):
                policy = ",".join(policy)
            headers.append((b"referrer-policy", policy.encode()))
        if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
            headers.append(
                (b"cross-origin-opener-policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY.encode())
            )
        headers.append((b"x-frame-options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper().encode()))
        return headers


class _Disconnected(Exception):
    """The client went away before sending the whole body: nobody to answer."""
