"""gunicorn's worker class for the web process (see portal/gunicorn.conf.py)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

import httptools
from django.conf import settings
from gunicorn.arbiter import Arbiter
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from groups.api.shape import error_json
from groups.envconf import envbool
from models_app.serving.headers import joined_header
from portal.draining import DRAINING

if TYPE_CHECKING:
    from models_app.calls import CalledModel
    from models_app.serving.front import ServingFront

logger = logging.getLogger(__name__)


class CoalescingTransport:
    """Joins the small writes of one loop iteration into one.

    uvicorn writes a response's head and body with two writes: two syscalls and two
    TCP segments (TCP_NODELAY), so the client often wakes twice for one small answer.
    Writes of at least LARGE bytes (downloads) go straight through, after what is pending.
    """

    LARGE = 64 * 1024

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        if len(data) >= self.LARGE:
            self.write_now(data)
            return
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        if self._pending:
            data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
            self._pending = []
            # The peer may have gone before the loop turned (a load balancer's health check
            # closes as soon as it has the status line): uvloop raises on a closed handle.
            if not self._transport.is_closing():
                self._transport.write(data)

    def write_now(self, data: bytes) -> None:
        """Write at once, after what is pending: for an answer already in one piece."""
        self.flush()
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def abort(self) -> None:
        self._pending = []
        self._transport.abort()

    def __getattr__(self, name: str):
        return getattr(self._transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        self.transport = CoalescingTransport(transport, self.loop)


class FastPath:
    """The serving front (models_app.serving.front) behind a web worker's app, and what the
    protocol needs to answer for it: the trusted proxies, the answers' fixed header lines."""

    def __init__(self, front: ServingFront, proxy: ProxyHeadersMiddleware | None) -> None:
        self.front = front
        self.proxy = proxy
        self.header_lines = {secure: _lines(front.headers_for(secure)) for secure in (False, True)}
        from models_app.serving.front import RETRY_LATER  # loaded with Django, after this module

        self.retry_later_lines = _lines(RETRY_LATER)  # with a 503
        self._default_headers: list | None = None
        self._default_lines = b""

    def default_lines(self, default_headers: list[tuple[bytes, bytes]]) -> bytes:
        """uvicorn's date and server headers; the server replaces the list every second."""
        if default_headers is not self._default_headers:
            self._default_lines = _lines(default_headers)
            self._default_headers = default_headers
        return self._default_lines


def _lines(headers: list[tuple[bytes, bytes]]) -> bytes:
    return b"".join(name + b": " + value + b"\r\n" for name, value in headers)


_fast_paths: dict[int, tuple[object, FastPath | None]] = {}


def fast_path_of(app) -> FastPath | None:
    """The FastPath of an app that is the serving front, behind uvicorn's proxy-headers
    middleware or not, and whose call lookup can answer inline (SQLite, PostgreSQL); else None."""
    known = _fast_paths.get(id(app))
    if known is not None and known[0] is app:
        return known[1]
    from models_app.serving.front import ServingFront  # needs Django's app registry

    proxy = app if isinstance(app, ProxyHeadersMiddleware) else None
    front = app.app if proxy is not None else app
    fast = FastPath(front, proxy) if isinstance(front, ServingFront) and front.lookup.inline else None
    _fast_paths[id(app)] = (app, fast)
    return fast


class RunCall:
    """A run call the serving front accepted from its headers, answered by WebProtocol:
    its body is read and its answer written without an ASGI scope, task or messages.

    It stands in for uvicorn's RequestResponseCycle as the protocol's `cycle`, so uvicorn's
    own code works on it unchanged: the parser callbacks add to `body` and clear
    `more_body`, connection_lost sets `disconnected`, a graceful shutdown clears
    `keep_alive`, and each of them wakes it through `message_event.set()`.
    """

    __slots__ = (
        "_declared_length",
        "_fast",
        "_model",
        "_protocol",
        "_secure",
        "_waiter",
        "body",
        "disconnected",
        "keep_alive",
        "more_body",
        "response_complete",
        "timed_out",
    )

    def __init__(
        self,
        protocol: WebProtocol,
        fast: FastPath,
        model: CalledModel,
        secure: bool,
        keep_alive: bool,
        declared_length: int | None,
    ) -> None:
        self._protocol = protocol
        self._fast = fast
        self._model = model
        self._secure = secure
        self._declared_length = declared_length
        self._waiter: asyncio.Future | None = None
        self.keep_alive = keep_alive
        self.body = bytearray()
        self.more_body = True
        self.disconnected = False
        self.response_complete = False
        self.timed_out = False

    @property
    def message_event(self) -> RunCall:
        return self

    def set(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def run(self) -> None:
        from models_app.serving.answers import BadInput

        front, model = self._fast.front, self._model
        started = time.perf_counter()
        try:
            try:
                body = await self._whole_body(front.max_body)
            except BadInput as problem:
                status, content = front.refuse(model, problem, started)
            else:
                if body is None:
                    return  # the client went away: nobody to answer
                status, content = await front.answer(model, body, started)
        except Exception:  # the platform's own fault: the answer uvicorn gives an app that raises
            logger.exception("Exception while answering a run call")
            self.keep_alive = False
            self._write(500, b"content-type: text/plain; charset=utf-8\r\n", b"Internal Server Error")
            return
        lines = self._fast.header_lines[self._secure]
        self._write(status, lines + self._fast.retry_later_lines if status == 503 else lines, content)

    async def _whole_body(self, limit: int) -> bytes | None:
        from models_app.serving.answers import body_too_slow, too_large

        if self._declared_length is not None and self._declared_length > limit:
            raise too_large(limit)
        protocol = self._protocol
        # The body usually came with the headers: the timer is only for one still arriving.
        timer = None
        try:
            while self.more_body and not self.disconnected:
                if len(self.body) > limit:
                    raise too_large(limit)
                if self.timed_out:
                    self.keep_alive = False  # the rest of the body may still come: no next request
                    raise body_too_slow(self._fast.front.body_timeout)
                if timer is None:
                    timer = protocol.loop.call_later(self._fast.front.body_timeout, self._time_out)
                protocol.flow.resume_reading()  # uvicorn's on_body pauses past its high-water mark
                self._waiter = protocol.loop.create_future()
                try:
                    await self._waiter
                finally:
                    self._waiter = None
        finally:
            if timer is not None:
                timer.cancel()
        if self.disconnected:
            return None
        if len(self.body) > limit:
            raise too_large(limit)
        return bytes(self.body)

    def _time_out(self) -> None:
        self.timed_out = True
        self.set()

    def _write(self, status: int, header_lines: bytes, content: bytes) -> None:
        """The answer in one write, as uvicorn's RequestResponseCycle.send would write it."""
        self.response_complete = True
        if self.disconnected:
            return
        protocol = self._protocol
        parts = [
            STATUS_LINE[status],
            self._fast.default_lines(protocol.server_state.default_headers),
            b"content-length: %d\r\n" % len(content),
            header_lines,
            b"\r\n" if self.keep_alive else b"connection: close\r\n\r\n",
            content,
        ]
        protocol.transport.write_now(b"".join(parts))
        if not self.keep_alive:
            protocol.transport.close()
        protocol.on_response_complete()


class WebProtocol(CoalescingHttpToolsProtocol):
    """uvicorn's HTTP protocol, which answers run calls (`POST /api/v1/run/<hash>`) itself.

    uvicorn spends about as much CPU on each request as the serving front does on a
    call: an ASGI scope, a cycle object and an event, a task, and message dicts checked
    header by header on the way out. The front decides from the headers alone whether it
    answers a call (models_app.serving.front), so once they are parsed, a call it
    accepts is read and answered here (RunCall); every other request, and every call it
    does not accept, takes uvicorn's usual path to the ASGI app. So does a run call
    uvicorn must treat specially: one pipelined behind a request still being answered,
    `Expect: 100-continue`, an upgrade, an escaped path, or a worker with the access
    log on (its lines need uvicorn's scope), a concurrency limit or a root path. On
    PostgreSQL so does a call whose lookup is not cached (the first one of a model and
    token after a change): the ASGI path awaits the lookup, on a thread.
    """

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)
        plain = not self.access_log and self.limit_concurrency is None and not self.root_path
        self.fast = fast_path_of(self.app) if plain else None
        self.headers_since: float | None = None  # loop time a request began, until its headers are in

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.headers_since = self.loop.time()

    def refuse_stalled_request(self, timeout: float) -> None:
        """408 and close: the request's headers did not all arrive within `timeout` s (StalledHeaders)."""
        content = error_json(
            f"The request's headers did not arrive within {timeout:g} s "
            "(NEOMARIL_REQUEST_BODY_TIMEOUT): send the request again.",
            "request_timeout",
        )
        self.headers_since = None
        self.transport.write_now(
            STATUS_LINE[408]
            + b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n"
            % len(content)
            + content
        )
        self.transport.close()

    def on_headers_complete(self) -> None:
        self.headers_since = None
        call = self._run_call() if self.fast is not None else None
        if call is None:
            super().on_headers_complete()
            return
        self.cycle = call
        task = self.loop.create_task(call.run())
        task.add_done_callback(self.tasks.discard)
        self.tasks.add(task)

    def _run_call(self) -> RunCall | None:
        parser = self.parser
        if parser.get_method() != b"POST" or self.expect_100_continue or parser.should_upgrade():
            return None
        if self.cycle is not None and not self.cycle.response_complete:
            return None  # pipelined behind a request in progress: uvicorn queues it
        try:
            url = httptools.parse_url(self.url)
        except httptools.HttpParserInvalidURLError:
            return None
        path = url.path
        if b"%" in path:
            return None
        fast = self.fast
        model_hash = fast.front.run_call_hash(path.decode("latin-1"), url.query or b"")
        if model_hash is None:
            return None
        accepted = fast.front.accept_now(model_hash, self._header, self._scheme())
        if accepted is None:
            return None
        model, secure = accepted
        length = self._header(b"content-length")
        return RunCall(
            self,
            fast,
            model,
            secure,
            keep_alive=parser.get_http_version() != "1.0" and parser.should_keep_alive(),
            declared_length=int(length) if length is not None and length.isdigit() else None,
        )

    def _header(self, name: bytes) -> bytes | None:
        return joined_header(self.headers, name)

    def _scheme(self) -> str | None:
        """The scheme as uvicorn's ProxyHeadersMiddleware leaves it in the scope."""
        scheme = self.scheme
        proxy = self.fast.proxy
        if proxy is not None and (self.client[0] if self.client else None) in proxy.trusted_hosts:
            forwarded = None
            for key, value in self.headers:  # the last one counts, as in the middleware
                if key == b"x-forwarded-proto":
                    forwarded = value.decode("latin-1").strip()
            if forwarded in ("http", "https", "ws", "wss"):
                scheme = forwarded
        return scheme


class WebWorker(UvicornWorker):
    # Named explicitly rather than "auto": without uvloop and httptools uvicorn would
    # quietly fall back to its pure-Python loop and parser, several times slower.
    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": WebProtocol,
        # One log line per prediction costs CPU on the hot path; on when asked.
        "access_log": envbool("NEOMARIL_ACCESS_LOG"),
    }

    def init_signals(self) -> None:
        super().init_signals()
        # uvicorn shuts down gracefully on SIGTERM/SIGINT, then raises the signal again
        # against the handler it found, which UvicornWorker set to the default: the worker
        # died by the signal, its atexit hooks unrun, and with them the last half-second
        # of metrics (groups.metrics) and of recorded calls (monitoring.recorder).
        for stop in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop, _exit_after_shutdown)

    async def _serve(self) -> None:
        # UvicornWorker._serve with DrainingServer in place of uvicorn's Server.
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        StalledHeaders(server.server_state, settings.REQUEST_BODY_TIMEOUT).start()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


def _exit_after_shutdown(signum: int, frame) -> None:
    sys.exit(0)


class StalledHeaders:
    """Answers 408 to requests whose headers have not all arrived within `timeout` seconds,
    and closes their connections.

    uvicorn waits for headers for ever, so a client sending part of them (a slowloris)
    would keep its connection, a descriptor of the worker, as long as it liked. A sweep
    every few seconds instead of a timer per request: the hot path only notes the time a
    request began (WebProtocol.on_message_begin).
    """

    def __init__(self, server_state, timeout: float) -> None:
        self.server_state = server_state
        self.timeout = timeout
        self.interval = min(5.0, timeout / 4)

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.loop.call_later(self.interval, self.sweep)

    def sweep(self) -> None:
        oldest = self.loop.time() - self.timeout
        for protocol in list(self.server_state.connections):
            began = getattr(protocol, "headers_since", None)
            if began is not None and began < oldest:
                protocol.refuse_stalled_request(self.timeout)
        self.loop.call_later(self.interval, self.sweep)


class DrainingServer(Server):
    """uvicorn's server, which on SIGTERM first goes on serving for NEOMARIL_WEB_DRAIN_SECONDS
    while /healthz answers 503: the load balancer takes the node out (docs/deployment.md,
    "HAProxy") before it stops accepting.

    Without it, a request the balancer sends in the instant the node stops can land on a
    connection that uvicorn then closes unanswered (it closes the connections without a
    request in progress): HAProxy sends a Sync call again, but not an upload. 0 (the
    default: one node, no balancer) stops at once; so does a SIGINT sent to gunicorn itself
    (supervisord stops its programs with SIGTERM, Ctrl-C on `make run` included).
    """

    def handle_exit(self, sig: int, frame) -> None:
        seconds = settings.WEB_DRAIN_SECONDS
        if sig != signal.SIGTERM or not seconds or self.should_exit:
            super().handle_exit(sig, frame)
        elif not DRAINING.is_set():
            DRAINING.set()
            stop = threading.Timer(seconds, super().handle_exit, (sig, None))
            stop.daemon = True
            stop.start()
        # A second SIGTERM while draining (gunicorn's master passes supervisord's on to its
        # workers, which got their own from the process group) changes nothing.
