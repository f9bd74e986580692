"""Access control in one place: fetch an object *for this user* or answer 404.

Outsiders get 404, not 403, so they cannot even learn that a group exists.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.http import Http404

from groups.models import Group, Membership


def is_admin(user: AbstractBaseUser | AnonymousUser) -> bool:
    return bool(user.is_authenticated and user.is_active and user.is_staff)


def admins() -> QuerySet:
    """Who can add a user to a group: the active admins (is_admin's rule), by name."""
    return get_user_model().objects.filter(is_active=True, is_staff=True).order_by("username")


def groups_for(user: AbstractBaseUser | AnonymousUser) -> QuerySet[Group]:
    """Groups this user may see: all of them for admins, their own for others."""
    if is_admin(user):
        return Group.objects.all()
    if not user.is_authenticated:
        return Group.objects.none()
    return Group.objects.filter(memberships__user=user)


def get_group_for_user(user: AbstractBaseUser | AnonymousUser, name: str) -> Group:
    group = groups_for(user).filter(name=name).first()
    if group is None:
        raise Http404(f"No group named '{name}' among your groups.")
    return group


def can_manage_group(user: AbstractBaseUser | AnonymousUser, group: Group) -> bool:
    """Admins and the group's owners manage members and tokens."""
    if is_admin(user):
        return True
    return Membership.objects.filter(group=group, user=user, role=Membership.Role.OWNER).exists()
