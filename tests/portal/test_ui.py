"""Accounts pages (server-rendered): login, groups, tokens shown once, admin."""

import re

from django.test import Client

from portal.models import ApiToken, Group, GroupToken, Membership
from tests.conftest import PASSWORD


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_login_page_and_session_login(cast):
    client = Client()
    page = client.get("/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    response = client.post("/login/", {"username": "owner", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    dashboard = client.get("/")
    assert b"datarisk" in dashboard.content and b"other-team" not in dashboard.content


def test_bad_login_shows_error(cast):
    response = Client().post("/login/", {"username": "owner", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_pages_need_login(db):
    response = Client().get("/groups/")
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_admin_creates_group_and_token_is_shown_once(cast):
    client = _login(cast.admin)
    response = client.post("/groups/", {"name": "fraud", "description": "Fraud"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    token = re.search(rb'value="(nmg_[^"]+)"', response.content).group(1).decode()
    assert GroupToken.objects.get(group__name="fraud").prefix == token[:12]
    # Reloading (GET) or resubmitting never shows it again.
    assert token.encode() not in client.get("/groups/fraud/").content
    again = client.post("/groups/", {"name": "fraud"})
    assert token.encode() not in again.content
    assert b"already exists" in again.content


def test_non_admin_cannot_create_group_in_ui(cast):
    response = _login(cast.owner).post("/groups/", {"name": "mine"})
    assert response.status_code == 403
    assert not Group.objects.filter(name="mine").exists()


def test_bad_group_name_shows_error_next_to_field(cast):
    response = _login(cast.admin).post("/groups/", {"name": "Bad Name"})
    assert response.status_code == 200
    assert b"lower-case letters" in response.content
    assert b"has-error" in response.content


def test_owner_refreshes_token_in_ui(cast):
    client = _login(cast.owner)
    kept = client.post("/groups/datarisk/", {"action": "refresh-token"}, follow=True)
    assert b"was kept" in kept.content
    forced = client.post("/groups/datarisk/", {"action": "refresh-token", "refresh-force": "on"})
    assert forced.status_code == 200
    assert re.search(rb'value="(nmg_[^"]+)"', forced.content)
    assert GroupToken.objects.filter(group=cast.group, revoked_at__isnull=True).count() == 1


def test_owner_manages_members_in_ui(cast):
    client = _login(cast.owner)
    client.post(
        "/groups/datarisk/", {"action": "add-member", "member-username": "outsider", "member-role": "member"}
    )
    assert Membership.objects.filter(group=cast.group, user=cast.outsider).exists()
    client.post("/groups/datarisk/", {"action": "remove-member", "username": "outsider"})
    assert not Membership.objects.filter(group=cast.group, user=cast.outsider).exists()


def test_member_cannot_change_group_and_outsider_gets_404(cast):
    assert _login(cast.teammate).post("/groups/datarisk/", {"action": "refresh-token"}).status_code == 403
    assert _login(cast.outsider).get("/groups/datarisk/").status_code == 404


def test_personal_tokens_page(cast):
    client = _login(cast.owner)
    response = client.post("/account/tokens/", {"name": "laptop"})
    value = re.search(rb'value="(nmu_[^"]+)"', response.content).group(1).decode()
    token = ApiToken.objects.get(user=cast.owner, name="laptop")
    assert token.prefix == value[:12]
    assert value.encode() not in client.get("/account/tokens/").content
    client.post("/account/tokens/", {"action": "revoke", "token_id": str(token.public_id)})
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_admin_site_add_group_shows_token_once(cast):
    client = _login(cast.admin)
    response = client.post(
        "/admin/portal/group/add/",
        {
            "name": "admins-made",
            "description": "",
            "memberships-TOTAL_FORMS": "0",
            "memberships-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200, response.content[:500]
    token = re.search(rb'value="(nmg_[^"]+)"', response.content).group(1).decode()
    group = Group.objects.get(name="admins-made")
    assert group.tokens.get().prefix == token[:12]
    change = client.get(f"/admin/portal/group/{group.pk}/change/")
    assert token.encode() not in change.content


def test_admin_token_pages_never_show_digests(cast):
    client = _login(cast.admin)
    token = GroupToken.objects.filter(group=cast.group).first()
    page = client.get(f"/admin/portal/grouptoken/{token.pk}/change/")
    assert page.status_code == 200
    assert token.digest.encode() not in page.content
    assert client.get("/admin/portal/grouptoken/add/").status_code == 403
