"""gunicorn's worker class for the web process (see portal/gunicorn.conf.py)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import threading

from django.conf import settings
from gunicorn.arbiter import Arbiter
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker

from portal.draining import DRAINING


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
            self.flush()
            self._transport.write(data)
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


class WebWorker(UvicornWorker):
    # Named explicitly rather than "auto": without uvloop and httptools uvicorn would
    # quietly fall back to its pure-Python loop and parser, several times slower.
    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": CoalescingHttpToolsProtocol,
        # One log line per prediction costs CPU on the hot path; on when asked.
        "access_log": os.environ.get("NEOMARIL_ACCESS_LOG", "0") == "1",
    }

    async def _serve(self) -> None:
        # UvicornWorker._serve with DrainingServer in place of uvicorn's Server.
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


class DrainingServer(Server):
    """uvicorn's server, which on SIGTERM first goes on serving for NEOMARIL_WEB_DRAIN_SECONDS
    while /healthz answers 503: the load balancer takes the node out (docs/deployment.md,
    "HAProxy") before it stops accepting.

    Without it, a request the balancer sends in the instant the node stops can land on a
    connection that uvicorn then closes unanswered (it closes the connections without a
    request in progress): HAProxy sends a Sync call again, but not an upload. 0 (the
    default: one node, no balancer) stops at once; SIGINT (Ctrl-C) always does.
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
