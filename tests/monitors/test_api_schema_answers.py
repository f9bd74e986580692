"""Monitoring's answers are what the platform's OpenAPI document says they are."""

from __future__ import annotations

from tests.helpers.clients import api_client
from tests.helpers.monitors import make_monitor, make_period
from tests.helpers.openapi import assert_conforms, platform_document


def test_a_deleted_registrant_answers_null_as_documented(cast, model, run):
    # With a period: a null `last_period` is its own question (allOf + nullable, which
    # OpenAPI 3.0.3 reads as not nullable).
    make_period(make_monitor(model, run, cast.teammate), 26)
    cast.teammate.delete()
    response = api_client(cast.owner).get(f"/api/v1/monitoring/{model.hash}")
    assert response.status_code == 200 and response.json()["registered_by"] is None
    assert_conforms(platform_document(), "/api/v1/monitoring/{model_hash}", "get", response)
