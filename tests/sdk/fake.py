"""A fake Neomaril server behind a requests transport adapter, for the SDK's unit tests.

Stdlib and requests only: these tests also run on Python 3.8, outside Django.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import re
from typing import Any, Callable, Dict, List, Optional, Tuple

import requests
from requests.adapters import BaseAdapter

URL = "http://neomaril.test"

Handler = Callable[["Sent"], Tuple[int, Any, Dict[str, str]]]


class Sent:
    """One request the SDK sent: method, path, headers, body (streamed bodies joined)."""

    def __init__(self, request: requests.PreparedRequest, timeout: Any) -> None:
        self.method = request.method
        self.url = request.url
        self.path = request.path_url
        self.headers = dict(request.headers)
        body = request.body
        self.streamed = body is not None and not isinstance(body, (bytes, str))
        if self.streamed:
            body = b"".join(body)
        self.body: bytes = body.encode() if isinstance(body, str) else (body or b"")
        self.timeout = timeout

    def json(self) -> Any:
        return json.loads(self.body)

    def multipart(self) -> Tuple[Dict[str, List[str]], List[Tuple[str, str, bytes]]]:
        """(fields, files) of a multipart body: fields name → values; files (field, filename, content)."""
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + self.body)
        fields: Dict[str, List[str]] = {}
        files: List[Tuple[str, str, bytes]] = []
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            filename = part.get_filename()
            payload = part.get_payload(decode=True)
            if filename is None:
                fields.setdefault(name, []).append(payload.decode())
            else:
                files.append((name, filename, payload))
        return fields, files


class FakeServer(BaseAdapter):
    """Routes ``(method, path regex)`` to handlers returning (status, body, headers)."""

    def __init__(self) -> None:
        super().__init__()
        self.routes: List[Tuple[str, re.Pattern[str], Handler]] = []
        self.sent: List[Sent] = []
        self.failures: List[Exception] = []  # raised, in order, before answering

    def on(self, method: str, pattern: str, status: int = 200, body: Any = None, headers=None) -> None:
        self.handle(method, pattern, lambda sent: (status, body, headers or {}))

    def handle(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.insert(0, (method, re.compile(pattern + r"$"), handler))

    def send(self, request, stream=False, timeout=None, verify=True, cert=None, proxies=None):
        sent = Sent(request, timeout)
        self.sent.append(sent)
        if self.failures:
            raise self.failures.pop(0)
        for method, pattern, handler in self.routes:
            if method == request.method and pattern.match(sent.path.split("?")[0]):
                status, body, headers = handler(sent)
                break
        else:
            status, body, headers = 404, {"detail": f"No route {request.method} {sent.path}"}, {}
        response = requests.Response()
        response.status_code = status
        response.request = request
        response.url = request.url
        if isinstance(body, bytes):
            response._content = body
        elif body is None:
            response._content = b""
        else:
            response._content = json.dumps(body).encode()
            response.headers["Content-Type"] = "application/json"
        response._content_consumed = True
        response.headers.update(headers)
        response.encoding = "utf-8"
        return response

    def close(self) -> None:
        pass

    def last(self, method: Optional[str] = None, prefix: str = "") -> Sent:
        for sent in reversed(self.sent):
            if (method is None or sent.method == method) and sent.path.startswith(prefix):
                return sent
        raise AssertionError(f"no {method} {prefix} request was sent")


def logged_in_server() -> FakeServer:
    """A FakeServer that takes any username and password as ana's (token ``nmu_user``)."""
    user = {"username": "ana", "email": "", "is_staff": True}
    fake = FakeServer()
    fake.on("POST", "/api/v1/auth/login", 201, {"token": "nmu_user", "token_id": "t-1", "user": user})
    fake.on("GET", "/api/v1/auth/me", 200, user)
    return fake


def session_with(server: FakeServer) -> requests.Session:
    session = requests.Session()
    session.mount("http://", server)
    return session


def model_info(**overrides: Any) -> Dict[str, Any]:
    info = {
        "hash": "M" + "a" * 32,
        "name": "Teste notebook Sync",
        "group": "datarisk",
        "operation": "Sync",
        "status": "Ready",
        "python_version": "3.9",
        "model_reference": "score",
        "run_url": f"{URL}/api/v1/run/M{'a' * 32}",
        "docs_url": f"{URL}/models/M{'a' * 32}/docs/",
    }
    info.update(overrides)
    return info
