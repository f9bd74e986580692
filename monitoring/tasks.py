"""Retention of recorded production inputs: old calls, and every call of a deleted model."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

from monitoring.models import DroppedRecords, PredictionRecord


def purge_old_records() -> int:
    cutoff = timezone.now() - timedelta(days=settings.RECORD_RETENTION_DAYS)
    deleted, _ = PredictionRecord.objects.filter(at__lt=cutoff).delete()
    DroppedRecords.objects.filter(at__lt=cutoff).delete()
    return deleted


def purge_records_of(models: QuerySet) -> int:
    """Remove every recorded call of these models (the models app says which are gone)."""
    deleted, _ = PredictionRecord.objects.filter(model__in=models).delete()
    return deleted
