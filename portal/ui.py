"""Browser pages: dashboard, groups and personal API tokens.

Secrets (group tokens, API tokens) are rendered straight into the POST answer that
created them, marked no-store, and never put in the session or a redirect: reloading
the page cannot show them again.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from portal import services
from portal.access import can_manage_group, get_group_for_user, groups_for, is_admin
from portal.forms import ApiTokenForm, GroupForm, MemberForm, RefreshTokenForm
from portal.models import ApiToken


def _render_secret(request, template: str, context: dict):
    response = render(request, template, context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
def dashboard(request):
    from models_app.access import models_for

    groups = groups_for(request.user).prefetch_related("memberships")
    models = models_for(request.user).select_related("group").order_by("-updated_at")[:50]
    return render(request, "portal/dashboard.html", {"groups": groups, "models": models})


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def group_list(request):
    form = GroupForm(request.POST or None)
    if request.method == "POST":
        if not is_admin(request.user):
            raise PermissionDenied("Only admins can create groups.")
        if form.is_valid():
            group, value = services.create_group(created_by=request.user, **form.cleaned_data)
            return _render_secret(
                request, "portal/token_once.html", {"group": group, "token": value, "created": True}
            )
    groups = groups_for(request.user).prefetch_related("memberships", "tokens")
    return render(
        request,
        "portal/group_list.html",
        {"groups": groups, "form": form, "can_create": is_admin(request.user)},
    )


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def group_detail(request, name: str):
    group = get_group_for_user(request.user, name)
    manage = can_manage_group(request.user, group)
    member_form = MemberForm(prefix="member")
    refresh_form = RefreshTokenForm(prefix="refresh")
    if request.method == "POST":
        if not manage:
            raise PermissionDenied("Only admins and the group's owners can change a group.")
        action = request.POST.get("action")
        if action == "add-member":
            member_form = MemberForm(request.POST, prefix="member")
            if member_form.is_valid():
                user = member_form.cleaned_data["username"]
                services.set_membership(group, user, member_form.cleaned_data["role"])
                messages.success(
                    request, f"{user.username} is now a {member_form.cleaned_data['role']} of {group}."
                )
                return redirect("group-detail", name=group.name)
        elif action == "remove-member":
            user = get_object_or_404(get_user_model(), username=request.POST.get("username", ""))
            services.remove_membership(group, user)
            messages.success(request, f"{user.username} was removed from {group}.")
            return redirect("group-detail", name=group.name)
        elif action == "refresh-token":
            refresh_form = RefreshTokenForm(request.POST, prefix="refresh")
            if refresh_form.is_valid():
                outcome = services.refresh_group_token(
                    group, force=refresh_form.cleaned_data["force"], actor=request.user
                )
                if outcome.refreshed:
                    return _render_secret(
                        request,
                        "portal/token_once.html",
                        {"group": group, "token": outcome.value, "created": False},
                    )
                messages.info(
                    request,
                    f"The current token is valid until {outcome.token.expires_at:%Y-%m-%d} and was kept. "
                    "Tick 'replace it' to issue a new one.",
                )
                return redirect("group-detail", name=group.name)
        else:
            messages.error(request, "Unknown action.")
    context = {
        "group": group,
        "memberships": group.memberships.select_related("user"),
        "token": group.active_token(),
        "manage": manage,
        "member_form": member_form,
        "refresh_form": refresh_form,
    }
    return render(request, "portal/group_detail.html", context)


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def api_tokens(request):
    form = ApiTokenForm(request.POST or None)
    new_token = None
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            token = get_object_or_404(ApiToken, user=request.user, public_id=request.POST.get("token_id"))
            services.revoke_api_token(token)
            messages.success(request, f"Token {token.prefix}… revoked.")
            return redirect("api-tokens-page")
        if form.is_valid():
            _, new_token = services.issue_api_token(request.user, form.cleaned_data["name"])
            form = ApiTokenForm()
    tokens = ApiToken.objects.filter(user=request.user)
    context = {"tokens": tokens, "form": form, "new_token": new_token}
    return (
        _render_secret(request, "portal/api_tokens.html", context)
        if new_token
        else render(request, "portal/api_tokens.html", context)
    )
