"""Root URL configuration."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from portal import health, i18n_views, metrics, model_docs

api_v1 = [
    path("", include("groups.api.urls")),
    path("", include("models_app.api_urls")),
    path("training/", include("training.api_urls")),
    path("monitoring/", include("monitors.api_urls")),
    # A model's OpenAPI document and request code describe its executions too.
    path(
        "models/<str:model_hash>/openapi.json",
        model_docs.ModelOpenApiView.as_view(),
        name="api-model-openapi",
    ),
    path("models/<str:model_hash>/code", model_docs.ModelCodeView.as_view(), name="api-model-code"),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/v1/run/", include("portal.run_urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path(
        "api/docs/",
        SpectacularSwaggerView.as_view(url_name="api-schema", template_name="portal/swagger_ui.html"),
        name="api-docs",
    ),
    path("admin/", admin.site.urls),
    # The language switch posts to Django's set_language (/i18n/setlang/); the pages'
    # scripts read their strings from the catalog (static/js: gettext()).
    path("i18n/", include("django.conf.urls.i18n")),
    path("jsi18n/", i18n_views.javascript_catalog, name="javascript-catalog"),
    path("", include("portal.ui_urls")),
    path("", include("portal.people_urls")),
    # Before portal.model_urls: its `models/<hash>/<action>/` would take the monitoring tab.
    path("", include("monitors.ui_urls")),
    path("", include("portal.shared_docs_urls")),  # before model_urls too: models/<hash>/share-links/
    path("", include("portal.model_urls")),
    path("", include("executions.ui_urls")),
    path("", include("training.ui_urls")),
]

# Not found (no route matches, or a view said so): the API's JSON under /api/, the page elsewhere.
handler404 = "portal.ui.not_found"
# A body Django's parser refuses before a view runs (e.g. in the CSRF check): JSON under /api/ too.
handler400 = "portal.ui.bad_request"
# An error of ours: JSON under /api/ (the one error shape), the page elsewhere.
handler500 = "portal.ui.server_error"
