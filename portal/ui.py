"""Browser pages: dashboard, groups and personal API tokens.

A new group token or API token is shown once (groups.pages): the POST that makes it
redirects, so a reload does not create the group, replace its token or issue another
API token; the token waits in the session, encrypted, until the page shows it once.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordChangeForm
from django.core.exceptions import DisallowedHost, PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, F, Func, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.template.defaultfilters import filesizeformat
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from executions.models import Execution
from groups import services, storage
from groups.access import admins, can_manage_group, get_group_for_user, groups_for, is_admin
from groups.api import errors as api_errors
from groups.api.middleware import API_PREFIX
from groups.authentication import presents_group_token
from groups.forms import (
    ApiTokenForm,
    GroupForm,
    MemberForm,
    RefreshTokenForm,
    StorageQuotaForm,
    TimeZoneForm,
)
from groups.models import REVOKED_LOGIN_TOKEN_DAYS, ApiToken, Group, GroupToken, Membership, Profile
from groups.pages import keep_secret, render_secret, take_secret
from groups.templatetags.portal_ui import day_text
from groups.timezones import zone_names
from groups.uploads import UNREADABLE_BODY, unreadable_body
from models_app.access import models_for
from models_app.models import MLModel
from monitoring.stats import calls_since
from monitors import display as monitoring_display
from portal.model_pages import activity_label, with_last_activity

DELETED = "Deleted"
IN_PROGRESS = ("Ready", "Building")


class LogoutView(auth_views.LogoutView):
    """Django's logout (POST only), saying so on the login page it redirects to. A GET (a
    typed address) goes to the dashboard and its Log out button: another site can make a
    browser send a GET, so it does not log out."""

    http_method_names = ["get", "post", "options"]

    def get(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        return redirect("dashboard")

    def post(self, request: HttpRequest, *args, **kwargs) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        messages.info(request, _("You are logged out. Your API tokens keep working until you revoke them."))
        return response


GROUP_TOKEN_SHOWN_ONCE = "group_token_once"  # noqa: S105 (a session key)
API_TOKEN_SHOWN_ONCE = "api_token_once"  # noqa: S105 (a session key)
TOKENS_PER_PAGE = 50
# A group's page lists its models most recently active first, a page at a time.
GROUP_MODELS_PER_PAGE = 50


def _show_token_once(request: HttpRequest, group: Group, token: str, *, created: bool) -> HttpResponse:
    """Redirect to the group's page, which shows ``token`` once."""
    keep_secret(request, GROUP_TOKEN_SHOWN_ONCE, group.name, token=token, created=created)
    return redirect("group-detail", name=group.name)


def _token_shown_once(request: HttpRequest, group: Group) -> HttpResponse | None:
    """The page showing the token waiting for ``group``; None if none waits."""
    waiting = take_secret(request, GROUP_TOKEN_SHOWN_ONCE, group.name)
    if waiting is None:
        return None
    return render_secret(request, "portal/token_once.html", {"group": group, **waiting})


def _count(queryset) -> Subquery:
    """A correlated COUNT(*) (Count() would reuse groups_for()'s membership join)."""
    counted = queryset.order_by().values("group").annotate(n=Func("pk", function="COUNT")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _groups_with_figures(user) -> QuerySet[Group]:
    """The user's groups with member and model counts and their token's expiry."""
    token_expiry = (
        GroupToken.objects.filter(
            group=OuterRef("pk"), revoked_at__isnull=True, expires_at__gt=timezone.now()
        )
        .order_by("-expires_at")
        .values("expires_at")[:1]
    )
    return (
        groups_for(user)
        .annotate(
            member_count=_count(Membership.objects.filter(group=OuterRef("pk"))),
            model_count=_count(MLModel.objects.filter(group=OuterRef("pk")).exclude(status=DELETED)),
            token_expires_at=Subquery(token_expiry),
        )
        .order_by("name")
    )


def _with_roles(groups, user) -> list[Group]:
    roles = dict(Membership.objects.filter(user=user).values_list("group_id", "role"))
    groups = list(groups)
    for group in groups:
        group.my_role = roles.get(group.pk)
    return groups


@login_required
@require_http_methods(["GET"])
def dashboard(request: HttpRequest) -> HttpResponse:
    user = request.user
    live = models_for(user).exclude(status=DELETED)
    # A model's status is its live version's.
    shown = live.order_by().annotate(shown=Coalesce("live_version__status", "status"))
    counts = dict(shown.values("shown").annotate(n=Count("pk")).values_list("shown", "n"))
    models = list(
        with_last_activity(live.select_related("group", "live_version")).order_by("-last_activity")[:20]
    )
    badges = monitoring_display.badges(models)
    for model in models:
        model.activity = activity_label(model)
        model.monitoring = badges.get(model.pk)
    since = timezone.now() - timedelta(hours=24)
    stats = {
        "deployed": counts.get("Deployed", 0),
        "in_progress": sum(counts.get(status, 0) for status in IN_PROGRESS),
        "failed": counts.get("Failed", 0),
        "total": sum(counts.values()),
        "calls": calls_since(since, model__in=live)[0],
        "executions": Execution.objects.filter(model__in=live, requested_at__gte=since).count(),
    }
    groups = _with_roles(_groups_with_figures(user), user)
    no_group = not groups and not is_admin(user)
    context = {
        "groups": groups,
        "models": models,
        "drifted": monitoring_display.drifted(live),
        "stats": stats,
        "is_admin": is_admin(user),
        # Nothing to deploy yet: whom to ask instead of a "Deploy" button.
        "no_group": no_group,
        "admins": list(admins()) if no_group else [],
    }
    return render(request, "portal/dashboard.html", context)


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def group_list(request: HttpRequest) -> HttpResponse:
    form = GroupForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if not is_admin(request.user):
            raise PermissionDenied(_("Only admins can create groups."))
        if form.is_valid():
            try:
                group, value = services.create_group(created_by=request.user, **form.cleaned_data)
            except ValidationError as exc:  # the name was taken since the form's check
                form.add_error(None, exc)
            else:
                return _show_token_once(request, group, value, created=True)
    context = {
        "groups": _with_roles(_groups_with_figures(request.user), request.user),
        "form": form,
        "can_create": is_admin(request.user),
    }
    return render(request, "portal/group_list.html", context, status=400 if form.errors else 200)


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def group_detail(request: HttpRequest, name: str) -> HttpResponse:
    group = get_group_for_user(request.user, name)
    manage = can_manage_group(request.user, group)
    member_form = MemberForm(prefix="member")
    refresh_form = RefreshTokenForm(prefix="refresh")
    quota_form = StorageQuotaForm(instance=group, prefix="quota") if is_admin(request.user) else None
    status = 200
    if request.method == "GET" and (shown := _token_shown_once(request, group)):
        return shown
    if request.method == "POST":
        if not manage:
            raise PermissionDenied(_("Only admins and the group's owners can change a group."))
        action = request.POST.get("action")
        if action == "add-member":
            member_form = MemberForm(request.POST, prefix="member")
            if member_form.is_valid():
                user = member_form.cleaned_data["username"]
                role = member_form.cleaned_data["role"]
                try:
                    _membership, created = services.set_membership(group, user, role, actor=request.user)
                except services.PeopleError as error:
                    messages.error(request, str(error))
                    return redirect("group-detail", name=group.name)
                text = (
                    _("%(user)s is added as %(role)s of %(group)s.")
                    if created
                    else _("%(user)s is now %(role)s of %(group)s.")
                )
                messages.success(request, text % {"user": user.username, "role": role, "group": group})
                return redirect("group-detail", name=group.name)
            status = 400
        elif action == "remove-member":
            user = get_object_or_404(get_user_model(), username=request.POST.get("username", ""))
            try:
                removed = services.remove_membership(group, user, actor=request.user)
            except services.PeopleError as error:
                messages.error(request, str(error))
                return redirect("group-detail", name=group.name)
            if removed:
                messages.success(
                    request,
                    _("%(user)s was removed from %(group)s.") % {"user": user.username, "group": group},
                )
            else:
                messages.error(
                    request,
                    _("%(user)s is not a member of %(group)s.") % {"user": user.username, "group": group},
                )
            return redirect("group-detail", name=group.name)
        elif action == "refresh-token":
            refresh_form = RefreshTokenForm(request.POST, prefix="refresh")
            if refresh_form.is_valid():
                outcome = services.refresh_group_token(
                    group, force=refresh_form.cleaned_data["force"], actor=request.user
                )
                if outcome.refreshed:
                    return _show_token_once(request, group, outcome.value, created=False)
                messages.info(
                    request,
                    _(
                        "The current token is valid until %(date)s and was kept. "
                        "Tick 'Replace it even if it is still valid' to issue a new one."
                    )
                    % {"date": day_text(timezone.localtime(outcome.token.expires_at))},
                )
                return redirect("group-detail", name=group.name)
        elif action == "set-quota":
            if quota_form is None:
                raise PermissionDenied(_("Only admins can change a group's storage quota."))
            quota_form = StorageQuotaForm(request.POST, instance=group, prefix="quota")
            if quota_form.is_valid():
                group = quota_form.save()
                quota = storage.quota_bytes(group)
                messages.success(
                    request,
                    _("The storage quota of %(group)s is now %(quota)s.")
                    % {"group": group, "quota": filesizeformat(quota) if quota else _("no limit")},
                )
                return redirect("group-detail", name=group.name)
            group.refresh_from_db()  # the page shows the quota in force, not the refused one
            status = 400
        else:
            messages.error(request, _("Unknown action."))
            status = 400
    models = with_last_activity(
        models_for(request.user).filter(group=group).exclude(status=DELETED).select_related("live_version")
    ).order_by("-last_activity", "-pk")
    page = Paginator(models, GROUP_MODELS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "group": group,
        "memberships": group.memberships.select_related("user").order_by("-role", "user__username"),
        "token": group.active_token(),
        "storage_quota": storage.quota_bytes(group),
        "manage": manage,
        "member_form": member_form,
        "refresh_form": refresh_form,
        "quota_form": quota_form,
        "models": page.object_list,
        "page": page,
        "my_role": Membership.objects.filter(group=group, user=request.user)
        .values_list("role", flat=True)
        .first(),
    }
    return render(request, "portal/group_detail.html", context, status=status)


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def api_tokens(request: HttpRequest) -> HttpResponse:
    form = ApiTokenForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        if request.POST.get("action") == "revoke":
            token = get_object_or_404(
                ApiToken, user=request.user, public_id=_uuid_or_404(request.POST.get("token_id", ""))
            )
            services.revoke_api_token(token)
            messages.success(
                request, _("Token %(prefix)s… was revoked: it no longer works.") % {"prefix": token.prefix}
            )
            return redirect("api-tokens-page")
        if form.is_valid():
            name = form.cleaned_data["name"]
            _issued, token = services.issue_api_token(request.user, name)
            keep_secret(request, API_TOKEN_SHOWN_ONCE, str(request.user.pk), token=token, name=name)
            return redirect("api-tokens-page")
    # A page at a time, the usable ones first: every SDK login leaves a token, and a list of
    # them all (5,019 here) took 1.1 s and 5 MB. Revoked login tokens are deleted after
    # REVOKED_LOGIN_TOKEN_DAYS (groups.services.revoke_idle_login_tokens).
    tokens = ApiToken.objects.filter(user=request.user).order_by(
        F("revoked_at").desc(nulls_first=True), "-created_at", "-pk"
    )
    page = Paginator(tokens, TOKENS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "tokens": page.object_list,
        "page": page,
        "form": form,
        "idle_days": settings.LOGIN_TOKEN_IDLE_DAYS,
        "revoked_kept_days": REVOKED_LOGIN_TOKEN_DAYS,
    }
    if request.method == "GET" and (new := take_secret(request, API_TOKEN_SHOWN_ONCE, str(request.user.pk))):
        context.update(new_token=new["token"], new_token_name=new["name"])
        return render_secret(request, "portal/api_tokens.html", context)
    return render(request, "portal/api_tokens.html", context, status=400 if form.errors else 200)


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def account(request: HttpRequest) -> HttpResponse:
    """The user's preferences: the time zone of the pages (the language is the top bar's
    switch), and their password."""
    changing_password = request.method == "POST" and request.POST.get("action") == "password"
    password_form = PasswordChangeForm(
        request.user, request.POST if changing_password else None, prefix="password"
    )
    if changing_password and password_form.is_valid():
        password_form.save()
        update_session_auth_hash(request, password_form.user)  # this session stays logged in
        messages.success(request, _("Your password is changed; your other sessions are logged out."))
        return redirect("account")
    profile = Profile.objects.filter(user=request.user).first()
    data = request.POST if request.method == "POST" and not changing_password else None
    form = TimeZoneForm(data, initial={"time_zone": profile.time_zone if profile else ""})
    if data is not None and form.is_valid():
        zone = form.cleaned_data["time_zone"]
        Profile.objects.update_or_create(user=request.user, defaults={"time_zone": zone})
        if zone:
            messages.success(request, _("Times are now shown in %(zone)s.") % {"zone": zone})
        else:
            messages.success(request, _("Times are now shown in your browser's time zone."))
        return redirect("account")
    context = {
        "form": form,
        "password_form": password_form,
        "zones": sorted(zone_names()),
        "zone": request.time_zone,
        "zone_source": request.time_zone_source,
        "now": timezone.now(),
    }
    failed = form.errors or password_form.errors
    return render(request, "portal/account.html", context, status=400 if failed else 200)


def _uuid_or_404(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise Http404("No such token.") from None


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    """handler400: the API's JSON answer under /api/, the page elsewhere.

    Django answers 400 itself for a body its parser refuses before a view has run (on
    /api/v1/run/<hash>/try the CSRF check reads a multipart body): that answer is the one
    the run URL gives for the same body.
    """
    if request.path_info.startswith(API_PREFIX):
        if isinstance(exception, UNREADABLE_BODY):
            return api_errors.error_response(400, unreadable_body(exception), "parse_error")
        if isinstance(exception, DisallowedHost):
            # A client that reaches the server by a name it was not set up for (a new DNS
            # name, an IP address) learns what to fix; the operator, which setting.
            return api_errors.error_response(
                400,
                "The request's Host header names a host this server does not answer to; "
                "call it by one of its names, or ask an admin to add this one to ALLOWED_HOSTS.",
                "invalid",
            )
        return api_errors.error_response(400, "Bad request: the request could not be understood.", "invalid")
    return defaults.bad_request(request, exception)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    """CSRF_FAILURE_VIEW: under /api/ (where only /run/<hash>/try takes a session's
    POST) a JSON 403 saying what to send instead; Django's page elsewhere.

    Django's check runs before the view, so a script with a group token, or a caller not
    logged in, got Django's HTML page rather than a word on the run URL or the login.
    """
    if not request.path_info.startswith(API_PREFIX):
        # The portal's own 403 page, in the page's language, saying what to do.
        message = _(
            "This form was sent without a valid security token: it may have been open too long, or "
            "cookies are blocked. Reload the page and send it again."
        )
        return render(request, "403.html", {"exception": message}, status=403)
    if presents_group_token(request):
        detail = (
            "This URL takes a logged-in member's session (the portal's Try it). With a group "
            "token, call the run URL itself: POST /api/v1/run/<hash>."
        )
    elif not request.user.is_authenticated:
        detail = "Log in to the portal first (/login/): this URL takes a member's session and its CSRF token."
    else:
        detail = f"CSRF check failed ({reason}): send the session's CSRF token in the X-CSRFToken header."
    return api_errors.error_response(403, detail, "permission_denied")


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500: the API's one error shape under /api/ (its clients parse JSON, and the
    docs promise it on every path there), the page elsewhere. The traceback goes to the
    log as for any 500; the answer says nothing of it."""
    if request.path_info.startswith(API_PREFIX):
        return api_errors.error_response(
            500,
            "Internal error: the server failed to answer this request. It is logged; retry later.",
            "error",
        )
    return defaults.server_error(request)


def not_found(request: HttpRequest, exception: Http404) -> HttpResponse:
    """handler404: the API's JSON answer under /api/ (its clients read JSON), the page elsewhere."""
    if request.path_info.startswith(API_PREFIX):
        return api_errors.not_found(request, exception)
    return defaults.page_not_found(request, exception)
