"""Every request body of the API takes only the members its OpenAPI document lists, and
the document says so (`additionalProperties: false`, portal.api_schema.
declare_closed_request_bodies): each operation with a body is sent one member it does not
list and answers 400 naming it. A misspelt member used to be dropped without a word on
some of them (PATCH {"min_replica": 2} answered 200 and changed nothing). And each
JSON body's text member refuses a number, which a Django form would take as its digits."""

from __future__ import annotations

from tests.helpers.clients import api_client
from tests.helpers.openapi import Endpoints

UNKNOWN = "surely_not_a_field"


def test_every_request_body_refuses_a_member_it_does_not_list(cast):
    endpoints = Endpoints(cast)
    checked = []
    for method, path, content, client, _documented in endpoints.with_bodies():
        assert endpoints.schema(content).get("additionalProperties") is False, (method, path)
        kind = "json" if "application/json" in content else "multipart"
        response = getattr(client, method)(path, {UNKNOWN: "x"}, format=kind)
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


def test_every_json_text_member_refuses_a_number(cast):
    """A JSON body's text member sent as a number is a 400 at its name, never taken as its
    digits ("123" as a name, an e-mail address or a webhook): the same on every endpoint,
    whether a serializer or a Django form reads the body."""
    endpoints = Endpoints(cast)
    checked = []
    for method, path, content, client, _documented in endpoints.with_bodies():
        if "application/json" not in content:
            continue
        properties = endpoints.schema({"application/json": content["application/json"]}).get("properties", {})
        for member, schema in properties.items():
            if schema.get("type") != "string" or schema.get("readOnly") or {"format", "enum"} & set(schema):
                continue  # a choice, or a formatted string, has its own message
            response = getattr(client, method)(path, {member: 123}, format="json")
            errors = response.json().get("errors", {})
            assert response.status_code == 400 and member in errors, (method, path, member, response.json())
            # A date says what a date is; any other text member says to send text.
            refusal = errors[member][0]
            assert refusal == "Send text, not a JSON number." or refusal.startswith("123 is not a date"), (
                method,
                path,
                member,
                errors,
            )
            checked.append((method, path, member))
    assert len(checked) >= 15, checked


def test_a_number_for_an_alias_or_a_formatted_text_member_is_refused_too(cast):
    """experiment_name's alias `name` (not in the document's properties) and an e-mail
    address (a formatted string, skipped above) are text as well."""
    admin = api_client(cast.admin)
    experiment = admin.post(
        "/api/v1/training/experiments",
        {"name": 2024, "model_type": "Classification", "group": cast.group.name},
        format="json",
    )
    assert experiment.status_code == 400 and experiment.json()["errors"] == {
        "name": ["Send text, not a JSON number."]
    }
    user = admin.post("/api/v1/users", {"username": "someone", "email": True}, format="json")
    assert user.status_code == 400 and user.json()["errors"] == {"email": ["Send text, not a JSON boolean."]}
