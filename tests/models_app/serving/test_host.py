"""The model host warms a build before it goes live (in process, real runners, no uv).

The build (``tasks.build_model``) asks a real ``ModelHost`` on its control socket to
start the runners and call them with the schema example: the model is warm when it is
announced Deployed, and without a host the build still deploys (the runners then start
on the first call).
"""

from __future__ import annotations

import json
import logging
import re
import socket
import struct
import sys
import textwrap
import threading
import time
import tracemalloc
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest
from django.db import OperationalError, connection

from models_app import services, tasks
from models_app.calls import CalledModel
from models_app.models import MLModel, ModelBuild
from models_app.runtime.protocol import Load, LoadBlock
from models_app.serving import aio, paths
from models_app.serving import host as host_module
from models_app.serving.aio import blocking_pool
from models_app.serving.host import SCALE_DOWN_BELOW, SCALE_UP_AT
from tests.helpers.clients import api_client
from tests.helpers.uploads import file, sync_payload

pytestmark = pytest.mark.django_db(transaction=True)

# The process's identity, drawn at import: the smoke test's answer and a later call's
# answer carry the same value only when the same process gave both.
SOURCE = textwrap.dedent(
    """
    import json, uuid
    PROCESS = uuid.uuid4().hex
    print("model loaded")

    def score(data, base_path):
        row = json.loads(data)
        if row.get("boom"):
            raise ValueError("boom")
        return {"sum": row["a"] + row["b"], "process": PROCESS}
    """
)


@pytest.fixture
def host(model_host):
    """A real model host with its control socket, as `make run` starts it (tests/models_app/conftest.py)."""
    return model_host


def _upload(cast, schema=None, source=SOURCE, **overrides) -> MLModel:
    payload = sync_payload(
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}",
        source=file("app.py", source),
        schema=file("schema.json", json.dumps(schema or {"a": 1, "b": 2})),
        **overrides,
    )
    response = api_client(cast.owner).post("/api/v1/models", payload, format="multipart")
    assert response.status_code == 201, response.json()
    return MLModel.objects.get(hash=response.json()["hash"])


def _build(model: MLModel) -> MLModel:
    tasks.build_model(model.builds.get(status=ModelBuild.Status.QUEUED).pk)
    model.refresh_from_db()
    return model


def _log(model: MLModel) -> str:
    return model.builds.get().log


def _called(model: MLModel) -> CalledModel:
    return CalledModel(
        model.pk,
        model.hash,
        model.status,
        "Sync",
        model.deployed_build,
        model.min_replicas,
        model.max_replicas,
        10,
        True,
        0,
        1,
        model.pk,
        model.hash,
    )


def test_the_build_leaves_warm_runners_and_the_first_call_starts_no_process(
    cast, host_env, host, monkeypatch
):
    model = _build(_upload(cast))
    assert model.status == "Deployed", _log(model)
    log = _log(model)
    assert "Smoke test: starting 1 runner(s) in this node's model host" in log
    assert "[model] model loaded" in log and "Warm: runner process(es)" in log
    (runner,) = host.runners.values()
    assert (runner.model_hash, runner.build) == (model.hash, model.deployed_build)
    assert runner.started_at < model.deployed_at.timestamp()  # up before it was announced
    assert runner.requests == 0 and runner.loading_path is None
    process = model.smoke_result["process"]

    def no_cold_start(called):
        raise AssertionError("the first call asked the host to start a runner")

    monkeypatch.setattr(aio, "ensure_started", no_cold_start)
    answer = json.loads(blocking_pool.predict(_called(model), '{"a": 2, "b": 3}'))
    assert answer == {"ok": True, "result": {"sum": 5, "process": process}}  # the smoke-tested process
    assert list(host.runners.values()) == [runner] and runner.alive


def test_the_build_log_says_where_the_time_went(cast, host_env, host):
    slow = textwrap.dedent(
        """
        import time
        time.sleep(0.6)  # a heavy import
        CALLS = []

        def score(data, base_path):
            if not CALLS:
                time.sleep(0.3)  # the first predict's lazy work
            CALLS.append(data)
            return {"calls": len(CALLS)}
        """
    )
    model = _build(_upload(cast, source=slow))
    assert model.status == "Deployed", _log(model)
    *_, timings, verdict = _log(model).splitlines()
    assert verdict.endswith(" Build succeeded: model deployed.")
    found = re.search(
        r" Timings: queue (\S+) s, interpreter (\S+) s, environment (\S+) s, warm-up (\S+) s "
        r"\(sandbox start (\S+) s, model load (\S+) s, first call (\S+) s\)\.$",
        timings,
    )
    assert found, timings
    queue, interpreter, environment, warm_up, launch, load, call = map(float, found.groups())
    assert load >= 0.6 and call >= 0.3  # each wait in its own part
    assert launch + load + call <= warm_up + 0.02  # the host's parts of the build's warm-up
    assert queue >= 0 and interpreter >= 0 and environment < 0.5  # host_env: no uv


def test_without_warming_the_timings_name_the_smoke_test(cast, host_env, host, settings):
    settings.WARM_ON_DEPLOY = False
    model = _build(_upload(cast))
    *_, timings, _verdict = _log(model).splitlines()
    assert re.search(
        r" Timings: queue \S+ s, interpreter \S+ s, environment \S+ s, smoke test \S+ s\.$", timings
    )


def test_the_build_deploys_without_a_model_host(cast, host_env):
    model = _build(_upload(cast))
    assert model.status == "Deployed", _log(model)
    assert model.smoke_result["sum"] == 3
    log = _log(model)
    assert "Not warmed: The model host is not running on this node" in log
    assert "The runners will start on the model's first call." in log
    assert "Smoke test: calling score(<schema example>, base_path)." in log  # the one-shot smoke test


def test_a_model_that_fails_its_warm_up_fails_the_build_and_leaves_no_runner(cast, host_env, host):
    model = _build(_upload(cast, schema={"a": 1, "b": 2, "boom": True}))
    assert model.status == "Failed"
    assert model.status_message == "The smoke test failed (call): ValueError: boom"
    log = _log(model)
    assert "The model host could not warm the model: The warm-up call with the schema example failed" in log
    assert host.runners == {}


SLOW_LOAD = textwrap.dedent(
    """
    import json, time
    print("loading the model slowly", flush=True)
    time.sleep(6)

    def score(data, base_path):
        return json.loads(data)
    """
)


def test_a_model_that_loads_slower_than_a_cold_start_may_wait_fails_its_build(cast, host_env, host, settings):
    # Within the smoke test's timeout, past the cold start's: a one-shot smoke test would
    # pass, and every call of the Deployed model would then time out waiting for its load.
    settings.COLD_START_TIMEOUT, settings.SMOKE_TEST_TIMEOUT = 2, 30
    model = _build(_upload(cast, source=SLOW_LOAD))
    assert model.status == "Failed", _log(model)
    assert model.status_message == (
        "The model did not load within 2 s (cold-start timeout). Every call would wait for the model "
        "to load and fail: make its import (loading the model file included) faster, or ask an admin "
        "to raise NEOMARIL_COLD_START_TIMEOUT."
    )
    log = _log(model)
    assert "[model] loading the model slowly" in log  # what it printed before the host gave up
    assert "Smoke test: calling" not in log  # no one-shot smoke test after it
    assert host.runners == {}


IMPORT_FAILS_LATER = textwrap.dedent(
    """
    import json, os

    if os.path.exists(os.path.join(os.path.dirname(os.path.abspath(__file__)), "fail-import")):
        raise RuntimeError("import fails from now on")

    def score(data, base_path):
        print("called with", data, flush=True)
        return json.loads(data)
    """
)


def test_a_cold_start_whose_import_raises_says_why(cast, host_env, host, settings):
    settings.WARM_ON_DEPLOY = False  # the build's one-shot smoke test imports it fine
    model = _build(_upload(cast, source=IMPORT_FAILS_LATER))
    assert model.status == "Deployed", _log(model)
    assert b'"earlier":"caller"' in blocking_pool.predict(_called(model), '{"earlier": "caller"}')
    (model.folder / "fail-import").write_text("")
    for runner in list(host.runners.values()):
        host._stop_runner(runner)
    with pytest.raises(aio.ServingError) as raised:
        blocking_pool.predict(_called(model), '{"a": 1}')
    assert raised.value.status == 503
    # The reason, not the broken connection the runner's exit left behind.
    assert "The model's runner exited while loading the model:" in raised.value.message
    assert "RuntimeError: import fails from now on" in raised.value.message
    # Only this runner's output: what an earlier one printed (an earlier call's input) is
    # not for every holder of the group token.
    assert "earlier" not in raised.value.message
    assert "earlier" in paths.runner_log(model.hash).read_text()


def test_warming_can_be_switched_off(cast, host_env, host, settings):
    settings.WARM_ON_DEPLOY = False
    model = _build(_upload(cast))
    assert model.status == "Deployed" and host.runners == {}
    assert "model host" not in _log(model)


def test_the_supervisor_keeps_a_warmed_build_until_it_settles(cast, host_env, host):
    model = _upload(cast, replicas=None)
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.BUILDING)
    answer = host.warm(model.hash, 1, host_env.name)
    assert answer["result"]["sum"] == 3 and answer["output"] == "model loaded\n"
    host._retire_undeployed()  # still Building: kept for the build about to go live
    (runner,) = host.runners.values()
    assert runner.build == 1 and runner.alive
    assert paths.runner_socket(model.hash, 1, 0).exists()
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.FAILED)
    host._retire_undeployed()  # the build did not go live: its runners go
    assert host.runners == {} and not paths.runner_socket(model.hash, 1, 0).exists()


# --- replicas follow the load ---------------------------------------------------------

SLOW_SOURCE = textwrap.dedent(
    """
    import time, uuid
    PROCESS = uuid.uuid4().hex  # pids repeat: each runner has a PID namespace of its own

    def score(data, base_path):
        time.sleep(0.05)
        return {"process": PROCESS}
    """
)


SLEEPY_SOURCE = textwrap.dedent(
    """
    import time

    def score(data, base_path):
        time.sleep(1.5)
        return {"slept": True}
    """
)


def _load(model: MLModel, seconds: float, callers: int = 3) -> set[int]:
    """Calls from `callers` threads for `seconds` (more than one runner can answer); the processes that answered."""
    deadline = time.monotonic() + seconds
    called = _called(model)

    def call_until_deadline() -> set[int]:
        processes = set()
        while time.monotonic() < deadline:
            processes.add(json.loads(blocking_pool.predict(called, '{"a": 1, "b": 1}'))["result"]["process"])
        return processes

    with ThreadPoolExecutor(callers) as threads:
        return set().union(*threads.map(lambda _: call_until_deadline(), range(callers)))


def test_a_new_host_removes_its_predecessors_runner_sockets_and_nothing_else(settings, tmp_path):
    """The systemd unit of docs/deployment.md puts supervisord's control socket in the
    same folder as the runners' (/run/neomaril): supervisorctl must still reach it."""
    settings.RUN_DIR = tmp_path
    stale = [
        tmp_path / "M0123.4.0.sock",
        tmp_path / ".M0123.5.1.sock.loading",
        tmp_path / ".M0123.5.2.sock.draining",
    ]
    kept = [tmp_path / "supervisor.sock", tmp_path / "gunicorn.ctl", tmp_path / "supervisord.pid"]
    for path in stale + kept:
        path.touch()
    host = host_module.ModelHost()
    host.shutdown()
    assert [path.name for path in stale if path.exists()] == []
    assert [path.name for path in kept if path.exists()] == [path.name for path in kept]


def test_a_second_host_on_a_live_hosts_folder_refuses_to_start_and_touches_nothing(model_host, settings):
    """Two hosts on one folder would delete each other's runner sockets and take over the
    control socket (CI once ran two pytest workers on make's ./var/run)."""
    runner_socket = settings.RUN_DIR / "M0123.4.0.sock"
    runner_socket.touch()
    with pytest.raises(
        host_module.HostAlreadyRunning, match="Another model host is running on .*NEOMARIL_NODE_DIR"
    ):
        host_module.ModelHost()
    assert runner_socket.exists()
    assert paths.host_socket().exists()
    runner_socket.unlink()


def test_the_host_command_says_why_it_will_not_start_beside_a_live_host(model_host, monkeypatch):
    from django.core.management import CommandError, call_command

    from models_app.management.commands import modelhost

    def serve_nothing(*args):
        raise AssertionError("the second host went on to take the control socket")

    monkeypatch.setattr(modelhost, "ControlServer", serve_nothing)  # never serve forever here
    with pytest.raises(CommandError, match="Another model host is running"):
        call_command("modelhost")


def test_a_stopped_hosts_control_socket_does_not_stop_the_next(settings, tmp_path):
    settings.RUN_DIR = tmp_path
    first = host_module.ModelHost()
    control = host_module.ControlServer(paths.host_socket(), first)  # bound, never served
    control.server_close()  # the file stays behind, nobody listens
    first.shutdown()
    assert paths.host_socket().exists()
    host_module.ModelHost().shutdown()


def test_each_pytest_process_has_its_own_node_folder(settings):
    """`make test` exports `make run`'s node folder (./var); the test plugin drops it."""
    assert settings.NODE_DIR == settings.DATA_DIR
    assert settings.RUN_DIR.is_relative_to(settings.DATA_DIR) or "neomaril-" in settings.RUN_DIR.name


def _replicas(host, model) -> list[int]:
    return sorted(r.replica for r in host._serving() if r.model_hash == model.hash)


def test_replicas_grow_while_calls_queue_and_shrink_when_idle(cast, host_env, host, settings, monkeypatch):
    settings.REPLICA_IDLE_SECONDS = 1
    monkeypatch.setattr(host_module, "DRAIN_SECONDS", 0.3)
    model = _build(_upload(cast, source=SLOW_SOURCE))
    MLModel.objects.filter(pk=model.pk).update(max_replicas=2)
    model.refresh_from_db()
    assert _replicas(host, model) == [0]
    host._sample_load()
    host._scale()  # idle: nothing to do
    assert _replicas(host, model) == [0]

    assert len(_load(model, 1.2)) == 1  # three callers queue on one runner
    host._sample_load()
    assert host.runners[(model.hash, 0)].utilization > SCALE_UP_AT
    host._scale()
    assert _replicas(host, model) == [0, 1]
    time.sleep(aio.ReplicaBalancer.REFRESH)  # the web side reads the sockets again
    assert len(_load(model, 1.0)) == 2  # both runners answer now
    host._sample_load()
    host._scale()
    assert _replicas(host, model) == [0, 1]  # at max_replicas

    time.sleep(0.5)  # quiet
    host._sample_load()
    host._scale()  # light load noticed; replicas leave only after REPLICA_IDLE_SECONDS
    assert _replicas(host, model) == [0, 1]
    time.sleep(1.1)
    host._sample_load()
    host._scale()
    assert _replicas(host, model) == [0]  # replica 1 drains: out of the choice at once
    drained = host.runners[(model.hash, 1)]
    assert not drained.socket_path.exists() and drained.alive
    assert host_module._draining_path(drained.socket_path).exists()  # kept aside, should the load come back
    time.sleep(0.4)
    host._stop_drained()
    assert not drained.alive and set(host.runners) == {(model.hash, 0)}
    assert len(_load(model, 0.3)) == 1  # the remaining replica answers every call
    host._sample_load()
    host._scale()
    assert _replicas(host, model) == [0]  # never below min_replicas


def test_the_calls_queued_at_a_runner_are_read_from_its_load_block(cast, host_env, host):
    """/metrics' queue depth: the calls waiting when its last call ended, less the one it
    took next; none while it is idle (it would be answering them)."""
    model = _build(_upload(cast))
    runner = host.runners[(model.hash, 0)]
    real, now = runner.load, time.monotonic()

    class Block:
        def __init__(self, load):
            self.load = load

        def read(self):
            return self.load

    try:
        runner.load = Block(Load(started=now, busy=1.0, requests=10, waited=4, queued=3))
        host._sample_load()
        assert runner.calls_queued == 2 and host.status()["runners"][0]["calls_queued"] == 2
        runner.load = Block(Load(started=0.0, busy=1.5, requests=13, waited=6, queued=2))
        host._sample_load()
        assert runner.calls_queued == 0
    finally:
        runner.load = real


def test_one_callers_calls_back_to_back_keep_a_runner_busy_and_add_no_replica(cast, host_env, host):
    model = _build(_upload(cast, source=SLOW_SOURCE))
    MLModel.objects.filter(pk=model.pk).update(max_replicas=2)
    host._sample_load()
    assert len(_load(model, 1.2, callers=1)) == 1  # each call waits for the one before
    host._sample_load()
    runner = host.runners[(model.hash, 0)]
    assert runner.utilization > SCALE_UP_AT and not runner.queued  # busy, but nothing waited
    host._scale()
    assert _replicas(host, model) == [0]  # a second replica would only sit beside it
    assert len(_load(model, 1.2, callers=3)) == 1  # now calls queue
    host._sample_load()
    assert host.runners[(model.hash, 0)].queued
    host._scale()
    assert _replicas(host, model) == [0, 1]


def test_a_leaving_replica_comes_back_with_the_load_instead_of_a_cold_start(
    cast, host_env, host, monkeypatch, settings
):
    monkeypatch.setattr(host_module, "DRAIN_SECONDS", 60)
    settings.HOST_MAX_RUNNERS = 2  # the leaving replica fills the budget: bringing it back costs none
    model = _build(_upload(cast, source=SLOW_SOURCE))
    MLModel.objects.filter(pk=model.pk).update(max_replicas=2, min_replicas=2)
    host._scale()
    leaving = host.runners[(model.hash, 1)]
    host._drain(leaving)
    assert _replicas(host, model) == [0]
    host._add_replica(model.hash, [host.runners[(model.hash, 0)]])
    assert host.runners[(model.hash, 1)] is leaving and leaving.alive  # the same process, warm
    assert leaving.socket_path.exists() and leaving.draining_until is None
    assert _replicas(host, model) == [0, 1]


def test_a_replica_stopped_while_answering_answers_first(cast, host_env, host):
    """A drain, an eviction or a restart stops a runner with SIGTERM: the call it is
    answering gets its answer (a runner exits after the call, not inside score())."""
    model = _build(_upload(cast, source=SLEEPY_SOURCE))
    runner = host.runners[(model.hash, 0)]
    with ThreadPoolExecutor(1) as thread:
        call = thread.submit(blocking_pool.predict, _called(model), '{"a": 1, "b": 1}')
        time.sleep(0.4)  # the call is inside score() now
        started = time.monotonic()
        host._stop_runner(runner)
        answer = json.loads(call.result(timeout=10))
    assert answer == {"ok": True, "result": {"slept": True}}
    assert not runner.alive and runner.process.returncode == 0  # exited by itself, not killed
    assert time.monotonic() - started < 4


def test_a_models_quiet_time_ends_with_its_last_runner(host, monkeypatch):
    """A model that comes back later waits REPLICA_IDLE_SECONDS again before a replica leaves."""
    host._quiet_since.update({"Mgone": 0.0, "Mstill-running": 0.0})
    monkeypatch.setattr(host, "_serving", lambda: [SimpleNamespace(model_hash="Mstill-running")])
    host._scale()  # (neither model is Deployed here: only the bookkeeping is under test)
    assert host._quiet_since == {"Mstill-running": 0.0}
    monkeypatch.setattr(host, "_serving", lambda: [])
    host._scale()
    assert host._quiet_since == {}


def test_no_replica_beyond_the_hosts_runner_budget(cast, host_env, host, settings):
    settings.HOST_MAX_RUNNERS = 1
    model = _build(_upload(cast, source=SLOW_SOURCE))
    MLModel.objects.filter(pk=model.pk).update(max_replicas=2)
    model.refresh_from_db()
    _load(model, 1.2)
    host._sample_load()
    assert host.runners[(model.hash, 0)].utilization > SCALE_UP_AT  # the load asks for a replica
    host._scale()
    assert _replicas(host, model) == [0]


def test_a_node_at_its_runner_budget_evicts_before_it_starts_another_model(
    cast, host_env, host, settings, monkeypatch
):
    """The least recently used runner makes room first: the node never runs one more than
    its budget, not even while the new one loads (the budget is what the node can hold)."""
    settings.HOST_MAX_RUNNERS = 1
    first = _build(_upload(cast))
    alive_at_each_start = []
    start = host._start

    def counting_start(model, replica):
        alive_at_each_start.append([r.model_hash for r in host.runners.values() if r.alive])
        return start(model, replica)

    monkeypatch.setattr(host, "_start", counting_start)
    second = _build(_upload(cast))  # its warm-up evicts the first
    assert second.status == "Deployed", _log(second)
    assert [r.model_hash for r in host.runners.values() if r.alive] == [second.hash]
    host.ensure(first.hash)  # the first's next call: the second is evicted
    assert [r.model_hash for r in host.runners.values() if r.alive] == [first.hash]
    assert alive_at_each_start == [[], []]


def test_no_replica_beyond_the_memory_budget_counting_replicas_not_measured_yet(
    cast, host_env, host, settings
):
    """A replica added a moment ago weighs as much as the others, before the supervisor's
    next pass has measured it: replicas added one a second must not overshoot the budget."""
    model = _build(_upload(cast, source=SLOW_SOURCE))
    host._refresh_stats()
    one = host.runners[(model.hash, 0)].rss
    settings.HOST_MEMORY_BUDGET_MB = int(2.5 * one / 2**20)  # room for two runners, not three
    MLModel.objects.filter(pk=model.pk).update(min_replicas=3, max_replicas=3)
    host._scale()
    assert _replicas(host, model) == [0, 1]
    host._scale()  # the next second: replica 1 not measured by the supervisor yet
    assert _replicas(host, model) == [0, 1]


FIRST_CALL_SLOW_SOURCE = textwrap.dedent(
    """
    import time
    CALLS = []

    def score(data, base_path):
        if not CALLS:
            time.sleep(1.5)  # lazy imports on the first call
        CALLS.append(data)
        return {"calls": len(CALLS)}
    """
)


def test_the_warm_up_call_is_not_load_on_the_node_that_built(cast, host_env, host):
    model = _build(_upload(cast, source=FIRST_CALL_SLOW_SOURCE))
    MLModel.objects.filter(pk=model.pk).update(max_replicas=2)
    host._sample_load()  # its busy seconds so far are the warm-up's 1.5 s
    assert host.runners[(model.hash, 0)].utilization < SCALE_DOWN_BELOW
    host._scale()
    assert _replicas(host, model) == [0]


def test_the_warm_up_call_is_not_load_on_a_node_that_follows_a_rebuild(cast, host_env, host, settings):
    model = _build(_upload(cast, source=FIRST_CALL_SLOW_SOURCE))
    MLModel.objects.filter(pk=model.pk).update(max_replicas=2)
    host._follow_live()
    settings.WARM_ON_DEPLOY = False
    services.restart(model, cast.owner)
    host._follow_live()
    host._retire_undeployed()
    model = _build(model)
    (follower,) = host._follow_live()  # warms build 2 here, in the background
    deadline = time.monotonic() + 30
    while not any(r.build == 2 and r.warming_up for r in host.runners.values()):
        assert time.monotonic() < deadline and follower.is_alive(), "no warm-up call was seen"
        time.sleep(0.01)
    host._sample_load()  # a ping now would wait behind the warm-up call
    host._scale()
    follower.join(30)
    host._sample_load()
    host._scale()
    assert [(r.build, r.replica) for r in host.runners.values()] == [(2, 0)]
    assert host._ping(host.runners[(model.hash, 0)], timeout=5)["requests"] == 1


def test_min_replicas_are_started_for_a_model_in_use(cast, host_env, host):
    model = _build(_upload(cast, source=SLOW_SOURCE))
    MLModel.objects.filter(pk=model.pk).update(min_replicas=2, max_replicas=2)  # e.g. the settings form
    host._sample_load()
    host._scale()
    assert _replicas(host, model) == [0, 1]


# --- other nodes follow a rebuild, a new version, a rollback ----------------------------


def _no_cold_start(called):
    raise AssertionError("the first call asked the host to start a runner")


def _follow(host) -> None:
    """One supervisor pass of the part under test (in its order), waiting for the runners it starts."""
    threads = host._follow_live()
    host._retire_undeployed()
    for thread in threads:
        thread.join(60)


def test_a_model_rebuilt_by_another_node_is_warm_here_before_its_first_call(
    cast, host_env, host, settings, monkeypatch
):
    model = _build(_upload(cast))
    _follow(host)  # this node serves build 1
    settings.WARM_ON_DEPLOY = False  # the rebuild runs on another node's worker: nothing warms here
    services.restart(model, cast.owner)
    _follow(host)  # Ready: build 1's runners go, nothing to start yet
    assert host.runners == {}
    model = _build(model)
    assert (model.status, model.deployed_build) == ("Deployed", 2), _log(model)
    assert host.runners == {}
    _follow(host)
    (runner,) = host.runners.values()
    assert (runner.model_hash, runner.build, runner.loading_path) == (model.hash, 2, None)
    assert host._ping(runner, timeout=5)["requests"] == 1  # called once with the schema example
    monkeypatch.setattr(aio, "ensure_started", _no_cold_start)
    answer = json.loads(blocking_pool.predict(_called(model), '{"a": 2, "b": 3}'))
    assert answer["result"]["sum"] == 5
    assert host._follow_live() == []  # followed: nothing more to start


def test_a_rebuild_settled_between_two_passes_is_followed_too(cast, host_env, host, settings):
    model = _build(_upload(cast))  # warmed here: build 1's runner, no pass of the supervisor yet
    settings.WARM_ON_DEPLOY = False
    services.restart(model, cast.owner)
    model = _build(model)  # rebuilt elsewhere, Ready to Deployed before this node's next pass
    assert model.deployed_build == 2 and host.runners[(model.hash, 0)].build == 1
    _follow(host)
    (runner,) = host.runners.values()
    assert (runner.build, runner.loading_path) == (2, None)


def test_a_rebuild_started_before_the_first_pass_over_its_runner_is_followed(cast, host_env, host, settings):
    model = _build(_upload(cast))  # its runner started here (a first call), no pass since
    settings.WARM_ON_DEPLOY = False
    services.restart(model, cast.owner)  # rebuilt by another node's worker
    _follow(host)  # the first pass that sees the runner: the model is Ready, the runner goes
    assert host.runners == {}
    model = _build(model)
    _follow(host)
    (runner,) = host.runners.values()
    assert (runner.build, runner.loading_path) == (2, None)


def _upload_version(cast, model: MLModel) -> MLModel:
    payload = sync_payload(
        python_version=f"{sys.version_info.major}.{sys.version_info.minor}", source=file("app.py", SOURCE)
    )
    for inherited in ("name", "group", "operation"):
        payload.pop(inherited)
    response = api_client(cast.owner).post(
        f"/api/v1/models/{model.hash}/versions", payload, format="multipart"
    )
    assert response.status_code == 201, response.json()
    return MLModel.objects.get(hash=response.json()["hash"])


def test_a_version_that_went_live_through_another_node_is_warm_here(cast, host_env, host, settings):
    model = _build(_upload(cast))
    _follow(host)
    settings.WARM_ON_DEPLOY = False
    version_2 = _build(_upload_version(cast, model))
    model.refresh_from_db()
    assert version_2.status == "Deployed" and model.live_version == version_2
    assert {r.model_hash for r in host.runners.values()} == {model.hash}
    _follow(host)
    assert {r.model_hash for r in host.runners.values() if r.loading_path is None} == {
        model.hash,
        version_2.hash,
    }


def test_a_version_the_run_url_no_longer_serves_keeps_no_minimum_and_leaves_when_idle(
    cast, host_env, host, settings, monkeypatch
):
    # Its runners stayed on every node that served it, and min_replicas kept them up: a
    # model with three versions held three times its minimum on each node.
    settings.REPLICA_IDLE_SECONDS = 1
    monkeypatch.setattr(host_module, "DRAIN_SECONDS", 0.2)
    model = _build(_upload(cast))
    version_2 = _build(_upload_version(cast, model))
    model.refresh_from_db()
    assert model.live_version == version_2 and {r.model_hash for r in host.runners.values()} == {
        model.hash,
        version_2.hash,
    }
    model.all_versions().update(min_replicas=2, max_replicas=2)
    host._sample_load()
    host._scale()
    assert (_replicas(host, version_2), _replicas(host, model)) == ([0, 1], [0])
    time.sleep(1.1)  # no call to version 1 for REPLICA_IDLE_SECONDS
    host._sample_load()
    host._scale()
    time.sleep(0.3)
    host._stop_drained()
    assert {r.model_hash for r in host.runners.values()} == {version_2.hash}
    # Called by its own URL, it starts one runner, not its model's minimum.
    host.ensure(model.hash)
    assert (_replicas(host, version_2), _replicas(host, model)) == ([0, 1], [0])


def test_a_model_not_served_here_any_more_is_not_started_by_its_rebuild(cast, host_env, host, settings):
    model = _build(_upload(cast))
    _follow(host)
    host.stop_model(model.hash)  # e.g. evicted for the memory budget
    _follow(host)  # forgotten: its live build has no runner here
    settings.WARM_ON_DEPLOY = False
    services.restart(model, cast.owner)
    _follow(host)
    model = _build(model)
    assert model.status == "Deployed"
    _follow(host)
    assert host.runners == {}


def test_a_switch_that_does_not_start_here_is_not_retried_every_pass(
    cast, host_env, host, settings, monkeypatch
):
    model = _build(_upload(cast))
    _follow(host)
    settings.WARM_ON_DEPLOY = False
    services.restart(model, cast.owner)
    _follow(host)
    model = _build(model)
    attempts = []

    def refuse(model_hash):
        attempts.append(model_hash)
        raise host_module.HostError("no room")

    monkeypatch.setattr(host, "ensure", refuse)
    _follow(host)
    _follow(host)
    assert attempts == [model.hash] and host.runners == {}


def test_a_ping_answer_over_the_control_limit_is_refused_without_being_read(tmp_path):
    """A runner's answers come from the process the model's code runs in: the host reads
    no more of a ping's answer than a control answer can need."""
    import socket
    import threading

    from models_app.runtime.protocol import MAX_CONTROL_FRAME_BYTES, ProtocolError

    path = tmp_path / "runner.sock"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    sent = []

    def runner_side():
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            announced = 100 * 1024 * 1024
            connection.sendall(announced.to_bytes(4, "big"))
            try:
                for _ in range(1600):  # up to the 100 MiB it announced
                    connection.sendall(b"z" * 65536)
                    sent.append(65536)
            except OSError:
                pass  # the host hung up

    thread = threading.Thread(target=runner_side)
    thread.start()
    try:
        with pytest.raises(ProtocolError, match=f"exceeds the {MAX_CONTROL_FRAME_BYTES}-byte limit"):
            host_module.ModelHost._ping(SimpleNamespace(socket_path=path), timeout=5)
    finally:
        thread.join(10)
        listener.close()
    assert sum(sent) < 16 * 1024 * 1024  # what the socket buffers took before the host hung up


def _fake_runner(model_hash: str, last_used: float) -> host_module.Runner:
    """A Runner whose process is alive as far as the host can tell (no process at all)."""
    process = SimpleNamespace(poll=lambda: None, pid=0)
    return host_module.Runner(
        model_hash=model_hash,
        model_id=0,
        build=1,
        replica=0,
        socket_path=paths.host_socket().parent / f"{model_hash}.1.0.sock",
        launched=SimpleNamespace(process=process),
        last_used=last_used,
    )


def test_threads_making_room_at_once_evict_one_runner_once(host, settings, monkeypatch):
    """Overlapping builds each made room: they picked the same least recently used runner
    and stopped it once each (its uid lease's fd closed twice)."""
    import threading

    settings.HOST_MAX_RUNNERS = 2
    runners = [_fake_runner(f"Mfake{n}", last_used=n) for n in range(3)]
    for runner in runners:
        host.runners[(runner.model_hash, 0)] = runner
    stopped = []

    def slow_stop(runner):
        stopped.append(runner.model_hash)
        time.sleep(0.3)  # the evicted runner answers its call in flight first
        with host._lock:
            host.runners.pop((runner.model_hash, 0), None)

    monkeypatch.setattr(host, "_stop_runner", slow_stop)
    threads = [threading.Thread(target=host._enforce_budget) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert stopped == ["Mfake0"]
    assert sorted(host.runners) == [("Mfake1", 0), ("Mfake2", 0)]


@pytest.fixture
def budgeted(cast, host, settings, monkeypatch):
    """A Deployed model with one busy fake runner, on a host whose budgets the test sets;
    every runner weighs 600 MB. The fake runners go before the host stops."""
    from tests.helpers.monitors import deployed_model

    monkeypatch.setattr(host_module, "_sandbox_rss", lambda pid: 600 * 2**20)
    model = deployed_model(cast.group, deployed_build=1, max_replicas=3)
    busy = _fake_runner(model.hash, last_used=time.time())
    busy.utilization, busy.queued = 1.0, True
    host.runners[(model.hash, 0)] = busy
    yield model
    host.runners.clear()


def _refusal_warnings(caplog, model: MLModel) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING" and r.getMessage().startswith(f"{model.hash}: no replica added")
    ]


def test_a_scale_up_refused_by_the_runner_budget_is_counted_and_says_why(budgeted, host, settings, caplog):
    settings.HOST_MAX_RUNNERS = 1
    host._add_replica(budgeted.hash, [host.runners[(budgeted.hash, 0)]])
    assert host.status()["refused_scale_ups"] == {budgeted.hash: {"runners": 1, "memory": 0}}
    assert _refusal_warnings(caplog, budgeted) == [
        f"{budgeted.hash}: no replica added for the load: the node runs 1 runners (NEOMARIL_HOST_MAX_RUNNERS=1)"
    ]


def test_a_scale_up_refused_by_the_memory_budget_is_counted_and_says_why(budgeted, host, settings, caplog):
    settings.HOST_MAX_RUNNERS, settings.HOST_MEMORY_BUDGET_MB = 16, 1000  # room for one 600 MB runner
    host._add_replica(budgeted.hash, [host.runners[(budgeted.hash, 0)]])
    assert host.status()["refused_scale_ups"] == {budgeted.hash: {"runners": 0, "memory": 1}}
    [warning] = _refusal_warnings(caplog, budgeted)
    assert warning.endswith(
        "the node's runners use 600 MB and one more would need about 600 MB "
        "(NEOMARIL_HOST_MEMORY_BUDGET_MB=1000)"
    )


def test_a_refused_scale_up_is_warned_once_per_episode_not_every_scaling_pass(
    budgeted, host, settings, monkeypatch, caplog
):
    """The scaler asks every second while the load lasts: one warning until a replica was
    added or the load eased, each refusal counted."""

    def start(model, replica):
        runner = _fake_runner(model.hash, last_used=time.time())
        runner.replica, runner.utilization, runner.queued = replica, 1.0, True
        host.runners[(model.hash, replica)] = runner
        return runner

    monkeypatch.setattr(host, "_start", start)
    monkeypatch.setattr(host, "_wait_ready", lambda runner: None)
    settings.HOST_MAX_RUNNERS = 1
    host._scale()
    host._scale()
    assert len(_refusal_warnings(caplog, budgeted)) == 1
    settings.HOST_MAX_RUNNERS = 2
    host._scale()  # replica 1 added
    assert sorted(host.runners) == [(budgeted.hash, 0), (budgeted.hash, 1)]
    host._scale()  # both busy: a third is refused, a new episode
    assert len(_refusal_warnings(caplog, budgeted)) == 2
    for runner in host.runners.values():
        runner.utilization, runner.queued = 0.6, False
    host._scale()  # the load eased: asks for nothing
    for runner in host.runners.values():
        runner.utilization, runner.queued = 1.0, True
    host._scale()
    assert len(_refusal_warnings(caplog, budgeted)) == 3
    assert host.status()["refused_scale_ups"][budgeted.hash] == {"runners": 4, "memory": 0}


def test_an_idle_runner_is_evicted_before_one_answering_a_call(host, settings, monkeypatch):
    """The runner in a call looked the least recently used (its last use is sampled once a
    second): evicting it cut the call, which the web process then ran again."""
    settings.HOST_MAX_RUNNERS = 2
    answering = SimpleNamespace(read=lambda: Load(started=time.monotonic(), busy=0.0, requests=3, waited=0))
    idle = SimpleNamespace(read=lambda: Load(started=0.0, busy=0.5, requests=9, waited=0))
    for n, load in enumerate((answering, idle, idle, answering)):
        runner = _fake_runner(f"Mfake{n}", last_used=n)
        runner.load = load
        host.runners[(runner.model_hash, 0)] = runner
    stopped = []

    def stop(runner):
        stopped.append(runner.model_hash)
        with host._lock:
            host.runners.pop((runner.model_hash, 0), None)

    monkeypatch.setattr(host, "_stop_runner", stop)
    monkeypatch.setattr(host_module, "_sandbox_rss", lambda pid: 0)
    host._enforce_budget()
    assert stopped == ["Mfake1", "Mfake2"]
    host._enforce_budget(protect="Mfake3", adding=1)  # only busy ones left: the budget still holds
    assert stopped == ["Mfake1", "Mfake2", "Mfake0"]
    host.runners.clear()


def test_a_replica_the_load_added_is_evicted_before_another_models_only_runner(host, settings, monkeypatch):
    settings.HOST_MAX_RUNNERS = 3
    idle = SimpleNamespace(read=lambda: Load(started=0.0, busy=0.5, requests=9, waited=0))
    answering = SimpleNamespace(read=lambda: Load(started=time.monotonic(), busy=0.0, requests=3, waited=0))
    for model_hash, replica, last_used, load in (
        ("Mbusy", 0, 5, idle), ("Mbusy", 1, 6, idle), ("Mbusy", 2, 7, answering), ("Mcold", 0, 1, idle),
    ):  # fmt: skip
        runner = _fake_runner(model_hash, last_used=last_used)
        runner.replica, runner.load = replica, load
        host.runners[(model_hash, replica)] = runner
    stopped = []

    def stop(runner):
        stopped.append((runner.model_hash, runner.replica))
        with host._lock:
            host.runners.pop((runner.model_hash, runner.replica), None)

    monkeypatch.setattr(host, "_stop_runner", stop)
    monkeypatch.setattr(host_module, "_sandbox_rss", lambda pid: 0)
    host._enforce_budget()
    assert stopped == [("Mbusy", 1)]  # not Mcold's, the least recently used
    host._enforce_budget(adding=1)
    assert stopped == [("Mbusy", 1), ("Mcold", 0)]  # an idle one before the replica in a call
    host.runners.clear()


def test_evictions_are_counted_per_evicted_model_in_the_hosts_status(host, settings, monkeypatch):
    settings.HOST_MAX_RUNNERS = 1
    for n in range(2):
        runner = _fake_runner(f"Mfake{n}", last_used=n)
        host.runners[(runner.model_hash, 0)] = runner

    def stop(runner):
        with host._lock:
            host.runners.pop((runner.model_hash, 0), None)

    monkeypatch.setattr(host, "_stop_runner", stop)
    monkeypatch.setattr(host_module, "_sandbox_rss", lambda pid: 0)
    host._enforce_budget()  # Mfake0, the least recently used, goes
    host.runners[("Mfake0", 0)] = _fake_runner("Mfake0", last_used=0)  # called again, idle since
    host._enforce_budget(protect="Mfake1")  # Mfake1's next call: Mfake0 goes again
    status = aio.host_call({"op": "status"}, timeout=10)  # as /metrics reads it
    host.runners.clear()
    assert status["evictions"] == {"Mfake0": 2}


def test_ensure_of_a_model_out_of_service_says_its_status_and_starts_nothing(cast, host):
    # A call accepted while the model was Deployed reaches the host after a delete, a
    # disable or a rebuild (maybe through another node): the web process answers what the
    # run URL now does, from the status the refusal carries.
    model = _upload(cast)  # Ready: its build is queued
    answer = aio.host_call({"op": "ensure", "model": model.hash}, timeout=10)
    assert answer == {
        "ok": False,
        "error": f"Model '{model.hash}' is Ready, not Deployed.",
        "code": "not_deployed",
        "model_status": "Ready",
    }
    answer = aio.host_call({"op": "ensure", "model": "Mnosuchmodel"}, timeout=10)
    assert (answer["code"], answer["model_status"]) == ("not_deployed", None)
    assert host.runners == {}


def test_a_sandbox_lease_released_from_two_threads_is_closed_once(monkeypatch):
    """The second close of a lease's fd could hit the same number reused by another job's
    lease, and free that job's uid."""
    import os
    import threading

    from models_app.runtime import sandbox

    lease = os.open(os.devnull, os.O_RDONLY)
    real_close = os.close
    closed = []

    def slow_close(fd):
        if fd != lease:
            return real_close(fd)
        closed.append(fd)
        time.sleep(0.2)
        if len(closed) == 1:
            real_close(fd)

    monkeypatch.setattr(sandbox.os, "close", slow_close)
    launched = sandbox.Launched(SimpleNamespace(pid=0, poll=lambda: None), 200001, lease, sandboxed=True)
    threads = [threading.Thread(target=launched.release) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    monkeypatch.undo()
    assert closed == [lease]


def test_a_control_requests_thread_closes_its_database_connection(model_host, monkeypatch):
    # Each control request has a thread of its own that ends with it: a connection kept
    # for reuse (CONN_MAX_AGE on PostgreSQL) would stay open with nobody to reuse it.
    closed_by = []

    class Watched:
        def __getattr__(self, name):
            return getattr(connection, name)

        def close(self):
            closed_by.append(threading.current_thread().name)
            connection.close()

    monkeypatch.setattr(host_module, "connection", Watched())
    for _ in range(3):
        assert aio.host_call({"op": "status"}, timeout=10)["ok"]
    assert len(closed_by) == 3 and threading.current_thread().name not in closed_by


def test_a_runner_whose_socket_refuses_is_not_up_though_its_process_is_not_seen_gone_yet(host):
    # A crash (os._exit in the model's code) closes the socket a moment before the host
    # sees the process gone: a cold start asked then must start a runner, not answer "up".
    runner = _fake_runner("Mcrashing", last_used=time.time())
    model = SimpleNamespace(hash="Mcrashing", deployed_build=1)
    host.runners[("Mcrashing", 0)] = runner
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as listening:
        listening.bind(str(runner.socket_path))
        listening.listen(8)
        assert host._is_up(model, 0)  # listening: up
    assert runner.socket_path.exists() and not host._is_up(model, 0)  # the file, and nobody behind it
    del host.runners[("Mcrashing", 0)]  # no process of its own for the host to stop
    runner.socket_path.unlink()


def test_the_warm_up_output_is_cut_at_a_line_and_says_so(tmp_path):
    log = tmp_path / "Mabc.log"
    log.write_bytes(b"before\n" + b"".join(b"line %05d of the import\n" % n for n in range(5000)))
    output = host_module._read_from(log, len(b"before\n"), 1024)
    lines = output.splitlines()
    assert lines[0] == "line 00000 of the import" and lines[-2].startswith("line ")
    assert lines[-2].endswith("of the import")  # whole lines only
    assert (
        lines[-1]
        == "[... the model's output past 1 KB is not in this log: see the runner's log, Mabc.log, on the node ...]"
    )
    assert host_module._read_from(log, log.stat().st_size - 30, 1024).endswith("of the import\n")  # all of it
    log.write_bytes(b"after the cap\n")  # capped since the offset was taken: all of it came after
    assert host_module._read_from(log, 5000, 1024) == "after the cap\n"


def test_the_runner_logs_of_deleted_models_are_swept_and_the_folder_is_private(cast, settings, tmp_path):
    settings.NODE_DIR = tmp_path  # this node's folder alone: other tests leave runner logs
    from models_app.models import MLModel
    from models_app.serving import paths
    from models_app.serving.host import remove_logs_of_deleted_models
    from tests.helpers.monitors import deployed_model

    kept, gone = deployed_model(cast.group, name="kept"), deployed_model(cast.group, name="gone")
    for model in (kept, gone):
        paths.runner_log(model.hash).write_text("loading with key s3cr3t\n")
        host_module.previous_log(paths.runner_log(model.hash)).write_text("its earlier part\n")
    stray = paths.runner_log("M" + "f" * 32)  # a model no row knows any more
    stray.write_text("x\n")
    MLModel.objects.filter(pk=gone.pk).update(status=MLModel.Status.DELETED)
    assert remove_logs_of_deleted_models() == 3
    assert paths.runner_log(kept.hash).exists()
    assert host_module.previous_log(paths.runner_log(kept.hash)).exists()
    assert not paths.runner_log(gone.hash).exists() and not stray.exists()
    assert not host_module.previous_log(paths.runner_log(gone.hash)).exists()
    assert paths.runner_log_folder().stat().st_mode & 0o777 == 0o700


# --- runner logs stay under their cap ---------------------------------------------------


def test_a_capped_runner_log_goes_on_at_its_new_end_and_keeps_its_earlier_part(tmp_path):
    log = tmp_path / "Mabc.log"
    with open(log, "ab", buffering=0) as runner_output:  # a runner's stdout, as the host opens it
        runner_output.write(b"old\n" * 1000)
        assert not host_module.cap_runner_log(log, 4000, held=True)  # at the cap, not past it
        runner_output.write(b"x\n")
        assert host_module.cap_runner_log(log, 4000, held=True)
        runner_output.write(b"after the cap\n")
    assert log.read_bytes() == b"after the cap\n"  # at the new end: no hole of the old size
    assert host_module.previous_log(log).read_bytes() == b"old\n" * 1000 + b"x\n"
    log.write_bytes(b"y" * 5000)
    assert host_module.cap_runner_log(log, 4000, held=False)  # nobody writes it: renamed
    assert not log.exists() and host_module.previous_log(log).read_bytes() == b"y" * 5000  # one generation
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Mabc.log.1"]


PRINTS_SOURCE = textwrap.dedent(
    """
    def score(data, base_path):
        print("x" * 200_000)  # what a model logging its inputs prints, in a few calls
        return {"printed": True}
    """
)


def test_a_model_printing_on_every_call_answers_past_its_sandboxs_file_size_limit(
    cast, host_env, host, settings
):
    """A runner may write no file larger than RLIMIT_FSIZE: once its log reached that, every
    print() raised "File too large" and every call was a 422, through restarts too."""
    settings.SANDBOX_TMP_MB = 4  # the runner's file-size limit
    settings.RUNNER_LOG_MAX_MB = 1
    model = _build(_upload(cast, source=PRINTS_SOURCE))
    log = paths.runner_log(model.hash)
    for _ in range(40):  # 8 MB printed: twice the limit
        answer = json.loads(blocking_pool.predict(_called(model), '{"a": 1, "b": 2}'))
        assert answer == {"ok": True, "result": {"printed": True}}, answer
        host.supervise_once()  # every second in the host
    assert log.stat().st_size <= 1024 * 1024
    assert 1024 * 1024 < host_module.previous_log(log).stat().st_size < 2 * 1024 * 1024


def test_a_fresh_start_does_not_inherit_a_log_over_the_cap(cast, host_env, host, settings):
    settings.RUNNER_LOG_MAX_MB = 1
    settings.WARM_ON_DEPLOY = False
    model = _build(_upload(cast))
    log = paths.runner_log(model.hash)
    log.write_bytes(b"printed long ago\n" * 100_000)  # 1.7 MB, of runners gone since
    host.ensure(model.hash)
    assert log.read_text() == "model loaded\n"
    assert host_module.previous_log(log).read_bytes() == b"printed long ago\n" * 100_000


def test_a_load_error_is_read_from_the_end_of_the_runner_log(settings, tmp_path):
    settings.NODE_DIR = tmp_path
    log = paths.runner_log("Mtail")
    with open(log, "wb") as f:
        f.truncate(50 * 1024 * 1024)  # sparse: 50 MB the model printed long ago
        f.seek(0, 2)
        f.write(b"".join(b"line %d\n" % n for n in range(100)))
    runner = SimpleNamespace(model_hash="Mtail", log_start=0)
    tracemalloc.start()
    try:
        tail = host_module.ModelHost._log_tail(runner)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert tail.splitlines() == [f"line {n}" for n in range(70, 100)]
    assert peak < 1024 * 1024  # not the whole log


def test_a_load_error_shows_only_what_was_written_since_its_runner_started(settings, tmp_path):
    settings.NODE_DIR = tmp_path
    log = paths.runner_log("Mtail")
    log.write_bytes(b"".join(b"earlier runner %d\n" % n for n in range(100)))
    runner = SimpleNamespace(model_hash="Mtail", log_start=log.stat().st_size)
    with open(log, "ab") as f:
        f.write(b"".join(b"line %d\n" % n for n in range(5)))
    assert host_module.ModelHost._log_tail(runner).splitlines() == [f"line {n}" for n in range(5)]
    # Capped since it started: its first lines are in the part before, and only those.
    assert host_module.cap_runner_log(log, 1024, held=True)
    log.write_bytes(b"ValueError: boom\n")
    assert host_module.ModelHost._log_tail(runner).splitlines() == [
        *(f"line {n}" for n in range(5)),
        "ValueError: boom",
    ]
    runner.log_start = 0
    log.write_bytes(b"nothing yet\n")
    assert host_module.ModelHost._log_tail(runner) == "nothing yet"


# --- a runner gone while it loads -------------------------------------------------------


def test_a_runner_gone_before_the_host_connects_reports_the_models_load_error(cast, host_env, host, settings):
    """Its socket then refuses: that was a 503 "model host error: ConnectionRefusedError"
    instead of the model's own error, and aborted the supervisor's pass."""
    settings.WARM_ON_DEPLOY = False
    model = _build(_upload(cast, source=IMPORT_FAILS_LATER))
    (model.folder / "fail-import").write_text("")
    runner = host._start(model, 0)
    runner.process.wait(30)  # exited before the host connects
    with pytest.raises(host_module.HostError) as raised:
        host._wait_ready(runner)
    assert "The model's runner exited while loading the model:" in str(raised.value)
    assert "RuntimeError: import fails from now on" in str(raised.value)
    assert host.runners == {} and not runner.loading_path.exists()


def _crashed_runner(model: MLModel) -> host_module.Runner:
    process = SimpleNamespace(poll=lambda: 1, pid=0, returncode=1)
    return host_module.Runner(
        model_hash=model.hash,
        model_id=model.pk,
        build=model.deployed_build,
        replica=0,
        socket_path=paths.runner_socket(model.hash, model.deployed_build, 0),
        launched=SimpleNamespace(process=process, release=lambda: None),
    )


def test_one_runner_that_cannot_restart_does_not_stop_the_others_restarts(cast, host, monkeypatch):
    from tests.helpers.monitors import deployed_model

    failing, other = deployed_model(cast.group, name="failing"), deployed_model(cast.group, name="other")
    for model in (failing, other):
        host.runners[(model.hash, 0)] = _crashed_runner(model)
    started = []

    def start(model, replica):
        if model.hash == failing.hash:
            raise ConnectionRefusedError(111, "Connection refused")
        started.append(model.hash)
        return SimpleNamespace()

    monkeypatch.setattr(host, "_start", start)
    monkeypatch.setattr(host, "_wait_ready", lambda runner: None)
    host._restart_crashed()
    assert started == [other.hash]


def test_a_crashed_runner_not_restarted_leaves_no_socket_behind(cast, host, monkeypatch):
    # Web processes choose among the replica sockets that exist: a dead runner's file
    # left in place was a replica every call tried and failed to reach.
    from tests.helpers.monitors import deployed_model

    past_limit, disabled = (
        deployed_model(cast.group, name="past-limit"),
        deployed_model(cast.group, name="off"),
    )
    MLModel.objects.filter(pk=disabled.pk).update(status=MLModel.Status.DISABLED)
    host._crashes[past_limit.hash] = deque([time.monotonic()] * (host_module.CRASH_LIMIT - 1))
    runners = [_crashed_runner(past_limit), _crashed_runner(disabled)]
    for runner in runners:
        runner.socket_path.parent.mkdir(parents=True, exist_ok=True)
        runner.socket_path.touch()
        host.runners[(runner.model_hash, 0)] = runner
    monkeypatch.setattr(host, "_start", lambda model, replica: pytest.fail(f"{model.name} was restarted"))
    host._restart_crashed()
    assert host.runners == {} and not any(runner.socket_path.exists() for runner in runners)


def test_a_failing_supervision_step_does_not_skip_the_others(host, monkeypatch):
    ran = []

    def fails():
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(host, "_restart_crashed", fails)
    for step in ("_stop_drained", "_cap_logs", "_follow_live", "_retire_undeployed", "_enforce_budget"):
        monkeypatch.setattr(host, step, lambda step=step: ran.append(step))
    host.supervise_once()
    assert ran == ["_stop_drained", "_cap_logs", "_follow_live", "_retire_undeployed", "_enforce_budget"]


# --- the scaler reads the runners' load without asking them -------------------------------

SLOW_CALLS_SOURCE = textwrap.dedent(
    """
    import time, uuid
    PROCESS = uuid.uuid4().hex

    def score(data, base_path):
        time.sleep(0.4)
        return {"process": PROCESS}
    """
)


def _sample_while(host, calling) -> list[float]:
    """Sample and scale twice a second while `calling` runs; the utilizations seen."""
    seen = []
    while not calling.done():
        time.sleep(0.5)
        host._sample_load()
        seen += [r.utilization for r in host._serving() if r.replica == 0]
        host._scale()
    return seen


def test_one_callers_slow_calls_add_no_replica_and_several_callers_slow_calls_do(cast, host_env, host):
    """A ping sent during a call waits behind it: with calls of 0.2 s and more, every sample
    of one caller's calls one after another timed out, was taken for calls queuing, and a
    replica that served nothing was added (and kept)."""
    model = _build(_upload(cast, source=SLOW_CALLS_SOURCE))
    MLModel.objects.filter(pk=model.pk).update(max_replicas=2)
    host._sample_load()
    with ThreadPoolExecutor(1) as thread:
        calling = thread.submit(_load, model, 3.0, 1)
        seen = _sample_while(host, calling)
        assert len(calling.result()) == 1
    assert max(seen) > SCALE_UP_AT  # it was busy, the call in progress counted
    assert _replicas(host, model) == [0]  # but nothing waited
    with ThreadPoolExecutor(1) as thread:
        calling = thread.submit(_load, model, 2.0, 3)
        _sample_while(host, calling)
        calling.result()
    assert _replicas(host, model) == [0, 1]


def test_a_supervisor_step_that_fails_every_pass_is_logged_once(db, caplog, monkeypatch):
    # The database away: every pass's step fails. A traceback each second flooded the log.
    host = host_module.ModelHost()
    passes = []

    def _restart_crashed():
        passes.append(1)
        if len(passes) <= 3:
            raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(host, "_restart_crashed", _restart_crashed)
    caplog.set_level(logging.WARNING, logger=host_module.logger.name)
    try:
        for _ in range(4):
            host.supervise_once()
    finally:
        host.shutdown()
    messages = [r.getMessage() for r in caplog.records if "_restart_crashed" in r.getMessage()]
    assert messages[0] == "supervisor step _restart_crashed failed; it runs again at the next pass"
    assert len(messages) == 2 and messages[1].startswith("supervisor step _restart_crashed works again after")


@pytest.mark.parametrize(
    ("running_for", "killed"),
    [
        (None, True),  # between calls: nothing shows it is working
        (1.0, False),  # a newer call than the one that timed out: busy, not stuck
        (29.7, True),  # within the slack of the caller's 30 s: the call that timed out
        (-5.0, True),  # a start in the future, written by the model's process: no alibi
    ],
)
def test_a_runner_is_killed_for_a_timeout_only_when_its_call_in_progress_has_run_that_long(
    host, running_for, killed
):
    """120 calls queued behind a slow model: each that timed out waiting killed the runner,
    which was answering another call (lost with it) and started cold under that load."""
    load = LoadBlock()
    kills = []
    runner = _fake_runner("Mbusy", last_used=0)
    runner.launched.kill = lambda: kills.append(runner.socket_path)
    runner.load = load
    host.runners[(runner.model_hash, 0)] = runner
    if running_for is not None:  # as the runner's call_started writes it, on the host's clock
        load._map[8:16] = struct.pack("@d", time.monotonic() - running_for)
    try:
        answer = host.kill(str(runner.socket_path), "request exceeded 30 s", stuck_after=30)
        assert answer == ({"killed": True, "pid": 0} if killed else {"killed": False, "busy": True})
        assert len(kills) == killed
        # Asked without a timeout (a stop asked for by hand), it kills whatever the load.
        assert host.kill(str(runner.socket_path), "stop")["killed"]
    finally:
        host.runners.clear()
        load.close()


def test_the_control_socket_passes_the_callers_timeout_to_kill(host, monkeypatch):
    asked = []
    monkeypatch.setattr(host, "kill", lambda path, reason, stuck_after=None: asked.append(stuck_after) or {})
    for sent in (30, 2.5, "30", True, None):
        aio.host_call({"op": "kill", "socket": "/x.sock", "reason": "r", "stuck_after": sent}, timeout=5)
    assert asked == [30.0, 2.5, None, None, None]
