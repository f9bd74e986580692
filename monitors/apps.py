from django.apps import AppConfig
from django.db.models.signals import post_migrate


class MonitorsConfig(AppConfig):
    """Indirect monitoring of models: registrations, their validation and their periods."""

    name = "monitors"

    def ready(self) -> None:
        from monitors.tasks import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
