"""Several processes' metrics added up (portal.metrics_dir, prometheus-client's multiprocess
mode): real processes write their files, /metrics reads them all, gunicorn's hooks
prepare the web's folder and retire a dead worker's live gauges."""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from portal import metrics_dir

ROOT = Path(__file__).resolve().parents[2]

# What a web worker does for two calls, and one in flight when it exits.
WEB = """
import os, types
from groups import metrics
model = types.SimpleNamespace(hash="Mmultiv2", model_hash="Mmulti", version=2)
metrics.observe_call(model, 200, 0.003)
metrics.observe_call(model, 200, 0.3)
metrics.model_series(model).call_started()
metrics.publish()
print(os.getpid())
"""
# What a django-q2 worker does when a build settles.
WORKER = """
from groups import metrics
metrics.JOB_SECONDS.labels("model_build", "Succeeded").observe(12.5)
"""


def run(code: str, folder: Path) -> int:
    env = {**os.environ, metrics_dir.ENV: str(folder), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    return int(done.stdout.strip() or 0)


@pytest.fixture
def folders(settings, tmp_path, monkeypatch) -> dict[str, Path]:
    settings.RUN_DIR = tmp_path
    monkeypatch.setenv(metrics_dir.ENV, "set by the test")  # restored afterwards
    return {program: metrics_dir.prepare(program) for program in metrics_dir.PROGRAMS}


def scrape() -> dict[tuple[str, frozenset], float]:
    response = Client().get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert response.status_code == 200, response.content
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


@pytest.mark.django_db
def test_every_process_of_every_program_is_added_up(folders):
    first = run(WEB, folders["web"])
    second = run(WEB, folders["web"])
    run(WORKER, folders["worker"])
    assert first != second
    model = frozenset({"model": "Mmulti", "version": "2"}.items())
    samples = scrape()
    assert samples[("neomaril_model_requests_total", model | {("status", "200")})] == 4
    assert samples[("neomaril_model_request_duration_seconds_count", model)] == 4
    assert samples[("neomaril_model_request_duration_seconds_bucket", model | {("le", "0.005")})] == 2
    assert samples[("neomaril_model_calls_in_flight", model)] == 2
    build = frozenset({"kind": "model_build", "state": "Succeeded"}.items())
    assert samples[("neomaril_job_duration_seconds_sum", build)] == 12.5

    # gunicorn retires a worker that exited: its counts stay, its calls in flight go.
    hooks = runpy.run_path(str(ROOT / "portal" / "gunicorn.conf.py"))
    hooks["child_exit"](None, type("Worker", (), {"pid": first})())
    samples = scrape()
    assert samples[("neomaril_model_requests_total", model | {("status", "200")})] == 4
    assert samples[("neomaril_model_calls_in_flight", model)] == 1


def test_a_program_empties_only_its_own_folder(folders):
    (folders["web"] / "counter_1.db").write_bytes(b"")
    (folders["worker"] / "counter_2.db").write_bytes(b"")
    assert metrics_dir.files() == [
        str(folders["web"] / "counter_1.db"),
        str(folders["worker"] / "counter_2.db"),
    ]
    assert metrics_dir.prepare("worker") == folders["worker"]
    assert os.environ[metrics_dir.ENV] == str(folders["worker"])
    assert metrics_dir.files() == [str(folders["web"] / "counter_1.db")]
    with pytest.raises(ValueError, match="unknown program 'host'"):
        metrics_dir.prepare("host")


def test_gunicorn_prepares_the_webs_folder_before_its_workers_start(folders):
    (folders["web"] / "counter_1.db").write_bytes(b"")
    (folders["worker"] / "counter_2.db").write_bytes(b"")
    hooks = runpy.run_path(str(ROOT / "portal" / "gunicorn.conf.py"))
    hooks["on_starting"](None)
    assert os.environ[metrics_dir.ENV] == str(folders["web"])
    assert metrics_dir.files() == [str(folders["worker"] / "counter_2.db")]
    assert oct(folders["web"].stat().st_mode & 0o777) == "0o700"


def test_an_ipv4_proxy_is_trusted_in_its_ipv4_mapped_form_too(monkeypatch):
    """Bound to "::", uvicorn sees an IPv4 balancer as ::ffff:a.b.c.d and checks that form."""
    from uvicorn.middleware.proxy_headers import _TrustedHosts

    monkeypatch.setenv("NEOMARIL_TRUSTED_PROXIES", "10.0.0.2, 192.168.0.0/16, 2001:db8::1")
    allowed = runpy.run_path(str(ROOT / "portal" / "gunicorn.conf.py"))["forwarded_allow_ips"]
    assert allowed == "10.0.0.2,::ffff:10.0.0.2,192.168.0.0/16,::ffff:192.168.0.0/112,2001:db8::1"
    trusted = _TrustedHosts(allowed)
    assert "::ffff:10.0.0.2" in trusted and "::ffff:192.168.4.5" in trusted and "10.0.0.2" in trusted
    assert "::ffff:10.0.0.3" not in trusted and "::ffff:172.16.0.1" not in trusted
