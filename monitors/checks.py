"""System checks for the monitoring settings."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from monitors.tasks import TASK_TIMEOUT_MARGIN


@register()
def check_monitoring_timeout(app_configs, **kwargs):
    task_timeout = settings.Q_CLUSTER["timeout"]
    needed = settings.ENV_BUILD_TIMEOUT + settings.MONITORING_TIMEOUT + TASK_TIMEOUT_MARGIN
    if task_timeout >= needed:
        return []
    return [
        Error(
            f"A monitoring validation (or a period's first batch) builds its environment "
            f"({settings.ENV_BUILD_TIMEOUT} s at most) and then runs the preprocess "
            f"({settings.MONITORING_TIMEOUT} s at most): with {TASK_TIMEOUT_MARGIN} s to keep the results, that "
            f"needs a django-q2 task timeout of {needed} s, not {task_timeout} s.",
            hint="Lower NEOMARIL_MONITORING_TIMEOUT or NEOMARIL_ENV_BUILD_TIMEOUT, or raise "
            "NEOMARIL_TASK_TIMEOUT (and NEOMARIL_TASK_RETRY).",
            id="neomaril.E030",
        )
    ]
