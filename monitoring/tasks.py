"""Retention of recorded production inputs: old calls, and every call of a deleted model.

Old calls' hourly counts (HourlyCalls) stay, a few rows a day, so a model's all-time count
outlives its records; a deleted model's go with its calls.

Deleted in batches, each its own transaction: on SQLite a DELETE holds the database's one
write lock until it commits, and recording calls waits for it (100k calls in one statement
held it 427 ms; a deleted model's millions would have stopped recording for seconds).
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import QuerySet
from django.utils import timezone

from monitoring.models import DroppedRecords, HourlyCalls, PredictionRecord

# Calls per DELETE: a few milliseconds of the write lock each.
PURGE_BATCH = 5_000
# Batches per pass (the housekeeping runs every minute): what is left goes in the next ones.
PURGE_MAX_BATCHES = 100


def purge_old_records() -> int:
    cutoff = timezone.now() - timedelta(days=settings.RECORD_RETENTION_DAYS)
    deleted = delete_in_batches(PredictionRecord.objects.filter(at__lt=cutoff))
    DroppedRecords.objects.filter(at__lt=cutoff).delete()
    return deleted


def purge_records_of(models: QuerySet) -> int:
    """Remove every recorded call of these models (the models app says which are gone),
    and their hourly counts."""
    HourlyCalls.objects.filter(model__in=models).delete()
    return delete_in_batches(PredictionRecord.objects.filter(model__in=models))


def delete_in_batches(calls: QuerySet) -> int:
    """Delete these recorded calls PURGE_BATCH at a time, each batch committed on its own,
    at most PURGE_MAX_BATCHES of them; returns how many were deleted.

    Each batch is one `DELETE … WHERE id IN (SELECT id … LIMIT n)`: the subquery walks the
    index of the filter, so a batch costs the same however many calls are left. On
    SQLite the loop then rests as long as the batch held the lock, so that calls waiting
    to be recorded get it in between.
    """
    deleted = 0
    for _ in range(PURGE_MAX_BATCHES):
        started = time.monotonic()
        with transaction.atomic():
            batch = calls.order_by().values("pk")[:PURGE_BATCH]
            count, _ = PredictionRecord.objects.filter(pk__in=batch).delete()
        deleted += count
        if count < PURGE_BATCH:
            break
        if connection.vendor == "sqlite":
            time.sleep(time.monotonic() - started)
    return deleted
