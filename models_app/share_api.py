"""REST endpoints of a model's docs share links (models_app.share_links does the work).

`GET/POST /api/v1/models/<hash>/share-links`, `DELETE .../share-links/<id>`. Members of
the model's group list them; its owners (and admins) create and revoke them; outsiders
get 404. The link's URL is in the creation's answer only: just its hash is stored.
"""

from __future__ import annotations

from datetime import timedelta

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import exceptions, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from groups.api.serializers import StrictInput
from models_app import share_links
from models_app.access import get_model_for_user
from models_app.models import DocsShareLink


class ShareLinkSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)
    created_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="The username of who created the link; null once that account is deleted.",
    )
    revoked_by = serializers.SlugRelatedField(
        slug_field="username",
        read_only=True,
        allow_null=True,
        help_text="The username of who revoked the link; null while it is not revoked.",
    )
    state = serializers.ChoiceField(choices=["active", "expired", "revoked"], read_only=True)

    class Meta:
        model = DocsShareLink
        fields = [
            "id",
            "prefix",
            "state",
            "created_by",
            "created_at",
            "expires_at",
            "revoked_at",
            "revoked_by",
        ]


class NewShareLinkSerializer(ShareLinkSerializer):
    url = serializers.CharField(read_only=True, help_text="The link to send; shown only now.")

    class Meta(ShareLinkSerializer.Meta):
        fields = ["url", *ShareLinkSerializer.Meta.fields]


class CreateShareLinkSerializer(StrictInput, serializers.Serializer):
    expires_in = serializers.IntegerField(
        default=int(share_links.DEFAULT_LIFETIME.total_seconds()),
        min_value=int(share_links.MIN_LIFETIME.total_seconds()),
        max_value=int(share_links.MAX_LIFETIME.total_seconds()),
        help_text="The link's lifetime in seconds (default 7 days, at most 90 days).",
    )


class _Refused(exceptions.APIException):
    def __init__(self, refused: share_links.ShareRefused):
        self.status_code = refused.status
        super().__init__(refused.message, refused.code)


def shared_docs_url(request, key: str) -> str:
    return request.build_absolute_uri(reverse("shared-docs", args=[key]))


class ShareLinkListView(APIView):
    @extend_schema(responses=ShareLinkSerializer(many=True), tags=["models"])
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        return Response(ShareLinkSerializer(share_links.links_of(model), many=True).data)

    @extend_schema(
        request=CreateShareLinkSerializer, responses={201: NewShareLinkSerializer}, tags=["models"]
    )
    def post(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        given = CreateShareLinkSerializer(data=request.data)
        try:
            share_links.check_may_share(request.user, model)
            given.is_valid(raise_exception=True)
            new = share_links.create(
                model, request.user, timedelta(seconds=given.validated_data["expires_in"])
            )
        except share_links.ShareRefused as refused:
            raise _Refused(refused) from None
        new.link.url = shared_docs_url(request, new.key)
        # The link is a credential shown once: no cache may keep it.
        return Response(
            NewShareLinkSerializer(new.link).data,
            status=status.HTTP_201_CREATED,
            headers={"Cache-Control": "no-store"},
        )


class ShareLinkDetailView(APIView):
    @extend_schema(responses={204: None}, tags=["models"])
    def delete(self, request: Request, model_hash: str, link_id: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        try:
            share_links.revoke(share_links.get_link(model, link_id), request.user)
        except share_links.ShareRefused as refused:
            raise _Refused(refused) from None
        return Response(status=status.HTTP_204_NO_CONTENT)
