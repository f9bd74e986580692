"""The recorded calls' boolean columns are added in place on SQLite: Django copied the
whole table for each (34 s and 1 GB of free pages per column for 4 million calls, an
upgrade audit), while PostgreSQL adds them in place anyway."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring.models import PredictionRecord
from tests.helpers.monitors import deployed_model

BEFORE = [("monitoring", "0003_prediction_model_index_covered")]
AFTER = [("monitoring", "0005_prediction_record_payload_kept")]


@pytest.mark.django_db(transaction=True)
def test_the_recorded_calls_gain_their_columns_without_a_copy_of_the_table(cast):
    model = deployed_model(cast.group)
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps.get_model("monitoring", "PredictionRecord")
    for n in range(3):
        old.objects.create(
            model_id=model.pk, at=timezone.now(), status_code=200, latency_ms=n, input="{}", output="{}"
        )
    try:
        executor = MigrationExecutor(connection)
        with CaptureQueriesContext(connection) as migrated:
            executor.migrate(AFTER)
    finally:
        MigrationExecutor(connection).migrate(executor.loader.graph.leaf_nodes())
    statements = [query["sql"] for query in migrated.captured_queries]
    assert not [sql for sql in statements if "new__monitoring_predictionrecord" in sql], statements
    added = [
        sql for sql in statements if sql.startswith('ALTER TABLE "monitoring_predictionrecord" ADD COLUMN')
    ]
    assert len(added) == 2, statements
    rows = PredictionRecord.objects.filter(model=model)
    assert rows.count() == 3 and rows.filter(live=True, payload_kept=True).count() == 3
