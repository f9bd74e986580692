from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ModelsAppConfig(AppConfig):
    name = "models_app"
    verbose_name = "Models"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from models_app.tasks import ensure_schedules, learn_interpreters

        post_migrate.connect(ensure_schedules, sender=self)
        post_spawn.connect(learn_interpreters, dispatch_uid="models_app.learn_interpreters")
