"""A group's share of the workers: while other groups' jobs wait for a worker, one group's
builds, training runs and monitoring run at most NEOMARIL_WORKER_JOBS_PER_GROUP at once.

An audit had one member upload five models whose smoke test sleeps 100 s: django-q2 hands
tasks out in the order they came, and another group's trivial model took 99 s to deploy.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from executions.models import Execution
from groups import jobs
from models_app import services as model_services
from models_app import tasks as build_tasks
from models_app.models import MLModel, ModelBuild
from monitors import services as monitor_services
from monitors import tasks as monitor_tasks
from monitors.models import Period
from tests.helpers.monitors import deployed_model, make_monitor, make_period
from tests.helpers.training import finished_run, make_experiment
from training import services as training_services
from training import tasks as training_tasks
from training.models import TrainingRun


class Broker:
    """async_task: what was sent, by task name."""

    def __init__(self) -> None:
        self.sent: list[tuple] = []

    def __call__(self, func, *args, **kwargs) -> None:
        self.sent.append((func, *args))


@pytest.fixture
def broker(monkeypatch) -> Broker:
    sent = Broker()
    for module in (model_services, training_services, monitor_services):
        monkeypatch.setattr(module, "async_task", sent)
    return sent


@pytest.fixture(autouse=True)
def share_of_two(settings):
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 4}
    settings.WORKER_JOBS_PER_GROUP = 2


def _build(group, status=ModelBuild.Status.QUEUED, **fields) -> ModelBuild:
    """A build of a fresh Ready model of `group`, as queue_build leaves it (without its task)."""
    model = deployed_model(group, status=MLModel.Status.READY, name=f"m{MLModel.objects.count()}")
    return ModelBuild.objects.create(
        model=model,
        number=1,
        status=status,
        queued_at=timezone.now(),
        started_at=timezone.now() if status == jobs.RUNNING else None,
        **fields,
    )


def test_a_build_whose_group_runs_its_share_while_another_group_waits_is_deferred(
    cast, broker, django_capture_on_commit_callbacks
):
    running = [_build(cast.group, status=ModelBuild.Status.RUNNING) for _ in range(2)]
    mine = _build(cast.group)
    theirs = _build(cast.other_group)  # its task is behind mine in the queue

    assert build_tasks.build_model(mine.pk) == jobs.DEFERRED_OUTCOME
    mine.refresh_from_db()
    assert (mine.status, mine.queued_at) == (ModelBuild.Status.QUEUED, jobs.DEFERRED)
    assert mine.log.endswith(
        "Waiting for a free worker: this group's jobs already take 2 of them while other groups' jobs "
        "wait (NEOMARIL_WORKER_JOBS_PER_GROUP). It starts when one of them ends.\n"
    )
    assert MLModel.objects.get(pk=mine.model_id).status == MLModel.Status.READY  # nothing began
    # Housekeeping's search for lost tasks leaves it to send_deferred.
    assert build_tasks.redispatch_lost_builds() == 0
    assert jobs.send_deferred() == 0  # still at its share, the other group still waiting
    assert broker.sent == []

    # The other group's build runs; one of mine ends: mine is sent at once.
    ModelBuild.objects.filter(pk=theirs.pk).update(status=jobs.RUNNING)
    running[0].refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        assert running[0].settle(ModelBuild.Status.SUCCEEDED)
    mine.refresh_from_db()
    assert mine.queued_at not in (None, jobs.DEFERRED)
    assert broker.sent == [("models_app.tasks.build_model", mine.pk)]
    assert mine.log.count("Waiting for a free worker") == 1


def test_a_group_alone_takes_every_worker_but_one_kept_for_the_next_group(cast, broker):
    """The audit's order: the other group's build came 3 s after the slow ones had started,
    so none of its jobs was waiting yet when they did."""
    for _ in range(2):
        _build(cast.group, status=ModelBuild.Status.RUNNING)
    third, fourth = _build(cast.group), _build(cast.group)
    # An execution waiting for its concurrency slot (no task yet) is not waiting for a worker.
    other_model = deployed_model(cast.other_group, operation=MLModel.Operation.ASYNC, name="async")
    Execution.objects.create(model=other_model, number=1, input_file="in.csv", input_size=1, queued_at=None)
    assert not jobs.must_wait_for_share(ModelBuild, third.pk)
    ModelBuild.objects.filter(pk=third.pk).update(status=jobs.RUNNING)
    assert build_tasks.build_model(fourth.pk) == jobs.DEFERRED_OUTCOME
    assert ModelBuild.objects.get(pk=fourth.pk).log.endswith(
        "Waiting for a free worker: this group's jobs already take 3 of them, and one is kept for other "
        "groups' jobs (NEOMARIL_WORKER_JOBS_PER_GROUP). It starts when one of them ends.\n"
    )
    late = _build(cast.other_group)  # the next group's build finds the worker kept for it
    assert not jobs.must_wait_for_share(ModelBuild, late.pk)
    assert jobs.send_deferred() == 0  # the fourth waits for one of its group's to end


def test_a_group_under_its_share_runs_though_others_wait(cast):
    _build(cast.group, status=ModelBuild.Status.RUNNING)
    mine = _build(cast.group)
    _build(cast.other_group)
    assert not jobs.must_wait_for_share(ModelBuild, mine.pk)


def test_every_kind_counts_in_its_groups_share_and_executions_are_never_deferred(cast):
    async_model = deployed_model(cast.group, operation=MLModel.Operation.ASYNC, name="async")
    Execution.objects.create(
        model=async_model, number=1, input_file="in.csv", input_size=1, status=jobs.RUNNING
    )
    experiment = make_experiment(cast.group)
    finished_run(experiment, number=1, status=TrainingRun.Status.RUNNING)
    waiting_run = finished_run(
        experiment, number=2, status=TrainingRun.Status.REQUESTED, queued_at=timezone.now()
    )
    _build(cast.other_group)
    assert jobs.group_share() == 2
    assert training_tasks.run_training(waiting_run.pk) == jobs.DEFERRED_OUTCOME

    model = deployed_model(cast.group, name="monitored")
    monitor = make_monitor(model, finished_run(make_experiment(cast.group, name="ref"), number=1))
    period = make_period(monitor, 1, status=Period.Status.QUEUED, queued_at=timezone.now())
    assert monitor_tasks.run_period(period.pk) == jobs.DEFERRED_OUTCOME
    assert Period.objects.get(pk=period.pk).queued_at == jobs.DEFERRED
    assert jobs._running() == {cast.group.pk: 2}


def test_the_default_share_is_half_a_nodes_workers(settings):
    settings.WORKER_JOBS_PER_GROUP = 0
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 4}
    assert jobs.group_share() == 2
    assert jobs.group_limit() == 3
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "workers": 3}
    assert (jobs.group_share(), jobs.group_limit()) == (1, 2)
    settings.WORKER_JOBS_PER_GROUP = 5  # a share above the workers: no worker kept
    assert jobs.group_limit() == 5
    assert jobs._why_wait(4, lambda: False) is None
    assert jobs._why_wait(5, lambda: False) == "this group's jobs already take 5 of them"


def test_housekeeping_sends_a_deferred_job_once_no_other_group_waits(
    cast, broker, django_capture_on_commit_callbacks
):
    for _ in range(2):
        _build(cast.group, status=ModelBuild.Status.RUNNING)
    mine = _build(cast.group)
    theirs = _build(cast.other_group)
    assert build_tasks.build_model(mine.pk) == jobs.DEFERRED_OUTCOME
    ModelBuild.objects.filter(pk=theirs.pk).delete()  # e.g. its model was deleted
    with django_capture_on_commit_callbacks(execute=True):
        assert build_tasks.housekeeping()["sent_deferred_jobs"] == 1
    assert broker.sent == [("models_app.tasks.build_model", mine.pk)]
    assert build_tasks.housekeeping()["sent_deferred_jobs"] == 0  # once
