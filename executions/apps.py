from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ExecutionsConfig(AppConfig):
    """Async executions of models: batch scoring of uploaded files as background runs."""

    name = "executions"

    def ready(self) -> None:
        from executions import checks  # noqa: F401  (registers the system checks)
        from executions.services import refuse_deleting_a_busy_version
        from executions.tasks import ensure_schedules
        from models_app.services import deleting_version

        post_migrate.connect(ensure_schedules, sender=self)
        deleting_version.connect(refuse_deleting_a_busy_version)
