"""Django (WSGI) inside the ASGI server: everything the serving fast path does not answer.

a2wsgi runs the WSGI app in a thread pool and streams both ways (the request body is
pulled from the event loop as the view reads it, the response is pushed back with
backpressure), so uploads and downloads of hundreds of MB stay out of memory, as they
do under gunicorn's threaded worker.

A thread is held for as long as its request's body takes to arrive, and a worker has
NEOMARIL_WEB_THREADS of them for every page and API call: a few clients sending their
bodies a byte a second would otherwise stop the node's API, pages and /healthz (for a
load balancer, a dead node). So a body is first read on the event loop, where waiting
costs no thread, whenever it is small (up to BUFFERED_BODY_BYTES, or sent without a
Content-Length): whole, within NEOMARIL_REQUEST_BODY_TIMEOUT seconds, or 408. Django
then gets it with its length, which also lets it read a chunked body (it reads a body
without CONTENT_LENGTH as empty). A larger body (an upload) streams as before, but
must keep coming: no pause longer than that timeout, and at least MIN_BODY_RATE bytes a
second on average once that long has passed.

Answers hold a thread the same way: a2wsgi's thread waits while the client does not read
(backpressure). Eight stalled downloads stopped a worker's API and its /healthz, and
sixteen through the balancer took every node out of it. So a client that takes none of
an answer's next part for that timeout is cut (`_Responder`), which frees the thread;
and /healthz has threads of its own, never taken by pages, downloads or Try it.

A download that keeps coming, only slowly (a 1 GB result over a slow link), held its
thread for all of it. So a file answer (Django's FileResponse, whitenoise's static files:
both hand their file to the server's `wsgi.file_wrapper`) leaves the thread as soon as
its headers are out: the thread duplicates the file's descriptor and ends the request
there, and the event loop sends the file, reading it in parts on threads of its own
(`FILE_READ_THREADS`, each read brief whatever the client's pace). Other answers (pages,
the API's JSON, a file without a descriptor) are sent from their thread as before.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import stat
import time
from concurrent.futures import ThreadPoolExecutor

from a2wsgi import WSGIMiddleware
from a2wsgi.wsgi import WSGIResponder
from django.conf import settings
from django.http import UnreadablePostError

from groups.api.middleware import BodyTimeout
from groups.api.shape import JSON, error_json
from models_app.serving.answers import BODY_TIMEOUT_MESSAGE

logger = logging.getLogger(__name__)

# Bodies up to this size are read whole on the event loop before Django sees them: the
# API's JSON, the portal's forms, logins.
BUFFERED_BODY_BYTES = 1024 * 1024
# A streamed body slower than this on average (after the first timeout's worth of
# seconds) is cut: a 1 GB upload would take three days.
MIN_BODY_RATE = 4 * 1024
# A file answer is read and sent in parts of this size, on this many threads per worker.
FILE_PART_BYTES = 64 * 1024
FILE_READ_THREADS = 4


def _raising_on_disconnect(receive):
    """a2wsgi reads a disconnect as the end of the body; a view would then see a
    truncated upload as a complete one. Raise instead, as a WSGI server does."""

    async def receive_body():
        message = await receive()
        if message["type"] == "http.disconnect":
            raise UnreadablePostError("The client disconnected before sending the whole request body.")
        return message

    return receive_body


def _paced(receive, timeout: float):
    """`receive` for a streamed body that must keep coming (BodyTimeout otherwise)."""
    started = time.monotonic()
    received = 0

    async def receive_body():
        nonlocal received
        try:
            message = await asyncio.wait_for(receive(), timeout)
        except TimeoutError:
            raise BodyTimeout(f"The client sent no part of the request body for {timeout:g} s.") from None
        received += len(message.get("body", b""))
        elapsed = time.monotonic() - started
        if message.get("more_body") and elapsed > timeout and received < MIN_BODY_RATE * elapsed:
            raise BodyTimeout(
                f"The request body came at {received / elapsed / 1024:.1f} KB/s, under the "
                f"{MIN_BODY_RATE // 1024} KB/s a request body must keep."
            )
        return message

    return receive_body


def _content_length(scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _whole_body(receive, limit: int, timeout: float) -> bytes | int:
    """The body, read within `timeout` seconds; else the status to answer (408, 413)."""
    body = bytearray()

    async def read() -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise UnreadablePostError("The client disconnected before sending the whole request body.")
            body.extend(message.get("body", b""))
            if len(body) > limit:
                raise OverflowError
            if not message.get("more_body"):
                return

    try:
        await asyncio.wait_for(read(), timeout)
    except TimeoutError:
        return 408
    except OverflowError:
        return 413
    return bytes(body)


REFUSALS = {
    408: BODY_TIMEOUT_MESSAGE,
    413: (
        "A request body sent without Content-Length may be up to {limit} bytes: send a larger one "
        "with its Content-Length."
    ),
}


async def _refuse(status: int, scope, send, **values) -> None:
    """The API's error shape under /api/, plain text elsewhere."""
    detail = REFUSALS[status].format(**values)
    if scope["path"].startswith("/api/"):
        content, kind = error_json(detail, "request_timeout" if status == 408 else "too_large"), JSON.encode()
    else:
        content, kind = detail.encode(), b"text/plain; charset=utf-8"
    headers = [(b"content-type", kind), (b"content-length", b"%d" % len(content)), (b"connection", b"close")]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def _replaying(body: bytes, receive):
    """`receive` that gives the body read already, then waits on the client's as before."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive_again():
        return pending.pop() if pending else await receive()

    return receive_again


class ClientStalled(Exception):
    """The client took none of the answer's next part for the timeout: the answer is cut."""


class FileShrank(Exception):
    """A file answer's file ended before the size its headers announced: the answer is cut."""


class FileToStream:
    """The `wsgi.file_wrapper`: the file of a file answer, which the bridge sends itself.

    Iterated (by a server without the bridge), it reads the file in `block_size` parts.
    """

    def __init__(self, filelike, block_size: int = 8192) -> None:
        self.filelike = filelike
        self.block_size = block_size

    def __iter__(self):
        while part := self.filelike.read(self.block_size):
            yield part

    def close(self) -> None:
        # Django points it at the response's close, which closes the file and sends
        # request_finished (the thread's database connections are then looked at).
        self.filelike.close()

    def descriptor(self) -> tuple[int, int] | None:
        """A duplicate of a regular file's descriptor, and the bytes left from its position;
        None when it has none (an in-memory file, a slice of one)."""
        try:
            fd = os.dup(self.filelike.fileno())
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            return None
        try:
            info = os.fstat(fd)
            if stat.S_ISREG(info.st_mode):
                # The file object may have read ahead: its position, not the descriptor's.
                position = self.filelike.tell()
                os.lseek(fd, position, os.SEEK_SET)
                return fd, max(0, info.st_size - position)
        except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
            pass
        os.close(fd)
        return None


class _Responder(WSGIResponder):
    """a2wsgi's responder, whose answer parts must be taken by the client in time.

    a2wsgi's thread queues each part for the loop's `sender`, which sends it; a client
    that reads nothing leaves `sender` waiting and the thread blocked on the full queue,
    for as long as the client holds the connection. Here a part not taken within the
    timeout abandons the answer: `sender` goes on emptying the queue without sending (so
    the thread's pending part is taken), and the thread's next part raises ClientStalled,
    which ends the view's iteration and frees the thread.
    """

    def __init__(self, *args, timeout: float, file_reads: ThreadPoolExecutor, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.timeout = timeout
        self.abandoned = False
        self.file_reads = file_reads
        self.file: tuple[int, int] | None = None  # a file answer's descriptor and size, for the loop to send

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
            if self.file is not None:
                if self.abandoned:  # the client took not even the headers
                    raise ClientStalled
                fd, size = self.file
                # A HEAD answer has the headers alone (the server would drop what is read).
                await self._send_file(send, fd, 0 if scope["method"] == "HEAD" else size)
        finally:
            if self.file is not None:
                os.close(self.file[0])

    def wsgi(self, environ, start_response) -> None:
        """a2wsgi's, but a file answer is left to the loop (`_send_file`)."""
        environ["wsgi.file_wrapper"] = FileToStream
        iterable = self.app(environ, start_response)
        try:
            if isinstance(iterable, FileToStream) and self.response_started:
                self.file = iterable.descriptor()
                if self.file is not None:
                    return  # the answer's end is sent by the loop, after the file
            for chunk in iterable:
                self.send({"type": "http.response.body", "body": chunk, "more_body": True})
            self.send({"type": "http.response.body", "body": b""})
        finally:
            getattr(iterable, "close", lambda: None)()

    async def _send_file(self, send, fd: int, size: int) -> None:
        loop = asyncio.get_running_loop()
        left = size
        while left > 0:
            part = await loop.run_in_executor(self.file_reads, os.read, fd, min(FILE_PART_BYTES, left))
            if not part:  # the file shrank under the answer: end the connection short of it
                raise FileShrank(f"{left} bytes short of the {size} announced")
            left -= len(part)
            try:
                await asyncio.wait_for(
                    send({"type": "http.response.body", "body": part, "more_body": left > 0}), self.timeout
                )
            except TimeoutError:
                raise ClientStalled from None
        if size == 0:
            await send({"type": "http.response.body", "body": b""})

    def send(self, message) -> None:
        if self.abandoned:
            raise ClientStalled
        super().send(message)

    async def sender(self, send) -> None:
        while True:
            message = await self.send_queue.get()
            if message is None:
                break
            if not self.abandoned:
                try:
                    await asyncio.wait_for(send(message), self.timeout)
                except TimeoutError:
                    self.abandoned = True
            self.send_queue.task_done()


class WSGIBridge(WSGIMiddleware):
    HEALTH_THREADS = 2

    def __init__(self, app, workers: int) -> None:
        super().__init__(app, workers=workers)
        # /healthz answers from its own threads: a balancer must see a node whose page
        # threads are all taken (downloads, Try it's model calls) as alive, since its
        # Sync calls (answered on the loop) are still served.
        self.health = WSGIMiddleware(app, workers=self.HEALTH_THREADS)
        self.file_reads = ThreadPoolExecutor(FILE_READ_THREADS, thread_name_prefix="file-answer-read")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz":
            return await self.health(scope, receive, send)
        if scope["type"] == "http":
            timeout = settings.REQUEST_BODY_TIMEOUT
            length = _content_length(scope)
            if length is None or length <= BUFFERED_BODY_BYTES:
                try:
                    body = await _whole_body(receive, BUFFERED_BODY_BYTES, timeout)
                except UnreadablePostError:
                    return  # the client went away: nobody to answer
                if isinstance(body, int):
                    await _refuse(body, scope, send, timeout=timeout, limit=BUFFERED_BODY_BYTES)
                    return
                headers = [
                    (n, v) for n, v in scope["headers"] if n not in (b"content-length", b"transfer-encoding")
                ]
                scope = {**scope, "headers": [*headers, (b"content-length", b"%d" % len(body))]}
                receive = _replaying(body, receive)
            else:
                receive = _paced(receive, timeout)
            receive = _raising_on_disconnect(receive)
            responder = _Responder(
                self.app, self.executor, self.send_queue_size, timeout=timeout, file_reads=self.file_reads
            )
            try:
                return await responder(scope, receive, send)
            except FileShrank as exc:
                logger.warning("%s %s: the file ended %s; cut", scope["method"], scope["path"], exc)
                return
            except ClientStalled:
                # Returning without finishing the answer makes the server close the connection.
                logger.info("%s %s: the client read none of the answer for %g s; cut", scope["method"],
                            scope["path"], timeout)  # fmt: skip
                return
        return await super().__call__(scope, receive, send)
