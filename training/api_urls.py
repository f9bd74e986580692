"""Training endpoints under /api/v1/training/."""

from django.urls import path

from training import api

run = "experiments/<str:experiment_hash>/runs/<int:number>"

urlpatterns = [
    path("experiments", api.ExperimentListView.as_view(), name="api-training-experiments"),
    path(
        "experiments/<str:experiment_hash>",
        api.ExperimentDetailView.as_view(),
        name="api-training-experiment",
    ),
    path("experiments/<str:experiment_hash>/runs", api.RunListView.as_view(), name="api-training-runs"),
    path(run, api.RunDetailView.as_view(), name="api-training-run"),
    path(f"{run}/status", api.RunStatusView.as_view(), name="api-training-run-status"),
    path(f"{run}/logs", api.RunLogView.as_view(), name="api-training-run-logs"),
    path(f"{run}/artifacts", api.RunArtifactsView.as_view(), name="api-training-run-artifacts"),
    path(f"{run}/promote", api.RunPromoteView.as_view(), name="api-training-run-promote"),
]
