"""Django behind the ASGI server (portal.wsgi_bridge): bodies stream, cut uploads fail."""

from __future__ import annotations

import asyncio

import pytest
from django.core.wsgi import get_wsgi_application
from django.http import UnreadablePostError

from executions.models import Execution
from models_app.models import MLModel
from portal.wsgi_bridge import WSGIBridge
from tests.helpers.clients import api_client
from tests.helpers.loops import run_async
from tests.helpers.uploads import sync_payload


def run(app, body_pieces: list[bytes], *, complete: bool, path="/x", headers=()):
    """Send the pieces as ASGI messages; when not complete, the client disconnects after them."""
    messages = [
        {"type": "http.request", "body": piece, "more_body": complete is False or i < len(body_pieces) - 1}
        for i, piece in enumerate(body_pieces)
    ]
    sent = []

    async def receive():
        await asyncio.sleep(0)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "root_path": "",
        "query_string": b"",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "headers": [(b"host", b"127.0.0.1")] + list(headers),
    }
    run_async(app(scope, receive, send))
    return sent


def test_body_streams_to_the_wsgi_app_piece_by_piece():
    seen = {}

    def wsgi_app(environ, start_response):
        stream = environ["wsgi.input"]
        seen["first"] = stream.read(3)
        seen["rest"] = stream.read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    sent = run(WSGIBridge(wsgi_app, workers=1), [b"abc", b"def", b"ghi"], complete=True)
    assert seen == {"first": b"abc", "rest": b"defghi"}
    assert sent[0]["status"] == 200


def test_a_client_gone_mid_body_is_an_error_not_a_short_body():
    seen = {}

    def wsgi_app(environ, start_response):
        try:
            seen["body"] = environ["wsgi.input"].read()
        except UnreadablePostError as exc:
            seen["error"] = str(exc)
        start_response("400 Bad Request", [("Content-Type", "text/plain")])
        return [b""]

    run(WSGIBridge(wsgi_app, workers=1), [b"first half"], complete=False)
    assert "body" not in seen
    assert "disconnected" in seen["error"]


@pytest.mark.django_db(transaction=True)
def test_async_upload_cut_short_creates_no_execution(cast, settings):
    settings.RECORD_PREDICTIONS = False
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(operation="Async"), format="multipart"
    )
    model = MLModel.objects.get(hash=response.json()["hash"])
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DEPLOYED)
    boundary = "nmboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="in.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    full_length = len(head) + 100_000 + len(f"\r\n--{boundary}--\r\n")
    run(
        WSGIBridge(get_wsgi_application(), workers=1),
        [head, b"a,b\n" * 5_000],  # 20 KB of the announced file, then the client is gone
        complete=False,
        path=f"/api/v1/run/{model.hash}",
        headers=[
            (b"authorization", f"Bearer {cast.group_token}".encode()),
            (b"content-type", f"multipart/form-data; boundary={boundary}".encode()),
            (b"content-length", str(full_length).encode()),
        ],
    )
    assert not Execution.objects.filter(model=model).exists()
    assert not (settings.EXECUTIONS_DIR / model.hash).exists() or not any(
        (settings.EXECUTIONS_DIR / model.hash).iterdir()
    )
