"""The web process's client of the model host and runners (models_app.serving.aio).

Driven through both of its callers: the ASGI fast path awaits AsyncRunnerPool; Django's
view reaches it through blocking_pool's event-loop thread. The runner and the host here
are fakes that speak the wire protocol (tests/helpers/fake_serving.py), so the tests
control when a runner hangs, crashes or is killed (the real processes are covered by
tests/models_app/serving/test_e2e.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from rest_framework.test import APIClient

from models_app.calls import CalledModel
from models_app.models import MLModel
from models_app.serving import aio, paths
from models_app.serving.aio import ServingError, blocking_pool
from models_app.serving.answers import answer_for_payload
from models_app.serving.host import ControlServer
from tests.helpers.clients import api_client
from tests.helpers.fake_serving import FakeRunner, fake_host
from tests.helpers.loops import run_async
from tests.helpers.uploads import sync_payload

KILLED_504 = {
    "detail": "The model did not answer within 1 s; its runner was stopped and is being restarted.",
    "code": "timeout",
}


def called_model(**overrides) -> CalledModel:
    values = dict(
        pk=1,
        hash="Mcold",
        status="Deployed",
        operation="Sync",
        deployed_build=1,
        min_replicas=1,
        max_replicas=2,
        request_timeout=5,
        schema_is_object=True,
        group_id=1,
        version=1,
        model_pk=1,
        model_hash="Mcold",
    )
    values.update(overrides)
    return CalledModel(**values)


@pytest.fixture
def run_dir(settings):
    with tempfile.TemporaryDirectory(prefix="nm-") as folder:  # short: Unix socket paths
        settings.RUN_DIR = Path(folder)
        settings.RECORD_PREDICTIONS = False
        yield Path(folder)


# ------------------------------------------------ the WSGI path: Django's view


@pytest.fixture
def deployed(cast, run_dir):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    MLModel.objects.filter(hash=response.json()["hash"]).update(
        status=MLModel.Status.DEPLOYED, request_timeout=1
    )
    return MLModel.objects.get(hash=response.json()["hash"])


def django_run(model, token, data):
    return APIClient().post(
        f"/api/v1/run/{model.hash}",
        json.dumps(data),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def test_django_view_kills_a_stuck_runner_answers_504_and_the_next_call_gets_a_new_one(
    cast, deployed, monkeypatch
):
    host = fake_host(monkeypatch, deployed)
    host.start()
    first = django_run(deployed, cast.group_token, {"x": 2})
    assert (first.status_code, first.json()) == (200, {"y": 4, "runner": 1})

    started = time.monotonic()
    stuck = django_run(deployed, cast.group_token, {"hang": True})
    assert (stuck.status_code, stuck.json()) == (504, KILLED_504)
    assert 1 <= time.monotonic() - started < 3
    assert host.ops() == ["kill"] and host.runner.killed.is_set()

    after = django_run(deployed, cast.group_token, {"x": 3})  # reconnects: the host starts runner 2
    assert (after.status_code, after.json()) == (200, {"y": 6, "runner": 2})
    assert host.ops() == ["kill", "ensure"]


def test_django_view_reconnects_when_the_runner_behind_a_pooled_connection_was_replaced(
    cast, deployed, monkeypatch
):
    host = fake_host(monkeypatch, deployed)
    host.start()
    assert django_run(deployed, cast.group_token, {"x": 1}).json() == {"y": 2, "runner": 1}
    host.runner.kill()  # crashed while idle, and restarted by the host's supervisor
    host.start()
    time.sleep(0.1)  # the pooled connection's end has reached the event loop
    after = django_run(deployed, cast.group_token, {"x": 5})
    assert (after.status_code, after.json()) == (200, {"y": 10, "runner": 2})
    assert host.ops() == []  # no start needed, no error: the pool reconnected by itself


def test_django_view_answers_502_for_a_call_that_crashes_the_runner_twice(cast, deployed, monkeypatch):
    host = fake_host(monkeypatch, deployed)
    host.start()
    crashed = django_run(deployed, cast.group_token, {"crash": True})
    assert crashed.status_code == 502
    assert crashed.json() == {"detail": aio.runner_stopped().message, "code": "runner_crashed"}
    assert "again when it was retried on the restarted runner" in crashed.json()["detail"]
    assert host.started == 2  # tried once more on the restarted runner, then given up
    assert django_run(deployed, cast.group_token, {"x": 1}).json() == {"y": 2, "runner": 3}


# -------------------------------------------- calls queued behind a stuck call


def test_calls_queued_behind_a_stuck_call_are_answered_by_the_restarted_runner(run_dir, monkeypatch):
    model = called_model(max_replicas=1, request_timeout=1)
    # The same runner socket, a longer timeout: on a loaded machine a retried call that
    # waited past 1 s would have the restarted runner killed too (CI's PostgreSQL pass).
    patient = called_model(max_replicas=1, request_timeout=5)
    host = fake_host(monkeypatch, model)
    host.start()
    with ThreadPoolExecutor(4) as threads:
        stuck = threads.submit(blocking_pool.predict, model, '{"hang": true}')
        time.sleep(0.5)  # the runner is busy with it; the next calls wait in its queue
        queued = [threads.submit(blocking_pool.predict, patient, json.dumps({"x": i})) for i in range(3)]
        with pytest.raises(ServingError) as timed_out:
            stuck.result()
        answers = [answer_for_payload(call.result()) for call in queued]
    assert (timed_out.value.status, timed_out.value.message) == (504, KILLED_504["detail"])
    assert answers == [
        (200, b'{"y":0,"runner":2}'),
        (200, b'{"y":2,"runner":2}'),
        (200, b'{"y":4,"runner":2}'),
    ]
    assert host.ops() == ["kill", "ensure"]  # one start for all three retries


def test_a_call_that_loses_the_restarted_runner_too_is_503(run_dir, monkeypatch):
    model = called_model(max_replicas=1, request_timeout=1)
    # The same runner socket, a longer timeout: the queued call's own timer must not
    # be what ends it (its retry starts at the same moment as the second stuck call's).
    patient = called_model(max_replicas=1, request_timeout=5)
    host = fake_host(monkeypatch, model, queue_delay=0.3)
    host.start()
    with ThreadPoolExecutor(3) as threads:
        first_stuck = threads.submit(blocking_pool.predict, model, '{"hang": true}')
        time.sleep(0.5)
        queued = threads.submit(blocking_pool.predict, patient, '{"x": 1}')
        second_stuck = threads.submit(blocking_pool.predict, model, '{"hang": true}')
        # Both stuck calls time out, each after killing the runner the queued call waited on.
        for stuck in (first_stuck, second_stuck):
            with pytest.raises(ServingError) as timed_out:
                stuck.result()
            assert timed_out.value.status == 504
        with pytest.raises(ServingError) as unavailable:
            queued.result()
    assert unavailable.value.status == 503
    assert unavailable.value.message == (
        "This request waited behind calls that ran past the model's request timeout, and the "
        "model's runner was restarted twice before it could answer; try again."
    )
    assert host.ops() == ["kill", "ensure", "kill"]


# ------------------------------------------------ replicas that come and go


def _no_host(request, timeout):
    raise AssertionError(f"the model host was asked: {request}")


async def _answered_by(pool, model, count: int) -> list[int]:
    """Which replica answered each of `count` calls made one after another."""
    return [
        json.loads(await pool.predict(model, json.dumps({"x": i})))["result"]["runner"] for i in range(count)
    ]


async def _answered_at_once(pool, model, count: int) -> set[int]:
    """Which replicas answered `count` calls made at the same time."""
    answers = await asyncio.gather(*(pool.predict(model, json.dumps({"x": i})) for i in range(count)))
    return {json.loads(answer)["result"]["runner"] for answer in answers}


def test_calls_go_to_the_replicas_that_are_up_and_only_those(run_dir, monkeypatch):
    model = called_model(max_replicas=3)
    monkeypatch.setattr(aio, "host_call", _no_host)
    runners = [FakeRunner(paths.runner_socket_name(model.hash, 1, n), n) for n in (0, 2)]
    pool = aio.AsyncRunnerPool()

    async def scenario():
        before = await _answered_at_once(pool, model, 6)
        # Replica 1 is added (the host's scaler): it takes calls once the sockets are read again.
        runners.append(FakeRunner(paths.runner_socket_name(model.hash, 1, 1), 1))
        await asyncio.sleep(aio.ReplicaBalancer.REFRESH + 0.1)
        return before, await _answered_at_once(pool, model, 6)

    before, after = run_async(scenario())
    assert before == {0, 2}  # replica 1 had no socket: never tried
    assert after == {0, 1, 2}
    for runner in runners:
        runner.kill()


def test_calls_one_after_another_stay_on_one_replica_which_differs_by_process(run_dir, monkeypatch):
    # The runner that just answered has the model in its caches; an idle replica the load
    # does not need is left for the host to drain. Processes prefer different replicas,
    # so their calls do not all queue on one.
    model = called_model(max_replicas=2)
    monkeypatch.setattr(aio, "host_call", _no_host)
    runners = [FakeRunner(paths.runner_socket_name(model.hash, 1, n), n) for n in (0, 1)]
    first, second = aio.AsyncRunnerPool(), aio.AsyncRunnerPool()
    first._balancer._preference, second._balancer._preference = 0, 1

    async def scenario():
        return await _answered_by(first, model, 6), await _answered_by(second, model, 6)

    assert run_async(scenario()) == ([0] * 6, [1] * 6)
    for runner in runners:
        runner.kill()


def test_a_drained_replica_costs_its_callers_nothing(run_dir, monkeypatch):
    model = called_model(max_replicas=2)
    monkeypatch.setattr(aio, "host_call", _no_host)
    first, second = (FakeRunner(paths.runner_socket_name(model.hash, 1, n), n) for n in (0, 1))
    pool = aio.AsyncRunnerPool()

    async def scenario():
        both = await _answered_at_once(pool, model, 4)  # a pooled connection to each now
        # The host drains replica 1: its socket goes, then its process. This pool has not
        # read the sockets again yet, and holds an idle connection to it.
        Path(paths.runner_socket_name(model.hash, 1, 1)).unlink()
        second.kill()
        return both, await _answered_by(pool, model, 6)

    both, after = run_async(scenario())
    assert both == {0, 1}
    assert after == [0] * 6
    first.kill()


# ------------------------------------------- connections kept, and for how long
# A soak audit: a 10 s burst of 400 calls left the runner holding 410 descriptors 13
# minutes later, after a newer version had gone live and nothing called it any more.


async def _eventually(condition, within: float = 3.0) -> bool:
    """Whether `condition()` holds within `within` seconds (the fake runner's threads
    see a closed connection a moment after the loop closed it)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def _idle_connections(pool: aio.AsyncRunnerPool, path: str) -> int:
    return len(pool._idle.get(path, ()))


def test_a_burst_keeps_a_handful_of_its_connections_and_closes_the_rest(run_dir, monkeypatch):
    model = called_model(max_replicas=1)
    monkeypatch.setattr(aio, "host_call", _no_host)
    path = paths.runner_socket_name(model.hash, 1, 0)
    runner = FakeRunner(path, 0)
    pool = aio.AsyncRunnerPool()
    kept = aio.AsyncRunnerPool.MAX_IDLE_PER_RUNNER

    async def scenario():
        await _answered_at_once(pool, model, 40)  # each call waits on a connection of its own
        after_burst = (runner.accepted, _idle_connections(pool, path))
        closed = await _eventually(lambda: runner.open_connections == kept)
        # The next small burst finds its connections ready.
        again = await _answered_at_once(pool, model, kept)
        return after_burst, closed, again, runner.accepted

    after_burst, closed, again, accepted = run_async(scenario())
    assert after_burst == (40, kept)
    assert closed, f"the runner still has {runner.open_connections} connections open, not {kept}"
    assert (again, accepted) == ({0}, 40)
    runner.kill()


def test_a_steady_load_reuses_its_connections(run_dir, monkeypatch):
    # The cap only closes what a burst leaves behind: callers that keep calling find
    # their connections back in the pool, however many they are.
    model = called_model(max_replicas=1)
    monkeypatch.setattr(aio, "host_call", _no_host)
    runner = FakeRunner(paths.runner_socket_name(model.hash, 1, 0), 0)
    pool = aio.AsyncRunnerPool()
    callers = 12  # more than the idle connections kept

    async def scenario():
        await asyncio.gather(*(_answered_by(pool, model, 20) for _ in range(callers)))

    run_async(scenario())
    assert runner.accepted <= callers + 2  # not a connection per call (240)
    runner.kill()


def test_connections_idle_too_long_close_and_an_old_builds_state_is_forgotten(run_dir, monkeypatch):
    monkeypatch.setattr(aio.AsyncRunnerPool, "IDLE_SECONDS", 0.2)
    monkeypatch.setattr(aio, "host_call", _no_host)
    old, new = called_model(deployed_build=1, max_replicas=1), called_model(deployed_build=2, max_replicas=1)
    old_path, new_path = (paths.runner_socket_name(m.hash, m.deployed_build, 0) for m in (old, new))
    old_runner, new_runner = FakeRunner(old_path, 1), FakeRunner(new_path, 2)
    pool = aio.AsyncRunnerPool()

    async def scenario():
        await _answered_at_once(pool, old, 8)
        # A new build goes live: its calls come every 50 ms; nothing calls the old one.
        for i in range(12):
            await pool.predict(new, json.dumps({"x": i}))
            await asyncio.sleep(0.05)
        while_new_is_called = {
            "old runner's connections": old_runner.open_connections,
            "new runner's connections": (new_runner.open_connections, new_runner.accepted),
            "old socket's state": [
                old_path in state for state in (pool._idle, pool._balancer.in_flight, pool._timeout_kills)
            ]
            + [(old.hash, 1) in pool._balancer._up],
        }
        # Nothing called at all: every connection closes and the pool forgets every socket.
        everything_closed = await _eventually(
            lambda: new_runner.open_connections == 0 and pool._sweeping_on is None
        )
        forgotten = [
            dict(state)
            for state in (pool._idle, pool._balancer.in_flight, pool._balancer._up, pool._timeout_kills)
        ]
        # ... and the next call simply connects again.
        answer = json.loads(await pool.predict(new, '{"x": 5}'))["result"]
        return while_new_is_called, everything_closed, forgotten, answer

    while_new_is_called, everything_closed, forgotten, answer = run_async(scenario())
    assert while_new_is_called == {
        "old runner's connections": 0,
        "new runner's connections": (1, 1),  # one connection, reused by every call
        "old socket's state": [False, False, False, False],
    }
    assert everything_closed and forgotten == [{}, {}, {}, {}]  # and the sweep stopped
    assert answer == {"y": 10, "runner": 2} and new_runner.accepted == 2
    old_runner.kill()
    new_runner.kill()


def test_the_count_of_timeout_kills_is_forgotten_once_no_call_is_on_the_socket(run_dir, monkeypatch):
    monkeypatch.setattr(aio.AsyncRunnerPool, "IDLE_SECONDS", 0.2)
    model = called_model(max_replicas=1, request_timeout=0.3)
    host = fake_host(monkeypatch, model)
    host.start()
    pool = aio.AsyncRunnerPool()

    async def scenario():
        with pytest.raises(ServingError) as timed_out:
            await pool.predict(model, '{"hang": true}')
        counted = dict(pool._timeout_kills)
        forgotten = await _eventually(lambda: not pool._timeout_kills)
        return timed_out.value.status, counted, forgotten

    status, counted, forgotten = run_async(scenario())
    assert (status, counted, forgotten) == (504, {host.path: 1}, True)
    assert host.ops() == ["kill"]


def test_a_call_that_finds_its_replica_gone_counts_in_flight_on_the_replica_it_reached(run_dir, monkeypatch):
    # The pool forgets the state of a socket no call is on: a call counted on the replica
    # it left would leave the one it is on looking unused (its timeout kills forgotten).
    model = called_model(max_replicas=2, request_timeout=5)
    monkeypatch.setattr(aio, "host_call", _no_host)
    first, second = (FakeRunner(paths.runner_socket_name(model.hash, 1, n), n) for n in (0, 1))
    first_path, second_path = (paths.runner_socket_name(model.hash, 1, n) for n in (0, 1))
    pool = aio.AsyncRunnerPool()
    pool._balancer._preference = 1  # an idle pool sends to replica 1

    async def scenario():
        assert await _answered_by(pool, model, 1) == [1]  # both sockets read
        # Replica 1 is drained: its socket goes, then its process (with the connection
        # this pool kept to it). This pool has not read the sockets again yet.
        Path(second_path).unlink()
        second.kill()
        pool.drop(second_path)
        hanging = asyncio.ensure_future(pool.predict(model, '{"hang": true}'))
        await _eventually(lambda: first.accepted == 1)
        await asyncio.sleep(0.05)  # its request is on replica 0
        during = {path: count for path, count in pool._balancer.in_flight.items() if count}
        hanging.cancel()
        await asyncio.gather(hanging, return_exceptions=True)
        return during, {path: count for path, count in pool._balancer.in_flight.items() if count}

    during, after = run_async(scenario())
    assert during == {first_path: 1}
    assert after == {}
    first.kill()


# ------------------------------------------------------------ the model host


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


def test_timeout_message_says_when_the_host_could_not_stop_the_runner(run_dir):
    # No model host runs in run_dir: the kill cannot happen, and the answer must not claim it did.
    assert aio.kill_stuck_runner(str(run_dir / "M.1.0.sock"), 1) == (None, False)
    assert aio.timed_out(1, killed=None).message == (
        "The model did not answer within 1 s; the model host could not stop its runner "
        "(is `manage.py modelhost` running?)."
    )


def test_timeout_message_when_another_calls_timeout_had_stopped_the_runner(monkeypatch):
    """120 calls queued behind a slow model timed out together: the first stopped the runner,
    the others read that the model host was not running (an audit)."""
    monkeypatch.setattr(aio, "host_call", lambda request, timeout: {"ok": True, "killed": False})
    assert aio.kill_stuck_runner("/run/M.1.0.sock", 30) == (False, False)
    assert aio.timed_out(30, killed=False).message == (
        "The model did not answer within 30 s; its runner had already been stopped and is being restarted."
    )


def test_a_call_that_timed_out_waiting_behind_others_says_so_and_leaves_the_runner(monkeypatch):
    """The host spares a runner whose call in progress is newer than the timeout (host.kill):
    the call waited behind others to a model getting more calls than it answers in time."""
    asked = []
    monkeypatch.setattr(
        aio,
        "host_call",
        lambda request, timeout: asked.append(request) or {"ok": True, "killed": False, "busy": True},
    )
    assert aio.kill_stuck_runner("/run/M.1.0.sock", 30) == (False, True)
    assert asked[0]["stuck_after"] == 30  # the host kills only a call in progress that long
    error = aio.timed_out(30, killed=False, busy=True)
    assert error.status == 504 and error.message == (
        "The model did not answer within 30 s: this call waited behind other calls to it, which its "
        "runners were still answering (they are working, not stuck, and were left running). The model "
        "is getting more calls than it answers in time: send fewer at once, retry later, or raise its "
        "max_replicas or request_timeout."
    )


def test_host_connect_waits_out_a_full_backlog(monkeypatch):
    class BusyThenFree:
        attempts = 0

        def connect(self, path):
            self.attempts += 1
            if self.attempts < 3:
                raise BlockingIOError(11, "Resource temporarily unavailable")

    sock = BusyThenFree()
    aio._connect_to_host(sock, time.monotonic() + 5)
    assert sock.attempts == 3

    class AlwaysBusy:
        def connect(self, path):
            raise BlockingIOError(11, "Resource temporarily unavailable")

    with pytest.raises(BlockingIOError):
        aio._connect_to_host(AlwaysBusy(), time.monotonic() + 0.05)


def test_host_takes_a_burst_of_connections_before_it_accepts_any():
    # A cold start under load brings every waiting call's "ensure" at once; with the
    # default backlog of 5 the rest were refused (EAGAIN) before a thread took them.
    burst = 128
    with tempfile.TemporaryDirectory(dir="/tmp") as folder:
        path = Path(folder) / "host.sock"
        server = ControlServer(path, host=None)  # listening, accepting nothing yet
        clients: list[socket.socket] = []
        try:
            for _ in range(burst):
                client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                clients.append(client)
                client.setblocking(False)
                client.connect(str(path))  # BlockingIOError once the backlog is full
        finally:
            for client in clients:
                client.close()
            server.server_close()
    assert len(clients) == burst


# The model's code runs in the runner's process and can write to the web worker's
# connections: nothing it sends beyond the answers asked for may be held there.


def _connection_pair():
    async def connect():
        ours, runners = socket.socketpair()
        loop = asyncio.get_running_loop()
        _, connection = await loop.create_unix_connection(aio.RunnerConnection, sock=ours)
        return connection, runners

    return connect()


async def _closed(connection: aio.RunnerConnection) -> bool:
    for _ in range(200):
        if connection.transport.is_closing():
            return True
        await asyncio.sleep(0.005)
    return False


def test_bytes_a_runner_sends_unasked_drop_the_connection_instead_of_piling_up():
    async def scenario():
        connection, runners = await _connection_pair()
        runners.sendall(b"x" * 65536)  # between calls: no answer is awaited
        closed = await _closed(connection)
        runners.close()
        return closed, len(connection._buffer)

    assert run_async(scenario()) == (True, 0)


def test_an_answer_followed_by_more_bytes_is_returned_and_its_connection_not_reused():
    answer = b'{"ok":true,"result":{"a":1}}'

    async def scenario():
        connection, runners = await _connection_pair()
        loop = asyncio.get_running_loop()

        def runner_side():
            runners.recv(65536)  # the request
            runners.sendall(len(answer).to_bytes(4, "big") + answer + b"y" * 65536)

        served = loop.run_in_executor(None, runner_side)
        payload = await connection.exchange(b"\x00\x00\x00\x02{}", timeout=5)
        await served
        closed = await _closed(connection)
        runners.close()
        return payload, closed, len(connection._buffer)

    assert run_async(scenario()) == (answer, True, 0)


def test_an_answer_over_the_sync_limit_is_refused_by_its_header_and_not_sent_again(
    run_dir, settings, monkeypatch
):
    """The web process held a whole answer of up to 256 MB, copied once more, for every
    call in flight: three 240 MB answers took it to 825 MB, shared by every group's calls."""
    settings.SYNC_MAX_ANSWER_BYTES = 1024 * 1024
    model = called_model(max_replicas=1)
    monkeypatch.setattr(aio, "host_call", _no_host)
    runner = FakeRunner(paths.runner_socket_name(model.hash, 1, 0), 0)
    pool = aio.AsyncRunnerPool()

    async def scenario():
        with pytest.raises(ServingError) as refused:
            await pool.predict(model, json.dumps({"big": 8 * 1024 * 1024}))
        within = json.loads(await pool.predict(model, json.dumps({"big": 1000 * 1024})))
        return refused.value, len(within["result"])

    try:
        refused, within = run_async(scenario())
    finally:
        runner.kill()
    assert refused.status == 502
    assert refused.message == (
        "The model's answer is 8.0 MB, over the 1 MB a Sync answer may be (NEOMARIL_SYNC_MAX_ANSWER_MB): "
        "return large results from an Async model, which writes them to a file."
    )
    assert runner.requests == 2  # the refused call was not run again
    assert within == 1000 * 1024


def test_a_call_the_calls_ahead_would_keep_past_the_timeout_is_refused_at_once(run_dir, monkeypatch):
    """Load shedding: 120 calls at once to a 3 s model were each answered 504 after the
    whole timeout, holding their connections meanwhile, instead of told to back off."""
    model = called_model(max_replicas=1, request_timeout=2)
    fake_host(monkeypatch, model).start()

    async def burst(pool, count):
        # Every call takes its place before any is answered: calls 0 to count - 1 ahead.
        calls = (pool.predict(model, '{"x": 1}') for _ in range(count))
        return await asyncio.gather(*calls, return_exceptions=True)

    def refused(results):
        return [r for r in results if isinstance(r, ServingError)]

    async def scenario():
        unmeasured = await burst(aio.AsyncRunnerPool(), 10)  # no call has run alone yet
        pool = aio.AsyncRunnerPool()
        await pool.predict(model, '{"x": 1, "work": 0.45}')  # alone: a call takes 0.45 s
        each = pool._call_seconds[(model.hash, model.deployed_build)]
        judged = await burst(pool, 10)
        after_quick_ones = await burst(pool, 10)  # the burst's first call ran alone, quick
        return unmeasured, each, judged, after_quick_ones

    unmeasured, each, judged, after_quick_ones = run_async(scenario())
    assert not refused(unmeasured) and not refused(after_quick_ones)
    # (ahead + 1) x each > 2 s: 4 or more ahead at 0.45 s (3 on a machine slow enough
    # to make the 0.45 s more than 0.5).
    admitted = int(2 // each)
    assert 0.45 <= each < 0.6 and admitted in (3, 4)
    assert [isinstance(r, bytes) for r in judged] == [True] * admitted + [False] * (10 - admitted)
    first = refused(judged)[0]
    assert first.status == 503 and re.fullmatch(
        rf"The model would not answer this call within its request timeout \(2 s\): {admitted} calls are "
        r"ahead of it on the runner, at about 0\.\d+ s each\. It was not run; retry in a few seconds "
        r"\(Retry-After\), send fewer calls at once, or raise the model's max_replicas\.",
        first.message,
    )


def test_the_call_length_shedding_judges_by_follows_slower_calls_but_not_one_slow_call():
    """An audit: a running average, 1 s calls then three quick ones then three of 3 s,
    judged by 1.7 s and let calls in that were answered 504 after the whole timeout."""
    pool, model = aio.AsyncRunnerPool(), called_model()

    def after(*seconds):
        for s in seconds:
            pool._learn_call_seconds(model, s)
        return pool._call_seconds[(model.hash, model.deployed_build)]

    assert after(1, 1, 1, 1, 1, 0, 0, 0) == 0
    assert after(3, 3) == 0 and after(3) == 3  # three slow ones of the last five
    assert after(0.01, 0.01, 0.01, 0.01) == 0.01 and after(5) == 0.01  # one slow call
    pool._learn_call_seconds(called_model(hash="Mother"), 0.2)
    pool._learn_call_seconds(called_model(hash="Mother"), 0.01)
    assert pool._call_seconds[("Mother", 1)] == 0.01  # the quicker middle of an even count


def test_calls_that_had_others_ahead_teach_the_call_length_too(run_dir, monkeypatch):
    """A model kept busy (no call ever alone on its runner) still updates the figure the
    shedding judges by: a stale, slow one would otherwise refuse calls for as long as
    the load lasted."""
    model = called_model(max_replicas=1, request_timeout=30)
    fake_host(monkeypatch, model).start()

    async def scenario():
        pool = aio.AsyncRunnerPool()
        await pool.predict(model, '{"x": 1, "work": 0.45}')
        # One slow call, then, once the runner is on it, three quick ones behind it: each
        # waits about the slow one's remaining 0.35 s.
        slow = asyncio.ensure_future(pool.predict(model, '{"x": 1, "work": 0.45}'))
        await asyncio.sleep(0.1)
        await asyncio.gather(slow, *(pool.predict(model, '{"x": 1}') for _ in range(3)))
        return pool._call_seconds[(model.hash, model.deployed_build)]

    # 0.45, 0.45, then about 0.35 / 2, / 3 and / 4 (in whichever order the runner takes
    # them): the median is 0.175. Learning from lone calls alone, it stayed 0.45.
    assert 0.1 < run_async(scenario()) < 0.3
