"""Data migrations of recorded calls, run on rows as an older release left them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from models_app.models import ModelEvent
from monitoring.models import PredictionRecord
from tests.helpers.monitors import deployed_model

BEFORE = [("monitoring", "0005_prediction_record_payload_kept")]
AFTER = [("monitoring", "0006_mark_earlier_trial_calls")]
T0 = datetime(2026, 11, 1, tzinfo=UTC)


def at(hours: float) -> datetime:
    return T0 + timedelta(hours=hours)


@pytest.mark.django_db(transaction=True)
def test_calls_a_version_answered_while_another_was_live_are_marked_not_live(cast):
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    model = deployed_model(cast.group)
    deployed_model(cast.group, line=model, version=2)
    deployed_model(cast.group, line=model, version=3)
    single = deployed_model(cast.group, name="no versions")
    # Version 2 went live at hour 10, back to 1 at 20, version 3 at 30 (rows as 0004 left them: all live).
    for hours, detail in (
        (10, "version 2 deployed and serves the model's run URL"),
        (20, "version 1 serves the model's run URL"),
        (30, "version 3 serves the model's run URL"),
    ):
        ModelEvent.objects.create(model=model, action="version_live", detail=detail, at=at(hours))
    ModelEvent.objects.create(model=model, action="settings_changed", detail="version 9 x", at=at(25))
    calls = {  # (hours, version that answered): live as it should be after the migration
        (5, 1): True,
        (5, 2): False,  # the candidate's trial before it went live
        (15, 2): True,
        (15, 1): False,
        (25, 1): True,  # the rollback; the unrelated event at 25 changes nothing
        (25, 3): False,
        (35, 3): True,
        (35, 2): False,
    }
    for hours, version in calls:
        PredictionRecord.objects.create(
            model=model, version=version, at=at(hours), status_code=200, latency_ms=1, input="{}", live=True
        )
    PredictionRecord.objects.create(model=single, at=at(5), status_code=200, latency_ms=1, input="{}")
    try:
        executor = MigrationExecutor(connection)
        executor.migrate(AFTER)
    finally:
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())

    found = {
        (round((record.at - T0) / timedelta(hours=1)), record.version): record.live
        for record in PredictionRecord.objects.filter(model=model)
    }
    assert found == calls
    assert PredictionRecord.objects.get(model=single).live
