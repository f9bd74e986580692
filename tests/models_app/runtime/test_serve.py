"""runner.py in serve mode: a warm process answering frames on a Unix socket."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from models_app.runtime.protocol import (
    ConnectionClosed,
    LoadBlock,
    encode_frame,
    predict_frame,
    read_frame,
    read_payload,
    write_frame,
)
from models_app.runtime.sandbox import UserCode, launch
from models_app.serving.answers import answer_for_payload
from models_app.serving.paths import listen

MODEL = """
import json, sys

def score(data, base_path):
    payload = json.loads(data)
    print("scoring", payload, flush=True)
    if payload.get("fail"):
        raise ValueError("bad input: %s" % payload["fail"])
    if payload.get("exit"):
        sys.exit(9)
    if payload.get("interrupt"):
        raise KeyboardInterrupt
    return {"double": payload["x"] * 2, "base": base_path, "nan": float("nan")}
"""


class Runner:
    """A serve-mode runner started for one test, as the host starts it: sandboxed, on a host-made socket."""

    def __init__(
        self,
        python: Path,
        source: Path,
        socket_path: Path,
        log: Path,
        extra_args: tuple[str, ...] = (),
        pass_fds: tuple[int, ...] = (),
    ) -> None:
        self.socket_path = socket_path
        self.log = log
        listener = listen(socket_path)
        code = UserCode(
            python=python,
            env={},
            cwd=source.parent,
            read_only=(source.parent,),
            runner_args=(
                "serve",
                "--listen-fd",
                str(listener.fileno()),
                "--source",
                str(source),
                "--entrypoint",
                "score",
                *extra_args,
            ),
            pass_fds=(listener.fileno(), *pass_fds),
        )
        with log.open("wb") as out:
            self.launched = launch(code, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        listener.close()
        self.proc = self.launched.process

    def wait_ready(self, timeout: float = 15) -> None:
        """Ping until the runner has loaded the model and answers."""
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                pytest.fail(f"runner exited with {self.proc.returncode}:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                pytest.fail("runner never answered on its socket")
            try:
                if self.call({"op": "ping"}, timeout=0.5)["pong"]:
                    return
            except OSError:
                pass
            time.sleep(0.01)

    def terminate(self) -> None:
        self.launched.terminate()

    def connect(self, timeout: float = 10) -> socket.socket:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(str(self.socket_path))
        return sock

    def call(self, request: dict, sock: socket.socket | None = None, timeout: float = 10) -> dict:
        own = sock is None
        sock = sock or self.connect(timeout)
        try:
            write_frame(sock, request)
            return read_frame(sock)
        finally:
            if own:
                sock.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # Unix socket paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    folder = Path(tempfile.mkdtemp(prefix="nr-", dir="/tmp"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def start_runner(serve_python, short_dir, write_user_module):
    runners: list[Runner] = []

    def start(
        code: str = MODEL, wait: bool = True, extra_args: tuple[str, ...] = (), load: LoadBlock | None = None
    ) -> Runner:
        source = write_user_module(code)
        n = len(runners)
        if load is not None:
            extra_args = (*extra_args, "--load-fd", str(load.fd))
        runner = Runner(
            serve_python,
            source,
            short_dir / f"r{n}.sock",
            short_dir / f"r{n}.log",
            extra_args,
            (load.fd,) if load is not None else (),
        )
        if load is not None:
            load.close_fd()  # the runner has its own copy, as with the host
        runners.append(runner)
        if wait:
            runner.wait_ready()
        return runner

    yield start
    for runner in runners:
        runner.stop()


def predict(x: object, **extra: object) -> dict:
    return {"op": "predict", "data": json.dumps({"x": x, **extra}), "base_path": "/models/m1"}


def test_ping(start_runner):
    runner = start_runner()
    answer = runner.call({"op": "ping"})
    assert answer["pid"] > 1  # its pid in the sandbox's own PID namespace
    assert answer == {
        "ok": True, "pong": True, "pid": answer["pid"], "requests": 0, "busy": 0.0, "waited": 0,
    }  # fmt: skip


def test_ping_tells_the_time_spent_answering_predictions(start_runner):
    runner = start_runner(
        """
        import time
        def score(data, base_path):
            time.sleep(0.2)
            return {}
        """
    )
    with runner.connect() as sock:
        for x in range(2):
            assert runner.call(predict(x), sock)["ok"]
        time.sleep(0.3)  # idle time is not busy time
        busy = runner.call({"op": "ping"}, sock)["busy"]
    assert 0.4 <= busy < 0.6


def test_ping_tells_how_many_calls_ended_with_another_waiting(start_runner):
    runner = start_runner(
        """
        import time
        def score(data, base_path):
            time.sleep(0.3)
            return {}
        """
    )
    with runner.connect() as first, runner.connect() as second:
        for x in range(2):  # one caller, one call after another: nothing waits
            assert runner.call(predict(x), first)["ok"]
        assert runner.call({"op": "ping"})["waited"] == 0
        write_frame(first, predict(1))
        time.sleep(0.1)  # the first is being answered
        write_frame(second, predict(2))  # another caller's call waits for it
        assert read_frame(first)["ok"] and read_frame(second)["ok"]
        assert runner.call({"op": "ping"})["waited"] == 1


def test_the_load_block_shows_the_call_in_progress_and_counts_it_when_it_ends(start_runner):
    """The host reads it while the runner is in a call, which a ping would wait behind."""
    load = LoadBlock()
    runner = start_runner(
        """
        import time
        def score(data, base_path):
            time.sleep(0.5)
            return {}
        """,
        load=load,
    )
    idle = load.read()
    assert (idle.started, idle.busy, idle.requests, idle.waited) == (0, 0, 0, 0)
    with runner.connect() as first, runner.connect() as second, runner.connect() as third:
        for later in (second, third):  # accepted by the runner now: a call on a connection
            runner.call({"op": "ping"}, later)  # still in its listener is not counted yet
        write_frame(first, predict(1))
        time.sleep(0.25)
        during = load.read()
        assert during.requests == 0 and during.busy == 0.0  # counted once it ends
        assert 0.15 < time.monotonic() - during.started < 0.5  # the host's clock is the runner's
        write_frame(second, predict(2))  # both wait for the first
        write_frame(third, predict(3))
        assert read_frame(first)["ok"]
        time.sleep(0.1)
        assert load.read().queued == 2  # when the first call ended, two waited
        assert read_frame(second)["ok"] and read_frame(third)["ok"]
    after = load.read()
    assert after.started == 0.0 and after.requests == 3 and after.waited == 2 and after.queued == 0
    assert 1.5 <= after.busy < 1.9
    assert runner.call({"op": "ping"})["busy"] == after.busy  # the same count as the ping's


def test_socket_is_private(start_runner):
    runner = start_runner()
    assert stat.S_IMODE(os.stat(runner.socket_path).st_mode) == 0o600
    assert stat.S_ISSOCK(os.stat(runner.socket_path).st_mode)


def test_many_predicts_on_one_connection(start_runner):
    runner = start_runner()
    with runner.connect() as sock:
        for x in range(5):
            assert runner.call(predict(x), sock) == {
                "ok": True,
                "result": {"double": 2 * x, "base": "/models/m1", "nan": None},
            }
        assert runner.call({"op": "ping"}, sock)["requests"] == 5


def test_predicts_over_new_connections(start_runner):
    runner = start_runner()
    for x in range(3):
        assert runner.call(predict(x))["result"]["double"] == 2 * x
    assert runner.call({"op": "ping"})["requests"] == 3
    # User prints went to the runner's own output, not into the protocol.
    assert "scoring {'x': 2}" in runner.log.read_text()


def test_user_exception_is_an_error_frame_and_the_runner_goes_on(start_runner, write_user_module):
    runner = start_runner()
    with runner.connect() as sock:
        answer = runner.call(predict(1, fail="negative"), sock)
        assert answer["ok"] is False
        assert answer["phase"] == "call"
        assert answer["error"] == "ValueError: bad input: negative"
        first = next(line for line in answer["traceback"].splitlines() if "File " in line)
        assert first.strip().endswith("line 8, in score")
        assert "app.py" in first
        assert "runner.py" not in answer["traceback"]
        # sys.exit in a request must not take the warm runner down.
        assert runner.call(predict(1, exit=True), sock)["error"] == "SystemExit: 9"
        assert runner.call(predict(4), sock)["result"]["double"] == 8
        # Nor a KeyboardInterrupt (it ended the runner: a 502, and the call sent again).
        assert runner.call(predict(1, interrupt=True), sock)["error"] == "KeyboardInterrupt"
        assert runner.call(predict(5), sock)["result"]["double"] == 10
    assert runner.proc.poll() is None


def test_unknown_op_and_bad_fields(start_runner):
    runner = start_runner()
    with runner.connect() as sock:
        answer = runner.call({"op": "dance"}, sock)
        assert answer["ok"] is False and answer["phase"] == "protocol"
        assert "unknown op 'dance'" in answer["error"]
        answer = runner.call({"op": "predict", "data": {"x": 1}, "base_path": "/"}, sock)
        assert answer["phase"] == "protocol"
        # The connection is still usable after answered mistakes.
        assert runner.call({"op": "ping"}, sock)["pong"] is True


def test_invalid_json_frame_is_answered_then_dropped(start_runner):
    runner = start_runner()
    with runner.connect() as sock:
        sock.sendall(struct.pack(">I", 5) + b"{nope")
        answer = read_frame(sock)
        assert answer["phase"] == "protocol"
        assert "not UTF-8 JSON" in answer["error"]
        with pytest.raises(ConnectionClosed):
            read_frame(sock)
    assert runner.call({"op": "ping"})["pong"] is True


def test_oversized_frame_is_refused(start_runner):
    runner = start_runner()
    with runner.connect() as sock:
        sock.sendall(struct.pack(">I", 256 * 1024 * 1024 + 1))
        answer = read_frame(sock)
        assert "exceeds" in answer["error"]
    assert runner.call({"op": "ping"})["pong"] is True


def test_runner_survives_clients_that_vanish(start_runner):
    runner = start_runner()
    # Mid-header, mid-payload, and right after sending a request (before the answer).
    for chunk in (b"\x00\x00", struct.pack(">I", 100) + b'{"op": "pi', encode_frame(predict(1))):
        sock = runner.connect()
        sock.sendall(chunk)
        sock.close()
    assert runner.call({"op": "ping"})["pong"] is True
    assert runner.call(predict(21))["result"]["double"] == 42
    assert runner.proc.poll() is None


def test_sigterm_stops_the_runner(start_runner):
    runner = start_runner()
    runner.terminate()
    assert runner.proc.wait(timeout=10) == 0


def test_sigterm_while_a_client_is_connected(start_runner):
    runner = start_runner()
    with runner.connect() as sock:
        assert runner.call({"op": "ping"}, sock)["pong"]
        runner.terminate()
        assert runner.proc.wait(timeout=10) == 0


def test_sigterm_during_a_call_answers_it_then_stops(start_runner):
    runner = start_runner(
        """
        import time
        def score(data, base_path):
            time.sleep(1)
            return {"finished": True}
        """
    )
    with runner.connect() as sock, runner.connect() as idle:
        assert runner.call({"op": "ping"}, idle)["pong"]  # a pooled connection, open but quiet
        write_frame(sock, predict(1))
        time.sleep(0.3)
        runner.terminate()
        assert read_frame(sock) == {"ok": True, "result": {"finished": True}}
        assert runner.proc.wait(timeout=10) == 0
        with pytest.raises(ConnectionClosed):
            read_frame(idle)


def test_import_failure_exits_3_with_the_traceback(start_runner):
    runner = start_runner("import json\nraise RuntimeError('weights missing')\n", wait=False)
    assert runner.proc.wait(timeout=15) == 3
    log = runner.log.read_text()
    assert "Traceback (most recent call last):" in log
    assert 'app.py", line 2, in <module>' in log
    assert "RuntimeError: weights missing" in log


def test_missing_entrypoint_exits_3(start_runner):
    runner = start_runner("def predict(data, base_path):\n    return {}\n", wait=False)
    assert runner.proc.wait(timeout=15) == 3
    assert "'score' not found" in runner.log.read_text()


def test_persistent_connections_are_served_interleaved(start_runner):
    """Web processes pool connections: an open, idle one must not block the others."""
    runner = start_runner(extra_args=("--idle-timeout", "30"))
    with runner.connect() as first, runner.connect() as second:
        for round_ in range(3):
            for conn in (second, first):
                write_frame(conn, {"op": "ping"})
                assert read_frame(conn)["pong"] is True, round_
        assert runner.call({"op": "ping"})["pong"] is True  # a third, short-lived one too


def test_idle_client_is_dropped_so_others_get_served(start_runner):
    runner = start_runner(extra_args=("--idle-timeout", "0.3"))
    with runner.connect() as idle:
        idle.sendall(b"\x00")  # a client that stalls mid-header holds the single-threaded runner
        started = time.monotonic()
        assert runner.call({"op": "ping"})["pong"] is True
        assert 0.2 < time.monotonic() - started < 5
        with pytest.raises(ConnectionClosed):
            read_frame(idle)
    assert "connection dropped: timed out" in runner.log.read_text()


def test_sigterm_swallowed_by_user_code_still_stops_the_runner(start_runner):
    runner = start_runner(
        """
        import time
        def score(data, base_path):
            try:
                time.sleep(1)
            except BaseException:  # a user's over-broad except
                pass
            return {"finished": True}
        """
    )
    with runner.connect() as sock:
        write_frame(sock, predict(1))
        time.sleep(0.3)
        runner.terminate()
        assert read_frame(sock) == {"ok": True, "result": {"finished": True}}
    assert runner.proc.wait(timeout=10) == 0


PANDAS_MODEL = """
import json
import pandas as pd

def score(data, base_path):
    ask = json.loads(data)["x"]
    if ask == "forecast":
        dates = pd.date_range("2024-01-01", periods=2, freq="D", name="ds")
        return {
            "forecast": pd.DataFrame({"v": [1.0, float("nan")]}, index=dates),
            "by_label": pd.Series({"a": 1.5, "b": float("nan")}),
            "horizon": pd.Timedelta("1 days 02:00:00.5"),
            "month": pd.Period("2024-01", "M"),
        }
    if ask == "duplicates":
        return pd.DataFrame([[1, 2]], columns=["a", "a"])
    return "approved"
"""


def test_pandas_answers_reach_the_caller_whole_or_as_a_422(short_dir, write_user_module):
    """Through a real runner and the web side's answer: indexes kept, refusals as 422s."""
    # The platform's own environment has pandas (and numpy).
    python = Path(sys.prefix) / "bin" / "python"
    runner = Runner(python, write_user_module(PANDAS_MODEL), short_dir / "p.sock", short_dir / "p.log")
    try:
        runner.wait_ready(timeout=60)

        def call(x: str) -> tuple[int, dict]:
            with runner.connect(timeout=30) as sock:
                sock.sendall(predict_frame(json.dumps({"x": x}), "/models/m1"))
                status, body = answer_for_payload(read_payload(sock))
            return status, json.loads(body)

        assert call("forecast") == (
            200,
            {
                "forecast": [
                    {"ds": "2024-01-01T00:00:00", "v": 1.0},
                    {"ds": "2024-01-02T00:00:00", "v": None},
                ],
                "by_label": {"a": 1.5, "b": None},
                "horizon": "P1DT2H0M0.500S",
                "month": "2024-01",
            },
        )
        status, body = call("duplicates")
        assert status == 422 and body["model_error"]["phase"] == "result"
        assert body["detail"].startswith(
            "The model raised an error: ValueError: the entrypoint's result has a pandas DataFrame at "
            'result with more than one column named "a"'
        )
        status, body = call("word")
        assert status == 422
        assert body["detail"].endswith(
            'return a dict or a list instead (such as {"result": "approved"}), or json.dumps(text) to '
            "answer the text as a JSON string"
        )
    finally:
        runner.stop()


def test_a_call_whose_caller_hung_up_while_it_waited_is_not_run(start_runner):
    """Calls queued behind a slow model time out at their callers, which close their
    connections: running them anyway kept the runner busy on answers nobody would read."""
    runner = start_runner(
        """
        import time
        def score(data, base_path):
            time.sleep(0.4)
            return {}
        """
    )
    with runner.connect() as first, runner.connect() as last:
        for connection in (first, last):  # accepted, so each call is queued at the runner
            runner.call({"op": "ping"}, connection)
        write_frame(first, predict(1))
        time.sleep(0.1)  # the first is being answered
        with runner.connect() as gave_up:
            write_frame(gave_up, predict(2))
            time.sleep(0.05)
        write_frame(last, predict(3))
        assert read_frame(first)["ok"] and read_frame(last)["ok"]
    assert runner.call({"op": "ping"})["requests"] == 2  # the abandoned one was never run
