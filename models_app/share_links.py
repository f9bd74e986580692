"""Share links of a model's Swagger page: signed, expiring, revocable.

The model's docs page opens only for members of its group; a share link shows the same
page (and the model's OpenAPI document) to anyone who holds it, without logging in, so
an owner can send it to the team that will call the model. Calling the model from that
page still needs the group token.

A link's key is a random secret signed with the project's SECRET_KEY (`<secret>:<sig>`):
a tampered key is refused before the database is asked, and only the secret's SHA-256
is stored, so a copy of the database does not open the pages. Each link has a lifetime
(at most MAX_LIFETIME) and can be revoked; rotating SECRET_KEY voids every link.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from django.core import signing
from django.db.models import QuerySet
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy

from groups import tokens
from groups.access import can_manage_group
from models_app.models import DocsShareLink, MLModel

SALT = "neomaril.models_app.docs-share-link"
DEFAULT_LIFETIME = timedelta(days=7)
MIN_LIFETIME = timedelta(minutes=5)
MAX_LIFETIME = timedelta(days=90)
# What the model page offers; the API takes any lifetime in between.
LIFETIME_CHOICES = [
    (3600, gettext_lazy("1 hour")),
    (86400, gettext_lazy("1 day")),
    (7 * 86400, gettext_lazy("7 days")),
    (30 * 86400, gettext_lazy("30 days")),
    (90 * 86400, gettext_lazy("90 days")),
]

_signer = signing.Signer(salt=SALT)


class ShareRefused(Exception):
    """Why a link cannot be made or used: an HTTP status and a message naming the fix."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass(frozen=True)
class NewLink:
    link: DocsShareLink
    key: str  # shown once: the secret, signed


def may_share(user, model: MLModel) -> bool:
    """The group's owners and admins share a model's docs (groups.access.can_manage_group)."""
    return can_manage_group(user, model.group)


def check_may_share(user, model: MLModel) -> None:
    if not may_share(user, model):
        raise ShareRefused(
            403,
            gettext("Only admins and the owners of the model's group can share its docs."),
            "permission_denied",
        )


def create(model: MLModel, user, lifetime: timedelta = DEFAULT_LIFETIME) -> NewLink:
    check_may_share(user, model)
    if model.status == MLModel.Status.DELETED:
        raise ShareRefused(
            409,
            gettext("Model '%(hash)s' was deleted: its docs cannot be shared.") % {"hash": model.hash},
            "deleted",
        )
    if not MIN_LIFETIME <= lifetime <= MAX_LIFETIME:
        raise ShareRefused(
            400,
            gettext(
                "A share link lives between %(minimum)s seconds and %(days)s days (%(maximum)s seconds); "
                "choose a lifetime in that range."
            )
            % {
                "minimum": int(MIN_LIFETIME.total_seconds()),
                "days": MAX_LIFETIME.days,
                "maximum": int(MAX_LIFETIME.total_seconds()),
            },
            "invalid",
        )
    secret = secrets.token_urlsafe(32)
    now = timezone.now()
    link = DocsShareLink.objects.create(
        model=model,
        digest=tokens.digest(secret),
        prefix=secret[:8],
        created_by=user,
        created_at=now,
        expires_at=now + lifetime,
    )
    return NewLink(link, _signer.sign(secret))


def links_of(model: MLModel) -> QuerySet[DocsShareLink]:
    return model.share_links.select_related("created_by", "revoked_by")


def get_link(model: MLModel, public_id: str) -> DocsShareLink:
    link = links_of(model).filter(public_id=public_id).first() if _is_uuid(public_id) else None
    if link is None:
        raise ShareRefused(
            404,
            gettext("Model '%(hash)s' has no share link '%(link)s'.")
            % {"hash": model.hash, "link": public_id},
            "not_found",
        )
    return link


def revoke(link: DocsShareLink, user) -> DocsShareLink:
    """Revoke the link from now on (again: no change)."""
    check_may_share(user, link.model)
    if link.revoked_at is None:
        link.revoked_at = timezone.now()
        link.revoked_by = user
        link.save(update_fields=["revoked_at", "revoked_by"])
    return link


def resolve(key: str) -> DocsShareLink:
    """The link a visitor holds, or ShareRefused: 404 unknown or tampered, 410 expired or revoked."""
    unknown = ShareRefused(
        404,
        gettext("This share link is not valid: check that it was copied whole, or ask for a new one."),
        "not_found",
    )
    try:
        secret = _signer.unsign(key)
    except signing.BadSignature:
        raise unknown from None
    link = DocsShareLink.objects.select_related("model__group").filter(digest=tokens.digest(secret)).first()
    if link is None:
        raise unknown
    if link.revoked_at is not None:
        raise ShareRefused(
            410,
            gettext("This share link was revoked on %(moment)s UTC. Ask for a new one.")
            % {"moment": f"{link.revoked_at:%Y-%m-%d %H:%M}"},
            "revoked",
        )
    if link.expires_at <= timezone.now():
        raise ShareRefused(
            410,
            gettext("This share link expired on %(moment)s UTC. Ask for a new one.")
            % {"moment": f"{link.expires_at:%Y-%m-%d %H:%M}"},
            "expired",
        )
    if link.model.status == MLModel.Status.DELETED:
        raise ShareRefused(410, gettext("The model of this share link was deleted."), "deleted")
    return link


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
