"""Retention of recorded production inputs."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from monitoring.models import DroppedRecords, PredictionRecord


def purge_old_records() -> int:
    cutoff = timezone.now() - timedelta(days=settings.RECORD_RETENTION_DAYS)
    deleted, _ = PredictionRecord.objects.filter(at__lt=cutoff).delete()
    DroppedRecords.objects.filter(at__lt=cutoff).delete()
    return deleted
