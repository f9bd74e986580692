"""Counts that /metrics and the dashboard make on every request come from an index.

Without one, /metrics' builds by status read every build with its log, and the dashboard's
"executions in the last 24 h" read every execution of the visible models (7–8 ms at 20k
executions, 1 ms from the index). SQLite's plan says "USING COVERING INDEX" when the
table's rows are not read.
"""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from portal.metrics import DatabaseReads, StatesCollector
from tests.helpers.cast import PASSWORD

pytestmark = pytest.mark.skipif(
    connection.vendor != "sqlite", reason="EXPLAIN QUERY PLAN is SQLite's; PostgreSQL plans by its statistics"
)


def _plan(sql: str) -> str:
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN QUERY PLAN " + sql)
        return " | ".join(row[-1] for row in cursor.fetchall())


def _reading(queries: list[dict], table: str) -> list[str]:
    return [query["sql"] for query in queries if f'FROM "{table}"' in query["sql"]]


def test_metrics_count_builds_by_status_from_an_index(db):
    with CaptureQueriesContext(connection) as captured:
        StatesCollector(DatabaseReads()).collect()
    [sql] = _reading(captured.captured_queries, "models_app_modelbuild")
    assert "GROUP BY" in sql
    assert "USING COVERING INDEX modelbuild_status" in _plan(sql), sql


def test_the_dashboard_counts_the_days_executions_from_an_index(cast, client):
    client.login(username=cast.owner.username, password=PASSWORD)
    with CaptureQueriesContext(connection) as captured:
        assert client.get("/").status_code == 200
    counts = [
        sql
        for sql in _reading(captured.captured_queries, "executions_execution")
        if "COUNT(" in sql and '"requested_at" >=' in sql
    ]
    assert len(counts) == 1, counts
    assert "USING COVERING INDEX execution_model_requested" in _plan(counts[0]), counts[0]
