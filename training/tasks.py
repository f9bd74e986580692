"""Background work of training runs (django-q2 tasks): running one, recovery.

`run_training` claims its run with a conditional UPDATE (Requested → Running), so a task
delivered twice does nothing the second time. It builds (or reuses) the run's
content-addressed environment, then the training harness calls the user's function (or
loads an External run's artifacts) in that environment, in the sandbox
(models_app.runtime), never in this process. What the sandbox wrote is checked and
copied out of its reach before the run is Succeeded.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import shutil
import socket
from pathlib import Path

from django.conf import settings
from django.db.models import F
from django.utils import timezone

from groups import jobs, nodes, storage
from groups.storable_json import storable_problem
from models_app import environments, interpreters, sandboxes
from models_app import tasks as model_tasks
from models_app.runtime import oneshot, orphans
from training import services
from training.models import (
    EXTRAS_FOLDER,
    FROZEN_REQUIREMENTS,
    JSON_ARTIFACTS,
    MODEL_ARTIFACT,
    TABLE_ARTIFACTS,
    TrainingRun,
)

HOST = socket.gethostname()
MAX_LOG_CHARS = 2 * 1024 * 1024
TAIL_LINES = 200
# What a run's summary may hold, at most: it comes from inside the sandbox.
MAX_SUMMARY_BYTES = 4 * 1024 * 1024
MAX_METRICS = 500
MAX_EXTRAS = 200


class TrainingFailed(jobs.JobFailed):
    """A reason to fail the run, already phrased for the user."""


def run_training(run_id: int) -> str:
    """Run one training: environment, the harness in the sandbox, the artifacts."""
    if jobs.must_wait_for_share(TrainingRun, run_id):
        return jobs.DEFERRED_OUTCOME
    claimed = TrainingRun.claim(
        run_id, waiting=TrainingRun.Status.REQUESTED, attempts=F("attempts") + 1, host=HOST
    )
    if not claimed:
        return "already handled"
    run = TrainingRun.objects.select_related("experiment", "experiment__group").get(pk=run_id)
    with jobs.JobLog(run, max_chars=MAX_LOG_CHARS, tail_lines=TAIL_LINES) as log:
        outcome = log.outcome_of(
            "training",
            lambda: _train(run, log),
            failed=lambda reason: {"status": TrainingRun.Status.FAILED, "error_message": reason},
            succeeded=lambda done: f"Training succeeded: {len(done['artifacts'])} artifact(s) kept.",
        )
    finished = run.settle(**outcome)
    if finished:
        # The run's outputs are in its artifacts now: their copies in the sandbox, and the
        # scratch files the training wrote beside its uploads, would take the group's disk
        # for good (nothing reads them again). Only once this attempt's outcome stands: a
        # run recovered meanwhile is running again in the same folder.
        _reset_work_folder(run)
        storage.add(run.experiment.group_id, sum(entry["size"] for entry in outcome.get("artifacts", [])))
    return outcome["status"] if finished else "outcome discarded: the run was recovered meanwhile"


def _train(run: TrainingRun, log: jobs.JobLog) -> dict:
    log(
        f"{run.training_type} run {run.number} of experiment '{run.experiment.name}', "
        f"attempt {run.attempts} on {HOST}."
    )
    log.flush()  # at once: if the worker dies right away, the log still says this attempt began
    # What it writes (its artifacts) adds to its group's storage: past the quota it does not
    # start, and it writes at most what the quota still allows.
    group = run.experiment.group
    used_up = storage.used_up_message(group, "this run was not started; start it again once space is freed")
    if used_up:
        raise TrainingFailed(used_up)
    env_path, interpreter = _environment(run, log)
    python = environments.env_python(env_path)
    try:
        frozen = environments.freeze(env_path)
    except environments.EnvironmentBuildError as exc:
        raise TrainingFailed(str(exc)) from None
    TrainingRun.objects.filter(pk=run.pk).update(
        env_fingerprint=env_path.name,
        python_full_version=interpreter.version,
        frozen_requirements=frozen,
        timeout=settings.TRAINING_TIMEOUT,
    )
    run.env_fingerprint, run.frozen_requirements = env_path.name, frozen

    _reset_outputs(run)
    spec = _harness_spec(run)
    if run.training_type != TrainingRun.TrainingType.EXTERNAL:
        log(
            f"Calling {run.training_reference}() from {run.source_file} on {run.train_file}; "
            f"timeout {settings.TRAINING_TIMEOUT} s."
        )
    else:
        log("Loading the External run's artifacts in its environment to check and describe them.")
    result = oneshot.run_oneshot(
        sandboxes.training_code(
            python=python,
            folder=run.sandbox_folder,
            home=run.work_folder,
            env={**services.decrypted_env(run), "inputFileName": run.train_file},
            network=run.allow_network,
            storage_room=storage.room(group),
        ),
        source=str(run.work_folder / run.source_file) if run.source_file else "",
        entrypoint=run.training_reference,
        kind="train",
        args=[json.dumps(spec)],
        timeout=settings.TRAINING_TIMEOUT,
        on_output_line=lambda line: log(f"[train] {line}"),
    )
    log(f"The training process ended after {result.duration:.1f} s.")
    if result.disk_full:  # what it wrote must not keep the disk full; failed, never re-run
        _reset_work_folder(run)
        log("What the training wrote was removed (the uploads are kept).")
    if not result.ok:
        if result.traceback:
            log("Traceback:\n" + result.traceback.rstrip())
        raise TrainingFailed(_failure_message(result))
    summary = _checked_summary(result.result)
    for warning in summary.get("warnings", []):
        log(f"Warning: {warning}")
    extras = summary["extras"]
    if run.training_type == TrainingRun.TrainingType.EXTERNAL:
        # An External run's extra files (plots, notes) are artifacts it brought along;
        # a Custom run's are code beside its script.
        extras = [*extras, *(name for name in run.extra_files if name not in extras)]
    artifacts = _collect_artifacts(run, extras, frozen)
    for entry in artifacts:
        log(f"Kept {entry['name']} ({entry['size']} bytes).")
    return {
        "status": TrainingRun.Status.SUCCEEDED,
        "metrics": summary["metrics"],
        "params": summary["params"],
        "summary": {k: v for k, v in summary.items() if k not in ("metrics", "params")},
        "artifacts": artifacts,
        "error_message": "",
    }


def _environment(run: TrainingRun, log: jobs.JobLog) -> tuple[Path, interpreters.Interpreter]:
    try:
        return model_tasks.prepare_environment(run.python_version, run.requirements, log)
    except model_tasks.EnvironmentUnavailable as exc:
        raise TrainingFailed(str(exc)) from None


def _harness_spec(run: TrainingRun) -> dict:
    spec = {
        # AutoML runs the platform's search script exactly as a Custom run runs the user's.
        "mode": "external" if run.training_type == TrainingRun.TrainingType.EXTERNAL else "custom",
        "base_path": str(run.work_folder),
        "data_file": run.train_file,
        "out_dir": str(run.out_folder),
        "model_type": run.experiment.model_type,
    }
    if spec["mode"] == "external":
        spec["inputs"] = {
            **{role: str(run.work_folder / name) if name else None for role, name in run.inputs.items()},
            "metrics": run.metrics or {},
            "params": (run.params or {}).get("logged"),
        }
        spec["inputs"].setdefault("y_train", None)
        spec["inputs"].setdefault("model_output", None)
    return spec


def _failure_message(result: oneshot.RunResult) -> str:
    if result.timed_out:
        return f"The training timed out after {settings.TRAINING_TIMEOUT} s and was stopped."
    error = (result.error or "unknown error").strip()
    if result.phase == "crash":
        first, _, _rest = error.partition("\n")
        return first[:1].upper() + first[1:] + "." + (f" {result.limit}" if result.limit else "")
    if result.phase in ("limit", "sandbox"):
        return error
    if result.phase == "call":  # the harness names the function and its exception
        return error[:1].upper() + error[1:]
    if result.phase in ("data", "result", "save"):
        # The harness phrases these itself; the exception class it used adds nothing.
        error = re.sub(r"^[A-Za-z]*Error: ", "", error)
    return {
        "import": "Could not load the training code: ",
        "data": "Could not read the training data: ",
        "result": "Bad return value: ",
        "save": "Could not save the artifacts: ",
    }.get(result.phase or "", f"The training process failed ({result.phase}): ") + error


# ------------------------------------------------------------------ the sandbox's output


def _checked_summary(value: object) -> dict:
    """The harness's answer, checked: it comes from a process that ran user code."""
    if not isinstance(value, dict):
        raise TrainingFailed("The training process answered without a summary.")
    if len(json.dumps(value)) > MAX_SUMMARY_BYTES:
        raise TrainingFailed("The training summary is too large (metrics and params over 4 MB).")
    problem = _unstorable(value)
    if problem is not None:
        raise TrainingFailed(f"The training's metrics and params can't be stored: {problem}")
    metrics = value.get("metrics")
    if not isinstance(metrics, dict) or len(metrics) > MAX_METRICS:
        raise TrainingFailed(f"metrics must be a dict of at most {MAX_METRICS} numbers.")
    for name, number in metrics.items():
        if not isinstance(name, str) or not _is_metric(name, number):
            raise TrainingFailed(f"The metric {name!r} is not a number.")
    extras = value.get("extras") or []
    if (
        not isinstance(extras, list)
        or len(extras) > MAX_EXTRAS
        or not all(isinstance(e, str) for e in extras)
    ):
        raise TrainingFailed(f"extra must list at most {MAX_EXTRAS} file names.")
    warnings = value.get("warnings") or []
    return {
        "metrics": metrics,
        "params": value.get("params") if isinstance(value.get("params"), dict) else {},
        "extras": extras,
        "shapes": value.get("shapes") if isinstance(value.get("shapes"), dict) else {},
        "model_saved_with": str(value.get("model_saved_with") or ""),
        "contract": str(value.get("contract") or ""),
        "warnings": [str(w)[:500] for w in warnings[:50]] if isinstance(warnings, list) else [],
    }


def _unstorable(value: dict) -> str | None:
    """Why the summary can't be stored and shown, or None. What no JSON column takes
    (NaN; NUL on PostgreSQL) left the run Running; a lone surrogate broke every page and
    answer showing the run. Each part is checked on its own, as the form checked the
    params an External run logged (the summary's nesting adds no depth to count)."""
    params = value.get("params") if isinstance(value.get("params"), dict) else {}
    others = [part for key, part in value.items() if key != "params"]
    for part in (list(value), *others, list(params), *params.values()):
        problem = storable_problem(part)
        if problem is not None:
            return problem
    return None


def _is_metric(name: str, number: object) -> bool:
    if number is None:
        return True
    if isinstance(number, bool) or not isinstance(number, int | float):
        return False
    try:
        return math.isfinite(number)
    except OverflowError:  # an integer with hundreds of digits: no float holds it
        raise TrainingFailed(
            f"The metric {name!r} is an integer too large to keep: a metric must fit a 64-bit float."
        ) from None


def _collect_artifacts(run: TrainingRun, extras: list[str], frozen: str) -> list[dict]:
    """Copy what the run produced out of the sandbox's reach; returns [{name, size}].

    Every file is opened without following symlinks and must be a regular file: a
    training function that replaced an output with a link to the platform's files gets
    a failed run, not a copy of them.
    """
    destination = run.artifacts_folder
    shutil.rmtree(destination, ignore_errors=True)
    destination.mkdir(parents=True, mode=0o700)
    kept: list[dict] = []
    required = [MODEL_ARTIFACT, "X_train.parquet", "model_output.parquet", *JSON_ARTIFACTS]
    for name in [MODEL_ARTIFACT, *TABLE_ARTIFACTS, *JSON_ARTIFACTS]:
        source = run.out_folder / name
        if not source.exists() and not source.is_symlink():
            if name in required:
                raise TrainingFailed(f"The training process did not save {name}.")
            continue
        kept.append({"name": name, "size": _copy_regular_file(source, destination / name, run.out_folder)})
    (destination / FROZEN_REQUIREMENTS).write_text(frozen, encoding="utf-8")
    kept.append({"name": FROZEN_REQUIREMENTS, "size": len(frozen.encode())})
    work = run.work_folder.resolve()
    for extra in extras:
        try:
            checked = jobs.check_output(extra, run.work_folder, "\0")  # no input to protect here
        except jobs.BadOutput as exc:
            raise TrainingFailed(f"Extra file: {exc}".replace("data_path", "base_path")) from None
        relative = checked.relative_to(work)
        target = destination / EXTRAS_FOLDER / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        size = _copy_regular_file(run.work_folder / relative, target, run.work_folder)
        kept.append({"name": f"{EXTRAS_FOLDER}/{relative.as_posix()}", "size": size})
    return kept


def _copy_regular_file(source: Path, target: Path, root: Path) -> int:
    try:
        return jobs.copy_regular_file(source, target, root)
    except jobs.NotKept as exc:
        raise TrainingFailed(str(exc)) from None


def _reset_outputs(run: TrainingRun) -> None:
    """A fresh output folder for this attempt (an earlier one may have left files)."""
    shutil.rmtree(run.out_folder, ignore_errors=True)
    shutil.rmtree(run.artifacts_folder, ignore_errors=True)
    run.out_folder.mkdir(parents=True, mode=0o700)


# ------------------------------------------------------------------------ recovery


def recover_stale_runs() -> int:
    """Running runs whose worker stopped: re-queue once, else fail with the reason."""
    stale_after = settings.TRAINING_STALE_SECONDS
    on_nodes = nodes.StaleJobs(HOST)

    def examine(run: TrainingRun) -> tuple[str, bool]:
        return on_nodes.examine(
            run,
            stale_after=stale_after,
            what="this training",
            process="training",
            stop_leftovers=lambda job: orphans.kill_oneshots_in(job.sandbox_folder),
        )

    return jobs.recover_stale(
        on_nodes.candidates(TrainingRun.objects.select_related("experiment")),
        stale_after=stale_after,
        examine=examine,
        requeue=_requeue_stale,
        give_up=_fail_stale,
    )


def _requeue_stale(stale: jobs.StaleJob) -> bool:
    run = stale.job
    if not stale.rows.update(status=TrainingRun.Status.REQUESTED, heartbeat_at=None):
        return False
    _reset_work_folder(run)  # before commit: no worker can take the run meanwhile
    run.append_log(f"{jobs.stamp()} {stale.reason} Re-queued (attempt {run.attempts + 1}).\n")
    services.queue_run(run)
    return True


def _uploaded_names(run: TrainingRun) -> set[str]:
    return {
        name
        for name in (
            run.train_file,
            run.source_file,
            run.requirements_file,
            *run.extra_files,
            *run.inputs.values(),
        )
        if name
    }


def _reset_work_folder(run: TrainingRun) -> None:
    """Remove what the run wrote, its uploads kept: after it ends, or so that the next
    attempt of an interrupted one starts from the uploads alone."""
    kept = _uploaded_names(run)
    with contextlib.suppress(FileNotFoundError):
        for entry in run.work_folder.iterdir():
            if entry.name in kept and entry.is_file() and not entry.is_symlink():
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
    shutil.rmtree(run.out_folder, ignore_errors=True)


def _fail_stale(stale: jobs.StaleJob) -> bool:
    message = stale.reason
    if stale.out_of_attempts:
        message += " It had already been re-run once after its worker stopped; giving up. Start a new run."
    if not stale.rows.update(
        status=TrainingRun.Status.FAILED, finished_at=timezone.now(), error_message=message
    ):
        return False
    stale.job.append_log(f"{jobs.stamp()} Training failed: {message}\n")
    return True


def redispatch_lost_runs() -> int:
    """Requested runs whose task never started (lost with a worker): enqueue another.

    The shared delay (groups.jobs.REDISPATCH_AFTER): the analyst waits for the run's
    metrics. A run only waiting behind busy workers gets a second task, which finds it
    claimed and does nothing.
    """
    return jobs.redispatch_lost(
        TrainingRun.objects.select_related("experiment"),
        waiting=TrainingRun.Status.REQUESTED,
        send=services.send_run,
    )


def housekeeping() -> dict:
    """Scheduled every minute by django-q2: recovery of runs whose worker stopped, or
    whose task was lost before it started."""
    return jobs.run_steps(
        "training housekeeping",
        {"recovered_runs": recover_stale_runs, "redispatched_runs": redispatch_lost_runs},
    )


def ensure_schedules(**kwargs) -> None:
    """post_migrate hook: make sure the training housekeeping schedule exists (idempotent)."""
    jobs.schedule_every_minute("neomaril-training-housekeeping", "training.tasks.housekeeping")
