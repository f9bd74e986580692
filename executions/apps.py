from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ExecutionsConfig(AppConfig):
    """Async executions of models: batch scoring of uploaded files as background runs."""

    name = "executions"

    def ready(self) -> None:
        from executions import checks  # noqa: F401  (registers the system checks)
        from executions.tasks import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
