"""People pages with the Django test client: admins create accounts (the one-time link
shown once, after a redirect), add them to groups, reset and (de)activate them; others
get 403; the set-password page; Django admin's user page without permission groups."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from groups import services
from groups.models import Membership
from tests.helpers.cast import PASSWORD

NEW_PASSWORD = "a-long-and-new-password-42"


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _link(html: str) -> str:
    match = re.search(r'id="link-value"[^>]*value="(http://testserver/account/set-password/[^"]+)"', html)
    assert match, "no set-password link on the page"
    return match.group(1)


def test_admin_creates_an_account_and_sees_its_link_once(cast):
    client = _login(cast.admin)
    page = client.get("/people/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'aria-current="page">People</a>' in html
    for name in ("admin", "owner", "teammate", "outsider"):
        assert f'data-user="{name}"' in html
    assert 'name="password' not in html  # the admin never chooses a password

    created = client.post("/people/", {"username": "ana", "email": "ana@example.com"})
    assert created.status_code == 302 and created["Location"] == "/people/ana/"  # POST-redirect-GET
    shown = client.get("/people/ana/")
    assert shown["Cache-Control"].startswith("no-store") or "no-store" in shown["Cache-Control"]
    html = shown.content.decode()
    assert "Account &#x27;ana&#x27; created." in html and "Pass this link on to ana now" in html
    url = _link(html)
    again = client.get("/people/ana/").content.decode()
    assert 'id="link-value"' not in again  # a reload does not show it again
    assert "no password yet" in again

    user = Client()
    form_url = user.get(url.removeprefix("http://testserver"))["Location"]
    done = user.post(form_url, {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD}, follow=True)
    assert done.redirect_chain[-1][0] == "/login/"
    assert b"Your password is set. Log in as &#x27;ana&#x27;." in done.content
    assert user.post("/login/", {"username": "ana", "password": NEW_PASSWORD})["Location"] == "/"


def test_create_errors_come_back_at_their_fields(cast):
    client = _login(cast.admin)
    response = client.post("/people/", {"username": "Owner", "send_email": "on"})
    assert response.status_code == 400
    html = response.content.decode()
    assert (
        "A user named &#x27;owner&#x27; already exists, and user names are compared ignoring case: "
        "&#x27;Owner&#x27; is the same name." in html
    )
    assert "Give an e-mail address to send the link to" in html
    assert get_user_model().objects.count() == 4


def test_admin_adds_to_a_group_and_removes(cast):
    client = _login(cast.admin)
    services.create_user(username="ana")
    added = client.post(
        "/people/ana/", {"action": "add-group", "group-group": "datarisk", "group-role": "owner"}
    )
    assert added.status_code == 302 and added["Location"] == "/people/ana/"
    assert Membership.objects.get(group=cast.group, user__username="ana").role == "owner"
    page = client.get("/people/ana/").content.decode()
    assert "ana is added as owner of datarisk." in page and 'data-group="datarisk"' in page
    bad = client.post("/people/ana/", {"action": "add-group", "group-group": "nope", "group-role": "owner"})
    assert bad.status_code == 400 and b"Select a valid choice" in bad.content
    removed = client.post("/people/ana/", {"action": "remove-group", "group": "datarisk"}, follow=True)
    assert b"ana was removed from datarisk." in removed.content
    assert not Membership.objects.filter(user__username="ana").exists()
    assert client.post("/people/ana/", {"action": "remove-group", "group": "nope"}).status_code == 404


def test_admin_resets_an_account(cast):
    client = _login(cast.admin)
    teammate = _login(cast.teammate)
    response = client.post("/people/teammate/", {"action": "reset"})
    assert response.status_code == 302
    html = client.get("/people/teammate/").content.decode()
    assert "New set-password link" in html and _link(html)
    assert not Client().login(username="teammate", password=PASSWORD)
    assert teammate.get("/")["Location"].startswith("/login/")  # their session ended with the password


def test_admin_deactivates_and_reactivates(cast):
    client = _login(cast.admin)
    teammate = _login(cast.teammate)
    off = client.post("/people/teammate/", {"action": "deactivate"}, follow=True)
    assert b"teammate can no longer log in or use API tokens." in off.content
    assert b"deactivated" in off.content and b'id="activate-form"' in off.content
    assert teammate.get("/")["Location"].startswith("/login/")  # logged out at once
    assert not Client().login(username="teammate", password=PASSWORD)
    reset = client.post("/people/teammate/", {"action": "reset"}, follow=True)
    assert b"reactivate the account first" in reset.content
    on = client.post("/people/teammate/", {"action": "activate"}, follow=True)
    assert b"teammate can log in again." in on.content
    assert Client().login(username="teammate", password=PASSWORD)


def test_admin_cannot_deactivate_themselves_on_the_page(cast):
    client = _login(cast.admin)
    page = client.get("/people/admin/").content.decode()
    assert 'id="deactivate-form"' not in page and "another admin can deactivate it" in page
    refused = client.post("/people/admin/", {"action": "deactivate"}, follow=True)
    assert b"You cannot deactivate your own account" in refused.content
    assert get_user_model().objects.get(username="admin").is_active


@pytest.mark.parametrize("path", ["/people/", "/people/teammate/"])
def test_only_admins(cast, path):
    for user in (cast.owner, cast.teammate):
        client = _login(user)
        assert client.get(path).status_code == 403
        assert client.post(path, {"username": "ana", "action": "deactivate"}).status_code == 403
    assert Client().get(path)["Location"].startswith("/login/")
    assert not get_user_model().objects.filter(username="ana").exists()
    assert get_user_model().objects.get(username="teammate").is_active
    assert 'href="/people/"' not in _login(cast.owner).get("/").content.decode()


def test_checklist(cast):
    client = _login(cast.admin)
    assert client.get("/people/ghost/").status_code == 404
    assert client.put("/people/").status_code == 405 and client.delete("/people/owner/").status_code == 405
    unknown = client.post("/people/owner/", {"action": "explode"}, follow=True)
    assert b"Unknown action." in unknown.content


def test_bad_links_say_what_to_do(cast):
    page = Client().get("/account/set-password/MQ/not-a-token/")
    assert page.status_code == 200
    assert (
        b"This link does not work" in page.content and b"Ask an admin to reset your account" in page.content
    )


def test_group_page_names_what_to_do_for_an_unknown_member(cast):
    response = _login(cast.owner).post(
        "/groups/datarisk/", {"action": "add-member", "member-username": "ana", "member-role": "member"}
    )
    assert response.status_code == 400
    assert b"No user named &#x27;ana&#x27;. Create the account first" in response.content


def test_django_admin_user_page_shows_neomaril_groups_not_permission_groups(cast):
    client = _login(cast.admin)
    html = client.get(f"/admin/auth/user/{cast.owner.pk}/change/").content.decode()
    assert 'name="groups"' not in html and 'name="user_permissions"' not in html
    assert "Neomaril groups" in html and "datarisk" in html
    listing = client.get("/admin/auth/user/").content.decode()
    assert "datarisk (owner)" in listing


@pytest.fixture
def unreachable_mail_server(settings):
    """SMTP to a loopback port nothing listens on: the send fails at once."""
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", 1, 2


def test_a_mail_that_cannot_go_leaves_the_account_and_shows_its_link(cast, unreachable_mail_server):
    client = _login(cast.admin)
    created = client.post("/people/", {"username": "newbie", "email": "n@example.com", "send_email": "on"})
    assert created.status_code == 302 and created["Location"] == "/people/newbie/"
    html = client.get("/people/newbie/").content.decode()
    assert "The e-mail to n@example.com could not be sent" in html
    assert "Give the link below to the person yourself." in html
    assert _link(html) and "was also e-mailed" not in html
    assert get_user_model().objects.filter(username="newbie").count() == 1


def test_a_reset_whose_mail_cannot_go_shows_the_link(cast, unreachable_mail_server):
    client = _login(cast.admin)
    get_user_model().objects.filter(pk=cast.teammate.pk).update(email="t@example.com")
    response = client.post("/people/teammate/", {"action": "reset", "send_email": "on"})
    assert response.status_code == 302
    html = client.get("/people/teammate/").content.decode()
    assert "The e-mail to t@example.com could not be sent" in html and _link(html)
