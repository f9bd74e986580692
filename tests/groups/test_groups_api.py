"""Groups, members and group tokens through the API."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework import exceptions
from rest_framework.test import APIRequestFactory

from groups.authentication import check_group_token
from groups.models import Group, GroupToken, Membership
from tests.helpers.clients import api_client


def test_admin_creates_group_and_sees_token_once(cast):
    client = api_client(cast.admin)
    response = client.post("/api/v1/groups", {"name": "fraud", "description": "Fraud team"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "fraud"
    assert body["group_token"].startswith("nmg_")
    assert body["token"]["prefix"] == body["group_token"][:12]
    detail = client.get("/api/v1/groups/fraud").json()
    assert "group_token" not in detail
    assert body["group_token"] not in str(detail)
    expires = GroupToken.objects.get(group__name="fraud").expires_at
    assert timedelta(days=364) < expires - timezone.now() <= timedelta(days=365)


def test_non_admin_cannot_create_groups(cast):
    response = api_client(cast.owner).post("/api/v1/groups", {"name": "mine"}, format="json")
    assert response.status_code == 403
    assert "Only admins" in response.json()["detail"]
    assert not Group.objects.filter(name="mine").exists()


@pytest.mark.parametrize("name", ["Fraud", "has space", "a" * 33, "-leading", "acentuação", "dots.no", ""])
def test_bad_group_names_are_400_saying_why(cast, name):
    response = api_client(cast.admin).post("/api/v1/groups", {"name": name}, format="json")
    assert response.status_code == 400
    message = response.json()["errors"]["name"][0]
    assert (
        "lower-case" in message or "required" in message or "32 characters" in message or "blank" in message
    )


def test_duplicate_group_name_is_400(cast):
    response = api_client(cast.admin).post("/api/v1/groups", {"name": "datarisk"}, format="json")
    assert response.status_code == 400
    assert "already exists" in response.json()["errors"]["name"][0]


def test_members_see_only_their_groups(cast):
    assert [g["name"] for g in api_client(cast.teammate).get("/api/v1/groups").json()] == ["datarisk"]
    assert [g["name"] for g in api_client(cast.outsider).get("/api/v1/groups").json()] == ["other-team"]
    assert [g["name"] for g in api_client(cast.admin).get("/api/v1/groups").json()] == [
        "datarisk",
        "other-team",
    ]


def test_group_detail_lists_members_and_outsider_gets_404(cast):
    body = api_client(cast.teammate).get("/api/v1/groups/datarisk").json()
    assert {(m["username"], m["role"]) for m in body["members"]} == {
        ("owner", "owner"),
        ("teammate", "member"),
    }
    response = api_client(cast.outsider).get("/api/v1/groups/datarisk")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert api_client(cast.owner).get("/api/v1/groups/no-such-group").status_code == 404


def test_owner_adds_and_removes_members(cast):
    client = api_client(cast.owner)
    added = client.post("/api/v1/groups/datarisk/members", {"username": "outsider"}, format="json")
    assert added.status_code == 201
    assert added.json()["role"] == "member"
    assert Membership.objects.filter(group=cast.group, user=cast.outsider).exists()
    promoted = client.post(
        "/api/v1/groups/datarisk/members", {"username": "outsider", "role": "owner"}, format="json"
    )
    assert promoted.status_code == 200 and promoted.json()["role"] == "owner"
    assert client.delete("/api/v1/groups/datarisk/members/outsider").status_code == 204
    assert not Membership.objects.filter(group=cast.group, user=cast.outsider).exists()
    again = client.delete("/api/v1/groups/datarisk/members/outsider")
    assert again.status_code == 404
    assert "not a member" in again.json()["detail"]


def test_the_last_owner_cannot_step_down_or_leave_but_an_admin_can_take_them_out(cast):
    client = api_client(cast.owner)
    demoted = client.post(
        "/api/v1/groups/datarisk/members", {"username": "owner", "role": "member"}, format="json"
    )
    assert demoted.status_code == 409
    assert demoted.json()["detail"] == (
        "owner is the only owner of datarisk: make another member an owner first, or ask an admin."
    )
    assert client.delete("/api/v1/groups/datarisk/members/owner").status_code == 409
    assert Membership.objects.get(group=cast.group, user=cast.owner).role == "owner"  # nothing changed
    # With a second owner, either may step down.
    client.post("/api/v1/groups/datarisk/members", {"username": "teammate", "role": "owner"}, format="json")
    assert client.delete("/api/v1/groups/datarisk/members/owner").status_code == 204
    # An admin manages every group, owners or not.
    teammate = api_client(cast.admin).delete("/api/v1/groups/datarisk/members/teammate")
    assert teammate.status_code == 204
    assert not Membership.objects.filter(group=cast.group, role="owner").exists()


def test_member_cannot_manage_and_outsider_gets_404(cast):
    response = api_client(cast.teammate).post(
        "/api/v1/groups/datarisk/members", {"username": "outsider"}, format="json"
    )
    assert response.status_code == 403
    response = api_client(cast.outsider).post(
        "/api/v1/groups/datarisk/members", {"username": "outsider"}, format="json"
    )
    assert response.status_code == 404
    assert not Membership.objects.filter(group=cast.group, user=cast.outsider).exists()


def test_adding_unknown_user_is_400(cast):
    response = api_client(cast.owner).post(
        "/api/v1/groups/datarisk/members", {"username": "ghost"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["username"][0].startswith(
        "No user named 'ghost'. Create the account first (admins: POST /api/v1/users"
    )


def test_refresh_keeps_valid_token_unless_forced(cast):
    client = api_client(cast.owner)
    kept = client.post("/api/v1/groups/datarisk/refresh-token", {}, format="json")
    assert kept.status_code == 200
    assert kept.json()["refreshed"] is False and kept.json()["group_token"] is None
    assert _check(cast.group_token, cast.group).group == cast.group

    forced = client.post("/api/v1/groups/datarisk/refresh-token", {"force": True}, format="json")
    assert forced.status_code == 201
    new_value = forced.json()["group_token"]
    assert new_value.startswith("nmg_") and new_value != cast.group_token
    assert _check(new_value, cast.group).group == cast.group
    with pytest.raises(exceptions.AuthenticationFailed, match="replaced by a newer one"):
        _check(cast.group_token, cast.group)


def test_refresh_replaces_expired_token_without_force(cast):
    GroupToken.objects.filter(group=cast.group).update(expires_at=timezone.now() - timedelta(days=1))
    response = api_client(cast.owner).post("/api/v1/groups/datarisk/refresh-token", {}, format="json")
    assert response.status_code == 201
    assert _check(response.json()["group_token"], cast.group)


def test_member_cannot_refresh(cast):
    assert api_client(cast.teammate).post("/api/v1/groups/datarisk/refresh-token", {}).status_code == 403
    assert api_client(cast.outsider).post("/api/v1/groups/datarisk/refresh-token", {}).status_code == 404


def _check(value, group, scheme="Bearer"):
    request = APIRequestFactory().post("/", HTTP_AUTHORIZATION=f"{scheme} {value}" if value else "")
    return check_group_token(request, group)


def test_group_token_check_errors(cast):
    with pytest.raises(exceptions.NotAuthenticated, match="Bearer <group token>"):
        _check("", cast.group)
    with pytest.raises(exceptions.AuthenticationFailed, match="Unknown group token"):
        _check("nmg_not-a-real-token", cast.group)
    with pytest.raises(exceptions.PermissionDenied, match="not valid for this model") as denied:
        _check(cast.other_token, cast.group)
    assert "other-team" not in str(denied.value.detail)  # names no group to a holder of another's token
    GroupToken.objects.filter(group=cast.group).update(expires_at=timezone.now() - timedelta(minutes=1))
    with pytest.raises(exceptions.AuthenticationFailed, match="expired on"):
        _check(cast.group_token, cast.group)


def test_group_token_lifetime_is_configurable(cast, settings):
    settings.GROUP_TOKEN_LIFETIME_DAYS = 30
    response = api_client(cast.admin).post("/api/v1/groups", {"name": "short"}, format="json")
    expires = GroupToken.objects.get(group__name="short").expires_at
    assert response.status_code == 201
    assert timedelta(days=29) < expires - timezone.now() <= timedelta(days=30)


# --- bodies with more, or other, than the endpoint takes -------------------------------


def test_an_unknown_key_of_a_new_group_is_400_and_no_group_is_made(cast):
    response = api_client(cast.admin).post("/api/v1/groups", {"name": "g3", "foo": 1}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "foo": ["Not a field of this request; it takes name, description, storage_quota_mb."]
    }
    assert not Group.objects.filter(name="g3").exists()


@pytest.mark.parametrize(("value", "kind"), [(123, "number"), (True, "boolean"), (1.5, "number")])
def test_a_group_name_that_is_not_text_is_400(cast, value, kind):
    response = api_client(cast.admin).post("/api/v1/groups", {"name": value}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == {"name": [f"Send text, not a JSON {kind}."]}
    assert not Group.objects.filter(name=str(value)).exists()


def test_an_unknown_key_of_a_refresh_is_400_and_the_token_is_kept(cast):
    before = GroupToken.objects.get(group=cast.group, revoked_at=None).pk
    response = api_client(cast.owner).post(
        "/api/v1/groups/datarisk/refresh-token", {"force": True, "x": 1}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"x": ["Not a field of this request; it takes force."]}
    assert GroupToken.objects.get(group=cast.group, revoked_at=None).pk == before


def test_an_unknown_key_of_a_new_member_is_400(cast):
    response = api_client(cast.owner).post(
        "/api/v1/groups/datarisk/members", {"username": "outsider", "rol": "owner"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"rol": ["Not a field of this request; it takes username, role."]}
    assert not Membership.objects.filter(group=cast.group, user=cast.outsider).exists()
