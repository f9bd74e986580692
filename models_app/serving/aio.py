"""The event loop's side of Sync serving: pooled asyncio connections to runners.

The same rules as ``client.RunnerPool`` (least-busy replica, a pooled connection that
turns out dead is replaced once, cold start through the model host, kill + 504 past the
request timeout, 502 when the runner dies mid-answer) with the same messages, but the
waiting happens on the event loop, so one web process can keep every runner busy
without a thread per call.
"""

from __future__ import annotations

import asyncio
import contextlib

from models_app.calls import CalledModel
from models_app.runtime.protocol import HEADER, MAX_FRAME_BYTES, ProtocolError, predict_frame
from models_app.serving.client import (
    ReplicaBalancer,
    ensure_started,
    kill_stuck_runner,
    runner_stopped,
    start_refused,
    timed_out,
)


class _Closed(Exception):
    """The runner closed the connection before the first byte of its answer."""


class RunnerConnection(asyncio.Protocol):
    """One pooled connection to a runner: a frame out, a frame back.

    A bare protocol rather than asyncio streams: it is on every call's path, and the
    streams' extra layers cost more than the framing itself.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._buffer += data
        waiter = self._waiter
        if waiter is None or waiter.done() or len(self._buffer) < HEADER.size:
            return
        (length,) = HEADER.unpack_from(self._buffer)
        if length > MAX_FRAME_BYTES:
            waiter.set_exception(
                ProtocolError(f"announced frame of {length} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
            )
        elif len(self._buffer) >= HEADER.size + length:
            payload = bytes(self._buffer[HEADER.size : HEADER.size + length])
            del self._buffer[: HEADER.size + length]
            waiter.set_result(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ProtocolError("truncated frame") if self._buffer else _Closed())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def exchange(self, frame: bytes) -> bytes:
        """Send one frame and return the payload of the answer frame."""
        if self.transport.is_closing():
            raise _Closed
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(frame)
        try:
            return await self._waiter
        finally:
            self._waiter = None


class AsyncRunnerPool:
    def __init__(self) -> None:
        self._idle: dict[str, list[RunnerConnection]] = {}
        self._balancer = ReplicaBalancer()
        self._starting: dict[tuple[str, int], asyncio.Future[None]] = {}

    async def _ensure_started(self, model: CalledModel) -> None:
        """One "ensure" per model and build in flight from this process.

        Every call that finds no runner needs the same start; without this, a load of
        concurrent calls meeting a cold model sent the host one request each.
        """
        key = (model.hash, model.deployed_build)
        pending = self._starting.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            # The host's answer can take the whole cold-start timeout: wait off the loop.
            pending = self._starting[key] = asyncio.ensure_future(
                loop.run_in_executor(None, ensure_started, model)
            )
            pending.add_done_callback(lambda _done: self._starting.pop(key, None))
        await asyncio.shield(pending)

    def drop(self, path: str) -> None:
        for connection in self._idle.pop(path, []):
            connection.close()

    async def predict(self, model: CalledModel, body: str) -> bytes:
        """The payload of the runner's answer frame for one call (ServingError when there is none)."""
        path = self._balancer.choose(model)
        try:
            return await self._predict(model, body, path)
        finally:
            self._balancer.done(path)

    async def _predict(self, model: CalledModel, body: str, path: str) -> bytes:
        timeout = model.effective_request_timeout
        frame = predict_frame(body, model.folder)
        idle = self._idle.get(path)
        if idle:
            connection = idle.pop()
            try:
                return await self._exchange(connection, frame, timeout, path)
            except (_Closed, ProtocolError, OSError):
                # The runner behind this pooled connection went away (crash, restart,
                # eviction) before our request reached it: drop its pool and reconnect.
                connection.close()
                self.drop(path)
        connection = await self._connect_or_start(model, path)
        try:
            return await self._exchange(connection, frame, timeout, path)
        except (_Closed, ProtocolError, OSError):
            connection.close()
            raise runner_stopped() from None

    async def _connect_or_start(self, model: CalledModel, path: str) -> RunnerConnection:
        loop = asyncio.get_running_loop()
        with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
            return (await loop.create_unix_connection(RunnerConnection, path))[1]
        await self._ensure_started(model)
        try:
            return (await loop.create_unix_connection(RunnerConnection, path))[1]
        except OSError as exc:
            raise start_refused(exc) from None

    async def _exchange(self, connection: RunnerConnection, frame: bytes, timeout: float, path: str) -> bytes:
        try:
            async with asyncio.timeout(timeout):
                payload = await connection.exchange(frame)
        except TimeoutError:
            connection.close()
            self.drop(path)
            await asyncio.get_running_loop().run_in_executor(None, kill_stuck_runner, path, timeout)
            raise timed_out(timeout) from None
        except BaseException:
            # Cancelled, or the runner went away: an answer may still be on its way, so
            # this connection can't be reused.
            connection.close()
            raise
        self._idle.setdefault(path, []).append(connection)
        return payload
