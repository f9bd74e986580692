"""Authentication: users' API tokens, group tokens for model calls, login throttling."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime, timedelta

from axes.backends import AxesStandaloneBackend
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.translation import gettext
from rest_framework import authentication, exceptions
from rest_framework.request import Request

from groups import tokens
from groups.addresses import parse_address
from groups.api.shape import error_body
from groups.models import ApiToken, Group, GroupToken

USER_TOKEN_KIND = "nmu_"  # noqa: S105  (a prefix, not a secret)
GROUP_TOKEN_KIND = "nmg_"  # noqa: S105
# The 401 of an endpoint for users called with a group token (groups.api.errors).
USER_ENDPOINT_NEEDS_A_LOGIN = (
    "A group token (Authorization: Bearer nmg_…) only calls models: POST /api/v1/run/<hash> "
    "and its executions. This endpoint needs a user's API token (Authorization: Token nmu_…, "
    "from POST /api/v1/auth/login) or a logged-in session."
)


def _credentials(request: Request, scheme: str) -> str | None:
    return credentials_from_header(authentication.get_authorization_header(request), scheme)


def credentials_from_header(raw: bytes, scheme: str) -> str | None:
    """The token of an `Authorization: <scheme> <token>` header value; None for another
    scheme or no header, AuthenticationFailed (401) when malformed."""
    header = raw.decode("latin-1").strip()
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
        if value is not None and value.startswith(GROUP_TOKEN_KIND):
            raise exceptions.AuthenticationFailed(USER_ENDPOINT_NEEDS_A_LOGIN)
        if value is None:
            value = _credentials(request, "Bearer")
            # A Bearer group token is not a user login: model endpoints check it.
            if value is None or not value.startswith(USER_TOKEN_KIND):
                return None
        token = ApiToken.objects.select_related("user").filter(digest=tokens.digest(value)).first()
        if token is None:
            raise exceptions.AuthenticationFailed(
                "Unknown API token. Check it, or log in again to get a new one."
            )
        if token.is_revoked:
            raise exceptions.AuthenticationFailed(
                f"This API token was revoked on {token.revoked_at:%Y-%m-%d %H:%M} UTC. "
                "Log in again to get a new one."
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


def presents_group_token(request: Request | HttpRequest) -> bool:
    """Whether the caller sent `Bearer <token>` with a token that is not a user's API token,
    which ApiTokenAuthentication leaves to the model endpoints (they check it)."""
    try:
        value = _credentials(request, "Bearer")
    except exceptions.AuthenticationFailed:  # malformed: ApiTokenAuthentication says so first
        return False
    return value is not None and not value.startswith(USER_TOKEN_KIND)


class GroupTokenMissing(exceptions.NotAuthenticated):
    default_detail = "This endpoint needs the group token: send 'Authorization: Bearer <group token>'."


@dataclass(frozen=True)
class TokenFacts:
    """What the group-token check needs to know about a presented token."""

    group_id: int
    expires_at: datetime
    revoked: bool


def group_token_problem(facts: TokenFacts | None, group_id: int) -> exceptions.APIException | None:
    """Why this token may not call a model of `group_id`, or None when it may.

    401 when the token is unknown, revoked or expired (saying which); 403 when it is a
    valid token of another group. The 403 names no group: whoever holds one group's
    token must not learn which group owns a model of another.
    """
    problem = unusable_token_problem(facts)
    if problem is None and facts.group_id != group_id:
        return exceptions.PermissionDenied(
            "This group token is not valid for this model: use the token of the group that owns it."
        )
    return problem


def unusable_token_problem(facts: TokenFacts | None) -> exceptions.AuthenticationFailed | None:
    """401 when the token is unknown, revoked or expired (saying which), whatever it is for."""
    if facts is None:
        return exceptions.AuthenticationFailed("Unknown group token. Check it, or refresh the group's token.")
    if facts.revoked:
        return exceptions.AuthenticationFailed(
            "This group token was revoked: replaced by a newer one, or revoked by an admin. "
            "Use the group's current token, or ask an owner to refresh it."
        )
    if facts.expires_at <= timezone.now():
        return exceptions.AuthenticationFailed(
            f"This group token expired on {facts.expires_at:%Y-%m-%d %H:%M} UTC. "
            "Refresh the group's token to get a new one."
        )
    return None


def find_group_token(value: str) -> GroupToken | None:
    """The group token whose value is `value` (found by its digest), or None."""
    return GroupToken.objects.filter(digest=tokens.digest(value)).first()


def token_facts(token: GroupToken | None) -> TokenFacts | None:
    return None if token is None else TokenFacts(token.group_id, token.expires_at, token.is_revoked)


def refuse_unusable_token(request: Request | HttpRequest) -> None:
    """Raise 401 unless the request presents a usable group token (of any group).

    Asked before answering that a model does not exist: a caller without a usable token
    gets 401 whatever the URL names, so it cannot tell which model hashes (and versions)
    exist by their 401s and 404s.
    """
    problem = unusable_token_problem(token_facts(find_group_token(bearer_token(request))))
    if problem is not None:
        raise problem


def bearer_token(request: Request | HttpRequest) -> str:
    """The Bearer credentials, or GroupTokenMissing (401)."""
    value = _credentials(request, "Bearer")
    if value is None:
        raise GroupTokenMissing()
    return value


def check_group_token(request: Request, group: Group) -> GroupToken:
    """Check `Authorization: Bearer <group token>` against `group` (see group_token_problem)."""
    token = find_group_token(bearer_token(request))
    problem = group_token_problem(token_facts(token), group.pk)
    if problem is not None:
        raise problem
    return token


class GroupTokenChallenge(authentication.BaseAuthentication):
    """For endpoints called with a group token: authenticates nobody (the token is
    checked against the model's group by the view) but makes DRF answer 401 with a
    `WWW-Authenticate: Bearer` challenge instead of 403."""

    def authenticate(self, request: Request):
        return None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="neomaril"'


# --- Login throttling (django-axes, configured in settings "Login throttling") ---------


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' check, first in AUTHENTICATION_BACKENDS: a locked-out client is
    refused before its password is even looked at.

    Every login over the network (the API, /login/, /admin/login/) passes its request,
    which carries the client's address. A call without one comes from inside the
    platform (Django's test client, a shell): it has no address to count, so it is left
    to the next backend instead of failing as axes' own backend does.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


def _is_trusted(address, networks: list) -> bool:
    return address is not None and any(address in network for network in networks)


def client_ip(request: HttpRequest) -> str:
    """The address a login is counted against.

    The peer's address, unless the peer is one of NEOMARIL_TRUSTED_PROXIES: then the
    right-most address of X-Forwarded-For that is not itself a trusted proxy (each proxy
    appends the address it was reached from, so the entries on the left are whatever
    the client chose to send).
    """
    remote = request.META.get("REMOTE_ADDR", "")
    networks = [ipaddress.ip_network(item, strict=False) for item in settings.TRUSTED_PROXIES]
    peer = parse_address(remote)
    if peer is not None:
        remote = str(peer)  # ::ffff:a.b.c.d counts as a.b.c.d, whichever address the web binds
    if not _is_trusted(peer, networks):
        return remote
    client = remote
    for entry in reversed(request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")):
        address = parse_address(entry)
        if address is None:
            break  # not an address: the chain is not trustworthy beyond this point
        client = str(address)
        if not _is_trusted(address, networks):
            break
    return client


def lockout_message() -> str:
    # In the page's language on the login page; English for the API (PortalLocaleMiddleware).
    return gettext(
        "Too many failed logins from your address (%(limit)s). "
        "Logins from it are refused for %(minutes)s minutes; try again later, "
        "or ask an admin to lift the lock (manage.py axes_reset_ip <address>)."
    ) % {"limit": settings.LOGIN_FAILURE_LIMIT, "minutes": settings.LOGIN_LOCKOUT_MINUTES}


class LoginLockedOut(exceptions.APIException):
    """429 for the API login (the forms get lockout_response's page)."""

    status_code = 429
    default_code = "locked_out"

    def __init__(self) -> None:
        super().__init__(lockout_message())
        self.wait = settings.LOGIN_LOCKOUT_MINUTES * 60  # DRF sends it as Retry-After


def is_locked_out(request) -> bool:
    """True when django-axes refused (or just locked) this login attempt."""
    return bool(getattr(request, "axes_locked_out", False))


def lockout_response(request: HttpRequest, original_response=None, credentials=None) -> HttpResponse:
    """What a locked-out login form answers (AXES_LOCKOUT_CALLABLE): a page, or the
    API's JSON for a request under /api/."""
    retry_after = str(settings.LOGIN_LOCKOUT_MINUTES * 60)
    if request.path_info.startswith("/api/"):
        response: HttpResponse = JsonResponse(error_body(lockout_message(), "locked_out"), status=429)
    else:
        context = {"message": lockout_message(), "minutes": settings.LOGIN_LOCKOUT_MINUTES}
        response = render(request, "registration/locked_out.html", context, status=429)
    response["Retry-After"] = retry_after
    return response
