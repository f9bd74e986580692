"""The platform's OpenAPI document lists the error answers every operation can give
(portal.api_schema.document_error_answers), in the one error shape (groups.api.errors)."""

from __future__ import annotations

from django.test import Client
from openapi_spec_validator import validate

from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client, token_client
from tests.helpers.openapi import answer_schema, assert_conforms, operations, platform_document
from tests.helpers.uploads import sync_payload

ERROR = {"$ref": "#/components/schemas/Error"}


def _error_ref(operation: dict, status: str) -> dict:
    return operation["responses"][status]["content"]["application/json"]["schema"]


def test_every_operation_documents_its_error_answers_in_the_error_shape(db):
    document = platform_document()
    validate(document)
    checked = 0
    for path, method, operation in operations(document):
        if path == "/healthz":  # a probe: no input, no credentials, no object
            continue
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        if "{" in path:
            assert "404" in responses, where
        if {} not in operation.get("security", [{}]):
            assert {"401", "403"} <= set(responses), where
        has_query = any(p["in"] == "query" for p in operation.get("parameters", []))
        if "requestBody" in operation or has_query:
            assert "400" in responses, where
        for status in ("400", "401", "403"):
            if status in responses and not path.startswith("/api/v1/run/{model_hash}/executions/"):
                assert _error_ref(operation, status) == ERROR, (where, status)
        checked += 1
    assert checked > 70
    login = document["paths"]["/api/v1/auth/login"]["post"]
    assert _error_ref(login, "401") == _error_ref(login, "429") == ERROR  # wrong password, locked out
    error = document["components"]["schemas"]["Error"]
    assert error["required"] == ["detail", "code"]
    assert set(error["properties"]) == {"detail", "code", "errors"}


def test_declared_answers_are_kept(db):
    document = platform_document()
    # The monitor's own 404 (not monitored) and the run URL's own 401.
    monitor = document["paths"]["/api/v1/monitoring/{model_hash}"]["get"]["responses"]["404"]
    assert "monitor" in monitor["description"].lower()
    run = document["paths"]["/api/v1/run/{model_hash}"]["post"]["responses"]["401"]
    assert "group token" in run["description"]


def test_a_real_404_400_and_401_match_what_the_document_says(cast):
    document = platform_document()
    owner = api_client(cast.owner)
    missing = owner.get("/api/v1/models/0123456789abcdef")
    assert missing.status_code == 404 and missing.json()["code"] == "not_found"
    assert_conforms(document, "/api/v1/models/{model_hash}", "get", missing)

    bad = api_client(cast.admin).post("/api/v1/groups", {"name": ""}, format="json")
    assert bad.status_code == 400 and "name" in bad.json()["errors"]
    assert_conforms(document, "/api/v1/groups", "post", bad)

    anonymous = api_client().get("/api/v1/models")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    assert_conforms(document, "/api/v1/models", "get", anonymous)

    group_token = token_client(cast.group_token).get("/api/v1/groups")  # a group token on a user endpoint
    assert group_token.status_code == 401
    assert_conforms(document, "/api/v1/groups", "get", group_token)

    refused = Client().post(
        "/api/v1/auth/login",
        {"username": "owner", "password": PASSWORD + "x"},
        content_type="application/json",
    )
    assert refused.status_code == 401 and refused.json()["code"] == "authentication_failed"
    assert_conforms(document, "/api/v1/auth/login", "post", refused)

    forbidden = owner.post("/api/v1/groups", {"name": "mine"}, format="json")  # admins create groups
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "permission_denied"
    assert_conforms(document, "/api/v1/groups", "post", forbidden)


def test_a_validation_error_s_fields_are_in_the_documented_shape(cast):
    document = platform_document()
    schema = answer_schema(document, "/api/v1/models", "post", 400)
    assert schema["properties"]["errors"]["type"] == "object"
    bad = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(python_version="2.7"), format="multipart"
    )
    assert bad.status_code == 400 and "python_version" in bad.json()["errors"]
    assert_conforms(document, "/api/v1/models", "post", bad)


def test_state_conflicts_a_refused_format_and_the_page_size_range_are_documented(cast):
    document = platform_document()
    restart = document["paths"]["/api/v1/models/{model_hash}/restart"]["post"]
    assert _error_ref(restart, "409") == ERROR
    assert "409" not in document["paths"]["/api/v1/models/{model_hash}"]["get"]["responses"]
    code = document["paths"]["/api/v1/models/{model_hash}/code"]["get"]
    assert _error_ref(code, "406") == ERROR
    for path, method, operation in operations(document):
        for parameter in operation.get("parameters", []):
            if parameter["name"] == "page_size":
                assert parameter["schema"] == {"type": "integer", "minimum": 1, "maximum": 500}, (
                    method,
                    path,
                )
    # What the document now says a real answer is.
    refused = api_client(cast.owner).get("/api/v1/models?page_size=0")
    assert refused.status_code == 400
    assert_conforms(document, "/api/v1/models", "get", refused)
