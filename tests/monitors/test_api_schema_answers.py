"""Monitoring's answers are what the platform's OpenAPI document says they are."""

from __future__ import annotations

from tests.helpers.clients import api_client
from tests.helpers.monitors import make_monitor, make_period
from tests.helpers.openapi import assert_conforms, platform_document


def test_a_monitor_before_its_first_period_answers_null_as_documented(cast, model, run):
    """`last_period` was documented `allOf: [$ref], nullable: true`, which OpenAPI 3.0.3
    reads as not nullable (`nullable` counts only beside a `type`): now `oneOf` with null."""
    make_monitor(model, run, cast.owner)
    response = api_client(cast.owner).get(f"/api/v1/monitoring/{model.hash}")
    assert response.status_code == 200 and response.json()["last_period"] is None
    assert_conforms(platform_document(), "/api/v1/monitoring/{model_hash}", "get", response)


def test_a_deleted_registrant_answers_null_as_documented(cast, model, run):
    make_period(make_monitor(model, run, cast.teammate), 26)
    cast.teammate.delete()
    response = api_client(cast.owner).get(f"/api/v1/monitoring/{model.hash}")
    assert response.status_code == 200 and response.json()["registered_by"] is None
    assert_conforms(platform_document(), "/api/v1/monitoring/{model_hash}", "get", response)


def test_the_periods_list_filters_are_documented_and_answer_as_documented(cast, model, run):
    monitor = make_monitor(model, run, cast.owner)
    for day in (25, 26):
        make_period(monitor, day)
    document = platform_document()
    path = "/api/v1/monitoring/{model_hash}/periods"
    parameters = {p["name"]: p for p in document["paths"][path]["get"]["parameters"] if p["in"] == "query"}
    assert set(parameters) == {"status", "limit"}
    assert parameters["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 500}
    client = api_client(cast.owner)
    newest = client.get(f"/api/v1/monitoring/{model.hash}/periods?status=Succeeded&limit=1")
    assert newest.status_code == 200 and len(newest.json()["periods"]) == 1
    assert_conforms(document, path, "get", newest)
    refused = client.get(f"/api/v1/monitoring/{model.hash}/periods?limit=0")
    assert refused.status_code == 400
    assert_conforms(document, path, "get", refused)
