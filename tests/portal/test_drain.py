"""A web told to stop drains first when NEOMARIL_WEB_DRAIN_SECONDS is set
(portal.workers.DrainingServer): /healthz answers 503 "draining" so a load balancer takes
the node out, the rest is still served, and only then does it stop.

The real gunicorn with portal/gunicorn.conf.py on a loopback port and a migrated SQLite
database; the whole stop behind HAProxy is tests/deploy/test_nodes.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.helpers.processes import free_port

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEOMARIL_", "DJANGO_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    return {**env, "NEOMARIL_DATA_DIR": str(data_dir), "WEB_CONCURRENCY": "1", **extra}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("drain")
    migrate = [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"]
    subprocess.run(migrate, cwd=ROOT, env=_env(folder), check=True)
    return folder


def _start(data_dir: Path, drain: str, **extra_env: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    web = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--config", "portal/gunicorn.conf.py", "portal.asgi:application"],
        cwd=ROOT,
        env=_env(data_dir, PORT=str(port), NEOMARIL_WEB_DRAIN_SECONDS=drain, **extra_env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            # Serving: /healthz answers, 503 "unavailable" (no model host runs beside this
            # lone web) until the drain turns it into "draining".
            if requests.get(f"{url}/healthz", timeout=2).json()["status"] == "unavailable":
                return web, url
        except requests.RequestException:
            pass
        assert web.poll() is None and time.monotonic() < deadline, "gunicorn did not start"
        time.sleep(0.2)


def test_a_draining_web_fails_its_health_check_serves_the_rest_then_stops(data_dir):
    web, url = _start(data_dir, "3")
    try:
        told = time.monotonic()
        web.send_signal(signal.SIGTERM)  # to the master, which passes it on to its worker
        time.sleep(0.5)
        health = requests.get(f"{url}/healthz", timeout=5)
        assert (health.status_code, health.json()["status"]) == (503, "draining")
        assert requests.get(f"{url}/api/schema/", timeout=10).status_code == 200  # still serving
        assert web.wait(20) == 0
        assert time.monotonic() - told >= 3
    finally:
        if web.poll() is None:
            web.kill()


def test_without_a_drain_time_a_web_stops_at_once(data_dir):
    web, _ = _start(data_dir, "0")
    told = time.monotonic()
    web.send_signal(signal.SIGTERM)
    assert web.wait(20) == 0
    assert time.monotonic() - told < 3
