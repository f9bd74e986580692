"""Serializers of the accounts API."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import serializers
from rest_framework.validators import UniqueValidator

from groups import services, storage
from groups.api.errors import JSON_KINDS, refuse_unknown_fields
from groups.forms import refuse_control_characters
from groups.models import GROUP_NAME_TAKEN, ApiToken, Group, GroupToken, Membership

QUOTA_FIELD = {
    "help_text": "The group's storage quota in MB (0: no limit); null: the server's default, "
    "NEOMARIL_GROUP_STORAGE_MB.",
}


class StrictInput:
    """A request body's serializer that takes only its own fields, each text as text:
    DRF drops unknown members without a word and reads the number 123 as the name "123"."""

    def to_internal_value(self, data):
        writable = [name for name, field in self.fields.items() if not field.read_only]
        refuse_unknown_fields(data, writable)
        if isinstance(data, dict):
            not_text = {
                name: [f"Send text, not a JSON {JSON_KINDS.get(type(data[name]), 'value')}."]
                for name, field in self.fields.items()
                if isinstance(field, serializers.CharField)
                and name in data
                and data[name] is not None
                and not isinstance(data[name], str)
            }
            if not_text:
                raise serializers.ValidationError(not_text)
        return super().to_internal_value(data)


def username_of(account: str, help_text: str) -> serializers.CharField:
    """The username of the ``account`` relation (``created_by``...), read-only, or null when
    there is no account (``help_text`` says when): the schema marks it nullable."""
    return serializers.CharField(
        source=f"{account}.username", default=None, read_only=True, allow_null=True, help_text=help_text
    )


def _refuse_control_characters(value: str) -> str:
    try:
        refuse_control_characters(value)
    except DjangoValidationError as error:
        raise serializers.ValidationError(error.messages) from None
    return value


class LoginSerializer(StrictInput, serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    # The name of the API token it issues: shown on the tokens page like any token's name.
    token_name = serializers.CharField(
        required=False, allow_blank=True, max_length=100, default="", validators=[_refuse_control_characters]
    )


class PasswordChangeSerializer(StrictInput, serializers.Serializer):
    old_password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    new_password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)


class ApiTokenSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)

    class Meta:
        model = ApiToken
        fields = ["id", "name", "prefix", "created_at", "last_used_at", "revoked_at"]
        read_only_fields = fields


class NewApiTokenSerializer(ApiTokenSerializer):
    token = serializers.CharField(read_only=True, help_text="The token itself. Shown only in this answer.")

    class Meta(ApiTokenSerializer.Meta):
        fields = [*ApiTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class CreateApiTokenSerializer(StrictInput, serializers.Serializer):
    name = serializers.CharField(
        max_length=100, allow_blank=True, default="", validators=[_refuse_control_characters]
    )


# The user's address as stored: "" when they have none, so no `format: email` in the schema.
EMAIL = {"read_only": True, "help_text": 'Their email address, or "" (empty) when they have none.'}


class UserSerializer(serializers.ModelSerializer):
    email = serializers.CharField(**EMAIL)

    class Meta:
        model = get_user_model()
        fields = ["username", "email", "is_staff"]
        read_only_fields = fields


class LoginResponseSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="API token. Send it as 'Authorization: Token <token>'.")
    token_id = serializers.UUIDField()
    user = UserSerializer()


class MembershipSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)

    class Meta:
        model = Membership
        fields = ["username", "role", "added_at"]
        read_only_fields = fields


class GroupTokenInfoSerializer(serializers.ModelSerializer):
    class Meta:
        model = GroupToken
        fields = ["prefix", "created_at", "expires_at"]
        read_only_fields = fields


class GroupStorageSerializer(serializers.Serializer):
    used_bytes = serializers.IntegerField(
        source="stored_bytes",
        help_text="What the group's models, executions, training runs and monitors keep on the data disk.",
    )
    quota_bytes = serializers.SerializerMethodField(
        help_text="The quota in force (the group's own, else NEOMARIL_GROUP_STORAGE_MB); null: no limit."
    )
    measured_at = serializers.DateTimeField(
        source="storage_measured_at",
        allow_null=True,
        help_text="When the group's folders were last walked; uploads and results are counted as they come.",
    )

    def get_quota_bytes(self, group: Group) -> int | None:
        return storage.quota_bytes(group)


class GroupSerializer(serializers.ModelSerializer):
    members = MembershipSerializer(source="memberships", many=True, read_only=True)
    token = serializers.SerializerMethodField(
        help_text="The current token's prefix and expiry (never the token)."
    )
    storage = GroupStorageSerializer(source="*", read_only=True)

    class Meta:
        model = Group
        fields = ["name", "description", "created_at", "members", "token", "storage_quota_mb", "storage"]
        read_only_fields = ["created_at", "members", "token", "storage_quota_mb", "storage"]

    def get_token(self, group: Group) -> dict | None:
        token = group.active_token()
        return GroupTokenInfoSerializer(token).data if token else None


class GroupChangeSerializer(StrictInput, serializers.ModelSerializer):
    class Meta:
        model = Group
        fields = ["description", "storage_quota_mb"]
        extra_kwargs = {"storage_quota_mb": QUOTA_FIELD}


class GroupCreateSerializer(StrictInput, serializers.ModelSerializer):
    class Meta:
        model = Group
        fields = ["name", "description", "storage_quota_mb"]
        extra_kwargs = {"storage_quota_mb": QUOTA_FIELD}

    def get_fields(self):
        fields = super().get_fields()
        # The service's and the page's wording (DRF's says "group with this name ...").
        for validator in fields["name"].validators:
            if isinstance(validator, UniqueValidator):
                validator.message = GROUP_NAME_TAKEN
        return fields


class NewGroupSerializer(GroupSerializer):
    group_token = serializers.CharField(
        read_only=True, help_text="The group token. Shown only in this answer: store it now."
    )

    class Meta(GroupSerializer.Meta):
        fields = [*GroupSerializer.Meta.fields, "group_token"]


class MemberAddSerializer(StrictInput, serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(
        choices=Membership.Role.choices,
        default=Membership.Role.MEMBER,
        error_messages={"invalid_choice": "'{input}' is not a role: choose member or owner."},
    )

    def validate_username(self, value: str):
        try:
            return services.member_user(value)
        except services.PeopleError as error:
            raise serializers.ValidationError(str(error)) from None


class RefreshTokenSerializer(StrictInput, serializers.Serializer):
    force = serializers.BooleanField(
        default=False, help_text="Replace the token even if it is still valid (the old one stops working)."
    )


class RefreshTokenResponseSerializer(serializers.Serializer):
    refreshed = serializers.BooleanField()
    group_token = serializers.CharField(
        allow_null=True, help_text="The new token (shown once), or null if kept."
    )
    expires_at = serializers.DateTimeField()
    detail = serializers.CharField()


class UserGroupSerializer(serializers.ModelSerializer):
    name = serializers.CharField(source="group.name", read_only=True)

    class Meta:
        model = Membership
        fields = ["name", "role"]
        read_only_fields = fields


class PersonSerializer(serializers.ModelSerializer):
    """A user as admins manage them (never a password, not even its hash)."""

    groups = UserGroupSerializer(source="memberships", many=True, read_only=True)
    has_password = serializers.BooleanField(source="has_usable_password", read_only=True)
    email = serializers.CharField(**EMAIL)

    class Meta:
        model = get_user_model()
        fields = [
            "username", "email", "is_staff", "is_active", "has_password", "groups", "date_joined", "last_login",
        ]  # fmt: skip
        read_only_fields = fields


class UserCreateSerializer(serializers.Serializer):
    """The users API's body (checked by groups.forms.UserCreateForm, as the page is)."""

    username = serializers.CharField(max_length=150)
    email = serializers.EmailField(required=False, allow_blank=True)
    is_staff = serializers.BooleanField(required=False, default=False)
    send_email = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Also e-mail the link (EMAIL settings; the console by default).",
    )


class UserResetSerializer(serializers.Serializer):
    """The reset's optional body (checked by groups.forms.UserResetForm)."""

    send_email = serializers.BooleanField(
        required=False,
        default=False,
        help_text="Also e-mail the new link (needs the user's e-mail address).",
    )


class SetPasswordLinkSerializer(serializers.Serializer):
    set_password_url = serializers.URLField(
        help_text="One-time link where the user sets a password. Shown only in this answer: pass it on."
    )
    expires_at = serializers.DateTimeField()
    emailed = serializers.BooleanField()
    detail = serializers.CharField()


class NewPersonSerializer(PersonSerializer):
    set_password_url = serializers.URLField(read_only=True)
    expires_at = serializers.DateTimeField(read_only=True)
    emailed = serializers.BooleanField(read_only=True)
    detail = serializers.CharField(read_only=True)

    class Meta(PersonSerializer.Meta):
        fields = [*PersonSerializer.Meta.fields, "set_password_url", "expires_at", "emailed", "detail"]
        read_only_fields = fields
