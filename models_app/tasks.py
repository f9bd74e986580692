"""Background work of models (django-q2 tasks): builds and housekeeping.

Tasks take ids, reload what they need, and claim their work with a conditional
UPDATE so a task delivered twice does nothing the second time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone, translation

from groups import jobs, storage
from groups import services as group_services
from groups.uploads import folder_bytes
from models_app import environments, interpreters, sandboxes
from models_app.models import MLModel, ModelBuild
from models_app.runtime import oneshot
from models_app.services import go_live_if_newest, lock_line, queue_build, record, send_build
from models_app.serving import aio
from monitoring.tasks import purge_old_records, purge_records_of

logger = logging.getLogger(__name__)

# A running build whose heartbeat is older than this lost its worker.
STALE_BUILD_SECONDS = 90
# Where the Async smoke test's result is kept, in the model's folder.
SMOKE_FOLDER = "smoke"


class BuildFailed(jobs.JobFailed):
    """A reason to fail the build, already phrased for the user."""


class Stopwatch:
    """The seconds each step of a job took, told as one line of its log.

    Upload → Deployed is a chain of small waits (the queue, the interpreter lookup, the
    environment, the model's load, its first call); this line says which one grew.
    """

    def __init__(self) -> None:
        self.steps: list[tuple[str, float, dict[str, float]]] = []

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[dict[str, float]]:
        """Time the block; it may fill the yielded dict with the parts of the step it knows."""
        parts: dict[str, float] = {}
        started = time.monotonic()
        try:
            yield parts
        finally:
            self.add(name, time.monotonic() - started, parts)

    def add(self, name: str, seconds: float, parts: dict[str, float] | None = None) -> None:
        self.steps.append((name, max(0.0, seconds), dict(parts or {})))

    def __str__(self) -> str:
        def told(name: str, seconds: float) -> str:
            return f"{name} {seconds:.2f} s"

        return ", ".join(
            told(name, seconds) + (f" ({', '.join(told(*part) for part in parts.items())})" if parts else "")
            for name, seconds, parts in self.steps
        )


def build_model(build_id: int) -> str:
    """Build the model's environment, smoke-test it and deploy it."""
    if jobs.must_wait_for_share(ModelBuild, build_id):
        return jobs.DEFERRED_OUTCOME
    if not ModelBuild.claim(build_id, waiting=ModelBuild.Status.QUEUED):
        return "already handled"
    build = ModelBuild.objects.select_related("model").get(pk=build_id)
    model = build.model
    if not MLModel.objects.filter(pk=model.pk, status=MLModel.Status.READY).update(
        status=MLModel.Status.BUILDING,
        status_message=f"Build {build.number} running.",
        updated_at=timezone.now(),
    ):
        ModelBuild.objects.filter(pk=build_id).update(
            status=ModelBuild.Status.CANCELLED, finished_at=timezone.now()
        )
        return "model no longer waiting for a build"
    model.refresh_from_db()
    timings = Stopwatch()
    # From the upload (or restart) to this worker taking the build: the queue's pick-up.
    timings.add("queue", (build.started_at - build.created_at).total_seconds())

    with jobs.JobLog(build) as log:
        result = log.outcome_of(
            "build",
            lambda: {
                "ok": True,
                "message": "Deployed.",
                "deployed_build": build.number,
                **_build(model, log, timings),
            },
            failed=lambda reason: {"ok": False, "message": reason},
            succeeded=lambda _done: "Build succeeded: model deployed.",
        )
    # The log is complete before the status says the build is over.
    if not _finish(model, build, **result):
        return "outcome discarded: the build was recovered meanwhile"
    return "deployed" if result["ok"] else "failed"


def _log_timings(log: jobs.JobLog, build: ModelBuild, timings: Stopwatch) -> None:
    log(f"Timings: {timings}.")
    logger.info("build %s of %s: %s", build.number, build.model.hash, timings)


class EnvironmentUnavailable(Exception):
    """No environment for this job: the interpreter is missing or the install failed."""


def prepare_environment(
    python_version: str,
    requirements: list[str],
    log: Callable[[str], None],
    timings: Stopwatch | None = None,
) -> tuple[Path, interpreters.Interpreter]:
    """The job's environment (built, or reused): for a build and for a training run alike."""
    timings = timings or Stopwatch()
    try:
        with timings.step("interpreter"):
            found = interpreters.discover_interpreters(settings.PYTHON_SEARCH_PATHS)
            with translation.override("en"):  # a refusal goes to the job's log, which every reader shares
                interpreter = interpreters.find_interpreter(python_version, found)
    except interpreters.InterpreterNotFound as exc:
        raise EnvironmentUnavailable(str(exc)) from None
    log(f"Python {interpreter.version} ({interpreter.path}); {len(requirements)} requirement(s).")
    try:
        with timings.step("environment"):
            env_path = environments.ensure_environment(
                interpreter=interpreter,
                requirements=requirements,
                envs_dir=settings.ENVS_DIR,
                log=log,
                timeout=settings.ENV_BUILD_TIMEOUT,
                uv_cache_dir=Path(settings.UV_CACHE_DIR) if settings.UV_CACHE_DIR else None,
                allow_options=settings.ALLOW_REQUIREMENT_OPTIONS,
                allow_source_builds=settings.ALLOW_SOURCE_BUILDS,
            )
    except environments.EnvironmentBuildError as exc:
        raise EnvironmentUnavailable(f"Could not install the requirements: {exc}") from None
    log(f"Environment ready: {env_path.name[:12]}.")
    return env_path, interpreter


def _build(model: MLModel, log: jobs.JobLog, timings: Stopwatch) -> dict:
    """What the model row takes from a build that passed; the steps' timings are logged
    whatever the outcome."""
    try:
        built = _build_steps(model, log, timings)
    except Exception:
        # Deleted meanwhile, its folder went from under the build: say that, not what broke.
        if _deleted(model):
            raise BuildFailed(DELETED_WHILE_BUILDING) from None
        raise
    finally:
        _log_timings(log, log.job, timings)
    if _deleted(model):  # every step passed, but there is no model left to deploy
        raise BuildFailed(DELETED_WHILE_BUILDING)
    return built


DELETED_WHILE_BUILDING = "The model was deleted while it was being built: nothing was deployed."


def _deleted(model: MLModel) -> bool:
    # After minutes of building, on a connection a PostgreSQL restart may have ended.
    return jobs.reconnecting(MLModel.objects.filter(pk=model.pk, status=MLModel.Status.DELETED).exists)


def _build_steps(model: MLModel, log: jobs.JobLog, timings: Stopwatch) -> dict:
    try:
        env_path, interpreter = prepare_environment(model.python_version, model.requirements, log, timings)
    except EnvironmentUnavailable as exc:
        raise BuildFailed(str(exc)) from None
    warm = None
    if model.is_sync and settings.WARM_ON_DEPLOY:
        with timings.step("warm-up") as parts:
            warm = _warm_runners(model, log.job, env_path, log)
            # What the host saw of it: the sandbox's start, the model's load, its first call.
            parts.update((warm or {}).get("timings") or {})
    if warm is not None:
        smoke_result = warm["result"]
    else:
        with timings.step("smoke test"):
            smoke_result = _smoke_test(model, environments.env_python(env_path), log)
    return {
        "env_fingerprint": env_path.name,
        "python_full_version": interpreter.version,
        "smoke_result": _kept_answer(smoke_result, log),
    }


def _kept_answer(answer, log: jobs.JobLog):
    """The smoke test's answer as the model row keeps it (the docs' example answer,
    monitoring's sample output): not one past the text-file limit, which every load of
    the row would carry (an answer may be as large as a runner's frame, 256 MB)."""
    size = len(json.dumps(answer).encode())
    if size <= settings.MAX_TEXT_FILE_BYTES:
        return answer
    log(
        f"The smoke test's answer is {size} bytes, over the {settings.MAX_TEXT_FILE_BYTES // 1024} KB "
        "kept as the model's example answer: the model's docs show no example answer."
    )
    return None


def _warm_runners(model: MLModel, build: ModelBuild, env_path: Path, log: jobs.JobLog) -> dict | None:
    """The Sync smoke test, run by this node's model host in what become the model's runners.

    The host starts the build's runners and calls each with the schema example; they stay
    up, so the model is warm when it is announced Deployed. None when that did not happen
    (no model host on this node, or it could not warm the model): the smoke test then
    runs on its own as a one-shot process, which also gives the verdict on a model that
    fails, and the runners start on the first call.
    """
    log(
        f"Smoke test: starting {model.min_replicas} runner(s) in this node's model host and calling "
        f"{model.model_reference}(<schema example>, base_path) in each."
    )
    request = {"op": "warm", "model": model.hash, "build": build.number, "env": env_path.name}
    try:
        answer = aio.host_call(
            request, timeout=settings.COLD_START_TIMEOUT + settings.SMOKE_TEST_TIMEOUT + 10
        )
    except aio.ServingError as exc:
        logger.warning("build %s of %s not warmed: %s", build.number, model.hash, exc.message)
        log(f"Not warmed: {exc.message} The runners will start on the model's first call.")
        return None
    for line in str(answer.get("output") or "").splitlines():
        log(f"[model] {line}")
    if answer.get("code") == "load_timeout":
        # A one-shot smoke test could pass on its longer timeout, and then every call
        # would wait for a load that never ends in time: Deployed, never answering.
        raise BuildFailed(
            f"{answer.get('error')} Every call would wait for the model to load and fail: make its "
            "import (loading the model file included) faster, or ask an admin to raise "
            "NEOMARIL_COLD_START_TIMEOUT."
        )
    if not answer.get("ok"):
        logger.warning("build %s of %s not warmed: %s", build.number, model.hash, answer.get("error"))
        log(f"The model host could not warm the model: {answer.get('error')}")
        log("Running the smoke test on its own; the runners will start on the model's first call.")
        return None
    log(f"Smoke test answer: {json.dumps(answer['result'])[:2000]}")
    log(f"Warm: runner process(es) {', '.join(map(str, answer['pids']))} serve the first call.")
    return answer


def _smoke_test(model: MLModel, python: Path, log: jobs.JobLog):
    source = model.folder / model.source_file
    common = {
        "source": str(source),
        "entrypoint": model.model_reference,
        "timeout": settings.SMOKE_TEST_TIMEOUT,
        "on_output_line": lambda line: log(f"[model] {line}"),
    }
    if model.is_sync:
        log(f"Smoke test: calling {model.model_reference}(<schema example>, base_path).")
        result = oneshot.run_oneshot(
            sandboxes.model_code(model, "build", python=python),
            kind="sync",
            args=[json.dumps(model.schema), str(model.folder)],
            **common,
        )
        _raise_for(result, log)
        log(f"Smoke test answer: {json.dumps(result.result)[:2000]}")
        return result.result
    if not model.sample_file:
        log(
            f"Smoke test: importing {model.source_file} and finding {model.model_reference} (no sample input given)."
        )
        result = oneshot.run_oneshot(
            sandboxes.model_code(model, "build", python=python), kind="check", args=[], **common
        )
        _raise_for(result, log)
        return None
    with tempfile.TemporaryDirectory(prefix="smoke-", dir=settings.UPLOAD_TMP_DIR) as data_path:
        shutil.copyfile(model.folder / model.sample_file, Path(data_path) / model.sample_file)
        log(f"Smoke test: calling {model.model_reference}(data_path, model_path) with {model.sample_file}.")
        result = oneshot.run_oneshot(
            sandboxes.model_code(
                model,
                "build",
                python=python,
                extra_env={"inputFileName": model.sample_file},
                writable=Path(data_path),
            ),
            kind="async",
            args=[data_path, str(model.folder)],
            **common,
        )
        _raise_for(result, log)
        try:  # the rule executions apply: a build that passes, runs
            output = jobs.check_output(result.result, Path(data_path), model.sample_file)
            kept = _keep_smoke_output(model, output, Path(data_path).resolve())
        except (jobs.BadOutput, jobs.NotKept) as exc:
            raise BuildFailed(str(exc)) from None
        log(
            f"Smoke test wrote {output.name} ({kept.stat().st_size} bytes), kept as {SMOKE_FOLDER}/{kept.name}."
        )
        return {"input_file": model.sample_file, "output_file": f"{SMOKE_FOLDER}/{kept.name}"}


def _keep_smoke_output(model: MLModel, output: Path, data_path: Path) -> Path:
    """Copy the smoke test's result into the model's folder (monitoring reads it as the sample answer).

    The sandbox wrote it: it is copied without following links, never moved.
    """
    folder = model.folder / SMOKE_FOLDER
    # A rebuild's output replaces the last one; both count in the group's storage, which a
    # deletion of the model takes them off again.
    storage.remove_folders(model.group_id, [folder])
    folder.mkdir()
    target = folder / output.name
    jobs.copy_regular_file(output, target, data_path)
    storage.add(model.group_id, folder_bytes(folder))
    return target


def _raise_for(result: oneshot.RunResult, log: jobs.JobLog) -> None:
    if result.ok:
        return
    if result.traceback:
        log("Traceback from the model:\n" + result.traceback)
    if result.timed_out:
        raise BuildFailed(f"The smoke test timed out after {settings.SMOKE_TEST_TIMEOUT} s.")
    raise BuildFailed(f"The smoke test failed ({result.phase}): {result.error}")


def _finish(model: MLModel, build: ModelBuild, *, ok: bool, message: str, **fields) -> bool:
    """Record the outcome, unless recovery took the build away from this run meanwhile."""
    now = timezone.now()
    with transaction.atomic():
        lock_line(model)  # before the build's and the version's rows, as every writer does
        if not build.settle(ModelBuild.Status.SUCCEEDED if ok else ModelBuild.Status.FAILED):
            return False
        # Only a model still Building takes the outcome: it may have been disabled
        # or deleted while the build ran.
        updated = MLModel.objects.filter(pk=model.pk, status=MLModel.Status.BUILDING).update(
            status=MLModel.Status.DEPLOYED if ok else MLModel.Status.FAILED,
            status_message=message[:2000],
            deployed_at=now if ok else model.deployed_at,
            updated_at=now,
            **fields,
        )
        if updated:  # a model disabled or deleted meanwhile did not take this outcome
            record(model, build.requested_by, "deployed" if ok else "build_failed", message[:500])
        # A new version's first deployment is an update: it takes over the run URL in
        # this transaction, so no call finds the model without a deployed version.
        if ok and updated and model.deployed_at is None:
            go_live_if_newest(model)
    return True


def recover_stale_builds() -> int:
    """Builds whose worker died: re-queue once (as a new build), then fail the model with a message."""
    return jobs.recover_stale(
        ModelBuild.objects.select_related("model"),
        stale_after=STALE_BUILD_SECONDS,
        examine=lambda build: ("The worker running this build stopped.", True),
        requeue=_requeue_stale_build,
        give_up=_fail_stale_build,
    )


def _end_stale_build(stale: jobs.StaleJob) -> bool:
    """The stale build ends Failed either way: a build run again is a new build."""
    if not stale.rows.update(status=ModelBuild.Status.FAILED, finished_at=timezone.now()):
        return False
    stale.job.append_log(f"{jobs.stamp()} {stale.reason}\n")
    return True


def _requeue_stale_build(stale: jobs.StaleJob) -> bool:
    if not _end_stale_build(stale):
        return False
    model = stale.job.model
    if MLModel.objects.filter(pk=model.pk, status=MLModel.Status.BUILDING).update(
        status=MLModel.Status.READY,
        status_message="Build re-queued: its worker stopped.",
        updated_at=timezone.now(),
    ):
        record(model, None, "build_requeued", "worker stopped during the build")
        queue_build(model, None, recovered=True)
    return True


def _fail_stale_build(stale: jobs.StaleJob) -> bool:
    if not _end_stale_build(stale):
        return False
    model = stale.job.model
    MLModel.objects.filter(pk=model.pk, status=MLModel.Status.BUILDING).update(
        status=MLModel.Status.FAILED,
        status_message="The build was interrupted twice (its worker stopped). Restart the model to try again.",
        updated_at=timezone.now(),
    )
    record(model, None, "build_failed", "worker stopped during the build")
    return True


def redispatch_lost_builds() -> int:
    """Queued builds whose task never started (lost with a worker): enqueue another.

    The shared delay (groups.jobs.REDISPATCH_AFTER): someone is waiting for the model. A
    build that was only waiting behind busy workers gets a second task, which finds it
    claimed and does nothing.
    """
    return jobs.redispatch_lost(
        ModelBuild.objects.select_related("model"), waiting=ModelBuild.Status.QUEUED, send=send_build
    )


def housekeeping() -> dict:
    """Scheduled every minute by django-q2: build recovery, retention of recorded predictions,
    the tasks of every kind of job deferred for its group's share of the workers, and what
    each group's files take (groups.storage).

    Each step runs even when an earlier one failed (its error is logged and reported).
    """
    return jobs.run_steps(
        "models housekeeping",
        {
            "recovered_builds": recover_stale_builds,
            "redispatched_builds": redispatch_lost_builds,
            "sent_deferred_jobs": jobs.send_deferred,
            "purged_predictions": purge_predictions,
            "revoked_login_tokens": group_services.revoke_idle_login_tokens,
            "removed_smoke_folders": remove_stale_smoke_folders,
            "measured_group_storage": storage.measure_stale,
        },
    )


def remove_stale_smoke_folders() -> int:
    """Async smoke tests' folders (a copy of the sample input) left by a build whose worker
    was killed: none older than the task timeout can belong to a live build, on any node."""
    cutoff = time.time() - settings.Q_CLUSTER["timeout"] - 600
    removed = 0
    for folder in Path(settings.UPLOAD_TMP_DIR).glob("smoke-*"):
        with contextlib.suppress(OSError):
            if folder.is_dir() and not folder.is_symlink() and folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder)
                removed += 1
    return removed


def purge_predictions() -> int:
    """Recorded calls past their retention, and every call of a deleted model.

    A web process may still have had calls of a model in its buffer when the model was
    deleted (they are written up to half a second later): those go too.
    """
    return purge_old_records() + purge_records_of(MLModel.objects.filter(status=MLModel.Status.DELETED))


def learn_interpreters(**kwargs) -> None:
    """post_spawn hook of django-q2's workers: probe this host's interpreters as the worker
    starts, so that its first build does not wait for it (≈ 0.35 s here; later lookups reuse
    the probes, interpreters.discover_interpreters)."""
    try:
        interpreters.discover_interpreters(settings.PYTHON_SEARCH_PATHS)
    except Exception:  # never stop a worker from starting; the build will look again
        logger.exception("could not list this host's Python interpreters")


def ensure_schedules(**kwargs) -> None:
    """post_migrate hook: make sure the housekeeping schedule exists (idempotent)."""
    jobs.schedule_every_minute("neomaril-housekeeping", "models_app.tasks.housekeeping")
