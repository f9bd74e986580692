"""Executions' answers are what the platform's OpenAPI document says they are."""

from __future__ import annotations

from tests.helpers.executions import submit
from tests.helpers.openapi import answer_schema, assert_conforms, platform_document


def test_an_execution_submitted_with_the_group_token_has_a_null_requested_by_as_documented(caller, deploy):
    model = deploy()
    assert submit(caller, model).status_code == 202
    document = platform_document()
    path = "/api/v1/run/{model_hash}/executions/{execution_id}"
    described = caller.get(f"/api/v1/run/{model.hash}/executions/1")
    assert described.status_code == 200 and described.json()["requested_by"] is None
    assert_conforms(document, path, "get", described)
    field = answer_schema(document, path, "get", 200)["properties"]["requested_by"]
    assert field["nullable"] is True and "null when submitted with the group token" in field["description"]
    listed = caller.get(f"/api/v1/run/{model.hash}/executions")
    assert_conforms(document, "/api/v1/run/{model_hash}/executions", "get", listed)
