from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Accounts and groups"

    def ready(self) -> None:
        from portal import checks, schema  # noqa: F401  (registers checks and schema extensions)
