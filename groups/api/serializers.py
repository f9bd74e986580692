"""Serializers of the accounts API."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from rest_framework import serializers

from groups.models import ApiToken, Group, GroupToken, Membership


class LoginSerializer(serializers.Serializer):
    username = serializers.CharField()
    password = serializers.CharField(style={"input_type": "password"}, trim_whitespace=False)
    token_name = serializers.CharField(required=False, allow_blank=True, max_length=100, default="")


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


class CreateApiTokenSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100, allow_blank=True, default="")


class UserSerializer(serializers.ModelSerializer):
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


class GroupSerializer(serializers.ModelSerializer):
    members = MembershipSerializer(source="memberships", many=True, read_only=True)
    token = serializers.SerializerMethodField(
        help_text="The current token's prefix and expiry (never the token)."
    )

    class Meta:
        model = Group
        fields = ["name", "description", "created_at", "members", "token"]
        read_only_fields = ["created_at", "members", "token"]

    def get_token(self, group: Group) -> dict | None:
        token = group.active_token()
        return GroupTokenInfoSerializer(token).data if token else None


class GroupCreateSerializer(serializers.ModelSerializer):
    class Meta:
        model = Group
        fields = ["name", "description"]


class NewGroupSerializer(GroupSerializer):
    group_token = serializers.CharField(
        read_only=True, help_text="The group token. Shown only in this answer: store it now."
    )

    class Meta(GroupSerializer.Meta):
        fields = [*GroupSerializer.Meta.fields, "group_token"]


class MemberAddSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.MEMBER)

    def validate_username(self, value: str):
        user = get_user_model().objects.filter(username=value, is_active=True).first()
        if user is None:
            raise serializers.ValidationError(f"No active user named '{value}'.")
        return user


class RefreshTokenSerializer(serializers.Serializer):
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
