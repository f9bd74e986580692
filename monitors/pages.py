"""The Monitoring tab of a model's page: its registration, settings, periods and charts.

The forms are the API's (monitors.forms) and call the same services; each POST answers
with a redirect (reloading the page does not post again) or, when the form has errors,
with the tab again and the errors beside their fields (400). The first render is
complete without JavaScript (status, log, periods table); static/js/monitoring.js draws
the charts from the monitoring API with the session, and follows a validation or a
period that is still running.
"""

from __future__ import annotations

from datetime import date, timedelta

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods

from groups.pages import post_only_page
from groups.uploads import (
    add_limit_errors,
    form_errors,
    lost_parts,
    refused_upload_status,
    sent_by_upload_script,
)
from models_app.models import MLModel
from monitors import services
from monitors.access import get_model_for_monitoring
from monitors.forms import MonitoringForm, MonitoringSettingsForm
from monitors.models import Monitor, Period

LOG_TAIL_LINES = 400
MAX_SHOWN_PERIODS = 200
TAB = "monitors/monitoring.html"


class PeriodRequestForm(forms.Form):
    """The "run a period" form: the day whose period (of the monitor's kind) to compare."""

    date = forms.DateField(
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}),
        label=gettext_lazy("Date"),
        help_text=gettext_lazy("Any day of the period (periods are in UTC); empty: the current period."),
        error_messages={"invalid": gettext_lazy("Give a date as YYYY-MM-DD.")},
    )


def _monitor_of(model: MLModel) -> Monitor | None:
    monitor = (
        Monitor.objects.select_related("training_run__experiment", "registered_by")
        .filter(model=model)
        .first()
    )
    if monitor is not None:
        monitor.model = model
    return monitor


def _log_tail(log: str) -> str:
    lines = log.splitlines()
    if len(lines) <= LOG_TAIL_LINES:
        return log
    return (
        _("… %(count)s earlier lines (full log: API /monitoring/<hash>) …")
        % {"count": len(lines) - LOG_TAIL_LINES}
        + "\n"
        + "\n".join(lines[-LOG_TAIL_LINES:])
    )


def last_day(period: Period) -> date:
    """The period's last day (its end is exclusive: midnight of the next day)."""
    return (period.end - timedelta(microseconds=1)).date()


def _ids(form: forms.BaseForm, prefix: str) -> forms.BaseForm:
    # Three forms share field names on one page: their ids must not.
    form.auto_id = f"{prefix}_%s"
    return form


def _tab(
    request: HttpRequest,
    model: MLModel,
    *,
    register_form: MonitoringForm | None = None,
    settings_form: MonitoringSettingsForm | None = None,
    run_form: PeriodRequestForm | None = None,
    status: int = 200,
) -> HttpResponse:
    monitor = _monitor_of(model)
    deleted = model.status == MLModel.Status.DELETED
    periods = list(monitor.periods.select_related("requested_by")[:MAX_SHOWN_PERIODS]) if monitor else []
    for period in periods:
        period.last_day = last_day(period)
    validating = monitor is not None and monitor.status == Monitor.Status.VALIDATING
    context = {
        "model": model,
        "monitor": monitor,
        "deleted": deleted,
        "status_label": monitor.get_status_display() if monitor else _("Not monitored"),
        "status_css": f"mon-{monitor.get_status_display()}" if monitor else "muted",
        "validated": monitor is not None and monitor.status == Monitor.Status.VALIDATED,
        "show_log": monitor is not None
        and monitor.status in (Monitor.Status.VALIDATING, Monitor.Status.INVALIDATED),
        "log_tail": _log_tail(monitor.log) if monitor else "",
        "periods": periods,
        "succeeded": sum(
            period.status == Period.Status.SUCCEEDED and period.current_registration for period in periods
        ),
        "register_form": _ids(register_form or MonitoringForm(model=model), "register"),
        # Open when there is nothing else to do: not registered, refused, or just posted with errors.
        "register_open": monitor is None
        or monitor.status == Monitor.Status.INVALIDATED
        or register_form is not None,
        "settings_form": _ids(settings_form or MonitoringSettingsForm(instance=monitor), "settings")
        if monitor
        else None,
        "run_form": _ids(run_form or PeriodRequestForm(), "run"),
        "max_file_bytes": settings.MAX_UPLOAD_FILE_BYTES,
        "max_total_bytes": settings.MAX_UPLOAD_TOTAL_BYTES,
        "live_config": {
            "hash": model.hash,
            "status": monitor.get_status_display() if monitor else "",  # as the API says it
            "following": validating
            or any(period.status in (Period.Status.QUEUED, Period.Status.RUNNING) for period in periods),
            "monitorUrl": reverse("api-monitoring", args=[model.hash]),
            "periodsUrl": reverse("api-monitoring-periods", args=[model.hash]),
            "periodUrl": reverse("api-monitoring-period", args=[model.hash, 0]),
            "warning": monitor.warning_threshold if monitor else None,
            "drift": monitor.drift_threshold if monitor else None,
        },
    }
    return render(request, TAB, context, status=status)


def _back(model: MLModel, anchor: str = "") -> HttpResponse:
    return redirect(reverse("model-monitoring", args=[model.hash]) + anchor)


@login_required
@require_http_methods(["GET"])
def monitoring(request: HttpRequest, model_hash: str) -> HttpResponse:
    return _tab(request, get_model_for_monitoring(request.user, model_hash))


@login_required
@post_only_page(lambda model_hash: reverse("model-monitoring", args=[model_hash]))
def register(request: HttpRequest, model_hash: str) -> HttpResponse:
    """Register (or replace) the model's monitoring; its validation is queued."""
    model = get_model_for_monitoring(request.user, model_hash)
    if model.status == MLModel.Status.DELETED:
        refusal = _("A deleted model cannot be monitored.")
        if sent_by_upload_script(request):
            return JsonResponse({"errors": {"__all__": [refusal]}}, status=409)
        messages.error(request, refusal)
        return _back(model)
    form = MonitoringForm(request.POST, request.FILES, model=model, lost_parts=lost_parts(request))
    if add_limit_errors(request, form) or not form.is_valid():
        if sent_by_upload_script(request):
            return JsonResponse({"errors": form_errors(form)}, status=refused_upload_status(request))
        return _tab(request, model, register_form=form, status=refused_upload_status(request))
    services.register(model, request.user, form)
    messages.success(
        request,
        _(
            "Monitoring registered: its validation is queued (it reads the reference and runs the preprocess)."
        ),
    )
    if sent_by_upload_script(request):
        return JsonResponse({"redirect": reverse("model-monitoring", args=[model.hash])}, status=201)
    return _back(model)


@login_required
@post_only_page(lambda model_hash: reverse("model-monitoring", args=[model_hash]))
def change_settings(request: HttpRequest, model_hash: str) -> HttpResponse:
    """The webhook, the thresholds and the minimum rows: no new validation needed."""
    model = get_model_for_monitoring(request.user, model_hash)
    monitor = _monitor_of(model)
    if monitor is None:
        messages.error(request, _("This model is not monitored yet: register it first."))
        return _back(model)
    form = MonitoringSettingsForm(request.POST, instance=monitor)
    if not form.is_valid():
        return _tab(request, model, settings_form=form, status=400)
    form.save()
    messages.success(request, _("Monitoring settings saved. They apply from the next period compared."))
    return _back(model, "#monitoring-settings")


@login_required
@post_only_page(lambda model_hash: reverse("model-monitoring", args=[model_hash]))
def run_period(request: HttpRequest, model_hash: str) -> HttpResponse:
    """Queue the period containing the given day (the current one by default)."""
    model = get_model_for_monitoring(request.user, model_hash)
    monitor = _monitor_of(model)
    if monitor is None:
        messages.error(request, _("This model is not monitored yet: register it first."))
        return _back(model)
    form = PeriodRequestForm(request.POST)
    if not form.is_valid():
        return _tab(request, model, run_form=form, status=400)
    try:
        period = services.request_period(monitor, form.cleaned_data["date"], request.user)
    except services.NotValidated as exc:
        messages.error(request, str(exc))
        return _back(model)
    except services.PeriodRefused as exc:
        form.add_error("date", str(exc))
        return _tab(request, model, run_form=form, status=400)
    messages.success(
        request,
        _(
            "The %(kind)s period %(start)s – %(end)s (UTC) is %(status)s: it is compared when a worker is free."
        )
        % {
            "kind": period.kind,
            "start": f"{period.start:%Y-%m-%d}",
            "end": f"{last_day(period):%Y-%m-%d}",
            "status": period.status,
        },
    )
    return _back(model, "#periods")
