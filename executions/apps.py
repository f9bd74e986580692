from django.apps import AppConfig


class ExecutionsConfig(AppConfig):
    """Async executions of models (batch scoring runs). Filled in by the async-executions work."""

    name = "executions"
