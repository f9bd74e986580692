"""What must not grow with a monitor's history: the badges of the dashboard and the
models list, the schedule that queues closed periods every minute, and the periods list
the Monitoring tab reads.

A Day monitor adds 365 periods a year. Each check runs the same work with 3 and with 30
periods and wants the same cost: queries, rows of work inside SQLite (its virtual
machine's steps) or windows walked, whichever the work is made of.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext

from models_app.models import MLModel
from monitors import display, periods, services
from monitors.models import Monitor, Period
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.monitors import deployed_model, make_monitor, make_period, reference_run, uploaded_long_ago

API = "/api/v1/monitoring"


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def sqlite_steps(work) -> int:
    """How many virtual-machine steps SQLite takes for `work`'s queries: the rows it reads
    and sorts, which a query count does not see."""
    steps = 0

    def tick() -> int:
        nonlocal steps
        steps += 1
        return 0  # go on

    connection.ensure_connection()
    connection.connection.set_progress_handler(tick, 1)
    try:
        work()
    finally:
        connection.connection.set_progress_handler(None, 1)
    return steps


def add_days(monitor: Monitor, count: int, *, first: datetime | None = None, **fields) -> None:
    """`count` Succeeded Day periods of the current registration, from `first` (Jan 1st) on."""
    first = first or at(2026, 1, 1)
    Period.objects.bulk_create(
        Period(
            monitor=monitor,
            kind="Day",
            start=first + timedelta(days=day),
            end=first + timedelta(days=day + 1),
            status=Period.Status.SUCCEEDED,
            drift_status="stable",
            registered_at=monitor.registered_at,
            **fields,
        )
        for day in range(count)
    )


# ------------------------------------------------------------------------------- badges


@pytest.mark.skipif(connection.vendor != "sqlite", reason="counts SQLite's own steps")
def test_finding_each_models_last_period_does_not_read_its_history(cast):
    """The last period is picked per monitor by one seek on Period's (monitor,
    registered_at, status, start) index: not by a subquery run for every Succeeded period
    (quadratic in a monitor's periods), nor by sorting each monitor's periods."""
    run = reference_run(cast.group)
    monitors = [make_monitor(deployed_model(cast.group, run, name=f"m{n}"), run) for n in range(3)]
    for monitor in monitors:
        add_days(monitor, 3)
    few = sqlite_steps(lambda: display.latest_periods(MLModel.objects.all()))
    for monitor in monitors:
        add_days(monitor, 27, first=at(2026, 1, 4))
    many = sqlite_steps(lambda: display.latest_periods(MLModel.objects.all()))
    assert many <= few * 1.1, (few, many)  # measured: equal (165); before the fix 652 → 2,920
    found = display.latest_periods(MLModel.objects.all())
    assert {period.start for period in found.values()} == {at(2026, 1, 30)}


def test_badges_and_the_drift_card_leave_logs_and_references_in_the_database(cast, run):
    model = deployed_model(cast.group, run, name="drifty")
    monitor = make_monitor(model, run, log="validated\n" * 100)
    make_period(monitor, 1, drift_status="drift", psi=0.4)
    period = display.latest_periods(MLModel.objects.all())[model.pk]
    assert {"log", "shap", "progress", "error_message", "webhook_status"} <= period.get_deferred_fields()
    assert {"log", "reference", "configuration", "input_cols"} <= period.monitor.get_deferred_fields()
    with CaptureQueriesContext(connection) as queries:
        [item] = display.drifted(MLModel.objects.all())
        badge = display.badges([model])[model.pk]
        # What the dashboard and the models list read of them, with no query per model.
        shown = (item.period.kind, item.period.start, item.period.average_psi, badge.label, badge.title)
    assert shown == ("Day", at(2026, 5, 1), 0.4, "drift", "Day from 1 May 2026 UTC: drift, average PSI 0.400")
    assert len(queries) == 3 + 2


@pytest.mark.parametrize("page", ["/", "/models/"])
def test_the_dashboard_and_the_models_list_take_the_same_queries_at_3_and_30_periods(cast, run, page):
    model = deployed_model(cast.group, run, name="drifty")
    monitor = make_monitor(model, run)
    for day in (1, 2):
        make_period(monitor, day)
    make_period(monitor, 3, drift_status="drift", psi=0.4)
    client = Client()
    assert client.login(username=cast.owner.username, password=PASSWORD)
    client.get(page)  # the first answer warms the session and the caches
    with CaptureQueriesContext(connection) as few:
        assert client.get(page).status_code == 200
    add_days(monitor, 27, first=at(2026, 4, 1))  # older windows: the verdict stays May 3rd's
    with CaptureQueriesContext(connection) as many:
        html = client.get(page).content.decode()
    assert len(many) == len(few)
    assert 'data-monitoring="drift"' in html


# ----------------------------------------------------------------------------- schedule


@pytest.fixture
def day_monitor(cast, run):
    model = uploaded_long_ago(deployed_model(cast.group, run))
    return make_monitor(model, run, registered_at=at(2026, 1, 1, 9))


@pytest.fixture
def queued(monkeypatch):
    calls = []
    monkeypatch.setattr(services, "async_task", lambda *args, **kwargs: calls.append(args))
    return calls


@pytest.fixture
def windows_walked(monkeypatch):
    """How many windows the schedule computed (periods.bounds, which closed_since calls too)."""
    calls = []
    bounds = periods.bounds
    monkeypatch.setattr(periods, "bounds", lambda *args: calls.append(args) or bounds(*args))
    return calls


def test_the_schedule_looks_only_after_the_latest_period(day_monitor, queued, windows_walked):
    add_days(day_monitor, 3)
    with CaptureQueriesContext(connection) as few:
        assert services.queue_due_periods(now=at(2026, 1, 4, 0, 30)) == 0
    few_windows = len(windows_walked)
    add_days(day_monitor, 27, first=at(2026, 1, 4))
    windows_walked.clear()
    with CaptureQueriesContext(connection) as many:
        assert services.queue_due_periods(now=at(2026, 1, 31, 0, 30)) == 0
    assert (len(windows_walked), len(many)) == (few_windows, len(few))
    # The next closed window is queued, at the same cost.
    windows_walked.clear()
    assert services.queue_due_periods(now=at(2026, 2, 1, 0, 30)) == 1
    assert len(windows_walked) == few_windows + 1
    assert Period.objects.filter(monitor=day_monitor).latest("start").start == at(2026, 1, 31)


def test_the_schedule_still_fills_windows_missed_before_a_later_period(day_monitor, queued):
    """The worker was down from Jan 3 to Jan 6, and the current day was asked for meanwhile:
    the days it missed are queued once it is back, not only those after the latest."""
    add_days(day_monitor, 2)  # Jan 1 and 2
    Period.objects.create(monitor=day_monitor, kind="Day", start=at(2026, 1, 6), end=at(2026, 1, 7))
    assert services.queue_due_periods(now=at(2026, 1, 7, 0, 1)) == 3
    starts = sorted(Period.objects.filter(monitor=day_monitor).values_list("start", flat=True))
    assert starts == [at(2026, 1, day) for day in range(1, 7)]


def _due_before_the_fix(monitor: Monitor, now: datetime) -> set[datetime]:
    """What the schedule queued before it looked only after the latest period: every
    closed window since the registration without a period of the monitor's kind."""
    existing = set(
        Period.objects.filter(monitor=monitor, kind=monitor.period).values_list("start", flat=True)
    )
    return {
        start
        for start, _ in periods.closed_since(monitor.period, monitor.registered_at, now)
        if start not in existing
    }


def test_the_schedule_queues_exactly_what_it_queued_before(day_monitor, queued):
    """Random histories: the windows since the registration all there up to some day (the
    usual case), or with gaps; periods of an earlier registration, of another kind, asked
    for before the registration or for the current window."""
    rng = random.Random(20261206)
    histories = {"without gaps": 0, "with gaps": 0}
    for scenario in range(80):
        kind = rng.choice(periods.KINDS)
        registered = at(2026, 1, 1) + timedelta(days=rng.randrange(400), hours=rng.randrange(24))
        step = {"Day": 1, "Week": 7, "Month": 31, "Year": 366}[kind]
        now = registered + timedelta(days=step * rng.randrange(0, 12), hours=rng.randrange(24))
        filled_until = registered + (now - registered) * rng.random()
        kept = rng.choice([1.0, 1.0, 0.7])  # the share of windows before filled_until that have a period
        histories["without gaps" if kept == 1.0 else "with gaps"] += 1
        with transaction.atomic():
            Monitor.objects.filter(pk=day_monitor.pk).update(period=kind, registered_at=registered)
            monitor = Monitor.objects.get(pk=day_monitor.pk)
            window = periods.bounds(kind, registered - timedelta(days=step * 3))
            while window[0] <= now:
                current = window[1] > now
                if (window[0] <= filled_until and rng.random() < kept) or (current and rng.random() < 0.3):
                    Period.objects.create(
                        monitor=monitor,
                        kind=kind,
                        start=window[0],
                        end=window[1],
                        registered_at=rng.choice([registered, registered, registered - timedelta(days=40)]),
                    )
                if rng.random() < 0.1:
                    other = "Day" if kind != "Day" else "Week"
                    start, end = periods.bounds(other, window[0])
                    Period.objects.get_or_create(
                        monitor=monitor, kind=other, start=start, defaults={"end": end}
                    )
                window = periods.bounds(kind, window[1])
            expected = _due_before_the_fix(monitor, now - services.CLOSE_GRACE)
            before = set(Period.objects.values_list("pk", flat=True))
            assert services.queue_due_periods(now=now) == len(expected)
            made = set(Period.objects.exclude(pk__in=before).values_list("kind", "start"))
            assert made == {(kind, start) for start in expected}, (scenario, kind, registered, now)
            transaction.set_rollback(True)
    assert min(histories.values()) >= 20, histories


# -------------------------------------------------------------------------- periods list


def test_the_periods_list_takes_the_same_queries_at_3_and_30_periods(cast, run):
    model = deployed_model(cast.group, run)
    monitor = make_monitor(model, run)
    for day in range(1, 4):
        make_period(monitor, day)
    client = api_client(cast.teammate)
    client.get(f"{API}/{model.hash}/periods")  # the first call also stamps the token's use
    with CaptureQueriesContext(connection) as few:
        assert len(client.get(f"{API}/{model.hash}/periods").json()["periods"]) == 3
    for day in range(4, 31):
        make_period(monitor, day, status=Period.Status.FAILED if day % 5 == 0 else Period.Status.SUCCEEDED)
    with CaptureQueriesContext(connection) as many:
        answer = client.get(f"{API}/{model.hash}/periods").json()["periods"]
    assert len(answer) == 30 and len(many) == len(few)
    assert all(period["current_registration"] for period in answer)
    assert [period["status"] for period in answer[:2]] == ["Failed", "Succeeded"]
    assert answer[1]["columns"][0]["rows"] == 60  # read off the period's counts


def test_the_periods_list_reads_no_log_and_no_bins(cast, run):
    """The list shows summaries: a period's log, SHAP means and progress, and its columns'
    bins and reference counts are the detail's (GET …/periods/<id>)."""
    model = deployed_model(cast.group, run)
    make_period(make_monitor(model, run), 1)
    with CaptureQueriesContext(connection) as queries:
        api_client(cast.teammate).get(f"{API}/{model.hash}/periods?limit=5")
    period_select = next(q["sql"] for q in queries if q["sql"].startswith('SELECT "monitors_period"."id"'))
    columns_select = next(q["sql"] for q in queries if 'FROM "monitors_columnresult"' in q["sql"])
    for field in ("log", "shap", "progress", "webhook_status"):
        assert f'"monitors_period"."{field}"' not in period_select, field
    for field in ("binning", "reference_counts"):
        assert f'"monitors_columnresult"."{field}"' not in columns_select, field


def test_following_a_running_period_costs_the_same_whatever_the_history(cast, run):
    """What the Monitoring tab asks every 3 s while a period runs: only the unfinished ones."""
    model = deployed_model(cast.group, run)
    monitor = make_monitor(model, run)
    running = make_period(monitor, 30, status=Period.Status.RUNNING)
    client = api_client(cast.teammate)
    url = f"{API}/{model.hash}/periods?status=Queued,Running"
    client.get(url)  # the first call also stamps the token's use
    with CaptureQueriesContext(connection) as few:
        small = client.get(url).content
    for day in range(1, 30):
        make_period(monitor, day)
    with CaptureQueriesContext(connection) as many:
        large = client.get(url).content
    assert len(many) == len(few) and len(large) == len(small)
    assert [period["id"] for period in client.get(url).json()["periods"]] == [running.pk]
