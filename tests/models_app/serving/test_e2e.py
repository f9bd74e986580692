"""Sync serving with the real processes: web (gunicorn), worker, model host and runners."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from tests.helpers import real_models
from tests.helpers.processes import PortalClient, RunningPortal

pytestmark = pytest.mark.slow

PROBE_SOURCE = textwrap.dedent(
    """
    import json, os, time, uuid

    # The runner process's identity: os.getpid() is the same in every sandbox (its own
    # PID namespace), so tell processes apart by a value drawn at import.
    RUNNER = uuid.uuid4().hex

    def score(data, base_path):
        d = json.loads(data)
        if d.get("sleep"):
            time.sleep(d["sleep"])
        if d.get("boom"):
            raise ValueError("boom: " + str(d["boom"]))
        return {"y": d["x"] * 2, "runner": RUNNER, "env": sorted(os.environ), "api_key": os.environ.get("API_KEY")}
    """
)


def probe_files(**extra) -> dict:
    return {
        "source": ("app.py", PROBE_SOURCE.encode()),
        "model": ("model.pkl", b"unused"),
        "requirements": ("requirements.txt", b""),
        "schema": ("schema.json", b'{"x": 1}'),
        **extra,
    }


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    running = RunningPortal(
        tmp_path_factory.mktemp("serving"),
        extra_env={
            "SECRET_KEY": "platform-secret-key-" + "x" * 40,
            "NEOMARIL_PREDICT_TIMEOUT": "30",
            "NEOMARIL_REPLICA_IDLE_SECONDS": "3",
        },
    )
    try:
        running.wait_healthy()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(portal):
    return PortalClient(portal)


@pytest.fixture(scope="module")
def tokens(client):
    return {"serving": client.create_group("serving"), "others": client.create_group("others")}


@pytest.fixture(scope="module")
def probe(client, tokens):
    files = probe_files(env=(".env", b"API_KEY=model-secret\n"))
    model_hash = client.deploy(group="serving", files=files, name="probe")
    # One runner, whatever the load, unless a test says otherwise: the tests below count
    # runners, and a stuck call keeps a runner busy (which would add a replica).
    client.patch(f"/api/v1/models/{model_hash}", json={"max_replicas": 1})
    return model_hash


def call(portal, model_hash, body, token, timeout=60):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(
        f"{portal.url}/api/v1/run/{model_hash}",
        data=data,
        headers={"Authorization": f"Bearer {token}"},
        timeout=timeout,
    )


def runners(client, model_hash):
    return client.get(f"/api/v1/models/{model_hash}/runners").json()["runners"]


def test_sklearn_model_answers_like_the_in_process_call(portal, client, tokens):
    pickle = real_models.train_model_pickle(portal.data_dir / "trained").read_bytes()
    files = {
        "source": ("app.py", real_models.SYNC_SOURCE.encode()),
        "model": ("model.pkl", pickle),
        "requirements": ("requirements.txt", real_models.REQUIREMENTS.encode()),
        "schema": ("schema.json", json.dumps(real_models.SCHEMA).encode()),
        "env": (".env", b"API_KEY=s3cr3t-value\n"),
    }
    model_hash = client.deploy(group="serving", files=files, name="breast cancer", python_version="3.9")
    row = {"radius": 17.99, "texture": 10.38, "smoothness": 0.1184}
    response = call(portal, model_hash, row, tokens["serving"])
    assert response.status_code == 200, response.text
    # The same call made in-process, in the same environment, with the same files.
    env_python = next((portal.data_dir / "envs").glob("*/bin/python"))
    script = (
        "import json, os, sys, runpy; sys.path.insert(0, sys.argv[1]); os.environ['API_KEY'] = 's3cr3t-value';"
        "m = runpy.run_path(sys.argv[1] + '/app.py'); r = m['score'](sys.argv[2], sys.argv[1]);"
        "print(json.dumps({'pred': int(r['pred']), 'proba': float(r['proba']), 'vector': r['vector'].tolist(), 'secret_ok': r['secret_ok']}))"
    )
    folder = portal.data_dir / "models" / model_hash
    expected = subprocess.run(
        [str(env_python), "-c", script, str(folder), json.dumps(row)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert response.json() == json.loads(expected.stdout)
    assert response.json()["secret_ok"] is True


def test_a_model_uploaded_from_windows_with_a_latin1_script_answers(portal, client, tokens):
    """PowerShell 5 writes requirements.txt, .env and JSON in UTF-16 with a byte-order mark;
    the script declares latin-1 in a coding line. Python and pip read these, so does the portal."""
    pickle = portal.data_dir / "trained" / "model.pkl"
    if not pickle.exists():
        real_models.train_model_pickle(pickle.parent)
    labelled = real_models.SYNC_SOURCE.replace('"secret_ok":', '"label": "café", "secret_ok":')
    files = {
        "source": ("app.py", ("# -*- coding: latin-1 -*-\n" + labelled).encode("latin-1")),
        "model": ("model.pkl", pickle.read_bytes()),
        "requirements": ("requirements.txt", real_models.REQUIREMENTS.replace("\n", "\r\n").encode("utf-16")),
        "schema": ("schema.json", json.dumps(real_models.SCHEMA).encode("utf-16")),
        "env": (".env", "API_KEY=s3cr3t-value\r\n".encode("utf-16")),
    }
    model_hash = client.deploy(group="serving", files=files, name="from windows", python_version="3.9")
    response = call(
        portal, model_hash, {"radius": 17.99, "texture": 10.38, "smoothness": 0.1184}, tokens["serving"]
    )
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["label"] == "café" and answer["secret_ok"] is True and answer["pred"] in (0, 1)
    folder = portal.data_dir / "models" / model_hash
    assert (folder / "requirements.txt").read_bytes() == real_models.REQUIREMENTS.replace(
        "\n", "\r\n"
    ).encode()


def test_errors_and_status_codes(portal, client, tokens, probe):
    assert call(portal, probe, {"x": 2}, tokens["serving"]).json()["y"] == 4
    wrong_group = call(portal, probe, {"x": 2}, tokens["others"])
    assert wrong_group.status_code == 403
    assert wrong_group.json() == {
        "detail": "This group token is not valid for this model: use the token of the group that owns it.",
        "code": "permission_denied",
    }
    assert call(portal, probe, {"x": 2}, "nmg_nope").status_code == 401
    missing = requests.post(f"{portal.url}/api/v1/run/{probe}", data="{}", timeout=10)
    assert missing.status_code == 401 and "Bearer" in missing.json()["detail"]
    assert call(portal, "M" + "0" * 32, {"x": 2}, tokens["serving"]).status_code == 404
    not_json = call(portal, probe, "{x: 1", tokens["serving"])
    assert not_json.status_code == 400 and "not valid JSON" in not_json.json()["detail"]
    not_object = call(portal, probe, "[1, 2]", tokens["serving"])
    assert not_object.status_code == 400 and "JSON object" in not_object.json()["detail"]
    raised = call(portal, probe, {"x": 1, "boom": "bad input"}, tokens["serving"])
    assert raised.status_code == 422
    body = raised.json()
    assert body["code"] == "model_error" and body["model_error"]["error"] == "ValueError: boom: bad input"
    # Relative to the model's folder: the server's paths are not a token holder's business.
    assert 'File "app.py", line 13, in score' in body["model_error"]["traceback"]
    assert str(portal.data_dir) not in raised.text and 'File "/' not in raised.text
    nested = call(portal, probe, "[" * 1000 + "]" * 1000, tokens["serving"])
    assert (nested.status_code, nested.json()["code"]) == (400, "invalid")
    assert "nested too deeply" in nested.json()["detail"]


def test_runner_environment_is_clean(portal, tokens, probe):
    answer = call(portal, probe, {"x": 1}, tokens["serving"]).json()
    assert answer["api_key"] == "model-secret"
    leaked = [
        name
        for name in answer["env"]
        if name.startswith(("NEOMARIL_", "SECRET", "DATABASE", "REDIS", "DJANGO"))
    ]
    assert leaked == []


def test_a_deployed_model_is_warm_and_concurrent_first_calls_share_its_runner(portal, client, tokens):
    # Warm on deploy (docs/serving.md): the build started the runner and called it once.
    # (Concurrent calls to a cold model asking the host for one start: test_aio.py.)
    files = probe_files()
    model_hash = client.deploy(group="serving", files=files, name="warm")
    (warm,) = runners(client, model_hash)
    # The build log says where upload → Deployed went, the warm-up as the host saw it.
    log = client.get(f"/api/v1/models/{model_hash}/logs").json()["log"]
    assert re.search(
        r" Timings: queue \S+ s, interpreter \S+ s, environment \S+ s, warm-up \S+ s "
        r"\(sandbox start \S+ s, model load \S+ s, first call \S+ s\)\.\n.* Build succeeded",
        log,
    ), log
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda i: call(portal, model_hash, {"x": i}, tokens["serving"]), range(8)))
    assert [a.status_code for a in answers] == [200] * 8
    assert sorted(a.json()["y"] for a in answers) == [i * 2 for i in range(8)]
    assert len({a.json()["runner"] for a in answers}) == 1
    assert [r["pid"] for r in runners(client, model_hash)] == [warm["pid"]]


def test_killed_runner_is_replaced_and_next_call_succeeds(portal, client, tokens, probe):
    before = call(portal, probe, {"x": 1}, tokens["serving"]).json()["runner"]
    (runner,) = runners(client, probe)
    os.kill(runner["pid"], signal.SIGKILL)  # the process the host started and supervises
    time.sleep(0.2)
    after = call(portal, probe, {"x": 5}, tokens["serving"])
    assert after.status_code == 200 and after.json()["y"] == 10
    assert after.json()["runner"] != before


def test_timeout_is_504_and_the_model_recovers(portal, client, tokens, probe):
    assert client.patch(f"/api/v1/models/{probe}", json={"request_timeout": 2}).json()["request_timeout"] == 2
    time.sleep(0.1)
    started = time.monotonic()
    with ThreadPoolExecutor(4) as pool:
        stuck = pool.submit(call, portal, probe, {"x": 1, "sleep": 20}, tokens["serving"])
        time.sleep(0.5)  # the runner is busy with it: these wait in its queue
        queued = [pool.submit(call, portal, probe, {"x": i}, tokens["serving"]) for i in range(3)]
        slow = stuck.result()
        behind = [answer.result() for answer in queued]
    assert slow.status_code == 504 and slow.json() == {
        "detail": "The model did not answer within 2 s; its runner was stopped and is being restarted.",
        "code": "timeout",
    }
    assert time.monotonic() - started < 8
    # Queued behind the stuck call, they are answered by the restarted runner, not 502.
    assert [(a.status_code, a.json()["y"]) for a in behind] == [(200, 0), (200, 2), (200, 4)]
    after = call(portal, probe, {"x": 3}, tokens["serving"])
    assert after.status_code == 200 and after.json()["y"] == 6
    client.patch(f"/api/v1/models/{probe}", json={"request_timeout": None})


def test_calls_that_time_out_waiting_behind_others_leave_the_runner_working(portal, client, tokens, probe):
    """More calls at once than the model answers in time: each one that timed out waiting
    killed the runner, which was answering another call (lost with it), and restarted it
    cold; the calls queued behind were then run for callers long gone."""
    settings = {"request_timeout": 2, "max_replicas": 1}
    assert client.patch(f"/api/v1/models/{probe}", json=settings).status_code == 200
    wait_for_runners(client, probe, 1)
    time.sleep(2.5)  # the host samples the runners' counts every second
    (before,) = runners(client, probe)
    with ThreadPoolExecutor(6) as pool:  # 1.5 s each, one at a time: the second ends at 3 s
        answers = list(
            pool.map(lambda x: call(portal, probe, {"x": x, "sleep": 1.5}, tokens["serving"]), range(6))
        )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 504, 504, 504, 504, 504], [a.text for a in answers]
    assert all("waited behind other calls" in a.json()["detail"] for a in answers if a.status_code == 504)
    after = call(portal, probe, {"x": 7}, tokens["serving"])  # the same runner, warm
    assert after.status_code == 200
    assert {a.json()["runner"] for a in answers if a.status_code == 200} == {after.json()["runner"]}
    time.sleep(2.5)  # the host samples the runners' counts every second
    (now,) = runners(client, probe)
    assert now["pid"] == before["pid"]
    # The first two ran (the second past its caller's timeout), then this one: the four
    # whose callers had hung up were never run.
    assert now["requests"] - before["requests"] == 3
    client.patch(f"/api/v1/models/{probe}", json={"request_timeout": None, "max_replicas": None})


def wait_for_runners(client, model_hash, count, timeout=20):
    deadline = time.monotonic() + timeout
    while len(runners(client, model_hash)) != count and time.monotonic() < deadline:
        time.sleep(0.3)
    assert len(runners(client, model_hash)) == count


def test_min_replicas_spread_calls_over_processes(portal, client, tokens, probe):
    client.patch(f"/api/v1/models/{probe}", json={"min_replicas": 2, "max_replicas": 2})
    call(portal, probe, {"x": 1}, tokens["serving"])
    wait_for_runners(client, probe, 2)  # the host starts the minimum of a model in use
    time.sleep(0.6)  # web processes read the runners' sockets again
    # Calls at the same time go to both (one after another, they stay on one: test_aio).
    with ThreadPoolExecutor(4) as pool:
        answers = list(
            pool.map(lambda i: call(portal, probe, {"x": i, "sleep": 0.2}, tokens["serving"]), range(8))
        )
    assert len({answer.json()["runner"] for answer in answers}) == 2
    client.patch(f"/api/v1/models/{probe}", json={"min_replicas": 1, "max_replicas": 1})
    wait_for_runners(client, probe, 1)


def test_replicas_follow_the_load(portal, client, tokens, probe):
    client.patch(f"/api/v1/models/{probe}", json={"max_replicas": 2})
    # Four callers, each call holding its runner 30 ms: one runner is busy all the time,
    # so the host adds the second; the calls see it answer (bounded: 30 s at most).
    deadline = time.monotonic() + 30
    answered_by: set[str] = set()
    failures: list[int] = []

    def caller() -> None:
        while time.monotonic() < deadline and len(answered_by) < 2:
            answer = call(portal, probe, {"x": 1, "sleep": 0.03}, tokens["serving"])
            if answer.status_code == 200:
                answered_by.add(answer.json()["runner"])
            else:
                failures.append(answer.status_code)

    with ThreadPoolExecutor(4) as threads:
        list(threads.map(lambda _: caller(), range(4)))
    assert failures == [] and len(answered_by) == 2
    # Quiet for NEOMARIL_REPLICA_IDLE_SECONDS (3 s here): the second replica leaves.
    wait_for_runners(client, probe, 1)
    assert call(portal, probe, {"x": 2}, tokens["serving"]).json()["y"] == 4
    client.patch(f"/api/v1/models/{probe}", json={"max_replicas": 1})


def test_health_and_runner_status(portal, client, tokens, probe):
    call(portal, probe, {"x": 1}, tokens["serving"])
    health = requests.get(
        f"{portal.url}/api/v1/run/{probe}/health",
        headers={"Authorization": f"Bearer {tokens['serving']}"},
        timeout=10,
    ).json()
    assert health["deployed"] is True and health["warm"] is True
    (runner,) = runners(client, probe)
    assert runner["alive"] and runner["memory_bytes"] > 1_000_000 and runner["pid"] > 0


def test_inputs_are_recorded(portal, client, tokens, probe):
    call(portal, probe, {"x": 77, "tag": "recorded"}, tokens["serving"])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        records = client.get(f"/api/v1/models/{probe}/predictions").json()["results"]
        mine = [r for r in records if '"tag": "recorded"' in r["input"]]
        if mine:
            break
        time.sleep(0.3)
    assert mine, records
    assert mine[0]["status_code"] == 200 and json.loads(mine[0]["output"])["y"] == 154
    assert mine[0]["latency_ms"] > 0


def test_disabled_model_is_409_and_its_runners_stop(portal, client, tokens):
    files = probe_files()
    model_hash = client.deploy(group="serving", files=files, name="to disable")
    assert call(portal, model_hash, {"x": 1}, tokens["serving"]).status_code == 200
    client.post(f"/api/v1/models/{model_hash}/disable")
    refused = call(portal, model_hash, {"x": 1}, tokens["serving"])
    assert refused.status_code == 409 and "Disabled" in refused.json()["detail"]
    deadline = time.monotonic() + 10
    while runners(client, model_hash) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert runners(client, model_hash) == []
