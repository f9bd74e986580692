"""Accounts pages (server-rendered): login, dashboard, groups, tokens shown once, admin."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from groups import services
from groups.models import ApiToken, Group, GroupToken, Membership
from tests.helpers.cast import PASSWORD


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


# --- login, logout, layout ------------------------------------------------------------


def test_login_page_and_session_login(cast):
    client = Client()
    page = client.get("/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    assert b'autocomplete="current-password"' in page.content
    response = client.post("/login/", {"username": "owner", "password": PASSWORD})
    assert response.status_code == 302 and response["Location"] == "/"
    dashboard = client.get("/")
    assert b"datarisk" in dashboard.content and b"other-team" not in dashboard.content


def test_login_goes_back_to_the_page_asked_for(cast):
    response = Client().post("/login/", {"username": "owner", "password": PASSWORD, "next": "/groups/"})
    assert response["Location"] == "/groups/"


def test_bad_login_shows_error(cast):
    response = Client().post("/login/", {"username": "owner", "password": "wrong"})
    assert response.status_code == 200
    assert b"Please enter a correct username and password" in response.content


def test_logout_is_a_post_and_says_so(cast):
    client = _login(cast.owner)
    # A GET does not log out (another site could make the browser send it): the dashboard.
    typed = client.get("/logout/")
    assert typed.status_code == 302 and typed["Location"] == "/"
    assert client.get("/").context["user"].is_authenticated
    response = client.post("/logout/", follow=True)
    assert response.redirect_chain[-1][0] == "/login/"
    assert b"You are logged out" in response.content
    assert client.get("/").status_code == 302


def test_pages_need_login(db):
    for path in ("/", "/groups/", "/groups/datarisk/", "/account/tokens/", "/models/"):
        response = Client().get(path)
        assert response.status_code == 302 and response["Location"].startswith("/login/"), path


def test_layout_marks_the_current_page_and_admin_link(cast):
    html = _login(cast.owner).get("/groups/").content.decode()
    assert '<a href="/groups/" aria-current="page">Groups</a>' in html
    assert 'href="/admin/"' not in html
    assert 'href="/admin/"' in _login(cast.admin).get("/").content.decode()


def test_pages_use_only_the_portals_own_assets(cast):
    html = _login(cast.owner).get("/").content.decode()
    assets = re.findall(r'(?:src|href)="([^"]+\.(?:css|js|svg))"', html)
    assert assets and all(asset.startswith("/static/") for asset in assets), assets


def test_not_found_page_is_the_portals(cast):
    response = _login(cast.owner).get("/groups/nope/")
    assert response.status_code == 404
    assert b"belongs to a group you are not a member of" in response.content


# --- dashboard ------------------------------------------------------------------------


def test_dashboard_shows_my_groups_with_role(cast):
    response = _login(cast.owner).get("/")
    groups = {g.name: g for g in response.context["groups"]}
    assert set(groups) == {"datarisk"}
    assert groups["datarisk"].my_role == "owner" and groups["datarisk"].member_count == 2
    assert b"No models yet" in response.content
    admin = _login(cast.admin).get("/")
    assert {g.name for g in admin.context["groups"]} == {"datarisk", "other-team"}


def test_dashboard_methods(cast):
    assert _login(cast.owner).post("/").status_code == 405


# --- groups ---------------------------------------------------------------------------


def test_group_list_shows_my_groups_and_token_state(cast):
    html = _login(cast.teammate).get("/groups/").content.decode()
    assert "datarisk" in html and "other-team" not in html
    assert "valid</span>" in html and "Create a group" not in html
    GroupToken.objects.filter(group=cast.group).delete()
    assert "none valid" in _login(cast.teammate).get("/groups/").content.decode()


def test_admin_creates_group_and_token_is_shown_once(cast):
    client = _login(cast.admin)
    posted = client.post("/groups/", {"name": "fraud", "description": "Fraud"})
    # POST-redirect-GET: reloading the page the browser lands on does not post the form again.
    assert posted.status_code == 302 and posted["Location"] == "/groups/fraud/"
    # The token waits in the session encrypted, never as plain text.
    assert "nmg_" not in str(dict(client.session.items()))
    response = client.get(posted["Location"])
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    assert b"it will not be shown again" in response.content
    token = re.search(rb'value="(nmg_[^"]+)"', response.content).group(1).decode()
    assert GroupToken.objects.get(group__name="fraud").prefix == token[:12]
    assert Membership.objects.get(group__name="fraud").user == cast.admin
    assert Group.objects.filter(name="fraud").count() == 1
    # Reloading (GET) or resubmitting never shows it again.
    reloaded = client.get("/groups/fraud/")
    assert reloaded.status_code == 200 and token.encode() not in reloaded.content
    assert b"Fraud" in reloaded.content and "group_token_once" not in client.session
    again = client.post("/groups/", {"name": "fraud"})
    assert again.status_code == 400
    assert token.encode() not in again.content
    assert b"already exists" in again.content


@pytest.mark.parametrize("path", ["/groups/", "/people/"])
def test_an_empty_form_post_says_what_is_missing(cast, path):
    """A POST with no field at all is a bound, invalid form (400 naming the field), not the
    blank form again as if nothing had been sent."""
    response = _login(cast.admin).post(path, {})
    assert response.status_code == 400, response.content[:500]
    assert b"This field is required." in response.content


def test_non_admin_cannot_create_group_in_ui(cast):
    response = _login(cast.owner).post("/groups/", {"name": "mine"})
    assert response.status_code == 403
    assert b"Only admins can create groups" in response.content
    assert not Group.objects.filter(name="mine").exists()


def test_bad_group_name_shows_error_next_to_field(cast):
    response = _login(cast.admin).post("/groups/", {"name": "Bad Name"})
    assert response.status_code == 400
    assert b"lower-case letters" in response.content
    assert b"has-error" in response.content and b'id="id_name_error"' in response.content
    assert _login(cast.admin).put("/groups/").status_code == 405


def test_group_page_for_members(cast):
    response = _login(cast.teammate).get("/groups/datarisk/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "owner" in html and "teammate" in html and "Risk models" in html
    assert 'name="action" value="add-member"' not in html  # members don't manage
    token = GroupToken.objects.get(group=cast.group)
    assert f"{token.prefix}…" in html and cast.group_token not in html


def test_group_page_lists_the_groups_models(cast):
    from models_app.models import MLModel

    MLModel.objects.create(
        name="Scorer", group=cast.group, operation="Sync", model_reference="score", python_version="3.9",
        input_type="json", source_file="app.py", model_file="m.pkl", requirements_file="r.txt",
    )  # fmt: skip
    html = _login(cast.owner).get("/groups/datarisk/").content.decode()
    assert "Scorer" in html and "badge-Ready" in html


def test_group_page_lists_its_models_a_page_at_a_time(cast, django_assert_max_num_queries):
    from models_app.models import MLModel
    from portal.ui import GROUP_MODELS_PER_PAGE

    fields = dict(
        group=cast.group, operation="Sync", model_reference="score", python_version="3.9",
        input_type="json", source_file="app.py", model_file="m.pkl", requirements_file="r.txt",
    )  # fmt: skip
    MLModel.objects.bulk_create(
        MLModel(name=f"Scorer {i:03}", **fields) for i in range(GROUP_MODELS_PER_PAGE + 3)
    )
    client = _login(cast.owner)
    with django_assert_max_num_queries(20):
        first = client.get("/groups/datarisk/").content.decode()
    second = client.get("/groups/datarisk/?page=2").content.decode()
    shown = [set(re.findall(r"Scorer \d{3}", html)) for html in (first, second)]
    assert [len(names) for names in shown] == [GROUP_MODELS_PER_PAGE, 3] and not shown[0] & shown[1]
    assert f">{GROUP_MODELS_PER_PAGE + 3}</span>" in first and "Page 1 of 2" in first and "?page=2" in first


def test_owner_refreshes_token_in_ui(cast):
    client = _login(cast.owner)
    kept = client.post("/groups/datarisk/", {"action": "refresh-token"}, follow=True)
    assert b"was kept" in kept.content
    posted = client.post("/groups/datarisk/", {"action": "refresh-token", "refresh-force": "on"})
    assert posted.status_code == 302 and posted["Location"] == "/groups/datarisk/"
    # Another group's page does not take the token waiting for this one.
    services.set_membership(cast.other_group, cast.owner, Membership.Role.MEMBER)
    assert b"Copy this token now" not in client.get("/groups/other-team/").content
    forced = client.get("/groups/datarisk/")
    assert forced.status_code == 200 and "no-store" in forced["Cache-Control"]
    assert b"The previous token no longer works" in forced.content
    token = re.search(rb'value="(nmg_[^"]+)"', forced.content).group(1).decode()
    assert GroupToken.objects.get(group=cast.group, revoked_at__isnull=True).prefix == token[:12]
    assert token.encode() not in client.get("/groups/datarisk/").content


def test_owner_manages_members_in_ui(cast):
    client = _login(cast.owner)
    added = client.post(
        "/groups/datarisk/",
        {"action": "add-member", "member-username": "outsider", "member-role": "member"},
        follow=True,
    )
    assert b"outsider is added as member of datarisk" in added.content
    assert Membership.objects.filter(group=cast.group, user=cast.outsider).exists()
    promoted = client.post(
        "/groups/datarisk/",
        {"action": "add-member", "member-username": "outsider", "member-role": "owner"},
        follow=True,
    )
    assert b"outsider is now owner of datarisk" in promoted.content
    client.post("/groups/datarisk/", {"action": "remove-member", "username": "outsider"})
    assert not Membership.objects.filter(group=cast.group, user=cast.outsider).exists()
    again = client.post("/groups/datarisk/", {"action": "remove-member", "username": "outsider"}, follow=True)
    assert b"outsider is not a member of datarisk" in again.content


def test_the_last_owner_is_told_to_name_another_owner_before_stepping_down(cast):
    client = _login(cast.owner)
    for action in (
        {"action": "add-member", "member-username": "owner", "member-role": "member"},
        {"action": "remove-member", "username": "owner"},
    ):
        page = client.post("/groups/datarisk/", action, follow=True)
        assert b"owner is the only owner of datarisk: make another member an owner first" in page.content
        assert Membership.objects.get(group=cast.group, user=cast.owner).role == "owner"


def test_group_page_bad_input(cast):
    client = _login(cast.owner)
    unknown = client.post(
        "/groups/datarisk/", {"action": "add-member", "member-username": "ghost", "member-role": "member"}
    )
    assert (
        unknown.status_code == 400
        and b"No user named &#x27;ghost&#x27;. Create the account first" in unknown.content
    )
    assert client.post("/groups/datarisk/", {"action": "explode"}).status_code == 400
    assert (
        client.post("/groups/datarisk/", {"action": "remove-member", "username": "ghost"}).status_code == 404
    )
    assert client.delete("/groups/datarisk/").status_code == 405
    assert client.get("/groups/no-such-group/").status_code == 404


def test_member_cannot_change_group_and_outsider_gets_404(cast):
    assert _login(cast.teammate).post("/groups/datarisk/", {"action": "refresh-token"}).status_code == 403
    assert _login(cast.outsider).get("/groups/datarisk/").status_code == 404
    assert _login(cast.outsider).post("/groups/datarisk/", {"action": "refresh-token"}).status_code == 404


# --- personal API tokens --------------------------------------------------------------


def test_personal_tokens_page(cast):
    client = _login(cast.owner)
    created = client.post("/account/tokens/", {"name": "laptop"})
    # Shown by the GET it redirects to: a reload (or Back) never posts for a second token.
    assert created.status_code == 302 and created["Location"] == "/account/tokens/"
    response = client.get("/account/tokens/")
    assert "no-store" in response["Cache-Control"]
    assert 'data-confirm="Switch the language?"' in response.content.decode()  # the switch asks first
    value = re.search(rb'value="(nmu_[^"]+)"', response.content).group(1).decode()
    token = ApiToken.objects.get(user=cast.owner, name="laptop")
    assert token.prefix == value[:12]
    listing = client.get("/account/tokens/").content  # the reload
    assert value.encode() not in listing and token.prefix.encode() in listing
    assert b"data-confirm=" not in listing.split(b'id="language-switch"')[1].split(b">")[0]
    assert ApiToken.objects.filter(user=cast.owner).count() == 1
    # Another user's session holds no token of this one's.
    assert re.search(rb'value="nmu_', _login(cast.teammate).get("/account/tokens/").content) is None
    revoked = client.post(
        "/account/tokens/", {"action": "revoke", "token_id": str(token.public_id)}, follow=True
    )
    assert b"revoked: it no longer works" in revoked.content
    token.refresh_from_db()
    assert token.revoked_at is not None


def test_a_post_with_no_field_issues_an_unnamed_token(cast):
    """The name is optional, so a POST that sends none is still a request for a token (the
    form is bound on every POST), not the blank page again."""
    response = _login(cast.owner).post("/account/tokens/", {}, follow=True)
    assert response.status_code == 200 and re.search(rb'value="(nmu_[^"]+)"', response.content)
    assert list(ApiToken.objects.filter(user=cast.owner).values_list("name", flat=True)) == [""]


def test_personal_tokens_bad_input(cast):
    client = _login(cast.owner)
    theirs, _ = services.issue_api_token(cast.outsider, "theirs")
    assert (
        client.post("/account/tokens/", {"action": "revoke", "token_id": str(theirs.public_id)}).status_code
        == 404
    )
    assert client.post("/account/tokens/", {"action": "revoke", "token_id": "not-a-uuid"}).status_code == 404
    too_long = client.post("/account/tokens/", {"name": "x" * 101})
    assert too_long.status_code == 400 and b"at most 100 characters" in too_long.content
    assert not ApiToken.objects.filter(user=cast.owner).exists()
    assert client.put("/account/tokens/").status_code == 405
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


# --- Django admin ---------------------------------------------------------------------


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


def test_admin_lists_have_filters_and_search(cast):
    client = _login(cast.admin)
    for path, expected in (
        ("/admin/models_app/mlmodel/?status__exact=Deployed&q=score", b"By status"),
        ("/admin/portal/group/?q=datarisk", b"datarisk"),
        ("/admin/portal/membership/?role__exact=owner", b"By role"),
        ("/admin/executions/execution/?status__exact=Failed&q=M", b"By status"),
        ("/admin/portal/apitoken/?q=owner", b"By revoked at"),
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert expected in response.content, path
    assert _login(cast.owner).get("/admin/").status_code == 302  # not staff: the admin's login


def test_a_user_in_no_group_is_told_whom_to_ask_not_to_deploy(cast, django_user_model):
    cast.admin.email = "admin@example.com"
    cast.admin.first_name, cast.admin.last_name = "Ada", "Admin"
    cast.admin.save()
    django_user_model.objects.create_user("former", password=PASSWORD, is_staff=True, is_active=False)
    loner = django_user_model.objects.create_user("loner", password=PASSWORD)
    client = _login(loner)
    for url in ("/", "/models/", "/models/new/"):
        html = client.get(url).content.decode()
        assert "You are not in any group yet" in html, url
        assert 'Ask an admin: <a href="mailto:admin@example.com">Ada Admin</a>.' in html, url
        assert "former" not in html, url  # an inactive admin can't help
        assert "Deploy your first model" not in html, url
    for url in ("/", "/models/"):
        assert 'href="/models/new/">Deploy a model' not in client.get(url).content.decode(), url
    # Members and admins keep the call to action and get no such notice.
    for user in (cast.owner, cast.admin):
        html = _login(user).get("/").content.decode()
        assert "You are not in any group yet" not in html and 'href="/models/new/">Deploy a model' in html


def test_a_logged_in_users_pages_and_answers_are_never_cached(cast):
    from django.test import Client

    from tests.helpers.cast import PASSWORD

    browser = Client()
    assert browser.login(username="owner", password=PASSWORD)
    for url in ("/", "/models/", "/training/", "/api/v1/models"):
        cache = browser.get(url)["Cache-Control"]
        assert "no-store" in cache and "private" in cache, url
