"""The platform's framing (protocol.py) against the runner's own copy (runner.py).

runner.py is loaded here as plain platform code (it is ours, not a user's) so the two
implementations can be checked against each other on real sockets and pipes.
"""

from __future__ import annotations

import importlib.util
import io
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from types import ModuleType

import pytest

from models_app.runtime import protocol
from models_app.runtime.sandbox import RUNNER_PATH

SAMPLES = [
    {"op": "ping"},
    {"ok": True, "result": {"naïve": "日本語", "n": [1, 2.5, None, True], "nested": {"a": []}}},
    [],
    "just a string",
    {"big": "x" * 3_000_000},
]


@pytest.fixture(scope="module")
def runner() -> Iterator[ModuleType]:
    spec = importlib.util.spec_from_file_location("neomaril_runner_under_test", RUNNER_PATH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("neomaril_runner_under_test", None)


def test_same_limit_and_bytes(runner):
    assert runner.MAX_FRAME_BYTES == protocol.MAX_FRAME_BYTES == 256 * 1024 * 1024
    for obj in SAMPLES:
        assert runner.encode_frame(obj) == protocol.encode_frame(obj)


@pytest.mark.parametrize("obj", SAMPLES, ids=range(len(SAMPLES)))
def test_platform_to_runner_over_a_socket(runner, obj):
    left, right = socket.socketpair()
    with left, right:
        # A sender thread: a 3 MB frame doesn't fit in the socket buffer.
        sender = threading.Thread(target=protocol.write_frame, args=(left, obj))
        sender.start()
        assert runner.read_frame_from_socket(right) == obj
        sender.join()
        left.close()
        assert runner.read_frame_from_socket(right) is None  # clean close between frames


@pytest.mark.parametrize("obj", SAMPLES, ids=range(len(SAMPLES)))
def test_runner_to_platform_over_a_socket(runner, obj):
    left, right = socket.socketpair()
    with left, right:
        sender = threading.Thread(target=left.sendall, args=(runner.encode_frame(obj),))
        sender.start()
        assert protocol.read_frame(right) == obj
        sender.join()
        left.close()
        with pytest.raises(protocol.ConnectionClosed):
            protocol.read_frame(right)


def test_files_both_ways(runner):
    stream = io.BytesIO(b"".join(protocol.encode_frame(obj) for obj in SAMPLES))
    assert [runner.read_frame_from_file(stream) for _ in SAMPLES] == SAMPLES
    assert runner.read_frame_from_file(stream) is None
    stream = io.BytesIO(b"".join(runner.encode_frame(obj) for obj in SAMPLES))
    assert [protocol.read_frame(stream) for _ in SAMPLES] == SAMPLES


def test_read_only_streams_are_supported():
    class ReadOnly:
        def __init__(self, data: bytes) -> None:
            self.inner = io.BytesIO(data)

        def read(self, n: int) -> bytes:
            return self.inner.read(min(n, 3))  # short reads, like a pipe

    assert protocol.read_frame_from_file(ReadOnly(protocol.encode_frame({"a": 1}))) == {"a": 1}


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00\x00", "mid-frame (2 of 4 bytes"),
        (struct.pack(">I", 10) + b'{"a"', "mid-frame (4 of 10 bytes"),
        (struct.pack(">I", 10), "mid-frame"),
        (struct.pack(">I", 3) + b"{{{", "not UTF-8 JSON"),
        (struct.pack(">I", 2) + b"\xff\xfe", "not UTF-8 JSON"),
        (struct.pack(">I", 256 * 1024 * 1024 + 1), "exceeds"),
    ],
    ids=["short-header", "short-payload", "header-only", "bad-json", "bad-utf8", "too-big"],
)
def test_both_sides_refuse_broken_frames(runner, data, message):
    with pytest.raises(protocol.ProtocolError, match=message.replace("(", r"\(")) as platform_error:
        protocol.read_frame(io.BytesIO(data))
    assert not isinstance(platform_error.value, protocol.ConnectionClosed)
    with pytest.raises(runner.ProtocolError, match=message.replace("(", r"\(")):
        runner.read_frame_from_file(io.BytesIO(data))


def test_encoders_refuse_nan_and_huge_frames(runner, monkeypatch):
    with pytest.raises(protocol.ProtocolError):
        protocol.encode_frame({"x": float("nan")})
    with pytest.raises(ValueError):
        runner.encode_frame({"x": float("nan")})
    monkeypatch.setattr(protocol, "MAX_FRAME_BYTES", 10)
    monkeypatch.setattr(runner, "MAX_FRAME_BYTES", 10)
    with pytest.raises(protocol.ProtocolError, match="exceeds"):
        protocol.encode_frame("x" * 20)
    with pytest.raises(runner.ProtocolError, match="exceeds"):
        runner.encode_frame("x" * 20)


def test_recv_exactly(runner):
    left, right = socket.socketpair()
    with left, right:
        left.sendall(b"abc")
        left.sendall(b"def")
        assert protocol.recv_exactly(right, 5) == b"abcde"
        left.close()
        with pytest.raises(protocol.ProtocolError, match="1 of 2"):
            protocol.recv_exactly(right, 2)


@pytest.mark.parametrize("result", [{"naïve": "日本語", "p": 0.25}, [1, 2], "text", 3, None, {}])
def test_runner_success_frame_starts_with_the_prefix_the_web_side_passes_through(runner, result):
    from models_app.serving.answers import answer_for_payload

    payload = runner.encode_frame({"ok": True, "result": result})[protocol.HEADER.size :]
    assert payload.startswith(protocol.OK_PREFIX)
    status, content = answer_for_payload(payload)
    assert status == 200
    assert protocol.decode_payload(content) == result


def test_predict_frame_is_the_request_the_runner_expects(runner):
    data = '{"naïve": "日本語", "quote": "\\"", "nl": "\\n"}'
    frame = protocol.predict_frame(data, "/data/models/M1")
    (length,) = protocol.HEADER.unpack(frame[: protocol.HEADER.size])
    assert length == len(frame) - protocol.HEADER.size
    decoded = runner.read_frame_from_file(io.BytesIO(frame))
    assert decoded == {"op": "predict", "data": data, "base_path": "/data/models/M1"}


def test_answer_for_payload_reads_errors_and_reports_garbage():
    from models_app.serving.answers import answer_for_payload

    status, content = answer_for_payload(
        b'{"ok":false,"error":"ValueError: bad","phase":"call","traceback":"Traceback..."}'
    )
    assert status == 422
    assert protocol.decode_payload(content)["model_error"]["traceback"] == "Traceback..."
    status, content = answer_for_payload(b"\xff not json")
    assert status == 500 and b"Internal error talking to the model's runner" in content


# --- a serving runner's load block ------------------------------------------------------


def test_the_host_reads_the_load_counters_the_runner_writes(runner):
    block = protocol.LoadBlock()
    try:
        assert runner._LoadBlock.SIZE == protocol.LoadBlock.SIZE
        assert block.read() == protocol.Load(started=0.0, busy=0.0, requests=0, waited=0)
        writer = runner._LoadBlock(os.dup(block.fd))
        writer.call_started(1234.5)
        assert block.read() == protocol.Load(started=1234.5, busy=0.0, requests=0, waited=0)
        writer.call_ended(0.75, 1, 0, 0)
        assert block.read() == protocol.Load(started=0.0, busy=0.75, requests=1, waited=0, queued=0)
        writer.call_started(1240.0)
        writer.call_ended(1.5, 2, 1, 3)
        assert block.read() == protocol.Load(started=0.0, busy=1.5, requests=2, waited=1, queued=3)
    finally:
        block.close()


def test_a_record_being_written_is_never_read(runner):
    """The runner rewrites its record after every call while the host reads it from
    another process: the host gets one whole record or none, never half of two."""
    block = protocol.LoadBlock()
    writer = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(RUNNER_PATH), str(block.fd)], pass_fds=[block.fd]
    )
    try:
        # Until the reads have met many records, not for a fixed time: on a loaded machine
        # the writer's start-up (the import) and its share of the CPU vary.
        deadline = time.monotonic() + 10
        loads = []
        seen = set()
        while len(seen) <= 300 and time.monotonic() < deadline and writer.poll() is None:
            load = block.read()
            if load is not None:
                loads.append(load)
                seen.add(load.requests)
    finally:
        writer.kill()
        writer.wait()
        block.close()
    assert len({load.requests for load in loads}) > 100, "the writer hardly wrote"
    for load in loads:
        assert load.busy == load.requests == load.waited == load.queued  # written together
        assert load.started in (0.0, load.busy + 1)  # between calls, or in the next one


# Writes records whose fields are all equal, as fast as it can.
WRITER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("runner_writing", sys.argv[1])
runner = importlib.util.module_from_spec(spec)
spec.loader.exec_module(runner)
block = runner._LoadBlock(int(sys.argv[2]))
n = 0
deadline = time.monotonic() + 10
while time.monotonic() < deadline:
    n += 1
    block.call_started(float(n))
    block.call_ended(float(n), n, n, n)
"""


def test_the_runner_cannot_resize_its_load_block():
    """Reading a mapping past the end of its file is a SIGBUS: the runner's code shrinking
    the block would kill the host."""
    block = protocol.LoadBlock()
    try:
        for size in (0, 4096):
            with pytest.raises(PermissionError):
                os.ftruncate(block.fd, size)
    finally:
        block.close()
