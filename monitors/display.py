"""What the portal's lists show of monitoring: each model's last verdict, at a glance.

The dashboard and the models list show one badge per model: the drift status of its
monitor's last Succeeded period (stable, warning, drift, insufficient) once the monitor
is Validated, the monitor's own status before that. Both are fetched for a whole page
of models in a constant number of queries, never one query per model: a subquery per
*monitor* picks its last period (an index seek on Period's (monitor, registered_at,
status, start)), so the work does not grow with a monitor's history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC

from django.db.models import OuterRef, QuerySet, Subquery
from django.utils import formats, timezone
from django.utils.translation import gettext as _

from groups.templatetags.portal_ui import day_text
from models_app.models import MLModel
from monitors.models import ColumnResult, Monitor, Period

DRIFT_STATUSES = ("stable", "warning", "drift", "insufficient")
DRIFT = "drift"


def _model_ids(models: QuerySet[MLModel] | Iterable[MLModel]) -> QuerySet | list[int]:
    if isinstance(models, QuerySet):
        return models.values("pk")
    return [model.pk for model in models]


# What the badges and the dashboard's drift card read of a period and of its monitor: the
# logs, SHAP means, progress and reference JSON stay in the database.
PERIOD_FIELDS = ("kind", "start", "end", "status", "registered_at", "drift_status", "average_psi", "rows")
MONITOR_FIELDS = ("model", "status", "registered_at")


def latest_periods(models: QuerySet[MLModel] | Iterable[MLModel]) -> dict[int, Period]:
    """{model id: the last Succeeded period of its monitor's current registration}, in one query.

    "Last" is the latest window (its start), not the latest run: re-running an old
    period does not make it the model's current verdict. Each period comes with its
    monitor (model, status, registered_at only) and without its big fields.
    """
    last = (
        Period.objects.filter(
            monitor=OuterRef("pk"),
            registered_at=OuterRef("registered_at"),
            status=Period.Status.SUCCEEDED,
        )
        .order_by("-start", "-pk")
        .values("pk")[:1]
    )
    # One subquery per monitor, not one per period (which was quadratic in a monitor's periods).
    chosen = Monitor.objects.filter(model__in=_model_ids(models)).annotate(last=Subquery(last)).values("last")
    periods = (
        Period.objects.filter(pk__in=chosen)
        .select_related("monitor")
        .only(*PERIOD_FIELDS, *(f"monitor__{name}" for name in MONITOR_FIELDS))
        .order_by()
    )
    return {period.monitor.model_id: period for period in periods}


@dataclass(frozen=True)
class Badge:
    """One model's monitoring state as the lists show it."""

    label: str  # stable | warning | drift | insufficient | a monitor status | "no period yet"
    css: str  # the badge's class suffix (static/css/portal.css)
    title: str  # the tooltip: what the label is about
    period: Period | None = None


def _period_title(period: Period) -> str:
    """What the badge's tooltip says of a period, its day and PSI written the page's
    language's way (as the dashboard's drift card: "06/12/2026", "5,277" in Portuguese);
    the kind (Day, Week…) and the verdict (stable, drift…) as the API writes them."""
    title = _("%(kind)s from %(start)s UTC: %(verdict)s") % {
        "kind": period.kind,
        "start": day_text(timezone.localtime(period.start, UTC).date()),
        "verdict": period.drift_status or _("no verdict"),
    }
    if period.average_psi is not None:
        title += _(", average PSI %(psi)s") % {"psi": formats.number_format(period.average_psi, 3)}
    return title


def badge_for(monitor: Monitor, period: Period | None) -> Badge:
    """The badge of one monitor, given its last Succeeded period (or None)."""
    if monitor.status != Monitor.Status.VALIDATED:
        label = monitor.get_status_display()
        return Badge(label, f"mon-{label}", _("Monitoring is %(status)s.") % {"status": label})
    if period is None or period.drift_status not in DRIFT_STATUSES:
        return Badge(_("no period yet"), "muted", _("Validated: no period has been compared yet."), period)
    return Badge(period.drift_status, f"drift-{period.drift_status}", _period_title(period), period)


def badges(models: QuerySet[MLModel] | Iterable[MLModel]) -> dict[int, Badge]:
    """{model id: its monitoring badge} for the monitored ones among `models` (two queries)."""
    monitors = Monitor.objects.filter(model__in=_model_ids(models)).only("pk", "model_id", "status")
    periods = latest_periods(models)
    return {monitor.model_id: badge_for(monitor, periods.get(monitor.model_id)) for monitor in monitors}


@dataclass(frozen=True)
class Drifted:
    """A model whose last period drifted, with the columns that did."""

    model: MLModel
    period: Period
    columns: list[str]


def drifted(models: QuerySet[MLModel]) -> list[Drifted]:
    """The models whose monitor is Validated and whose last period drifted, worst first
    (three queries, however many models)."""
    periods = {
        model_id: period
        for model_id, period in latest_periods(models).items()
        if period.drift_status == DRIFT and period.monitor.status == Monitor.Status.VALIDATED
    }
    columns: dict[int, list[str]] = {}
    for period_id, column in (
        ColumnResult.objects.filter(period__in=[period.pk for period in periods.values()], status=DRIFT)
        .order_by("-psi")
        .values_list("period_id", "column")
    ):
        columns.setdefault(period_id, []).append(column)
    found = MLModel.objects.filter(pk__in=list(periods)).select_related("group")
    listed = [Drifted(model, periods[model.pk], columns.get(periods[model.pk].pk, [])) for model in found]
    return sorted(listed, key=lambda item: (-(item.period.average_psi or 0), item.model.name))
