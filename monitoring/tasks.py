"""Retention of recorded production inputs: old calls, and every call of a deleted model."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone

from models_app.models import MLModel
from monitoring.models import DroppedRecords, PredictionRecord


def purge_old_records() -> int:
    cutoff = timezone.now() - timedelta(days=settings.RECORD_RETENTION_DAYS)
    deleted, _ = PredictionRecord.objects.filter(at__lt=cutoff).delete()
    # A web process may still have had calls of a model in its buffer when the model
    # was deleted (they are written up to half a second later): remove those too.
    stragglers, _ = PredictionRecord.objects.filter(model__status=MLModel.Status.DELETED).delete()
    DroppedRecords.objects.filter(at__lt=cutoff).delete()
    return deleted + stragglers
