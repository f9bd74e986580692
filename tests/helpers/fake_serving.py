"""A model host and runners that speak the wire protocol, in threads of the test.

The tests control when a runner hangs, crashes or is killed (the real processes are
covered by tests/models_app/serving/test_e2e.py). Used by the serving client's tests
(test_aio) and the metrics' (tests/portal/test_metrics.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import threading
import time

from models_app.runtime.protocol import ProtocolError, read_frame, write_frame
from models_app.serving import aio, paths


class FakeRunner:
    """A runner as the web process sees it: one request at a time, over any number of
    connections. `{"x": n}` answers `{"y": 2n, "runner": <its number>}`; `{"big": n}` a
    string of n bytes; `{"hang": true}` never answers; `{"crash": true}` kills the runner;
    `"work": s` takes s seconds of its one-at-a-time time first.
    `requests` counts the requests it read. `queue_delay` holds back every
    other request a little, so that a hanging one sent at the same time goes first.
    Like the real runner, it closes its end of a connection its caller closed: `accepted`
    and `open_connections` are what a runner's file descriptors would show."""

    def __init__(self, path: str, number: int, queue_delay: float = 0.0) -> None:
        self.number = number
        self.queue_delay = queue_delay
        self.killed = threading.Event()
        self._busy = threading.Lock()
        self._connections: list[socket.socket] = []
        self.accepted = 0
        self.requests = 0
        self._open = 0
        self._counting = threading.Lock()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # a killed runner's socket file, as the host would remove it
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(path)
        self._server.listen(64)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            self._connections.append(conn)
            with self._counting:
                self.accepted += 1
                self._open += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    @property
    def open_connections(self) -> int:
        with self._counting:
            return self._open

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        finally:
            conn.close()
            with self._counting:
                self._open -= 1

    def _answer(self, conn: socket.socket) -> None:
        while True:
            try:
                data = json.loads(read_frame(conn)["data"])
            except (ProtocolError, OSError):
                return
            with self._counting:
                self.requests += 1
            if not data.get("hang"):
                time.sleep(self.queue_delay)
            with self._busy:
                if self.killed.is_set():
                    return
                if data.get("hang"):
                    self.killed.wait()
                    return
                if data.get("crash"):
                    self.kill()
                    return
                time.sleep(data.get("work", 0))
                if "big" in data:
                    answer = {"ok": True, "result": "b" * data["big"]}
                else:
                    answer = {"ok": True, "result": {"y": data["x"] * 2, "runner": self.number}}
            try:
                write_frame(conn, answer)
            except OSError:
                return

    def kill(self) -> None:
        """What SIGKILL does to a runner: every connection and the listener close at once."""
        self.killed.set()
        for sock in [self._server, *self._connections]:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class FakeHost:
    """The model host's `ensure` and `kill`, for one runner socket (replicas=1)."""

    def __init__(self, path: str, queue_delay: float = 0.0) -> None:
        self.path = path
        self.queue_delay = queue_delay
        self.requests: list[dict] = []
        self.runner: FakeRunner | None = None
        self.started = 0
        self._lock = threading.Lock()

    def start(self) -> FakeRunner:
        self.started += 1
        self.runner = FakeRunner(self.path, self.started, self.queue_delay)
        return self.runner

    def __call__(self, request: dict, timeout: float) -> dict:
        with self._lock:
            self.requests.append(request)
            if request["op"] == "ensure":
                if self.runner is None or self.runner.killed.is_set():
                    self.start()
                return {"ok": True}
            if request["op"] == "kill":
                assert request["socket"] == self.path
                self.runner.kill()
                return {"ok": True, "killed": True}
        raise AssertionError(request)

    def ops(self) -> list[str]:
        return [r["op"] for r in self.requests]


def fake_host(monkeypatch, model, **options) -> FakeHost:
    host = FakeHost(paths.runner_socket_name(model.hash, model.deployed_build, 0), **options)
    monkeypatch.setattr(aio, "host_call", host)
    return host
