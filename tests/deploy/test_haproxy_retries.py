"""Which requests deploy/haproxy.cfg sends again, under a real HAProxy.

Two stand-in nodes answer the health check and then drop every other request unanswered
(what a node killed mid-request does): HAProxy then retries a Sync call on the other
node, and must not retry an upload, which would run an Async execution twice. A media
type is case-insensitive (RFC 9110, 8.3.1), and the nodes take `Multipart/Form-Data`.
"""

from __future__ import annotations

import socket
import socketserver
import threading

import pytest
import requests

from tests.deploy.test_nodes import haproxy_config, running_haproxy
from tests.helpers.processes import free_port


class DroppingNode(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, received: list[str]) -> None:
        self.received = received
        super().__init__(("127.0.0.1", 0), DroppingHandler)


class DroppingHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.request.recv(65536)
            if not chunk:
                return
            head += chunk
        request_line = head.split(b"\r\n", 1)[0].decode()
        if request_line.startswith("GET /healthz"):
            self.request.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            return
        self.server.received.append(request_line)
        self.request.shutdown(socket.SHUT_RDWR)  # no answer at all: HAProxy's empty-response


@pytest.fixture(scope="module")
def balancer(tmp_path_factory):
    received: list[str] = []
    nodes = [DroppingNode(received) for _ in range(2)]
    for node in nodes:
        threading.Thread(target=node.serve_forever, daemon=True).start()
    port, stats = free_port(), free_port()
    config = haproxy_config(
        bind=port, stats=stats, nodes={f"node{i + 1}": node.server_address[1] for i, node in enumerate(nodes)}
    )
    with running_haproxy(tmp_path_factory.mktemp("haproxy"), config):
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):  # bounded: until HAProxy listens
            try:
                requests.get(f"http://127.0.0.1:{stats}/stats", timeout=1)
                break
            except requests.ConnectionError:
                threading.Event().wait(0.05)
        yield url, received
    for node in nodes:
        node.shutdown()
        node.server_close()


def _post(balancer, content_type: str, body: bytes) -> int:
    url, received = balancer
    received.clear()
    response = requests.post(
        f"{url}/api/v1/run/M0123456789abcdef0123456789abcde",
        data=body,
        headers={"Content-Type": content_type, "Host": "127.0.0.1"},
        timeout=30,
    )
    assert response.status_code == 502  # every node dropped it
    return len(received)


def test_a_sync_call_is_sent_again_to_the_other_node(balancer):
    assert _post(balancer, "application/json", b'{"x": 1}') == 4  # the call and 3 retries


@pytest.mark.parametrize(
    "content_type", ["multipart/form-data", "Multipart/Form-Data", "MULTIPART/FORM-DATA"]
)
def test_an_upload_is_sent_once_whatever_the_case_of_its_media_type(balancer, content_type):
    body = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.csv"\r\n\r\nx\r\n--b--\r\n'
    assert _post(balancer, f"{content_type}; boundary=b", body) == 1
