"""People through the API and the services: accounts created, reset, (de)activated by
admins, each with a one-time set-password link; adding members who must exist first."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlparse

import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client

from groups import services
from groups.models import Membership
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client

NEW_PASSWORD = "a-long-and-new-password-42"


def _set_password(url: str, password: str = NEW_PASSWORD) -> tuple[Client, object]:
    """Open the link as its user would and post the form; returns the client and the answer."""
    client = Client()
    opened = client.get(urlparse(url).path)
    if opened.status_code != 302:  # an invalid link answers its page at once
        return client, opened
    form_url = opened["Location"]  # Django moves the token out of the address bar
    page = client.get(form_url)
    if b"set-password-form" not in page.content:
        return client, page
    return client, client.post(form_url, {"new_password1": password, "new_password2": password})


def _login(client, username: str, password: str = NEW_PASSWORD):
    return client.post("/api/v1/auth/login", {"username": username, "password": password}, format="json")


# --- create ---------------------------------------------------------------------------


def test_admin_creates_a_user_with_a_one_time_link(cast):
    client = api_client(cast.admin)
    response = client.post("/api/v1/users", {"username": "ana", "email": "ana@example.com"}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["username"] == "ana" and body["email"] == "ana@example.com"
    assert body["is_active"] is True and body["is_staff"] is False and body["has_password"] is False
    assert body["groups"] == [] and body["emailed"] is False
    assert body["set_password_url"].startswith("http://testserver/account/set-password/")
    assert "password" not in body  # neither a password nor its hash, ever
    assert response["Cache-Control"] == "no-store"
    assert "Pass this link on to ana" in body["detail"]
    ana = get_user_model().objects.get(username="ana")
    assert not ana.has_usable_password()
    assert _login(api_client(), "ana", "").status_code == 400  # no password to guess

    browser, done = _set_password(body["set_password_url"])
    assert done.status_code == 302 and done["Location"] == "/login/"
    assert _login(api_client(), "ana").status_code == 201
    assert browser.post("/login/", {"username": "ana", "password": NEW_PASSWORD}).status_code == 302


def test_the_link_works_once(cast):
    url = (
        api_client(cast.admin)
        .post("/api/v1/users", {"username": "ana"}, format="json")
        .json()["set_password_url"]
    )
    _, done = _set_password(url)
    assert done.status_code == 302
    _, again = _set_password(url, "another-password-entirely-7")
    assert again.status_code == 200 and b"This link does not work" in again.content
    assert _login(api_client(), "ana").status_code == 201  # the first password stands


def test_an_expired_link_is_refused(cast, settings):
    link = services.create_user(username="ana")
    settings.PASSWORD_RESET_TIMEOUT = 60
    # The token carries its creation time; a minute and a second later it is too old.
    generator = services.default_token_generator
    real_now = generator._now
    generator._now = lambda: real_now() + timedelta(seconds=61)
    try:
        _, page = _set_password(f"http://testserver{link.path}")
    finally:
        generator._now = real_now
    assert b"This link does not work" in page.content
    assert not get_user_model().objects.get(username="ana").has_usable_password()


def test_password_rules_apply_on_the_link_page(cast):
    link = services.create_user(username="ana")
    _, page = _set_password(f"http://testserver{link.path}", "12345")
    assert page.status_code == 200
    assert b"too short" in page.content and b"entirely numeric" in page.content
    assert not get_user_model().objects.get(username="ana").has_usable_password()


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"username": "owner"}, "username", "already exists"),
        ({"username": "OWNER"}, "username", "already exists"),
        ({"username": ""}, "username", "required"),
        ({"username": "has space"}, "username", "letters, numbers"),
        ({"username": "x" * 151}, "username", "at most 150"),
        ({"username": "ana", "email": "not-an-address"}, "email", "valid email"),
        ({"username": "ana", "send_email": True}, "email", "e-mail address"),
    ],
)
def test_bad_input_is_400_naming_the_field(cast, body, field, words):
    response = api_client(cast.admin).post("/api/v1/users", body, format="json")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert words in " ".join(response.json()["errors"][field])
    assert not get_user_model().objects.filter(username="ana").exists()


def test_the_link_can_be_emailed(cast):
    response = api_client(cast.admin).post(
        "/api/v1/users", {"username": "ana", "email": "ana@example.com", "send_email": True}, format="json"
    )
    assert response.status_code == 201 and response.json()["emailed"] is True
    assert len(mail.outbox) == 1 and mail.outbox[0].to == ["ana@example.com"]
    assert response.json()["set_password_url"] in mail.outbox[0].body


def test_admin_can_create_an_admin(cast):
    response = api_client(cast.admin).post(
        "/api/v1/users", {"username": "boss", "is_staff": True}, format="json"
    )
    assert response.status_code == 201 and response.json()["is_staff"] is True


# --- who may ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/users"),
        ("post", "/api/v1/users"),
        ("get", "/api/v1/users/teammate"),
        ("post", "/api/v1/users/teammate/reset"),
        ("post", "/api/v1/users/teammate/deactivate"),
        ("post", "/api/v1/users/teammate/activate"),
    ],
)
def test_only_admins_manage_users(cast, method, path):
    for user in (cast.owner, cast.teammate):
        response = getattr(api_client(user), method)(path, {"username": "ana"}, format="json")
        assert response.status_code == 403
        assert response.json()["detail"] == "Only admins can manage users. Ask an admin."
    assert getattr(api_client(), method)(path, {}, format="json").status_code == 401
    assert not get_user_model().objects.filter(username="ana").exists()
    assert get_user_model().objects.get(username="teammate").is_active


def test_list_and_detail(cast):
    client = api_client(cast.admin)
    listed = client.get("/api/v1/users").json()
    assert listed["count"] == 4
    assert [u["username"] for u in listed["results"]] == ["admin", "outsider", "owner", "teammate"]
    owner = client.get("/api/v1/users/owner").json()
    assert owner["groups"] == [{"name": "datarisk", "role": "owner"}] and owner["has_password"] is True
    assert client.get("/api/v1/users/ghost").status_code == 404
    assert client.delete("/api/v1/users/owner").status_code == 405


# --- reset -----------------------------------------------------------------------------


def test_reset_gives_a_new_link_and_the_old_password_stops(cast):
    client = api_client(cast.admin)
    first = services.set_password_link(cast.teammate)
    response = client.post("/api/v1/users/teammate/reset", {}, format="json")
    assert response.status_code == 201 and response["Cache-Control"] == "no-store"
    assert _login(api_client(), "teammate", PASSWORD).status_code == 401
    _, stale = _set_password(f"http://testserver{first.path}")
    assert b"This link does not work" in stale.content  # an earlier link died with the reset
    _, done = _set_password(response.json()["set_password_url"])
    assert done.status_code == 302
    assert _login(api_client(), "teammate").status_code == 201


def test_reset_of_a_deactivated_user_is_400(cast):
    services.set_active(cast.teammate, False, actor=cast.admin)
    response = api_client(cast.admin).post("/api/v1/users/teammate/reset", {}, format="json")
    assert response.status_code == 400 and "reactivate the account first" in response.json()["detail"]
    assert api_client(cast.admin).post("/api/v1/users/ghost/reset", {}, format="json").status_code == 404


# --- deactivate, reactivate ------------------------------------------------------------


def test_deactivation_blocks_session_and_token_at_once(cast):
    token_client = api_client(cast.teammate)
    session = Client()
    assert session.login(username="teammate", password=PASSWORD)
    assert token_client.get("/api/v1/auth/me").status_code == 200
    assert session.get("/api/v1/auth/me").status_code == 200 and session.get("/").status_code == 200

    response = api_client(cast.admin).post("/api/v1/users/teammate/deactivate", {}, format="json")
    assert response.status_code == 200 and response.json()["is_active"] is False

    refused = token_client.get("/api/v1/auth/me")
    assert refused.status_code == 401 and refused.json()["detail"] == "This user account is disabled."
    assert session.get("/api/v1/auth/me").status_code in (401, 403)
    assert session.get("/")["Location"].startswith("/login/")
    assert _login(api_client(), "teammate", PASSWORD).status_code == 401
    assert not Client().login(username="teammate", password=PASSWORD)
    # The link of a deactivated account does not work either.
    _, page = _set_password(f"http://testserver{services.set_password_link(cast.teammate).path}")
    assert b"This link does not work" in page.content


def test_reactivation_restores_password_and_tokens(cast):
    token_client = api_client(cast.teammate)
    admin = api_client(cast.admin)
    admin.post("/api/v1/users/teammate/deactivate", {}, format="json")
    response = admin.post("/api/v1/users/teammate/activate", {}, format="json")
    assert response.status_code == 200 and response.json()["is_active"] is True
    assert token_client.get("/api/v1/auth/me").json()["username"] == "teammate"
    assert _login(api_client(), "teammate", PASSWORD).status_code == 201
    assert admin.post("/api/v1/users/teammate/activate", {}, format="json").status_code == 200  # idempotent


def test_an_admin_cannot_deactivate_themselves(cast):
    response = api_client(cast.admin).post("/api/v1/users/admin/deactivate", {}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "username: You cannot deactivate your own account: ask another admin to do it."
    )
    assert get_user_model().objects.get(username="admin").is_active


def test_services_refuse_self_deactivation(cast):
    with pytest.raises(services.PeopleError, match="your own account"):
        services.set_active(cast.admin, False, actor=cast.admin)
    assert services.set_active(cast.owner, False, actor=cast.admin) is True
    assert services.set_active(cast.owner, False, actor=cast.admin) is False


# --- adding to groups -------------------------------------------------------------------


def test_adding_a_user_who_does_not_exist_says_to_create_them(cast):
    client = api_client(cast.admin)
    response = client.post(
        "/api/v1/groups/datarisk/members", {"username": "ana", "role": "member"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["username"] == [
        "No user named 'ana'. Create the account first (admins: POST /api/v1/users "
        '{"username": "ana"}, or the People page), then add it to the group.'
    ]
    client.post("/api/v1/users", {"username": "ana"}, format="json")
    added = client.post(
        "/api/v1/groups/datarisk/members", {"username": "ana", "role": "member"}, format="json"
    )
    assert added.status_code == 201 and added.json()["username"] == "ana"
    assert client.get("/api/v1/users/ana").json()["groups"] == [{"name": "datarisk", "role": "member"}]
    assert Membership.objects.filter(group=cast.group, user__username="ana", role="member").exists()


def test_adding_a_deactivated_user_says_to_reactivate(cast):
    services.set_active(cast.outsider, False, actor=cast.admin)
    response = api_client(cast.owner).post(
        "/api/v1/groups/datarisk/members", {"username": "outsider"}, format="json"
    )
    assert response.status_code == 400
    assert "'outsider' is deactivated" in response.json()["errors"]["username"][0]
    assert "/api/v1/users/outsider/activate" in response.json()["errors"]["username"][0]
