"""Registrations that race: one made while the previous one's validation runs, and two
first registrations at once (two tabs, a retried request). Real threads and the real
database; no environment is built and no sandbox runs (the validation's two slow steps
are stand-ins the test holds and lets go)."""

from __future__ import annotations

import contextlib
import itertools
import json
import threading
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from models_app import tasks as model_tasks
from models_app.runtime import orphans
from monitors import services, tasks
from monitors.models import Monitor
from tests.helpers.clients import api_client
from tests.helpers.monitors import configuration, form_data, registration_form

pytestmark = pytest.mark.django_db(transaction=True)

WAIT = 20  # seconds a step waits for the other thread before the test fails


class Step:
    """A point of a validation that the test holds until it lets it go."""

    def __init__(self) -> None:
        self.reached = threading.Event()
        self.go = threading.Event()

    def hold(self) -> None:
        self.reached.set()
        if not self.go.wait(WAIT):
            raise AssertionError("the test never let this step go")

    def wait_reached(self) -> None:
        assert self.reached.wait(WAIT), "the step was never reached"


def in_thread(work: Callable[[], object], results: dict, key: str) -> threading.Thread:
    def run() -> None:
        try:
            results[key] = work()
        except BaseException as exc:  # reported by the test's assertions
            results[key] = exc
        finally:
            connection.close()  # this thread's own

    thread = threading.Thread(target=run, name=f"test-{key}")
    thread.start()
    return thread


def register(model, user, input_cols: list[str]) -> Monitor:
    form = registration_form(model, configuration(InputCols=input_cols))
    assert form.is_valid(), form.errors
    return services.register(model, user, form)


@pytest.mark.parametrize("held_in", ["environment", "harness"])
def test_a_registration_made_while_the_last_one_validates_gets_its_own_verdict(
    cast, model, queued, monkeypatch, tmp_path, held_in
):
    """A's preprocess raises (a bug); while its validation is in `held_in`, B (fixed) is
    registered and its validation starts. A then fails: B must still end Validated with
    its own reference, log and environment, in a folder of its own."""
    a_step, b_step = Step(), Step()
    environments = itertools.count()
    harness_calls: list[str] = []
    folders: dict[str, Path] = {}

    def prepare_environment(python_version, requirements, log, timings=None):
        name = "env-a" if next(environments) == 0 else "env-b"  # A's comes first
        if name == "env-a" and held_in == "environment":
            a_step.hold()
        return tmp_path / name, None

    def run_harness(monitor, python, folder, spec, log, *, read_only):
        who = "A" if monitor.input_cols == ["a"] else "B"
        harness_calls.append(who)
        folders[who] = folder
        if who == "A":
            (folder / "a-was-here").write_text("A's scratch")
            log("[preprocess] importing version A")
            if held_in == "harness":
                a_step.hold()
            raise tasks.MonitoringFailed("ValueError: a bug in version A of the preprocess")
        b_step.hold()
        out = {
            "inputs": {"a": list(range(50)), "b": list(range(50))},
            "outputs": {"pred": [0, 1] * 25},
            "rows": 50,
            "date_range": None,
        }
        (folder / tasks.OUT_FILE).write_text(json.dumps(out))
        log("[preprocess] version B parsed the example")
        return {}

    monkeypatch.setattr(model_tasks, "prepare_environment", prepare_environment)
    monkeypatch.setattr(tasks, "_run_harness", run_harness)
    results: dict = {}
    a = register(model, cast.owner, ["a"])
    try:
        thread_a = in_thread(lambda: tasks.validate_monitor(a.pk), results, "A")
        a_step.wait_reached()
        b = register(model, cast.owner, ["a", "b"])
        assert b.pk == a.pk
        thread_b = in_thread(lambda: tasks.validate_monitor(b.pk), results, "B")
        b_step.wait_reached()
        if held_in == "harness":
            assert folders["A"] != folders["B"]
            assert (folders["A"] / "a-was-here").exists(), "B's start wiped A's running sandbox"
        a_step.go.set()
        thread_a.join(WAIT)
        # A's run is over while B's runs: nothing of A's on B's row.
        assert results["A"] == tasks.REPLACED
        during = Monitor.objects.get(pk=a.pk)
        assert (during.get_status_display(), during.error_message, during.env_fingerprint) == (
            "Validating",
            "",
            "env-b",
        )
        assert "version A" not in during.log
    finally:
        a_step.go.set()
        b_step.go.set()
    thread_b.join(WAIT)
    assert results["B"] == "Validated"
    monitor = Monitor.objects.get(pk=a.pk)
    assert (monitor.status, monitor.error_message, monitor.env_fingerprint) == ("Validated", "", "env-b")
    assert sorted(monitor.reference["inputs"]) == ["a", "b"]
    assert (
        "version B parsed the example" in monitor.log
        and "Validated: the reference has 50 rows" in monitor.log
    )
    assert "version A" not in monitor.log and monitor.log.count("Validating the monitoring") == 1
    # A stopped before its sandbox once it was replaced; each run removed its own folder.
    assert harness_calls == (["B"] if held_in == "environment" else ["A", "B"])
    assert not any(folder.exists() for folder in folders.values())


def test_a_validation_task_runs_only_the_registration_it_claimed(cast, model, queued, monkeypatch):
    """Right after A's task claimed A, B is registered and B's task claims B: A's task must
    not go on as B's run (same attempt number, same row)."""
    validated: list[list[str]] = []

    def validate(monitor, log):
        validated.append(monitor.input_cols)
        return {"inputs": {}, "outputs": {}, "rows": 0, "date_range": None}

    claim = Monitor.claim.__func__
    replaced: list[Monitor] = []

    def claim_then_replaced(cls, pk, **kwargs):
        claimed = claim(cls, pk, **kwargs)
        if claimed and not replaced:
            replaced.append(register(model, cast.owner, ["a", "b"]))
            assert claim(
                cls, pk, waiting="Unvalidated", attempts=F("attempts") + 1, host="node-b"
            )  # B's task
        return claimed

    monkeypatch.setattr(tasks, "_validate", validate)
    monkeypatch.setattr(Monitor, "claim", classmethod(claim_then_replaced))
    first = register(model, cast.owner, ["a"])
    assert tasks.validate_monitor(first.pk) == tasks.REPLACED
    assert validated == []
    monitor = Monitor.objects.get(pk=first.pk)
    assert (monitor.status, monitor.host, monitor.attempts, monitor.input_cols) == (
        "Running",
        "node-b",
        1,
        ["a", "b"],
    )


def test_recovery_stops_a_stale_validation_and_removes_its_folder(cast, model, queued, monkeypatch):
    """The folder is that run's alone: the re-run gets its own (attempt 2)."""
    stopped: list = []
    monkeypatch.setattr(orphans, "kill_oneshots_in", lambda folder: stopped.append(folder) or 0)
    monitor = register(model, cast.owner, ["a"])
    old = timezone.now() - timedelta(hours=1)
    Monitor.objects.filter(pk=monitor.pk).update(status="Running", heartbeat_at=old, attempts=1)
    monitor.refresh_from_db()
    first = monitor.sandbox_folder
    first.mkdir(parents=True)
    assert tasks.recover_stale() == 1
    monitor.refresh_from_db()
    assert monitor.status == "Unvalidated" and stopped == [first] and not first.exists()
    Monitor.objects.filter(pk=monitor.pk).update(attempts=2)
    monitor.refresh_from_db()
    assert monitor.sandbox_folder != first and monitor.sandbox_folder.parent == first.parent


def test_a_validation_lost_with_another_node_has_its_folder_removed_by_the_node_recovering_it(
    cast, model, queued, monkeypatch
):
    """The folder is on the shared disk: only the processes are the lost node's to stop.
    Left by a node killed mid-validation, it stayed for good."""
    from groups import nodes

    stopped: list = []
    monkeypatch.setattr(orphans, "kill_oneshots_in", lambda folder: stopped.append(folder) or 0)
    monkeypatch.setattr(nodes, "live_worker_hosts", lambda: {tasks.HOST})
    monitor = register(model, cast.owner, ["a"])
    old = timezone.now() - timedelta(hours=1)
    Monitor.objects.filter(pk=monitor.pk).update(
        status="Running", heartbeat_at=old, attempts=1, host="node-b"
    )
    monitor.refresh_from_db()
    monitor.sandbox_folder.mkdir(parents=True)
    assert tasks.recover_stale() == 1
    monitor.refresh_from_db()
    assert monitor.status == "Unvalidated" and "It ran on node-b" in monitor.log
    assert stopped == []  # node-b's processes are not this node's to stop
    Monitor.objects.filter(pk=monitor.pk).update(attempts=1)
    monitor.refresh_from_db()
    assert not monitor.sandbox_folder.exists()


def test_two_first_registrations_at_once_are_one_then_the_other(cast, model, queued, monkeypatch):
    """Both requests looked for the model's registration before either had stored one: on
    PostgreSQL both inserted, and one answered 500 (the model's monitor is unique). Now the
    second waits for the first and registers again, as if it had come later. (SQLite takes
    its write lock at BEGIN, so there the two never overlapped.)"""
    saves = threading.Barrier(2, timeout=2)
    save = Monitor.save

    def save_together(monitor, *args, **kwargs):
        # Without a lock both get here before either inserts; with it, the second waits
        # for the first's commit and the first's wait gives up.
        with contextlib.suppress(threading.BrokenBarrierError):
            saves.wait()
        save(monitor, *args, **kwargs)

    monkeypatch.setattr(Monitor, "save", save_together)
    clients = {"first": api_client(cast.owner), "second": api_client(cast.teammate)}
    columns = {"first": ["a"], "second": ["a", "b"]}
    results: dict = {}

    def post(key: str):
        data, files = form_data(configuration(InputCols=columns[key]))
        return clients[key].post(f"/api/v1/monitoring/{model.hash}", {**data, **files}, format="multipart")

    threads = [in_thread(lambda key=key: post(key), results, key) for key in clients]
    for thread in threads:
        thread.join(WAIT)
    answers = {key: results[key] for key in clients}
    assert all(getattr(answer, "status_code", answer) == 202 for answer in answers.values()), answers
    bodies = sorted((answer.json() for answer in answers.values()), key=lambda body: body["registered_at"])
    monitor = Monitor.objects.get(model=model)
    # The later registration is the model's; the earlier one was replaced, as in sequence.
    assert (monitor.input_cols, monitor.status) == (bodies[1]["input_cols"], "Unvalidated")
    registered = [datetime.fromisoformat(body["registered_at"]) for body in bodies]
    assert registered[0] < registered[1] == monitor.registered_at
    assert [call.args for call in queued.call_args_list] == [
        ("monitors.tasks.validate_monitor", monitor.pk)
    ] * 2
