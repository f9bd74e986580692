"""An experiment with many runs: its detail and its comparison stay cheap and complete.

The detail loaded every run whole (log, params, summary: 132–258 ms at 1,101 runs), and
the comparison ranked only the newest 1,000 runs, so an older run never reached the top
(the third best by AUC was missing at 1,101 runs) and the answer did not say it was cut.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from tests.helpers.clients import api_client
from tests.helpers.training import make_experiment
from training.api import MAX_COMPARED_RUNS
from training.models import TrainingRun
from training.serializers import RunSummarySerializer

API = "/api/v1/training"
HEAVY = ('"log"', '"params"', '"summary"', '"frozen_requirements"', '"inputs"', '"artifacts"')


def _runs(experiment, count: int, *, auc=lambda number: 0.5, status=lambda number: "Succeeded") -> None:
    start = timezone.now() - timedelta(days=30)
    TrainingRun.objects.bulk_create(
        TrainingRun(
            experiment=experiment,
            number=number,
            name=f"run {number}",
            training_type=TrainingRun.TrainingType.EXTERNAL,
            status=status(number),
            python_version="3.11",
            requested_at=start + timedelta(minutes=number),
            started_at=start + timedelta(minutes=number),
            finished_at=start + timedelta(minutes=number, seconds=number % 7),
            metrics={"auc": auc(number), "f1": 0.25},
            params={"logged": {"max_iter": number}},
            summary={"rows": number},
            frozen_requirements="numpy==2.0.2\n" * 50,
            log="a line of the run's log\n" * 200,
        )
        for number in range(1, count + 1)
    )


def _run_queries(path: str, client) -> tuple[dict, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(path)
    assert response.status_code == 200, response.content
    table = f'"{TrainingRun._meta.db_table}"'
    return response.json(), [query["sql"] for query in captured.captured_queries if table in query["sql"]]


# ------------------------------------------------------------------- the experiment


def test_the_experiments_runs_are_read_without_their_logs_in_the_same_queries_for_3_or_30(cast):
    client = api_client(cast.owner)
    few, many = make_experiment(cast.group, name="few"), make_experiment(cast.group, name="many")
    _runs(few, 3)
    _runs(many, 30)
    few_body, few_queries = _run_queries(f"{API}/experiments/{few.hash}", client)
    body, queries = _run_queries(f"{API}/experiments/{many.hash}", client)
    assert len(queries) == len(few_queries)  # no query per run
    assert [run["number"] for run in body["runs"]] == list(range(30, 0, -1))
    reading_runs = [sql for sql in queries if '"metrics"' in sql]
    assert len(reading_runs) == 1
    assert not [column for column in HEAVY if column in reading_runs[0]], reading_runs[0]
    # Each run as a whole row shows it: the same fields and values, its URL included.
    run = TrainingRun.objects.get(experiment=many, number=17)
    whole = RunSummarySerializer(run).data
    [shown] = [row for row in body["runs"] if row["number"] == 17]
    assert shown == {**whole, "url": "http://testserver" + reverse("api-training-run", args=[many.hash, 17])}
    assert client.get(shown["url"]).json()["number"] == 17


# ------------------------------------------------------------------ the comparison


@pytest.fixture
def crowded(cast):
    """1,005 runs: the oldest is the best by AUC, the second oldest the third best."""
    experiment = make_experiment(cast.group)
    best = {1: 0.99, 2: 0.97, 700: 0.98}
    _runs(
        experiment,
        MAX_COMPARED_RUNS + 5,
        auc=lambda number: best.get(number, 0.5 + number / 10_000),
        status=lambda number: "Failed" if number in (3, 4) else "Succeeded",
    )
    return experiment


def test_every_run_is_ranked_and_the_answer_says_it_was_cut(cast, crowded):
    client = api_client(cast.owner)
    base = f"{API}/experiments/{crowded.hash}/runs"
    body = client.get(f"{base}?sort=auc").json()
    numbers = [run["number"] for run in body["runs"]]
    assert numbers[:3] == [1, 700, 2]
    assert (body["count"], body["truncated"]) == (MAX_COMPARED_RUNS + 5, True)
    assert len(numbers) == MAX_COMPARED_RUNS
    assert body["metrics"] == ["auc", "f1"]
    # The cut is the end of the sorted order: the worst Succeeded runs, then the Failed ones.
    assert set(range(1, MAX_COMPARED_RUNS + 6)) - set(numbers) == {7, 6, 5, 4, 3}

    worst_first = [run["number"] for run in client.get(f"{base}?sort=auc&order=asc").json()["runs"]]
    assert worst_first[:2] == [5, 6] and 1 not in worst_first

    newest = client.get(base).json()
    assert [run["number"] for run in newest["runs"]][:2] == [MAX_COMPARED_RUNS + 5, MAX_COMPARED_RUNS + 4]
    assert newest["truncated"] and newest["runs"][-1]["number"] == 6

    failed = client.get(f"{base}?sort=auc&status=Failed").json()
    assert [run["number"] for run in failed["runs"]] == [4, 3]
    assert (failed["count"], failed["truncated"]) == (2, False)


def test_a_comparison_reads_the_runs_without_their_logs(cast, crowded):
    _, queries = _run_queries(f"{API}/experiments/{crowded.hash}/runs?sort=auc", api_client(cast.owner))
    assert queries
    for sql in queries:
        assert not [column for column in HEAVY if column in sql], sql
