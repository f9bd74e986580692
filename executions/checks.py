"""System checks for the executions' settings."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Error, register

from models_app.models import EXECUTION_TASK_MARGIN


@register()
def check_execution_timeout(app_configs, **kwargs):
    task_timeout = settings.Q_CLUSTER["timeout"]
    if task_timeout >= settings.EXECUTION_TIMEOUT + EXECUTION_TASK_MARGIN:
        return []
    return [
        Error(
            f"The execution timeout ({settings.EXECUTION_TIMEOUT} s) must be below django-q2's task "
            f"timeout ({task_timeout} s) by at least {EXECUTION_TASK_MARGIN} s, or the worker kills "
            "the task before the execution's own timeout can fail it with a clear message.",
            hint="Lower NEOMARIL_EXECUTION_TIMEOUT or raise NEOMARIL_TASK_TIMEOUT (and NEOMARIL_TASK_RETRY).",
            id="neomaril.E010",
        )
    ]


@register()
def check_execution_slots_leave_a_worker(app_configs, **kwargs):
    workers = settings.Q_CLUSTER["workers"]
    if workers > settings.EXECUTION_CONCURRENCY_TOTAL:
        return []
    return [
        Error(
            f"NEOMARIL_EXECUTION_CONCURRENCY_TOTAL ({settings.EXECUTION_CONCURRENCY_TOTAL}) must be below the "
            f"number of workers ({workers}), or running executions can hold every worker and builds wait.",
            hint="Raise NEOMARIL_WORKERS or lower NEOMARIL_EXECUTION_CONCURRENCY_TOTAL.",
            id="neomaril.E011",
        )
    ]
