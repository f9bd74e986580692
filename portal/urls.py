"""Root URL configuration."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from portal import health

api_v1 = [
    path("", include("portal.api.urls")),
    path("", include("models_app.api_urls")),
]

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("api/v1/run/", include("models_app.run_urls")),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("admin/", admin.site.urls),
    path("", include("portal.ui_urls")),
    path("", include("models_app.urls")),
    path("", include("executions.ui_urls")),
]
