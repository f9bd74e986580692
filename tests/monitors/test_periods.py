"""Period windows, the schedule that queues closed ones, runs on demand, merged periods."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from django.utils import timezone

from monitoring import drift
from monitors import periods, services
from monitors.models import ColumnResult, Monitor, Period
from tests.helpers.monitors import NUMERIC, deployed_model, reference_run, uploaded_long_ago

UTC = UTC


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("kind", "moment", "start", "end"),
    [
        ("Day", at(2026, 12, 2, 23, 59), at(2026, 12, 2), at(2026, 12, 3)),
        ("Week", at(2026, 12, 2, 10), at(2026, 11, 30), at(2026, 12, 7)),  # ISO week: Monday
        ("Week", at(2027, 1, 1), at(2026, 12, 28), at(2027, 1, 4)),
        ("Month", at(2026, 12, 31, 23), at(2026, 12, 1), at(2027, 1, 1)),
        ("Month", date(2024, 2, 29), at(2024, 2, 1), at(2024, 3, 1)),
        ("Year", at(2026, 6, 1), at(2026, 1, 1), at(2027, 1, 1)),
    ],
)
def test_bounds(kind, moment, start, end):
    assert periods.bounds(kind, moment) == (start, end)


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="unknown period 'Hour'"):
        periods.bounds("Hour", date(2026, 1, 1))


def test_closed_since_lists_only_ended_windows():
    found = list(periods.closed_since("Day", at(2026, 12, 1, 15), at(2026, 12, 3, 12)))
    assert found == [(at(2026, 12, 1), at(2026, 12, 2)), (at(2026, 12, 2), at(2026, 12, 3))]


@pytest.fixture
def monitor(cast, db):
    run = reference_run(cast.group)
    model = uploaded_long_ago(deployed_model(cast.group, run))
    return Monitor.objects.create(
        model=model,
        training_run=run,
        status=Monitor.Status.VALIDATED,
        period="Day",
        input_cols=["a"],
        output_cols=[],
        preprocess_reference="parse",
        preprocess_file="preprocess.py",
        registered_at=at(2026, 11, 28, 9),
        reference={"rows": 10},
    )


@pytest.fixture
def queued(monkeypatch):
    calls = []
    monkeypatch.setattr(services, "async_task", lambda *args, **kwargs: calls.append(args))
    return calls


def test_schedule_queues_each_closed_period_once(monitor, queued, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert services.queue_due_periods(now=at(2026, 12, 1, 0, 30)) == 3
    starts = sorted(Period.objects.values_list("start", flat=True))
    assert starts == [at(2026, 11, 28), at(2026, 11, 29), at(2026, 11, 30)]
    assert len(queued) == 3 and all(call[0] == "monitors.tasks.run_period" for call in queued)
    assert set(Period.objects.values_list("trigger", flat=True)) == {"schedule"}
    with django_capture_on_commit_callbacks(execute=True):
        assert services.queue_due_periods(now=at(2026, 12, 1, 23)) == 0


def test_a_window_is_closed_a_minute_after_its_end(monitor, queued):
    """Calls are written by each web process's recorder in batches, on every node: a period
    queued the moment its window ended missed the last ones."""
    Monitor.objects.filter(pk=monitor.pk).update(registered_at=at(2026, 11, 30, 9))
    assert services.queue_due_periods(now=at(2026, 12, 1, 0, 0, 30)) == 0
    assert services.queue_due_periods(now=at(2026, 12, 1, 0, 1)) == 1


def test_a_period_asked_for_before_its_window_closed_runs_again_once_it_has(
    monitor, queued, django_capture_on_commit_callbacks
):
    """Asked for at 07:32, it counted the calls until then, and that partial result stayed
    the verdict: the schedule skipped the window, which had a period."""
    Monitor.objects.filter(pk=monitor.pk).update(registered_at=at(2026, 11, 30, 9))
    partial = Period.objects.create(
        monitor=monitor, kind="Day", start=at(2026, 11, 30), end=at(2026, 12, 1), trigger="demand",
        status=Period.Status.SUCCEEDED, started_at=at(2026, 11, 30, 7, 32), finished_at=at(2026, 11, 30, 7, 33),
        records=90, drift_status="stable", registered_at=at(2026, 11, 30, 9),
    )  # fmt: skip
    ColumnResult.objects.create(
        period=partial, role="input", column="a", binning=NUMERIC, reference_counts=[5, 5, 0, 0],
        period_counts=[50, 40, 0, 0], status="stable", psi=0.01,
    )  # fmt: skip
    assert services.queue_due_periods(now=at(2026, 11, 30, 23)) == 0  # its window is still open
    with django_capture_on_commit_callbacks(execute=True):
        assert services.queue_due_periods(now=at(2026, 12, 1, 0, 5)) == 1
    partial.refresh_from_db()
    assert (partial.status, partial.trigger, partial.records, partial.started_at) == (
        "Queued",
        "schedule",
        None,
        None,
    )
    assert not partial.columns.exists()
    assert queued == [("monitors.tasks.run_period", partial.pk)]
    # Once run after the window closed, it is the window's whole count: never again.
    Period.objects.filter(pk=partial.pk).update(status="Succeeded", started_at=at(2026, 12, 1, 0, 6))
    assert services.queue_due_periods(now=at(2026, 12, 2, 0, 0, 30)) == 0


def test_schedule_skips_registrations_not_validated(monitor, queued):
    Monitor.objects.filter(pk=monitor.pk).update(status=Monitor.Status.INVALIDATED)
    assert services.queue_due_periods(now=at(2026, 12, 5)) == 0


def test_on_demand_runs_the_period_containing_the_date(
    monitor, cast, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        period = services.request_period(monitor, date(2026, 11, 15), cast.owner)
    assert (period.start, period.end, period.trigger, period.requested_by) == (
        at(2026, 11, 15),
        at(2026, 11, 16),
        "demand",
        cast.owner,
    )
    # asked again while queued: the same period, not queued twice
    with django_capture_on_commit_callbacks(execute=True):
        assert services.request_period(monitor, at(2026, 11, 15, 18), cast.owner).pk == period.pk
    assert len(queued) == 1


def test_on_demand_reruns_a_finished_period_from_scratch(
    monitor, cast, queued, django_capture_on_commit_callbacks
):
    period = Period.objects.create(
        monitor=monitor,
        kind="Day",
        start=at(2026, 11, 15),
        end=at(2026, 11, 16),
        status="Succeeded",
        rows=5,
        log="old",
    )
    _column(period, [5, 5])
    with django_capture_on_commit_callbacks(execute=True):
        again = services.request_period(monitor, date(2026, 11, 15), cast.owner)
    assert again.pk == period.pk
    assert (again.status, again.rows, again.log, again.columns.count()) == ("Queued", None, "", 0)
    assert len(queued) == 1


def test_on_demand_needs_a_validated_registration(monitor, cast):
    Monitor.objects.filter(pk=monitor.pk).update(
        status=Monitor.Status.INVALIDATED, error_message="InputCols lack x"
    )
    with pytest.raises(
        services.NotValidated, match="is Invalidated; periods run once it is Validated. InputCols lack x"
    ):
        services.request_period(monitor, None, cast.owner)


BINNING = drift.Binning(kind="categorical", categories=("A", "B")).to_json()


def _column(period, counts, reference=(50, 50, 0, 0), column="a", binning=BINNING):
    return ColumnResult.objects.create(
        period=period,
        role="input",
        column=column,
        binning=binning,
        reference_counts=list(reference),
        period_counts=list(counts),
        psi=None,
        status="insufficient",
    )


def test_merged_adds_the_counts_of_the_periods_inside(monitor):
    monitor.minimum_rows = 1
    days = []
    for day, counts in ((1, [30, 10, 0, 0]), (2, [10, 30, 0, 0]), (3, [0, 0, 40, 0])):
        period = Period.objects.create(
            monitor=monitor,
            kind="Day",
            start=at(2026, 11, day),
            end=at(2026, 11, day + 1),
            status="Succeeded",
        )
        _column(period, counts)
        days.append(period)
    merged = services.merged(monitor, date(2026, 11, 1), date(2026, 11, 3))  # days 1 and 2
    assert merged["periods"] == [days[0].pk, days[1].pk]
    (column,) = merged["columns"]
    assert column["period_counts"] == [40, 40, 0, 0]
    assert column["psi"] == pytest.approx(0.0) and column["status"] == "stable"
    assert merged["drift_status"] == "stable" and merged["average_psi"] == pytest.approx(0.0)
    assert column["labels"] == ["A", "B", "(unseen)", "(missing)"]
    assert column["period_proportions"] == [0.5, 0.5, 0.0, 0.0]
    # the same PSI the raw data would give
    everything = services.merged(monitor, date(2026, 11, 1), date(2026, 11, 4))["columns"][0]
    expected = drift.psi([50, 50, 0, 0], [40, 40, 40, 0])
    assert everything["psi"] == pytest.approx(expected)


def test_merged_without_periods_says_so(monitor):
    with pytest.raises(ValueError, match="No finished period lies between 2026-01-01 and 2026-02-01"):
        services.merged(monitor, date(2026, 1, 1), date(2026, 2, 1))


def test_recovery_requeues_a_stale_period_then_fails_it(monitor, queued, django_capture_on_commit_callbacks):
    from monitors import tasks

    old = timezone.now() - timedelta(hours=1)
    period = Period.objects.create(
        monitor=monitor,
        kind="Day",
        start=at(2026, 11, 1),
        end=at(2026, 11, 2),
        status="Running",
        heartbeat_at=old,
        attempts=1,
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.recover_stale() == 1
    period.refresh_from_db()
    assert period.status == "Queued" and "Re-queued" in period.log
    Period.objects.filter(pk=period.pk).update(status="Running", heartbeat_at=old, attempts=2)
    assert tasks.recover_stale() == 1
    period.refresh_from_db()
    assert period.status == "Failed" and "retried once" in period.error_message


def test_recovery_takes_over_a_period_of_a_node_whose_workers_stopped(monitor, queued, monkeypatch):
    from groups import nodes
    from monitors import tasks

    old = timezone.now() - timedelta(hours=1)
    period = Period.objects.create(
        monitor=monitor,
        kind="Day",
        start=at(2026, 11, 1),
        end=at(2026, 11, 2),
        status="Running",
        heartbeat_at=old,
        attempts=1,
        host="node-b",
    )
    monkeypatch.setattr(nodes, "live_worker_hosts", lambda: {tasks.HOST, "node-b"})
    assert tasks.recover_stale() == 0  # node-b's own recovery stops its leftovers first
    monkeypatch.setattr(nodes, "live_worker_hosts", lambda: {tasks.HOST})
    assert tasks.recover_stale() == 1
    period.refresh_from_db()
    assert period.status == "Queued" and "It ran on node-b, where no worker is running any more" in period.log


def test_recovery_requeues_a_stale_validation_then_invalidates_it(
    monitor, queued, django_capture_on_commit_callbacks
):
    from monitors import tasks

    old = timezone.now() - timedelta(hours=1)
    Monitor.objects.filter(pk=monitor.pk).update(status="Running", heartbeat_at=old, attempts=1)
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.recover_stale() == 1
    monitor.refresh_from_db()
    assert monitor.status == "Unvalidated" and "Re-queued" in monitor.log
    assert queued == [("monitors.tasks.validate_monitor", monitor.pk)]
    Monitor.objects.filter(pk=monitor.pk).update(status="Running", heartbeat_at=old, attempts=2)
    assert tasks.recover_stale() == 1
    monitor.refresh_from_db()
    assert monitor.status == "Invalidated" and "retried once; register again" in monitor.error_message
    assert "Invalidated: The worker running this stopped" in monitor.log


@pytest.fixture
def sent(monkeypatch) -> list:
    """(args, kwargs) of every task handed to the broker."""
    calls: list = []
    monkeypatch.setattr(services, "async_task", lambda *args, **kwargs: calls.append((args, kwargs)))
    return calls


def _queued_ago(job, delay: timedelta) -> None:
    type(job).objects.filter(pk=job.pk).update(queued_at=timezone.now() - delay)


def test_a_lost_validation_is_enqueued_again_after_the_delay_and_not_before(
    monitor, sent, django_capture_on_commit_callbacks
):
    from groups import jobs
    from monitors import tasks

    Monitor.objects.filter(pk=monitor.pk).update(status="Unvalidated")
    with django_capture_on_commit_callbacks(execute=True):
        services.queue_validation(monitor)
    first = (
        ("monitors.tasks.validate_monitor", monitor.pk),
        {"task_name": f"monitoring-validate-{monitor.model.hash}"},
    )
    assert sent == [first]
    delay = jobs.lost_after(jobs.REDISPATCH_AFTER)  # with this test run's broker, ORM or Redis
    _queued_ago(monitor, delay - timedelta(seconds=30))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.housekeeping()["redispatched"] == 0
    _queued_ago(monitor, delay + timedelta(seconds=30))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.housekeeping()["redispatched"] == 1
    assert sent == [first, first]


@pytest.mark.parametrize("continuation", [False, True])
def test_a_lost_period_is_enqueued_again_as_it_was_after_its_delay(
    monitor, sent, django_capture_on_commit_callbacks, continuation
):
    from groups import jobs
    from monitors import tasks

    period = Period.objects.create(monitor=monitor, kind="Day", start=at(2026, 11, 1), end=at(2026, 11, 2))
    with django_capture_on_commit_callbacks(execute=True):
        services.queue_period(period, continuation=continuation)
    first = (
        ("monitors.tasks.run_period", period.pk),
        {"continuation": continuation, "task_name": f"monitoring-period-{period.pk}"},
    )
    assert sent == [first]
    # Longer than other jobs' delay: periods come in bursts nobody waits for by the minute.
    delay = jobs.lost_after(tasks.PERIOD_REDISPATCH_AFTER)
    assert delay >= jobs.lost_after(jobs.REDISPATCH_AFTER)
    _queued_ago(period, delay - timedelta(seconds=30))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.redispatch_lost() == 0
    _queued_ago(period, delay + timedelta(seconds=30))
    with django_capture_on_commit_callbacks(execute=True):
        assert tasks.redispatch_lost() == 1
    assert sent == [first, first]  # a continuation goes on as the same attempt


@pytest.mark.django_db(transaction=True)
def test_a_validation_and_a_period_delivered_twice_run_once(monitor, monkeypatch):
    from monitors import tasks

    ran: list[str] = []

    def validate(monitor, log):
        ran.append("validation")
        raise tasks.MonitoringFailed("no environment in this test")

    def run_period(period, log, *, deadline):
        ran.append("period")
        raise tasks.MonitoringFailed("no records in this test")

    monkeypatch.setattr(tasks, "_validate", validate)
    monkeypatch.setattr(tasks, "_run_period", run_period)
    Monitor.objects.filter(pk=monitor.pk).update(status="Unvalidated", queued_at=timezone.now())
    assert tasks.validate_monitor(monitor.pk) == "Invalidated"
    assert tasks.validate_monitor(monitor.pk) == "already handled"  # the redispatched duplicate
    period = Period.objects.create(
        monitor=monitor, kind="Day", start=at(2026, 11, 1), end=at(2026, 11, 2), queued_at=timezone.now()
    )
    assert tasks.run_period(period.pk) == "Failed"
    assert tasks.run_period(period.pk) == "already handled"
    assert ran == ["validation", "period"]


def test_the_task_timeout_must_cover_a_validation(settings):
    from django.core.checks import run_checks

    settings.Q_CLUSTER = {
        **settings.Q_CLUSTER,
        "timeout": settings.ENV_BUILD_TIMEOUT + settings.MONITORING_TIMEOUT,
    }
    (error,) = [e for e in run_checks() if e.id == "neomaril.E030"]
    assert "needs a django-q2 task timeout of" in error.msg
    settings.Q_CLUSTER = {
        **settings.Q_CLUSTER,
        "timeout": settings.ENV_BUILD_TIMEOUT + settings.MONITORING_TIMEOUT + 60,
    }
    assert not [e for e in run_checks() if e.id == "neomaril.E030"]


# -------------------------------------------------- periods of an earlier registration


def _register_again(monitor, *, period="Week", moment=None):
    """What services.register changes that matters here: a new registration time and kind."""
    monitor.registered_at = moment or at(2026, 12, 1, 9)
    monitor.period = period
    monitor.save(update_fields=["registered_at", "period"])


def test_a_period_counts_under_the_registration_current_when_it_is_made(monitor):
    day = Period.objects.create(monitor=monitor, kind="Day", start=at(2026, 11, 30), end=at(2026, 12, 1))
    assert day.registered_at == monitor.registered_at
    _register_again(monitor)
    assert list(monitor.current_periods()) == []
    day.refresh_from_db()
    assert day.registered_at == at(2026, 11, 28, 9)


def test_merged_leaves_out_an_earlier_registrations_periods(monitor):
    """A Day of the first registration inside a Week of the second: the same calls would be
    counted twice, against possibly another reference."""
    monitor.minimum_rows = 1
    day = Period.objects.create(
        monitor=monitor, kind="Day", start=at(2026, 12, 1), end=at(2026, 12, 2), status="Succeeded"
    )
    _column(day, [30, 10, 0, 0])
    _register_again(monitor)
    week = Period.objects.create(
        monitor=monitor, kind="Week", start=at(2026, 11, 30), end=at(2026, 12, 7), status="Succeeded"
    )
    _column(week, [30, 10, 0, 0])
    merged = services.merged(monitor, date(2026, 11, 30), date(2026, 12, 7))
    assert merged["periods"] == [week.pk]
    assert merged["columns"][0]["period_counts"] == [30, 10, 0, 0]
    # Only an earlier registration's period in the range: the 400 says why it is not merged.
    with pytest.raises(
        ValueError, match="1 finished period.s. there were counted under an earlier registration"
    ):
        services.merged(monitor, date(2026, 12, 1), date(2026, 12, 2))


def test_running_an_earlier_registrations_period_again_counts_it_under_the_current_one(
    monitor, cast, queued, django_capture_on_commit_callbacks
):
    day = Period.objects.create(
        monitor=monitor, kind="Day", start=at(2026, 11, 15), end=at(2026, 11, 16), status="Succeeded"
    )
    monitor.registered_at = at(2026, 12, 1, 9)  # registered again, still by the day
    monitor.save(update_fields=["registered_at"])
    with django_capture_on_commit_callbacks(execute=True):
        again = services.request_period(monitor, date(2026, 11, 15), cast.owner)
    assert again.pk == day.pk and again.registered_at == monitor.registered_at
    assert list(monitor.current_periods()) == [day]


def test_the_migration_stamps_the_periods_asked_for_since_the_last_registration(monitor):
    import importlib

    from django.apps import apps

    migration = importlib.import_module("monitors.migrations.0004_period_registered_at")
    before = Period.objects.create(
        monitor=monitor,
        kind="Day",
        start=at(2026, 11, 1),
        end=at(2026, 11, 2),
        requested_at=at(2026, 11, 2, 1),
    )
    since = Period.objects.create(
        monitor=monitor,
        kind="Day",
        start=at(2026, 11, 29),
        end=at(2026, 11, 30),
        requested_at=at(2026, 11, 30, 1),
    )
    other_kind = Period.objects.create(
        monitor=monitor,
        kind="Week",
        start=at(2026, 11, 30),
        end=at(2026, 12, 7),
        requested_at=at(2026, 12, 7, 1),
    )
    Period.objects.update(registered_at=None)  # as the column's addition leaves them
    migration.stamp_current_registrations(apps, None)
    stamped = dict(Period.objects.values_list("pk", "registered_at"))
    assert stamped == {before.pk: None, since.pk: monitor.registered_at, other_kind.pk: None}
