"""The one background-job mechanism (groups.jobs), on both kinds of job that use it.

Transactional: a log writer's thread writes through its own database connection.
"""

from __future__ import annotations

import importlib
import os
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import OperationalError, transaction
from django.utils import timezone
from prometheus_client import REGISTRY

from executions import tasks as execution_tasks
from executions.models import Execution
from groups import jobs, nodes
from models_app import services as model_services
from models_app import tasks as build_tasks
from models_app.models import MLModel, ModelBuild

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def model(cast) -> MLModel:
    return MLModel.objects.create(
        name="jobs",
        group=cast.group,
        operation=MLModel.Operation.ASYNC,
        model_reference="score",
        python_version="3.11",
        input_type=MLModel.InputType.CSV,
        source_file="app.py",
        model_file="model.pkl",
        requirements_file="requirements.txt",
        status=MLModel.Status.BUILDING,
    )


def _build(model: MLModel, number: int = 1, **fields) -> ModelBuild:
    return ModelBuild.objects.create(model=model, number=number, **fields)


def _running_build(model: MLModel) -> ModelBuild:
    """A build its worker has claimed: a JobLog writes only while its run owns the job."""
    return _build(model, status=ModelBuild.Status.RUNNING)


def _long_ago() -> timezone.datetime:
    return timezone.now() - timedelta(minutes=10)


def _wait_for(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _locked_for(monkeypatch, times: int) -> dict:
    """ModelBuild.append_log fails `times` times as a locked SQLite database does."""
    state = {"left": times}
    real = ModelBuild.append_log

    def append_log(self, chunk, **kwargs):
        if state["left"]:
            state["left"] -= 1
            raise OperationalError("database is locked")
        return real(self, chunk, **kwargs)

    monkeypatch.setattr(ModelBuild, "append_log", append_log)
    return state


# ----------------------------------------------------------------------- claim, settle


def test_a_job_is_claimed_once_and_settled_only_by_the_run_that_owns_it(model):
    build = _build(model)
    assert ModelBuild.claim(build.pk, waiting=ModelBuild.Status.QUEUED) is True
    assert ModelBuild.claim(build.pk, waiting=ModelBuild.Status.QUEUED) is False  # delivered twice
    build.refresh_from_db()
    assert build.status == ModelBuild.Status.RUNNING and build.started_at == build.heartbeat_at

    execution = Execution.objects.create(model=model, number=1, input_file="in.csv", input_size=3)
    assert not Execution.claim(
        execution.pk, waiting=Execution.Status.REQUESTED, where={"queued_at__isnull": False}
    )
    Execution.objects.filter(pk=execution.pk).update(queued_at=timezone.now())
    assert Execution.claim(execution.pk, waiting=Execution.Status.REQUESTED, attempts=1)
    execution.refresh_from_db()
    assert execution.status == Execution.Status.RUNNING and execution.attempt == 1

    Execution.objects.filter(pk=execution.pk).update(attempts=2)  # recovery re-ran it meanwhile
    assert execution.settle(Execution.Status.SUCCEEDED) is False
    assert build.settle(ModelBuild.Status.SUCCEEDED) is True
    build.refresh_from_db()
    assert build.status == ModelBuild.Status.SUCCEEDED and build.finished_at is not None
    assert build.settle(ModelBuild.Status.FAILED) is False  # already over


def _sample(name: str, **labels) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_settled_jobs_duration_is_observed_once_its_outcome_is_committed(model):
    labels = {"kind": "model_build", "state": "Succeeded"}
    count, total = (_sample(f"neomaril_job_duration_seconds_{part}", **labels) for part in ("count", "sum"))
    build = _build(model)
    assert ModelBuild.claim(build.pk, waiting=ModelBuild.Status.QUEUED)
    build.refresh_from_db()
    build.started_at -= timedelta(seconds=42)
    with transaction.atomic():
        assert build.settle(ModelBuild.Status.SUCCEEDED)
        assert _sample("neomaril_job_duration_seconds_count", **labels) == count  # not committed yet
    assert _sample("neomaril_job_duration_seconds_count", **labels) == count + 1
    assert 42 <= _sample("neomaril_job_duration_seconds_sum", **labels) - total < 52
    assert build.settle(ModelBuild.Status.SUCCEEDED) is False  # over: nothing observed
    assert _sample("neomaril_job_duration_seconds_count", **labels) == count + 1


# -------------------------------------------------------------------------- the log


def test_a_locked_database_does_not_stop_a_build_logs_heartbeat(model, monkeypatch):
    """The bug: one failed flush ended a build log's thread, so its heartbeat stopped and
    recovery re-queued a build that was still running."""
    build = _build(model)
    ModelBuild.claim(build.pk, waiting=ModelBuild.Status.QUEUED)
    build.refresh_from_db()
    locked = _locked_for(monkeypatch, times=3)
    monkeypatch.setattr(build_tasks, "STALE_BUILD_SECONDS", 1)
    with jobs.JobLog(build, flush_every=0.05, beat_every=0.1) as log:
        log("Python 3.11; 2 requirement(s).")
        _wait_for(lambda: "2 requirement(s)" in ModelBuild.objects.get(pk=build.pk).log)
        assert locked["left"] == 0  # written on the fourth try, not lost
        ModelBuild.objects.filter(pk=build.pk).update(heartbeat_at=_long_ago())
        _wait_for(lambda: ModelBuild.objects.get(pk=build.pk).heartbeat_at > _long_ago())  # still beating
        assert build_tasks.recover_stale_builds() == 0
        log("Environment ready.")
    build.refresh_from_db()
    assert build.status == ModelBuild.Status.RUNNING
    lines = build.log.splitlines()
    assert len(lines) == 2 and lines[0].endswith("Python 3.11; 2 requirement(s).")
    assert lines[1].endswith("Environment ready.")


def test_the_last_flush_is_retried_on_a_locked_database(model, monkeypatch):
    build = _running_build(model)
    monkeypatch.setattr(jobs, "FINAL_FLUSH_PAUSE", 0)
    locked = _locked_for(monkeypatch, times=jobs.FINAL_FLUSH_TRIES - 1)
    with jobs.JobLog(build, flush_every=3600) as log:  # only the last flush writes
        log("Build succeeded: model deployed.")
    assert locked["left"] == 0
    assert ModelBuild.objects.get(pk=build.pk).log.endswith(" Build succeeded: model deployed.\n")


def test_a_database_locked_for_good_fails_the_last_flush_loudly(model, monkeypatch):
    build = _running_build(model)
    monkeypatch.setattr(jobs, "FINAL_FLUSH_PAUSE", 0)
    _locked_for(monkeypatch, times=jobs.FINAL_FLUSH_TRIES)
    with pytest.raises(OperationalError), jobs.JobLog(build, flush_every=3600) as log:
        log("never written")


def test_a_capped_log_keeps_its_head_and_tail(model):
    build = _running_build(model)
    megabyte = "x" * (1024 * 1024)
    with jobs.JobLog(build, max_chars=2 * 1024 * 1024, tail_lines=3, flush_every=3600) as log:
        log(f"head {megabyte}")
        for i in range(10):
            log(f"line {i} {megabyte}")
    lines = ModelBuild.objects.get(pk=build.pk).log.splitlines()
    assert len(lines) == 5 and lines[0].split()[2] == "head"
    assert lines[1] == (  # 10 past the cap, 3 of them shown: 7 left out
        "[... 7 line(s) of output not kept: the log is limited to 2 MB; the last 3 follow ...]"
    )
    assert [line.split()[3] for line in lines[2:]] == ["7", "8", "9"]
    # The tail's lines are cut: 3 lines of a megabyte would take the log past its limit.
    assert all(len(line) < 4200 and line.endswith("more characters]") for line in lines[2:])


def test_a_capped_log_keeps_the_order_lines_were_written_in(model):
    build = _running_build(model)
    with jobs.JobLog(build, max_chars=100, tail_lines=2, flush_every=3600) as log:
        log("first " + "x" * 40)
        log("too long for what is left " + "y" * 60)
        log("short")  # fits in the head's room, but came after the cut
        log("The model process ended.")
    lines = ModelBuild.objects.get(pk=build.pk).log.splitlines()
    assert lines[0].split(" ", 2)[2].startswith("first ")
    assert lines[1] == (
        "[... 1 line(s) of output not kept: the log is limited to 100 characters; the last 2 follow ...]"
    )
    assert [line.split(" ", 2)[2] for line in lines[2:]] == ["short", "The model process ended."]


def test_a_run_recovery_took_over_writes_no_more_lines_nor_beats(model):
    """Its worker froze, recovery ran the execution again, then the worker came back: its
    lines went on into attempt 2's log (its verdict too), and its beats hid attempt 2's."""
    execution = Execution.objects.create(
        model=model, number=1, input_file="in.csv", input_size=3, queued_at=timezone.now()
    )
    assert Execution.claim(execution.pk, waiting=Execution.Status.REQUESTED, attempts=1)
    execution.refresh_from_db()
    with jobs.JobLog(execution, flush_every=3600) as log:
        log("attempt 1 starts")
        log.flush()
        # Recovery re-queued it and attempt 2 claimed it.
        Execution.objects.filter(pk=execution.pk).update(
            attempts=2, log="attempt 2 starts\n", heartbeat_at=_long_ago()
        )
        log("attempt 1 goes on")
        log("Execution failed: killed by SIGKILL")
    row = Execution.objects.get(pk=execution.pk)
    assert row.log == "attempt 2 starts\n"
    assert row.heartbeat_at < timezone.now() - timedelta(minutes=5)
    log.flush()  # a beat, nothing pending
    assert Execution.objects.get(pk=execution.pk).heartbeat_at == row.heartbeat_at


def _outcome_of(model, work, **kwargs):
    build = _running_build(model)
    with jobs.JobLog(build, flush_every=3600) as log:
        outcome = log.outcome_of("build", work, failed=lambda reason: {"failed": reason}, **kwargs)
    return outcome, ModelBuild.objects.get(pk=build.pk).log


def test_a_jobs_work_that_returns_is_its_outcome_told_by_its_line(model):
    outcome, log = _outcome_of(
        model, lambda: {"rows": 3}, succeeded=lambda done: f"Done: {done['rows']} rows."
    )
    assert outcome == {"rows": 3} and log.endswith("Done: 3 rows.\n")


def test_a_job_failed_for_its_user_keeps_the_reason_as_it_is(model):
    def work():
        raise jobs.JobFailed("the input has no rows")

    outcome, log = _outcome_of(model, work, succeeded=lambda done: "never said")
    assert outcome == {"failed": "the input has no rows"}
    assert "Build failed: the input has no rows" in log and "never said" not in log


def test_a_crash_of_the_platforms_code_still_ends_the_job_naming_the_error(model, caplog):
    def work():
        raise KeyError("reference")

    outcome, log = _outcome_of(model, work)
    assert outcome == {"failed": "Internal error: KeyError: 'reference'"}
    assert "Internal error while running the build:\nTraceback" in log and "in work" in log
    assert "crashed" in caplog.text  # and the server's log has it for the operators


def test_a_long_reason_is_cut_to_what_the_row_keeps(model):
    def work():
        raise jobs.JobFailed("x" * (jobs.MAX_ERROR_CHARS + 10))

    outcome, _log = _outcome_of(model, work)
    assert outcome == {"failed": "x" * jobs.MAX_ERROR_CHARS}


# --------------------------------------------------------------------------- recovery


def _hooks(calls: list):
    def requeue(stale: jobs.StaleJob) -> bool:
        calls.append(("requeue", stale.job.pk, stale.reason, stale.out_of_attempts))
        return bool(stale.rows.update(status=ModelBuild.Status.QUEUED))

    def give_up(stale: jobs.StaleJob) -> bool:
        calls.append(("give_up", stale.job.pk, stale.reason, stale.out_of_attempts))
        return bool(stale.rows.update(status=ModelBuild.Status.FAILED))

    return {"requeue": requeue, "give_up": give_up}


def test_a_stale_job_is_requeued_once_then_given_up(model):
    first = _build(model, 1, status="Running", heartbeat_at=_long_ago())
    second = _build(model, 2, status="Running", heartbeat_at=None, recovered=True)  # never beat
    _build(model, 3, status="Running", heartbeat_at=timezone.now())  # alive
    _build(model, 4, status="Queued", heartbeat_at=_long_ago())  # not running
    calls: list = []
    assert jobs.recover_stale(ModelBuild.objects.all(), stale_after=90, **_hooks(calls)) == 2
    reason = "The worker running this job stopped (no heartbeat for 90 s)."
    assert sorted(calls) == [("give_up", second.pk, reason, True), ("requeue", first.pk, reason, False)]


def test_recoveries_are_counted_by_kind_and_outcome(model):
    def recovered(outcome: str) -> float:
        return _sample("neomaril_jobs_recovered_total", kind="model_build", outcome=outcome)

    before = recovered("requeued"), recovered("failed")
    _build(model, 1, status="Running", heartbeat_at=_long_ago())
    _build(model, 2, status="Running", heartbeat_at=_long_ago(), recovered=True)
    assert jobs.recover_stale(ModelBuild.objects.all(), stale_after=90, **_hooks([])) == 2
    assert (recovered("requeued"), recovered("failed")) == (before[0] + 1, before[1] + 1)


def test_a_job_that_may_not_run_again_is_given_up_at_once(model):
    build = _build(model, status="Running", heartbeat_at=_long_ago())
    calls: list = []

    def examine(job):
        return "It ran on another node.", False

    assert jobs.recover_stale(ModelBuild.objects.all(), stale_after=90, examine=examine, **_hooks(calls)) == 1
    assert calls == [("give_up", build.pk, "It ran on another node.", False)]


def test_a_job_whose_heartbeat_comes_back_meanwhile_is_left_alone(model):
    build = _build(model, status="Running", heartbeat_at=_long_ago())
    calls: list = []

    def examine(job):  # e.g. while recovery looks for its leftover process
        ModelBuild.objects.filter(pk=job.pk).update(heartbeat_at=timezone.now())
        return "stopped?", True

    assert jobs.recover_stale(ModelBuild.objects.all(), stale_after=90, examine=examine, **_hooks(calls)) == 0
    assert ModelBuild.objects.get(pk=build.pk).status == ModelBuild.Status.RUNNING


def test_builds_and_executions_recover_through_the_one_function(model, monkeypatch):
    seen = []
    real = jobs.recover_stale

    def spy(queryset, **kwargs):
        seen.append(queryset.model)
        return real(queryset, **kwargs)

    monkeypatch.setattr(jobs, "recover_stale", spy)
    _build(model, status="Running", heartbeat_at=_long_ago())
    execution = Execution.objects.create(
        model=model,
        number=1,
        input_file="in.csv",
        input_size=3,
        status="Running",
        attempts=1,
        heartbeat_at=_long_ago(),
        host=execution_tasks.HOST,
    )
    assert build_tasks.recover_stale_builds() == 1
    assert execution_tasks.recover_stale_executions() == 1
    assert seen == [ModelBuild, Execution]
    model.refresh_from_db()
    assert model.status == MLModel.Status.READY and model.builds.get(number=2).recovered
    execution.refresh_from_db()
    assert execution.status == Execution.Status.REQUESTED and "Re-queued (attempt 2)" in execution.log


# ------------------------------------------------------------------------ lost tasks


@pytest.fixture
def redis_broker(settings):
    """The broker that hands a task out once (lost_after is then the kind's own delay)."""
    cluster = {key: value for key, value in settings.Q_CLUSTER.items() if key not in ("orm", "poll")}
    settings.Q_CLUSTER = {**cluster, "redis": "redis://127.0.0.1:1/0"}


def test_a_task_is_lost_after_the_delay_or_past_the_orm_brokers_own_redelivery(settings):
    delay = timedelta(minutes=10)
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "orm": "default", "retry": 1900}
    assert jobs.lost_after(delay) == timedelta(seconds=1900) + jobs.ORM_REDELIVERY_MARGIN
    assert jobs.lost_after(timedelta(hours=1)) == timedelta(hours=1)
    cluster = {key: value for key, value in settings.Q_CLUSTER.items() if key != "orm"}
    settings.Q_CLUSTER = {**cluster, "redis": "redis://127.0.0.1:1/0"}
    assert jobs.lost_after(delay) == delay


def _queued(model: MLModel, number: int, minutes_ago: float, **fields) -> ModelBuild:
    return _build(model, number, queued_at=timezone.now() - timedelta(minutes=minutes_ago), **fields)


def test_a_waiting_job_is_sent_again_once_its_task_is_overdue(model, redis_broker):
    def redispatched() -> float:
        return _sample("neomaril_jobs_recovered_total", kind="model_build", outcome="redispatched")

    before = redispatched()
    lost = _queued(model, 1, 11)
    _queued(model, 2, 9)  # may still be waiting for a worker
    _queued(model, 3, 60, status="Running")  # started: its task was not lost
    _build(model, 4)  # never enqueued (no queued_at): nothing to send again
    sent: list[ModelBuild] = []

    def redispatch() -> int:
        return jobs.redispatch_lost(
            ModelBuild.objects.select_related("model"),
            waiting=ModelBuild.Status.QUEUED,
            send=sent.append,
            after=timedelta(minutes=10),
        )

    assert redispatch() == 1
    assert [build.pk for build in sent] == [lost.pk]
    lost.refresh_from_db()
    assert timezone.now() - lost.queued_at < timedelta(seconds=5)
    assert "Its task, enqueued 11 min ago, has not started" in lost.log and lost.heartbeat_at is None
    assert redispatched() == before + 1
    assert redispatch() == 0  # stamped again: the next try is one delay later


@pytest.mark.parametrize(
    "held, resent",
    [
        (0, [2]),  # no task waits anywhere: the one enqueued 2 min ago was lost with a node
        (3, []),  # others wait: it may be behind them (the kind's delay applies)
        (None, []),  # the broker can't say
    ],
)
def test_a_waiting_job_whose_task_no_queue_holds_is_sent_again_after_a_minute(
    model, redis_broker, monkeypatch, held, resent
):
    monkeypatch.setattr(nodes, "tasks_held", lambda: held)
    builds = {minutes: _queued(model, number, minutes) for number, minutes in ((1, 0.5), (2, 2))}
    sent: list[ModelBuild] = []
    jobs.redispatch_lost(ModelBuild.objects.all(), waiting="Queued", send=sent.append)
    assert [build.pk for build in sent] == [builds[minutes].pk for minutes in resent]


def test_a_job_sent_again_by_another_housekeeping_pass_meanwhile_is_not_sent_twice(
    model, redis_broker, monkeypatch
):
    build = _queued(model, 1, 11)
    real_stamp = jobs.stamp

    def other_pass_first() -> str:  # between this pass's read and its update
        ModelBuild.objects.filter(pk=build.pk).update(queued_at=timezone.now())
        return real_stamp()

    monkeypatch.setattr(jobs, "stamp", other_pass_first)
    sent: list = []
    assert jobs.redispatch_lost(ModelBuild.objects.all(), waiting="Queued", send=sent.append) == 0
    assert sent == []


def test_a_lost_build_is_enqueued_again_after_the_delay_and_not_before(cast, monkeypatch):
    model = MLModel.objects.create(
        name="lost", group=cast.group, model_reference="score", python_version="3.11", status="Ready"
    )
    queued: list = []  # what reaches the broker
    monkeypatch.setattr(model_services, "async_task", lambda *args, **kwargs: queued.append((args, kwargs)))
    build = model_services.queue_build(model, cast.owner)
    first = (("models_app.tasks.build_model", build.pk), {"task_name": f"build-{model.hash}-1"})
    assert queued == [first] and build.queued_at is not None

    def queued_ago(delay: timedelta) -> None:
        ModelBuild.objects.filter(pk=build.pk).update(queued_at=timezone.now() - delay)

    delay = jobs.lost_after(jobs.REDISPATCH_AFTER)  # with this test run's broker, ORM or Redis
    queued_ago(delay - timedelta(seconds=30))
    assert build_tasks.housekeeping()["redispatched_builds"] == 0
    queued_ago(delay + timedelta(seconds=30))
    assert build_tasks.housekeeping()["redispatched_builds"] == 1
    assert queued == [first, first]


def test_a_build_delivered_twice_runs_once(cast, monkeypatch):
    model = MLModel.objects.create(
        name="twice", group=cast.group, model_reference="score", python_version="3.11", status="Ready"
    )
    build = _build(model, queued_at=timezone.now())
    runs: list = []

    def fake_build(model, log, timings):
        runs.append(model.pk)
        raise build_tasks.BuildFailed("no environment in this test")

    monkeypatch.setattr(build_tasks, "_build", fake_build)
    assert build_tasks.build_model(build.pk) == "failed"
    assert build_tasks.build_model(build.pk) == "already handled"  # the redispatched duplicate
    assert runs == [model.pk]


def test_jobs_waiting_before_the_upgrade_get_their_creation_as_queue_time(cast, model):
    """The migrations that add queued_at: a job already waiting (maybe with a lost task)
    is sent again one delay after it was created, not never."""
    from django.apps import apps

    from monitors.models import Monitor, Period
    from tests.helpers.monitors import deployed_model, reference_run
    from tests.helpers.training import make_experiment
    from training.models import TrainingRun

    waiting_build, done_build = _build(model, 1), _build(model, 2, status="Succeeded")
    run = TrainingRun.objects.create(
        experiment=make_experiment(cast.group),
        number=1,
        name="r",
        training_type="Custom",
        python_version="3.9",
    )
    reference = reference_run(cast.group)
    monitor = Monitor.objects.create(
        model=deployed_model(cast.group, reference), training_run=reference, period="Day"
    )
    period = Period.objects.create(monitor=monitor, kind="Day", start=timezone.now(), end=timezone.now())
    for migration in (
        "models_app.migrations.0010_modelbuild_queued_at",
        "training.migrations.0002_trainingrun_queued_at",
        "monitors.migrations.0002_queued_at_and_continuation",
    ):
        importlib.import_module(migration).stamp_waiting(apps, None)
    for job in (waiting_build, done_build, run, monitor, period):
        job.refresh_from_db()
    assert waiting_build.queued_at == waiting_build.created_at and done_build.queued_at is None
    assert run.queued_at == run.requested_at
    assert monitor.queued_at == monitor.registered_at and period.queued_at == period.requested_at


# ------------------------------------------------------------------------ housekeeping


def test_housekeeping_runs_every_step_even_when_one_fails():
    def broken():
        raise RuntimeError("disk on fire")

    report = jobs.run_steps("test", {"first": broken, "second": lambda: 7})
    assert report == {"first": "error: RuntimeError: disk on fire", "second": 7}


def test_models_housekeeping_is_guarded(monkeypatch):
    def broken():
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(build_tasks, "recover_stale_builds", broken)
    assert build_tasks.housekeeping() == {
        "recovered_builds": "error: RuntimeError: disk on fire",
        "redispatched_builds": 0,
        "sent_deferred_jobs": 0,
        "purged_predictions": 0,
        "revoked_login_tokens": 0,
        "removed_smoke_folders": 0,
        "measured_group_storage": 0,
    }


def test_a_smoke_tests_folder_left_by_a_killed_worker_is_removed_once_no_build_can_own_it(settings):
    folder = settings.UPLOAD_TMP_DIR
    old, fresh = folder / "smoke-left", folder / "smoke-running"
    for made in (old, fresh):
        made.mkdir()
        (made / "sample.csv").write_text("a,b\n1,2\n")
    long_ago = time.time() - settings.Q_CLUSTER["timeout"] - 601
    os.utime(old, (long_ago, long_ago))
    assert build_tasks.remove_stale_smoke_folders() == 1
    assert not old.exists() and (fresh / "sample.csv").exists()  # a build may still be using it


# ------------------------------------------------------------------------- output rule


@pytest.mark.parametrize(
    "returned,message",
    [
        (None, "returned None, not a file path"),
        ("", "returned '', not a file path"),
        ("/etc/hostname", "returned an absolute path outside data_path."),
        ("missing.csv", "'<data_path>/missing.csv', but there is no such file"),
        ("sub", "'<data_path>/sub', which is a directory, not a file"),
        ("escape.csv", "'<data_path>/escape.csv', which is a symlink pointing outside data_path"),
        ("input.csv", "returned the input file 'input.csv' itself"),
        ("./sub/../input.csv", "returned the input file 'input.csv' itself"),
    ],
)
def test_the_output_rule_refuses_saying_why(tmp_path, returned, message):
    (tmp_path / "input.csv").write_text("a\n1\n")
    (tmp_path / "sub").mkdir()
    os.symlink("/etc/hostname", tmp_path / "escape.csv")
    with pytest.raises(jobs.BadOutput) as excinfo:
        jobs.check_output(returned, tmp_path, "input.csv")
    assert message in str(excinfo.value) and "data_path" in str(excinfo.value)


def _refusal(returned: str, folder: Path) -> str:
    with pytest.raises(jobs.BadOutput) as excinfo:
        jobs.check_output(returned, folder, "input.csv")
    return str(excinfo.value)


def test_the_output_rule_names_no_server_folder(tmp_path):
    # Any group-token holder reads an execution's error: paths are named from <data_path>/.
    data = tmp_path / "var" / "executions" / "M1" / "8"
    data.mkdir(parents=True)
    (data / "sub").mkdir()
    (data / "out").symlink_to(tmp_path / "var")  # a folder outside data_path
    (data / "loop.csv").symlink_to(data / "loop.csv")
    (tmp_path / "leak.txt").write_text("x")
    rule = "It must return the path of a file it wrote inside data_path."
    expected = {
        str(data / "missing.csv"): "'<data_path>/missing.csv', but there is no such file.",
        str(data.resolve() / "sub"): "'<data_path>/sub', which is a directory, not a file.",
        f"{data}/sub/../../leak.txt": "'<data_path>/sub/../../leak.txt', which is outside data_path.",
        "../../../../../leak.txt": "'<data_path>/../../../../../leak.txt', which is outside data_path.",
        str(tmp_path / "leak.txt"): "an absolute path outside data_path.",
        "out/executions": "'<data_path>/out/executions', which goes through a symlink pointing outside data_path.",
        "loop.csv": "'<data_path>/loop.csv', which can't be resolved (a symlink loop).",
    }
    for returned, message in expected.items():
        refusal = _refusal(returned, data)
        assert refusal == f"The entrypoint returned {message} {rule}"
        assert str(tmp_path) not in refusal and str(tmp_path.resolve()) not in refusal


def test_the_output_rule_says_a_symlink_inside_data_path_points_outside(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "leak.txt").write_text("x")
    (data / "leak.txt").symlink_to(tmp_path / "leak.txt")
    for returned in ("leak.txt", str(data / "leak.txt")):
        assert _refusal(returned, data) == (
            "The entrypoint returned '<data_path>/leak.txt', which is a symlink pointing outside "
            "data_path. It must return the path of a file it wrote inside data_path."
        )


def test_the_output_rule_accepts_a_new_file_by_absolute_or_relative_path(tmp_path):
    (tmp_path / "input.csv").write_text("a\n1\n")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "out.csv").write_text("a,pred\n1,0\n")
    expected = (tmp_path / "results" / "out.csv").resolve()
    assert jobs.check_output("results/out.csv", tmp_path, "input.csv") == expected
    assert jobs.check_output(str(tmp_path / "results" / "out.csv"), tmp_path, "input.csv") == expected
    assert isinstance(expected, Path)


# ------------------------------------------------------------- copying out of a sandbox


def test_copy_regular_file_copies_a_file_under_root(tmp_path):
    (tmp_path / "out" / "deep").mkdir(parents=True)
    (tmp_path / "out" / "deep" / "a.csv").write_text("x\n1\n")
    target = tmp_path / "kept.csv"
    assert jobs.copy_regular_file(tmp_path / "out" / "deep" / "a.csv", target, tmp_path / "out") == 4
    assert target.read_text() == "x\n1\n"


@pytest.mark.parametrize("link", ["file", "folder"])
def test_copy_regular_file_follows_no_link(tmp_path, link):
    secret = tmp_path / "platform"
    secret.mkdir()
    (secret / "a.csv").write_text("secret")
    root = tmp_path / "out"
    root.mkdir()
    if link == "file":
        (root / "a.csv").symlink_to(secret / "a.csv")
        source, message = root / "a.csv", "a.csv can't be kept: it is not a regular file"
    else:
        (root / "deep").symlink_to(secret)
        source, message = root / "deep" / "a.csv", "deep/a.csv can't be kept: "
    with pytest.raises(jobs.NotKept, match=message):
        jobs.copy_regular_file(source, tmp_path / "kept.csv", root)
    assert not (tmp_path / "kept.csv").exists()
