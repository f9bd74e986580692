"""Authentication for the API: users' API tokens, and group tokens for model calls."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.utils import timezone
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from portal import tokens
from portal.models import ApiToken, Group, GroupToken

USER_TOKEN_KIND = "nmu_"  # noqa: S105  (a prefix, not a secret)


def _credentials(request: Request, scheme: str) -> str | None:
    header = authentication.get_authorization_header(request).decode("latin-1").strip()
    if not header:
        return None
    given_scheme, _, value = header.partition(" ")
    if given_scheme.lower() != scheme.lower():
        return None
    value = value.strip()
    if not value or " " in value:
        raise exceptions.AuthenticationFailed(
            f"Malformed Authorization header: expected '{scheme} <token>' with no spaces in the token."
        )
    return value


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Token nmu_…` (or `Bearer nmu_…`) for the REST API and the SDK."""

    keyword = "Token"

    def authenticate(self, request: Request):
        value = _credentials(request, "Token")
        if value is None:
            value = _credentials(request, "Bearer")
            # A Bearer group token is not a user login: model endpoints check it.
            if value is None or not value.startswith(USER_TOKEN_KIND):
                return None
        token = ApiToken.objects.select_related("user").filter(digest=tokens.digest(value)).first()
        if token is None or token.is_revoked:
            raise exceptions.AuthenticationFailed(
                "Invalid or revoked API token. Log in again to get a new one."
            )
        if not token.user.is_active:
            raise exceptions.AuthenticationFailed("This user account is disabled.")
        self._touch(token)
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword

    @staticmethod
    def _touch(token: ApiToken) -> None:
        now = timezone.now()
        resolution = timedelta(seconds=settings.API_TOKEN_LAST_USED_RESOLUTION_SECONDS)
        if token.last_used_at is None or now - token.last_used_at > resolution:
            ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)


class GroupTokenMissing(exceptions.NotAuthenticated):
    default_detail = "This endpoint needs the group token: send 'Authorization: Bearer <group token>'."


def check_group_token(request: Request, group: Group) -> GroupToken:
    """Check `Authorization: Bearer <group token>` against `group`.

    401 when the token is missing, unknown, revoked or expired (saying which);
    403 when it is a valid token of another group.
    """
    value = _credentials(request, "Bearer")
    if value is None:
        raise GroupTokenMissing()
    token = GroupToken.objects.select_related("group").filter(digest=tokens.digest(value)).first()
    if token is None:
        raise exceptions.AuthenticationFailed("Unknown group token. Check it, or refresh the group's token.")
    if token.is_revoked:
        raise exceptions.AuthenticationFailed(
            "This group token was replaced by a newer one. Use the group's current token."
        )
    if token.is_expired:
        raise exceptions.AuthenticationFailed(
            f"This group token expired on {token.expires_at:%Y-%m-%d %H:%M} UTC. "
            "Refresh the group's token to get a new one."
        )
    if token.group_id != group.pk:
        raise exceptions.PermissionDenied(
            f"This token belongs to group '{token.group.name}', not to '{group.name}'."
        )
    return token


class GroupTokenChallenge(authentication.BaseAuthentication):
    """For endpoints called with a group token: authenticates nobody (the token is
    checked against the model's group by the view) but makes DRF answer 401 with a
    `WWW-Authenticate: Bearer` challenge instead of 403."""

    def authenticate(self, request: Request):
        return None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="neomaril"'
