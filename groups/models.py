"""Accounts domain: groups, their members and tokens, and users' API tokens."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.core.validators import MaxValueValidator, RegexValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from groups import tokens
from groups.timezones import validate_zone

group_name_validator = RegexValidator(
    regex=r"^[a-z0-9][a-z0-9_-]{0,31}\Z",
    # Lazy: the pages show it in the user's language (the API's stays English).
    message=_(
        "Group names must be 1 to 32 characters: lower-case letters, digits, '-' and '_', "
        "starting with a letter or digit."
    ),
)

# One wording wherever the API and the pages check the same thing (groups.forms,
# groups.api.serializers, groups.services).
GROUP_NAME_TAKEN = _("A group with this name already exists: choose another name.")
NOT_A_ROLE = _("'%(value)s' is not a role: choose member or owner.")


# 1 PB: more is a typing slip, not a quota.
MAX_STORAGE_QUOTA_MB = 2**30


class Group(models.Model):
    """Owns models, executions and trainings. Called 'group' throughout the product."""

    name = models.CharField(max_length=32, unique=True, validators=[group_name_validator])
    description = models.TextField(blank=True, max_length=2000)
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    members = models.ManyToManyField(
        settings.AUTH_USER_MODEL, through="Membership", related_name="neomaril_groups"
    )
    # groups.storage: the quota (None: NEOMARIL_GROUP_STORAGE_MB; 0: no limit) and what
    # the group's files take, kept up to date between walks of its folders.
    storage_quota_mb = models.PositiveIntegerField(
        _("storage quota (MB)"),
        null=True,
        blank=True,
        validators=[MaxValueValidator(MAX_STORAGE_QUOTA_MB)],
        help_text=_(
            "What the group's models, executions, training runs and monitors may keep on the data "
            "disk, in MB. Empty: the server's default (NEOMARIL_GROUP_STORAGE_MB); 0: no limit."
        ),
    )
    stored_bytes = models.BigIntegerField(default=0, editable=False)
    storage_measured_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    # Written by groups.storage's UPDATEs alone: a save of the whole row (an admin changing
    # the description) wrote back the figure read at the start of its request, losing what
    # uploads and deletions had added or taken off meanwhile.
    STORAGE_FIGURES = ("stored_bytes", "storage_measured_at")

    def save(self, *args, **kwargs):
        if not self._state.adding and kwargs.get("update_fields") is None and not kwargs.get("force_insert"):
            kwargs["update_fields"] = [
                field.name
                for field in self._meta.concrete_fields
                if not field.primary_key and field.name not in self.STORAGE_FIGURES
            ]
        super().save(*args, **kwargs)

    def active_token(self) -> GroupToken | None:
        prefetched = getattr(self, "_prefetched_objects_cache", {}).get("tokens")
        if prefetched is not None:  # a list of groups: one query for all their tokens
            now = timezone.now()
            return next((t for t in prefetched if t.revoked_at is None and t.expires_at > now), None)
        return self.tokens.filter(revoked_at__isnull=True, expires_at__gt=timezone.now()).first()


class Membership(models.Model):
    class Role(models.TextChoices):
        MEMBER = "member", "Member"
        OWNER = "owner", "Owner"

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.MEMBER)
    added_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["group", "user"], name="unique_membership")]
        ordering = ["group__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.group} ({self.role})"


class TokenQuerySet(models.QuerySet):
    def usable(self):
        return self.filter(revoked_at__isnull=True)


class BaseToken(models.Model):
    """A secret stored only as its digest; `prefix` lets people recognise it."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    prefix = models.CharField(max_length=tokens.PREFIX_LENGTH, editable=False)
    digest = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)

    objects = TokenQuerySet.as_manager()

    class Meta:
        abstract = True

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None


# A revoked token that a login issued is deleted this many days after it was revoked
# (groups.services.revoke_idle_login_tokens): every SDK login makes one, and a user's list
# had grown to thousands. Tokens made by name stay, revoked or not, until their user goes.
REVOKED_LOGIN_TOKEN_DAYS = 30


class ApiToken(BaseToken):
    """A user's personal token for the REST API and the SDK."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    name = models.CharField(max_length=100, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    from_login = models.BooleanField(
        default=False,
        help_text="Issued by a login (the SDK's, with a password): revoked once unused for "
        "NEOMARIL_LOGIN_TOKEN_IDLE_DAYS, since every new client logs in again.",
    )

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API token"

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


class GroupToken(BaseToken):
    """The token that calls a group's models. Shown once; expires."""

    group = models.ForeignKey(Group, on_delete=models.CASCADE, related_name="tokens")
    expires_at = models.DateTimeField()
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.group})"

    @staticmethod
    def default_expiry():
        return timezone.now() + timedelta(days=settings.GROUP_TOKEN_LIFETIME_DAYS)

    @property
    def is_expired(self) -> bool:
        return self.expires_at <= timezone.now()

    @property
    def is_valid(self) -> bool:
        return not self.is_revoked and not self.is_expired


class Profile(models.Model):
    """A user's preferences for the pages; the API does not read them."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="profile")
    # An IANA name; empty: the browser's zone (or TIME_ZONE without one).
    time_zone = models.CharField(max_length=64, blank=True, validators=[validate_zone])

    def __str__(self) -> str:
        return f"{self.user}: {self.time_zone or 'browser time zone'}"
