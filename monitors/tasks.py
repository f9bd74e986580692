"""Background work of monitoring (django-q2 tasks): validating a registration, running a
period, the schedule that queues closed periods, recovery, the drift webhook.

User code (the preprocess and the SHAP function) runs only in the sandbox, through the
monitoring harness (models_app/runtime/monitoring_harness.py), in the model's
environment plus the harness's and the preprocess's packages. What comes back is plain
JSON of column values, read without following links; the bins, counts and PSI are
computed here, by monitoring/drift.py.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import shutil
import socket
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from executions.models import Execution
from groups import crypto, jobs, nodes, webhooks
from models_app import environments, sandboxes
from models_app import tasks as model_tasks
from models_app.models import MLModel
from models_app.runtime import oneshot, orphans
from monitoring import drift
from monitoring.models import PredictionRecord
from monitors import services
from monitors.models import ColumnResult, Monitor, Period
from training.models import MODEL_ARTIFACT

HOST = socket.gethostname()
MAX_LOG_CHARS = 1024 * 1024
# The largest JSON the harness may hand back (the reference's columns, or one batch's).
MAX_OUTPUT_BYTES = 512 * 1024 * 1024
OUT_FILE = "out.json"
RECORDS_FILE = "records.jsonl"
WEBHOOK_TRIES = 3
# Room, after a period's last batch, to count it and save the results within the task.
TASK_TIMEOUT_MARGIN = 60
# What a validation reports when its registration was replaced (or removed) while it ran.
REPLACED = "outcome discarded: the model was registered again (or unregistered) meanwhile"


class MonitoringFailed(jobs.JobFailed):
    """A reason to invalidate a registration or fail a period, phrased for the user."""


# ---------------------------------------------------------------------- validation


def validate_monitor(monitor_id: int) -> str:
    """Check a registration against its reference run and by running its preprocess.

    The run is of the registration read here (Monitor.this_run): one that replaces it
    meanwhile has its own task, run and folder, and this run's outcome is discarded.
    """
    if jobs.must_wait_for_share(Monitor, monitor_id):
        return jobs.DEFERRED_OUTCOME
    # Claimed, and loaded, only as the registration read here: one registered (and claimed
    # by its own task) between two of these steps is not run as if it were this one.
    registered_at = (
        Monitor.objects.filter(pk=monitor_id, status=Monitor.Status.UNVALIDATED)
        .values_list("registered_at", flat=True)
        .first()
    )
    claimed = registered_at is not None and Monitor.claim(
        monitor_id,
        waiting=Monitor.Status.UNVALIDATED,
        where={"registered_at": registered_at},
        attempts=F("attempts") + 1,
        host=HOST,
    )
    if not claimed:
        return "already handled"
    monitor = (
        Monitor.objects.select_related("model", "training_run__experiment")
        .filter(pk=monitor_id, registered_at=registered_at)
        .first()
    )
    if monitor is None:
        return REPLACED
    with jobs.JobLog(monitor, max_chars=MAX_LOG_CHARS) as log:
        outcome = log.outcome_of(
            "validation",
            lambda: {
                "status": Monitor.Status.VALIDATED,
                "reference": _validate(monitor, log),
                "error_message": "",
                "validated_at": timezone.now(),
            },
            failed=lambda reason: {"status": Monitor.Status.INVALIDATED, "error_message": reason},
            succeeded=lambda done: f"Validated: the reference has {done['reference']['rows']} rows.",
        )
    _remove_validation_folder(monitor.sandbox_folder)
    if monitor.settle(**outcome):
        return outcome["status"]
    if Monitor.objects.filter(pk=monitor.pk, registered_at=monitor.registered_at).exists():
        return "outcome discarded: the validation was recovered meanwhile"
    return REPLACED


def _remove_validation_folder(folder: Path) -> None:
    """A validation run's scratch folder, once the run is over: no other run uses it."""
    shutil.rmtree(folder, ignore_errors=True)


def _validate(monitor: Monitor, log: jobs.JobLog) -> dict:
    model, run = monitor.model, monitor.training_run
    log(
        f"Validating the monitoring of {model.name} ({model.hash}) against run {run.number} of "
        f"{run.experiment.hash}, attempt {monitor.attempts} on {HOST}."
    )
    log.flush()
    sample = _sample(monitor)
    python = _environment(monitor, log)
    if not monitor.this_run().exists():  # no one waits for it: not worth a sandbox (not logged)
        raise MonitoringFailed("Registered again, or recovered, while the environment was prepared.")
    folder = _fresh_folder(monitor.sandbox_folder)
    spec = {
        **_common_spec(monitor, folder),
        "mode": "validate",
        "reference": {
            "X_train": str(run.artifacts_folder / "X_train.parquet"),
            "model_output": str(run.artifacts_folder / "model_output.parquet"),
        },
        "date_col": monitor.train_date_col or None,
        "sample": sample,
    }
    log(
        f"Checking the columns against the run's X_train and model_output, then calling "
        f"{monitor.preprocess_reference}() on the model's example"
        + (f" and {monitor.shap_reference}() on its features." if monitor.shap_reference else ".")
    )
    result = _run_harness(
        monitor, python, folder, spec, log, read_only=[run.artifacts_folder, *_sample_folders(monitor)]
    )
    out = _read_out(folder)
    for preview, name in ((result.get("features"), "Features"), (result.get("outputs"), "Outputs")):
        if preview:
            log(f"{name} of the example: {json.dumps(preview)[:1000]}")
    reference = {
        "inputs": {},
        "outputs": {},
        "rows": _count(out.get("rows")),
        "date_range": out.get("date_range"),
    }
    for role, columns in (("inputs", monitor.input_cols), ("outputs", monitor.output_cols)):
        values_by_column = _columns_of(out, role, columns)
        for column in columns:
            values = values_by_column[column]
            try:
                binning = drift.binning_for(values)
                counts = drift.counts(binning, values)
            except ValueError as exc:
                raise MonitoringFailed(f"The reference column {column}: {exc}") from None
            if not sum(counts):  # PSI needs a reference distribution: every period would crash
                table = "X_train" if role == "inputs" else "model_output"
                raise MonitoringFailed(
                    f"The reference {role[:-1]} column {column} has no rows: the run's {table} is empty, "
                    "so there is nothing to compare the periods with. Register with a run whose data has rows."
                )
            reference[role][column] = {"binning": binning.to_json(), "counts": counts}
            log(f"Reference {role[:-1]} {column}: {binning.kind}, {binning.size} bins, {sum(counts)} rows.")
    return reference


def _sample(monitor: Monitor) -> dict:
    """One input and the model's answer to it, for the preprocess's smoke test."""
    model = monitor.model.serving
    if model.is_sync:
        if model.smoke_result is None or model.schema is None:
            raise MonitoringFailed(
                f"The model has no smoke-test answer yet (it is {model.status}): the preprocess is tried on "
                "the model's example and the build's answer. Register again once the model is Deployed."
            )
        return {"input": json.dumps(model.schema), "output": json.dumps(model.smoke_result)}
    smoke = model.smoke_result if isinstance(model.smoke_result, dict) else {}
    if smoke.get("input_file") and smoke.get("output_file"):
        return {
            "input": str(model.folder / smoke["input_file"]),
            "output": str(model.folder / smoke["output_file"]),
        }
    latest = _async_executions(monitor).last()
    if latest is None:
        raise MonitoringFailed(
            "The preprocess is tried on an example input and the model's result for it, and this Async model has "
            "neither a sample input with a kept smoke-test result nor a Succeeded execution. Run one execution "
            "(or upload the model again with a sample input), then register again."
        )
    return {"input": str(latest.input_path), "output": str(latest.output_path)}


def _sample_folders(monitor: Monitor) -> list[Path]:
    """An Async model's execution files (its inputs and results), read-only."""
    if monitor.model.is_sync:
        return []
    folder = settings.EXECUTIONS_DIR / monitor.model.hash
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)  # bound even before a first execution
    return [folder]


def _environment(monitor: Monitor, log: jobs.JobLog) -> Path:
    requirements = services.environment_requirements(monitor)
    try:
        env_path, _ = model_tasks.prepare_environment(monitor.model.serving.python_version, requirements, log)
    except model_tasks.EnvironmentUnavailable as exc:
        raise MonitoringFailed(str(exc)) from None
    if monitor.env_fingerprint != env_path.name:
        # Only onto the registration it was built for: not onto one that replaced it meanwhile.
        Monitor.objects.filter(pk=monitor.pk, registered_at=monitor.registered_at).update(
            env_fingerprint=env_path.name
        )
        monitor.env_fingerprint = env_path.name
    return environments.env_python(env_path)


def _common_spec(monitor: Monitor, folder: Path) -> dict:
    model = monitor.model.serving  # the live version's model file, for SHAP
    return {
        "shap_entrypoint": monitor.shap_reference or None,
        "model_path": str(model.folder / (model.model_file or MODEL_ARTIFACT)),
        "operation": "sync" if model.is_sync else "async",
        "input_cols": monitor.input_cols,
        "output_cols": monitor.output_cols,
        "out_file": str(folder / OUT_FILE),
    }


def _fresh_folder(folder: Path) -> Path:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    return folder


def _run_harness(
    monitor: Monitor, python: Path, folder: Path, spec: dict, log: jobs.JobLog, *, read_only: list[Path]
) -> dict:
    result = oneshot.run_oneshot(
        sandboxes.monitoring_code(
            monitor.model.serving, python=python, folder=folder, read_only=[monitor.code_folder, *read_only]
        ),
        source=str(monitor.code_folder / monitor.preprocess_file),
        entrypoint=monitor.preprocess_reference,
        kind="monitor",
        args=[json.dumps(spec)],
        timeout=settings.MONITORING_TIMEOUT,
        on_output_line=lambda line: log(f"[preprocess] {line}"),
    )
    if not result.ok:
        if result.traceback:
            log("Traceback:\n" + result.traceback.rstrip())
        raise MonitoringFailed(_failure_message(result))
    return result.result if isinstance(result.result, dict) else {}


def _failure_message(result: oneshot.RunResult) -> str:
    if result.timed_out:
        return f"The preprocess timed out after {settings.MONITORING_TIMEOUT} s and was stopped."
    error = (result.error or "unknown error").strip()
    prefix = {
        "import": "Could not load the preprocess: ",
        "data": "Could not read the reference data: ",
        "crash": "The preprocess process failed: ",
    }.get(result.phase or "", "")
    return prefix + error


def _read_out(folder: Path) -> dict:
    """The harness's JSON, opened without following a link the sandbox may have planted."""
    try:
        handle = jobs.open_regular_file(folder / OUT_FILE, folder)
    except jobs.NotKept as exc:
        raise MonitoringFailed(f"The preprocess process did not leave its results: {exc}") from None
    with handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_OUTPUT_BYTES:
            raise MonitoringFailed(
                f"The preprocess results are {size // 2**20} MiB, over {MAX_OUTPUT_BYTES // 2**20} MiB: "
                "lower NEOMARIL_MONITORING_BATCH_SIZE or monitor fewer columns."
            )
        try:
            out = json.loads(handle.read())
        except ValueError as exc:
            raise MonitoringFailed(f"The preprocess results are not valid JSON: {exc}.") from None
    if not isinstance(out, dict):
        raise MonitoringFailed("The preprocess results are not a JSON object.")
    return out


def _columns_of(out: dict, role: str, columns: list[str]) -> dict[str, list]:
    """``out[role]`` checked: a list of values for every configured column."""
    given = out.get(role)
    if not isinstance(given, dict):
        raise MonitoringFailed(f"The preprocess results lack their {role}.")
    checked = {}
    for column in columns:
        values = given.get(column)
        if not isinstance(values, list):
            raise MonitoringFailed(f"The preprocess results lack the column {column} of their {role}.")
        checked[column] = values
    return checked


def _count(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


# -------------------------------------------------------------------------- periods


def run_period(period_id: int, continuation: bool = False) -> str:
    """Preprocess one window's records in batches and compare each column with the reference.

    A period that would outlast its django-q2 task saves its progress and goes on in the
    next task (``continuation``): the counts of the batches done so far are kept on the
    row, and so is where the next batch starts.
    """
    if jobs.must_wait_for_share(Period, period_id):
        return jobs.DEFERRED_OUTCOME
    claimed = Period.claim(
        period_id,
        waiting=Period.Status.QUEUED,
        host=HOST,
        **({} if continuation else {"attempts": F("attempts") + 1}),
    )
    if not claimed:
        return "already handled"
    period = Period.objects.select_related("monitor__model", "monitor__training_run").get(pk=period_id)
    with jobs.JobLog(period, max_chars=MAX_LOG_CHARS) as log:
        outcome, results = log.outcome_of(
            "period",
            lambda: _run_period(period, log, deadline=_task_deadline()),
            failed=lambda reason: (
                {"status": Period.Status.FAILED, "error_message": reason, "progress": None},
                None,
            ),
        )
    if outcome["status"] == Period.Status.QUEUED:
        with transaction.atomic():
            if not period.this_run().update(status=Period.Status.QUEUED, heartbeat_at=None):
                return "outcome discarded: the period was recovered meanwhile"
            services.queue_period(period, continuation=True)
        return "continued in a new task"
    with transaction.atomic():
        finished = period.settle(**outcome)
        if finished and results is not None:
            period.columns.all().delete()
            ColumnResult.objects.bulk_create(results)
    if finished and outcome["status"] == Period.Status.SUCCEEDED and outcome["drift_status"] == "drift":
        notify(period)
    return outcome["status"] if finished else "outcome discarded: the period was recovered meanwhile"


def _task_deadline() -> float:
    """When this task must stop starting batches: one more batch, and the results, must fit
    in django-q2's task timeout."""
    budget = settings.Q_CLUSTER["timeout"] - settings.MONITORING_TIMEOUT - TASK_TIMEOUT_MARGIN
    return time.monotonic() + max(budget, 0)


def _run_period(
    period: Period, log: jobs.JobLog, *, deadline: float
) -> tuple[dict, list[ColumnResult] | None]:
    monitor = period.monitor
    if monitor.status != Monitor.Status.VALIDATED or not monitor.reference:
        raise MonitoringFailed(
            f"The monitoring is {monitor.get_status_display()}; periods run once it is Validated."
        )
    reference = monitor.reference
    binnings = {
        f"{role}/{column}": drift.Binning.from_json(reference[role][column]["binning"])
        for role, columns in (("inputs", monitor.input_cols), ("outputs", monitor.output_cols))
        for column in columns
    }
    progress = period.progress or {
        "counts": {key: [0] * binning.size for key, binning in binnings.items()},
        "shap": {column: [0.0, 0] for column in monitor.input_cols},
        "records": 0,
        "rows": 0,
        "skipped": 0,
        "batches": 0,
        "after": None,
        "registered_at": monitor.registered_at.isoformat(),
    }
    _check_still_current(monitor, progress)
    if period.progress:
        log(f"Going on after batch {progress['batches']} ({progress['records']} record(s) done).")
    else:
        log(
            f"{period.kind} {period.start:%Y-%m-%d %H:%M} – {period.end:%Y-%m-%d %H:%M} ({settings.TIME_ZONE}) of "
            f"{monitor.model.name}, attempt {period.attempts} on {HOST}."
        )
    log.flush()
    python = None
    folder = period.sandbox_folder
    while True:
        batch, after = _next_batch(period, progress["after"])
        if not batch:
            break
        if python is not None and time.monotonic() > deadline:  # at least one batch per task
            log(f"Batch {progress['batches'] + 1} goes on in a new task (this one's time is nearly up).")
            return {"status": Period.Status.QUEUED}, None
        if python is None:
            python = _environment(monitor, log)
        number = progress["batches"] + 1
        _fresh_folder(folder)
        with open(folder / RECORDS_FILE, "w", encoding="utf-8") as out:
            for record in batch:
                out.write(json.dumps(record) + "\n")
        log(f"Batch {number}: {len(batch)} record(s) through {monitor.preprocess_reference}().")
        spec = {**_common_spec(monitor, folder), "mode": "period", "records_file": str(folder / RECORDS_FILE)}
        _run_harness(monitor, python, folder, spec, log, read_only=_sample_folders(monitor))
        _check_still_current(monitor, progress)  # the code or bins may have changed meanwhile
        _add_batch(progress, _read_out(folder), binnings, log)
        progress["batches"], progress["after"] = number, after
        if not period.this_run().update(progress=progress):
            raise MonitoringFailed("The period was taken over by recovery while it ran.")
    shutil.rmtree(folder, ignore_errors=True)
    # The last batch came up empty: also what a deletion purging the calls looks like.
    _check_still_current(monitor, progress)
    if not progress["batches"]:
        log("No records in this period.")
    return _results(period, progress, binnings, log)


def _check_still_current(monitor: Monitor, progress: dict) -> None:
    """MonitoringFailed when the period's counts no longer describe anything: the model was
    registered again since the period began (the new registration's code and bins would be
    mixed with the old one's counts), or deleted (its recorded calls are being purged, so the
    period would have counted part of them)."""
    current = Monitor.objects.filter(pk=monitor.pk).values_list("registered_at", "model__status").first()
    if current is None or current[1] == MLModel.Status.DELETED:
        raise MonitoringFailed("The model was deleted while this period ran, and its recorded calls with it.")
    began_under = progress.get("registered_at")
    if began_under is not None and current[0].isoformat() != began_under:
        raise MonitoringFailed(
            "The monitoring was registered again while this period ran, so its batches would mix two "
            "registrations. Run the period again once the new registration is Validated."
        )


def _add_batch(progress: dict, out: dict, binnings: dict[str, drift.Binning], log: jobs.JobLog) -> None:
    """Count one batch's columns in the reference's bins and add them to the period's."""
    for key, binning in binnings.items():
        role, column = key.split("/", 1)
        values = _columns_of(out, role, [column])[column]
        try:
            progress["counts"][key] = drift.merge_counts(
                [progress["counts"][key], drift.counts(binning, values)]
            )
        except ValueError as exc:
            raise MonitoringFailed(f"The {role[:-1]} column {column}: {exc}") from None
    for field in ("records", "rows", "skipped"):
        progress[field] += _count(out.get(field))
    for message in (out.get("errors") or [])[:5]:
        log(f"Skipped: {str(message)[:500]}")
    for column, sums in (out.get("shap") or {}).items():
        if column in progress["shap"] and isinstance(sums, dict):
            total = sums.get("sum_abs")
            if isinstance(total, int | float) and not isinstance(total, bool) and math.isfinite(total):
                progress["shap"][column][0] += float(total)
                progress["shap"][column][1] += _count(sums.get("n"))


def _results(
    period: Period, progress: dict, binnings: dict[str, drift.Binning], log: jobs.JobLog
) -> tuple[dict, list[ColumnResult]]:
    monitor = period.monitor
    shap = (
        {column: (total / n if n else None) for column, (total, n) in progress["shap"].items()}
        if monitor.shap_reference and progress["batches"]
        else None
    )
    results: list[ColumnResult] = []
    compared: list[tuple[str, drift.ColumnResult]] = []
    for key, binning in binnings.items():
        role, column = key.split("/", 1)
        result = drift.column_result(
            column,
            binning,
            monitor.reference[role][column]["counts"],
            progress["counts"][key],
            minimum_rows=monitor.minimum_rows,
            thresholds=monitor.thresholds,
        )
        compared.append((role, result))
        results.append(
            ColumnResult(
                period=period,
                role=ColumnResult.Role.INPUT if role == "inputs" else ColumnResult.Role.OUTPUT,
                column=column,
                binning=binning.to_json(),
                reference_counts=result.reference_counts,
                period_counts=result.period_counts,
                psi=result.psi,
                status=result.status,
                mean_abs_shap=(shap or {}).get(column) if role == "inputs" else None,
            )
        )
        shown = "insufficient" if result.psi is None else f"PSI {result.psi:.4f} {result.status}"
        log(f"{role[:-1].capitalize()} {column}: {shown}.")
    status = services.overall_status([result for _, result in compared])
    average = drift.average_psi([result for role, result in compared if role == "inputs"])
    log(
        f"{progress['records']} record(s), {progress['rows']} feature row(s), {progress['skipped']} skipped; "
        + (f"average PSI {average:.4f}; " if average is not None else "")
        + f"status {status}."
    )
    outcome = {
        "status": Period.Status.SUCCEEDED,
        "records": progress["records"],
        "rows": progress["rows"],
        "skipped": progress["skipped"],
        "average_psi": average,
        "drift_status": status,
        "shap": shap,
        "error_message": "",
        "progress": None,
        # Counted under this registration (re-checked after each batch), whichever was
        # current when the period was asked for.
        "registered_at": monitor.registered_at,
    }
    return outcome, results


def _async_executions(monitor: Monitor):
    return Execution.objects.filter(
        model=monitor.model, status=Execution.Status.SUCCEEDED, files_removed_at__isnull=True
    ).order_by("finished_at", "pk")


def _next_batch(period: Period, after: list | None) -> tuple[list[dict], list | None]:
    """The next ``MONITORING_BATCH_SIZE`` records after ``after`` ([time, pk] of the last one
    done): successful Sync calls the live version answered (raw request and answer), or
    Succeeded Async executions (their input and result paths). Returns the batch and where
    the next one starts."""
    monitor, size = period.monitor, settings.MONITORING_BATCH_SIZE
    if monitor.model.is_sync:
        rows = PredictionRecord.objects.filter(
            model=monitor.model,
            at__gte=period.start,
            at__lt=period.end,
            status_code=200,
            live=True,
            payload_kept=True,
        )
        field = "at"
    else:
        rows = (
            _async_executions(monitor)
            .filter(finished_at__gte=period.start, finished_at__lt=period.end)
            .exclude(output_file="")
        )
        field = "finished_at"
    if after is not None:
        moment = datetime.fromisoformat(after[0])
        rows = rows.filter(Q(**{f"{field}__gt": moment}) | Q(**{field: moment, "pk__gt": after[1]}))
    rows = rows.order_by(field, "pk")
    if monitor.model.is_sync:
        found = list(rows.values_list("pk", "at", "input", "output")[:size])
        batch = [{"input": given, "output": answered} for _, _, given, answered in found]
        last = found[-1][:2] if found else None
    else:
        executions = list(rows.select_related("model")[:size])
        batch = [{"input": str(e.input_path), "output": str(e.output_path)} for e in executions]
        last = (executions[-1].pk, executions[-1].finished_at) if executions else None
    return batch, ([last[1].isoformat(), last[0]] if last else None)


# -------------------------------------------------------------------------- webhook


def notify(period: Period) -> str:
    """POST a JSON notice of a drifting period to the model's webhook, if it has one."""
    monitor = Period.objects.select_related("monitor__model__group").get(pk=period.pk).monitor
    if not monitor.webhook_url:
        return ""
    # A re-run of the period (asked for while this notice is retried) starts with a new
    # requested_at: this run's outcome must not be written over the re-run's.
    run_requested_at = period.requested_at
    this_run = Period.objects.filter(pk=period.pk, requested_at=run_requested_at)
    period.refresh_from_db()
    if period.requested_at != run_requested_at:
        return "skipped: the period was run again"
    model = monitor.model
    body = json.dumps(
        {
            "event": "monitoring.drift",
            "model": {"hash": model.hash, "name": model.name, "group": model.group.name},
            "period": {
                "id": period.pk,
                "kind": period.kind,
                "start": period.start.isoformat(),
                "end": period.end.isoformat(),
                "drift_status": period.drift_status,
                "average_psi": period.average_psi,
                "rows": period.rows,
            },
            "columns": [
                {"role": c.role, "column": c.column, "psi": c.psi, "status": c.status}
                for c in period.columns.all()
                if c.status in ("drift", "warning")
            ],
        }
    ).encode()
    try:
        secret = monitor.webhook_secret()
    except crypto.DecryptionError as exc:  # its key was dropped: better no notice than an unsigned one
        status = f"refused: the signing secret: {exc}"
    else:
        status = _deliver(monitor.webhook_url, body, secret)
    # The column is bounded (PostgreSQL refuses more; SQLite kept it): the log keeps it whole.
    limit = Period._meta.get_field("webhook_status").max_length
    if this_run.update(webhook_status=status if len(status) <= limit else status[: limit - 1] + "…"):
        period.append_log(f"{jobs.stamp()} Webhook {monitor.webhook_url}: {status}.\n")
    return status


def _deliver(url: str, body: bytes, secret: str | None) -> str:
    """Send the notice, again on connection errors and 5xx answers; the outcome in words."""
    for attempt in range(1, WEBHOOK_TRIES + 1):
        try:
            # Signed again on each try: the timestamp says when this one was sent.
            delivery = webhooks.post_json(
                url,
                body,
                secret=secret,
                timeout=settings.MONITORING_WEBHOOK_TIMEOUT,
                user_agent="Neomaril-monitoring",
            )
        except webhooks.Refused as exc:
            status = f"refused: {exc}"
            break
        except (OSError, http.client.HTTPException) as exc:
            status = f"failed: {exc}"
        else:
            if delivery.status < 300:
                status = f"delivered: HTTP {delivery.status}"
                break
            status = f"failed: HTTP {delivery.status}"
            if delivery.status < 400:
                status += " (redirects are not followed)"
            if delivery.status < 500:
                break
        if attempt < WEBHOOK_TRIES:
            time.sleep(attempt)
    signed = ", signed" if secret else ""
    return f"{status} ({attempt} attempt{'s' if attempt > 1 else ''}{signed})"[:300]


# ------------------------------------------------------------------------- recovery

# A period waits this long for its task before another is sent: periods are queued in
# bursts (every registration's closed period at midnight) that a few workers take a while
# to drain, and nobody is waiting for one by the minute; a shorter delay would mostly send
# duplicates. A validation has someone waiting for it: the shared delay.
PERIOD_REDISPATCH_AFTER = timedelta(minutes=30)


def _recovery(waiting: str, failed: str, queue: Callable[[Any], None], *, again: str, failed_as: str) -> dict:
    """`recover_stale`'s requeue and give_up for validations or periods (the same rules,
    their own states and words)."""

    def requeue(stale: jobs.StaleJob) -> bool:
        if not stale.rows.update(status=waiting, heartbeat_at=None):
            return False
        stale.job.append_log(f"{jobs.stamp()} {stale.reason} Re-queued.\n")
        queue(stale.job)
        return True

    def give_up(stale: jobs.StaleJob) -> bool:
        message = stale.reason + (
            f" It had already been retried once; {again}." if stale.out_of_attempts else ""
        )
        if not stale.rows.update(status=failed, finished_at=timezone.now(), error_message=message):
            return False
        stale.job.append_log(f"{jobs.stamp()} {failed_as}: {message}\n")
        return True

    return {"requeue": requeue, "give_up": give_up}


def _stop_leftovers(job: Monitor | Period) -> int:
    """Stop the stale run's processes (the pid of one, or 0). A validation's folder goes
    after (recover_stale): it is that run's alone (a re-run gets its own), a period's is
    reused by its re-run."""
    return orphans.kill_oneshots_in(job.sandbox_folder)


def recover_stale() -> int:
    """Validations and periods whose worker stopped: re-queued once, then failed."""
    stale_after = settings.MONITORING_STALE_SECONDS
    on_nodes = nodes.StaleJobs(HOST)

    def examine(job) -> tuple[str, bool]:
        verdict = on_nodes.examine(
            job,
            stale_after=stale_after,
            what="this",
            process="preprocess",
            stop_leftovers=_stop_leftovers,
        )
        if isinstance(job, Monitor):
            # On the shared disk: gone whichever node recovers the run (its processes are
            # only the original node's to stop), or another node's lost validation left
            # its scratch folder for good.
            _remove_validation_folder(job.sandbox_folder)
        return verdict

    return jobs.recover_stale(
        on_nodes.candidates(Monitor.objects.select_related("model")),
        stale_after=stale_after,
        examine=examine,
        **_recovery(
            Monitor.Status.UNVALIDATED,
            Monitor.Status.INVALIDATED,
            services.queue_validation,
            again="register again",
            failed_as="Invalidated",
        ),
    ) + jobs.recover_stale(
        on_nodes.candidates(Period.objects.select_related("monitor__model")),
        stale_after=stale_after,
        examine=examine,
        **_recovery(
            Period.Status.QUEUED,
            Period.Status.FAILED,
            services.queue_period,
            again="run it again",
            failed_as="Period failed",
        ),
    )


def redispatch_lost() -> int:
    """Validations and periods whose task never started (lost with a worker): enqueue another.

    A period's second task goes on the way the lost one would have (`Period.continuation`).
    """
    return jobs.redispatch_lost(
        Monitor.objects.select_related("model"),
        waiting=Monitor.Status.UNVALIDATED,
        send=services.send_validation,
    ) + jobs.redispatch_lost(
        Period.objects.select_related("monitor__model"),
        waiting=Period.Status.QUEUED,
        send=services.send_period,
        after=PERIOD_REDISPATCH_AFTER,
    )


def housekeeping() -> dict:
    """Scheduled every minute by django-q2: recovery, then the periods that have closed."""
    return jobs.run_steps(
        "monitoring housekeeping",
        {
            "recovered": recover_stale,
            "redispatched": redispatch_lost,
            "queued_periods": services.queue_due_periods,
        },
    )


def ensure_schedules(**kwargs) -> None:
    """post_migrate hook: make sure the monitoring schedule exists (idempotent)."""
    jobs.schedule_every_minute("neomaril-monitoring-housekeeping", "monitors.tasks.housekeeping")
