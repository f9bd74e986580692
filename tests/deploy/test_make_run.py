"""`make run` starts web, worker and model host under supervisord, creates the admin, and `/healthz` answers."""

import os
import time

import pytest
import requests

from tests.helpers.processes import PROGRAMS, RunningPortal

pytestmark = pytest.mark.slow


def test_make_run_starts_everything_and_ctrl_c_stops_it(tmp_path):
    portal = RunningPortal(tmp_path / "data")
    try:
        health = portal.wait_healthy()
        assert health["status"] == "ok"
        assert health["checks"]["database"]["ok"] and health["checks"]["broker"]["ok"]
        # make run hands this pass's backend on (tests/backends.py): PostgreSQL + Redis, or the default.
        on_postgres = os.environ.get("DATABASE_URL", "").startswith("postgres")
        assert health["checks"]["database"]["vendor"] == ("postgresql" if on_postgres else "sqlite")
        broker = "Redis " if os.environ.get("REDIS_URL") else "ORM default"
        assert health["checks"]["broker"]["kind"].startswith(broker), health
        login = requests.post(
            f"{portal.url}/api/v1/auth/login",
            json={"username": "admin", "password": "admin-password-123"},
            timeout=10,
        )
        assert login.status_code == 201, login.text
        token = login.json()["token"]
        created = requests.post(
            f"{portal.url}/api/v1/groups",
            json={"name": "e2e"},
            headers={"Authorization": f"Token {token}"},
            timeout=10,
        )
        assert created.status_code == 201 and created.json()["group_token"].startswith("nmg_")
        page = requests.get(f"{portal.url}/login/", timeout=10)
        assert page.status_code == 200
        css = requests.get(f"{portal.url}/static/css/portal.css", timeout=10)
        assert css.status_code == 200 and "--primary" in css.text  # whitenoise serves static files
        programs = portal.wait_programs()
        assert sorted(programs) == sorted(PROGRAMS), programs
        assert all(f"spawned: '{name}'" in portal.log() for name in PROGRAMS)
        assert "Admin 'admin' created." in portal.log()
        _deploy_through_the_worker(portal.url, token)
        tree = portal.tree()
        assert len(tree) >= 10  # make, supervisord, 3 programs, gunicorn workers, the cluster's processes
    finally:
        portal.stop()
    assert portal.survivors == [], "processes survived Ctrl-C"
    assert "stopped: web" in portal.log() and "stopped: modelhost" in portal.log()


def _deploy_through_the_worker(url: str, token: str) -> None:
    """The django-q2 worker started by `make run` picks up the build and deploys."""
    headers = {"Authorization": f"Token {token}"}
    files = {
        "source": ("app.py", b"def score(data, base_path):\n    return {'echo': data}\n"),
        "model": ("model.pkl", b"unused"),
        "requirements": ("requirements.txt", b""),
        "schema": ("schema.json", b'{"x": 1}'),
    }
    form = {
        "name": "e2e",
        "group": "e2e",
        "operation": "Sync",
        "model_reference": "score",
        "python_version": "3.11",
    }
    created = requests.post(f"{url}/api/v1/models", data=form, files=files, headers=headers, timeout=30)
    assert created.status_code == 201, created.text
    model_hash = created.json()["hash"]
    deadline = time.monotonic() + 120
    status = None
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/api/v1/models/{model_hash}/status", headers=headers, timeout=10).json()
        if status["status"] in ("Deployed", "Failed"):
            break
        time.sleep(0.5)
    logs = requests.get(f"{url}/api/v1/models/{model_hash}/logs", headers=headers, timeout=10).json()["log"]
    assert status and status["status"] == "Deployed", logs
    assert 'Smoke test answer: {"echo": "{\\"x\\": 1}"}' in logs
