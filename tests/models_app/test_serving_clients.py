"""Web-side clients of the model host and runners: behaviour under a burst of calls."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from models_app.calls import CalledModel
from models_app.serving import aio, client
from models_app.serving.client import ServingError
from models_app.serving.host import ControlServer
from tests.conftest import run_async


def called_model(**overrides) -> CalledModel:
    values = dict(
        pk=1,
        hash="Mcold",
        status="Deployed",
        operation="Sync",
        deployed_build=1,
        replicas=2,
        request_timeout=5,
        schema_is_object=True,
        group_id=1,
    )
    values.update(overrides)
    return CalledModel(**values)


def test_concurrent_calls_to_a_cold_model_send_the_host_one_ensure(monkeypatch, settings, tmp_path):
    settings.RUN_DIR = tmp_path  # no runner sockets: every call needs a start
    calls = []

    def slow_failing_start(model):
        calls.append(threading.current_thread().name)
        time.sleep(0.2)
        raise ServingError(503, "The model could not be started: boom")

    monkeypatch.setattr(aio, "ensure_started", slow_failing_start)
    pool = aio.AsyncRunnerPool()

    async def burst():
        return await asyncio.gather(
            *(pool.predict(called_model(), "{}") for _ in range(20)), return_exceptions=True
        )

    results = run_async(burst())
    assert len(calls) == 1
    assert all(isinstance(r, ServingError) and r.status == 503 and "boom" in r.message for r in results)
    assert not pool._starting  # the next cold call asks again


def test_host_connect_waits_out_a_full_backlog(monkeypatch):
    class BusyThenFree:
        attempts = 0

        def connect(self, path):
            self.attempts += 1
            if self.attempts < 3:
                raise BlockingIOError(11, "Resource temporarily unavailable")

    sock = BusyThenFree()
    client._connect_to_host(sock, time.monotonic() + 5)
    assert sock.attempts == 3

    class AlwaysBusy:
        def connect(self, path):
            raise BlockingIOError(11, "Resource temporarily unavailable")

    with pytest.raises(BlockingIOError):
        client._connect_to_host(AlwaysBusy(), time.monotonic() + 0.05)


def test_host_listens_with_room_for_a_burst():
    assert ControlServer.request_queue_size >= 128
