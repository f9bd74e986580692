"""Login and personal API tokens."""

from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from groups.models import ApiToken
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client, token_client


def test_login_exchanges_password_for_token(cast):
    response = api_client().post(
        "/api/v1/auth/login", {"username": "owner", "password": PASSWORD}, format="json"
    )
    assert response.status_code == 201
    token = response.json()["token"]
    assert token.startswith("nmu_")
    assert response.json()["user"] == {"username": "owner", "email": "", "is_staff": False}
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert client.get("/api/v1/auth/me").json()["username"] == "owner"


def test_login_tokens_unused_for_the_idle_days_are_revoked_and_named_tokens_kept(cast, settings):
    from datetime import timedelta

    from groups import services

    settings.LOGIN_TOKEN_IDLE_DAYS = 30
    logins = []
    for _ in range(3):
        response = api_client().post(
            "/api/v1/auth/login", {"username": "owner", "password": PASSWORD}, format="json"
        )
        logins.append(response.json()["token"])
    named, named_value = services.issue_api_token(cast.owner, "ci deploys")
    assert list(ApiToken.objects.filter(from_login=True).values_list("name", flat=True)) == ["login"] * 3
    old = timezone.now() - timedelta(days=31)
    idle_unused, idle_used, in_use = ApiToken.objects.filter(from_login=True).order_by("pk")
    ApiToken.objects.filter(pk=idle_unused.pk).update(created_at=old)  # never used since
    ApiToken.objects.filter(pk=idle_used.pk).update(created_at=old, last_used_at=old)
    ApiToken.objects.filter(pk=in_use.pk).update(created_at=old, last_used_at=timezone.now())
    ApiToken.objects.filter(pk=named.pk).update(created_at=old)

    assert services.revoke_idle_login_tokens() == 2
    for value, works in [*zip(logins, [False, False, True], strict=True), (named_value, True)]:
        client = api_client()
        client.credentials(HTTP_AUTHORIZATION=f"Token {value}")
        assert (client.get("/api/v1/auth/me").status_code == 200) is works
    assert services.revoke_idle_login_tokens() == 0


def test_bearer_user_token_also_works(cast):
    _, value = __import__("groups.services").services.issue_api_token(cast.owner)
    client = api_client()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {value}")
    assert client.get("/api/v1/auth/me").json()["username"] == "owner"


def test_wrong_password_is_401_with_message(cast):
    response = api_client().post(
        "/api/v1/auth/login", {"username": "owner", "password": "nope"}, format="json"
    )
    assert response.status_code == 401
    assert response.json() == {"detail": "Wrong username or password.", "code": "authentication_failed"}


def test_login_missing_field_is_400_naming_it(cast):
    response = api_client().post("/api/v1/auth/login", {"username": "owner"}, format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["errors"]["password"] == ["This field is required."]
    assert body["detail"] == "password: This field is required."


def test_anonymous_is_401(cast):
    response = api_client().get("/api/v1/groups")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_tokens_are_stored_hashed_and_a_db_dump_has_no_token(cast):
    client = api_client()
    value = client.post(
        "/api/v1/auth/login", {"username": "owner", "password": PASSWORD}, format="json"
    ).json()["token"]
    dump = StringIO()
    call_command("dumpdata", "portal", stdout=dump)
    text = dump.getvalue()
    assert value not in text
    assert cast.group_token not in text
    assert value[4:20] not in text  # not even a long piece of it
    token = ApiToken.objects.get(prefix=value[:12])
    assert token.digest != value and len(token.digest) == 64


def test_list_create_and_revoke_tokens(cast):
    client = api_client(cast.owner)
    created = client.post("/api/v1/auth/tokens", {"name": "notebook"}, format="json")
    assert created.status_code == 201
    new_value = created.json()["token"]
    listing = client.get("/api/v1/auth/tokens").json()["results"]
    names = {item["name"] for item in listing}
    assert names == {"test", "notebook"}
    assert all("token" not in item for item in listing)

    revoke = client.delete(f"/api/v1/auth/tokens/{created.json()['id']}")
    assert revoke.status_code == 204
    revoked = api_client()
    revoked.credentials(HTTP_AUTHORIZATION=f"Token {new_value}")
    response = revoked.get("/api/v1/auth/me")
    assert response.status_code == 401
    assert "revoked" in response.json()["detail"]


def test_cannot_revoke_someone_elses_token(cast):
    token, _ = __import__("groups.services").services.issue_api_token(cast.teammate)
    response = api_client(cast.owner).delete(f"/api/v1/auth/tokens/{token.public_id}")
    assert response.status_code == 404
    token.refresh_from_db()
    assert token.revoked_at is None


def test_last_use_is_recorded(cast):
    client = api_client(cast.owner)
    client.get("/api/v1/auth/me")
    token = ApiToken.objects.get(user=cast.owner)
    assert token.last_used_at is not None
    assert (timezone.now() - token.last_used_at).total_seconds() < 5


def test_wrong_method_is_405(cast):
    response = api_client(cast.owner).put("/api/v1/auth/me", {})
    assert response.status_code == 405
    assert response.json()["code"] == "method_not_allowed"


GROUP_TOKEN_ON_USER_ENDPOINT = (
    "A group token (Authorization: Bearer nmg_…) only calls models: POST /api/v1/run/<hash> "
    "and its executions. This endpoint needs a user's API token (Authorization: Token nmu_…, "
    "from POST /api/v1/auth/login) or a logged-in session."
)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/models"),
        ("get", "/api/v1/auth/me"),
        ("get", "/api/v1/groups"),
        ("post", "/api/v1/users"),
    ],
)
def test_a_group_token_on_a_user_endpoint_is_401_saying_which_token_it_needs(cast, method, path):
    response = getattr(token_client(cast.group_token), method)(path, {}, format="json")
    assert response.status_code == 401
    assert response.json() == {"detail": GROUP_TOKEN_ON_USER_ENDPOINT, "code": "not_authenticated"}
    assert response["WWW-Authenticate"] == "Token"


def test_without_any_token_the_401_is_unchanged(cast):
    response = api_client().get("/api/v1/models")
    assert response.json() == {
        "detail": "Authentication credentials were not provided.",
        "code": "not_authenticated",
    }
