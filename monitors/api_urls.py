"""Monitoring endpoints under /api/v1/monitoring/."""

from django.urls import path

from monitors import api

urlpatterns = [
    path("<str:model_hash>", api.MonitorView.as_view(), name="api-monitoring"),
    path("<str:model_hash>/periods", api.PeriodListView.as_view(), name="api-monitoring-periods"),
    path(
        "<str:model_hash>/periods/<int:period_id>",
        api.PeriodDetailView.as_view(),
        name="api-monitoring-period",
    ),
    path("<str:model_hash>/merged", api.MergedView.as_view(), name="api-monitoring-merged"),
]
