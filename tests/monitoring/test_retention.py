"""Retention of recorded calls deletes in bounded batches, each committed on its own.

One DELETE of every expired call held SQLite's write lock 427 ms at 100k calls (calls
waiting to be recorded wait that long); a deleted model's millions would hold it seconds.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import timedelta

import pytest
from django.db import connection, connections
from django.utils import timezone

from models_app.models import MLModel
from monitoring import tasks
from monitoring.models import PredictionRecord
from tests.helpers.monitors import deployed_model

pytestmark = pytest.mark.django_db(transaction=True)
DELETING_CALLS = 'DELETE FROM "monitoring_predictionrecord"'
assert PredictionRecord._meta.db_table in DELETING_CALLS


def _calls(model, count: int, *, days_ago: float) -> None:
    at = timezone.now() - timedelta(days=days_ago)
    PredictionRecord.objects.bulk_create(
        PredictionRecord(model=model, at=at, status_code=200, latency_ms=1, input="{}") for _ in range(count)
    )


def _count_elsewhere() -> int:
    """The calls another connection sees: what earlier batches committed."""

    def count() -> int:
        try:
            return PredictionRecord.objects.count()
        finally:
            connections.close_all()

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(count).result()


@contextmanager
def deletes_seen():
    """[(rows this DELETE removed, calls another connection saw just before it)]."""
    seen = []

    def watch(execute, sql, params, many, context):
        if not sql.startswith(DELETING_CALLS):
            return execute(sql, params, many, context)
        before = _count_elsewhere()
        result = execute(sql, params, many, context)
        seen.append((context["cursor"].rowcount, before))
        return result

    with connection.execute_wrapper(watch):
        yield seen


@pytest.fixture
def small_batches(monkeypatch):
    monkeypatch.setattr(tasks, "PURGE_BATCH", 10, raising=False)


def test_expired_calls_go_in_bounded_batches_each_committed(cast, settings, small_batches):
    settings.RECORD_RETENTION_DAYS = 7
    model = deployed_model(cast.group)
    _calls(model, 35, days_ago=8)
    _calls(model, 4, days_ago=6)  # within retention
    with deletes_seen() as seen:
        assert tasks.purge_old_records() == 35
    assert [rows for rows, _ in seen] == [10, 10, 10, 5]
    # Each batch was committed before the next began: another connection saw it gone.
    assert [before for _, before in seen] == [39, 29, 19, 9]
    assert PredictionRecord.objects.count() == 4
    assert not PredictionRecord.objects.filter(at__lt=timezone.now() - timedelta(days=7)).exists()


def test_a_deleted_models_calls_go_in_bounded_batches_and_no_one_elses(cast, small_batches):
    gone = deployed_model(cast.group, status=MLModel.Status.DELETED)
    kept = deployed_model(cast.group, name="kept")
    _calls(gone, 25, days_ago=0)
    _calls(kept, 3, days_ago=0)
    with deletes_seen() as seen:
        assert tasks.purge_records_of(MLModel.objects.filter(status=MLModel.Status.DELETED)) == 25
    assert [rows for rows, _ in seen] == [10, 10, 5]
    assert list(PredictionRecord.objects.values_list("model", flat=True).distinct()) == [kept.pk]


def test_a_pass_stops_after_its_batches_and_the_next_ones_finish(cast, settings, small_batches, monkeypatch):
    monkeypatch.setattr(tasks, "PURGE_MAX_BATCHES", 2, raising=False)
    settings.RECORD_RETENTION_DAYS = 7
    model = deployed_model(cast.group)
    _calls(model, 45, days_ago=30)
    _calls(model, 2, days_ago=1)
    with deletes_seen() as seen:
        passes = [tasks.purge_old_records() for _ in range(4)]
    assert passes == [20, 20, 5, 0]
    assert max(rows for rows, _ in seen) == 10
    assert PredictionRecord.objects.count() == 2
