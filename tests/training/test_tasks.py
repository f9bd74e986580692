"""The training task's own rules, without user code: recovery, the sandbox's output, checks."""

from __future__ import annotations

import os
from datetime import timedelta
from unittest import mock

import pytest
from django.core.checks import run_checks
from django.db import transaction
from django.utils import timezone

from groups import jobs, nodes, storable_json
from groups.models import Group
from models_app.runtime import oneshot
from tests.helpers.clients import api_client
from tests.helpers.training import make_experiment
from training import services, tasks
from training.models import TrainingRun


def _running(experiment, **fields) -> TrainingRun:
    stale = timezone.now() - timedelta(minutes=10)
    return TrainingRun.objects.create(
        experiment=experiment,
        number=fields.pop("number", 1),
        name="run",
        training_type="Custom",
        status=TrainingRun.Status.RUNNING,
        python_version="3.9",
        started_at=stale,
        heartbeat_at=stale,
        attempts=fields.pop("attempts", 1),
        host=fields.pop("host", tasks.HOST),
        **fields,
    )


def test_a_run_whose_worker_stopped_is_run_again_once_then_failed(cast, django_capture_on_commit_callbacks):
    experiment = make_experiment(cast.group, cast.owner)
    run = _running(
        experiment, train_file="dados.csv", source_file="app.py", requirements_file="requirements.txt"
    )
    run.work_folder.mkdir(parents=True)
    for name in ("dados.csv", "app.py", "requirements.txt", "half-written-plot.png"):
        (run.work_folder / name).write_text("x")
    (run.work_folder / "catboost_info").mkdir()
    os.symlink("/etc", run.work_folder / "link")
    with (
        mock.patch("training.services.async_task") as queued,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert tasks.recover_stale_runs() == 1
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.REQUESTED
    assert "Re-queued (attempt 2)" in run.log
    # The next attempt starts from the uploads alone.
    assert sorted(p.name for p in run.work_folder.iterdir()) == ["app.py", "dados.csv", "requirements.txt"]
    queued.assert_called_once_with(
        "training.tasks.run_training", run.pk, task_name=f"training-{experiment.hash}-1"
    )

    # Claimed again, and its worker stops again: that is the end.
    assert TrainingRun.claim(run.pk, waiting=TrainingRun.Status.REQUESTED, attempts=run.attempts + 1)
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(minutes=10))
    assert tasks.recover_stale_runs() == 1
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED
    assert "already been re-run once" in run.error_message
    assert run.finished_at is not None


def test_a_run_from_another_node_is_failed_when_the_broker_cannot_say_it_stopped(cast, monkeypatch):
    monkeypatch.setattr(nodes, "live_worker_hosts", lambda: None)  # the ORM broker
    run = _running(make_experiment(cast.group, cast.owner), host="node-b")
    assert tasks.recover_stale_runs() == 1
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.FAILED and "It ran on node-b" in run.error_message


def test_a_run_from_another_node_is_left_to_it_while_it_works_then_taken_over(cast, monkeypatch):
    run = _running(make_experiment(cast.group, cast.owner), host="node-b")
    monkeypatch.setattr(nodes, "live_worker_hosts", lambda: {tasks.HOST, "node-b"})
    assert tasks.recover_stale_runs() == 0
    monkeypatch.setattr(nodes, "live_worker_hosts", lambda: {tasks.HOST})  # node-b stopped
    assert tasks.recover_stale_runs() == 1
    run.refresh_from_db()
    assert run.status == TrainingRun.Status.REQUESTED
    assert "It ran on node-b, where no worker is running any more" in run.log


def test_a_live_run_is_left_alone(cast):
    run = _running(make_experiment(cast.group, cast.owner))
    TrainingRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now())
    assert tasks.recover_stale_runs() == 0


def test_a_run_is_claimed_once(cast):
    experiment = make_experiment(cast.group, cast.owner)
    run = TrainingRun.objects.create(
        experiment=experiment,
        number=1,
        name="done",
        training_type="Custom",
        status="Succeeded",
        python_version="3.9",
    )
    assert tasks.run_training(run.pk) == "already handled"


def _requested(experiment) -> TrainingRun:
    return TrainingRun.objects.create(
        experiment=experiment, number=1, name="waiting", training_type="Custom", python_version="3.9"
    )


@pytest.mark.django_db(transaction=True)
def test_a_lost_run_is_enqueued_again_after_the_delay_and_not_before(cast):
    experiment = make_experiment(cast.group, cast.owner)
    run = _requested(experiment)
    with mock.patch("training.services.async_task") as queued:
        with transaction.atomic():
            services.queue_run(run)
        first = mock.call("training.tasks.run_training", run.pk, task_name=f"training-{experiment.hash}-1")
        assert queued.call_args_list == [first]

        delay = jobs.lost_after(jobs.REDISPATCH_AFTER)  # with this test run's broker, ORM or Redis
        TrainingRun.objects.filter(pk=run.pk).update(queued_at=timezone.now() - delay + timedelta(seconds=30))
        assert tasks.housekeeping()["redispatched_runs"] == 0
        TrainingRun.objects.filter(pk=run.pk).update(queued_at=timezone.now() - delay - timedelta(seconds=30))
        assert tasks.housekeeping()["redispatched_runs"] == 1
        assert queued.call_args_list == [first, first]


@pytest.mark.django_db(transaction=True)
def test_a_run_delivered_twice_runs_once(cast, monkeypatch):
    run = _requested(make_experiment(cast.group, cast.owner))
    TrainingRun.objects.filter(pk=run.pk).update(queued_at=timezone.now())
    started: list[int] = []

    def train(run, log):
        started.append(run.attempts)
        raise tasks.TrainingFailed("no environment in this test")

    monkeypatch.setattr(tasks, "_train", train)
    assert tasks.run_training(run.pk) == TrainingRun.Status.FAILED
    assert tasks.run_training(run.pk) == "already handled"  # the redispatched duplicate
    assert started == [1]


def _with_outputs(cast, tmp_files: dict[str, bytes]) -> TrainingRun:
    experiment = make_experiment(cast.group, cast.owner)
    run = _running(experiment)
    run.out_folder.mkdir(parents=True)
    run.work_folder.mkdir(parents=True)
    for name, content in tmp_files.items():
        (run.out_folder / name).write_bytes(content)
    return run


OUTPUTS = {
    "model.pkl": b"pickle",
    "X_train.parquet": b"x",
    "model_output.parquet": b"o",
    "metrics.json": b"{}",
    "params.json": b"{}",
}


def test_artifacts_are_copied_out_of_the_sandbox(cast):
    run = _with_outputs(cast, OUTPUTS)
    (run.work_folder / "plots").mkdir()
    (run.work_folder / "plots" / "roc.png").write_bytes(b"png")
    kept = tasks._collect_artifacts(
        run, ["plots/roc.png", str(run.work_folder / "plots" / "roc.png")], "pandas==2\n"
    )
    names = [entry["name"] for entry in kept]
    assert names == [*OUTPUTS, "requirements.frozen.txt", "extras/plots/roc.png", "extras/plots/roc.png"]
    assert (run.artifacts_folder / "extras" / "plots" / "roc.png").read_bytes() == b"png"
    assert (run.artifacts_folder / "requirements.frozen.txt").read_text() == "pandas==2\n"


def test_a_link_in_the_outputs_fails_the_run_instead_of_being_followed(cast, tmp_path):
    secret = tmp_path / "platform-secret.key"
    secret.write_bytes(b"do not copy")
    run = _with_outputs(cast, {k: v for k, v in OUTPUTS.items() if k != "model.pkl"})
    os.symlink(secret, run.out_folder / "model.pkl")
    with pytest.raises(tasks.TrainingFailed, match="model.pkl can't be kept: it is not a regular file"):
        tasks._collect_artifacts(run, [], "")
    assert not (run.artifacts_folder / "model.pkl").exists()


def test_an_extra_outside_base_path_fails_the_run(cast, tmp_path):
    run = _with_outputs(cast, OUTPUTS)
    os.symlink(tmp_path, run.work_folder / "escape")
    with pytest.raises(tasks.TrainingFailed, match="outside base_path"):
        tasks._collect_artifacts(run, ["escape/anything"], "")
    with pytest.raises(tasks.TrainingFailed, match="outside base_path"):
        tasks._collect_artifacts(run, ["/etc/passwd"], "")


def test_an_extra_refused_names_no_server_folder(cast, tmp_path):
    # The run's error reaches the group's members: paths are named from <base_path>/.
    run = _with_outputs(cast, OUTPUTS)
    os.symlink(tmp_path, run.work_folder / "escape")
    refusals = []
    for extra in ("escape/anything", str(run.work_folder / "missing.json"), str(tmp_path)):
        with pytest.raises(tasks.TrainingFailed) as excinfo:
            tasks._collect_artifacts(run, [extra], "")
        refusals.append(str(excinfo.value))
    assert refusals == [
        "Extra file: The entrypoint returned '<base_path>/escape/anything', which goes through a "
        "symlink pointing outside base_path. It must return the path of a file it wrote inside base_path.",
        "Extra file: The entrypoint returned '<base_path>/missing.json', but there is no such file. "
        "It must return the path of a file it wrote inside base_path.",
        "Extra file: The entrypoint returned an absolute path outside base_path. "
        "It must return the path of a file it wrote inside base_path.",
    ]


def test_a_missing_artifact_fails_the_run(cast):
    run = _with_outputs(cast, {k: v for k, v in OUTPUTS.items() if k != "params.json"})
    with pytest.raises(tasks.TrainingFailed, match="did not save params.json"):
        tasks._collect_artifacts(run, [], "")


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ("done", "without a summary"),
        ({"metrics": [1]}, "metrics must be a dict"),
        ({"metrics": {"auc": "0.9"}}, "The metric 'auc' is not a number."),
        ({"metrics": {"auc": True}}, "The metric 'auc' is not a number."),
        ({"metrics": {}, "extras": [1]}, "extra must list"),
        # An int no float holds crashed the check itself ("Internal error: OverflowError").
        ({"metrics": {"n": 10**400}}, "The metric 'n' is an integer too large to keep"),
        # These reach the worker from a frame the user's code wrote itself (a lone
        # surrogate: every page of the experiment answered 500) or from a plain return
        # value (NUL: PostgreSQL refused the row and the run stayed Running).
        ({"metrics": {"\ud800": 1.0}}, r"can't be stored: it contains \\ud800, a lone surrogate"),
        ({"metrics": {"a\x00b": 1.0}}, r"can't be stored: it contains \\u0000 \(a NUL character\)"),
        ({"metrics": {}, "params": {"x": float("nan")}}, "can't be stored: .*NaN"),
    ],
)
def test_the_summary_from_the_sandbox_is_checked(summary, message):
    with pytest.raises(tasks.TrainingFailed, match=message):
        tasks._checked_summary(summary)


def test_logged_params_as_deep_as_the_form_accepts_are_kept():
    logged: dict = {}
    for _ in range(storable_json.MAX_DEPTH - 1):
        logged = {"x": logged}
    assert storable_json.storable_problem(logged) is None  # what the run form accepted
    summary = tasks._checked_summary({"metrics": {}, "params": {"logged": logged}})
    assert summary["params"]["logged"] == logged


def test_a_summary_that_could_not_be_stored_or_shown_fails_the_run(cast, monkeypatch, tmp_path):
    """The run is Failed with the reason, and its pages and answers keep working."""
    experiment = make_experiment(cast.group, cast.owner)
    run = _requested(experiment)
    interpreter = mock.Mock(version="3.9.20")
    monkeypatch.setattr(tasks.model_tasks, "prepare_environment", lambda *a: (tmp_path / "env", interpreter))
    monkeypatch.setattr(tasks.environments, "freeze", lambda env: "pandas==2.2.3\n")

    def forged(*args, **kwargs):  # what the harness leaves, and a summary it did not write
        for name, content in OUTPUTS.items():
            (run.out_folder / name).write_bytes(content)
        return oneshot.RunResult(ok=True, result={"metrics": {"\ud800": 0.9}, "params": {}})

    monkeypatch.setattr(tasks.oneshot, "run_oneshot", forged)
    assert tasks.run_training(run.pk) == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert run.error_message.startswith("The training's metrics and params can't be stored: it contains")
    assert run.metrics is None
    path = f"/api/v1/training/experiments/{experiment.hash}"
    assert api_client(cast.teammate).get(f"{path}/runs/1").status_code == 200
    assert api_client(cast.teammate).get(f"{path}/runs").status_code == 200


def test_a_task_timeout_too_short_for_build_and_training_is_an_error(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 1000}
    settings.ENV_BUILD_TIMEOUT, settings.TRAINING_TIMEOUT = 900, 800
    errors = [e for e in run_checks() if e.id == "neomaril.E020"]
    assert len(errors) == 1 and "1760 s, not 1000 s" in errors[0].msg
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "timeout": 1800}
    assert not [e for e in run_checks() if e.id == "neomaril.E020"]


def _custom_run(cast, *, uploads: bool = True) -> TrainingRun:
    """A Requested Custom run, with its uploads in its folder."""
    experiment = make_experiment(cast.group, cast.owner)
    run = TrainingRun.objects.create(
        experiment=experiment, number=1, name="run", training_type="Custom", python_version="3.9",
        source_file="train.py", train_file="train.csv", training_reference="train",
    )  # fmt: skip
    if uploads:
        run.work_folder.mkdir(parents=True)
        (run.work_folder / "train.py").write_text("def train(base_path): ...\n")
        (run.work_folder / "train.csv").write_text("a,b\n1,2\n")
    return run


def _without_a_real_environment(monkeypatch, tmp_path, run_oneshot, training_code=lambda **kwargs: None):
    """run_training up to its sandbox, with `run_oneshot` standing for the process."""
    interpreter = mock.Mock(version="3.9.19")
    monkeypatch.setattr(tasks, "_environment", lambda run, log: (tmp_path / "env", interpreter))
    monkeypatch.setattr(tasks.environments, "freeze", lambda env_path: "pandas==2\n")
    monkeypatch.setattr(tasks.sandboxes, "training_code", training_code)
    monkeypatch.setattr(tasks.oneshot, "run_oneshot", run_oneshot)


def test_a_run_stopped_for_a_nearly_full_disk_fails_once_and_its_outputs_go(cast, monkeypatch, tmp_path):
    run = _custom_run(cast)
    message = "The server's data disk is nearly full (…): the model's code was stopped before it filled it."

    def stopped_on_a_full_disk(*args, **kwargs):
        (run.work_folder / "cache.bin").write_bytes(b"x" * 1024)  # what the training wrote
        return oneshot.RunResult(ok=False, phase="limit", error=message, limit=message, disk_full=True)

    _without_a_real_environment(monkeypatch, tmp_path, stopped_on_a_full_disk)
    assert tasks.run_training(run.pk) == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert run.error_message == message and run.attempts == 1
    assert sorted(path.name for path in run.work_folder.iterdir()) == ["train.csv", "train.py"]
    assert "What the training wrote was removed (the uploads are kept)." in run.log


def test_a_finished_run_keeps_its_uploads_and_artifacts_not_its_scratch_or_output_copies(
    cast, monkeypatch, tmp_path
):
    """The outputs stayed in the sandbox's folder beside their artifact copies (every run's
    model and tables twice), and whatever the training wrote there too: the group's disk, for good."""
    run = _custom_run(cast)

    def trained(*args, **kwargs):
        (run.work_folder / "cache").mkdir()
        (run.work_folder / "cache" / "features.bin").write_bytes(b"x" * 4096)
        for name, content in OUTPUTS.items():
            (run.out_folder / name).write_bytes(content)
        return oneshot.RunResult(ok=True, result={"metrics": {"auc": 0.9}})

    _without_a_real_environment(monkeypatch, tmp_path, trained)
    assert tasks.run_training(run.pk) == TrainingRun.Status.SUCCEEDED, TrainingRun.objects.get().log
    assert sorted(path.name for path in run.work_folder.iterdir()) == ["train.csv", "train.py"]
    assert not run.out_folder.exists()
    assert sorted(path.name for path in run.artifacts_folder.iterdir()) == sorted(
        [*OUTPUTS, "requirements.frozen.txt"]
    )
    kept = sum(len(content) for content in OUTPUTS.values()) + len("pandas==2\n")
    assert Group.objects.get(pk=cast.group.pk).stored_bytes == kept  # the artifacts, counted


def test_a_run_of_a_group_past_its_quota_does_not_start(cast, monkeypatch):
    run = _custom_run(cast, uploads=False)
    Group.objects.filter(pk=cast.group.pk).update(storage_quota_mb=2, stored_bytes=3 * 1024 * 1024)
    monkeypatch.setattr(
        tasks, "_environment", mock.Mock(side_effect=AssertionError("no environment is built"))
    )
    assert tasks.run_training(run.pk) == TrainingRun.Status.FAILED
    run.refresh_from_db()
    assert run.error_message.startswith(
        "The group 'datarisk' keeps 3.0 MB of its 2.0 MB storage quota: this run was not started; "
        "start it again once space is freed."
    ), run.error_message


def test_a_run_writes_at_most_what_its_groups_quota_leaves(cast, monkeypatch, tmp_path):
    run = _custom_run(cast, uploads=False)
    Group.objects.filter(pk=cast.group.pk).update(storage_quota_mb=10, stored_bytes=7 * 1024 * 1024)
    seen = {}

    def training_code(**kwargs):
        seen.update(kwargs)
        return None

    stopped = oneshot.RunResult(ok=False, phase="load", error="stop here")
    _without_a_real_environment(monkeypatch, tmp_path, lambda *a, **kw: stopped, training_code=training_code)
    tasks.run_training(run.pk)
    assert seen["storage_room"] == 3 * 1024 * 1024
