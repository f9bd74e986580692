"""People pages (admins only): create accounts, add them to groups, reset and
(de)activate them; and the page where a user sets a password from a one-time link.

Every action posts and redirects (POST-redirect-GET). A set-password link is shown once:
the POST leaves only a marker in the session (no link, no token), and the next GET of
the person's page pops it and shows a freshly signed link, marked no-store. Nothing
secret is stored anywhere: the link's token signs the user's current state.
"""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse_lazy
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods

from groups import services
from groups.access import is_admin
from groups.forms import PersonGroupForm, UserCreateForm
from groups.models import Group, Membership
from groups.pages import render_secret

SHOW_LINK = "people.show_link"  # session key: {"user": pk, "kind": "created"|"reset", "emailed": bool}


def _admin(request: HttpRequest) -> None:
    if not is_admin(request.user):
        raise PermissionDenied(_("Only admins manage people."))


def _people():
    return get_user_model().objects.prefetch_related("memberships__group")


def _show_link_next(request: HttpRequest, link: services.SetPasswordLink, kind: str, email: bool) -> None:
    emailed = False
    if email:
        try:
            services.email_set_password_link(link, request.build_absolute_uri(link.path))
            emailed = True
        except services.EmailNotSent as problem:
            messages.warning(
                request,
                _("%(problem)s Give the link below to the person yourself.") % {"problem": problem},
            )
    request.session[SHOW_LINK] = {"user": link.user.pk, "kind": kind, "emailed": emailed}


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def people(request: HttpRequest) -> HttpResponse:
    _admin(request)
    form = UserCreateForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            link = services.create_user(
                username=data["username"], email=data["email"], is_staff=data["is_staff"]
            )
        except ValidationError as exc:  # the name was taken since the form's check
            form.add_error(None, exc)
        else:
            _show_link_next(request, link, "created", data["send_email"])
            messages.success(request, _("Account '%(user)s' created.") % {"user": link.user.username})
            return redirect("person", username=link.user.username)
    users = _people().annotate(group_count=Count("memberships")).order_by("-is_active", "username")
    context = {"users": users, "form": form}
    return render(request, "portal/people.html", context, status=400 if form.errors else 200)


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def person(request: HttpRequest, username: str) -> HttpResponse:
    _admin(request)
    found = services.find_user(username)  # the API's rule: 'ADMIN' is the page of 'admin'
    user = get_object_or_404(_people(), pk=found.pk if found is not None else None)
    group_form = PersonGroupForm(prefix="group")
    if request.method == "POST":
        action = request.POST.get("action")
        try:
            if action == "add-group":
                group_form = PersonGroupForm(request.POST, prefix="group")
                if group_form.is_valid():
                    group, role = group_form.cleaned_data["group"], group_form.cleaned_data["role"]
                    _membership, created = services.set_membership(
                        group, services.member_user(user.username), role, actor=request.user
                    )
                    text = (
                        _("%(user)s is added as %(role)s of %(group)s.")
                        if created
                        else _("%(user)s is now %(role)s of %(group)s.")
                    )
                    messages.success(request, text % {"user": user.username, "role": role, "group": group})
                    return redirect("person", username=user.username)
            elif action == "remove-group":
                group = get_object_or_404(Group, name=request.POST.get("group", ""))
                if services.remove_membership(group, user, actor=request.user):
                    messages.success(
                        request,
                        _("%(user)s was removed from %(group)s.") % {"user": user.username, "group": group},
                    )
                else:
                    messages.error(
                        request,
                        _("%(user)s is not a member of %(group)s.") % {"user": user.username, "group": group},
                    )
                return redirect("person", username=user.username)
            elif action == "reset":
                email = request.POST.get("send_email") == "on" and bool(user.email)
                _show_link_next(request, services.reset_user(user, actor=request.user), "reset", email)
                messages.success(
                    request,
                    _("%(user)s's password no longer works; a new link was made.") % {"user": user.username},
                )
                return redirect("person", username=user.username)
            elif action in ("deactivate", "activate"):
                if services.set_active(user, action == "activate", actor=request.user):
                    text = (
                        _("%(user)s can log in again.")
                        if action == "activate"
                        else _("%(user)s can no longer log in or use API tokens.")
                    )
                    messages.success(request, text % {"user": user.username})
                return redirect("person", username=user.username)
            else:
                messages.error(request, _("Unknown action."))
                return redirect("person", username=user.username)
        except services.PeopleError as error:
            messages.error(request, str(error))
            return redirect("person", username=user.username)
    shown = request.session.get(SHOW_LINK)
    link = None
    if request.method == "GET" and shown and shown.get("user") == user.pk:
        del request.session[SHOW_LINK]
        link = services.set_password_link(user)
    context = {
        "person": user,
        "memberships": user.memberships.select_related("group").order_by("group__name"),
        "group_form": group_form,
        "link": link,
        "link_url": request.build_absolute_uri(link.path) if link else "",
        "link_kind": shown.get("kind") if link else "",
        "link_emailed": shown.get("emailed") if link else False,
        "is_self": user.pk == request.user.pk,
        "roles": Membership.Role,
    }
    if link:
        return render_secret(request, "portal/person.html", context)
    return render(request, "portal/person.html", context, status=400 if group_form.errors else 200)


class SetPasswordView(auth_views.PasswordResetConfirmView):
    """The one-time link's page: Django's (its token leaves the address bar at once,
    SetPasswordForm's validators); a deactivated account's link does not work."""

    template_name = "registration/set_password.html"
    success_url = reverse_lazy("login")
    post_reset_login = False

    def get_user(self, uidb64):
        user = super().get_user(uidb64)
        return user if user is not None and user.is_active else None

    def form_valid(self, form):
        response = super().form_valid(form)
        messages.success(
            self.request,
            _("Your password is set. Log in as '%(user)s'.") % {"user": form.user.get_username()},
        )
        return response
