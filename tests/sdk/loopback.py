"""A stub Neomaril server on 127.0.0.1 for the SDK's tests of what only a real socket
shows: bodies that are not JSON, connections dropped in the middle of an answer, answers
that never come.

fake.py's transport adapter hands requests a finished Response; here requests and urllib3
parse real bytes, so their own exceptions (ChunkedEncodingError, ReadTimeout, header
checks) reach the SDK as they would in production. Stdlib only: these tests also run on
Python 3.8 (test_py38.py).
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple

Behaviour = Callable[["_Handler"], None]


class Received:
    """One request the stub got: method, path (with its query), headers, body."""

    def __init__(self, method: str, path: str, headers: Dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.headers = headers
        self.body = body


class _Handler(BaseHTTPRequestHandler):
    stub: Stub
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers: a dropped answer is noticed mid-body

    def _serve(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.stub.received.append(Received(self.command, self.path, dict(self.headers.items()), body))
        behaviour = self.stub.routes.get((self.command, self.path.split("?")[0]))
        if behaviour is None:
            self.stub.reply(404, {"detail": f"No route {self.command} {self.path}"})(self)
        else:
            behaviour(self)

    do_GET = do_POST = do_DELETE = _serve  # noqa: N815

    def log_message(self, *args: Any) -> None:
        pass


class Stub:
    """Routes ``(method, path)`` to a behaviour that writes the raw answer.

    Use as a context manager; :attr:`url` is its address.
    """

    def __init__(self) -> None:
        self.routes: Dict[Tuple[str, str], Behaviour] = {}
        self.received: List[Received] = []
        self._release = threading.Event()  # ends the waits of `silent` on close
        handler = type("Handler", (_Handler,), {"stub": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> Stub:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._release.set()
        self._server.shutdown()
        self._server.server_close()

    def on(self, method: str, path: str, behaviour: Behaviour) -> None:
        self.routes[(method, path)] = behaviour

    @staticmethod
    def raw(
        status: int, body: bytes, content_type: str, headers: Optional[Dict[str, str]] = None
    ) -> Behaviour:
        """Answer `status` with exactly `body`."""

        def behaviour(handler: _Handler) -> None:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)

        return behaviour

    @classmethod
    def reply(cls, status: int, data: Any, headers: Optional[Dict[str, str]] = None) -> Behaviour:
        """Answer `status` with `data` as JSON."""
        return cls.raw(status, json.dumps(data).encode(), "application/json", headers)

    @staticmethod
    def dropped(status: int = 200, sent: bytes = b'{"pred": ', promised: int = 1000) -> Behaviour:
        """Promise `promised` bytes, send `sent`, and close the connection."""

        def behaviour(handler: _Handler) -> None:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(promised))
            handler.end_headers()
            handler.wfile.write(sent)
            handler.wfile.flush()
            handler.close_connection = True

        return behaviour

    @staticmethod
    def closed() -> Behaviour:
        """Read the whole request, then close the connection without an answer."""

        def behaviour(handler: _Handler) -> None:
            handler.close_connection = True

        return behaviour

    def silent(self, seconds: float) -> Behaviour:
        """Answer nothing for `seconds` (or until the stub closes), then a JSON {}."""

        def behaviour(handler: _Handler) -> None:
            if not self._release.wait(seconds):  # the client has long gone when the stub closes
                self.reply(200, {})(handler)

        return behaviour


def user_info() -> Dict[str, Any]:
    return {"username": "ana", "email": "", "is_staff": True}
