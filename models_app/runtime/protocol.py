"""Platform side of the runner's framing: a 4-byte big-endian length, then UTF-8 JSON.

``runner.py`` carries its own copy of these few lines because it must run standalone in
the model's interpreter; the tests check that the two implementations agree.
"""

from __future__ import annotations

import json
import socket
import struct
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
