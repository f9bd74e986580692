"""Web-process side of Sync serving: pooled connections to runners, and the host's control socket."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
import time
from dataclasses import dataclass

from django.conf import settings

from models_app.calls import CalledModel
from models_app.runtime.protocol import (
    ConnectionClosed,
    ProtocolError,
    predict_frame,
    read_frame,
    read_payload,
    write_frame,
)
from models_app.serving import paths


class ServingError(Exception):
    """The platform could not get an answer from the model; `status` is the HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


HOST_BUSY_WAIT = 10.0  # seconds to keep knocking while the host's backlog is full


def host_call(request: dict, timeout: float) -> dict:
    """One request to this node's model host."""
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
        raise ServingError(503, f"The model host did not answer within {timeout:.0f} s.") from None
    except (OSError, ProtocolError) as exc:
        raise ServingError(503, f"Could not talk to the model host: {exc}") from None


def runner_stopped() -> ServingError:
    return ServingError(
        502,
        "The model's runner stopped while answering this request (it crashed or was killed); it is being restarted.",
    )


def timed_out(timeout: float) -> ServingError:
    return ServingError(504, f"The model did not answer within {timeout} s; its runner was restarted.")


def start_failed(answer: dict) -> ServingError:
    return ServingError(503, f"The model could not be started: {answer.get('error')}")


def start_refused(exc: OSError) -> ServingError:
    return ServingError(503, f"The model's runner was started but refused the connection: {exc}")


def ensure_started(model: CalledModel) -> None:
    """Ask the host to start the model's runners and wait for them (a cold start)."""
    answer = host_call({"op": "ensure", "model": model.hash}, timeout=settings.COLD_START_TIMEOUT + 5)
    if not answer.get("ok"):
        raise start_failed(answer)


def kill_stuck_runner(path: str, timeout: float) -> None:
    # A runner answers one request at a time: a stuck one would block every call.
    with contextlib.suppress(ServingError):
        host_call({"op": "kill", "socket": path, "reason": f"request exceeded {timeout} s"}, timeout=5)


class ReplicaBalancer:
    """Picks the replica with the fewest requests in flight from this process.

    A runner answers one request at a time, so sending to a busy one queues behind it
    while another may be idle. Not thread-safe: RunnerPool (threads) holds its lock
    around ``choose`` and ``done``; the event loop's single thread needs none.
    """

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self._turn = itertools.count()

    def choose(self, model: CalledModel) -> str:
        # Start the scan at a rotating replica so ties (all idle) spread the load too.
        start = next(self._turn)
        replicas = model.replicas
        path = None
        busy = 0
        for i in range(replicas):
            candidate = paths.runner_socket_name(model.hash, model.deployed_build, (start + i) % replicas)
            load = self.in_flight.get(candidate, 0)
            if path is None or load < busy:
                path, busy = candidate, load
        self.in_flight[path] = busy + 1
        return path

    def done(self, path: str) -> None:
        self.in_flight[path] -= 1


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


@dataclass
class Answer:
    payload: bytes  # of the runner's answer frame (serving.answers reads it)
    socket_path: str


class RunnerPool:
    """Idle connections per runner socket, shared by the threads of one web process."""

    def __init__(self) -> None:
        self._idle: dict[str, list[socket.socket]] = {}
        self._lock = threading.Lock()
        self._balancer = ReplicaBalancer()

    def _take(self, path: str) -> socket.socket | None:
        with self._lock:
            idle = self._idle.get(path)
            return idle.pop() if idle else None

    def _give(self, path: str, sock: socket.socket) -> None:
        with self._lock:
            self._idle.setdefault(path, []).append(sock)

    def drop(self, path: str) -> None:
        with self._lock:
            idle = self._idle.pop(path, [])
        for sock in idle:
            sock.close()

    @staticmethod
    def _connect(path: str) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return sock

    def predict(self, model: CalledModel, body: str) -> Answer:
        """Send one request to one of the model's runners, starting them if needed."""
        with self._lock:
            path = self._balancer.choose(model)
        try:
            return self._predict(model, body, path)
        finally:
            with self._lock:
                self._balancer.done(path)

    def _predict(self, model: CalledModel, body: str, path: str) -> Answer:
        timeout = model.effective_request_timeout
        request = predict_frame(body, str(model.folder))

        sock = self._take(path)
        if sock is not None:
            try:
                return Answer(self._exchange(sock, request, timeout, path), path)
            except (ConnectionClosed, BrokenPipeError, ConnectionResetError):
                # The runner behind this pooled connection went away (crash, restart,
                # eviction) before our request reached it: drop its pool and reconnect.
                sock.close()
                self.drop(path)
        sock = self._connect_or_start(model, path)
        try:
            return Answer(self._exchange(sock, request, timeout, path), path)
        except (ConnectionClosed, BrokenPipeError, ConnectionResetError, ProtocolError):
            sock.close()
            raise runner_stopped() from None

    def _connect_or_start(self, model: CalledModel, path: str) -> socket.socket:
        with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
            return self._connect(path)
        ensure_started(model)
        try:
            return self._connect(path)
        except OSError as exc:
            raise start_refused(exc) from None

    def _exchange(self, sock: socket.socket, request: bytes, timeout: float, path: str) -> bytes:
        sock.settimeout(timeout)
        try:
            sock.sendall(request)
            payload = read_payload(sock)
        except TimeoutError:
            sock.close()
            self.drop(path)
            kill_stuck_runner(path, timeout)
            raise timed_out(timeout) from None
        self._give(path, sock)
        return payload


pool = RunnerPool()
