from django.apps import AppConfig
from django.db.models.signals import post_delete, post_migrate


class MonitorsConfig(AppConfig):
    """Indirect monitoring of models: registrations, their validation and their periods."""

    name = "monitors"

    def ready(self) -> None:
        from monitors import checks  # noqa: F401  (registers the system checks)
        from monitors.models import Monitor
        from monitors.services import keep_a_references_files, remove_files
        from monitors.tasks import ensure_schedules
        from training.services import removing_run_files

        post_migrate.connect(ensure_schedules, sender=self)
        # A model's deletion cascades to its registration: its files go with it.
        post_delete.connect(remove_files, sender=Monitor, dispatch_uid="monitors-remove-files")
        removing_run_files.connect(keep_a_references_files, dispatch_uid="monitors-keep-references")
