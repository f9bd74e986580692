"""System checks for the training settings."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

# Room for the artifacts' copy and the freeze after the function returns.
TASK_TIMEOUT_MARGIN = 60


@register()
def check_training_timeout(app_configs, **kwargs):
    task_timeout = settings.Q_CLUSTER["timeout"]
    needed = settings.ENV_BUILD_TIMEOUT + settings.TRAINING_TIMEOUT + TASK_TIMEOUT_MARGIN
    if task_timeout >= needed:
        return []
    return [
        Error(
            f"A training run builds its environment ({settings.ENV_BUILD_TIMEOUT} s at most) and then "
            f"trains ({settings.TRAINING_TIMEOUT} s at most): with {TASK_TIMEOUT_MARGIN} s to save the "
            f"artifacts, that needs a django-q2 task timeout of {needed} s, not {task_timeout} s, or the "
            "worker kills the task before the run's own timeout can fail it with a clear message.",
            hint="Lower NEOMARIL_TRAINING_TIMEOUT or NEOMARIL_ENV_BUILD_TIMEOUT, or raise "
            "NEOMARIL_TASK_TIMEOUT (and NEOMARIL_TASK_RETRY).",
            id="neomaril.E020",
        )
    ]
