"""Workflows of the accounts domain: groups, membership and tokens."""

from __future__ import annotations

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from groups import tokens
from groups.models import ApiToken, Group, GroupToken, Membership


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
    *, name: str, description: str = "", created_by: AbstractBaseUser | None = None
) -> tuple[Group, str]:
    """Create a group and its first token; the creator (if any) becomes an owner."""
    group = Group(name=name, description=description, created_by=created_by)
    group.full_clean()
    group.save()
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


def set_membership(group: Group, user: AbstractBaseUser, role: str) -> tuple[Membership, bool]:
    """Add `user` to `group` with `role`, or change the role of an existing member."""
    membership, created = Membership.objects.update_or_create(group=group, user=user, defaults={"role": role})
    return membership, created


def remove_membership(group: Group, user: AbstractBaseUser) -> bool:
    deleted, _ = Membership.objects.filter(group=group, user=user).delete()
    return bool(deleted)


def issue_api_token(user: AbstractBaseUser, name: str = "") -> tuple[ApiToken, str]:
    fresh = tokens.new_token("nmu")
    token = ApiToken.objects.create(user=user, name=name, prefix=fresh.prefix, digest=fresh.digest)
    return token, fresh.value


def revoke_api_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
