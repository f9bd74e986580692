"""The web worker's HTTP protocol (portal.workers.WebProtocol) answering run calls itself.

A real uvicorn server on a loopback port, with the serving front as its app and a fake
runner behind it (tests/helpers/fake_serving.py); the client speaks raw HTTP, so what
is checked is what goes over the wire: the same bytes as uvicorn's own path to the ASGI
app, keep-alive, pipelining, HTTP/1.0, chunked bodies, the body limit, a client that
goes away, a graceful shutdown. The real runner is covered by test_e2e.py.

On PostgreSQL the protocol answers a call once its lookup is cached (while the front's
CommitListener is live): each test's server waits for that before the first request, so
the same tests check the same paths on both databases.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import tempfile
import threading
import time
from pathlib import Path

import pytest
import uvicorn
import uvloop
from django.conf import settings
from django.core.wsgi import get_wsgi_application
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from models_app.models import MLModel
from models_app.serving import aio
from models_app.serving.aio import ServingError
from models_app.serving.front import NotCached, ServingFront
from portal.nul_bytes import IN_A_VALUE
from portal.workers import CoalescingHttpToolsProtocol, StalledHeaders, WebProtocol, fast_path_of
from portal.wsgi_bridge import WSGIBridge
from tests.helpers.clients import api_client
from tests.helpers.fake_serving import fake_host
from tests.helpers.uploads import sync_payload

pytestmark = [
    pytest.mark.django_db(transaction=True),  # the front reads on its own connection
    pytest.mark.usefixtures("lookup_threads_disconnect"),
]


class CountingFront(ServingFront):
    """The serving front, counting the calls that reach it through ASGI."""

    def __init__(self) -> None:
        super().__init__(fallback=WSGIBridge(get_wsgi_application(), workers=2))
        self.asgi_calls = 0

    async def __call__(self, scope, receive, send) -> None:
        self.asgi_calls += 1
        await super().__call__(scope, receive, send)


class Served:
    """uvicorn serving `app` with `protocol` on a loopback port, on a thread of its own."""

    # (model hash, token) whose lookup the front should have cached before the first
    # request (PostgreSQL): set by the `deployed` fixture.
    warm_call: tuple[str, str] | None = None

    def __init__(self, app, protocol=WebProtocol, **options) -> None:
        self.app = app
        config = uvicorn.Config(
            app, http=protocol, loop="uvloop", lifespan="off", log_config=None, access_log=False, **options
        )
        self.server = uvicorn.Server(config)
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=uvloop.run, args=(self._serve(),))

    async def _serve(self) -> None:
        self.loop = asyncio.get_running_loop()
        StalledHeaders(self.server.server_state, settings.REQUEST_BODY_TIMEOUT).start()  # as WebWorker does
        await self.server.serve(sockets=[self.listener])

    def __enter__(self) -> Served:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "uvicorn did not start"
            time.sleep(0.01)
        if self.warm_call is not None and isinstance(self.app, ServingFront) and self.app.lookup.listener:
            asyncio.run_coroutine_threadsafe(self._cache_the_call(self.app.lookup), self.loop).result(20)
        return self

    async def _cache_the_call(self, lookup) -> None:
        await lookup(*self.warm_call)  # starts the listener
        deadline = time.monotonic() + 15
        while True:
            await lookup(*self.warm_call)
            if lookup.listener.live():
                with contextlib.suppress(NotCached):
                    lookup.now(*self.warm_call)
                    return
            assert time.monotonic() < deadline, "the front's lookup never answered from its cache"
            await asyncio.sleep(0.02)

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.listener.close()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)


def post(path: str, body: bytes, token: str | None, *, version: str = "1.1", extra: str = "") -> bytes:
    head = f"POST {path} HTTP/{version}\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    if token is not None:
        head += f"Authorization: Bearer {token}\r\n"
    if "Transfer-Encoding" not in extra and "Content-Length" not in extra:
        head += f"Content-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"


class Reader:
    """HTTP/1.1 answers read off a socket, one at a time."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def _more(self) -> bool:
        data = self.sock.recv(65536)
        self.buffer += data
        return bool(data)

    def answer(self) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buffer:
            assert self._more(), f"closed before an answer: {self.buffer!r}"
        head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines:
            name, _, value = line.partition(":")
            assert name.lower() not in headers, f"{name} twice"
            headers[name.lower()] = value.strip()
        length = int(headers.get("content-length", 0))
        while len(self.buffer) < length:
            assert self._more(), "closed in the middle of an answer"
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return int(status_line.split()[1]), headers, body

    def closed(self) -> bool:
        return not self.buffer and not self._more()


def exchange(served: Served, *requests: bytes) -> list[tuple[int, dict[str, str], bytes]]:
    """Send the requests one after another on one connection; their answers."""
    with served.connect() as sock:
        reader = Reader(sock)
        answers = []
        for request in requests:
            sock.sendall(request)
            answers.append(reader.answer())
        return answers


@pytest.fixture
def deployed(cast, settings, monkeypatch) -> MLModel:
    with tempfile.TemporaryDirectory(prefix="nm-") as run_dir:  # short: Unix socket paths
        settings.RUN_DIR = Path(run_dir)
        settings.RECORD_PREDICTIONS = False  # the recorder's thread has no test database access
        response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
        MLModel.objects.filter(hash=response.json()["hash"]).update(status=MLModel.Status.DEPLOYED)
        monkeypatch.setattr(Served, "warm_call", (response.json()["hash"], cast.group_token))
        yield MLModel.objects.get(hash=response.json()["hash"])


@pytest.fixture
def host(deployed, monkeypatch):
    return fake_host(monkeypatch, deployed)


def run_path(model: MLModel) -> str:
    return f"/api/v1/run/{model.hash}"


def answer_to(x: int) -> bytes:
    """The fake runner's answer to `{"x": x}`."""
    return b'{"y":%d,"runner":1}' % (2 * x)


def test_answers_go_out_as_uvicorns_path_to_the_front_writes_them(deployed, host, cast, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100  # read by the front when it is built
    path, token = run_path(deployed), cast.group_token
    requests = [
        post(path, b'{"x": 3}', token),
        post(path, b"[1, 2]", token),
        post(path, b"{not json", token),
        post(path, b'{"x": "' + b"y" * 200 + b'"}', token),
        post(path, b'{"x": 4}', token, version="1.0"),
    ]
    answers = {}
    for protocol in (WebProtocol, CoalescingHttpToolsProtocol):
        front = CountingFront()
        with Served(front, protocol) as served:
            answers[protocol] = [exchange(served, request)[0] for request in requests]
        answers[protocol, "asgi"] = front.asgi_calls
    assert answers[WebProtocol, "asgi"] == 0, "the protocol should have answered"
    assert answers[CoalescingHttpToolsProtocol, "asgi"] == len(requests)
    for ours, uvicorns in zip(answers[WebProtocol], answers[CoalescingHttpToolsProtocol], strict=True):
        ours[1].pop("date"), uvicorns[1].pop("date")
        assert ours == uvicorns
    statuses = [status for status, _, _ in answers[WebProtocol]]
    assert statuses == [200, 400, 400, 413, 200]
    assert answers[WebProtocol][0][2] == answer_to(3)
    assert answers[WebProtocol][4][1]["connection"] == "close"


def test_keep_alive_and_pipelined_calls_are_answered_in_order(deployed, host, cast):
    path, token = run_path(deployed), cast.group_token
    front = CountingFront()
    with Served(front) as served:
        one_by_one = exchange(served, *(post(path, b'{"x": %d}' % n, token) for n in range(3)))
        with served.connect() as sock:
            # Three calls in one segment: the second and third arrive while the first is
            # being answered, and uvicorn queues them behind it.
            sock.sendall(b"".join(post(path, b'{"x": %d}' % n, token) for n in (10, 11, 12)))
            reader = Reader(sock)
            pipelined = [reader.answer() for _ in range(3)]
    assert [body for _, _, body in one_by_one] == [answer_to(n) for n in range(3)]
    assert [body for _, _, body in pipelined] == [answer_to(n) for n in (10, 11, 12)]
    assert front.asgi_calls == 2  # the two queued behind a call in progress


def test_http_1_0_call_is_answered_and_the_connection_closed(deployed, host, cast):
    with Served(CountingFront()) as served, served.connect() as sock:
        sock.sendall(post(run_path(deployed), b'{"x": 1}', cast.group_token, version="1.0"))
        reader = Reader(sock)
        status, headers, body = reader.answer()
        assert (status, headers["connection"], body) == (200, "close", answer_to(1))
        assert reader.closed()


def test_chunked_body_arriving_in_pieces_is_read_whole(deployed, host, cast):
    request = post(run_path(deployed), b"", cast.group_token, extra="Transfer-Encoding: chunked\r\n")
    front = CountingFront()
    with Served(front) as served, served.connect() as sock:
        sock.sendall(request)
        for piece in (b'{"x"', b": 2", b"1}"):
            time.sleep(0.05)
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
        sock.sendall(b"0\r\n\r\n")
        assert Reader(sock).answer()[2] == answer_to(21)
    assert front.asgi_calls == 0


def test_bodies_over_the_limit_are_413_declared_or_streamed(deployed, host, cast, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    path, token = run_path(deployed), cast.group_token
    front = CountingFront()
    with Served(front) as served:
        with served.connect() as sock:  # a declared length over the limit: no body needed
            sock.sendall(post(path, b"", token, extra="Content-Length: 1000000000\r\n"))
            status, _, content = Reader(sock).answer()
            assert status == 413 and b"100-byte limit" in content
        streamed = post(path, b"", token, extra="Transfer-Encoding: chunked\r\n") + chunked(
            b"x" * 60, b"x" * 60
        )
        assert exchange(served, streamed)[0][0] == 413
    assert front.asgi_calls == 0
    assert host.ops() == []  # neither call reached a runner


def test_a_client_gone_before_its_whole_body_leaves_nothing_behind(deployed, host, cast):
    request = post(run_path(deployed), b"", cast.group_token, extra="Content-Length: 50\r\n") + b'{"x": 1'
    with Served(CountingFront()) as served:
        with served.connect() as sock:
            sock.sendall(request)
            time.sleep(0.1)
        deadline = time.monotonic() + 5
        while served.server.server_state.tasks or served.server.server_state.connections:
            assert time.monotonic() < deadline, "the call's task or connection outlived the client"
            time.sleep(0.02)
        assert exchange(served, post(run_path(deployed), b'{"x": 2}', cast.group_token))[0][0] == 200
    assert host.ops() == ["ensure"]  # only the second call reached a runner


@pytest.mark.parametrize("path", ["protocol", "asgi"])
def test_a_run_call_whose_body_stalls_is_408_and_its_connection_closed(deployed, host, cast, settings, path):
    """NEOMARIL_REQUEST_BODY_TIMEOUT holds for run calls too, whichever path answers them:
    a client that stops sending its body must not keep the connection (a descriptor)."""
    settings.REQUEST_BODY_TIMEOUT = 1
    request = post(run_path(deployed), b"", cast.group_token, extra="Content-Length: 50\r\n") + b'{"x": 1'
    front = CountingFront()
    access, handler = logging.getLogger("uvicorn.access"), logging.NullHandler()
    try:
        with Served(front) as served:
            if path == "asgi":
                # The access log sends calls through uvicorn's path. uvicorn's start clears the
                # logger's handlers and a connection reads the switch when it is accepted: on
                # after the start, before the client connects.
                access.addHandler(handler)
            sock = served.connect()
            sock.sendall(request)
            started = time.monotonic()
            reader = Reader(sock)
            status, headers, content = reader.answer()
            elapsed, closed = time.monotonic() - started, reader.closed() or path == "asgi"
            sock.close()
    finally:
        access.removeHandler(handler)
    assert 1 <= elapsed < 5 and closed
    assert status == 408 and json.loads(content) == {
        "detail": "The request body did not arrive within 1 s (NEOMARIL_REQUEST_BODY_TIMEOUT): send it again.",
        "code": "request_timeout",
    }
    assert headers.get("connection") == "close" or path == "asgi"
    assert front.asgi_calls == (1 if path == "asgi" else 0)
    assert host.ops() == []  # the model never saw it


def test_a_request_whose_headers_stall_is_408_and_its_connection_closed(deployed, host, cast, settings):
    settings.REQUEST_BODY_TIMEOUT = 1
    with Served(CountingFront()) as served, served.connect() as sock:
        sock.sendall(f"POST {run_path(deployed)} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty".encode())
        started = time.monotonic()
        reader = Reader(sock)
        status, headers, content = reader.answer()
        assert 1 <= time.monotonic() - started < 5
        assert status == 408 and json.loads(content)["code"] == "request_timeout"
        assert "headers did not arrive within 1 s" in json.loads(content)["detail"]
        assert headers["connection"] == "close" and reader.closed()
        # Requests that keep to the time are untouched, on a connection kept alive.
    with Served(CountingFront()) as served, served.connect() as sock:
        reader = Reader(sock)
        for x in range(3):
            sock.sendall(post(run_path(deployed), b'{"x": %d}' % x, cast.group_token))
            assert reader.answer()[0] == 200
            time.sleep(1.5)  # idle between requests (uvicorn keeps it 5 s) is not a stalled request


def test_calls_the_front_does_not_accept_reach_django(deployed, host, cast):
    front = CountingFront()
    with Served(front) as served:
        with_query = exchange(served, post(run_path(deployed) + "?x=1", b'{"x": 1}', cast.group_token))
        # Each on a connection of its own: Django's answer can reach the client before
        # uvicorn has closed its cycle, and a call behind an open cycle takes uvicorn's path.
        refused = [
            exchange(served, post(run_path(deployed), b'{"x": 1}', None))[0],
            exchange(served, post(run_path(deployed), b'{"x": 1}', cast.other_token))[0],
            exchange(served, post("/api/v1/run/Mnope", b'{"x": 1}', cast.group_token))[0],
        ]
    assert with_query[0][:3:2] == (200, answer_to(1))
    assert [status for status, _, _ in refused] == [401, 403, 404]
    assert front.asgi_calls == 3  # the refusals, which are Django's


def test_a_call_with_a_nul_in_its_query_or_path_reaches_django(deployed, host, cast):
    # portal.nul_bytes: 400 for %00 in the query string, 404 in the path, on every URL.
    front = CountingFront()
    with Served(front) as served:
        in_query = exchange(served, post(run_path(deployed) + "?x=%00", b'{"x": 1}', cast.group_token))[0]
        in_path = exchange(served, post(run_path(deployed) + "%00", b'{"x": 1}', cast.group_token))[0]
    assert (in_query[0], json.loads(in_query[2])["errors"]) == (400, {"x": [IN_A_VALUE]})
    assert (in_path[0], json.loads(in_path[2])["code"]) == (404, "not_found")
    assert front.asgi_calls == 2


def test_expect_100_continue_takes_uvicorns_path(deployed, host, cast):
    front = CountingFront()
    with Served(front) as served, served.connect() as sock:
        sock.sendall(
            post(
                run_path(deployed),
                b"",
                cast.group_token,
                extra="Expect: 100-continue\r\nContent-Length: 8\r\n",
            )
        )
        reader = Reader(sock)
        assert reader.answer()[0] == 100
        sock.sendall(b'{"x": 5}')
        assert reader.answer()[2] == answer_to(5)
    assert front.asgi_calls == 1


def test_with_the_access_log_on_calls_take_uvicorns_path(deployed, host, cast):
    access = logging.getLogger("uvicorn.access")
    handler = logging.NullHandler()
    front = CountingFront()
    with Served(front) as served:
        access.addHandler(handler)  # uvicorn's own switch: a handler on its access logger
        try:
            assert exchange(served, post(run_path(deployed), b'{"x": 1}', cast.group_token))[0][0] == 200
        finally:
            access.removeHandler(handler)
    assert front.asgi_calls == 1


@pytest.mark.parametrize(("trusted", "hsts"), [("127.0.0.1", True), ("10.9.9.9", False)])
def test_https_forwarded_by_a_trusted_proxy_gets_hsts(deployed, host, cast, settings, trusted, hsts):
    settings.SECURE_HSTS_SECONDS = 3600  # read by the front when it is built
    request = post(run_path(deployed), b'{"x": 1}', cast.group_token, extra="X-Forwarded-Proto: https\r\n")
    front = CountingFront()
    with Served(front, forwarded_allow_ips=trusted) as served:
        status, headers, _ = exchange(served, request)[0]
    assert status == 200 and front.asgi_calls == 0
    assert ("strict-transport-security" in headers) is hsts


def test_a_call_in_flight_at_shutdown_is_answered_and_its_connection_closed(deployed, cast, monkeypatch):
    fake_host(monkeypatch, deployed, queue_delay=0.5)  # every answer takes half a second
    served = Served(CountingFront()).__enter__()
    try:
        with served.connect() as sock:
            sock.sendall(post(run_path(deployed), b'{"x": 7}', cast.group_token))
            time.sleep(0.2)  # the call is at the runner
            served.server.should_exit = True
            reader = Reader(sock)
            status, headers, body = reader.answer()
            assert (status, headers.get("connection"), body) == (200, "close", answer_to(7))
            assert reader.closed()
    finally:
        served.__exit__(None, None, None)


def test_the_fast_path_is_found_behind_the_proxy_middleware_on_sqlite_and_postgresql_only():
    front = ServingFront(fallback=None)
    behind_proxy = ProxyHeadersMiddleware(front, trusted_hosts="127.0.0.1")
    assert fast_path_of(front).proxy is None
    fast = fast_path_of(behind_proxy)
    assert (fast.front, fast.proxy) == (front, behind_proxy)
    assert fast_path_of(_other_app) is None

    threaded = ServingFront(fallback=None)
    threaded.lookup._sqlite_name = threaded.lookup.listener = None  # as for any other database
    assert fast_path_of(threaded) is None
    with pytest.raises(RuntimeError, match="thread"):
        threaded.lookup.now("M1", "nmg_x")


async def _other_app(scope, receive, send):  # never called
    raise AssertionError("not served")


def test_two_authorization_headers_are_refused_as_django_refuses_them(deployed, host, cast):
    """The fast path took the first header and Django sees both joined: the same call got
    200 with the valid token first and 401 with it second."""
    front = CountingFront()
    with Served(front) as served:
        answers = [
            exchange(served, post(run_path(deployed), b'{"x": 1}', cast.group_token, extra=extra))[0]
            for extra in (
                "Authorization: Bearer bogus\r\n",
                "Authorization: Bearer " + cast.group_token + "\r\n",
            )
        ]
    assert [status for status, _, _ in answers] == [401, 401]
    assert all(b"Malformed" in body or b"malformed" in body for _, _, body in answers), answers


def test_a_503_says_when_to_try_again_on_every_path(deployed, cast, monkeypatch):
    """The model host restarting: a client had no Retry-After to go by (an SDK audit)."""

    def host_gone(request, timeout):
        raise ServingError(503, "Could not talk to the model host: [Errno 111] Connection refused")

    monkeypatch.setattr(aio, "host_call", host_gone)
    request = post(run_path(deployed), b'{"x": 3}', cast.group_token)
    for protocol in (WebProtocol, CoalescingHttpToolsProtocol):  # ours, then uvicorn's to the ASGI front
        with Served(CountingFront(), protocol) as served:
            status, headers, _ = exchange(served, request)[0]
        assert (status, headers["retry-after"]) == (503, "5"), protocol
