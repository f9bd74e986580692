"""Updating a model under load through `make run`'s processes: zero failed calls.

While callers keep the model's run URL busy, a new version is uploaded, built and goes
live; a broken version fails without ever answering; a rollback puts version 1 back. Every
call answers 200, the answering version changes only at those two moments, and the
per-version URL still reaches version 2 after the rollback. Traffic stays on loopback and
the callers' loops are bounded.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests

from tests.helpers.processes import PortalClient, RunningPortal

pytestmark = pytest.mark.slow

CALLERS = 3


def _files(version: int, *, broken: bool = False) -> dict:
    source = (
        "import a_package_nobody_installed\n\ndef score(data, base_path):\n    return {}\n"
        if broken
        else f"import json\n\ndef score(data, base_path):\n    return {{'version': {version}}}\n"
    )
    return {
        "source": ("app.py", source.encode()),
        "model": ("model.pkl", b"unused"),
        "requirements": ("requirements.txt", b""),
        "schema": ("schema.json", b'{"x": 1}'),
    }


class Load:
    """CALLERS threads calling the run URL (bounded: they stop after `limit` seconds)."""

    def __init__(self, url: str, token: str, limit: float = 600):
        self.url, self.token = url, token
        self.deadline = time.monotonic() + limit
        self.answers: list[tuple[float, int | None, str]] = []  # (sent, version, problem)
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(CALLERS)]

    def _run(self) -> None:
        session = requests.Session()
        while not self.done.is_set() and time.monotonic() < self.deadline:
            version, problem = None, ""
            sent = time.monotonic()  # what a call meets is decided when it is sent
            try:
                response = session.post(
                    self.url, json={"x": 1}, headers={"Authorization": f"Bearer {self.token}"}, timeout=30
                )
                if response.status_code == 200:
                    version = response.json()["version"]
                else:
                    problem = f"{response.status_code} {response.text[:200]}"
            except requests.RequestException as exc:
                problem = repr(exc)
            with self.lock:
                self.answers.append((sent, version, problem))

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.done.set()
        for thread in self.threads:
            thread.join(60)

    def wait_for_version(self, version: int, since: float, timeout: float = 60) -> float:
        """When the earliest call sent after `since` that `version` answered was sent."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                seen = [when for when, v, _ in self.answers if v == version and when > since]
            if seen:
                return min(seen)
            time.sleep(0.05)
        raise AssertionError(f"no call answered from version {version} within {timeout} s")

    def versions_between(self, start: float, end: float) -> set[int | None]:
        with self.lock:
            return {v for when, v, _ in self.answers if start < when < end}

    def answered_after(self, since: float, count: int = 10, timeout: float = 60) -> set[int | None]:
        """The versions that answered the first `count` calls sent after `since` (waiting for them)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                later = [v for when, v, _ in self.answers if when > since]
            if len(later) >= count:
                return set(later[:count])
            time.sleep(0.05)
        raise AssertionError(f"fewer than {count} calls answered within {timeout} s")

    def problems(self) -> list[str]:
        with self.lock:
            return [problem for _, _, problem in self.answers if problem]


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    running = RunningPortal(tmp_path_factory.mktemp("versions"))
    try:
        running.wait_healthy()
        yield running
    finally:
        running.stop()


def test_an_update_under_load_has_no_failed_call_and_rollback_is_one_call(portal):
    client = PortalClient(portal)
    token = client.create_group("versions")
    model = client.deploy(group="versions", files=_files(1), name="updated under load")
    versions = f"/api/v1/models/{model}/versions"

    with Load(f"{portal.url}/api/v1/run/{model}", token) as load:
        load.wait_for_version(1, since=0)

        uploaded = time.monotonic()
        created = client.post(
            versions, data={"model_reference": "score", "python_version": "3.11"}, files=_files(2)
        )
        assert created.status_code == 201, created.text
        assert client.wait_for(f"{versions}/2/status", {"Deployed", "Failed"}, 600)["status"] == "Deployed"
        switched = load.wait_for_version(2, since=uploaded)
        assert load.versions_between(uploaded, switched) <= {1}  # version 1 served the whole build

        broken = client.post(
            versions,
            data={"model_reference": "score", "python_version": "3.11"},
            files=_files(3, broken=True),
        )
        assert broken.status_code == 201, broken.text
        failed_at = time.monotonic()
        assert client.wait_for(f"{versions}/3/status", {"Deployed", "Failed"}, 600)["status"] == "Failed"
        assert load.versions_between(failed_at, time.monotonic()) <= {2}  # the failed one never answered
        assert load.answered_after(time.monotonic()) == {2}

        rolled = time.monotonic()
        response = client.post(f"{versions}/1/live")
        assert response.status_code == 200, response.text
        answered = time.monotonic()
        load.wait_for_version(1, since=rolled, timeout=30)
        assert load.answered_after(answered) == {1}  # every call after the rollback's answer

    assert load.problems() == [], load.problems()[:5]
    assert len(load.answers) > 100
    pinned = requests.post(
        f"{portal.url}/api/v1/run/{model}/versions/2",
        json={"x": 1},
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    assert pinned.status_code == 200 and pinned.json()["version"] == 2
    # Calls are recorded in the background (flushed every half second): wait for both.
    predictions = f"/api/v1/models/{model}/predictions"
    deadline = time.monotonic() + 30
    while True:
        counts = {n: client.get(predictions, params={"version": n}).json()["count"] for n in (1, 2, 3)}
        if (counts[1] and counts[2]) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert counts[1] > 0 and counts[2] > 0, counts
    assert counts[3] == 0, counts  # the failed version never answered
