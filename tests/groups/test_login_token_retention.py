"""Revoked tokens that logins issued are deleted after REVOKED_LOGIN_TOKEN_DAYS.

Every SDK client made with a password logs in and gets a token; revoked once idle, they
were kept for ever (5,019 rows for one user, all on the account page).
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from groups import services
from groups.models import REVOKED_LOGIN_TOKEN_DAYS, ApiToken


def _token(user, name: str, *, from_login: bool, revoked_days_ago: float | None) -> ApiToken:
    token, _ = services.issue_api_token(user, name, from_login=from_login)
    if revoked_days_ago is not None:
        token.revoked_at = timezone.now() - timedelta(days=revoked_days_ago)
        token.save(update_fields=["revoked_at"])
    return token


def test_old_revoked_login_tokens_go_and_every_other_token_stays(cast, settings):
    settings.LOGIN_TOKEN_IDLE_DAYS = 30
    kept_days = REVOKED_LOGIN_TOKEN_DAYS
    for n in range(3):
        _token(cast.owner, "login", from_login=True, revoked_days_ago=kept_days + 1 + n)
    _token(cast.teammate, "login", from_login=True, revoked_days_ago=kept_days + 40)
    recent = _token(cast.owner, "login", from_login=True, revoked_days_ago=kept_days - 1)
    named = _token(cast.owner, "ci", from_login=False, revoked_days_ago=kept_days + 100)
    active = _token(cast.owner, "login", from_login=True, revoked_days_ago=None)
    idle = _token(cast.owner, "login", from_login=True, revoked_days_ago=None)
    ApiToken.objects.filter(pk=idle.pk).update(last_used_at=timezone.now() - timedelta(days=31))

    assert services.revoke_idle_login_tokens() == 1  # what it revoked: the idle one
    left = set(ApiToken.objects.values_list("pk", flat=True))
    assert left == {recent.pk, named.pk, active.pk, idle.pk}
    idle.refresh_from_db()
    assert idle.revoked_at is not None  # revoked now: deleted REVOKED_LOGIN_TOKEN_DAYS later
    assert services.revoke_idle_login_tokens() == 0
    assert set(ApiToken.objects.values_list("pk", flat=True)) == left
