"""The web worker (portal/workers.py): one write per small response, large writes untouched;
gunicorn runs it on uvloop with the protocol that answers run calls (test_web_protocol.py)."""

from __future__ import annotations

import asyncio
import os
import re
import runpy
from pathlib import Path

import gunicorn.config
import uvicorn
import uvloop
from django.utils.module_loading import import_string

from portal.workers import CoalescingHttpToolsProtocol, CoalescingTransport, WebProtocol, WebWorker
from tests.helpers.loops import run_async

ROOT = Path(__file__).resolve().parents[2]


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


def _transports() -> tuple[RecordingTransport, CoalescingTransport]:
    """A recording transport and the coalescing one over it, on the running loop."""
    raw = RecordingTransport()
    return raw, CoalescingTransport(raw, asyncio.get_running_loop())


def test_head_and_body_of_one_iteration_leave_in_one_write():
    async def scenario():
        raw, transport = _transports()
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        assert raw.writes == []  # not before the loop turns
        await asyncio.sleep(0)
        return raw

    raw = run_async(scenario())
    assert raw.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]


def test_large_writes_go_straight_through_after_what_is_pending():
    async def scenario():
        raw, transport = _transports()
        transport.write(b"head")
        chunk = b"x" * CoalescingTransport.LARGE
        transport.write(chunk)
        assert raw.writes == [b"head", chunk]
        await asyncio.sleep(0)
        assert raw.writes == [b"head", chunk]  # nothing left to flush

    run_async(scenario())


def test_an_answer_in_one_piece_is_written_at_once_after_what_is_pending():
    async def scenario():
        raw, transport = _transports()
        transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        transport.write_now(b"answer")
        assert raw.writes == [b"HTTP/1.1 100 Continue\r\n\r\n", b"answer"]
        raw.closed = True
        transport.write_now(b"late")  # the peer has gone: nothing to write to
        assert raw.writes[-1] == b"answer"

    run_async(scenario())


def test_what_is_pending_when_the_peer_has_gone_is_dropped():
    async def scenario():
        raw, transport = _transports()
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        raw.closed = True  # e.g. a health check that hung up before the loop turned
        await asyncio.sleep(0)
        return raw

    assert run_async(scenario()).writes == []  # and no error from the loop's callback


def test_close_flushes_first_and_other_calls_pass_through():
    async def scenario():
        raw, transport = _transports()
        transport.write(b"bye")
        transport.close()
        assert raw.writes == [b"bye"] and raw.closed
        assert transport.is_closing()

    run_async(scenario())


def test_gunicorn_runs_the_web_worker_on_uvloop_with_its_own_protocol():
    # What uvicorn builds from the worker's settings, not the settings themselves: a
    # renamed option or a missing uvloop would otherwise pass here and fail in production.
    conf = runpy.run_path(str(ROOT / "portal" / "gunicorn.conf.py"))
    assert import_string(conf["worker_class"]) is WebWorker
    config = uvicorn.Config(app=_asgi_app, **WebWorker.CONFIG_KWARGS)
    config.load()
    assert config.http_protocol_class is WebProtocol
    assert issubclass(WebProtocol, CoalescingHttpToolsProtocol)
    loop = config.get_loop_factory()()
    try:
        assert isinstance(loop, uvloop.Loop)
    finally:
        loop.close()


async def _asgi_app(scope, receive, send):  # never called: the config only needs an app
    raise AssertionError("not served")


def test_each_instance_keeps_gunicorns_control_socket_in_its_own_folder(monkeypatch, tmp_path):
    # gunicorn's default is one socket per user (~/.gunicorn/gunicorn.ctl): a second
    # instance's start replaced the first one's control socket.
    settings = {setting.name for setting in gunicorn.config.KNOWN_SETTINGS}
    assert "control_socket" in settings and "control_socket_disable" in settings
    for inherited in ("NEOMARIL_SUPERVISOR_DIR", "NEOMARIL_NODE_DIR", "NEOMARIL_DATA_DIR"):
        monkeypatch.delenv(inherited, raising=False)  # `make test` exports make run's folders
    sockets = []
    for name in ("one", "two"):
        monkeypatch.setenv("NEOMARIL_SUPERVISOR_DIR", str(tmp_path / name))
        sockets.append(runpy.run_path(str(ROOT / "portal" / "gunicorn.conf.py"))["control_socket"])
    assert sockets == [str(tmp_path / "one" / "gunicorn.ctl"), str(tmp_path / "two" / "gunicorn.ctl")]
    monkeypatch.delenv("NEOMARIL_SUPERVISOR_DIR")
    monkeypatch.setenv("NEOMARIL_DATA_DIR", str(tmp_path / "data"))
    conf = runpy.run_path(str(ROOT / "portal" / "gunicorn.conf.py"))
    assert conf["control_socket"] == str(tmp_path / "data" / "gunicorn.ctl")
    monkeypatch.setenv("NEOMARIL_NODE_DIR", str(tmp_path / "node"))  # one node of several
    node = runpy.run_path(str(ROOT / "portal" / "gunicorn.conf.py"))["control_socket"]
    assert node == str(tmp_path / "node" / "gunicorn.ctl")
    assert not conf["control_socket"].startswith(os.path.expanduser("~"))


def test_one_web_worker_per_two_usable_cores_unless_web_concurrency_says(monkeypatch):
    # Runners need the cores: a second web worker on a 2-core node cost web CPU per call.
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    for cores, workers in ((1, 1), (2, 1), (3, 1), (4, 2), (16, 8)):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert runpy.run_path(str(ROOT / "portal" / "gunicorn.conf.py"))["workers"] == workers
    monkeypatch.setenv("WEB_CONCURRENCY", "3")
    assert runpy.run_path(str(ROOT / "portal" / "gunicorn.conf.py"))["workers"] == 3


def test_a_stop_gives_requests_the_drain_then_the_graceful_seconds_and_supervisord_waits_past_both(
    monkeypatch,
):
    """A graceful stop cut requests after 30 s whatever the models' request timeouts (up to
    3600 s), while the docs said no call fails."""
    conf = ROOT / "portal" / "gunicorn.conf.py"
    monkeypatch.delenv("NEOMARIL_WEB_DRAIN_SECONDS", raising=False)
    monkeypatch.delenv("NEOMARIL_WEB_GRACEFUL_SECONDS", raising=False)
    assert runpy.run_path(str(conf))["graceful_timeout"] == 30
    monkeypatch.setenv("NEOMARIL_WEB_DRAIN_SECONDS", "8")
    monkeypatch.setenv("NEOMARIL_WEB_GRACEFUL_SECONDS", "600")
    assert runpy.run_path(str(conf))["graceful_timeout"] == 608
    web = (ROOT / "deploy" / "supervisord.conf").read_text().split("[program:web]")[1].split("[program:")[0]
    stopwait = int(re.search(r"^stopwaitsecs=(\d+)$", web, re.MULTILINE)[1])
    assert stopwait > 20 + 3600  # past the largest drain and graceful time gunicorn takes
