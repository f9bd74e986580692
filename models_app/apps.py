from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ModelsAppConfig(AppConfig):
    name = "models_app"
    verbose_name = "Models"

    def ready(self) -> None:
        from models_app.tasks import ensure_schedules

        post_migrate.connect(ensure_schedules, sender=self)
