from django.apps import AppConfig
from django.db.models.signals import post_migrate


class TrainingConfig(AppConfig):
    """Training experiments and their runs (Custom, External), promoted to models."""

    name = "training"

    def ready(self) -> None:
        from training import checks  # noqa: F401  (registers the system checks)
        from training.tasks import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
