"""Web-process side of Sync serving: pooled connections to runners, and the host's control socket."""

from __future__ import annotations

import contextlib
import itertools
import socket
import threading
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from models_app.models import MLModel
from models_app.runtime.protocol import ConnectionClosed, ProtocolError, read_frame, write_frame
from models_app.serving import paths


class ServingError(Exception):
    """The platform could not get an answer from the model; `status` is the HTTP status."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def host_call(request: dict, timeout: float) -> dict:
    """One request to this node's model host."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(paths.host_socket()))
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


@dataclass
class Answer:
    frame: dict
    socket_path: str


class RunnerPool:
    """Idle connections per runner socket, shared by the threads of one web process."""

    def __init__(self) -> None:
        self._idle: dict[str, list[socket.socket]] = {}
        self._lock = threading.Lock()
        self._in_flight: dict[str, int] = {}
        self._turn = itertools.count()

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

    def _least_busy(self, model: MLModel) -> str:
        """The replica with the fewest requests in flight from this process.

        A runner answers one request at a time, so sending to a busy one queues behind
        it while another may be idle.
        """
        # Start the scan at a rotating replica so ties (all idle) spread the load too.
        start = next(self._turn)
        candidates = [
            str(paths.runner_socket(model.hash, model.deployed_build, (start + i) % model.replicas))
            for i in range(model.replicas)
        ]
        with self._lock:
            path = min(candidates, key=lambda p: self._in_flight.get(p, 0))
            self._in_flight[path] = self._in_flight.get(path, 0) + 1
        return path

    def _done(self, path: str) -> None:
        with self._lock:
            self._in_flight[path] -= 1

    def predict(self, model: MLModel, body: str) -> Answer:
        """Send one request to one of the model's runners, starting them if needed."""
        path = self._least_busy(model)
        try:
            return self._predict(model, body, path)
        finally:
            self._done(path)

    def _predict(self, model: MLModel, body: str, path: str) -> Answer:
        timeout = model.effective_request_timeout
        request = {"op": "predict", "data": body, "base_path": str(model.folder)}

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
            raise ServingError(
                502,
                "The model's runner stopped while answering this request (it crashed or was killed); it is being restarted.",
            ) from None

    def _connect_or_start(self, model: MLModel, path: str) -> socket.socket:
        with contextlib.suppress(FileNotFoundError, ConnectionRefusedError):
            return self._connect(path)
        answer = host_call({"op": "ensure", "model": model.hash}, timeout=settings.COLD_START_TIMEOUT + 5)
        if not answer.get("ok"):
            raise ServingError(503, f"The model could not be started: {answer.get('error')}")
        try:
            return self._connect(path)
        except OSError as exc:
            raise ServingError(
                503, f"The model's runner was started but refused the connection: {exc}"
            ) from None

    def _exchange(self, sock: socket.socket, request: dict, timeout: float, path: str) -> dict[str, Any]:
        sock.settimeout(timeout)
        try:
            write_frame(sock, request)
            frame = read_frame(sock)
        except TimeoutError:
            sock.close()
            self.drop(path)
            # A runner answers one request at a time: a stuck one would block every call.
            with contextlib.suppress(ServingError):
                host_call(
                    {"op": "kill", "socket": path, "reason": f"request exceeded {timeout} s"}, timeout=5
                )
            raise ServingError(
                504, f"The model did not answer within {timeout} s; its runner was restarted."
            ) from None
        self._give(path, sock)
        return frame


pool = RunnerPool()
