"""API clients holding the credentials a caller of the platform would send, and a POST
through an ASGI app (the serving fast path) without a server."""

from __future__ import annotations

from rest_framework.test import APIClient

from groups import services
from tests.helpers.loops import run_async


def api_client(user=None) -> APIClient:
    """A client with a fresh personal API token of ``user`` (anonymous without one)."""
    client = APIClient()
    if user is not None:
        _, value = services.issue_api_token(user, "test")
        client.credentials(HTTP_AUTHORIZATION=f"Token {value}")
    return client


def token_client(token: str) -> APIClient:
    """A client sending a group token (what a model's callers use)."""
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def asgi_post(
    app,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    chunks: int = 1,
    declared_length: int | None = None,
    received: list | None = None,
    query: bytes = b"",
):
    """POST through an ASGI app; returns (status, headers, body).

    `declared_length` replaces the Content-Length header; `received` collects the
    messages the app pulled from the request; `query` is the raw query string.
    """
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": query,
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"content-length", str(len(body) if declared_length is None else declared_length).encode()),
        ]
        + [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    size = -(-len(body) // chunks) or 1
    pieces = [body[i : i + size] for i in range(0, len(body), size)] or [b""]
    messages = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]
    sent = []

    async def receive():
        message = messages.pop(0) if messages else {"type": "http.disconnect"}
        if received is not None:
            received.append(message)
        return message

    async def send(message):
        sent.append(message)

    run_async(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    content = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, content
