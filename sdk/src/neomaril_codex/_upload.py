"""Streaming multipart/form-data bodies with an optional progress bar.

requests builds multipart bodies in memory; a model pickle or an async input of a few
GB must not be. :class:`MultipartBody` is an iterable with a known length: requests
sends it with a ``Content-Length`` (the server wants one; chunked uploads are not
accepted everywhere) and reads the files from disk in chunks as the socket takes them.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import IO, Iterator, List, Optional, Sequence, Tuple, Union

from neomaril_codex._log import in_notebook

CHUNK_SIZE = 256 * 1024
# Below this an upload is over before a bar would be readable.
PROGRESS_MIN_BYTES = 1024 * 1024

PathLike = Union[str, "os.PathLike[str]"]


def _quote(value: str) -> str:
    """A header parameter value as browsers (and urllib3) write it: raw UTF-8, quotes escaped."""
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


class MultipartBody:
    """A multipart/form-data body streamed from disk.

    Args:
        fields: ``(name, value)`` text fields, in order.
        files: ``(field name, file name, path)`` file parts, in order (repeat a field
            name to send several files in it).
        progress: a :class:`Progress` told about every chunk sent, or None.
    """

    def __init__(
        self,
        fields: Sequence[Tuple[str, str]],
        files: Sequence[Tuple[str, str, PathLike]],
        progress: Optional[Progress] = None,
    ) -> None:
        self.boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self.progress = progress
        self._parts: List[Tuple[bytes, Optional[Path], int]] = []
        for name, value in fields:
            head = (
                f'--{self.boundary}\r\nContent-Disposition: form-data; name="{_quote(name)}"\r\n\r\n'
            ).encode()
            self._parts.append((head + value.encode("utf-8") + b"\r\n", None, 0))
        for name, filename, path in files:
            file = Path(path)
            head = (
                f"--{self.boundary}\r\n"
                f'Content-Disposition: form-data; name="{_quote(name)}"; filename="{_quote(filename)}"\r\n'
                "Content-Type: application/octet-stream\r\n\r\n"
            ).encode()
            self._parts.append((head, file, file.stat().st_size))
        self._closing = f"--{self.boundary}--\r\n".encode()
        self.length = sum(
            len(head) + size + (2 if file is not None else 0) for head, file, size in self._parts
        ) + len(self._closing)
        if self.progress is not None:
            self.progress.total = self.length

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        sent = 0
        for head, file, size in self._parts:
            yield head
            sent += len(head)
            if file is None:
                continue
            read = 0
            with open(file, "rb") as handle:
                for chunk in _chunks(handle):
                    read += len(chunk)
                    if read > size:
                        raise OSError(f"{file} grew while it was being uploaded; try again.")
                    yield chunk
                    sent += len(chunk)
                    if self.progress is not None:
                        self.progress.update(sent)
            if read != size:
                raise OSError(f"{file} shrank while it was being uploaded; try again.")
            yield b"\r\n"
            sent += 2
        yield self._closing
        if self.progress is not None:
            self.progress.update(self.length)
            self.progress.close()


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    while True:
        chunk = handle.read(CHUNK_SIZE)
        if not chunk:
            return
        yield chunk


def interactive() -> bool:
    """True in a terminal (stderr is a TTY) or a notebook: where a progress bar is seen."""
    try:
        tty = sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        tty = False
    return tty or in_notebook()


def _mb(size: float) -> str:
    return f"{size / 1024 / 1024:.1f}"


class Progress:
    """A one-line text progress bar on stderr, redrawn at most ten times a second."""

    WIDTH = 30

    def __init__(self, label: str, stream: Optional[IO[str]] = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.total = 0
        self.started = time.monotonic()
        self._last_draw = 0.0
        self._closed = False

    def update(self, sent: int) -> None:
        now = time.monotonic()
        if sent < self.total and now - self._last_draw < 0.1:
            return
        self._last_draw = now
        fraction = sent / self.total if self.total else 1.0
        filled = int(self.WIDTH * fraction)
        speed = sent / max(now - self.started, 1e-6)
        self.stream.write(
            f"\r{self.label} {fraction:4.0%} |{'█' * filled}{' ' * (self.WIDTH - filled)}| "
            f"{_mb(sent)}/{_mb(self.total)} MB {_mb(speed)} MB/s"
        )
        self.stream.flush()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.stream.write("\n")
            self.stream.flush()


def progress_for(
    label: str, files: Sequence[Tuple[str, str, PathLike]], enabled: Optional[bool]
) -> Optional[Progress]:
    """A Progress for this upload, or None: ``enabled`` True/False forces it; None
    means "when interactive and the files are over 1 MB"."""
    if enabled is False:
        return None
    if enabled is None:
        size = sum(Path(path).stat().st_size for _, _, path in files)
        if size < PROGRESS_MIN_BYTES or not interactive():
            return None
    return Progress(label)
