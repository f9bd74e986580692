"""The model host warms a build before it goes live (in process, real runners, no uv).

The build (``tasks.build_model``) asks a real ``ModelHost`` on its control socket to
start the runners and call them with the schema example: the model is warm when it is
announced Deployed, and without a host the build still deploys (the runners then start
on the first call).
"""

from __future__ import annotations

import json
import re
import sys
import textwrap

import pytest

from models_app import tasks
from models_app.calls import CalledModel
from models_app.models import MLModel, ModelBuild
from models_app.serving import aio, paths
from models_app.serving.aio import blocking_pool
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
        1,
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
