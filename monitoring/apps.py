from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Recording of production inputs and drift monitoring. Filled in by the serving work."""

    name = "monitoring"
