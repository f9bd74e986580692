"""Django (WSGI) inside the ASGI server: everything the serving fast path does not answer.

a2wsgi runs the WSGI app in a thread pool and streams both ways (the request body is
pulled from the event loop as the view reads it, the response is pushed back with
backpressure), so uploads and downloads of hundreds of MB stay out of memory, as they
do under gunicorn's threaded worker.
"""

from __future__ import annotations

from a2wsgi import WSGIMiddleware
from django.http import UnreadablePostError


def _raising_on_disconnect(receive):
    """a2wsgi reads a disconnect as the end of the body; a view would then see a
    truncated upload as a complete one. Raise instead, as a WSGI server does."""

    async def receive_body():
        message = await receive()
        if message["type"] == "http.disconnect":
            raise UnreadablePostError("The client disconnected before sending the whole request body.")
        return message

    return receive_body


class WSGIBridge(WSGIMiddleware):
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            receive = _raising_on_disconnect(receive)
        return await super().__call__(scope, receive, send)
