"""The project shell as an app, only so that its system checks register once Django is set up.

Its label is "shell": "portal" belongs to the accounts app (groups/apps.py), which kept
the label of the tables it owns. The shell has no models.
"""

from django.apps import AppConfig


class ShellConfig(AppConfig):
    name = "portal"
    label = "shell"
    verbose_name = "Project shell"

    def ready(self) -> None:
        from portal import checks  # noqa: F401  (registers the cross-setting checks)
