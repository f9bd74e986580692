"""Background work of executions (django-q2 tasks): running one, recovery and retention.

`run_execution` claims its execution with a conditional UPDATE (Requested with a slot →
Running), so a task delivered twice does nothing the second time. The user's code runs
in the model's own interpreter through the runner (models_app.runtime.oneshot), never
in this process.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError
from django.db.models import F
from django.utils import timezone

from executions import services
from executions.models import Execution
from groups import jobs, nodes, storage
from models_app import sandboxes
from models_app.models import MLModel
from models_app.runtime import oneshot, orphans

logger = logging.getLogger(__name__)

HOST = socket.gethostname()
# The user's output kept in the database; past it only the last lines are kept.
MAX_LOG_CHARS = 2 * 1024 * 1024
TAIL_LINES = 200
# Housekeeping removes at most this many executions' files per run (it runs every minute):
# their folders, then an UPDATE per MARK_CHUNK of them (a 15k backlog goes in 8 minutes).
PURGE_BATCH = 2000
# Rows one UPDATE marks: each row is rewritten whole, log included (SQLite), so a statement
# of 2000 rows with 10 KB logs held the write lock 73 ms; 500 is under 20 ms.
MARK_CHUNK = 500
# Django writes uploads to temporary files that a killed web process leaves behind.
STALE_UPLOAD_AGE = timedelta(days=1)


class ExecutionFailed(jobs.JobFailed):
    """A reason to fail the execution, already phrased for the user."""


def run_execution(execution_id: int) -> str:
    """Run one execution: the model's entrypoint on its input, in the model's environment."""
    claimed = Execution.claim(
        execution_id,
        waiting=Execution.Status.REQUESTED,
        where={"queued_at__isnull": False},  # holds a concurrency slot
        attempts=F("attempts") + 1,
        host=HOST,
    )
    if not claimed:
        return "already handled"
    execution = Execution.objects.select_related("model", "model__group", "version").get(pk=execution_id)
    with jobs.JobLog(execution, max_chars=MAX_LOG_CHARS, tail_lines=TAIL_LINES) as log:
        outcome = log.outcome_of(
            "execution",
            lambda: _execute(execution, log),
            failed=lambda reason: {"status": Execution.Status.FAILED, "error_message": reason},
            succeeded=lambda done: (
                f"Execution succeeded: {done['output_file']} ({done['output_size']} bytes)."
            ),
        )
    # The log is complete before the status says the execution is over; only the run that
    # still owns the execution records its outcome (recovery may have re-queued it).
    finished = execution.settle(**outcome)
    if finished:
        # Its input and result are all anyone reads again (downloads, monitoring): what else
        # the model wrote in data_path took the group's disk until retention. Only once this
        # attempt's outcome stands: an execution recovered meanwhile runs again in the folder.
        output = outcome.get("output_file")
        _keep_only(execution.folder, {execution.input_path, *([execution.folder / output] if output else [])})
        storage.add(execution.model.group_id, outcome.get("output_size", 0))
    services.dispatch_quietly()  # the freed slot goes to the next waiting execution
    return outcome["status"] if finished else "outcome discarded: the execution was recovered meanwhile"


def _execute(execution: Execution, log: jobs.JobLog) -> dict:
    model = execution.runs_on
    if model.status == MLModel.Status.DELETED:
        raise ExecutionFailed("The model was deleted before this execution could run.")
    if model.status == MLModel.Status.DISABLED:
        raise ExecutionFailed(
            "The model was disabled before this execution could run; restart it and submit again."
        )
    try:
        python = model.python
    except ValueError:
        python = None
    if python is None or not python.exists():
        raise ExecutionFailed("The model's environment is missing; restart the model to rebuild it.")
    folder = execution.folder
    if not execution.input_path.is_file():
        raise ExecutionFailed("The input file is no longer in the execution's folder.")
    # What it writes adds to its group's storage: past the quota it does not start, and
    # it writes at most what the quota still allows (a queue of them took a group 48
    # times past its quota, each up to its own disk limit).
    group = execution.model.group
    used_up = storage.used_up_message(
        group, "this execution was not run; submit it again once space is freed"
    )
    if used_up:
        raise ExecutionFailed(used_up)
    timeout = services.effective_timeout(model)
    Execution.objects.filter(pk=execution.pk).update(timeout=timeout)
    log(
        f"Execution {execution.number}, attempt {execution.attempts} on {HOST}: calling "
        f"{model.model_reference}(data_path, model_path) with {execution.input_file} "
        f"({execution.input_size} bytes); timeout {timeout} s."
    )
    log.flush()  # at once: if the worker dies right away, the log still says this attempt began
    result = oneshot.run_oneshot(
        sandboxes.model_code(
            model,
            "execution",
            python=python,
            extra_env={"inputFileName": execution.input_file},
            writable=folder,
            protected=[execution.input_path],  # kept as the record of what the model was given
            storage_room=storage.room(group),
        ),
        source=str(model.folder / model.source_file),
        entrypoint=model.model_reference,
        kind="async",
        args=[str(folder), str(model.folder)],
        timeout=timeout,
        on_output_line=lambda line: log(f"[model] {line}"),
        stop_when=lambda: _deleted_meanwhile(model),
    )
    log(f"The model process ended after {result.duration:.1f} s.")
    if result.disk_full:  # its output must not keep the disk full; failed, never re-run
        _reset_folder(execution)
        log("What the model wrote was removed (the input is kept).")
    if not result.ok:
        if result.traceback:
            log("Traceback from the model:\n" + result.traceback.rstrip())
        # Deleted meanwhile: its files went from under the run, whatever it then reported.
        raise ExecutionFailed(_deleted_meanwhile(model) or _failure_message(result, timeout))
    output = check_output(result.result, folder, execution.input_file)
    return {
        "status": Execution.Status.SUCCEEDED,
        "output_file": str(output.relative_to(folder.resolve())),
        "output_size": output.stat().st_size,
    }


def _deleted_meanwhile(model: MLModel) -> str | None:
    """Why a running execution stops early: its model (or version) was deleted. Its slot
    and the secrets in its environment are not kept for a model nobody can call."""
    try:
        deleted = jobs.reconnecting(MLModel.objects.filter(pk=model.pk, status=MLModel.Status.DELETED).exists)
    except DatabaseError:  # the database is away: the run goes on, the next check asks again
        logger.warning("could not check whether the model of %s was deleted", model, exc_info=True)
        return None
    if deleted:
        return "The model was deleted while this execution ran; it was stopped."
    return None


def _failure_message(result: oneshot.RunResult, timeout: int) -> str:
    if result.timed_out:
        return f"The execution timed out after {timeout} s and was stopped."
    error = (result.error or "unknown error").strip()
    if result.phase == "crash":
        first, _, _rest = error.partition("\n")  # the last output is in the log already
        return first[:1].upper() + first[1:] + "." + (f" {result.limit}" if result.limit else "")
    if result.phase in ("limit", "sandbox", "stopped"):
        return error
    if result.phase == "import":
        return f"Could not load the model's code: {error}"
    if result.phase == "result":
        return f"Bad return value: {error}; it must be the path of a file written inside data_path."
    if result.phase == "call":
        return f"The entrypoint raised {error}"
    return f"The model process failed ({result.phase}): {error}"


def check_output(value: object, folder: Path, input_name: str) -> Path:
    """The output file named by the entrypoint's return value, or ExecutionFailed saying why.

    The rule is `groups.jobs.check_output`, the one the build's smoke test applies too.
    """
    try:
        return jobs.check_output(value, folder, input_name)
    except jobs.BadOutput as exc:
        raise ExecutionFailed(str(exc)) from None


# ------------------------------------------------------------------------ recovery


def recover_stale_executions() -> int:
    """Running executions whose worker stopped: re-queue once, else fail with the reason.

    A model process dies with the worker that started it (bubblewrap's
    --die-with-parent, setpriv's --pdeathsig); one left running anyway is stopped first,
    so two runs never share the folder, but it can only be found on its own node. So an
    execution that ran on another node (`host`: the host name) is left to that node's
    recovery while a worker of it is running (django-q2's cluster status in Redis, which
    expires seconds after a cluster stops); once none is, the node was stopped or lost,
    its model processes died with its workers, and the execution is re-queued here. A
    node's executions are not lost with the node. When the broker can't say which nodes
    run a worker (the ORM broker, Redis unreachable), another node's execution is failed
    instead: it can't be checked from here.
    """
    stale_after = settings.EXECUTION_STALE_SECONDS
    on_nodes = nodes.StaleJobs(HOST)

    def examine(execution: Execution) -> tuple[str, bool]:
        reason, again = on_nodes.examine(
            execution,
            stale_after=stale_after,
            what="this execution",
            process="model",
            stop_leftovers=stop_orphan_runners,
        )
        return (reason if again else f"{reason} Submit the input again."), again

    recovered = jobs.recover_stale(
        on_nodes.candidates(Execution.objects.select_related("model")),
        stale_after=stale_after,
        examine=examine,
        requeue=_requeue_stale,
        give_up=_fail_stale,
    )
    if recovered:
        services.dispatch_quietly()
    return recovered


def _requeue_stale(stale: jobs.StaleJob) -> bool:
    execution = stale.job
    if not stale.rows.update(status=Execution.Status.REQUESTED, queued_at=None, heartbeat_at=None):
        return False
    # Before commit: no dispatcher can hand the execution to a worker meanwhile.
    _reset_folder(execution)
    execution.append_log(f"{jobs.stamp()} {stale.reason} Re-queued (attempt {execution.attempts + 1}).\n")
    return True


def _fail_stale(stale: jobs.StaleJob) -> bool:
    message = stale.reason
    if stale.out_of_attempts:
        message += (
            " It had already been re-run once after its worker stopped; giving up. Submit the input again."
        )
    if not stale.rows.update(
        status=Execution.Status.FAILED, finished_at=timezone.now(), error_message=message
    ):
        return False
    stale.job.append_log(f"{jobs.stamp()} Execution failed: {message}\n")
    return True


def stop_orphan_runners(execution: Execution) -> int:
    """Kill this node's runner processes working in the execution's folder; returns a pid or 0."""
    return orphans.kill_oneshots_in(execution.folder)


def _reset_folder(execution: Execution) -> None:
    """Remove what an interrupted run wrote, so the next one starts from the input alone."""
    _keep_only(execution.folder, {execution.input_path})


def _keep_only(folder: Path, kept: set[Path]) -> None:
    """Remove everything under `folder` but the files `kept` (and the folders holding them),
    following no link."""
    holding = {parent for path in kept for parent in path.parents}
    with contextlib.suppress(FileNotFoundError):
        for entry in folder.iterdir():
            if entry in kept and entry.is_file() and not entry.is_symlink():
                continue
            if entry.is_dir() and not entry.is_symlink():
                if entry in holding:
                    _keep_only(entry, kept)
                else:
                    shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


# ----------------------------------------------------------------------- retention


def purge_expired_files() -> int:
    """Remove the folders (input, result, anything else) of executions past retention.

    The rows stay, with their log and figures; downloads then answer 404 saying why.
    """
    now = timezone.now()
    cutoff = now - timedelta(days=settings.EXECUTION_RETENTION_DAYS)
    expired = Execution.objects.filter(
        status__in=[Execution.Status.SUCCEEDED, Execution.Status.FAILED],
        finished_at__lt=cutoff,
        files_removed_at__isnull=True,
    )
    return _remove_files(expired.order_by("finished_at"), now)


def purge_deleted_models() -> int:
    """Remove the files of finished executions of deleted models (they are no longer reachable)."""
    now = timezone.now()
    gone = Execution.objects.filter(
        model__status=MLModel.Status.DELETED,
        status__in=[Execution.Status.SUCCEEDED, Execution.Status.FAILED],
        files_removed_at__isnull=True,
    )
    return _remove_files(gone.order_by("pk"), now)


def _remove_files(executions, now) -> int:
    """Remove the folders of the first PURGE_BATCH of these executions, then mark them, an
    UPDATE … WHERE id IN (…) per MARK_CHUNK rows: a few queries, not one per execution. A
    worker stopped in between leaves rows unmarked, whose (already empty) folders the next
    pass removes again."""
    # Only what the folder's path needs: not the rows' logs, nor their models' rows.
    batch = list(
        executions.select_related("model").only("number", "model__hash", "model__group_id")[:PURGE_BATCH]
    )
    by_group: dict[int, list[Path]] = {}
    for execution in batch:
        by_group.setdefault(execution.model.group_id, []).append(execution.folder)
    for group_id, folders in by_group.items():  # one UPDATE of the group's figure each
        storage.remove_folders(group_id, folders)
    for execution in batch:
        with contextlib.suppress(OSError):  # the model's folder, once its last execution is gone
            execution.folder.parent.rmdir()
    pks = [execution.pk for execution in batch]
    for start in range(0, len(pks), MARK_CHUNK):
        Execution.objects.filter(pk__in=pks[start : start + MARK_CHUNK]).update(files_removed_at=now)
    return len(batch)


def fail_waiting_of_deleted_models() -> int:
    """Requested executions of deleted models will never run: say so now."""
    now = timezone.now()
    return Execution.objects.filter(
        model__status=MLModel.Status.DELETED, status=Execution.Status.REQUESTED
    ).update(
        status=Execution.Status.FAILED,
        finished_at=now,
        error_message="The model was deleted before this execution could run.",
    )


def remove_stale_upload_files() -> int:
    """Temporary upload files older than a day: left by a web process killed mid-upload."""
    cutoff = time.time() - STALE_UPLOAD_AGE.total_seconds()
    removed = 0
    for path in Path(settings.FILE_UPLOAD_TEMP_DIR).glob("tmp*.upload*"):
        with contextlib.suppress(OSError):
            if path.is_file() and path.stat().st_mtime < cutoff:
                path.unlink()
                removed += 1
    return removed


def housekeeping() -> dict:
    """Scheduled every minute by django-q2: recovery, slots, retention.

    Each step runs even when an earlier one failed (its error is logged and reported).
    """
    return jobs.run_steps(
        "executions housekeeping",
        {
            "recovered_executions": recover_stale_executions,
            "failed_for_deleted_models": fail_waiting_of_deleted_models,
            "redispatched": services.redispatch_lost,
            "dispatched": lambda: len(services.dispatch()),
            "expired_files_removed": purge_expired_files,
            "deleted_models_files_removed": purge_deleted_models,
            "stale_uploads_removed": remove_stale_upload_files,
        },
    )


def ensure_schedules(**kwargs) -> None:
    """post_migrate hook: make sure the executions' housekeeping schedule exists (idempotent)."""
    jobs.schedule_every_minute("neomaril-executions-housekeeping", "executions.tasks.housekeeping")
