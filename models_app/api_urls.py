"""Model endpoints under /api/v1/."""

from django.urls import path

from models_app import api, share_api

urlpatterns = [
    path("models", api.ModelListView.as_view(), name="api-models"),
    path("models/<str:model_hash>", api.ModelDetailView.as_view(), name="api-model-detail"),
    path("models/<str:model_hash>/status", api.ModelStatusView.as_view(), name="api-model-status"),
    path("models/<str:model_hash>/logs", api.ModelLogsView.as_view(), name="api-model-logs"),
    path("models/<str:model_hash>/events", api.ModelEventsView.as_view(), name="api-model-events"),
    path("models/<str:model_hash>/disable", api.ModelDisableView.as_view(), name="api-model-disable"),
    path("models/<str:model_hash>/restart", api.ModelRestartView.as_view(), name="api-model-restart"),
    path("models/<str:model_hash>/versions", api.ModelVersionListView.as_view(), name="api-model-versions"),
    path(
        "models/<str:model_hash>/versions/<int:version>",
        api.ModelVersionDetailView.as_view(),
        name="api-model-version",
    ),
    path(
        "models/<str:model_hash>/versions/<int:version>/status",
        api.ModelStatusView.as_view(),
        name="api-model-version-status",
    ),
    path(
        "models/<str:model_hash>/versions/<int:version>/logs",
        api.ModelLogsView.as_view(),
        name="api-model-version-logs",
    ),
    path(
        "models/<str:model_hash>/versions/<int:version>/live",
        api.ModelVersionLiveView.as_view(),
        name="api-model-version-live",
    ),
    path(
        "models/<str:model_hash>/versions/<int:version>/disable",
        api.ModelDisableView.as_view(),
        name="api-model-version-disable",
    ),
    path(
        "models/<str:model_hash>/versions/<int:version>/restart",
        api.ModelRestartView.as_view(),
        name="api-model-version-restart",
    ),
    path("models/<str:model_hash>/runners", api.ModelRunnersView.as_view(), name="api-model-runners"),
    path(
        "models/<str:model_hash>/share-links", share_api.ShareLinkListView.as_view(), name="api-share-links"
    ),
    path(
        "models/<str:model_hash>/share-links/<str:link_id>",
        share_api.ShareLinkDetailView.as_view(),
        name="api-share-link",
    ),
    path(
        "models/<str:model_hash>/predictions",
        api.ModelPredictionsView.as_view(),
        name="api-model-predictions",
    ),
]
