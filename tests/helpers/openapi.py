"""The platform's OpenAPI document in tests, checking a real answer against it, and the
operations' calls (Endpoints) that the sweeps over the document make."""

from __future__ import annotations

import copy
from typing import Any

from django.test import Client
from openapi_schema_validator import OAS30Validator

from tests.helpers.clients import api_client
from tests.helpers.monitors import deployed_model, make_monitor, reference_run

OPERATION_METHODS = {"get", "put", "post", "delete", "patch"}


def platform_document() -> dict:
    """/api/schema/ as a client reads it."""
    response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    return response.json()


def operations(document: dict):
    """(path, method, operation) of every operation of the document."""
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in OPERATION_METHODS:
                yield path, method, operation


def _inline(schema: Any, document: dict, depth: int = 0) -> Any:
    """The schema with its `$ref`s to components replaced by what they name."""
    assert depth < 30, "a recursive schema: inline it some other way"
    if isinstance(schema, dict):
        if "$ref" in schema:
            name = schema["$ref"].rsplit("/", 1)[1]
            return _inline(document["components"]["schemas"][name], document, depth + 1)
        return {key: _inline(value, document, depth + 1) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inline(value, document, depth + 1) for value in schema]
    return schema


def answer_schema(document: dict, path: str, method: str, status: int) -> dict:
    """The JSON schema the document gives the answer `status` of `method path`."""
    response = document["paths"][path][method]["responses"][str(status)]
    return _inline(copy.deepcopy(response["content"]["application/json"]["schema"]), document)


def assert_conforms(document: dict, path: str, method: str, response) -> None:
    """The real answer is documented for its status, and its body validates against that."""
    responses = document["paths"][path][method]["responses"]
    assert str(response.status_code) in responses, (path, method, response.status_code, sorted(responses))
    schema = answer_schema(document, path, method, response.status_code)
    errors = [error.message for error in OAS30Validator(schema).iter_errors(response.json())]
    assert not errors, (path, method, response.status_code, response.json(), errors)


ADMIN_ONLY = ("/api/v1/users", "/api/v1/groups")  # creating users and groups, resetting passwords


class Endpoints:
    """The platform's OpenAPI operations, and what calling each one needs: a model with
    its monitoring and run, and the client allowed to call it."""

    def __init__(self, cast) -> None:
        self.document = platform_document()
        run = reference_run(cast.group)
        model = deployed_model(cast.group, run=run)
        make_monitor(model, run, cast.owner)
        self.values = {
            "model_hash": model.hash,
            "name": cast.group.name,
            "username": cast.teammate.username,
            "experiment_hash": run.experiment.hash,
            "number": run.number,
        }
        self.clients = {"admin": api_client(cast.admin), "owner": api_client(cast.owner)}

    def client(self, method: str, path: str):
        admin_only = path.startswith(ADMIN_ONLY) and (method, path) != (
            "post",
            "/api/v1/groups/{name}/members",
        )
        return self.clients["admin" if admin_only else "owner"]

    def with_bodies(self):
        """(method, path with its values, content, client, path as documented) of each
        operation with a body but a run URL's (its body is the model's own input)."""
        for path, method, operation in operations(self.document):
            if "requestBody" not in operation or path.startswith("/api/v1/run/"):
                continue
            content = operation["requestBody"]["content"]
            yield method, path.format(**self.values), content, self.client(method, path), path

    def paginated(self):
        """(path as documented, path with its values, client) of each list with pages."""
        for path, method, operation in operations(self.document):
            if method == "get" and any(p["name"] == "page" for p in operation.get("parameters", [])):
                yield path, path.format(**self.values), self.client(method, path)

    def schema(self, content: dict) -> dict:
        """The schema of a body's first media type (a component's, if named)."""
        schema = next(iter(content.values()))["schema"]
        if "$ref" in schema:
            schema = self.document["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
        return schema
