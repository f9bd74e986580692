"""`/metrics` of a node started by `make run`: a deployed model's calls (answered by the
web's fast path, in either gunicorn worker), its runner (from the model host), its build
(its duration written by the django-q2 worker, its state read from the database), all in
one scrape from loopback. Traffic stays on loopback."""

from __future__ import annotations

import signal
import subprocess
import time

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.processes import ROOT, PortalClient, RunningPortal, descendants_running

pytestmark = pytest.mark.slow

FILES = {
    "source": ("app.py", b"def score(data, base_path):\n    return {'echo': data}\n"),
    "model": ("model.pkl", b"unused"),
    "requirements": ("requirements.txt", b""),
    "schema": ("schema.json", b'{"x": 1}'),
}


def scrape(url: str, **headers) -> dict[tuple[str, frozenset], float]:
    response = requests.get(f"{url}/metrics", headers=headers, timeout=30)
    assert response.status_code == 200, response.text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def _calls(samples: dict) -> dict:
    return {key: value for key, value in samples.items() if key[0].startswith("neomaril_model_request")}


def test_metrics_of_a_running_node(tmp_path):
    portal = RunningPortal(
        tmp_path / "data", extra_env={"WEB_CONCURRENCY": "2", "NEOMARIL_METRICS_TOKEN": "e2e-metrics-token"}
    )
    try:
        portal.wait_healthy()
        client = PortalClient(portal)
        token = client.create_group("metrics")
        model_hash = client.deploy(group="metrics", files=FILES, timeout=300)
        run = f"{portal.url}/api/v1/run/{model_hash}"
        bearer = {"Authorization": f"Bearer {token}"}
        # A connection each: the kernel spreads them over both gunicorn workers (SO_REUSEPORT).
        for x in range(6):
            assert requests.post(run, json={"x": x}, headers=bearer, timeout=30).status_code == 200
        assert requests.post(run, data=b"{not json", headers=bearer, timeout=30).status_code == 400

        model = frozenset({"model": model_hash, "version": "1"}.items())
        # The other worker's calls reach the scrape within half a second (its publisher
        # thread; docs/observability.md): bounded, 3 s at most.
        for _ in range(30):
            samples = scrape(portal.url)
            if samples.get(("neomaril_model_request_duration_seconds_count", model)) == 7:
                break
            time.sleep(0.1)
        # Whichever worker answers the scrape, it adds up every process's counts.
        for _ in range(4):
            assert _calls(scrape(portal.url)) == _calls(samples)
        assert samples[("neomaril_model_requests_total", model | {("status", "200")})] == 6
        assert samples[("neomaril_model_requests_total", model | {("status", "400")})] == 1
        assert samples[("neomaril_model_request_duration_seconds_count", model)] == 7
        assert samples[("neomaril_model_host_up", frozenset())] == 1
        assert samples[("neomaril_model_runners", model)] == 1  # warmed on deploy
        assert samples[("neomaril_model_runner_memory_bytes", model)] > 0
        build = frozenset({"kind": "model_build", "state": "Succeeded"}.items())
        assert samples[("neomaril_jobs", build)] == 1
        assert samples[("neomaril_job_duration_seconds_count", build)] == 1  # the worker's files
        assert samples[("neomaril_models", frozenset({("status", "Deployed")}))] == 1

        # The token opens them where the networks rule does not (a client forwarded by a
        # proxy nobody declared); a wrong one is refused even from loopback.
        outside = {"X-Forwarded-For": "203.0.113.5"}
        refused = requests.get(f"{portal.url}/metrics", headers=outside, timeout=30)
        assert refused.status_code == 403
        assert scrape(portal.url, **outside, Authorization="Bearer e2e-metrics-token")
        wrong = requests.get(f"{portal.url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=30)
        assert wrong.status_code == 403 and wrong.json()["code"] == "permission_denied"
    finally:
        portal.stop()
    assert portal.survivors == []


def test_a_web_worker_stopped_by_sigterm_keeps_its_last_counts_and_records(tmp_path):
    """A worker publishes its counts and writes its recorded calls every half-second; what
    it held when told to stop must still be published and written (its exit hooks run)."""
    portal = RunningPortal(tmp_path / "data", extra_env={"WEB_CONCURRENCY": "1"})
    try:
        portal.wait_healthy()
        client = PortalClient(portal)
        token = client.create_group("stops")
        model_hash = client.deploy(group="stops", files=FILES, timeout=300)
        gunicorns = descendants_running(portal.process.pid, "gunicorn")
        workers = [p for p in gunicorns if p.ppid() in {g.pid for g in gunicorns}]  # not the master
        assert len(workers) == 1, workers
        with requests.Session() as session:  # one connection, so one worker, answers them all
            for x in range(30):
                answer = session.post(
                    f"{portal.url}/api/v1/run/{model_hash}",
                    json={"x": x},
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=30,
                )
                assert answer.status_code == 200
        workers[0].send_signal(signal.SIGTERM)  # at once: within the half-second
        workers[0].wait(30)
        portal.wait_healthy()  # gunicorn's new worker
        model = frozenset({"model": model_hash, "version": "1"}.items())
        counted = scrape(portal.url).get(("neomaril_model_requests_total", model | {("status", "200")}))
        assert counted == 30
        recorded = subprocess.run(
            [
                str(ROOT / ".venv" / "bin" / "python"),
                "manage.py",
                "shell",
                "-c",
                "from monitoring.models import PredictionRecord; print(PredictionRecord.objects.count())",
            ],
            cwd=ROOT,
            env=portal.env,
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        assert recorded.stdout.strip().splitlines()[-1] == "30"
    finally:
        portal.stop()
