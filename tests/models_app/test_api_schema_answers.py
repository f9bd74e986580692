"""Models' answers are what the platform's OpenAPI document says they are."""

from __future__ import annotations

import pytest

from models_app.models import MLModel, ModelEvent
from tests.helpers.clients import api_client
from tests.helpers.openapi import answer_schema, assert_conforms, platform_document
from tests.helpers.uploads import sync_payload


@pytest.fixture
def model(cast) -> MLModel:
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    assert response.status_code == 201, response.content
    return MLModel.objects.get(hash=response.json()["hash"])


def test_deleting_a_model_or_a_version_answers_200_with_its_status_as_documented(cast, model):
    document = platform_document()
    client = api_client(cast.owner)
    payload = {k: v for k, v in sync_payload().items() if k not in ("name", "group", "operation")}
    added = client.post(f"/api/v1/models/{model.hash}/versions", payload, format="multipart")
    assert added.status_code == 201, added.content
    version = client.delete(f"/api/v1/models/{model.hash}/versions/2")
    assert version.status_code == 200 and version.json()["status"] == "Deleted"
    assert_conforms(document, "/api/v1/models/{model_hash}/versions/{version}", "delete", version)
    deleted = client.delete(f"/api/v1/models/{model.hash}")
    assert deleted.status_code == 200 and deleted.json()["status"] == "Deleted"
    assert_conforms(document, "/api/v1/models/{model_hash}", "delete", deleted)
    for path in ("/api/v1/models/{model_hash}", "/api/v1/models/{model_hash}/versions/{version}"):
        assert "204" not in document["paths"][path]["delete"]["responses"]


@pytest.mark.parametrize("suffix", ["", "/versions/1"])
def test_the_status_has_build_only_with_include_log_as_documented(cast, model, suffix):
    document = platform_document()
    path = "/api/v1/models/{model_hash}" + suffix.replace("/1", "/{version}") + "/status"
    schema = answer_schema(document, path, "get", 200)
    assert "build" in schema["properties"] and "build" not in schema["required"]
    assert "include=log" in schema["properties"]["build"]["description"]
    client = api_client(cast.owner)
    plain = client.get(f"/api/v1/models/{model.hash}{suffix}/status")
    assert plain.status_code == 200 and "build" not in plain.json()
    assert_conforms(document, path, "get", plain)
    with_log = client.get(f"/api/v1/models/{model.hash}{suffix}/status?include=log")
    assert with_log.json()["build"]["number"] == 1
    assert_conforms(document, path, "get", with_log)
    # Before its first build: null, which `allOf: [$ref], nullable: true` did not allow
    # (OpenAPI 3.0.3 counts `nullable` only beside a `type`).
    model.builds.all().delete()
    before_build = client.get(f"/api/v1/models/{model.hash}{suffix}/status?include=log")
    assert before_build.status_code == 200 and before_build.json()["build"] is None
    assert_conforms(document, path, "get", before_build)


def test_a_share_link_s_users_may_be_null_as_documented(cast, model):
    document = platform_document()
    client = api_client(cast.owner)
    url = f"/api/v1/models/{model.hash}/share-links"
    created = client.post(url, {"expires_in": 3600}, format="json")
    assert created.status_code == 201
    listed = client.get(url)
    assert listed.json()[0]["revoked_by"] is None  # an active link
    assert_conforms(document, "/api/v1/models/{model_hash}/share-links", "get", listed)
    link = answer_schema(document, "/api/v1/models/{model_hash}/share-links", "get", 200)["items"]
    assert "revoked" in link["properties"]["revoked_by"]["description"]
    assert "Required. 150 characters" not in link["properties"]["revoked_by"].get("description", "")


def test_a_platform_event_and_a_deleted_uploader_answer_null_as_documented(cast, model):
    """The platform's own events have no actor, and a deleted account leaves none."""
    ModelEvent.objects.create(model=model, actor=None, action="version_live", detail="version 1 deployed")
    cast.owner.delete()  # the uploader: created_by and the upload's actor become NULL
    document = platform_document()
    client = api_client(cast.admin)
    events = client.get(f"/api/v1/models/{model.hash}/events")
    assert events.status_code == 200
    assert {event["actor"] for event in events.json()["results"]} == {None}
    assert "version_live" in [event["action"] for event in events.json()["results"]]
    assert_conforms(document, "/api/v1/models/{model_hash}/events", "get", events)
    for url, path in [
        (f"/api/v1/models/{model.hash}", "/api/v1/models/{model_hash}"),
        (f"/api/v1/models/{model.hash}/versions/1", "/api/v1/models/{model_hash}/versions/{version}"),
    ]:
        answer = client.get(url)
        assert answer.status_code == 200 and answer.json()["created_by"] is None
        assert_conforms(document, path, "get", answer)
    versions = client.get(f"/api/v1/models/{model.hash}/versions")
    assert [version["created_by"] for version in versions.json()["results"]] == [None]
    assert_conforms(document, "/api/v1/models/{model_hash}/versions", "get", versions)
