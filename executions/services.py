"""Execution workflows: accept an input, hand out concurrency slots, find an execution.

Concurrency: an execution *holds a slot* while it is Running, or Requested with a task
already enqueued for it (`queued_at` set). `dispatch` gives each free slot to the group
holding the fewest, to its oldest waiting execution (skipping models at their own limit),
and enqueues one django-q2 task per slot, so a flood of submissions waits in the database
instead of filling the task queue ahead of builds. It runs after every submission,
after every finished execution and once a minute (housekeeping).
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections import Counter
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.utils import timezone
from django.utils.translation import ngettext
from django_q.tasks import async_task
from rest_framework.exceptions import NotFound

from executions.models import DispatchLock, Execution
from groups import jobs, storage
from groups.uploads import folder_bytes
from models_app.models import MLModel, max_execution_timeout

logger = logging.getLogger(__name__)

# A Requested execution whose task was enqueued this long ago and never started gets
# another (groups.jobs.redispatch_lost): the shared delay, as someone is waiting for the
# result; a task only waiting for a worker gets a duplicate, which its claim turns away.
REDISPATCH_AFTER = jobs.REDISPATCH_AFTER
# Execution numbers are shown to users and put in URLs; larger ids can't exist.
MAX_EXECUTION_NUMBER = 2**31 - 1


def effective_timeout(model: MLModel) -> int:
    """Seconds one execution of `model` may run: its own setting, else the default, capped."""
    wanted = model.execution_timeout or settings.EXECUTION_TIMEOUT
    return max(1, min(wanted, max_execution_timeout()))


def create_execution(
    model: MLModel, upload: UploadedFile, *, name: str, user=None, version: MLModel | None = None
) -> Execution:
    """Record a new execution of `model`, run by `version` (default: the model's first
    row), and move its (already streamed) input into its folder.

    `name` is the sanitised file name. The input is linked, not copied, when it is a
    temporary upload file on the same filesystem. The task is enqueued only after commit.
    """
    folder: Path | None = None
    try:
        with transaction.atomic():
            # The model row is the per-model counter's lock on PostgreSQL; SQLite's
            # IMMEDIATE transactions already serialise writers. The unique constraint
            # on (model, number) stays as the last line of defence.
            status = (
                MLModel.objects.select_for_update()
                .filter(pk=model.pk)
                .values_list("status", flat=True)
                .first()
            )
            # Checked again under the lock: the model may have been deleted while its input
            # streamed in (the caller's check came before the body), and the 202 would
            # point at an execution nobody could follow.
            if status in (None, MLModel.Status.DELETED):
                raise NotFound(f"No model '{model.hash}'.")
            last = model.executions.aggregate(last=Max("number"))["last"] or 0
            execution = Execution.objects.create(
                model=model,
                version=version if version is not None and version.pk != model.pk else None,
                number=last + 1,
                input_file=name,
                input_size=upload.size or 0,
                requested_by=user if user is not None and user.is_authenticated else None,
            )
            execution.model = model
            folder = execution.folder
            if folder.exists():
                # Left by a database restored from an older backup: no row owns it.
                shutil.rmtree(folder)
            folder.mkdir(parents=True, mode=0o700)
            _place_input(upload, folder / name)
            storage.take(model.group, folder_bytes(folder))
            transaction.on_commit(dispatch_quietly)
    except BaseException:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return execution


def _place_input(upload: UploadedFile, destination: Path) -> None:
    temporary = getattr(upload, "temporary_file_path", None)
    if temporary is not None:
        upload.file.flush()
        try:
            # Same filesystem: free, whatever the size. A link, not a rename: the temporary
            # file still deletes its own name when it is closed or collected. Renamed away,
            # one collected without being closed failed to (an "Exception ignored" in the log).
            os.link(temporary(), destination)
            os.chmod(destination, 0o600)
            return
        except OSError as exc:
            if exc.errno != errno.EXDEV:
                raise
    upload.seek(0)
    with open(destination, "xb") as out:
        for chunk in upload.chunks():
            out.write(chunk)
    os.chmod(destination, 0o600)


def refuse_deleting_a_busy_version(sender, version: MLModel, **kwargs) -> str | None:
    """models_app.services.deleting_version: a version with executions waiting or running
    stays until they end (they were accepted on the run URL while it was live; deleting it
    would stop them)."""
    busy = Execution.objects.filter(
        version=version, status__in=[Execution.Status.REQUESTED, Execution.Status.RUNNING]
    ).count()
    if not busy:
        return None
    return ngettext(
        "Version %(number)s has %(count)s execution waiting or running: delete it once it has ended.",
        "Version %(number)s has %(count)s executions waiting or running: delete it once they have ended.",
        busy,
    ) % {"number": version.version, "count": busy}


def get_execution(model: MLModel, number: int) -> Execution:
    """Execution `number` of `model` (already authorised), or 404."""
    execution = None
    if 0 < number <= MAX_EXECUTION_NUMBER:
        execution = Execution.objects.filter(model=model, number=number).first()
    if execution is None:
        raise NotFound(f"Model '{model.hash}' has no execution {number}.")
    execution.model = model
    return execution


def _take_lock() -> None:
    if DispatchLock.objects.select_for_update().filter(pk=1).first() is None:
        DispatchLock.objects.get_or_create(pk=1)  # the row is missing after a flush (tests)
        DispatchLock.objects.select_for_update().get(pk=1)


def slots_in_use() -> dict[int, int]:
    """model id -> executions holding a concurrency slot."""
    holding = Execution.objects.filter(
        Q(status=Execution.Status.RUNNING) | Q(status=Execution.Status.REQUESTED, queued_at__isnull=False)
    )
    return dict(holding.values("model_id").annotate(n=Count("pk")).values_list("model_id", "n"))


def group_slot_limit() -> int:
    """The slots one group's executions may hold at once (`EXECUTION_CONCURRENCY_PER_GROUP`)."""
    return settings.EXECUTION_CONCURRENCY_PER_GROUP or max(1, settings.EXECUTION_CONCURRENCY_TOTAL - 1)


def dispatch() -> list[int]:
    """Give free concurrency slots to waiting executions, fairly between groups; enqueue
    their tasks.

    Each free slot goes to the group holding the fewest slots among those with an
    execution waiting (on a model under its own limit), to that group's oldest; ties go to
    the oldest execution. First come, first served across groups let one member's flood
    of submissions hold every slot until all of it had run, while another group's one
    execution waited behind it. A group holds at most `group_slot_limit()` slots, so by
    default one is left for the next group's execution even when no other group waits: it
    would otherwise wait for one of this group's to end, up to its timeout. Returns the
    primary keys of the executions that got a slot.
    """
    per_model_limit = settings.EXECUTION_CONCURRENCY_PER_MODEL
    per_group_limit = group_slot_limit()
    chosen: list[int] = []
    with transaction.atomic():
        _take_lock()
        in_use = slots_in_use()
        free = settings.EXECUTION_CONCURRENCY_TOTAL - sum(in_use.values())
        if free <= 0:
            return chosen
        waiting = Execution.objects.filter(status=Execution.Status.REQUESTED, queued_at__isnull=True)
        # Each Async model's oldest waiting execution, in one statement: a seek per model in
        # the index of a model's waiting executions by age (bench/dispatch.py). Grouping the
        # waiting executions passed over all of them (34 ms for a flood of 100,000); ordered
        # by the primary key alone, PostgreSQL walked it, filtering (0.9 s).
        in_index_order = ("model_id", "status", "queued_at", "pk")
        oldest = waiting.filter(model_id=OuterRef("pk")).order_by(*in_index_order).values("pk")[:1]
        heads = (
            MLModel.objects.filter(line=None, operation=MLModel.Operation.ASYNC)
            .order_by()
            .annotate(first=Subquery(oldest))
            .values_list("pk", "group_id", "first")
        )
        head_of, group_of = {}, {}
        for model_id, group_id, first in heads:
            if first is not None:
                head_of[model_id], group_of[model_id] = first, group_id
        group_of.update(MLModel.objects.filter(pk__in=in_use).values_list("pk", "group_id"))
        group_use: Counter[int] = Counter()
        for model_id, n in in_use.items():
            group_use[group_of[model_id]] += n
        while free > 0:
            candidates = [
                (group_use[group_of[model_id]], pk, model_id)
                for model_id, pk in head_of.items()
                if pk is not None
                and in_use.get(model_id, 0) < per_model_limit
                and group_use[group_of[model_id]] < per_group_limit
            ]
            if not candidates:
                break
            _fewest, pk, model_id = min(candidates)
            chosen.append(pk)
            in_use[model_id] = in_use.get(model_id, 0) + 1
            group_use[group_of[model_id]] += 1
            free -= 1
            head_of[model_id] = (
                waiting.filter(model_id=model_id, pk__gt=pk)
                .order_by(*in_index_order)
                .values_list("pk", flat=True)
                .first()
            )
        if chosen:
            Execution.objects.filter(pk__in=chosen).update(queued_at=timezone.now())
            transaction.on_commit(lambda: _enqueue(chosen))
    return chosen


def dispatch_quietly() -> None:
    """`dispatch`, for callers that must not fail because of it (the minute's housekeeping retries)."""
    try:
        dispatch()
    except Exception:
        logger.exception("could not hand out execution slots; housekeeping will retry")


def redispatch_lost() -> int:
    """Enqueue another task for executions holding a slot whose task never started."""
    return jobs.redispatch_lost(
        Execution.objects.select_related("model"),
        waiting=Execution.Status.REQUESTED,
        send=send,
        after=REDISPATCH_AFTER,
    )


def _enqueue(pks: list[int]) -> None:
    chosen = (
        Execution.objects.filter(pk__in=pks)
        .select_related("model")
        .only("number", "queued_at", "model__hash")
    )
    for execution in chosen.order_by("pk"):
        # Keeps its slot either way; a task the broker refused goes at the next housekeeping.
        jobs.send_or_leave_to_housekeeping(execution, send)


def send(execution: Execution) -> None:
    """Enqueue the task that runs `execution` (named for django-q2's admin pages)."""
    async_task(
        "executions.tasks.run_execution",
        execution.pk,
        task_name=f"execution-{execution.model.hash}-{execution.number}",
    )
