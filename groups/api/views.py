"""REST endpoints of the accounts domain: login, API tokens, groups and members, people."""

from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model
from django.contrib.auth.forms import PasswordChangeForm
from django.db.models import prefetch_related_objects
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import generics, permissions, status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from groups import services
from groups.access import can_manage_group, get_group_for_user, groups_for, is_admin
from groups.api import serializers as s
from groups.api.errors import Conflict, error_body, form_errors, form_fields, refuse_unknown_fields
from groups.authentication import LoginLockedOut, is_locked_out
from groups.forms import UserCreateForm, UserResetForm
from groups.models import ApiToken

# On every answer that carries a token or a set-password link: no cache may keep it.
NO_STORE = {"Cache-Control": "no-store"}


class LoginView(APIView):
    """Exchange a username and password for a personal API token (used by the SDK).

    Failed logins are counted per client address by django-axes, shared with the login
    forms (settings "Login throttling"); a locked-out address gets 429 `locked_out`.
    """

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(request=s.LoginSerializer, responses={201: s.LoginResponseSerializer}, tags=["auth"])
    def post(self, request: Request) -> Response:
        data = s.LoginSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        # NFKC, as the login page's form does: the name typed is the name stored.
        username = get_user_model().normalize_username(data.validated_data["username"])
        password = data.validated_data["password"]
        user = authenticate(request, username=username, password=password)
        if user is None:
            if is_locked_out(request):
                raise LoginLockedOut()
            return Response(
                error_body(_login_refusal(username, password), "authentication_failed"),
                status=status.HTTP_401_UNAUTHORIZED,
                headers={"WWW-Authenticate": "Token"},
            )
        token, value = services.issue_api_token(
            user, data.validated_data["token_name"] or "login", from_login=True
        )
        body = {"token": value, "token_id": token.public_id, "user": s.UserSerializer(user).data}
        return Response(body, status=status.HTTP_201_CREATED, headers=NO_STORE)


def _login_refusal(username: str, password: str) -> str:
    """Why a login failed. Only whoever knows the password learns that the account exists
    and is deactivated; everyone else reads the same message."""
    user = get_user_model().objects.filter(username=username, is_active=False).first()
    if user is not None and user.check_password(password):
        return "This user account is disabled: ask an admin to reactivate it."
    return "Wrong username or password."


class MeView(APIView):
    @extend_schema(responses=s.UserSerializer, tags=["auth"])
    def get(self, request: Request) -> Response:
        return Response(s.UserSerializer(request.user).data)


class PasswordChangeView(APIView):
    """Change your own password: the current one, then the new one (Django's validators).
    Your sessions are logged out; API tokens keep working."""

    @extend_schema(request=s.PasswordChangeSerializer, responses={204: None}, tags=["auth"])
    def post(self, request: Request) -> Response:
        data = s.PasswordChangeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        form = PasswordChangeForm(
            request.user,
            {
                "old_password": data.validated_data["old_password"],
                "new_password1": data.validated_data["new_password"],
                "new_password2": data.validated_data["new_password"],
            },
        )
        if not form.is_valid():
            fields = {"new_password1": "new_password", "new_password2": "new_password"}
            raise ValidationError(
                {fields.get(name, name): list(errors) for name, errors in form.errors.items()}
            )
        form.save()
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiTokenListView(generics.ListCreateAPIView):
    """Your personal API tokens (values are never shown again after creation)."""

    serializer_class = s.ApiTokenSerializer

    def get_queryset(self):
        return ApiToken.objects.filter(user=self.request.user)

    @extend_schema(
        request=s.CreateApiTokenSerializer, responses={201: s.NewApiTokenSerializer}, tags=["auth"]
    )
    def post(self, request: Request) -> Response:
        data = s.CreateApiTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, value = services.issue_api_token(request.user, data.validated_data["name"])
        token.token = value
        return Response(s.NewApiTokenSerializer(token).data, status=status.HTTP_201_CREATED, headers=NO_STORE)

    @extend_schema(tags=["auth"])
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)


class ApiTokenDetailView(APIView):
    @extend_schema(responses={204: None}, tags=["auth"])
    def delete(self, request: Request, token_id: str) -> Response:
        token = ApiToken.objects.filter(user=request.user, public_id=token_id).first()
        if token is None:
            raise NotFound(
                f"You have no API token with id '{token_id}' (GET /api/v1/auth/tokens lists yours)."
            )
        services.revoke_api_token(token)
        return Response(status=status.HTTP_204_NO_CONTENT)


class GroupListView(APIView):
    """Groups you belong to (admins see all); admins create groups."""

    @extend_schema(responses=s.GroupSerializer(many=True), tags=["groups"])
    def get(self, request: Request) -> Response:
        groups = groups_for(request.user).prefetch_related("memberships__user", "tokens")
        return Response(s.GroupSerializer(groups, many=True).data)

    @extend_schema(request=s.GroupCreateSerializer, responses={201: s.NewGroupSerializer}, tags=["groups"])
    def post(self, request: Request) -> Response:
        if not is_admin(request.user):
            raise PermissionDenied("Only admins can create groups. Ask an admin to create it and add you.")
        data = s.GroupCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        group, value = services.create_group(created_by=request.user, **data.validated_data)
        group.group_token = value
        return Response(s.NewGroupSerializer(group).data, status=status.HTTP_201_CREATED, headers=NO_STORE)


class GroupDetailView(APIView):
    @extend_schema(responses=s.GroupSerializer, tags=["groups"])
    def get(self, request: Request, name: str) -> Response:
        group = get_group_for_user(request.user, name)
        prefetch_related_objects([group], "memberships__user")  # one query for all members
        return Response(s.GroupSerializer(group).data)

    @extend_schema(request=s.GroupChangeSerializer, responses=s.GroupSerializer, tags=["groups"])
    def patch(self, request: Request, name: str) -> Response:
        group = get_group_for_user(request.user, name)
        if not is_admin(request.user):
            raise PermissionDenied("Only admins can change a group's description or storage quota.")
        data = s.GroupChangeSerializer(group, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        data.save()
        prefetch_related_objects([group], "memberships__user")
        return Response(s.GroupSerializer(group).data)


def _managed_group(request: Request, name: str):
    group = get_group_for_user(request.user, name)
    if not can_manage_group(request.user, group):
        raise PermissionDenied("Only admins and the group's owners can do this.")
    return group


class GroupMembersView(APIView):
    @extend_schema(
        request=s.MemberAddSerializer,
        responses={200: s.MembershipSerializer, 201: s.MembershipSerializer},
        tags=["groups"],
    )
    def post(self, request: Request, name: str) -> Response:
        group = _managed_group(request, name)
        data = s.MemberAddSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            membership, created = services.set_membership(
                group, data.validated_data["username"], data.validated_data["role"], actor=request.user
            )
        except services.PeopleError as error:
            raise Conflict(str(error)) from None
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(s.MembershipSerializer(membership).data, status=code)


class GroupMemberDetailView(APIView):
    @extend_schema(responses={204: None}, tags=["groups"])
    def delete(self, request: Request, name: str, username: str) -> Response:
        group = _managed_group(request, name)
        user = services.find_user(username)
        if user is None:
            raise NotFound(f"No user named '{username}'.")
        try:
            removed = services.remove_membership(group, user, actor=request.user)
        except services.PeopleError as error:
            raise Conflict(str(error)) from None
        if not removed:
            return Response(
                error_body(f"'{username}' is not a member of '{group.name}'.", "not_found"),
                status=status.HTTP_404_NOT_FOUND,
            )
        return Response(status=status.HTTP_204_NO_CONTENT)


class GroupTokenRefreshView(APIView):
    """Issue a new group token when the current one has expired, or when `force` is set."""

    @extend_schema(
        request=s.RefreshTokenSerializer,
        responses={
            200: s.RefreshTokenResponseSerializer,
            201: OpenApiResponse(s.RefreshTokenResponseSerializer),
        },
        tags=["groups"],
    )
    def post(self, request: Request, name: str) -> Response:
        group = _managed_group(request, name)
        data = s.RefreshTokenSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        outcome = services.refresh_group_token(group, force=data.validated_data["force"], actor=request.user)
        if outcome.refreshed:
            detail = (
                "New group token issued. It is shown only now: store it. The previous token no longer works."
            )
        else:
            detail = (
                f"The current token is still valid until {outcome.token.expires_at:%Y-%m-%d}; it was kept. "
                "Send force=true to replace it."
            )
        body = {
            "refreshed": outcome.refreshed,
            "group_token": outcome.value,
            "expires_at": outcome.token.expires_at,
            "detail": detail,
        }
        code = status.HTTP_201_CREATED if outcome.refreshed else status.HTTP_200_OK
        return Response(body, status=code, headers=NO_STORE)


# --- People (admins only) -------------------------------------------------------------


def _admin_only(request: Request) -> None:
    if not is_admin(request.user):
        raise PermissionDenied("Only admins can manage users. Ask an admin.")


def _person(username: str):
    """The account named `username` by the one rule of user names (services.find_user):
    the 'already exists' of a create and this lookup must agree on which names are one."""
    found = services.find_user(username)
    people = get_user_model().objects.prefetch_related("memberships__group")
    person = people.filter(pk=found.pk).first() if found is not None else None
    if person is None:
        raise NotFound(f"No user named '{username}' (GET /api/v1/users lists them).")
    return person


# The account's first password is its user's to choose, through the link answered.
PASSWORD_HINT = {
    "password": "An admin never sends a password: the user sets one at the answer's set_password_url."
}


def _link_answer(request: Request, link: services.SetPasswordLink, *, emailed: bool) -> dict:
    url = request.build_absolute_uri(link.path)
    name = link.user.get_username()
    detail = (
        f"Pass this link on to {name}: it is shown only now, works once, and expires on "
        f"{link.expires_at:%Y-%m-%d %H:%M} UTC. {name} sets a password there, then logs in."
    )
    if emailed:
        try:
            services.email_set_password_link(link, url)
        except services.EmailNotSent as problem:  # the account stands: the caller hands the link over
            emailed = False
            detail = f"{problem} {detail}"
    return {"set_password_url": url, "expires_at": link.expires_at, "emailed": emailed, "detail": detail}


class UserListView(generics.ListAPIView):
    """Every account (admins only); admins create accounts, each with a one-time set-password link."""

    serializer_class = s.PersonSerializer

    def get_queryset(self):
        return get_user_model().objects.prefetch_related("memberships__group").order_by("username")

    @extend_schema(tags=["users"])
    def get(self, request: Request, *args, **kwargs) -> Response:
        _admin_only(request)
        return super().get(request, *args, **kwargs)

    @extend_schema(request=s.UserCreateSerializer, responses={201: s.NewPersonSerializer}, tags=["users"])
    def post(self, request: Request) -> Response:
        _admin_only(request)
        data = form_fields(request, UserCreateForm)
        refuse_unknown_fields(data, UserCreateForm.base_fields, hints=PASSWORD_HINT)
        form = UserCreateForm(data=data)
        if not form.is_valid():
            raise form_errors(form)
        data = form.cleaned_data
        link = services.create_user(username=data["username"], email=data["email"], is_staff=data["is_staff"])
        body = {**s.PersonSerializer(_person(link.user.username)).data}
        body.update(_link_answer(request, link, emailed=data["send_email"]))
        return Response(body, status=status.HTTP_201_CREATED, headers=NO_STORE)


class UserDetailView(APIView):
    @extend_schema(responses=s.PersonSerializer, tags=["users"])
    def get(self, request: Request, username: str) -> Response:
        _admin_only(request)
        return Response(s.PersonSerializer(_person(username)).data)


class UserResetView(APIView):
    """A new one-time set-password link; the current password stops working at once."""

    @extend_schema(
        request=s.UserResetSerializer, responses={201: s.SetPasswordLinkSerializer}, tags=["users"]
    )
    def post(self, request: Request, username: str) -> Response:
        _admin_only(request)
        user = _person(username)
        data = form_fields(request, UserResetForm)
        refuse_unknown_fields(data, UserResetForm.base_fields, hints=PASSWORD_HINT)
        form = UserResetForm(data=data)
        if not form.is_valid():
            raise form_errors(form)
        send = form.cleaned_data["send_email"]
        if send and not user.email:
            raise ValidationError(
                {"send_email": [f"'{username}' has no e-mail address to send the link to."]}
            )
        try:
            link = services.reset_user(user, actor=request.user)
        except services.PeopleError as error:
            raise ValidationError({"username": [str(error)]}) from None
        body = _link_answer(request, link, emailed=send)
        return Response(body, status=status.HTTP_201_CREATED, headers=NO_STORE)


class _UserActiveView(APIView):
    active: bool

    @extend_schema(request=None, responses=s.PersonSerializer, tags=["users"])
    def post(self, request: Request, username: str) -> Response:
        _admin_only(request)
        user = _person(username)
        try:
            services.set_active(user, self.active, actor=request.user)
        except services.PeopleError as error:
            raise ValidationError({"username": [str(error)]}) from None
        return Response(s.PersonSerializer(_person(username)).data)


class UserDeactivateView(_UserActiveView):
    """The user can no longer log in; their sessions and API tokens stop working at once."""

    active = False


class UserActivateView(_UserActiveView):
    """The user can log in again (with their password, if they have one; else reset them)."""

    active = True
