"""Routes under /api/v1/run/<hash>/: executions of an Async model."""

urlpatterns: list = []
