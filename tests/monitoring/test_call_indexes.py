"""Reads of recorded calls that must not visit the table's rows.

A recorded call's row carries its request and answer: a query that counts or measures a
day of calls by reading the rows read every one of them (360 ms for the call statistics of
a model with 215k calls a day; 423 ms for a page count of 300k calls by version and live).
The one index by model covers what those queries read, which SQLite's plan says as
"USING COVERING INDEX".
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring.models import PredictionRecord
from monitoring.stats import call_stats
from tests.helpers.calls import record_calls
from tests.helpers.clients import api_client
from tests.helpers.monitors import deployed_model

pytestmark = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans by its statistics"
)
TABLE = PredictionRecord._meta.db_table


def _plans(queries: list[dict]) -> dict[str, str]:
    """{sql: its plan, one line} of the captured queries that read recorded calls."""
    plans = {}
    with connection.cursor() as cursor:
        for query in queries:
            if f'FROM "{TABLE}"' not in query["sql"]:
                continue
            cursor.execute("EXPLAIN QUERY PLAN " + query["sql"])
            plans[query["sql"]] = " | ".join(row[-1] for row in cursor.fetchall())
    return plans


@pytest.fixture
def model(cast):
    model = deployed_model(cast.group)
    now = timezone.now()
    record_calls(
        model,
        *(
            {
                "version": 1 + n % 2,
                "live": n % 3 != 0,
                "at": now - timedelta(hours=n),
                "status_code": 200 if n % 4 else 500,
                "latency_ms": 1.5 * n,
                "input": '{"a": 1}',
                "output": '{"pred": 1}',
            }
            for n in range(30)
        ),
    )
    return model


def test_call_statistics_read_the_index_alone(model):
    with CaptureQueriesContext(connection) as captured:
        stats = call_stats(model.pk)
    assert (stats["total"], stats["day"], stats["day_errors"]) == (30, 24, 6)
    plans = _plans(captured.captured_queries)
    # The day's first part-hour counted, its latencies, the last call (whole hours and the
    # all-time count are HourlyCalls').
    assert len(plans) == 3, plans
    for sql, plan in plans.items():
        assert "USING COVERING INDEX monitoring_calls_by_model" in plan, (sql, plan)


def test_counting_a_models_calls_by_version_and_live_reads_the_index_alone(cast, model):
    client = api_client(cast.owner)
    with CaptureQueriesContext(connection) as captured:
        body = client.get(f"/api/v1/models/{model.hash}/predictions?live=true&version=1").json()
    assert body["count"] == PredictionRecord.objects.filter(model=model, version=1, live=True).count() == 10
    counts = {sql: plan for sql, plan in _plans(captured.captured_queries).items() if "COUNT(" in sql}
    assert len(counts) == 1, counts
    [(sql, plan)] = counts.items()
    assert '"version" = 1' in sql and '"live"' in sql
    assert "USING COVERING INDEX monitoring_calls_by_model" in plan, (sql, plan)
