"""Every request body of the API takes only the members its OpenAPI document lists, and
the document says so (`additionalProperties: false`, portal.api_schema.
declare_closed_request_bodies): each operation with a body is sent one member it does not
list and answers 400 naming it. A misspelt member used to be dropped without a word on
some of them (PATCH {"min_replica": 2} answered 200 and changed nothing)."""

from __future__ import annotations

from tests.helpers.clients import api_client
from tests.helpers.monitors import deployed_model, make_monitor, reference_run
from tests.helpers.openapi import operations, platform_document

UNKNOWN = "surely_not_a_field"
ADMIN_ONLY = ("/api/v1/users", "/api/v1/groups")  # creating users and groups, resetting passwords


def _body_schema(document: dict, content: dict) -> dict:
    schema = next(iter(content.values()))["schema"]
    if "$ref" in schema:
        schema = document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def test_every_request_body_refuses_a_member_it_does_not_list(cast):
    document = platform_document()
    run = reference_run(cast.group)
    model = deployed_model(cast.group, run=run)
    make_monitor(model, run, cast.owner)
    values = {
        "model_hash": model.hash,
        "name": cast.group.name,
        "username": cast.teammate.username,
        "experiment_hash": run.experiment.hash,
        "number": run.number,
    }
    clients = {"admin": api_client(cast.admin), "owner": api_client(cast.owner)}
    checked = []
    for path, method, operation in operations(document):
        if "requestBody" not in operation or path.startswith("/api/v1/run/"):
            continue  # a run URL's body is the model's own input
        content = operation["requestBody"]["content"]
        assert _body_schema(document, content).get("additionalProperties") is False, (method, path)
        admin_only = path.startswith(ADMIN_ONLY) and (method, path) != (
            "post",
            "/api/v1/groups/{name}/members",
        )
        client = clients["admin" if admin_only else "owner"]
        kind = "json" if "application/json" in content else "multipart"
        response = getattr(client, method)(path.format(**values), {UNKNOWN: "x"}, format=kind)
        body = response.json()
        assert response.status_code == 400 and UNKNOWN in body.get("errors", {}), (
            method,
            path,
            response.status_code,
            body,
        )
        assert body["errors"][UNKNOWN][0].startswith("Not a"), body  # says what it is, not a type error
        checked.append((method, path))
    assert len(checked) >= 18, checked
