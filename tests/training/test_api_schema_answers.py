"""Training's answers are what the platform's OpenAPI document says they are."""

from __future__ import annotations

from tests.helpers.clients import api_client
from tests.helpers.openapi import answer_schema, assert_conforms, platform_document
from tests.helpers.training import finished_run, make_experiment


def test_comparing_runs_answers_the_documented_shape(cast):
    experiment = make_experiment(cast.group, cast.owner)
    finished_run(experiment, number=1, metrics={"auc": 0.7})
    finished_run(experiment, number=2, metrics={"auc": 0.9, "f1": 0.5})
    document = platform_document()
    path = "/api/v1/training/experiments/{experiment_hash}/runs"
    schema = answer_schema(document, path, "get", 200)
    assert set(schema["required"]) == {"experiment", "sort", "order", "metrics", "count", "truncated", "runs"}
    response = api_client(cast.owner).get(f"/api/v1/training/experiments/{experiment.hash}/runs?sort=auc")
    body = response.json()
    assert response.status_code == 200 and body["metrics"] == ["auc", "f1"]
    assert (body["count"], body["truncated"]) == (2, False)
    assert [run["number"] for run in body["runs"]] == [2, 1]
    assert_conforms(document, path, "get", response)


def test_a_deleted_creator_and_requester_answer_null_as_documented(cast):
    experiment = make_experiment(cast.group, cast.teammate)
    finished_run(experiment, number=1, requested_by=cast.teammate)
    cast.teammate.delete()
    document = platform_document()
    client = api_client(cast.owner)
    base = "/api/v1/training/experiments"
    listed = client.get(base)
    assert [item["created_by"] for item in listed.json()["results"]] == [None]
    assert_conforms(document, base, "get", listed)
    detail = client.get(f"{base}/{experiment.hash}")
    assert detail.status_code == 200 and detail.json()["created_by"] is None
    assert_conforms(document, base + "/{experiment_hash}", "get", detail)
    run = client.get(f"{base}/{experiment.hash}/runs/1")
    assert run.status_code == 200 and run.json()["requested_by"] is None
    assert_conforms(document, base + "/{experiment_hash}/runs/{number}", "get", run)
