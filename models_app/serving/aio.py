"""The web process's one client of the runners and of the model host.

A Sync call reaches a runner through AsyncRunnerPool: pooled asyncio connections per
runner socket, the least-busy replica, a cold start through the model host, kill + 504
past the request timeout, and one more try on the restarted runner when a runner goes
away before answering. Idle connections are capped per runner and closed once unused for
a while. The waiting happens on an event loop, so one web process can
keep every runner busy without a thread per call. Calls in flight and cold starts are
counted here for /metrics (groups.metrics).

Both front ends use it: the ASGI fast path (serving.front) awaits it on uvicorn's loop;
Django's view (serving.views, under plain WSGI or when the fast path declines) calls
``blocking_pool``, which runs the same coroutine on one event-loop thread per process.
So the wire rules and their messages exist once.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import socket
import threading
import time
from collections import deque

from django.conf import settings

from groups import metrics
from models_app.calls import CalledModel, not_deployed_message
from models_app.models import MLModel
from models_app.runtime.protocol import (
    HEADER,
    MAX_FRAME_BYTES,
    ProtocolError,
    predict_frame,
    read_frame,
    write_frame,
)
from models_app.serving import paths


class ServingError(Exception):
    """The platform could not get an answer from the model; `status` is the HTTP status,
    `code` the error shape's (None: the status's usual one)."""

    def __init__(self, status: int, message: str, code: str | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


# --------------------------------------------------------------------- messages


def runner_stopped() -> ServingError:
    return ServingError(
        502,
        "The model's runner stopped before answering this request, and again when it was retried on "
        "the restarted runner (it crashed or was killed: this input may be what makes it crash); "
        "it is being restarted.",
    )


def queued_behind_timeout() -> ServingError:
    return ServingError(
        503,
        "This request waited behind calls that ran past the model's request timeout, and the "
        "model's runner was restarted twice before it could answer; try again.",
    )


def timed_out(timeout: float, killed: bool | None, busy: bool = False) -> ServingError:
    """`killed`: the host stopped the runner (True), found none on its socket (False: another
    call's timeout had stopped it, say), or could not be asked (None). `busy`: it found the
    runner answering a call that had not run that long, so this one timed out waiting
    behind others; it left the runner be."""
    if busy:
        return ServingError(
            504,
            f"The model did not answer within {timeout} s: this call waited behind other calls to it, "
            "which its runners were still answering (they are working, not stuck, and were left "
            "running). The model is getting more calls than it answers in time: send fewer at once, "
            "retry later, or raise its max_replicas or request_timeout.",
        )
    if killed:
        after = "its runner was stopped and is being restarted"
    elif killed is False:
        # Many calls queued behind a stuck one time out together: the first stops it.
        after = "its runner had already been stopped and is being restarted"
    else:
        after = "the model host could not stop its runner (is `manage.py modelhost` running?)"
    return ServingError(504, f"The model did not answer within {timeout} s; {after}.")


def overloaded(timeout: float, ahead: int, each: float) -> ServingError:
    return ServingError(
        503,
        f"The model would not answer this call within its request timeout ({timeout:g} s): {ahead} calls "
        f"are ahead of it on the runner, at about {each:.3g} s each. It was not run; retry in a few "
        "seconds (Retry-After), send fewer calls at once, or raise the model's max_replicas.",
    )


def start_failed(answer: dict) -> ServingError:
    return ServingError(503, f"The model could not be started: {answer.get('error')}")


def left_service(model: CalledModel, status: str | None) -> ServingError:
    """The answer to a call accepted while its model was Deployed, which then left service
    (deleted, disabled or rebuilt, maybe through another node) before a runner took it:
    what the run URL answers from then on, not a failed start."""
    if status in (None, MLModel.Status.DELETED):
        return ServingError(404, f"No model '{model.model_hash}'.", "not_found")
    return ServingError(409, not_deployed_message(dataclasses.replace(model, status=status)), "not_deployed")


def answer_too_large(length: int, limit: int) -> ServingError:
    return ServingError(
        502,
        f"The model's answer is {length / 2**20:.1f} MB, over the {limit / 2**20:g} MB a Sync answer may be "
        "(NEOMARIL_SYNC_MAX_ANSWER_MB): return large results from an Async model, which writes them to a file.",
    )


def start_refused(exc: OSError) -> ServingError:
    return ServingError(503, f"The model's runner was started but refused the connection: {exc}")


# ------------------------------------------------------------------ model host

HOST_BUSY_WAIT = 10.0  # seconds to keep knocking while the host's backlog is full


def host_call(request: dict, timeout: float) -> dict:
    """One request to this node's model host (blocking: call it from a thread)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            _connect_to_host(sock, time.monotonic() + min(timeout, HOST_BUSY_WAIT))
            write_frame(sock, request)
            return read_frame(sock)
    except (FileNotFoundError, ConnectionRefusedError):
        raise ServingError(
            503, "The model host is not running on this node (start it with `manage.py modelhost`)."
        ) from None
    except TimeoutError:
        raise ServingError(503, f"The model host did not answer within {timeout:g} s.") from None
    except (OSError, ProtocolError) as exc:
        raise ServingError(503, f"Could not talk to the model host: {exc}") from None


def _connect_to_host(sock: socket.socket, deadline: float) -> None:
    # A Unix socket with a full backlog refuses a non-blocking connect with EAGAIN
    # instead of queueing it: a burst of callers, not a dead host. Knock again shortly.
    pause = 0.005
    while True:
        try:
            sock.connect(str(paths.host_socket()))
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(pause)
            pause = min(pause * 2, 0.1)


def ensure_started(model: CalledModel) -> None:
    """Ask the host to start the model's runners and wait for them (a cold start)."""
    labels = metrics.model_series(model).labels
    started = time.monotonic()
    try:
        answer = host_call({"op": "ensure", "model": model.hash}, timeout=settings.COLD_START_TIMEOUT + 5)
    except ServingError:
        metrics.MODEL_COLD_STARTS.labels(*labels, "failed").inc()
        raise
    if not answer.get("ok"):
        if answer.get("code") == "not_deployed":  # host.NotDeployed: nothing was started
            raise left_service(model, answer.get("model_status"))
        metrics.MODEL_COLD_STARTS.labels(*labels, "failed").inc()
        raise start_failed(answer)
    metrics.MODEL_COLD_STARTS.labels(*labels, "started").inc()
    metrics.MODEL_COLD_START_SECONDS.labels(*labels).observe(time.monotonic() - started)


def kill_stuck_runner(path: str, timeout: float) -> tuple[bool | None, bool]:
    """Ask the host to kill the runner on `path` if its call in progress has run for
    `timeout`: whether it did (None: the host did not answer), and whether it found the
    runner busy with a newer call instead (this call had waited behind others)."""
    # A runner answers one request at a time: a stuck one would block every call.
    request = {
        "op": "kill",
        "socket": path,
        "reason": f"request exceeded {timeout} s",
        "stuck_after": timeout,
    }
    try:
        answer = host_call(request, timeout=5)
    except ServingError:
        return None, False
    return bool(answer.get("killed")), bool(answer.get("busy"))


# ----------------------------------------------------------------------- runners


class ReplicaBalancer:
    """Picks, among the model's replicas that are up, the one with the fewest requests in
    flight from this process.

    A runner answers one request at a time, so sending to a busy one queues behind it
    while another may be idle. The model host adds and drains replicas as the load
    changes (host.py); which are up is read from their sockets, at most every REFRESH
    seconds per model (a draining replica's socket goes DRAIN_SECONDS before its process).
    Used on one event loop's thread only: no lock.
    """

    REFRESH = 0.5

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        # Ties (idle replicas) go to this process's preferred replica: calls one after
        # another find the same runner with the model in its caches (spreading them cost
        # the runner up to a third more CPU per call at c=1), and a replica the load does
        # not need stays idle, so the host drains it. Each process prefers another one.
        self._preference = os.getpid()
        self._up: dict[tuple[str, int], tuple[float, tuple[str, ...]]] = {}

    def replicas_up(self, model: CalledModel) -> tuple[str, ...]:
        """The sockets of the model's replicas that are up; the first replica's when none is
        (its call then starts the model through the host)."""
        key = (model.hash, model.deployed_build)
        now = time.monotonic()
        seen = self._up.get(key)
        if seen is None or now - seen[0] > self.REFRESH:
            names = [
                paths.runner_socket_name(model.hash, model.deployed_build, replica)
                for replica in range(model.effective_max_replicas)
            ]
            seen = self._up[key] = (now, tuple(n for n in names if os.path.exists(n)) or (names[0],))
        return seen[1]

    def forget(self, model: CalledModel) -> None:
        """Read the sockets again on the next call (one was found gone)."""
        self._up.pop((model.hash, model.deployed_build), None)

    def choose(self, model: CalledModel) -> str:
        up = self.replicas_up(model)
        start = self._preference
        path = None
        busy = 0
        for i in range(len(up)):
            candidate = up[(start + i) % len(up)]
            load = self.in_flight.get(candidate, 0)
            if path is None or load < busy:
                path, busy = candidate, load
        self.in_flight[path] = busy + 1
        return path

    def moved(self, chosen: str, reached: str) -> None:
        """The call chosen for `chosen` went to `reached` instead (the replica was gone)."""
        # Counted where it runs: the pool forgets the state of a socket no call is on.
        self.in_flight[chosen] -= 1
        self.in_flight[reached] = self.in_flight.get(reached, 0) + 1

    def done(self, path: str) -> None:
        self.in_flight[path] -= 1

    def forget_unused(self) -> None:
        """Drop the counts of sockets no call is on and the readings due again anyway.

        Both are kept per build: without this, every redeploy left its keys for good.
        """
        for path in [path for path, count in self.in_flight.items() if not count]:
            del self.in_flight[path]
        now = time.monotonic()
        for key in [key for key, (read_at, _up) in self._up.items() if now - read_at > self.REFRESH]:
            del self._up[key]

    def tracks_anything(self) -> bool:
        return bool(self.in_flight or self._up)


class _Closed(Exception):
    """The runner closed the connection before the first byte of its answer."""


class _NotSent(_Closed):
    """The connection was already closed: the request never left."""


class RunnerConnection(asyncio.Protocol):
    """One pooled connection to a runner: a frame out, a frame back.

    A bare protocol rather than asyncio streams: it is on every call's path, and the
    streams' extra layers cost more than the framing itself.
    """

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._buffer = bytearray()
        self._waiter: asyncio.Future[bytes] | None = None
        self.idle_since = 0.0  # loop time it went back to its pool
        self.max_answer = min(settings.SYNC_MAX_ANSWER_BYTES, MAX_FRAME_BYTES)

    def connection_made(self, transport) -> None:
        self.transport = transport
        # Kept rather than asked for on each exchange: before Python 3.12 every
        # get_running_loop() is a getpid() system call.
        self._loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Bytes no call asked for: the model's code runs in the runner's process and
            # can write to this socket. Held, they would pile up in the web worker that
            # every group's calls share; the connection is dropped instead (the pool
            # reconnects on its next use).
            self._drop()
            return
        self._buffer += data
        if len(self._buffer) < HEADER.size:
            return
        (length,) = HEADER.unpack_from(self._buffer)
        if length > self.max_answer:
            # Told by the header, before its bytes are held. Not a lost runner: the call
            # is not sent again (the model would answer the same).
            waiter.set_exception(answer_too_large(length, self.max_answer))
            self._drop()
        elif len(self._buffer) >= HEADER.size + length:
            payload = bytes(self._buffer[HEADER.size : HEADER.size + length])
            del self._buffer[: HEADER.size + length]
            if self._buffer:  # more than the one answer: not a connection to reuse
                self._drop()
            waiter.set_result(payload)

    def connection_lost(self, exc: Exception | None) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ProtocolError("truncated frame") if self._buffer else _Closed())

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _drop(self) -> None:
        self._buffer.clear()
        self.transport.close()

    async def exchange(self, frame: bytes, timeout: float) -> bytes:
        """Send one frame and return the payload of the answer frame; TimeoutError when
        none has come after `timeout` seconds.

        A timer on the waiter rather than asyncio.timeout(): that one costs several
        objects and a task's cancel and uncancel on every call (about 5 % of the web
        process's CPU per call under load).
        """
        if self.transport.is_closing():
            raise _NotSent
        loop = self._loop
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(timeout, self._time_out, waiter)
        self.transport.write(frame)
        try:
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    @staticmethod
    def _time_out(waiter: asyncio.Future) -> None:
        if not waiter.done():
            waiter.set_exception(TimeoutError())


class AsyncRunnerPool:
    """Idle connections per runner socket, for the calls of one event loop.

    At most MAX_IDLE_PER_RUNNER idle connections are kept per runner socket, and those
    unused for IDLE_SECONDS are closed by a sweep on the loop, which also forgets the
    state of sockets no call is on (an old build, a drained replica). A burst of
    concurrent calls opens a connection each (every one waits in the runner's queue);
    without the cap and the sweep, each stayed open on both sides for good.

    A runner that goes away before answering (crashed, evicted, or killed while stuck
    on another call this one was queued behind) costs the call one more try on the
    restarted runner. A second loss is the answer: 503 when this process knows the call
    lost a runner that was killed while stuck past the timeout on an earlier call (the
    call was only queued behind it), else 502.
    """

    ATTEMPTS = 2
    # A runner answers one call at a time: connections beyond the call in progress only
    # queue behind it, and idle ones pile up only as a burst ends (under a steady load
    # each goes back to work at once). A handful lets the next small burst skip the
    # reconnect (about 50 µs of this process's CPU, plus the runner's accept).
    MAX_IDLE_PER_RUNNER = 4
    # Long enough that calls seconds apart keep reusing one connection; short enough that
    # a burst's connections, or those to a runner nothing calls any more, go soon.
    IDLE_SECONDS = 10.0

    # A model's call length is the median of its last few measured calls.
    CALL_SECONDS_SAMPLES = 5
    # Models whose call length is kept (the oldest forgotten first): one per build.
    CALL_SECONDS_KEPT = 4096

    def __init__(self) -> None:
        self._idle: dict[str, list[RunnerConnection]] = {}
        self._balancer = ReplicaBalancer()
        # Seconds a call to the model (hash, build) takes on its runner (what a queued call
        # waits for each one ahead), from this process's last calls, each one's time
        # shared with the calls it had ahead of it: those figures, and their median.
        self._measured_calls: dict[tuple[str, int], deque[float]] = {}
        self._call_seconds: dict[tuple[str, int], float] = {}
        self._starting: dict[tuple[str, int], asyncio.Future[None]] = {}
        # Runners this pool had killed for a timeout, per socket: a call that loses its
        # runner while this count moves was queued behind the stuck call, not its cause.
        self._timeout_kills: dict[str, int] = {}
        self._sweeping_on: asyncio.AbstractEventLoop | None = None

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
        series = metrics.model_series(model)
        series.call_started()
        try:
            return await self._predict(model, body)
        finally:
            series.call_ended()

    async def _predict(self, model: CalledModel, body: str) -> bytes:
        timeout = model.effective_request_timeout
        frame = predict_frame(body, model.folder)
        balancer = self._balancer
        path = balancer.choose(model)
        ahead = balancer.in_flight[path] - 1  # this process's calls on that runner already
        lost = 0
        behind_timeout = False
        try:
            if ahead:
                self._refuse_if_hopeless(model, ahead, timeout)
            while True:
                idle = self._idle.get(path)
                pooled = bool(idle)
                if pooled:
                    connection = idle.pop()
                else:
                    connection, reached = await self._connect_or_start(model, path)
                    if reached != path:
                        balancer.moved(path, reached)
                        path = reached
                kills = self._timeout_kills.get(path, 0)
                try:
                    loop = asyncio.get_running_loop()
                    sent = loop.time()
                    payload = await self._exchange(connection, frame, timeout, path)
                    # It waited for the calls ahead, each one's share at most this: a
                    # model kept busy (none ever alone) still updates its call length.
                    self._learn_call_seconds(model, (loop.time() - sent) / (ahead + 1))
                    return payload
                except _NotSent:
                    # A pooled connection whose runner went away (crash, restart, eviction)
                    # while it sat idle: the request never left. Reconnect.
                    self.drop(path)
                    lost += not pooled  # a fresh connection closed at once is a loss
                except (_Closed, ProtocolError, OSError):
                    connection.close()
                    self.drop(path)
                    lost += 1
                    behind_timeout = behind_timeout or self._timeout_kills.get(path, 0) != kills
                if lost >= self.ATTEMPTS:
                    raise queued_behind_timeout() if behind_timeout else runner_stopped()
        finally:
            balancer.done(path)

    def _refuse_if_hopeless(self, model: CalledModel, ahead: int, timeout: float) -> None:
        """Load shedding: refuse at once a call that the calls ahead of it would keep past
        the timeout. It would be answered 504 after the whole timeout anyway, holding its
        connection meanwhile; now its caller can back off at once (503, Retry-After).
        Until a call has been answered nothing is refused."""
        each = self._call_seconds.get((model.hash, model.deployed_build))
        if each is not None and (ahead + 1) * each > timeout:
            raise overloaded(timeout, ahead, each)

    def _learn_call_seconds(self, model: CalledModel, seconds: float) -> None:
        """A median: one slow call among quick ones refuses nothing, and a model whose
        calls grow slower is judged by them after three (an average lagged for many)."""
        key = (model.hash, model.deployed_build)
        measured = self._measured_calls.get(key)
        if measured is None:
            if len(self._measured_calls) >= self.CALL_SECONDS_KEPT:
                oldest = next(iter(self._measured_calls))
                del self._measured_calls[oldest], self._call_seconds[oldest]
            measured = self._measured_calls[key] = deque(maxlen=self.CALL_SECONDS_SAMPLES)
        measured.append(seconds)
        # The lower median of an even count: the quicker guess refuses less.
        self._call_seconds[key] = sorted(measured)[(len(measured) - 1) // 2]

    async def _connect_or_start(self, model: CalledModel, path: str) -> tuple[RunnerConnection, str]:
        """A new connection to the replica on `path`, else to the first replica (started
        through the host if need be), and the path it went to."""
        loop = asyncio.get_running_loop()
        if self._sweeping_on is not loop:  # state made by calls that never pool a connection
            self._start_sweeping(loop)
        with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
            return (await loop.create_unix_connection(RunnerConnection, path))[1], path
        # Gone: drained by the host (light load), evicted, or the model is cold. The first
        # replica is up whenever the model is.
        self._balancer.forget(model)
        first = paths.runner_socket_name(model.hash, model.deployed_build, 0)
        if path != first:
            with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
                return (await loop.create_unix_connection(RunnerConnection, first))[1], first
        await self._ensure_started(model)
        try:
            return (await loop.create_unix_connection(RunnerConnection, first))[1], first
        except OSError as exc:
            raise start_refused(exc) from None

    async def _exchange(self, connection: RunnerConnection, frame: bytes, timeout: float, path: str) -> bytes:
        try:
            payload = await connection.exchange(frame, timeout)
        except TimeoutError:
            connection.close()
            self.drop(path)
            # Counted before the kill: the calls queued behind this one learn of it
            # when their connections close, which can happen while we wait for the host.
            self._timeout_kills[path] = self._timeout_kills.get(path, 0) + 1
            loop = asyncio.get_running_loop()
            killed, busy = await loop.run_in_executor(None, kill_stuck_runner, path, timeout)
            raise timed_out(timeout, killed, busy) from None
        except BaseException:
            # Cancelled, or the runner went away: an answer may still be on its way, so
            # this connection can't be reused.
            connection.close()
            raise
        idle = self._idle.get(path)
        if idle is None:
            idle = self._idle[path] = []
        if len(idle) < self.MAX_IDLE_PER_RUNNER:
            loop = connection._loop
            connection.idle_since = loop.time()
            idle.append(connection)  # taken from the end: the oldest are the first to expire
            if self._sweeping_on is not loop:
                self._start_sweeping(loop)
        else:
            connection.close()
        return payload

    def _start_sweeping(self, loop: asyncio.AbstractEventLoop) -> None:
        # Per loop: a pool outliving its loop (one asyncio.run per test) sweeps on the next.
        self._sweeping_on = loop
        loop.call_later(self.IDLE_SECONDS / 2, self._sweep, loop)

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Close the connections idle past IDLE_SECONDS or closed by their runner, and forget
        the sockets left with neither an idle connection nor a call."""
        if self._sweeping_on is not loop:
            return  # superseded by a sweep on another loop
        expired = loop.time() - self.IDLE_SECONDS
        for path, idle in list(self._idle.items()):
            kept = []
            for connection in idle:
                if connection.idle_since > expired and not connection.transport.is_closing():
                    kept.append(connection)
                else:
                    connection.close()
            if kept:
                idle[:] = kept
            else:
                del self._idle[path]
        self._balancer.forget_unused()
        # A count is compared only within a call on its socket (see _predict).
        in_flight = self._balancer.in_flight
        for path in [path for path in self._timeout_kills if path not in in_flight]:
            del self._timeout_kills[path]
        if self._idle or self._timeout_kills or self._balancer.tracks_anything():
            loop.call_later(self.IDLE_SECONDS / 2, self._sweep, loop)
        else:
            self._sweeping_on = None  # the next call starts it again


class BlockingRunnerPool:
    """AsyncRunnerPool for callers on threads (Django's view): one event loop per process.

    The loop runs on a daemon thread started by the first call, and again in a child
    after a fork (the parent's thread does not survive it). Each call waits for its
    coroutine on that loop, so the timeout, kill and retry rules are the pool's.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: AsyncRunnerPool | None = None
        self._pid: int | None = None

    def _running(self) -> tuple[asyncio.AbstractEventLoop, AsyncRunnerPool]:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="runner-pool", daemon=True).start()
                self._loop, self._pool, self._pid = loop, AsyncRunnerPool(), os.getpid()
            return self._loop, self._pool

    def predict(self, model: CalledModel, body: str) -> bytes:
        """AsyncRunnerPool.predict, waited for on this thread."""
        loop, pool = self._running()
        return asyncio.run_coroutine_threadsafe(pool.predict(model, body), loop).result()


blocking_pool = BlockingRunnerPool()
