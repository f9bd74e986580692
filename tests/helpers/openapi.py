"""The platform's OpenAPI document in tests, and checking a real answer against it."""

from __future__ import annotations

import copy
from typing import Any

from django.test import Client
from openapi_schema_validator import OAS30Validator

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
