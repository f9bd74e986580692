"""Fetch a model's monitoring and its periods *for this user*, or answer 404.

Who may read a monitoring: members of the model's group and admins (the model's own
rule, models_app.access). Who may register, change, delete or run it: whoever may upload a
model to that group — also its members and admins (models_app.forms.GroupField offers
`groups_for(user)`, members of any role). The two rules are one today, so every view
fetches through `get_model_for_monitoring`; should uploading ever need more than
membership, this is the one place to say so.
"""

from __future__ import annotations

from django.http import Http404

from models_app.access import get_model_for_user
from models_app.models import MLModel
from monitors.models import Monitor, Period


def get_model_for_monitoring(user, model_hash: str) -> MLModel:
    return get_model_for_user(user, model_hash)


def get_monitor_for_user(user, model_hash: str) -> Monitor:
    model = get_model_for_monitoring(user, model_hash)
    monitor = (
        Monitor.objects.select_related("training_run__experiment", "registered_by")
        .filter(model=model)
        .first()
    )
    if monitor is None:
        raise Http404(
            f"Model '{model_hash}' is not monitored: register it with POST /api/v1/monitoring/{model_hash}."
        )
    monitor.model = model
    return monitor


def get_period_for_user(user, model_hash: str, period_id: int) -> Period:
    monitor = get_monitor_for_user(user, model_hash)
    period = monitor.periods.prefetch_related("columns").filter(pk=period_id).first()
    if period is None:
        raise Http404(f"The monitoring of model '{model_hash}' has no period {period_id}.")
    period.monitor = monitor
    return period
