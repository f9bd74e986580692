"""A group's pages (the Django admin's and the API's) take a number of queries that does not
grow with its members, and the admin's lists one that does not grow with their rows."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from groups import services
from groups.models import Membership
from tests.helpers.clients import api_client

User = get_user_model()


@pytest.fixture
def admin_browser(cast) -> Client:
    client = Client()
    client.force_login(cast.admin)
    return client


def _queries(client, url: str) -> int:
    client.get(url)  # the first call also notes a token's last use, or loads the session
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200, url
    return len(captured)


def _add_members(group, count: int) -> None:
    first = group.memberships.count()
    for number in range(first, first + count):
        user = User.objects.create_user(f"{group.name}-member-{number}")
        services.set_membership(group, user, Membership.Role.MEMBER)


def _add_groups(cast, count: int) -> None:
    for _ in range(count):
        group = services.create_group(name=f"extra-{User.objects.count()}", created_by=cast.admin)[0]
        _add_members(group, 2)
        services.issue_api_token(group.memberships.first().user, "laptop")
        services.refresh_group_token(group, force=True, actor=cast.admin)


def test_the_group_api_takes_the_same_queries_for_more_members(cast):
    owner = api_client(cast.owner)
    url = f"/api/v1/groups/{cast.group.name}"
    _add_members(cast.group, 3)
    few = _queries(owner, url)
    _add_members(cast.group, 9)
    assert _queries(owner, url) == few
    names = [member["username"] for member in owner.get(url).json()["members"]]
    assert len(names) == 14 and {"owner", "teammate", "datarisk-member-13"} <= set(names)


def test_a_groups_change_page_takes_the_same_queries_for_more_members(cast, admin_browser):
    url = f"/admin/portal/group/{cast.group.pk}/change/"
    _add_members(cast.group, 3)
    few = _queries(admin_browser, url)
    _add_members(cast.group, 9)
    many = _queries(admin_browser, url)
    assert many == few, f"{few} queries, then {many} for 9 more members"
    page = admin_browser.get(url).content.decode()
    assert "datarisk-member-13" in page and "teammate" in page
    assert "outsider" not in page  # no drop-down of every user


def test_a_groups_change_page_still_changes_removes_and_adds_members(cast, admin_browser):
    url = f"/admin/portal/group/{cast.group.pk}/change/"
    page = admin_browser.get(url)
    assert page.status_code == 200
    listed, added = (inline.formset.prefix for inline in page.context["inline_admin_formsets"])
    owner, teammate = (
        Membership.objects.get(group=cast.group, user=user) for user in (cast.owner, cast.teammate)
    )
    data = {
        "name": cast.group.name,
        "description": "Renamed risk models",
        **_management(listed, total=2, initial=2),
        f"{listed}-0-id": owner.pk,
        f"{listed}-0-group": cast.group.pk,
        f"{listed}-0-role": "owner",
        f"{listed}-1-id": teammate.pk,
        f"{listed}-1-group": cast.group.pk,
        f"{listed}-1-role": "owner",
        f"{listed}-1-DELETE": "on",
        **_management(added, total=1, initial=0),
        f"{added}-0-group": cast.group.pk,
        f"{added}-0-user": cast.outsider.pk,
        f"{added}-0-role": "member",
    }
    answer = admin_browser.post(url, data)
    assert answer.status_code == 302, answer.context and [
        inline.formset.errors for inline in answer.context["inline_admin_formsets"]
    ]
    cast.group.refresh_from_db()
    assert cast.group.description == "Renamed risk models"
    roles = dict(cast.group.memberships.values_list("user__username", "role"))
    assert roles == {"owner": "owner", "outsider": "member"}


def _management(prefix: str, *, total: int, initial: int) -> dict:
    return {
        f"{prefix}-TOTAL_FORMS": total,
        f"{prefix}-INITIAL_FORMS": initial,
        f"{prefix}-MIN_NUM_FORMS": 0,
        f"{prefix}-MAX_NUM_FORMS": 1000,
    }


@pytest.mark.parametrize(
    "url",
    [
        "/admin/portal/group/",
        "/admin/portal/membership/",
        "/admin/portal/grouptoken/",
        "/admin/portal/apitoken/",
        "/admin/auth/user/",
    ],
)
def test_the_accounts_admin_lists_take_the_same_queries_for_more_rows(cast, admin_browser, url):
    _add_groups(cast, 2)
    few = _queries(admin_browser, url)
    _add_groups(cast, 6)
    many = _queries(admin_browser, url)
    assert many == few, f"{few} queries, then {many} for 6 more groups"


def test_the_groups_list_still_counts_members_and_shows_the_valid_token(cast, admin_browser):
    page = admin_browser.get("/admin/portal/group/")
    rows = {group.name: group for group in page.context["cl"].result_list}
    model_admin = page.context["cl"].model_admin
    assert model_admin.member_count(rows["datarisk"]) == 2
    assert model_admin.token_expires(rows["datarisk"]) == cast.group.active_token().expires_at
    assert model_admin.token_expires(rows["other-team"]) == cast.other_group.active_token().expires_at


def test_a_users_change_page_takes_the_same_queries_for_more_groups(cast, admin_browser):
    url = f"/admin/auth/user/{cast.teammate.pk}/change/"
    few = _queries(admin_browser, url)
    for number in range(4):
        group, _ = services.create_group(name=f"team-{number}", created_by=None)
        services.set_membership(group, cast.teammate, Membership.Role.MEMBER)
    assert _queries(admin_browser, url) == few


def test_a_users_change_page_still_changes_and_adds_groups(cast, admin_browser):
    url = f"/admin/auth/user/{cast.teammate.pk}/change/"
    page = admin_browser.get(url)
    assert page.status_code == 200 and "datarisk" in page.content.decode()
    listed, added = (inline.formset.prefix for inline in page.context["inline_admin_formsets"])
    membership = Membership.objects.get(group=cast.group, user=cast.teammate)
    data = {
        "username": "teammate",
        "email": "teammate@example.com",
        "is_active": "on",
        "date_joined_0": "2026-01-02",
        "date_joined_1": "09:30:00",
        **_management(listed, total=1, initial=1),
        f"{listed}-0-id": membership.pk,
        f"{listed}-0-user": cast.teammate.pk,
        f"{listed}-0-role": "owner",
        **_management(added, total=1, initial=0),
        f"{added}-0-user": cast.teammate.pk,
        f"{added}-0-group": cast.other_group.pk,
        f"{added}-0-role": "member",
    }
    answer = admin_browser.post(url, data)
    assert answer.status_code == 302, answer.context and [
        *answer.context["adminform"].form.errors.items(),
        *(inline.formset.errors for inline in answer.context["inline_admin_formsets"]),
    ]
    cast.teammate.refresh_from_db()
    assert cast.teammate.email == "teammate@example.com"
    roles = dict(cast.teammate.memberships.values_list("group__name", "role"))
    assert roles == {"datarisk": "owner", "other-team": "member"}


def test_the_groups_list_still_replaces_a_groups_token(cast, admin_browser):
    before = cast.group.active_token()
    answer = admin_browser.post(
        "/admin/portal/group/",
        {
            "action": "force_refresh_token",
            "select_across": "0",
            "index": "0",
            "_selected_action": cast.group.pk,
        },
    )
    assert answer.status_code == 200
    after = cast.group.active_token()
    assert after != before and after.prefix.encode() in answer.content
    before.refresh_from_db()
    assert before.revoked_at is not None
