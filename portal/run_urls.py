"""Routes under /api/v1/run/<hash>: what callers of a model use (group token; `try`: a member's session)."""

from django.urls import include, path

from models_app.serving.views import ModelHealthView
from portal import run_api

urlpatterns = [
    path("<str:model_hash>", run_api.run_model, name="run-model"),
    path("<str:model_hash>/try", run_api.try_model, name="run-model-try"),
    path("<str:model_hash>/versions/<int:version>", run_api.run_model, name="run-model-version"),
    path("<str:model_hash>/versions/<int:version>/try", run_api.try_model, name="run-model-version-try"),
    path("<str:model_hash>/health", ModelHealthView.as_view(), name="run-model-health"),
    path("<str:model_hash>/", include("executions.urls")),
]
