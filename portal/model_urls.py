"""Browser pages of models."""

from django.urls import path

from portal import model_docs, model_pages, version_pages

urlpatterns = [
    path("models/", model_pages.model_list, name="model-list"),
    path("models/new/", model_pages.model_upload, name="model-upload"),
    path("models/<str:model_hash>/", model_pages.model_detail, name="model-detail"),
    path("models/<str:model_hash>/docs/", model_docs.ModelSwaggerView.as_view(), name="model-docs"),
    path("models/<str:model_hash>/settings/", model_pages.model_settings, name="model-settings"),
    path("models/<str:model_hash>/versions/new/", version_pages.version_upload, name="version-upload"),
    path(
        "models/<str:model_hash>/versions/<int:number>/", version_pages.version_detail, name="version-detail"
    ),
    path(
        "models/<str:model_hash>/versions/<int:number>/<str:action>/",
        version_pages.version_action,
        name="version-action",
    ),
    path("models/<str:model_hash>/<str:action>/", model_pages.model_action, name="model-action"),
]
