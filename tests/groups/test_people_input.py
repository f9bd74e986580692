"""What the users API and the People page accept as input: booleans are true or false
(anything else is a 400 naming the field, never taken as true), and a body that is not a
JSON object is a 400 saying so, not a crash."""

from __future__ import annotations

import json

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client


def _post_json(client, path: str, body) -> object:
    return client.post(path, data=json.dumps(body), content_type="application/json")


def _exists(username: str) -> bool:
    return get_user_model().objects.filter(username=username).exists()


# --- booleans of POST /users ----------------------------------------------------------


@pytest.mark.parametrize("value", [False, "false", "0", 0, "no", "off", "False", None])
def test_a_false_is_staff_makes_no_admin(cast, value):
    response = api_client(cast.admin).post(
        "/api/v1/users", {"username": "ana", "is_staff": value}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["is_staff"] is False
    assert get_user_model().objects.get(username="ana").is_staff is False


@pytest.mark.parametrize("value", [True, "true", "1", 1, "TRUE"])
def test_a_true_is_staff_makes_an_admin(cast, value):
    response = api_client(cast.admin).post(
        "/api/v1/users", {"username": "boss", "is_staff": value}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["is_staff"] is True
    assert get_user_model().objects.get(username="boss").is_staff is True


@pytest.mark.parametrize("field", ["is_staff", "send_email"])
@pytest.mark.parametrize("value", ["n", "maybe", "2", 2, "truthy"])  # [] and {}: test_form_fields.py
def test_a_boolean_that_is_neither_true_nor_false_is_400_naming_it(cast, field, value):
    body = {"username": "ana", "email": "ana@example.com", field: value}
    response = api_client(cast.admin).post("/api/v1/users", body, format="json")
    assert response.status_code == 400, response.json()
    answer = response.json()
    assert answer["code"] == "invalid"
    assert answer["errors"] == {field: [f"Send true or false, not {value!r}."]}
    assert answer["detail"] == f"{field}: Send true or false, not {value!r}."
    assert not _exists("ana") and mail.outbox == []


@pytest.mark.parametrize("value", ["no", "0", "off", "false", False])
def test_a_false_send_email_sends_nothing(cast, value):
    body = {"username": "ana", "email": "ana@example.com", "send_email": value}
    response = api_client(cast.admin).post("/api/v1/users", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["emailed"] is False and mail.outbox == []


def test_a_true_send_email_as_text_sends_it(cast):
    body = {"username": "ana", "email": "ana@example.com", "send_email": "true"}
    response = api_client(cast.admin).post("/api/v1/users", body, format="json")
    assert response.status_code == 201 and response.json()["emailed"] is True
    assert [message.to for message in mail.outbox] == [["ana@example.com"]]


def test_a_form_encoded_api_call_reads_booleans_the_same(cast):
    client = api_client(cast.admin)
    assert client.post("/api/v1/users", {"username": "ana", "is_staff": "no"}).json()["is_staff"] is False
    refused = client.post("/api/v1/users", {"username": "bea", "is_staff": "n"})
    assert refused.status_code == 400 and refused.json()["errors"] == {
        "is_staff": ["Send true or false, not 'n'."]
    }


# --- the People page, which validates through the same form ----------------------------


def _admin_page(cast) -> Client:
    client = Client()
    assert client.login(username=cast.admin.username, password=PASSWORD)
    return client


def test_the_page_renders_checkboxes_that_post_true_or_false(cast):
    html = _admin_page(cast).get("/people/").content.decode()
    for name in ("is_staff", "send_email"):
        # An unchecked box posts the hidden "false"; a checked one "false" then "true".
        assert (
            f'<input type="hidden" name="{name}" value="false"><input type="checkbox" name="{name}"' in html
        )
        assert f'name="{name}" value="true"' in html


@pytest.mark.parametrize(
    ("posted", "admin"),
    [
        ({}, False),  # an unchecked box of a page rendered before the hidden field
        ({"is_staff": "on"}, True),  # a checked box of such a page
        ({"is_staff": ["false"]}, False),  # this page, unchecked
        ({"is_staff": ["false", "true"]}, True),  # this page, checked
    ],
)
def test_the_page_creates_an_admin_only_when_the_box_is_checked(cast, posted, admin):
    response = _admin_page(cast).post("/people/", {"username": "ana", **posted})
    assert response.status_code == 302 and response["Location"] == "/people/ana/"
    assert get_user_model().objects.get(username="ana").is_staff is admin


def test_the_page_emails_the_link_when_its_box_is_checked(cast):
    client = _admin_page(cast)
    client.post("/people/", {"username": "ana", "email": "ana@example.com", "send_email": ["false", "true"]})
    client.post("/people/", {"username": "bea", "email": "bea@example.com", "send_email": "false"})
    assert [message.to for message in mail.outbox] == [["ana@example.com"]]


def test_the_page_refuses_a_value_that_is_neither_at_its_field(cast):
    response = _admin_page(cast).post("/people/", {"username": "ana", "is_staff": "maybe"})
    assert response.status_code == 400
    assert "Send true or false, not &#x27;maybe&#x27;." in response.content.decode()
    assert not _exists("ana")


# --- bodies that are not a JSON object ----------------------------------------------------


NOT_OBJECTS = [
    ([{"username": "ana"}], "list"),
    ("ana", "string"),
    (3, "number"),
    (None, "null"),
    (True, "boolean"),
]


@pytest.mark.parametrize(("body", "kind"), NOT_OBJECTS)
def test_creating_a_user_from_a_body_that_is_not_an_object_is_400(cast, body, kind):
    response = _post_json(api_client(cast.admin), "/api/v1/users", body)
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"Send a JSON object, not {kind}.",
        "code": "invalid",
        "errors": {"non_field_errors": [f"Send a JSON object, not {kind}."]},
    }
    assert not _exists("ana")


@pytest.mark.parametrize(("body", "kind"), NOT_OBJECTS)
def test_resetting_from_a_body_that_is_not_an_object_is_400(cast, body, kind):
    response = _post_json(api_client(cast.admin), "/api/v1/users/teammate/reset", body)
    assert response.status_code == 400
    assert response.json()["detail"] == f"Send a JSON object, not {kind}."
    cast.teammate.refresh_from_db()
    assert cast.teammate.check_password(PASSWORD)  # nothing was reset


def test_reset_reads_send_email_as_a_strict_boolean(cast):
    cast.teammate.email = "teammate@example.com"
    cast.teammate.save()
    client = api_client(cast.admin)
    refused = client.post("/api/v1/users/teammate/reset", {"send_email": "maybe"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"] == {"send_email": ["Send true or false, not 'maybe'."]}
    cast.teammate.refresh_from_db()
    assert cast.teammate.check_password(PASSWORD) and mail.outbox == []

    kept = client.post("/api/v1/users/teammate/reset", {"send_email": "no"}, format="json")
    assert kept.status_code == 201 and kept.json()["emailed"] is False and mail.outbox == []
    sent = client.post("/api/v1/users/teammate/reset", {"send_email": "true"}, format="json")
    assert sent.status_code == 201 and sent.json()["emailed"] is True
    assert [message.to for message in mail.outbox] == [["teammate@example.com"]]


def test_reset_without_a_body_still_works(cast):
    response = api_client(cast.admin).post("/api/v1/users/teammate/reset")
    assert response.status_code == 201 and response.json()["emailed"] is False


def test_a_mail_that_cannot_go_still_answers_the_link(cast, settings):
    """SMTP to a loopback port nothing listens on: the account stands, with its link."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 2
    response = api_client(cast.admin).post(
        "/api/v1/users", {"username": "ana", "email": "ana@example.com", "send_email": True}, format="json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["emailed"] is False and body["set_password_url"]
    assert body["detail"].startswith("The e-mail to ana@example.com could not be sent")
    reset = api_client(cast.admin).post("/api/v1/users/ana/reset", {"send_email": True}, format="json")
    assert reset.status_code == 201 and reset.json()["emailed"] is False


# --- fields the users API does not take ------------------------------------------------


def test_a_password_in_a_new_user_is_refused_not_ignored(cast):
    response = api_client(cast.admin).post(
        "/api/v1/users", {"username": "u6", "password": "secret"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "password": [
            "Not a field of this request; it takes username, email, is_staff, send_email. "
            "An admin never sends a password: the user sets one at the answer's set_password_url."
        ]
    }
    assert not _exists("u6")


@pytest.mark.parametrize("form", [False, True])
def test_an_unknown_field_of_a_new_user_is_refused(cast, form):
    body = {"username": "u7", "is_admin": "true"}
    client = api_client(cast.admin)
    response = client.post("/api/v1/users", body) if form else _post_json(client, "/api/v1/users", body)
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "is_admin": ["Not a field of this request; it takes username, email, is_staff, send_email."]
    }
    assert not _exists("u7")


def test_an_unknown_field_of_a_reset_is_refused(cast):
    response = _post_json(api_client(cast.admin), "/api/v1/users/teammate/reset", {"password": "x"})
    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["password"]
    assert get_user_model().objects.get(username="teammate").has_usable_password()
