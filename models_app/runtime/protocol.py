"""Platform side of the runner's framing: a 4-byte big-endian length, then UTF-8 JSON.
Also the reader of a serving runner's load counters (``LoadBlock``).

``runner.py`` carries its own copy of these few lines because it must run standalone in
the model's interpreter; the tests check that the two implementations agree.
"""

from __future__ import annotations

import fcntl
import json
import math
import mmap
import os
import socket
import struct
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any, BinaryIO

MAX_FRAME_BYTES = 256 * 1024 * 1024
HEADER = struct.Struct(">I")


class ProtocolError(Exception):
    """The peer broke the framing: bad length, truncated frame or invalid JSON."""


class ConnectionClosed(ProtocolError):
    """The peer closed the stream cleanly, between two frames."""


def encode_frame(obj: Any) -> bytes:
    """Serialise ``obj`` as one frame (strict JSON: NaN and infinities are refused)."""
    try:
        payload = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"cannot encode frame: {exc}") from exc
    if len(payload) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(payload)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return HEADER.pack(len(payload)) + payload


# A runner's success frame is exactly this prefix, the result's JSON and "}" (the
# runner's encode_frame: compact separators, "ok" first). The web side passes the
# result's bytes through to the caller instead of decoding and re-encoding them.
OK_PREFIX = b'{"ok":true,"result":'


def predict_frame(data: str, base_path: str) -> bytes:
    """The frame of a predict request, built without a JSON encoder pass over ``data``."""
    payload = (
        f'{{"op":"predict","data":{encode_basestring(data)},"base_path":{encode_basestring(base_path)}}}'
    )
    encoded = payload.encode()
    if len(encoded) > MAX_FRAME_BYTES:
        raise ProtocolError(f"frame of {len(encoded)} bytes exceeds the {MAX_FRAME_BYTES}-byte limit")
    return HEADER.pack(len(encoded)) + encoded


def decode_payload(payload: bytes) -> Any:
    """Parse a frame's payload."""
    try:
        return json.loads(payload.decode())
    except ValueError as exc:  # covers UnicodeDecodeError and JSONDecodeError
        raise ProtocolError(f"frame is not UTF-8 JSON: {exc}") from exc


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    """Receive exactly ``n`` bytes; ``ConnectionClosed`` if the peer closed before the first."""
    return _read_exactly(sock.recv_into, n)


def write_frame(sock: socket.socket, obj: Any) -> None:
    """Send ``obj`` as one frame."""
    sock.sendall(encode_frame(obj))


# The largest answer to a control request (a ping, a runner's "loaded"): a few fields. A
# runner's answers come from the process the model's code runs in, so the model host
# reads no more than this of them.
MAX_CONTROL_FRAME_BYTES = 64 * 1024


def read_frame(source: socket.socket | BinaryIO, max_bytes: int = MAX_FRAME_BYTES) -> Any:
    """Read one frame from a connected socket or a binary file object."""
    if isinstance(source, socket.socket):
        return _read_frame(source.recv_into, max_bytes)
    return read_frame_from_file(source)


def read_frame_from_file(f: BinaryIO) -> Any:
    """Read one frame from a binary file object (a pipe, ``BytesIO``...)."""
    readinto = getattr(f, "readinto", None)
    if readinto is None:  # plain read()-only streams

        def readinto(view: memoryview) -> int:
            data = f.read(len(view))
            view[: len(data)] = data
            return len(data)

    return _read_frame(readinto)


def read_payload(sock: socket.socket) -> bytes:
    """Read one frame from a connected socket and return its payload undecoded."""
    return _read_payload(sock.recv_into)


def _read_frame(read_into: Any, max_bytes: int = MAX_FRAME_BYTES) -> Any:
    return decode_payload(_read_payload(read_into, max_bytes))


def _read_payload(read_into: Any, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    (length,) = HEADER.unpack(_read_exactly(read_into, HEADER.size))
    if length > max_bytes:
        raise ProtocolError(f"announced frame of {length} bytes exceeds the {max_bytes}-byte limit")
    try:
        payload = _read_exactly(read_into, length)
    except ConnectionClosed as exc:  # the header came, so this is a truncation, not a clean close
        raise ProtocolError(f"stream closed mid-frame (0 of {length} bytes received)") from exc
    return payload


def _read_exactly(read_into: Any, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        count = read_into(view[got:])
        if not count:
            if got == 0:
                raise ConnectionClosed("stream closed by the peer")
            raise ProtocolError(f"stream closed mid-frame ({got} of {n} bytes received)")
        got += count
    return bytes(buf)


def frame_complete(buffer: bytes | bytearray) -> bool:
    """True when ``buffer`` starts with one whole frame (its header and all its payload)."""
    if len(buffer) < HEADER.size:
        return False
    (length,) = HEADER.unpack_from(buffer)
    return len(buffer) >= HEADER.size + length


@dataclass(frozen=True)
class Load:
    """A runner's load counters at one moment (``runner._LoadBlock`` writes them)."""

    started: float  # monotonic time the call in progress started; 0 between calls
    busy: float  # seconds spent in finished calls
    requests: int
    waited: int  # calls that ended with another call already waiting
    queued: int = 0  # calls waiting on other connections when the last call ended


class LoadBlock:
    """The shared-memory block a serving runner keeps its load counters in, read without it.

    A ping waits behind the call in progress; this can be read at any time. The block is
    a memfd made here and handed to the runner (``pass_fds``, ``--load-fd``). It is
    sealed at its size: the runner's code could otherwise shrink it, and reading the
    mapping past the end would kill the host with SIGBUS. Its layout and seqlock are
    described in ``runner._LoadBlock``.
    """

    SIZE = 48
    _SEQ = struct.Struct("@Q")
    _RECORD = struct.Struct("@5d")
    # A record rewritten for longer than this many tries: the writer was preempted
    # mid-write; the sample is skipped (the next one will do).
    TRIES = 100

    def __init__(self) -> None:
        fd = os.memfd_create("neomaril-load", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        try:
            os.ftruncate(fd, self.SIZE)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            self._map = mmap.mmap(fd, self.SIZE)
        except BaseException:
            os.close(fd)
            raise
        self.fd: int | None = fd  # for the runner; close_fd() once it has its copy

    def close_fd(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def close(self) -> None:
        self.close_fd()
        self._map.close()

    def read(self) -> Load | None:
        """The counters as of one finished write; None when they could not be read now."""
        try:
            for _ in range(self.TRIES):
                (seq,) = self._SEQ.unpack_from(self._map, 0)
                if seq % 2:
                    continue  # being written
                record = self._RECORD.unpack_from(self._map, self._SEQ.size)
                if self._SEQ.unpack_from(self._map, 0)[0] != seq:
                    continue  # rewritten while read
                # Written by the process the model's code runs in: a value that makes no
                # sense is not a sample.
                if not all(math.isfinite(v) and v >= 0 for v in record):
                    return None
                started, busy, requests, waited, queued = record
                return Load(started, busy, int(requests), int(waited), int(queued))
        except ValueError:  # closed: the runner was stopped meanwhile
            return None
        return None
