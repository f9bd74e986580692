"""Django admin for accounts: token values are never displayed, only their prefixes."""

from __future__ import annotations

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.models import Group as AuthGroup
from django.db.models import Count, Prefetch
from django.template.defaultfilters import filesizeformat
from django.template.response import TemplateResponse
from django.utils import timezone

from groups import services, storage
from groups.models import ApiToken, Group, GroupToken, Membership

# Django's permission groups are not used; hiding them avoids two "Groups" in the admin.
admin.site.unregister(AuthGroup)
admin.site.unregister(get_user_model())


class ListedMemberships(admin.TabularInline):
    """Memberships as they are: each row names its user and group from itself (joined),
    where a picker would look each one up again, one query per row. A role can change and
    a row can go; new memberships come in through an AddedMemberships inline."""

    model = Membership
    extra = 0

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("user", "group")


class AddedMemberships(admin.TabularInline):
    """Empty rows for new memberships, the other side picked by name (autocomplete)."""

    model = Membership

    def get_queryset(self, request):
        return super().get_queryset(request).none()


class MembershipInline(ListedMemberships):
    fields = ["user", "role", "added_at"]
    readonly_fields = ["user", "added_at"]


class NewMembershipInline(AddedMemberships):
    extra = 1
    fields = ["user", "role"]
    autocomplete_fields = ["user"]
    verbose_name = "new member"
    verbose_name_plural = "Add members"


@admin.register(Group)
class GroupAdmin(admin.ModelAdmin):
    list_display = ["name", "description", "member_count", "token_expires", "storage_used", "created_at"]
    search_fields = ["name", "description", "memberships__user__username"]
    list_filter = ["created_at"]
    # Set by services.create_group (to whoever adds it here); a drop-down listed every user.
    readonly_fields = ["created_by", "storage_used"]
    actions = ["force_refresh_token"]

    def get_inlines(self, request, obj):
        # A new group has no members to list: its form posts the new ones alone.
        return [NewMembershipInline] if obj is None else [MembershipInline, NewMembershipInline]

    def get_queryset(self, request):
        # The list's columns in two queries for a page of groups, not two per group
        # (active_token() reads prefetched tokens; the revoked ones are left out).
        return (
            super()
            .get_queryset(request)
            .annotate(member_total=Count("memberships", distinct=True))
            .prefetch_related(Prefetch("tokens", queryset=GroupToken.objects.usable()))
        )

    @admin.display(description="members", ordering="member_total")
    def member_count(self, group: Group) -> int:
        return group.member_total

    @admin.display(description="token valid until")
    def token_expires(self, group: Group):
        token = group.active_token()
        return token.expires_at if token else "no valid token"

    @admin.display(description="storage used", ordering="stored_bytes")
    def storage_used(self, group: Group) -> str:
        used = filesizeformat(group.stored_bytes)
        quota = storage.quota_bytes(group)
        return f"{used} of {filesizeformat(quota)}" if quota else f"{used} (no limit)"

    def save_model(self, request, obj, form, change):
        if change:
            return super().save_model(request, obj, form, change)
        group, value = services.create_group(
            name=obj.name,
            description=obj.description,
            created_by=request.user,
            storage_quota_mb=obj.storage_quota_mb,
        )
        obj.pk = group.pk
        obj._state.adding = False
        request._new_group_token = value

    def response_add(self, request, obj, post_url_continue=None):
        value = getattr(request, "_new_group_token", None)
        if value is None:
            return super().response_add(request, obj, post_url_continue)
        return self._token_page(request, obj, value, created=True)

    @admin.action(description="Replace the token of the selected groups (shown once)")
    def force_refresh_token(self, request, queryset):
        if queryset.count() != 1:
            self.message_user(
                request, "Select exactly one group: its new token is shown once.", messages.WARNING
            )
            return None
        group = queryset.get()
        outcome = services.refresh_group_token(group, force=True, actor=request.user)
        return self._token_page(request, group, outcome.value, created=False)

    def _token_page(self, request, group, value, *, created):
        context = {
            **self.admin_site.each_context(request),
            "group": group,
            "token": value,
            "created": created,
            "title": f"Token of {group.name}",
            "opts": self.model._meta,
        }
        response = TemplateResponse(request, "admin/portal/token_once.html", context)
        response["Cache-Control"] = "no-store"
        return response


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["group", "user", "role", "added_at"]
    list_filter = ["role", "group"]
    search_fields = ["group__name", "user__username"]
    autocomplete_fields = ["user"]


class TokenAdminMixin:
    readonly_fields = ["public_id", "prefix", "created_at", "revoked_at"]
    exclude = ["digest"]
    actions = ["revoke"]

    def has_add_permission(self, request):
        return False  # tokens are issued by the app, which shows the value once

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"{count} token(s) revoked.")


@admin.register(GroupToken)
class GroupTokenAdmin(TokenAdminMixin, admin.ModelAdmin):
    list_display = ["prefix", "group", "created_at", "expires_at", "revoked_at"]
    list_filter = ["group", "revoked_at"]
    search_fields = ["prefix", "group__name"]
    readonly_fields = [*TokenAdminMixin.readonly_fields, "group", "expires_at", "created_by"]


@admin.register(ApiToken)
class ApiTokenAdmin(TokenAdminMixin, admin.ModelAdmin):
    list_display = ["prefix", "user", "name", "created_at", "last_used_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["prefix", "user__username", "name"]
    readonly_fields = [*TokenAdminMixin.readonly_fields, "user", "last_used_at"]


class UserMembershipInline(ListedMemberships):
    """A user's Neomaril groups (what "groups" means in this product), on their page."""

    fk_name = "user"
    fields = ["group", "role", "added_at"]
    readonly_fields = ["group", "added_at"]
    verbose_name = "Neomaril group membership"
    verbose_name_plural = "Neomaril groups (the People page and /api/v1/users do the same)"


class NewUserMembershipInline(AddedMemberships):
    fk_name = "user"
    extra = 0
    fields = ["group", "role"]
    autocomplete_fields = ["group"]
    verbose_name = "Neomaril group membership"
    verbose_name_plural = "Add to Neomaril groups"


@admin.register(get_user_model())
class UserAdmin(DjangoUserAdmin):
    """Django's user admin without Django's permission groups and per-user permissions,
    which Neomaril does not use: a "Groups" picker there listed them, not Neomaril's
    groups, which are shown (and edited) inline below instead."""

    fieldsets = (
        (None, {"fields": ("username", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name", "email")}),
        (
            "Access",
            {
                "fields": ("is_active", "is_staff", "is_superuser"),
                "description": "Staff are Neomaril admins: they see every group and manage people.",
            },
        ),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    list_display = ["username", "email", "is_staff", "is_active", "member_of", "last_login"]
    list_filter = ["is_staff", "is_superuser", "is_active", "memberships__group"]
    filter_horizontal = []

    def get_inlines(self, request, obj):
        return [NewUserMembershipInline] if obj is None else [UserMembershipInline, NewUserMembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("memberships__group")

    @admin.display(description="Neomaril groups")
    def member_of(self, user) -> str:
        return ", ".join(f"{m.group.name} ({m.role})" for m in user.memberships.all()) or "—"
