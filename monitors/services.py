"""What can be done to a model's monitoring: register it, run a period, merge periods.

The pages and the API call these after their form has checked the request; the work
itself (validation, periods) runs in the worker (monitors.tasks).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import date, datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Prefetch, QuerySet
from django.utils import timezone
from django.utils.translation import gettext
from django_q.tasks import async_task

from models_app.models import MLModel
from models_app.services import lock_line
from monitoring import drift
from monitors import periods
from monitors.forms import MonitoringForm
from monitors.models import CONFIGURATION_FILE, ColumnResult, Monitor, Period
from training.models import TrainingRun
from training.services import with_platform_requirements

# What the monitoring harness imports in the model's environment, on top of its packages.
HARNESS_REQUIREMENTS = ("pandas", "pyarrow")
PREPROCESS_FILE = "preprocess.py"
REQUIREMENTS_FILE = "requirements.txt"


class NotValidated(Exception):
    """Periods run only for a Validated registration."""

    def __init__(self, monitor: Monitor):
        message = gettext("The monitoring of %(model)s is %(status)s; periods run once it is Validated.") % {
            "model": monitor.model.hash,
            "status": monitor.get_status_display(),
        }
        super().__init__(f"{message} {monitor.error_message}" if monitor.error_message else message)


class PeriodRefused(Exception):
    """A period that cannot be asked for: not begun yet, or outside the storable dates."""


def environment_requirements(monitor: Monitor) -> list[str]:
    """The model's packages, the preprocess's extra ones, and what the harness needs."""
    return with_platform_requirements(
        [*monitor.model.serving.requirements, *monitor.requirements], HARNESS_REQUIREMENTS
    )


@transaction.atomic
def register(model: MLModel, user, form: MonitoringForm) -> Monitor:
    """Create or replace the model's registration from a valid form and queue its validation.

    Re-registering keeps earlier periods (each keeps the bins it was counted in) and
    validates the new configuration from scratch; a validation still running for the
    registration it replaces goes on to its end, but its log and outcome are not kept
    (Monitor.this_run).
    """
    data = form.cleaned_data
    config = data["configuration"]
    # The model's row first (the lock every change of a model takes first): a first
    # registration has no Monitor row to lock, and two at once would both insert one.
    # So the second waits, then finds the first's and registers again, as if it came later.
    lock_line(model)
    monitor = Monitor.objects.select_for_update().filter(model=model).first() or Monitor(model=model)
    monitor.training_run = config.training_run
    monitor.period = config.period
    monitor.train_date_ref = config.train_date_ref
    monitor.train_date_col = config.train_date_col
    monitor.input_cols = config.input_cols
    monitor.output_cols = config.output_cols
    monitor.configuration = config.raw
    monitor.preprocess_reference = data["preprocess_reference"]
    monitor.shap_reference = data.get("shap_reference") or ""
    monitor.preprocess_file = PREPROCESS_FILE
    monitor.requirements = data["requirement_lines"]
    monitor.requirements_file = REQUIREMENTS_FILE if data.get("requirements") else ""
    monitor.webhook_url = data.get("webhook_url") or monitor.webhook_url
    if data.get("webhook_secret"):  # else a re-registration keeps the one it had
        monitor.set_webhook_secret(data["webhook_secret"])
    defaults = {
        "warning_threshold": drift.WARNING,
        "drift_threshold": drift.DRIFT,
        "minimum_rows": settings.MONITORING_MINIMUM_ROWS,
    }
    for field, default in defaults.items():
        if data.get(field) is not None:
            setattr(monitor, field, data[field])
        elif monitor.pk is None:  # a new registration; a re-registration keeps its settings
            setattr(monitor, field, default)
    monitor.status = Monitor.Status.UNVALIDATED
    monitor.error_message = ""
    monitor.reference = None
    monitor.env_fingerprint = ""
    monitor.validated_at = None
    monitor.started_at = monitor.finished_at = monitor.heartbeat_at = None
    monitor.log = ""
    monitor.attempts = 0
    monitor.registered_by = user if user.is_authenticated else None
    monitor.registered_at = timezone.now()
    monitor.save()
    _write_code(monitor, data)
    queue_validation(monitor)
    return monitor


def _write_code(monitor: Monitor, data: dict) -> None:
    """The uploaded files, replacing any earlier registration's."""
    code = monitor.code_folder
    shutil.rmtree(code, ignore_errors=True)
    code.mkdir(parents=True, mode=0o755)
    with open(code / PREPROCESS_FILE, "wb") as out:
        for chunk in data["preprocess"].file.chunks():
            out.write(chunk)
    if data.get("requirements"):
        (code / REQUIREMENTS_FILE).write_text("\n".join(data["requirement_lines"]) + "\n", encoding="utf-8")
    (code / CONFIGURATION_FILE).write_text(json.dumps(monitor.configuration, indent=2), encoding="utf-8")


def queue_validation(monitor: Monitor) -> None:
    """Hand the validation to a worker once the transaction that made it Unvalidated commits."""
    monitor.queue(send_validation)


def send_validation(monitor: Monitor) -> None:
    async_task(
        "monitors.tasks.validate_monitor", monitor.pk, task_name=f"monitoring-validate-{monitor.model.hash}"
    )


def queue_period(period: Period, *, continuation: bool = False) -> None:
    """Hand the period to a worker once the transaction that made it Queued commits;
    ``continuation``: it goes on from its saved progress as the same attempt."""
    period.queue(send_period, continuation=continuation)


def send_period(period: Period) -> None:
    async_task(
        "monitors.tasks.run_period",
        period.pk,
        continuation=period.continuation,
        task_name=f"monitoring-period-{period.pk}",
    )


@transaction.atomic
def request_period(monitor: Monitor, moment: datetime | date | None, user) -> Period:
    """The period containing ``moment`` (now by default), queued on demand.

    A finished period runs again (its results are replaced); a waiting or running one is
    returned as it is.
    """
    monitor = Monitor.objects.select_for_update().select_related("model").get(pk=monitor.pk)
    if monitor.status != Monitor.Status.VALIDATED:
        raise NotValidated(monitor)
    now = timezone.now()
    try:
        start, end = periods.bounds(monitor.period, moment or now)
    except periods.OutOfRange as exc:
        raise PeriodRefused(str(exc)) from None
    uploaded = monitor.model.created_at
    if end <= uploaded:
        # Calls are recorded from the upload on: an earlier period has nothing to compare.
        raise PeriodRefused(
            gettext(
                "The %(kind)s period of %(moment)s ended before the model was uploaded on %(uploaded)s: "
                "it has no calls to compare. Ask for a date from %(uploaded)s on."
            )
            % {"kind": monitor.period, "moment": moment, "uploaded": timezone.localtime(uploaded).date()}
        )
    if start > now:
        raise PeriodRefused(
            gettext(
                "The %(kind)s period of %(moment)s has not begun yet: a period compares the calls "
                "recorded in it, so ask for the current one or an earlier one."
            )
            % {"kind": monitor.period, "moment": moment}
        )
    requester = user if user is not None and user.is_authenticated else None
    period, created = Period.objects.get_or_create(
        monitor=monitor,
        kind=monitor.period,
        start=start,
        defaults={"end": end, "trigger": Period.Trigger.DEMAND, "requested_by": requester},
    )
    if not created:
        if period.status in (Period.Status.QUEUED, Period.Status.RUNNING):
            return period
        _reset(period, monitor, trigger=Period.Trigger.DEMAND, requested_by=requester)
    queue_period(period)
    return period


def _reset(period: Period, monitor: Monitor, *, where: dict | None = None, **fields) -> bool:
    """Make a finished period Queued again, its results gone, counted under the monitor's
    current registration; `where`: only while its row still matches (else False)."""
    rows = Period.objects.filter(pk=period.pk, **(where or {}))
    if not rows.update(**_fresh_period(), registered_at=monitor.registered_at, **fields):
        return False
    period.columns.all().delete()
    period.refresh_from_db()
    return True


def _fresh_period() -> dict:
    return {
        "status": Period.Status.QUEUED,
        "requested_at": timezone.now(),
        "started_at": None,
        "finished_at": None,
        "heartbeat_at": None,
        "log": "",
        "records": None,
        "rows": None,
        "skipped": 0,
        "average_psi": None,
        "drift_status": "",
        "shap": None,
        "error_message": "",
        "webhook_status": "",
        "progress": None,
        "attempts": 0,
    }


# How long after a window ends its period is queued: every web process writes its calls
# in batches, half a second apart (longer while the database refuses them), on every node.
CLOSE_GRACE = timedelta(minutes=1)


def queue_due_periods(now: datetime | None = None) -> int:
    """Queue every closed period of each Validated registration that has not run yet, and
    run again those that ran before their window closed.

    Periods count from the one in which the model was registered; earlier ones run on
    demand. A window is closed CLOSE_GRACE after its end. A period asked for while its
    window was open counted the calls so far: once the window closes it runs again on
    the whole window (else its partial result stayed the verdict). Returns how many were
    queued.
    """
    now = (now or timezone.now()) - CLOSE_GRACE
    queued = _rerun_partial_periods(now)
    validated = (
        Monitor.objects.filter(status=Monitor.Status.VALIDATED)
        .select_related("model")
        .only("status", "period", "registered_at", "model__hash")  # not the reference, every minute
    )
    for monitor in validated:
        for start, end in _missing_windows(monitor, now):
            with transaction.atomic():
                period, created = Period.objects.get_or_create(
                    monitor=monitor, kind=monitor.period, start=start, defaults={"end": end}
                )
                if created:
                    queue_period(period)
                    queued += 1
    return queued


def _rerun_partial_periods(closed_by: datetime) -> int:
    """Queue again the finished periods of Validated registrations whose run started before
    their window ended, once it has (`closed_by`)."""
    partial = Period.objects.filter(
        monitor__status=Monitor.Status.VALIDATED,
        status__in=(Period.Status.SUCCEEDED, Period.Status.FAILED),
        started_at__lt=F("end"),
        end__lte=closed_by,
    ).select_related("monitor")
    queued = 0
    for period in partial:
        with transaction.atomic():
            unchanged = {"status": period.status, "started_at": period.started_at}
            if not _reset(period, period.monitor, where=unchanged, trigger=Period.Trigger.SCHEDULE):
                continue  # asked for again meanwhile
            queue_period(period)
            queued += 1
    return queued


def _missing_windows(monitor: Monitor, now: datetime) -> Iterator[tuple[datetime, datetime]]:
    """The windows of the monitor's kind, from the one it was registered in, that have ended
    by `now` and have no period (of any registration: one window has one period).

    This runs every minute, so normally every window up to the latest period is there
    already: when the periods from the first window to the latest are as many as the
    windows, only the windows after the latest are walked, and the work does not grow
    with the monitor's history. Otherwise (some were missed while the worker was down and
    a later one was asked for meanwhile) every window since the registration is checked.
    """
    kind = monitor.period
    first, _ = periods.bounds(kind, monitor.registered_at)
    since_first = Period.objects.filter(monitor=monitor, kind=kind, start__gte=first, start__lt=now)
    found = since_first.aggregate(count=Count("pk"), latest=Max("start"))
    if found["latest"] is not None:
        latest, after_latest = periods.bounds(kind, found["latest"])
        # A window has one period at most (unique_monitoring_period): as many periods as
        # windows up to the latest means none of them is missing.
        if latest == found["latest"] and found["count"] == _windows(kind, first, latest):
            yield from periods.closed_since(kind, after_latest, now)
            return
    existing = set(since_first.values_list("start", flat=True)) if found["count"] else set()
    for start, end in periods.closed_since(kind, monitor.registered_at, now):
        if start not in existing:
            yield start, end


def _windows(kind: str, first: datetime, last: datetime) -> int:
    """How many windows of `kind` from the one starting at `first` to the one starting at
    `last`, both included."""
    zone = timezone.get_default_timezone()
    a, b = timezone.localtime(first, zone).date(), timezone.localtime(last, zone).date()
    if kind == "Day":
        return (b - a).days + 1
    if kind == "Week":
        return (b - a).days // 7 + 1
    if kind == "Month":
        return (b.year - a.year) * 12 + b.month - a.month + 1
    return b.year - a.year + 1


# What a period's summary reads (monitors.serializers.PeriodSummarySerializer): not its
# log, SHAP means, progress or webhook outcome, nor its columns' bins and reference counts,
# which only the period's detail shows.
SUMMARY_FIELDS = (
    "monitor",
    "kind",
    "start",
    "end",
    "status",
    "trigger",
    "registered_at",
    "records",
    "rows",
    "skipped",
    "average_psi",
    "drift_status",
    "error_message",
    "requested_at",
    "started_at",
    "finished_at",
)
COLUMN_SUMMARY_FIELDS = ("period", "role", "column", "psi", "status", "period_counts", "mean_abs_shap")


def period_summaries(
    monitor: Monitor, *, statuses: list[str] | None = None, limit: int | None = None
) -> QuerySet[Period]:
    """The monitor's periods as its list shows them, newest window first, in two queries
    however many there are: only `statuses` when given, the newest `limit` when given."""
    listed = monitor.periods.only(*SUMMARY_FIELDS).prefetch_related(
        Prefetch("columns", queryset=ColumnResult.objects.only(*COLUMN_SUMMARY_FIELDS))
    )
    if statuses:
        listed = listed.filter(status__in=statuses)
    return listed[:limit] if limit else listed


def unregister(monitor: Monitor) -> None:
    monitor.delete()  # remove_files follows


def keep_a_references_files(sender, run: TrainingRun, **kwargs) -> str | None:
    """training.services.removing_run_files: a monitor's reference is its run's data (its
    validation reads it again at every registration and recovery)."""
    monitor = Monitor.objects.filter(training_run=run).select_related("model").first()
    if monitor is None:
        return None
    return gettext(
        "The monitoring of the model '%(model)s' takes run %(number)s's data as its reference: "
        "register it with another run, or remove it, before deleting the run's files."
    ) % {"model": monitor.model.name, "number": run.number}


def remove_files(sender, instance: Monitor, **kwargs) -> None:
    """post_delete of a Monitor (unregistered, or its model deleted): its folder goes too."""
    folder = instance.folder
    transaction.on_commit(lambda: shutil.rmtree(folder, ignore_errors=True))


# ------------------------------------------------------------------------- results


def column_result(column: ColumnResult, monitor: Monitor) -> drift.ColumnResult:
    """A stored column read back through the drift arithmetic (the monitor's current thresholds)."""
    return drift.column_result(
        column.column,
        drift.Binning.from_json(column.binning),
        column.reference_counts,
        column.period_counts,
        minimum_rows=monitor.minimum_rows,
        thresholds=monitor.thresholds,
    )


def overall_status(results: list[drift.ColumnResult]) -> str:
    """The period's status: its worst column; insufficient when no column has a number."""
    statuses = {result.status for result in results}
    for status in ("drift", "warning", "stable"):
        if status in statuses:
            return status
    return "insufficient" if results else ""


def merged(monitor: Monitor, start: date, end: date) -> dict:
    """The current registration's Succeeded periods inside [start, end), merged by adding
    their per-bin counts.

    One registration's periods are of one kind, so they never overlap, and share its bins
    and reference counts (the first column's are kept). Periods counted under an earlier
    registration are left out: they may nest in these (a Day in a Week) and were binned
    against another reference.
    """
    window_start, _ = periods.bounds("Day", start)
    window_end, _ = periods.bounds("Day", end)
    in_window = {"status": Period.Status.SUCCEEDED, "start__gte": window_start, "end__lte": window_end}
    chosen = list(monitor.current_periods().filter(**in_window).order_by("start"))
    if not chosen:
        earlier = monitor.periods.filter(**in_window).count()
        raise ValueError(
            f"No finished period lies between {start} and {end}."
            + (
                f" {earlier} finished period(s) there were counted under an earlier registration, "
                "which is not merged with the current one: run them again to count them under it."
                if earlier
                else ""
            )
        )
    groups: dict[tuple[str, str, str], list[ColumnResult]] = {}
    for column in ColumnResult.objects.filter(period__in=chosen).order_by("period__start", "pk"):
        key = (column.role, column.column, json.dumps(column.binning, sort_keys=True))
        groups.setdefault(key, []).append(column)
    columns = []
    for (role, name, _), stored in groups.items():
        result = drift.column_result(
            name,
            drift.Binning.from_json(stored[0].binning),
            stored[0].reference_counts,
            drift.merge_counts(c.period_counts for c in stored),
            minimum_rows=monitor.minimum_rows,
            thresholds=monitor.thresholds,
        )
        columns.append((role, result, [c.period_id for c in stored]))
    inputs = [result for role, result, _ in columns if role == ColumnResult.Role.INPUT]
    return {
        "start": start.isoformat(),
        "end": end.isoformat(),
        "periods": [p.pk for p in chosen],
        "average_psi": drift.average_psi(inputs),
        "drift_status": overall_status([result for _, result, _ in columns]),
        "columns": [{"role": role, "periods": ids, **result_json(result)} for role, result, ids in columns],
    }


def result_json(result: drift.ColumnResult) -> dict:
    """A column's numbers and bins, as the API and the charts read them."""
    reference_total = sum(result.reference_counts) or 1
    period_total = sum(result.period_counts) or 1
    return {
        "column": result.column,
        "psi": result.psi,
        "status": result.status,
        "rows": result.rows,
        "kind": result.kind,
        "labels": result.binning.labels(),
        "reference_counts": list(result.reference_counts),
        "period_counts": list(result.period_counts),
        "reference_proportions": [c / reference_total for c in result.reference_counts],
        "period_proportions": [c / period_total for c in result.period_counts],
    }
