"""The answers the platform gives around an operation's own work are in the OpenAPI
document (portal.api_schema.document_error_answers), on the operations that give them:

- 415 for a body of a type the operation does not read, or with a Content-Encoding;
- 413 for a body declared over its limit (groups.api.middleware.ApiRequestSizeMiddleware);
- 404 for a page past the last of a list (groups.api.pagination);
- 507 for an upload the disk has no room for (groups.api.errors.checked_files);
- 503 when the database does not answer (portal.database_outage), on every operation.

The document used to list none of them. Each sweep below takes the operations from the
document and gets the answer from the real view, so a view that stops giving one, or an
operation that starts to without the document saying so, fails here.
"""

from __future__ import annotations

import gzip
import json
import uuid

from tests.helpers.cast import PASSWORD
from tests.helpers.clients import token_client
from tests.helpers.openapi import Endpoints, assert_conforms, operations, platform_document
from tests.helpers.uploads import file
from tests.portal.test_database_outage import database_down

ERROR = {"$ref": "#/components/schemas/Error"}
UPLOAD = "multipart/form-data"
LOGIN = {"username": "owner", "password": PASSWORD}


def _error_ref(operation: dict, status: str) -> dict:
    return operation["responses"][status]["content"]["application/json"]["schema"]


def _takes_files(endpoints: Endpoints, content: dict) -> bool:
    if UPLOAD not in content:
        return False
    parts = endpoints.schema({UPLOAD: content[UPLOAD]}).get("properties", {}).values()
    return any("binary" in (part.get("format"), part.get("items", {}).get("format")) for part in parts)


def _first_file_part(endpoints: Endpoints, content: dict) -> str:
    parts = endpoints.schema({UPLOAD: content[UPLOAD]})["properties"]
    return next(name for name, part in parts.items() if part.get("format") == "binary")


def test_the_document_lists_them_where_they_are_given_and_nowhere_else(db):
    document = platform_document()
    schemas = document["components"]["schemas"]
    for path, method, operation in operations(document):
        if path == "/healthz":  # a probe: its own 503 (checks the database itself)
            continue
        responses = operation["responses"]
        where = f"{method.upper()} {path}"
        assert "503" in responses and "database" in responses["503"]["description"], where
        body = operation.get("requestBody", {}).get("content", {})
        if body:
            assert {"413", "415"} <= set(responses), where
        else:
            assert not {"413", "415"} & set(responses), where  # no body to refuse
        if any(parameter["name"] == "page" for parameter in operation.get("parameters", [])):
            assert "page` is past the last page" in responses["404"]["description"], where
        parts = body.get(UPLOAD, {}).get("schema", {})
        if "$ref" in parts:
            parts = schemas[parts["$ref"].rsplit("/", 1)[1]]
        uploads = any(part.get("format") == "binary" for part in parts.get("properties", {}).values())
        assert ("507" in responses) is uploads, where
        for status in ("413", "415", "503", "507"):
            if status in responses and path != "/api/v1/run/{model_hash}/health":
                assert _error_ref(operation, status) == ERROR, (where, status)
    health = document["paths"]["/api/v1/run/{model_hash}/health"]["get"]["responses"]["503"]
    assert health["content"]["application/json"]["schema"]["oneOf"] == [
        {"$ref": "#/components/schemas/ModelHealth"},  # not deployed
        ERROR,  # the database did not answer
    ]
    models = document["paths"]["/api/v1/models"]
    assert "multipart/form-data)" in models["post"]["responses"]["415"]["description"]
    assert "NEOMARIL_MAX_UPLOAD_TOTAL_MB in all" in models["post"]["responses"]["413"]["description"]
    assert "NEOMARIL_DISK_RESERVE_MB" in models["post"]["responses"]["507"]["description"]
    assert "404" not in document["paths"]["/api/v1/groups"]["get"]["responses"]  # not paginated
    run = document["paths"]["/api/v1/run/{model_hash}"]["post"]["responses"]
    assert "Sync model reads any body as JSON" in run["415"]["description"]
    assert "database" in run["503"]["description"] and "Async" in run["507"]["description"]


def test_every_body_of_a_type_it_does_not_read_is_415_as_documented(cast):
    endpoints = Endpoints(cast)
    checked = []
    for method, path, content, client, documented in endpoints.with_bodies():
        response = getattr(client, method)(path, "x=1", content_type="text/plain")
        assert response.status_code == 415, (method, path, response.status_code, response.content)
        assert response.json()["code"] == "unsupported_media_type"
        assert_conforms(endpoints.document, documented, method, response)
        if "application/json" not in content:  # an upload: JSON is not its type either
            sent_json = getattr(client, method)(path, {"name": "x"}, format="json")
            # The monitoring registration too, though its view's PATCH (settings) reads JSON.
            assert sent_json.status_code == 415, (method, path, sent_json.content)
            assert_conforms(endpoints.document, documented, method, sent_json)
            checked.append((method, documented))
    assert {
        ("post", "/api/v1/training/experiments/{experiment_hash}/runs"),
        ("post", "/api/v1/training/experiments/{experiment_hash}/runs/{number}/promote"),
        ("post", "/api/v1/models"),
        ("post", "/api/v1/models/{model_hash}/versions"),
    } <= set(checked), checked


def test_every_compressed_body_is_415_as_documented(cast):
    endpoints = Endpoints(cast)
    checked = 0
    for method, path, content, client, documented in endpoints.with_bodies():
        kind = next(iter(content))
        response = client.generic(
            method.upper(),
            path,
            gzip.compress(json.dumps({"name": "zipped"}).encode()),
            content_type=kind if kind != UPLOAD else f"{UPLOAD}; boundary=x",
            HTTP_CONTENT_ENCODING="gzip",
        )
        assert response.status_code == 415, (method, path, response.status_code, response.content)
        assert "Content-Encoding: gzip" in response.json()["detail"]
        assert_conforms(endpoints.document, documented, method, response)
        checked += 1
    assert checked >= 18


def test_every_body_declared_over_its_limit_is_413_as_documented(cast):
    endpoints = Endpoints(cast)
    checked = 0
    for method, path, content, client, documented in endpoints.with_bodies():
        kind = next(iter(content))
        response = client.generic(
            method.upper(),
            path,
            b"{}",
            content_type=kind if kind != UPLOAD else f"{UPLOAD}; boundary=x",
            CONTENT_LENGTH=str(10 * 1024**4),  # 10 TB: over every limit, and never read
        )
        assert response.status_code == 413, (method, path, response.status_code, response.content)
        assert response.json()["code"] == "too_large"
        assert_conforms(endpoints.document, documented, method, response)
        checked += 1
    assert checked >= 18


def test_a_page_past_the_last_of_every_list_is_404_as_documented(cast):
    endpoints = Endpoints(cast)
    checked = []
    for documented, path, client in endpoints.paginated():
        response = client.get(path, {"page": 99})
        assert response.status_code == 404, (path, response.status_code, response.content)
        assert response.json()["detail"].startswith("There is no page 99: the list has "), response.json()
        assert_conforms(endpoints.document, documented, "get", response)
        checked.append(documented)
    assert {
        "/api/v1/models",
        "/api/v1/users",
        "/api/v1/auth/tokens",
        "/api/v1/training/experiments",
        "/api/v1/models/{model_hash}/events",
        "/api/v1/run/{model_hash}/executions",
    } <= set(checked), checked


def test_every_upload_without_room_on_the_disk_is_507_as_documented(cast, settings):
    endpoints = Endpoints(cast)
    settings.DISK_RESERVE_MB = 10**9  # more than any disk has free
    checked = []
    for method, path, content, client, documented in endpoints.with_bodies():
        if not _takes_files(endpoints, content):
            continue
        part = _first_file_part(endpoints, content)
        response = getattr(client, method)(path, {part: file("upload.bin", b"x" * 1000)}, format="multipart")
        assert response.status_code == 507, (method, path, response.status_code, response.content)
        assert response.json()["code"] == "insufficient_storage"
        assert_conforms(endpoints.document, documented, method, response)
        checked.append(documented)
    assert len(checked) == 5, checked  # models, versions, monitoring, runs, promotions


def test_every_operation_is_503_as_documented_while_the_database_is_down(cast):
    endpoints = Endpoints(cast)
    values = {
        **endpoints.values,
        "version": 1,
        "token_id": uuid.uuid4(),
        "link_id": uuid.uuid4(),
        "period_id": 1,
        "execution_id": 1,
    }
    caller = token_client(cast.group_token)
    checked = 0
    with database_down():
        for documented, method, _operation in operations(endpoints.document):
            if documented == "/healthz" or documented.endswith("/try"):
                continue  # the probe answers its own 503; /try's CSRF check answers first
            client = caller if documented.startswith("/api/v1/run/") else endpoints.client(method, documented)
            # A login without a user name is a 400 before the database is asked.
            body = json.dumps(LOGIN if documented == "/api/v1/auth/login" else {})
            response = client.generic(
                method.upper(), documented.format(**values), body, content_type="application/json"
            )
            assert response.status_code == 503, (method, documented, response.status_code, response.content)
            assert response.json()["code"] == "unavailable"
            assert_conforms(endpoints.document, documented, method, response)
            checked += 1
    assert checked >= 70
