"""Django behind the ASGI server (portal.wsgi_bridge): bodies stream, cut uploads fail."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import threading
from wsgiref.util import FileWrapper

import pytest
from django.core.signals import request_finished
from django.core.wsgi import get_wsgi_application
from django.http import FileResponse, UnreadablePostError
from django.urls import path

from executions.models import Execution
from groups import services
from models_app.models import MLModel
from portal import wsgi_bridge
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


# A Content-Length over BUFFERED_BODY_BYTES: the body streams to the app as it comes.
STREAMED = [(b"content-length", b"%d" % (wsgi_bridge.BUFFERED_BODY_BYTES + 1))]


def test_body_streams_to_the_wsgi_app_piece_by_piece():
    seen = {}

    def wsgi_app(environ, start_response):
        stream = environ["wsgi.input"]
        seen["first"] = stream.read(3)
        seen["rest"] = stream.read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    sent = run(WSGIBridge(wsgi_app, workers=1), [b"abc", b"def", b"ghi"], complete=True, headers=STREAMED)
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

    run(WSGIBridge(wsgi_app, workers=1), [b"first half"], complete=False, headers=STREAMED)
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


# --- slow and chunked bodies ------------------------------------------------------------


def _echo_length(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"%s:%d" % (environ.get("CONTENT_LENGTH", "").encode(), len(body))]


def _body_of(sent) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_body_without_content_length_reaches_django_whole_with_its_length():
    sent = run(WSGIBridge(_echo_length, workers=1), [b'{"username": ', b'"ana"}'], complete=True)
    assert sent[0]["status"] == 200 and _body_of(sent) == b"19:19"


def test_a_body_without_content_length_over_the_limit_is_413(monkeypatch):
    monkeypatch.setattr(wsgi_bridge, "BUFFERED_BODY_BYTES", 10)
    sent = run(WSGIBridge(_echo_length, workers=1), [b"x" * 8, b"x" * 8], complete=True, path="/api/v1/x")
    assert sent[0]["status"] == 413
    assert b"may be up to 10 bytes" in _body_of(sent) and b'"code": "too_large"' in _body_of(sent)


def _slow_client(first: bytes, *, pause: float):
    """receive() that gives `first` (more to come), then nothing for `pause` seconds."""
    messages = [{"type": "http.request", "body": first, "more_body": True}]

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.sleep(pause)
        return {"type": "http.disconnect"}

    return receive


def _scope(path: str, headers=()) -> dict:
    return {
        "type": "http", "http_version": "1.1", "method": "POST", "scheme": "http", "path": path,
        "root_path": "", "query_string": b"", "server": ("127.0.0.1", 8000), "client": ("127.0.0.1", 1),
        "headers": [(b"host", b"127.0.0.1"), *headers],
    }  # fmt: skip


def test_a_small_body_that_does_not_arrive_in_time_is_408_without_reaching_django(settings):
    settings.REQUEST_BODY_TIMEOUT = 1
    called, sent = [], []

    def wsgi_app(environ, start_response):
        called.append(True)
        start_response("200 OK", [])
        return [b""]

    async def send(message):
        sent.append(message)

    app = WSGIBridge(wsgi_app, workers=1)
    run_async(app(_scope("/api/v1/auth/login"), _slow_client(b'{"user', pause=30), send))
    assert not called and sent[0]["status"] == 408
    assert b'"code": "request_timeout"' in _body_of(sent)


def test_slow_senders_hold_no_thread_while_others_are_answered(settings):
    # One thread, four clients sending their bodies slowly: a fifth request is answered
    # at once (a2wsgi's threads waited for the bodies before: eight stopped a node).
    settings.REQUEST_BODY_TIMEOUT = 5
    answered = {}

    def wsgi_app(environ, start_response):
        environ["wsgi.input"].read()
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    async def scenario():
        app = WSGIBridge(wsgi_app, workers=1)

        async def discard(message):
            pass

        slow = [
            asyncio.create_task(app(_scope("/api/v1/auth/login"), _slow_client(b"{", pause=5), discard))
            for _ in range(4)
        ]
        await asyncio.sleep(0.2)
        started = asyncio.get_running_loop().time()
        sent = []

        async def send(message):
            sent.append(message)

        done = {"type": "http.request", "body": b"{}", "more_body": False}

        async def receive():
            return done

        await asyncio.wait_for(app(_scope("/api/v1/x", [(b"content-length", b"2")]), receive, send), 3)
        answered["seconds"] = asyncio.get_running_loop().time() - started
        answered["status"] = sent[0]["status"]
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)

    run_async(scenario())
    assert answered["status"] == 200 and answered["seconds"] < 1


def test_a_streamed_body_that_stops_coming_is_cut(settings):
    settings.REQUEST_BODY_TIMEOUT = 1
    seen = {}

    def wsgi_app(environ, start_response):
        try:
            environ["wsgi.input"].read()
        except wsgi_bridge.BodyTimeout as exc:
            seen["error"] = str(exc)
        start_response("400 Bad Request", [])
        return [b""]

    async def discard(message):
        pass

    app = WSGIBridge(wsgi_app, workers=1)
    run_async(app(_scope("/api/v1/models", STREAMED), _slow_client(b"--boundary", pause=30), discard))
    assert seen["error"] == "The client sent no part of the request body for 1 s."


@pytest.mark.parametrize(
    ("path", "error", "status", "kind"),
    [
        ("/api/v1/models", wsgi_bridge.BodyTimeout("too slow"), 408, "application/json"),
        ("/api/v1/models", UnreadablePostError("gone"), 400, "application/json"),
        ("/models/new/", wsgi_bridge.BodyTimeout("too slow"), 408, "text/plain; charset=utf-8"),
    ],
)
def test_a_body_cut_by_its_client_is_its_4xx_not_a_500_with_a_traceback(rf, path, error, status, kind):
    from groups.api.middleware import ApiRequestSizeMiddleware

    answer = ApiRequestSizeMiddleware(lambda request: None).process_exception(rf.post(path), error)
    assert answer.status_code == status and answer["Content-Type"] == kind


def test_a_timeout_that_django_rewrapped_is_still_a_408(rf):
    # Django's request.read() raises UnreadablePostError(*args) from the stream's error.
    from groups.api.middleware import ApiRequestSizeMiddleware

    try:
        try:
            raise wsgi_bridge.BodyTimeout("The client sent no part of the request body for 10 s.")
        except OSError as error:
            raise UnreadablePostError(*error.args) from error
    except UnreadablePostError as rewrapped:
        answer = ApiRequestSizeMiddleware(lambda request: None).process_exception(
            rf.post("/api/v1/models"), rewrapped
        )
    assert answer.status_code == 408 and b'"request_timeout"' in answer.content


@pytest.mark.django_db(transaction=True)
def test_an_upload_that_stalls_is_answered_408_through_django(cast, settings):
    settings.REQUEST_BODY_TIMEOUT = 1
    sent = []

    async def send(message):
        sent.append(message)

    headers = [
        (b"authorization", f"Token {services.issue_api_token(cast.owner, 'test')[1]}".encode()),
        (b"content-type", b"multipart/form-data; boundary=nmboundary"),
        *STREAMED,
    ]
    app = WSGIBridge(get_wsgi_application(), workers=1)
    run_async(app(_scope("/api/v1/models", headers), _slow_client(b"--nmboundary\r\n", pause=30), send))
    assert sent[0]["status"] == 408
    assert b'"code": "request_timeout"' in _body_of(sent)


def _get(path: str) -> dict:
    return {**_scope(path), "method": "GET"}


async def _no_body():
    return {"type": "http.request", "body": b"", "more_body": False}


def test_a_client_that_stops_reading_an_answer_is_cut_and_frees_its_thread(settings):
    """Eight stalled downloads held a worker's eight threads (a2wsgi's thread waits while
    the client reads nothing) and stopped its API and /healthz."""
    settings.REQUEST_BODY_TIMEOUT = 1
    iterated, closed = [], []

    class Download:
        def __iter__(self):
            for n in range(1000):
                iterated.append(n)
                yield b"x" * 65536

        def close(self):
            closed.append(True)

    def wsgi_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "application/octet-stream")])
        return Download() if environ["PATH_INFO"] == "/download" else [b"ok"]

    async def scenario():
        app = WSGIBridge(wsgi_app, workers=1)
        taken = []

        async def stalled_client(message):  # reads the headers and one part, then nothing
            if message["type"] == "http.response.body" and taken:
                await asyncio.sleep(3600)
            taken.append(message)

        loop = asyncio.get_running_loop()
        started = loop.time()
        download = asyncio.create_task(app(_get("/download"), _no_body, stalled_client))
        sent = []

        async def send(message):
            sent.append(message)

        await asyncio.wait_for(app(_get("/api/v1/groups"), _no_body, send), 10)
        answered_after = loop.time() - started
        await asyncio.wait_for(download, 10)  # returned: the server closes the connection
        return answered_after, sent[0]["status"]

    answered_after, status = run_async(scenario())
    assert status == 200
    assert 0.9 < answered_after < 5  # once the download was cut, not after the client left
    assert closed == [True] and len(iterated) < 1000  # the view's iteration ended early


def test_healthz_answers_while_every_page_thread_is_taken():
    release = threading.Event()

    def wsgi_app(environ, start_response):
        if environ["PATH_INFO"] != "/healthz":
            release.wait(10)  # e.g. Try it waiting for a slow model
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    async def scenario():
        app = WSGIBridge(wsgi_app, workers=1)

        async def discard(message):
            pass

        busy = asyncio.create_task(app(_get("/api/v1/run/Mx/try"), _no_body, discard))
        await asyncio.sleep(0.2)
        sent = []

        async def send(message):
            sent.append(message)

        try:
            await asyncio.wait_for(app(_get("/healthz"), _no_body, send), 3)
        finally:
            release.set()
            await busy
        return sent[0]["status"]

    assert run_async(scenario()) == 200


# ----------------------------------------------------------------------- file answers


def _descriptors_open_on(path) -> int:
    """How many of this process's descriptors are open on `path`: counting them all would
    also count database connections and sockets other threads open or close meanwhile."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # closed since listed
            count += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return count


def _file_app(path, opened: list):
    """A WSGI app answering /download with `path` through the server's file wrapper, as
    Django does for a FileResponse; anything else with "ok"."""

    def wsgi_app(environ, start_response):
        if environ["PATH_INFO"] != "/download":
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ok"]
        f = open(path, "rb")  # noqa: SIM115 - closed by the wrapper, as Django's is
        opened.append(f)
        start_response("200 OK", [("Content-Length", str(os.path.getsize(path)))])
        return environ.get("wsgi.file_wrapper", FileWrapper)(f, 4096)  # optional, says PEP 3333

    return wsgi_app


def test_a_slow_download_leaves_its_thread_while_the_client_reads(settings, tmp_path):
    """A download that kept coming, slowly, held its page thread for all of it: a worker's
    eight slow downloads stopped its pages and API."""
    settings.REQUEST_BODY_TIMEOUT = 5
    data = os.urandom(40 * wsgi_bridge.FILE_PART_BYTES + 123)
    (tmp_path / "result.csv").write_bytes(data)
    opened = []

    async def scenario():
        app = WSGIBridge(_file_app(tmp_path / "result.csv", opened), workers=1)
        received = []

        async def slow_reader(message):  # a part every 50 ms: about 2 s for the file
            if message["type"] == "http.response.body":
                await asyncio.sleep(0.05)
            received.append(message)

        download = asyncio.create_task(app(_get("/download"), _no_body, slow_reader))
        await asyncio.sleep(0.3)
        sent = []

        async def send(message):
            sent.append(message)

        # The one page thread is free while the download goes on.
        await asyncio.wait_for(app(_get("/api/v1/groups"), _no_body, send), 1)
        assert not download.done() and opened[0].closed  # the request itself ended in its thread
        await asyncio.wait_for(download, 30)
        return sent, received

    sent, received = run_async(scenario())
    assert sent[0]["status"] == 200 and _body_of(sent) == b"ok"
    assert received[0]["status"] == 200
    assert b"".join(m.get("body", b"") for m in received[1:]) == data
    assert received[-1].get("more_body") is False and all(m["more_body"] for m in received[1:-1])
    assert _descriptors_open_on(tmp_path / "result.csv") == 0  # the duplicated one is closed


def test_a_download_whose_client_stops_reading_is_cut_and_its_file_closed(settings, tmp_path):
    settings.REQUEST_BODY_TIMEOUT = 1
    (tmp_path / "big").write_bytes(b"x" * (20 * wsgi_bridge.FILE_PART_BYTES))
    opened = []

    async def scenario():
        app = WSGIBridge(_file_app(tmp_path / "big", opened), workers=1)
        taken = []

        async def stalled_client(message):  # the headers and one part, then nothing
            if message["type"] == "http.response.body" and len(taken) > 1:
                await asyncio.sleep(3600)
            taken.append(message)

        started = asyncio.get_running_loop().time()
        await asyncio.wait_for(app(_get("/download"), _no_body, stalled_client), 10)
        return asyncio.get_running_loop().time() - started, taken

    took, taken = run_async(scenario())
    assert 0.9 < took < 5 and len(taken) == 2  # cut after the timeout; the server closes the connection
    assert opened[0].closed and _descriptors_open_on(tmp_path / "big") == 0


def test_a_head_request_for_a_file_gets_its_headers_alone(tmp_path):
    (tmp_path / "f").write_bytes(b"abc" * 1000)
    opened = []
    sent = []

    async def send(message):
        sent.append(message)

    app = WSGIBridge(_file_app(tmp_path / "f", opened), workers=1)
    run_async(app({**_get("/download"), "method": "HEAD"}, _no_body, send))
    assert sent[0]["status"] == 200 and (b"content-length", b"3000") in sent[0]["headers"]
    assert sent[1:] == [{"type": "http.response.body", "body": b""}]


def test_a_file_without_a_descriptor_is_sent_from_its_thread():
    def wsgi_app(environ, start_response):
        start_response("200 OK", [])
        return environ.get("wsgi.file_wrapper", FileWrapper)(io.BytesIO(b"in memory" * 10000), 4096)

    sent = run(WSGIBridge(wsgi_app, workers=1), [b""], complete=True, path="/download")
    assert _body_of(sent) == b"in memory" * 10000


def _file_view(request):
    return FileResponse(open(request.GET["path"], "rb"), as_attachment=True, filename="scores.csv")  # noqa: SIM115


urlpatterns = [path("file", _file_view)]


@pytest.mark.urls(__name__)
def test_django_hands_a_file_response_to_the_bridge_and_finishes_the_request(tmp_path):
    (tmp_path / "scores.csv").write_bytes(b"score\n0.5\n" * 50_000)
    finished = []
    request_finished.connect(receiver := lambda **kwargs: finished.append(threading.current_thread().name))
    try:
        sent = []

        async def send(message):
            sent.append(message)

        scope = {**_get("/file"), "query_string": f"path={tmp_path / 'scores.csv'}".encode()}
        run_async(WSGIBridge(get_wsgi_application(), workers=1)(scope, _no_body, send))
    finally:
        request_finished.disconnect(receiver)
    assert sent[0]["status"] == 200
    assert dict(sent[0]["headers"])[b"content-length"] == b"500000"
    assert _body_of(sent) == b"score\n0.5\n" * 50_000
    parts = [len(m["body"]) for m in sent[1:]]
    assert parts == [wsgi_bridge.FILE_PART_BYTES] * 7 + [
        500_000 - 7 * wsgi_bridge.FILE_PART_BYTES
    ]  # from the loop
    assert len(finished) == 1 and "file-answer-read" not in finished[0]  # in the request's own thread


def test_a_file_that_shrinks_under_its_download_is_cut_not_padded(tmp_path, caplog):
    (tmp_path / "f").write_bytes(b"y" * (3 * wsgi_bridge.FILE_PART_BYTES))
    opened = []
    sent = []

    async def send(message):
        if len(sent) == 1:  # the headers are out: the file loses its end
            os.truncate(tmp_path / "f", wsgi_bridge.FILE_PART_BYTES + 10)
        sent.append(message)

    run_async(WSGIBridge(_file_app(tmp_path / "f", opened), workers=1)(_get("/download"), _no_body, send))
    assert len(_body_of(sent)) == wsgi_bridge.FILE_PART_BYTES + 10 and sent[-1]["more_body"]  # no end sent
    assert "the file ended" in caplog.text
