"""Workflows of the accounts domain: groups, membership, tokens and people (accounts)."""

from __future__ import annotations

import logging
import smtplib
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.tokens import default_token_generator
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode
from django.utils.translation import gettext

from groups import tokens
from groups.access import is_admin
from groups.models import GROUP_NAME_TAKEN, REVOKED_LOGIN_TOKEN_DAYS, ApiToken, Group, GroupToken, Membership

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TokenRefresh:
    """Outcome of a refresh: `value` is the new token (shown once) or None if kept."""

    token: GroupToken
    value: str | None

    @property
    def refreshed(self) -> bool:
        return self.value is not None


def _issue_group_token(group: Group, actor: AbstractBaseUser | None) -> tuple[GroupToken, str]:
    fresh = tokens.new_token("nmg")
    token = GroupToken.objects.create(
        group=group,
        prefix=fresh.prefix,
        digest=fresh.digest,
        expires_at=GroupToken.default_expiry(),
        created_by=actor,
    )
    return token, fresh.value


@transaction.atomic
def create_group(
    *,
    name: str,
    description: str = "",
    created_by: AbstractBaseUser | None = None,
    storage_quota_mb: int | None = None,
) -> tuple[Group, str]:
    """Create a group and its first token; the creator (if any) becomes an owner."""
    group = Group(
        name=name, description=description, created_by=created_by, storage_quota_mb=storage_quota_mb
    )
    # A name already taken is the insert's to find: checked before, it could still be
    # taken by a concurrent request in between, and both ways get one message.
    group.full_clean(validate_unique=False)
    try:
        with transaction.atomic():
            group.save()
    except IntegrityError:
        raise ValidationError({"name": [str(GROUP_NAME_TAKEN)]}) from None
    if created_by is not None:
        Membership.objects.create(group=group, user=created_by, role=Membership.Role.OWNER)
    _, value = _issue_group_token(group, created_by)
    return group, value


@transaction.atomic
def refresh_group_token(group: Group, *, force: bool, actor: AbstractBaseUser | None) -> TokenRefresh:
    """Replace the group token when it has expired (or when forced).

    A still-valid token is kept unless `force` is set, so calling this from a
    deployment script never breaks the clients already using the current token.
    """
    # Lock the group row so two concurrent refreshes cannot both issue a token.
    group = Group.objects.select_for_update().get(pk=group.pk)
    current = group.active_token()
    if current is not None and not force:
        return TokenRefresh(token=current, value=None)
    group.tokens.usable().update(revoked_at=timezone.now())
    token, value = _issue_group_token(group, actor)
    return TokenRefresh(token=token, value=value)


@transaction.atomic
def set_membership(
    group: Group, user: AbstractBaseUser, role: str, *, actor: AbstractBaseUser | None = None
) -> tuple[Membership, bool]:
    """Add `user` to `group` with `role`, or change the role of an existing member.

    PeopleError: `actor`, an owner, would leave the group without an owner (see _keep_an_owner).
    """
    if role != Membership.Role.OWNER:
        _keep_an_owner(group, user, actor)
    membership, created = Membership.objects.update_or_create(group=group, user=user, defaults={"role": role})
    return membership, created


@transaction.atomic
def remove_membership(group: Group, user: AbstractBaseUser, *, actor: AbstractBaseUser | None = None) -> bool:
    """Take `user` out of `group`; False when they were not in it. PeopleError as set_membership."""
    _keep_an_owner(group, user, actor)
    deleted, _ = Membership.objects.filter(group=group, user=user).delete()
    return bool(deleted)


def _keep_an_owner(group: Group, leaving: AbstractBaseUser, actor: AbstractBaseUser | None) -> None:
    """Refuse that an owner takes the group's last owner out of the role: only an admin
    could manage the group after that. Admins (and the platform itself, actor None) may."""
    if actor is None or is_admin(actor):
        return
    # Locks the group's owner rows: two owners leaving at once cannot both be "another owner".
    # A deactivated owner cannot manage the group: they do not count as another owner.
    owners = list(
        Membership.objects.select_for_update()
        .filter(group=group, role=Membership.Role.OWNER, user__is_active=True)
        .values_list("user_id", flat=True)
    )
    if owners == [leaving.pk]:
        raise PeopleError(
            gettext(
                "%(user)s is the only owner of %(group)s: make another member an owner first, "
                "or ask an admin."
            )
            % {"user": leaving.get_username(), "group": group.name}
        )


def issue_api_token(
    user: AbstractBaseUser, name: str = "", *, from_login: bool = False
) -> tuple[ApiToken, str]:
    fresh = tokens.new_token("nmu")
    token = ApiToken.objects.create(
        user=user, name=name, prefix=fresh.prefix, digest=fresh.digest, from_login=from_login
    )
    return token, fresh.value


def revoke_idle_login_tokens() -> int:
    """Revoke the tokens logins issued that nobody used for NEOMARIL_LOGIN_TOKEN_IDLE_DAYS,
    and delete those revoked more than REVOKED_LOGIN_TOKEN_DAYS ago; returns how many it revoked.

    Each SDK client made with a password logs in and gets a token of its own; a notebook
    run many times would otherwise leave that many credentials valid for ever, and their
    rows for ever after. Tokens a person created by name are theirs to revoke.
    """
    now = timezone.now()
    idle_since = now - timedelta(days=settings.LOGIN_TOKEN_IDLE_DAYS)
    revoked = (
        ApiToken.objects.usable()
        .filter(from_login=True)
        .filter(Q(last_used_at__lt=idle_since) | Q(last_used_at__isnull=True, created_at__lt=idle_since))
        .update(revoked_at=now)
    )
    ApiToken.objects.filter(
        from_login=True, revoked_at__lt=now - timedelta(days=REVOKED_LOGIN_TOKEN_DAYS)
    ).delete()
    return revoked


def revoke_api_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


# --- People: accounts created and managed by admins ---------------------------------
# No password is ever chosen, sent or shown by an admin: a new or reset account gets a
# one-time link (Django's password-reset token: it expires after PASSWORD_RESET_TIMEOUT
# and stops working once a password is set, or when the password changes otherwise).


@dataclass(frozen=True)
class SetPasswordLink:
    """Where `user` sets their password: `path` (make it absolute with the request's host)."""

    user: AbstractBaseUser
    path: str
    expires_at: datetime


class PeopleError(ValueError):
    """A user-management request the rules refuse; the message says why and what to do."""


def set_password_link(user: AbstractBaseUser) -> SetPasswordLink:
    """A fresh one-time link for `user` (nothing is stored: the token signs the user's state)."""
    uidb64 = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    path = reverse("set-password", kwargs={"uidb64": uidb64, "token": token})
    expires_at = timezone.now() + timedelta(seconds=settings.PASSWORD_RESET_TIMEOUT)
    return SetPasswordLink(user=user, path=path, expires_at=expires_at)


@transaction.atomic
def create_user(*, username: str, email: str = "", is_staff: bool = False) -> SetPasswordLink:
    """A new active account with no usable password, and its set-password link."""
    user = get_user_model()(username=username, email=email, is_staff=is_staff, is_active=True)
    user.set_unusable_password()
    try:
        with transaction.atomic():
            user.save()
    except IntegrityError:
        # Created by a concurrent request since the form's check: the check's own message.
        message = gettext(
            "A user named '%(username)s' already exists (user names are compared ignoring case)."
        ) % {"username": username}
        raise ValidationError({"username": [message]}) from None
    return set_password_link(user)


def _refuse_unless_superuser(user: AbstractBaseUser, actor: AbstractBaseUser | None, refusal: str) -> None:
    """Only a superuser resets or deactivates a superuser: an admin who could would lock
    out (or take over, through the new link) the accounts that manage Django admin."""
    if user.is_superuser and actor is not None and not actor.is_superuser:
        raise PeopleError(refusal % {"username": user.get_username()})


def end_sessions(user: AbstractBaseUser) -> int:
    """Delete `user`'s browser sessions; how many. Reactivating an account must not bring
    an old session back, and a session does not otherwise change when is_active does.

    Sessions are stored in the database (Django's default engine) and only readable
    decoded: this reads every unexpired one, which an admin's rare action can afford."""
    from django.contrib.sessions.models import Session

    theirs = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if session.get_decoded().get("_auth_user_id") == str(user.pk)
    ]
    Session.objects.filter(pk__in=theirs).delete()
    return len(theirs)


@transaction.atomic
def reset_user(user: AbstractBaseUser, *, actor: AbstractBaseUser | None = None) -> SetPasswordLink:
    """Make the current password unusable (and with it every earlier link and every
    session) and issue a new link. API tokens are kept: revoke them on their own."""
    _refuse_unless_superuser(
        user, actor, gettext("'%(username)s' is a superuser: only a superuser can reset the account.")
    )
    if not user.is_active:
        raise PeopleError(
            gettext("'%(username)s' is deactivated: reactivate the account first.")
            % {"username": user.get_username()}
        )
    user.set_unusable_password()
    user.save(update_fields=["password"])
    return set_password_link(user)


@transaction.atomic
def set_active(user: AbstractBaseUser, active: bool, *, actor: AbstractBaseUser) -> bool:
    """(De)activate `user`; True when it changed. A deactivated user's API tokens stop
    working at once (the token check reads `is_active`) and work again if the account is
    reactivated; their sessions are ended, and a set-password link not yet used stops
    working for good (reactivated, they get a new one from a reset)."""
    if not active and user.pk == actor.pk:
        raise PeopleError(gettext("You cannot deactivate your own account: ask another admin to do it."))
    if not active:
        _refuse_unless_superuser(
            user,
            actor,
            gettext("'%(username)s' is a superuser: only a superuser can deactivate the account."),
        )
    if user.is_active == active:
        return False
    user.is_active = active
    fields = ["is_active"]
    if not active and not user.has_usable_password():
        user.set_unusable_password()  # a new unusable value: the link's token signed the old one
        fields.append("password")
    user.save(update_fields=fields)
    if not active:
        end_sessions(user)
    return True


def find_user(username: str) -> AbstractBaseUser | None:
    """The account named `username`, compared as account names are kept unique: ignoring
    case (Unicode's, not only ASCII's: SQLite's iexact folds ASCII alone) after NFKC
    normalisation, which Django's login form applies to what is typed: 'Élise' and
    'élise', 'ｆｕｌｌ' and 'full', 'ß' and 'SS' are one name. Every lookup of a user by
    name goes through here, so that a name refused as taken is also a name that is found.
    Reads every name when the exact one is missing; accounts are few and created by hand."""
    users = get_user_model().objects
    exact = users.filter(username=username).first()
    if exact is not None:
        return exact
    folded = _folded(username)
    return next((user for user in users.iterator() if _folded(user.get_username()) == folded), None)


def _folded(username: str) -> str:
    return unicodedata.normalize("NFKC", username).casefold()


def member_user(username: str) -> AbstractBaseUser:
    """The active user a group membership is for, or PeopleError saying what to do."""
    user = find_user(username)
    if user is None:
        raise PeopleError(
            gettext(
                "No user named '%(username)s'. Create the account first (admins: POST /api/v1/users "
                '{"username": "%(username)s"}, or the People page), then add it to the group.'
            )
            % {"username": username}
        )
    username = user.get_username()
    if not user.is_active:
        raise PeopleError(
            gettext(
                "'%(username)s' is deactivated. An admin reactivates the account first "
                "(POST /api/v1/users/%(username)s/activate, or the People page)."
            )
            % {"username": username}
        )
    return user


class EmailNotSent(Exception):
    """The mail server refused or could not be reached; the message says so, for the admin."""


def email_set_password_link(link: SetPasswordLink, url: str) -> None:
    """Send the link to the user's address through EMAIL_BACKEND (the console by default).

    EmailNotSent when it could not go: the account and its link stand, and the admin
    hands the link over instead (an account half-made by a 500 was the alternative).
    """
    name = link.user.get_username()
    try:
        _send_set_password_mail(link, url, name)
    except (OSError, smtplib.SMTPException) as exc:
        logger.warning("could not e-mail the set-password link to %s: %s", link.user.email, exc)
        raise EmailNotSent(
            gettext("The e-mail to %(address)s could not be sent (%(error)s).")
            % {"address": link.user.email, "error": exc or type(exc).__name__}
        ) from exc


def _send_set_password_mail(link: SetPasswordLink, url: str, name: str) -> None:
    # In the language and time zone of the admin's page (the API's: English, UTC): the
    # account has no language of its own before its first login.
    from groups.templatetags.portal_ui import local_text

    send_mail(
        subject=gettext("Your Neomaril account"),
        message=gettext(
            "Hello %(name)s,\n\nSet your Neomaril password here (the link works once, until "
            "%(until)s):\n\n%(url)s\n\nThen log in as '%(name)s'.\n"
        )
        % {"name": name, "until": local_text(link.expires_at), "url": url},
        from_email=None,
        recipient_list=[link.user.email],
    )
