"""Users' answers are what the platform's OpenAPI document says they are."""

from __future__ import annotations

from tests.helpers.clients import api_client
from tests.helpers.openapi import answer_schema, assert_conforms, platform_document


def test_a_user_without_an_email_address_answers_an_empty_one_as_documented(cast):
    document = platform_document()
    assert cast.owner.email == ""
    me = api_client(cast.owner).get("/api/v1/auth/me")
    assert me.status_code == 200 and me.json()["email"] == ""
    assert_conforms(document, "/api/v1/auth/me", "get", me)
    person = api_client(cast.admin).get("/api/v1/users/owner")
    assert person.status_code == 200 and person.json()["email"] == ""
    assert_conforms(document, "/api/v1/users/{username}", "get", person)
    for path in ("/api/v1/auth/me", "/api/v1/users/{username}"):
        email = answer_schema(document, path, "get", 200)["properties"]["email"]
        assert "format" not in email and '""' in email["description"]
