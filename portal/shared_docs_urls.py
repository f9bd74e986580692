"""Routes of docs share links: the shared page (no login) and the model page's forms."""

from django.urls import path

from portal import shared_docs

urlpatterns = [
    path("shared/docs/<str:key>/", shared_docs.SharedSwaggerView.as_view(), name="shared-docs"),
    path(
        "shared/docs/<str:key>/openapi.json",
        shared_docs.SharedOpenApiView.as_view(),
        name="shared-docs-openapi",
    ),
    path("models/<str:model_hash>/share-links/", shared_docs.create_link, name="share-link-create"),
    path(
        "models/<str:model_hash>/share-links/<str:link_id>/revoke/",
        shared_docs.revoke_link,
        name="share-link-revoke",
    ),
]
