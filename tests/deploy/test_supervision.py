"""Supervision (deploy/supervisord.conf, started by `make run`): supervisord restarts a
crashed program alone, and no process outlives its parent.

The real stack runs on a loopback port and its programs are killed with SIGKILL while a
bounded client loop keeps calling it. The parent-death signal itself (portal.procs) is
checked in plain processes by tests/portal/test_procs.py.
"""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.helpers.processes import PortalClient, RunningPortal, wait_gone

ECHO_FILES = {
    "source": ("app.py", b"import os\n\ndef score(data, base_path):\n    return {'pid': os.getpid()}\n"),
    "model": ("model.pkl", b"unused"),
    "requirements": ("requirements.txt", b""),
    "schema": ("schema.json", b'{"x": 1}'),
}


# --- the real stack -------------------------------------------------------------------


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    running = RunningPortal(tmp_path_factory.mktemp("supervision"))
    try:
        running.wait_healthy()
        running.wait_programs()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def client(portal):
    return PortalClient(portal)


@pytest.fixture(scope="module")
def model(client):
    token = client.create_group("supervision")
    return client.deploy(group="supervision", files=ECHO_FILES, name="echo"), token


class Caller(threading.Thread):
    """Calls /healthz and the Sync model in a loop (bounded) and records each outcome."""

    def __init__(self, portal: RunningPortal, model: tuple[str, str], limit: float = 120):
        super().__init__(daemon=True)
        self.portal, (self.model_hash, self.token) = portal, model
        self.deadline = time.monotonic() + limit
        self.calls: list[tuple[float, str, bool]] = []  # (when, "health" | "model", answered 200)
        self.done = threading.Event()

    def _call(self, kind: str) -> None:
        try:
            if kind == "health":
                ok = requests.get(f"{self.portal.url}/healthz", timeout=5).status_code == 200
            else:
                ok = (
                    requests.post(
                        f"{self.portal.url}/api/v1/run/{self.model_hash}",
                        json={"x": 1},
                        headers={"Authorization": f"Bearer {self.token}"},
                        timeout=10,
                    ).status_code
                    == 200
                )
        except requests.RequestException:
            ok = False
        self.calls.append((time.monotonic(), kind, ok))

    def run(self) -> None:
        while not self.done.is_set() and time.monotonic() < self.deadline:
            self._call("health")
            self._call("model")
            time.sleep(0.05)

    def __enter__(self) -> Caller:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        self.join(30)

    def failures(self, kind: str) -> list[float]:
        return [when for when, k, ok in self.calls if k == kind and not ok]

    def wait_answered(self, since: float, timeout: float) -> float:
        """Wait until both a health call and a model call made after `since` succeeded."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answered = {k for when, k, ok in self.calls if ok and when > since}
            if answered == {"health", "model"}:
                return time.monotonic() - since
            time.sleep(0.1)
        raise AssertionError(f"no successful calls within {timeout} s after the kill")


def wait_restarted(portal: RunningPortal, name: str, old_pid: int, timeout: float = 30) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        program = portal.programs().get(name)
        if program is not None and program.pid != old_pid:
            return program
        time.sleep(0.1)
    raise AssertionError(f"{name} was not restarted within {timeout} s:\n{portal.log()}")


def kill_program(portal: RunningPortal, model, name: str):
    """SIGKILL one program under client load; return (before, after, caller, its old tree)."""
    before = portal.wait_programs()
    victim = before[name]
    tree = [victim, *victim.children(recursive=True)]
    with Caller(portal, model) as caller:
        caller.wait_answered(since=0, timeout=30)
        killed_at = time.monotonic()
        victim.kill()
        wait_restarted(portal, name, victim.pid)
        caller.wait_answered(since=time.monotonic(), timeout=60)
        back_in = time.monotonic() - killed_at
    after = portal.wait_programs()
    return before, after, caller, tree, back_in


def others(programs: dict, name: str) -> dict[str, int]:
    return {n: p.pid for n, p in programs.items() if n != name}


@pytest.mark.slow
def test_killed_web_is_restarted_and_its_workers_die(portal, model):
    before, after, caller, tree, back_in = kill_program(portal, model, "web")
    assert back_in < 30, back_in
    assert others(after, "web") == others(before, "web")  # worker and model host kept running
    assert len(tree) > 1  # master and its workers
    assert wait_gone(tree, timeout=10) == []  # no old gunicorn worker keeps serving the port


@pytest.mark.slow
def test_killed_worker_is_restarted_leaves_no_orphans_and_takes_new_work(portal, client, model):
    before, after, caller, tree, back_in = kill_program(portal, model, "worker")
    assert back_in < 30, back_in
    assert others(after, "worker") == others(before, "worker")
    assert caller.failures("health") == [] and caller.failures("model") == []  # web never noticed
    # The cluster's top process, its Sentinel, workers, monitor and pusher: all gone.
    assert len(tree) >= 4, tree
    assert wait_gone(tree, timeout=10) == []
    deadline = time.monotonic() + 30
    while len(new_cluster := after["worker"].children(recursive=True)) < len(tree) - 1:
        assert time.monotonic() < deadline, new_cluster
        time.sleep(0.2)
    assert len(new_cluster) >= 4 and not {p.pid for p in new_cluster} & {p.pid for p in tree}
    # The new cluster takes work: a build goes through it.
    client.deploy(group="supervision", files=ECHO_FILES, name="built after the restart", timeout=180)


@pytest.mark.slow
def test_killed_model_host_is_restarted_and_sync_calls_go_on(portal, model):
    before, after, caller, tree, back_in = kill_program(portal, model, "modelhost")
    assert back_in < 30, back_in
    assert others(after, "modelhost") == others(before, "modelhost")
    # /healthz says 503 only while no host answers (the runners are gone with it, so Sync
    # calls could not be served): about a second, fewer than the balancer's 2 failed checks.
    down = caller.failures("health")
    assert not down or max(down) - min(down) < 10, down
    assert wait_gone(tree[:1], timeout=10) == []


@pytest.mark.slow
def test_a_model_host_that_does_not_answer_fails_the_health_check(portal):
    host = portal.wait_programs()["modelhost"]
    assert requests.get(f"{portal.url}/healthz", timeout=10).status_code == 200
    host.suspend()  # hung: its socket still takes connections, nothing answers
    try:
        health = requests.get(f"{portal.url}/healthz", timeout=10)
    finally:
        host.resume()
    assert health.status_code == 503, health.text
    assert health.json()["status"] == "unavailable"
    assert health.json()["checks"]["model_host"] == {
        "ok": False,
        "error": "ConnectionError: The model host did not answer within 2 s.",
    }
    back = requests.get(f"{portal.url}/healthz", timeout=10)
    assert back.status_code == 200 and back.json()["checks"]["model_host"] == {
        "ok": True,
        "ms": back.json()["checks"]["model_host"]["ms"],
        "pid": host.pid,
    }


@pytest.mark.slow
def test_runners_die_with_a_killed_model_host(portal, model):
    model_hash, token = model
    answer = requests.post(
        f"{portal.url}/api/v1/run/{model_hash}",
        json={"x": 1},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    host = portal.wait_programs()["modelhost"]
    # The runner's sandbox (bwrap and the model's interpreter) hangs below the host.
    sandboxes = host.children(recursive=True)
    assert any("runner.py" in " ".join(p.cmdline()) for p in sandboxes), [p.cmdline() for p in sandboxes]
    host.kill()
    wait_restarted(portal, "modelhost", host.pid)
    assert wait_gone(sandboxes, timeout=10) == []


@pytest.mark.slow
def test_no_child_of_make_run_holds_the_admin_password(portal):
    password = portal.admin[1].encode()
    checked = 0
    for proc in portal.wait_tree(8):  # supervisord and everything below it (make itself is the caller's)
        try:
            environ = Path(f"/proc/{proc.pid}/environ").read_bytes()
        except (FileNotFoundError, ProcessLookupError):
            continue
        assert b"NEOMARIL_ADMIN_PASSWORD" not in environ and password not in environ, proc.cmdline()
        checked += 1
    assert checked >= 8  # supervisord, 3 programs, gunicorn workers, the cluster's processes


@pytest.mark.slow
def test_sigterm_to_supervisord_stops_every_process(tmp_path):
    running = RunningPortal(tmp_path / "data")
    try:
        running.wait_healthy()
        running.wait_programs()
        supervisord = running.supervisord()
        tree = running.wait_tree(8)
        assert len(tree) >= 8
        supervisord.send_signal(signal.SIGTERM)  # what a service manager sends to stop it
        running.process.wait(60)
        assert wait_gone(tree, timeout=10) == []
        assert "stopped: web" in running.log() and "stopped: worker" in running.log()
    finally:
        running.stop()
    assert running.survivors == []
