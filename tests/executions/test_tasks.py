"""The execution task with the real runner in a child process (stdlib user code, no uv).

Transactional: the task's log thread writes through its own database connection.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import psutil
import pytest
from django.core.checks import run_checks
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from executions import services, tasks
from executions.models import Execution
from groups import jobs, nodes
from models_app import services as model_services
from models_app.models import EXECUTION_TASK_MARGIN, MLModel
from models_app.runtime import oneshot, sandbox
from tests.helpers.clients import api_client, token_client
from tests.helpers.executions import BASE_PYTHON, CSV, SOURCE, submit
from tests.helpers.uploads import file

pytestmark = pytest.mark.django_db(transaction=True)


def _run(caller, model, **kwargs) -> Execution:
    response = submit(caller, model, **kwargs)
    assert response.status_code == 202, response.json()
    execution = Execution.objects.get(model=model, number=response.json()["execution_id"])
    assert execution.queued_at is not None  # dispatched on commit
    tasks.run_execution(execution.pk)
    execution.refresh_from_db()
    return execution


def test_success_writes_the_result_and_records_everything(caller, deploy):
    model = deploy()
    execution = _run(caller, model, name="clientes março.csv")
    assert execution.status == "Succeeded", execution.log
    assert execution.output_file == "output.csv"
    result = (execution.folder / "output.csv").read_text().splitlines()
    assert result[0] == "radius,texture,seen_name,api_key_ok,home_ok,cwd_ok,model_path_ok,platform_leak"
    # inputFileName is the uploaded name; .env values present; HOME and cwd are data_path;
    # model_path is the model's folder; none of the platform's own variables leak in.
    assert result[1] == "14.1,19.3,clientes março.csv,True,True,True,True,False"
    assert len(result) == 3
    assert execution.output_size == (execution.folder / "output.csv").stat().st_size
    assert execution.started_at and execution.finished_at and execution.duration.total_seconds() > 0
    assert execution.attempts == 1 and execution.timeout == 1200 and execution.host == tasks.HOST
    assert "[model] scoring 2 rows of clientes março.csv" in execution.log
    assert "[model] a warning on stderr" in execution.log
    assert "Execution succeeded: output.csv" in execution.log
    assert "s3cr3t-value" not in execution.log
    assert execution.input_path.read_text() == CSV  # kept: the record of what the model was given


def test_a_task_delivered_twice_runs_once(caller, deploy):
    execution = _run(caller, deploy())
    assert tasks.run_execution(execution.pk) == "already handled"
    execution.refresh_from_db()
    assert execution.attempts == 1


def test_user_code_that_raises_fails_with_its_traceback(caller, deploy):
    execution = _run(caller, deploy("explode"))
    assert execution.status == "Failed"
    assert execution.error_message == "The entrypoint raised ZeroDivisionError: division by zero"
    assert "[model] about to fail" in execution.log
    assert "Traceback from the model:" in execution.log
    line = SOURCE.splitlines().index("    return 1 / x") + 1
    assert f'app.py", line {line}, in helper' in execution.log and "return 1 / x" in execution.log
    assert execution.output_file == "" and execution.output_size is None


@pytest.mark.parametrize(
    "entrypoint,message",
    [
        ("returns_none", "it returned a NoneType"),
        ("returns_number", "it returned a int"),
        ("returns_outside", "returned an absolute path outside data_path."),
        ("returns_missing", "returned '<data_path>/nothing-here.csv', but there is no such file"),
        ("returns_directory", "returned '<data_path>/sub', which is a directory, not a file"),
        ("returns_input", "returned the input file 'input.csv' itself"),
        ("returns_escaping_symlink", "'<data_path>/link.csv', which is a symlink pointing outside data_path"),
    ],
)
def test_a_bad_return_value_fails_saying_why(caller, deploy, entrypoint, message):
    execution = _run(caller, deploy(entrypoint))
    assert execution.status == "Failed"
    assert message in execution.error_message
    assert "data_path" in execution.error_message
    # Any group-token holder reads it: neither the execution's nor the model's folder is named.
    for folder in (execution.folder, execution.model.folder):
        assert str(folder.parent) not in execution.error_message
        assert str(folder.resolve().parent) not in execution.error_message
    assert f"Execution failed: {execution.error_message}" in execution.log


def test_a_relative_path_inside_data_path_is_accepted(caller, deploy):
    execution = _run(caller, deploy("returns_relative"))
    assert execution.status == "Succeeded", execution.log
    assert execution.output_file == "results/scores.json" and execution.output_size == len('{"ok": true}')


def test_an_output_path_longer_than_the_record_holds_fails_saying_why(caller, deploy):
    execution = _run(caller, deploy("returns_deep"))
    assert execution.status == "Failed"
    assert "a path of 1213 characters inside data_path; at most 1024 are kept" in execution.error_message


def test_the_model_cannot_change_remove_or_move_its_input(caller, deploy):
    execution = _run(caller, deploy("rewrites_input"))
    assert execution.status == "Succeeded", execution.log
    # write, unlink, rename, chmod: all refused (a read-only mount over the file itself)
    assert (execution.folder / "tried.txt").read_text() == ",".join(["OSError"] * 4)
    assert execution.input_path.read_text() == CSV
    assert (
        caller.get(f"/api/v1/run/{execution.model.hash}/executions/{execution.number}/input").status_code
        == 200
    )


def test_an_outcome_the_database_refuses_fails_the_execution_instead_of_leaving_it_running(
    caller, deploy, monkeypatch
):
    from django.db import DataError

    real_update = jobs.Job._settle_retrying
    refused = []

    def refuse_the_result(self, **changes):
        if changes.get("status") == "Succeeded":
            refused.append(changes)
            raise DataError("value too long for type character varying(1024)")
        return real_update(self, **changes)

    monkeypatch.setattr(jobs.Job, "_settle_retrying", refuse_the_result)
    execution = _run(caller, deploy())
    assert refused and execution.status == "Failed"
    assert execution.error_message == (
        "Internal error: the outcome could not be saved: value too long for type character varying(1024)"
    )
    assert execution.finished_at is not None


def test_a_locked_database_when_the_outcome_is_saved_is_waited_out(caller, deploy, monkeypatch):
    from django.db import OperationalError
    from django.db.models import QuerySet

    monkeypatch.setattr(jobs, "FINAL_FLUSH_PAUSE", 0.01)
    real_update = QuerySet.update
    locked = []

    def locked_twice(queryset, **changes):
        if queryset.model is Execution and changes.get("status") == "Succeeded" and len(locked) < 2:
            locked.append(1)
            raise OperationalError("database is locked")
        return real_update(queryset, **changes)

    monkeypatch.setattr(QuerySet, "update", locked_twice)
    execution = _run(caller, deploy())
    assert len(locked) == 2 and execution.status == "Succeeded"


def test_timeout_per_model_stops_the_run(caller, deploy):
    execution = _run(caller, deploy("sleeps", execution_timeout=1))
    assert execution.status == "Failed"
    assert execution.error_message == "The execution timed out after 1 s and was stopped."
    assert execution.timeout == 1 and execution.duration < timedelta(seconds=15)
    assert "[model] sleeping" in execution.log


def test_timeout_is_capped_below_the_task_timeout(deploy, settings):
    model = deploy(execution_timeout=100_000)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 600}
    assert services.effective_timeout(model) == 600 - EXECUTION_TASK_MARGIN
    model.execution_timeout = None
    settings.EXECUTION_TIMEOUT = 45
    assert services.effective_timeout(model) == 45


def _in_thread(func):
    """`func` for a thread of its own: Django gives each thread a connection, closed here."""

    def run(*args):
        try:
            return func(*args)
        finally:
            connection.close()

    return run


def _runner_of(execution: Execution, timeout: float = 20) -> psutil.Process:
    folder = os.path.realpath(execution.folder)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for proc in psutil.Process().children(recursive=True):
            try:
                if proc.cwd() == folder and "oneshot" in proc.cmdline():
                    return proc
            except psutil.NoSuchProcess:
                continue
        time.sleep(0.05)
    raise AssertionError("the runner never started")


def test_killing_the_runner_fails_the_execution_with_a_clear_message(caller, deploy):
    model = deploy("sleeps")
    response = submit(caller, model)
    execution = Execution.objects.get(model=model, number=response.json()["execution_id"])
    worker = threading.Thread(target=_in_thread(tasks.run_execution), args=[execution.pk])
    worker.start()
    _runner_of(execution).send_signal(signal.SIGKILL)
    worker.join(30)
    execution.refresh_from_db()
    assert execution.status == "Failed"
    assert execution.error_message == (
        "The model process was killed by SIGKILL (out of memory?) before returning a result."
    )


def test_deleting_the_model_stops_its_running_execution(caller, cast, deploy, monkeypatch):
    monkeypatch.setattr(oneshot, "_STOP_CHECK_INTERVAL", 0.2)
    model = deploy("sleeps")
    response = submit(caller, model)
    execution = Execution.objects.get(model=model, number=response.json()["execution_id"])
    worker = threading.Thread(target=_in_thread(tasks.run_execution), args=[execution.pk])
    worker.start()
    runner = _runner_of(execution)
    model_services.delete(model, cast.owner)
    worker.join(30)
    execution.refresh_from_db()
    assert execution.status == "Failed"
    assert execution.error_message == "The model was deleted while this execution ran; it was stopped."
    assert not runner.is_running() or runner.status() == psutil.STATUS_ZOMBIE


def test_a_huge_log_keeps_its_head_and_tail(caller, deploy, monkeypatch):
    monkeypatch.setattr(tasks, "MAX_LOG_CHARS", 20_000)
    execution = _run(caller, deploy("chatty"))
    assert execution.status == "Succeeded"
    assert len(execution.log) < 60_000
    assert "[model] line 0 " in execution.log and "[model] line 4999 " in execution.log
    assert "line(s) of output not kept" in execution.log
    assert execution.log.rstrip().endswith("Execution succeeded: out.txt (4 bytes).")


def test_disabled_or_deleted_model_fails_its_waiting_executions(caller, cast, deploy):
    model = deploy()
    response = submit(caller, model)
    execution = Execution.objects.get(model=model, number=response.json()["execution_id"])
    model_services.disable(model, cast.owner)
    tasks.run_execution(execution.pk)
    execution.refresh_from_db()
    assert execution.status == "Failed" and "disabled" in execution.error_message

    other = deploy()
    submit(caller, other)
    waiting = Execution.objects.get(model=other)
    Execution.objects.filter(pk=waiting.pk).update(queued_at=None)
    model_services.delete(other, cast.owner)
    done = tasks.housekeeping()
    assert done["failed_for_deleted_models"] == 1 and done["deleted_models_files_removed"] == 1
    waiting.refresh_from_db()
    assert waiting.status == "Failed" and "deleted" in waiting.error_message
    assert not (waiting.folder.parent).exists()


# ----------------------------------------------------------------------- concurrency


def test_slots_per_model_and_in_all(caller, deploy, settings):
    settings.EXECUTION_CONCURRENCY_PER_MODEL = 2
    settings.EXECUTION_CONCURRENCY_TOTAL = 3
    settings.EXECUTION_CONCURRENCY_PER_GROUP = 3  # one group may hold them all
    first, second = deploy(), deploy()
    for model in (first, first, first, second, second):
        assert submit(caller, model).status_code == 202

    def queued(model):
        return sorted(
            model.executions.filter(status="Requested", queued_at__isnull=False).values_list(
                "number", flat=True
            )
        )

    assert queued(first) == [1, 2] and queued(second) == [1]  # oldest first, 2 per model, 3 in all
    assert services.dispatch() == []  # nothing free

    tasks.run_execution(first.executions.get(number=1).pk)  # finishing frees a slot...
    assert queued(first) == [2, 3] and queued(second) == [1]  # ...taken by the oldest that may have it
    for pk in first.executions.filter(number__in=[2, 3]).values_list("pk", flat=True):
        tasks.run_execution(pk)
    assert queued(second) == [1, 2]
    assert first.executions.filter(status="Succeeded").count() == 3


def _files_under(folder) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


def test_an_execution_keeps_its_input_and_result_not_what_else_it_wrote(caller, deploy):
    """Only the input and the result are read again (downloads, monitoring); scratch files
    took the group's disk until retention."""
    model = deploy("writes_scratch")
    execution = _run(caller, model)
    assert execution.status == "Succeeded", execution.log
    assert execution.output_file == "results/scores.csv"
    assert _files_under(execution.folder) == ["input.csv", "results", "results/scores.csv"]
    assert execution.output_path.read_text() == "score\n0.5\n"

    failed = _run(caller, model, name="fail.csv")
    assert failed.status == "Failed", failed.log
    assert _files_under(failed.folder) == ["fail.csv"]


def test_a_freed_slot_goes_to_the_group_holding_the_fewest(cast, caller, deploy, settings):
    """One member's flood held every slot until all of it had run, while another group's one
    execution waited behind it (first come, first served across groups)."""
    settings.EXECUTION_CONCURRENCY_PER_MODEL = 2
    settings.EXECUTION_CONCURRENCY_TOTAL = 3
    settings.EXECUTION_CONCURRENCY_PER_GROUP = 3  # no slot kept for another group
    first, second, theirs = deploy(), deploy(), deploy()
    MLModel.objects.filter(pk=theirs.pk).update(group=cast.other_group)
    for model in (first, second) * 4:
        assert submit(caller, model).status_code == 202
    assert submit(token_client(cast.other_token), theirs).status_code == 202

    def queued(model):
        return sorted(model.executions.filter(queued_at__isnull=False).values_list("number", flat=True))

    assert (queued(first), queued(second), queued(theirs)) == ([1, 2], [1], [])
    tasks.run_execution(first.executions.get(number=1).pk)
    # The other group holds no slot: its execution, submitted last, goes before the flood's.
    assert (queued(first), queued(second), queued(theirs)) == ([1, 2], [1], [1])
    tasks.run_execution(theirs.executions.get(number=1).pk)
    assert (queued(first), queued(second)) == ([1, 2], [1, 2])  # the flood's oldest then
    assert theirs.executions.get().status == "Succeeded"


def test_slots_alternate_between_groups_that_both_wait(cast, caller, deploy, settings):
    settings.EXECUTION_CONCURRENCY_PER_MODEL = 3
    settings.EXECUTION_CONCURRENCY_TOTAL = 4
    ours, theirs = deploy(), deploy()
    MLModel.objects.filter(pk=theirs.pk).update(group=cast.other_group)
    settings.EXECUTION_CONCURRENCY_TOTAL = 0  # everything waits until both groups have submitted
    for _ in range(4):
        submit(caller, ours)
    for _ in range(4):
        submit(token_client(cast.other_token), theirs)
    settings.EXECUTION_CONCURRENCY_TOTAL = 4
    services.dispatch()
    assert ours.executions.filter(queued_at__isnull=False).count() == 2
    assert theirs.executions.filter(queued_at__isnull=False).count() == 2


def test_a_group_leaves_a_slot_for_the_next_group_by_default(cast, caller, deploy, settings):
    """Holding every slot, a group made another group's execution wait for one of its
    own to end, up to its timeout."""
    settings.EXECUTION_CONCURRENCY_PER_MODEL = 2
    settings.EXECUTION_CONCURRENCY_TOTAL = 3
    assert settings.EXECUTION_CONCURRENCY_PER_GROUP == 0  # the default: all but one
    first, second, theirs = deploy(), deploy(), deploy()
    MLModel.objects.filter(pk=theirs.pk).update(group=cast.other_group)
    for model in (first, second) * 2:
        assert submit(caller, model).status_code == 202
    ours = Execution.objects.filter(model__in=[first, second])
    assert ours.filter(queued_at__isnull=False).count() == 2  # the third slot stays free
    assert services.dispatch() == []

    assert submit(token_client(cast.other_token), theirs).status_code == 202
    assert theirs.executions.get().queued_at is not None  # at once, not after one of ours

    settings.EXECUTION_CONCURRENCY_PER_GROUP = 1
    tasks.run_execution(ours.filter(queued_at__isnull=False).earliest("pk").pk)
    assert ours.filter(queued_at__isnull=False, status="Requested").count() == 1  # its slot stays free


def test_a_group_may_hold_one_slot_when_there_is_one(settings):
    settings.EXECUTION_CONCURRENCY_TOTAL = 1
    assert services.group_slot_limit() == 1
    settings.EXECUTION_CONCURRENCY_TOTAL = 5
    assert services.group_slot_limit() == 4
    settings.EXECUTION_CONCURRENCY_PER_GROUP = 5
    assert services.group_slot_limit() == 5


def test_a_task_without_a_slot_does_not_run(caller, deploy, settings):
    settings.EXECUTION_CONCURRENCY_TOTAL = 1
    model = deploy()
    submit(caller, model)
    submit(caller, model)
    waiting = model.executions.get(number=2)
    assert waiting.queued_at is None
    assert tasks.run_execution(waiting.pk) == "already handled"  # e.g. a stale duplicate task


def test_a_lost_task_is_enqueued_again_after_the_delay_and_not_before(caller, deploy, monkeypatch):
    model = deploy()
    submit(caller, model)
    queued = []  # what reaches the broker, whichever it is (ORM or Redis)
    monkeypatch.setattr(services, "async_task", lambda *args, **kwargs: queued.append((args, kwargs)))
    delay = jobs.lost_after(services.REDISPATCH_AFTER)  # past the ORM broker's own re-delivery
    Execution.objects.filter(model=model).update(queued_at=timezone.now() - delay + timedelta(seconds=30))
    assert tasks.housekeeping()["redispatched"] == 0
    long_ago = timezone.now() - delay - timedelta(seconds=1)
    Execution.objects.filter(model=model).update(queued_at=long_ago)
    assert tasks.housekeeping()["redispatched"] == 1
    execution = Execution.objects.get(model=model)
    assert queued == [
        (("executions.tasks.run_execution", execution.pk), {"task_name": f"execution-{model.hash}-1"})
    ]
    assert execution.queued_at > long_ago


# -------------------------------------------------------------------------- recovery


def _fake_orphan(execution: Execution) -> subprocess.Popen:
    """A runner left behind by a dead worker: waiting in the execution's folder, own group."""
    return subprocess.Popen(
        [str(BASE_PYTHON), "-s", str(sandbox.RUNNER_PATH), "oneshot"],
        stdin=subprocess.PIPE,
        cwd=execution.folder,
        start_new_session=True,
    )


def _make_stale(execution: Execution, **fields) -> None:
    old = timezone.now() - timedelta(minutes=5)
    Execution.objects.filter(pk=execution.pk).update(
        status="Running", started_at=old, heartbeat_at=old, host=tasks.HOST, **fields
    )


def test_a_stale_execution_is_rerun_once_then_failed(caller, deploy):
    model = deploy()
    submit(caller, model)
    execution = model.executions.get()
    _make_stale(execution, attempts=1)
    (execution.folder / "partial.csv").write_text("half")
    orphan = _fake_orphan(execution)
    try:
        result = tasks.housekeeping()
        assert result["recovered_executions"] == 1
        assert orphan.wait(10) == -signal.SIGKILL  # its leftover model process was stopped
    finally:
        if orphan.poll() is None:
            orphan.kill()
    execution.refresh_from_db()
    assert execution.status == "Requested" and execution.queued_at is not None  # dispatched again
    assert sorted(p.name for p in execution.folder.iterdir()) == ["input.csv"]
    assert "The worker running this execution stopped" in execution.log
    assert (
        f"has been stopped (pid {orphan.pid})" in execution.log and "Re-queued (attempt 2)" in execution.log
    )

    assert tasks.run_execution(execution.pk) == "Succeeded"
    execution.refresh_from_db()
    assert execution.attempts == 2 and execution.status == "Succeeded"

    _make_stale(execution, attempts=2)
    tasks.housekeeping()
    execution.refresh_from_db()
    assert execution.status == "Failed" and execution.finished_at
    assert "already been re-run once" in execution.error_message


def _workers_on(monkeypatch, *hosts: str | None) -> None:
    """The hosts the broker says run a worker (None: it can't say)."""
    live = None if hosts == (None,) else set(hosts)
    monkeypatch.setattr(nodes, "live_worker_hosts", lambda: live)


def test_a_stale_execution_of_a_node_with_a_live_worker_is_left_to_that_node(caller, deploy, monkeypatch):
    model = deploy()
    submit(caller, model)
    execution = model.executions.get()
    _make_stale(execution, attempts=1)
    Execution.objects.filter(pk=execution.pk).update(host="another-node")
    _workers_on(monkeypatch, tasks.HOST, "another-node")
    assert tasks.recover_stale_executions() == 0
    execution.refresh_from_db()
    assert execution.status == "Running"  # that node stops its leftover process, then re-queues


def test_a_stale_execution_of_a_node_without_workers_is_rerun_here(caller, deploy, monkeypatch):
    # Node A stopped (or lost) while running it: its model process died with its worker.
    model = deploy()
    submit(caller, model)
    execution = model.executions.get()
    _make_stale(execution, attempts=1)
    Execution.objects.filter(pk=execution.pk).update(host="another-node")
    (execution.folder / "partial.csv").write_text("half")
    _workers_on(monkeypatch, tasks.HOST)
    assert tasks.recover_stale_executions() == 1
    execution.refresh_from_db()
    assert execution.status == "Requested" and execution.queued_at is not None
    assert "It ran on another-node, where no worker is running any more" in execution.log
    assert sorted(p.name for p in execution.folder.iterdir()) == ["input.csv"]
    assert tasks.run_execution(execution.pk) == "Succeeded"


def test_a_stale_execution_of_another_node_is_failed_when_the_broker_cannot_say(caller, deploy, monkeypatch):
    model = deploy()
    submit(caller, model)
    execution = model.executions.get()
    _make_stale(execution, attempts=1)
    Execution.objects.filter(pk=execution.pk).update(host="another-node")
    _workers_on(monkeypatch, None)
    tasks.recover_stale_executions()
    execution.refresh_from_db()
    assert execution.status == "Failed"
    assert "It ran on another-node, so it can't be checked from here" in execution.error_message


def test_a_running_execution_with_a_fresh_heartbeat_is_left_alone(caller, deploy):
    model = deploy()
    submit(caller, model)
    Execution.objects.filter(model=model).update(status="Running", heartbeat_at=timezone.now(), attempts=1)
    assert tasks.recover_stale_executions() == 0


def test_a_late_outcome_of_a_recovered_run_is_discarded(caller, deploy):
    model = deploy()
    submit(caller, model)
    execution = model.executions.get()
    Execution.objects.filter(pk=execution.pk).update(status="Running", attempts=1)
    execution.refresh_from_db()
    Execution.objects.filter(pk=execution.pk).update(attempts=2)  # recovery re-ran it meanwhile
    assert execution.settle("Failed", error_message="late") is False
    execution.refresh_from_db()
    assert execution.status == "Running" and execution.error_message == ""


# ------------------------------------------------------------------------- retention


def test_retention_removes_old_files_and_keeps_the_rows(caller, deploy, settings):
    settings.EXECUTION_RETENTION_DAYS = 7
    model = deploy()
    old, recent, running = (_run(caller, model) for _ in range(3))
    Execution.objects.filter(pk=old.pk).update(finished_at=timezone.now() - timedelta(days=8))
    Execution.objects.filter(pk=recent.pk).update(finished_at=timezone.now() - timedelta(days=6))
    Execution.objects.filter(pk=running.pk).update(
        status="Running", heartbeat_at=timezone.now(), finished_at=timezone.now() - timedelta(days=9)
    )
    assert tasks.housekeeping()["expired_files_removed"] == 1
    old.refresh_from_db()
    assert old.files_removed_at is not None and not old.folder.exists()
    assert old.status == "Succeeded" and old.log  # the record stays
    assert recent.folder.exists() and running.folder.exists()
    assert tasks.purge_expired_files() == 0


def test_stale_temporary_uploads_are_removed(settings, db):
    tmp = settings.UPLOAD_TMP_DIR
    old_file, new_file, other = tmp / "tmpabc.upload.csv", tmp / "tmpdef.upload.csv", tmp / "keep.txt"
    for path in (old_file, new_file, other):
        path.write_text("x")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old_file, (two_days_ago, two_days_ago))
    os.utime(other, (two_days_ago, two_days_ago))
    try:
        assert tasks.remove_stale_upload_files() == 1
        assert not old_file.exists() and new_file.exists() and other.exists()
    finally:
        new_file.unlink(missing_ok=True)
        other.unlink(missing_ok=True)


# ----------------------------------------------------------------- checks, schedule


def test_execution_timeout_must_fit_in_the_task_timeout(settings):
    def ids(**overrides):
        with override_settings(**overrides):
            return {message.id for message in run_checks()}

    task = {**settings.Q_CLUSTER, "timeout": 600, "retry": 700}
    assert "neomaril.E010" in ids(Q_CLUSTER=task, EXECUTION_TIMEOUT=600)
    assert "neomaril.E010" in ids(Q_CLUSTER=task, EXECUTION_TIMEOUT=590)
    assert "neomaril.E010" not in ids(Q_CLUSTER=task, EXECUTION_TIMEOUT=500)


def test_execution_slots_must_leave_a_worker_for_builds(settings):
    def ids(**overrides):
        with override_settings(**overrides):
            return {message.id for message in run_checks()}

    workers = {**settings.Q_CLUSTER, "workers": 4}
    assert "neomaril.E011" in ids(Q_CLUSTER=workers, EXECUTION_CONCURRENCY_TOTAL=4)
    assert "neomaril.E011" not in ids(Q_CLUSTER=workers, EXECUTION_CONCURRENCY_TOTAL=3)


def test_housekeeping_is_scheduled():
    from django.core.management import call_command
    from django_q.models import Schedule

    call_command("migrate", verbosity=0)  # post_migrate creates the schedule (flushed between tests)
    schedule = Schedule.objects.get(name="neomaril-executions-housekeeping")
    assert schedule.func == "executions.tasks.housekeeping" and schedule.minutes == 1
    assert schedule.repeats == -1


def test_model_execution_timeout_is_validated(deploy):
    from django.core.exceptions import ValidationError

    model = deploy()
    model.execution_timeout = 0
    with pytest.raises(ValidationError) as excinfo:
        model.full_clean()
    assert "execution_timeout" in excinfo.value.message_dict
    assert MLModel._meta.get_field("execution_timeout").null


def test_a_failing_dispatch_does_not_fail_the_submission(caller, deploy, monkeypatch):
    def broken():
        raise RuntimeError("broker down")

    monkeypatch.setattr(services, "dispatch", broken)
    model = deploy()
    response = submit(caller, model)
    assert response.status_code == 202 and response.json()["execution_id"] == 1
    assert model.executions.get().queued_at is None  # the minute's housekeeping hands it a slot


def test_housekeeping_runs_every_step_even_when_one_fails(monkeypatch):
    def broken():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tasks, "recover_stale_executions", broken)
    report = tasks.housekeeping()
    assert report["recovered_executions"] == "error: RuntimeError: disk on fire"
    assert report["dispatched"] == 0 and report["expired_files_removed"] == 0


def test_concurrent_submissions_get_distinct_numbers_and_slots_are_never_oversold(deploy, settings):
    settings.EXECUTION_CONCURRENCY_PER_MODEL = 10
    settings.EXECUTION_CONCURRENCY_TOTAL = 3
    settings.EXECUTION_CONCURRENCY_PER_GROUP = 10
    model = deploy()

    def create(i):
        upload = SimpleUploadedFile(f"in{i}.csv", CSV.encode())
        return services.create_execution(model, upload, name=f"in{i}.csv").number

    with ThreadPoolExecutor(8) as pool:
        numbers = list(pool.map(_in_thread(create), range(8)))
        list(pool.map(_in_thread(lambda _: services.dispatch()), range(8)))
    assert sorted(numbers) == list(range(1, 9))
    assert model.executions.filter(queued_at__isnull=False).count() == 3


def test_a_version_with_executions_waiting_or_running_is_not_deleted(caller, cast, deploy, fake_env):
    """Accepted on the run URL while version 2 was live, then version 1 made live again:
    deleting version 2 would stop them (they failed, 'the model was deleted')."""
    model = deploy()
    owner = api_client(cast.owner)
    payload = {
        "model_reference": "score",
        "python_version": "3.11",
        "source": file("app.py", SOURCE),
        "model": file("model.pkl", b"\x80\x04K\x01."),
        "requirements": file("requirements.txt", ""),
    }
    added = owner.post(f"/api/v1/models/{model.hash}/versions", payload, format="multipart")
    assert added.status_code == 201, added.json()
    v2 = MLModel.objects.get(hash=added.json()["hash"])
    MLModel.objects.filter(pk=v2.pk).update(status=MLModel.Status.DEPLOYED, env_fingerprint=fake_env)
    model_services.make_live(model, v2, cast.owner)
    number = submit(caller, model).json()["execution_id"]
    assert caller.get(f"/api/v1/run/{model.hash}/executions/{number}").json()["version"] == 2
    model_services.make_live(model, model, cast.owner)

    refused = owner.delete(f"/api/v1/models/{model.hash}/versions/2")
    assert refused.status_code == 409
    assert refused.json()["detail"] == (
        "Version 2 has 1 execution waiting or running: delete it once it has ended."
    )
    execution = Execution.objects.get(model=model, number=number)
    tasks.run_execution(execution.pk)
    execution.refresh_from_db()
    assert execution.status == "Succeeded", execution.log
    assert owner.delete(f"/api/v1/models/{model.hash}/versions/2").status_code in (200, 204)
