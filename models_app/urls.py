"""Browser pages of models."""

from django.urls import path

from models_app import docs_views, views

urlpatterns = [
    path("models/", views.model_list, name="model-list"),
    path("models/new/", views.model_upload, name="model-upload"),
    path("models/<str:model_hash>/", views.model_detail, name="model-detail"),
    path("models/<str:model_hash>/docs/", docs_views.ModelSwaggerView.as_view(), name="model-docs"),
    path("models/<str:model_hash>/settings/", views.model_settings, name="model-settings"),
    path("models/<str:model_hash>/<str:action>/", views.model_action, name="model-action"),
]
