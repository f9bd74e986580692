"""Routes under /api/v1/run/<hash>/: the executions of an Async model (group token or member)."""

from django.urls import path

from executions import api

urlpatterns = [
    path("executions", api.ExecutionListView.as_view(), name="execution-list"),
    path("executions/<int:execution_id>", api.ExecutionDetailView.as_view(), name="execution-detail"),
    path("executions/<int:execution_id>/log", api.ExecutionLogView.as_view(), name="execution-log"),
    path("executions/<int:execution_id>/result", api.ExecutionResultView.as_view(), name="execution-result"),
    path("executions/<int:execution_id>/input", api.ExecutionInputView.as_view(), name="execution-input"),
]
