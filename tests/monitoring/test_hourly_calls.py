"""Recorded calls counted by the hour (HourlyCalls): written with the calls, summed by the
call statistics, kept past retention, gone with a deleted model, backfilled on upgrade."""

from __future__ import annotations

import importlib
import threading
from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.db.models import QuerySet

from models_app.models import MLModel
from monitoring import tasks
from monitoring.models import HourlyCalls, PredictionRecord
from monitoring.recorder import Recorder
from monitoring.stats import call_stats, calls_since
from tests.helpers.calls import call, record_calls
from tests.helpers.monitors import deployed_model

T0 = datetime(2026, 11, 1, 10, tzinfo=UTC)  # on the hour


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def hours(model) -> dict[datetime, tuple[int, int]]:
    return {row.hour: (row.calls, row.errors) for row in HourlyCalls.objects.filter(model=model)}


def test_each_batch_adds_its_calls_to_their_models_hours(cast):
    first, second = deployed_model(cast.group), deployed_model(cast.group, name="second")
    record_calls(
        first,
        {"at": at(1)},
        {"at": at(59), "status_code": 500},
        {"at": at(60), "status_code": 422},
        {"at": at(61)},
    )
    record_calls(second, {"at": at(30), "status_code": 404})
    record_calls(first, {"at": at(5)}, {"at": at(70), "status_code": 503})  # added to, not replacing
    assert hours(first) == {T0: (3, 1), T0 + timedelta(hours=1): (3, 2)}
    assert hours(second) == {T0: (1, 1)}
    # A time in another zone counts in its UTC hour.
    record_calls(second, {"at": at(30).astimezone(timezone(timedelta(hours=5, minutes=30)))})
    assert hours(second) == {T0: (2, 1)}


def test_the_days_first_part_hour_is_counted_from_the_records_the_rest_from_the_hours(cast):
    model = deployed_model(cast.group)
    record_calls(
        model,
        {"at": at(20)},  # before the window
        {"at": at(40), "status_code": 500},  # in the window's first, partial hour
        {"at": at(70)},
        {"at": at(24 * 60 + 25), "status_code": 400},  # the window's last hour
    )
    now = at(24 * 60 + 30)  # the window starts at 10:30
    stats = call_stats(model.pk, now=now)
    assert (stats["total"], stats["day"], stats["day_errors"]) == (4, 3, 2)
    assert calls_since(at(30), model_id=model.pk) == (3, 2)
    assert calls_since(at(60), model_id=model.pk) == (2, 1)  # on the hour: the hours alone
    assert calls_since(at(41), model__in=MLModel.objects.filter(pk=model.pk)) == (2, 1)


def test_a_models_all_time_count_outlives_retention_of_its_records(cast, settings):
    settings.RECORD_RETENTION_DAYS = 7
    model = deployed_model(cast.group)
    now = datetime.now(UTC)
    record_calls(model, *({"at": now - timedelta(days=30, minutes=n)} for n in range(5)), {"at": now})
    assert tasks.purge_old_records() == 5
    assert PredictionRecord.objects.filter(model=model).count() == 1
    stats = call_stats(model.pk)
    assert (stats["total"], stats["day"]) == (6, 1)


def test_a_deleted_models_hours_go_with_its_calls(cast):
    gone = deployed_model(cast.group, status=MLModel.Status.DELETED)
    kept = deployed_model(cast.group, name="kept")
    record_calls(gone, {"at": at(1)}, {"at": at(90)})
    record_calls(kept, {"at": at(1)})
    assert tasks.purge_records_of(MLModel.objects.filter(status=MLModel.Status.DELETED)) == 2
    assert not HourlyCalls.objects.filter(model=gone).exists()
    assert hours(kept) == {T0: (1, 0)}


@pytest.mark.django_db(transaction=True)
def test_web_processes_adding_to_the_same_hour_at_once_lose_no_call(cast):
    """Each thread is a web process's writer with its own connection; on PostgreSQL their
    upserts of one row race (the CI's second pass), on SQLite they take turns."""
    model = deployed_model(cast.group)
    writers, batches, calls_per_batch = 4, 15, 20
    start = threading.Barrier(writers)
    failures: list[BaseException] = []

    def write() -> None:
        try:
            start.wait(10)
            for _ in range(batches):
                Recorder._insert(
                    [call(model, at=at(20), status_code=200 + 300 * (n % 2)) for n in range(calls_per_batch)]
                )
        except BaseException as exc:  # reported below, not lost in the thread
            failures.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write) for _ in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures, failures
    expected = writers * batches * calls_per_batch
    assert hours(model) == {T0: (expected, expected // 2)}
    assert PredictionRecord.objects.filter(model=model).count() == expected


BEFORE = [("monitoring", "0007_prediction_covering_index")]
AFTER = [("monitoring", "0008_hourly_calls")]


@pytest.mark.django_db(transaction=True)
def test_the_upgrade_counts_the_calls_already_recorded(cast, monkeypatch):
    # A batch of hours at a time, not a list of every hour of every model (700 MB for a million).
    monkeypatch.setattr(importlib.import_module("monitoring.migrations.0008_hourly_calls"), "BATCH", 2)
    inserted = []
    bulk_create = QuerySet.bulk_create
    monkeypatch.setattr(
        QuerySet,
        "bulk_create",
        lambda self, objs, *a, **kw: inserted.append(len(objs)) or bulk_create(self, objs, *a, **kw),
    )
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    model = deployed_model(cast.group)
    other = deployed_model(cast.group, name="other")
    for minutes, status in ((1, 200), (59, 500), (61, 200), (24 * 60, 404)):
        PredictionRecord.objects.create(
            model=model, at=at(minutes), status_code=status, latency_ms=1, input="{}", output="{}"
        )
    PredictionRecord.objects.create(model=other, at=at(3), status_code=200, latency_ms=1, input="{}")
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
    finally:
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())
    assert hours(model) == {T0: (2, 1), T0 + timedelta(hours=1): (1, 0), T0 + timedelta(hours=24): (1, 1)}
    assert hours(other) == {T0: (1, 0)}
    assert call_stats(model.pk, now=at(24 * 60 + 30))["total"] == 4
    assert sum(inserted) == 4 and max(inserted) <= 2
