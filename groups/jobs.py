"""One mechanism for background jobs: builds, Async executions, and the training runs and
monitoring periods to come.

Each kind of job keeps its own table (a subclass of the abstract `Job`) but shares what
makes a job durable, so a fix lands once for all of them:

- a claim: one conditional `UPDATE ... WHERE status=<waiting>`, so a task delivered twice
  runs its job once; and `settle`, which records an outcome only while this run still
  owns the job (recovery may have taken it over);
- started/finished times, a heartbeat, and a log appended without reading it back;
- `JobLog`, the log writer: batched, flushed by a thread that also keeps the heartbeat
  fresh, and that survives a locked database (a heartbeat that stops while the job runs
  would let recovery take over a job that is still running); its `outcome_of` runs the
  job's work and turns what it raised into the failed outcome (`JobFailed`: the user's
  reason; anything else: the platform's bug, with its traceback), so no job is left
  Running by an exception;
- `recover_stale`: what "stale" means and what happens then (re-queued once, then Failed
  with the reason), the kind saying only how to re-queue and how to fail;
- `Job.queue` and `redispatch_lost`: a waiting job remembers when its task was enqueued,
  and one whose task never started (lost with a worker, or never reached the broker) is
  sent again, the kind saying only how to send its task;
- a group's share of the workers (`must_wait_for_share`, `send_deferred`): while other
  groups' jobs wait for a worker, one group's jobs take at most its share of them;
- `run_steps`, the housekeeping runner: one failing step does not stop the others;
- `check_output`, the Async contract's output rule, shared by the build's smoke test and
  by executions, so a model that passes its build does not fail every execution;
- `copy_regular_file`, how a file the sandbox wrote is copied out of its reach (the
  smoke test's output, a training run's artifacts);
- the metrics every kind shares: a settled job's duration, recoveries (groups.metrics).

Nothing here imports an app: `models_app` and `executions` build on it.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import threading
import time
import traceback
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, ClassVar, TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError, connection, models, transaction
from django.db.models import Count, F, Q, QuerySet, Value
from django.db.models.functions import Concat
from django.utils import timezone
from django.utils.module_loading import import_string

from groups import metrics, nodes

logger = logging.getLogger(__name__)

# The status of a job being worked on; every kind's Status has RUNNING = "Running".
RUNNING = "Running"
# A job is run at most this often: once, and once more after its worker stopped.
MAX_ATTEMPTS = 2
# A running job's log writer beats at least this often, even when the job is silent.
HEARTBEAT_SECONDS = 5
# The last write of a log (after the job's work, by the job's own thread) is tried this
# often, this many seconds apart, on top of the database's own busy timeout.
FINAL_FLUSH_TRIES = 3
FINAL_FLUSH_PAUSE = 1.0
# A waiting job whose task was enqueued this long ago and has not started lost it (unless
# its kind says otherwise): worth a second task, since a duplicate is only one claim that
# fails. Long enough that a task behind a few busy workers is rarely sent twice.
REDISPATCH_AFTER = timedelta(minutes=10)
# A waiting job whose task is in no queue at all (groups.nodes.tasks_held: Redis's and
# every live cluster's own are empty) lost it with a node: sent again once this has passed
# since it was enqueued (long enough for a worker that took it to have claimed the job).
LOST_WITH_A_NODE_AFTER = timedelta(minutes=1)
# The queued_at of a waiting job whose task could not be enqueued (the broker did not
# answer): earlier than any cutoff, so the next housekeeping pass sends it
# (redispatch_lost), a minute later at most, rather than one delay after.
NOT_SENT = datetime(2000, 1, 1, tzinfo=UTC)
# Past django-q2's own re-delivery on the ORM broker (`retry` after it handed the task
# out), so that a task it re-delivers is not sent a third time; the margin covers its poll
# and the housekeeping minute.
ORM_REDELIVERY_MARGIN = timedelta(minutes=2)
# Of a failed job's reason, the characters kept on its row.
MAX_ERROR_CHARS = 10_000
# The queued_at of a job whose task found its group running its share of the workers'
# jobs while other groups' jobs waited: no task of it is in any queue, and `send_deferred`
# sends one once the group is under its share again (never `redispatch_lost`).
DEFERRED = datetime(2000, 1, 2, tzinfo=UTC)
# What the task of a deferred job returns (django-q2 keeps it as the task's result).
DEFERRED_OUTCOME = "deferred: its group runs its share of the workers"

Outcome = TypeVar("Outcome")


class JobFailed(Exception):
    """Why a job failed, already phrased for its user: the message is the job's error."""


def drop_a_broken_connection() -> None:
    """After a database error outside a transaction: close this thread's connection if the
    server ended it (a PostgreSQL restart), so that the next query opens a new one instead
    of failing the same way. A usable one (SQLite's busy "database is locked") is kept."""
    if not connection.in_atomic_block:
        connection.close_if_unusable_or_obsolete()


def reconnecting(read: Callable[[], Outcome]) -> Outcome:
    """`read()`, a query outside a transaction, tried once more on a new connection when
    its connection was ended by the server: a running job's periodic checks must not crash
    it for a PostgreSQL restart it would otherwise not notice."""
    try:
        return read()
    except (OperationalError, InterfaceError):
        if connection.in_atomic_block:
            raise
        drop_a_broken_connection()
        return read()


def stamp() -> str:
    """The timestamp that opens every log line."""
    return timezone.now().strftime("%Y-%m-%d %H:%M:%S")


class Job(models.Model):
    """Times, heartbeat and log of one background job.

    A subclass adds `status` (its `Status` choices include RUNNING = "Running") and says
    which attempt a row is: `attempt`, and `ATTEMPT_FIELD` when one row is run again
    (an execution) rather than replaced by a new row (a build).
    """

    # The field that counts runs of one row; None when every run has a row of its own.
    ATTEMPT_FIELD: ClassVar[str | None] = None
    # How a failure is recorded when the outcome itself can't be stored: its status, and
    # the field for its message (None: the kind has none, its log says it).
    FAILED_STATUS: ClassVar[str] = "Failed"
    ERROR_FIELD: ClassVar[str | None] = "error_message"

    # When a task was last enqueued for it; empty while none is (an execution waiting for
    # a concurrency slot). A waiting job keeps it, so a lost task can be noticed.
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    log = models.TextField(blank=True, default="")

    class Meta:
        abstract = True

    @property
    def attempt(self) -> int:
        """Which run of the work this is: 1, then 2 once recovery re-queued it."""
        raise NotImplementedError

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.finished_at:
            return self.finished_at - self.started_at
        return None

    @classmethod
    def claim(cls, pk: int, *, waiting: str, where: dict[str, Any] | None = None, **changes: Any) -> bool:
        """`waiting` → Running in one conditional UPDATE; True only for the caller that got it."""
        now = timezone.now()
        return bool(
            cls._default_manager.filter(pk=pk, status=waiting, **(where or {})).update(
                status=RUNNING, started_at=now, heartbeat_at=now, **changes
            )
        )

    def queue(self, send: Callable[[Job], object], **fields: Any) -> None:
        """Stamp `queued_at` (and `fields`), then `send(self)` (enqueue its task) on commit.

        Call it where the job becomes waiting, in the same transaction: a task enqueued
        before commit could find the row not yet waiting, and one that never reaches the
        broker (a broker down at commit) is sent again by `redispatch_lost`.
        """
        fields["queued_at"] = timezone.now()
        type(self)._default_manager.filter(pk=self.pk).update(**fields)
        for name, value in fields.items():
            setattr(self, name, value)
        transaction.on_commit(lambda: send_or_leave_to_housekeeping(self, send))

    def this_run(self) -> QuerySet:
        """This job's row while this run still owns it: Running, and the same attempt."""
        same_attempt = {self.ATTEMPT_FIELD: getattr(self, self.ATTEMPT_FIELD)} if self.ATTEMPT_FIELD else {}
        return type(self)._default_manager.filter(pk=self.pk, status=RUNNING, **same_attempt)

    def settle(self, status: str, **fields: Any) -> bool:
        """Record the outcome, unless recovery took the job away from this run meanwhile.

        Its duration goes to the metrics once the outcome is committed.
        """
        now = timezone.now()
        try:
            updated = self._settle_retrying(status=status, finished_at=now, **fields)
        except (OperationalError, InterfaceError):
            raise  # still locked or away after the retries: recovery re-queues the job, as after a crash
        except DatabaseError as exc:  # the outcome can't be stored (a value its column refuses)
            logger.exception("could not record the outcome of %s", self)
            status = self.FAILED_STATUS
            error = {self.ERROR_FIELD: f"Internal error: the outcome could not be saved: {exc}"[:10_000]}
            updated = self._settle_retrying(
                status=status, finished_at=now, **(error if self.ERROR_FIELD else {})
            )
        if not updated:
            return False
        if self.started_at is not None:
            seconds = (now - self.started_at).total_seconds()
            series = metrics.JOB_SECONDS.labels(metrics.job_kind(type(self)), status)
            transaction.on_commit(lambda: series.observe(seconds))
        transaction.on_commit(send_deferred_quietly)  # a worker is free: a deferred job may have it
        return True

    def _settle_retrying(self, **changes: Any) -> int:
        """The outcome's UPDATE, tried again while the database is locked: a job that did
        its work must not be run again for want of one write."""
        for tries_left in reversed(range(FINAL_FLUSH_TRIES)):
            try:
                with transaction.atomic():  # a refused write must not break an outer transaction
                    return self.this_run().update(**changes)
            except (OperationalError, InterfaceError):
                if not tries_left:
                    raise
                logger.warning("could not record the outcome of %s; trying again", self, exc_info=True)
                drop_a_broken_connection()
                time.sleep(FINAL_FLUSH_PAUSE)
        raise AssertionError("unreachable")

    def append_log(self, chunk: str, *, only_this_run: bool = False) -> bool:
        """Append in the database without reading the log back (one UPDATE); also a beat.

        `only_this_run`: only while this run owns the job (this_run); False when it no
        longer does.
        """
        rows = self.this_run() if only_this_run else type(self)._default_manager.filter(pk=self.pk)
        return bool(rows.update(log=Concat(F("log"), Value(chunk)), heartbeat_at=timezone.now()))

    def beat(self, *, only_this_run: bool = False) -> bool:
        """Say the worker running this job is alive (`only_this_run`: as append_log)."""
        rows = self.this_run() if only_this_run else type(self)._default_manager.filter(pk=self.pk)
        return bool(rows.update(heartbeat_at=timezone.now()))


class JobLog:
    """A job's timestamped log, written to its row in small batches by a thread of its own.

    Use it as a context manager and call it with each line. The thread flushes every
    `flush_every` seconds and, while the job is silent (uv compiling, a model thinking),
    still beats every `beat_every` seconds: a heartbeat that stops means the worker died.
    A write that fails (typically SQLite's "database is locked") keeps its lines for the
    next try and never stops the thread. With `max_chars`, the log keeps its start (up to
    `max_chars`), then a line saying how many were left out, then its last `tail_lines`
    lines, each cut to TAIL_LINE_CHARS: in the order they were written, whatever their
    lengths.
    """

    TAIL_LINE_CHARS = 4096

    def __init__(
        self,
        job: Job,
        *,
        max_chars: int | None = None,
        tail_lines: int = 200,
        flush_every: float = 1.0,
        beat_every: float = HEARTBEAT_SECONDS,
    ):
        self.job = job
        self.max_chars = max_chars
        self.flush_every = flush_every
        self.beat_every = beat_every
        self._pending: list[str] = []
        self._kept = 0
        self._capped = False  # past max_chars: every later line goes to the tail
        self._dropped = 0
        self._superseded = False
        self._tail: deque[str] = deque(maxlen=tail_lines)
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"{job._meta.model_name}-log-{job.pk}", daemon=True
        )

    def __enter__(self) -> JobLog:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        if self._capped:
            with self._lock:
                left_out = self._dropped - len(self._tail)
                self._pending.append(
                    f"[... {left_out} line(s) of output not kept: the log is limited to "
                    f"{_size_text(self.max_chars)}; the last {len(self._tail)} follow ...]\n"
                )
                self._pending.extend(self._tail)
        for tries_left in reversed(range(FINAL_FLUSH_TRIES)):
            try:
                self.flush()
                return
            except (OperationalError, InterfaceError):  # locked (SQLite), or a server restart
                if not tries_left:
                    raise
                logger.warning("could not write the log of %s; trying again", self.job, exc_info=True)
                drop_a_broken_connection()
                time.sleep(FINAL_FLUSH_PAUSE)

    def __call__(self, line: str) -> None:
        text = f"{stamp()} {line.rstrip()}\n"
        with self._lock:
            if self.max_chars is not None and (self._capped or self._kept + len(text) > self.max_chars):
                self._capped = True
                self._dropped += 1
                if len(text) > self.TAIL_LINE_CHARS:
                    text = f"{text[: self.TAIL_LINE_CHARS]}[... {len(text) - self.TAIL_LINE_CHARS} more characters]\n"
                self._tail.append(text)
                return
            self._kept += len(text)
            self._pending.append(text)

    def outcome_of(
        self,
        job: str,
        work: Callable[[], Outcome],
        failed: Callable[[str], Outcome],
        succeeded: Callable[[Outcome], str] | None = None,
    ) -> Outcome:
        """What `work()` returned (told by `succeeded`'s line), or `failed(reason)` when it raised.

        `job` names the work in the log ("build", "execution"...). A JobFailed is the
        user's reason, logged as "Build failed: ..." and kept as it is. Anything else is
        the platform's own bug: its traceback goes to this log and the server's, and the
        reason names its type, so the job still ends instead of staying Running.
        """
        try:
            outcome = work()
        except JobFailed as exc:
            self(f"{job.capitalize()} failed: {exc}")
            return failed(str(exc)[:MAX_ERROR_CHARS])
        except Exception as exc:
            logger.exception("%s of %s crashed", job, self.job)
            self(f"Internal error while running the {job}:\n" + traceback.format_exc())
            return failed(f"Internal error: {type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS])
        if succeeded is not None:
            self(succeeded(outcome))
        return outcome

    def flush(self) -> None:
        """Write what is pending (or beat when nothing is); lines stay pending if it fails."""
        # One flush at a time (the thread's or the caller's), so chunks land in order.
        with self._flush_lock:
            with self._lock:
                chunk, self._pending = "".join(self._pending), []
            try:
                # A run that recovery superseded (its worker froze, then came back) writes
                # nothing more: not its lines into the next attempt's log, nor beats that
                # would hide that attempt's worker dying.
                if chunk:
                    owned = self.job.append_log(chunk, only_this_run=True)
                else:
                    owned = self.job.beat(only_this_run=True)
                if not owned and not self._superseded:
                    self._superseded = True
                    logger.warning(
                        "%s is no longer this run's (recovered after its worker froze, or replaced by a "
                        "newer run): this run's log is no longer kept",
                        self.job,
                    )
            except BaseException:
                if chunk:
                    with self._lock:
                        self._pending.insert(0, chunk)
                raise

    def _run(self) -> None:
        last_beat = time.monotonic()
        try:
            while not self._stop.wait(self.flush_every):
                if self._pending or time.monotonic() - last_beat > self.beat_every:
                    try:
                        self.flush()
                    except Exception:  # a locked database: try again at the next turn
                        logger.exception("could not write the log of %s", self.job)
                        drop_a_broken_connection()
                    else:
                        last_beat = time.monotonic()
        finally:
            connection.close()  # this thread's own connection


def _size_text(chars: int) -> str:
    for unit, size in (("MB", 1024 * 1024), ("KB", 1024)):
        if chars >= size:
            return f"{chars // size} {unit}"
    return f"{chars} characters"


@dataclass
class StaleJob:
    """A running job whose heartbeat stopped, as handed to its kind's recovery."""

    job: Job
    # The job's row while it is still stale and owned by the same run: update through it,
    # and a row that recovered meanwhile (or a heartbeat that came back) updates nothing.
    rows: QuerySet
    # Why it is stale, as `examine` phrased it.
    reason: str
    # Given up because it was already re-run once (not because it can't be re-run).
    out_of_attempts: bool = False


def recover_stale(
    jobs: QuerySet,
    *,
    stale_after: int,
    requeue: Callable[[StaleJob], bool],
    give_up: Callable[[StaleJob], bool],
    examine: Callable[[Job], tuple[str, bool]] | None = None,
) -> int:
    """Running jobs whose heartbeat is older than `stale_after` seconds lost their worker.

    Each is re-queued once, then failed with the reason. `examine(job)` (outside any
    transaction: it may stop processes) says why and whether the job may run again here;
    `requeue` and `give_up` run in a transaction, update through `StaleJob.rows` and
    return False when that updated nothing. Returns how many jobs were recovered.
    """
    cutoff = timezone.now() - timedelta(seconds=stale_after)
    is_stale = Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True)
    recovered = 0
    for job in jobs.filter(is_stale, status=RUNNING):
        if examine is None:
            reason, may_rerun = (
                f"The worker running this job stopped (no heartbeat for {stale_after} s).",
                True,
            )
        else:
            reason, may_rerun = examine(job)
        out_of_attempts = may_rerun and job.attempt >= MAX_ATTEMPTS
        stale = StaleJob(job, job.this_run().filter(is_stale), reason, out_of_attempts)
        again = may_rerun and not out_of_attempts
        with transaction.atomic():
            done = requeue(stale) if again else give_up(stale)
        if done:
            recovered += 1
            kind = metrics.job_kind(jobs.model)
            metrics.JOBS_RECOVERED.labels(kind, "requeued" if again else "failed").inc()
    return recovered


def lost_after(delay: timedelta) -> timedelta:
    """How long a waiting job's task may stay unstarted before it counts as lost.

    `delay` with Redis as the broker: a task it hands to a worker that dies is gone. The
    ORM broker hands an unacknowledged task out again `retry` seconds after it handed it
    out, so there a task is lost only once that re-delivery is due too.
    """
    if "orm" in settings.Q_CLUSTER:
        return max(delay, timedelta(seconds=settings.Q_CLUSTER["retry"]) + ORM_REDELIVERY_MARGIN)
    return delay


def redispatch_lost(
    jobs: QuerySet,
    *,
    waiting: str,
    send: Callable[[Job], object],
    after: timedelta = REDISPATCH_AFTER,
) -> int:
    """Send another task for each waiting job whose task was enqueued `lost_after(after)` ago.

    Its task was lost before it claimed the job: popped by a worker that died (Redis hands
    a task out once), or never enqueued (the broker was down when the job was committed).
    A task that was only waiting for a free worker gets a duplicate, which does nothing:
    the job's claim (`Job.claim`) lets one task run it. Each job is stamped again first,
    by a conditional UPDATE, so it is sent once per delay even by two housekeeping passes
    at once. Returns how many were sent.

    With Redis, a job waiting while no queue holds any task (groups.nodes.tasks_held) is
    sent again after LOST_WITH_A_NODE_AFTER instead: its task was taken by a node that
    stopped or was lost before starting it.
    """
    cutoff = timezone.now() - lost_after(after)
    if nodes.tasks_held() == 0:
        # Nothing is queued anywhere, so no task of a waiting job is merely behind others.
        cutoff = max(cutoff, timezone.now() - LOST_WITH_A_NODE_AFTER)
    kind = metrics.job_kind(jobs.model)
    sent = 0
    overdue = (
        jobs.filter(status=waiting, queued_at__lt=cutoff)
        .exclude(queued_at=DEFERRED)  # sent by send_deferred once its group may run it
        .defer("log")
        .order_by("queued_at", "pk")
    )
    for job in overdue:
        now = timezone.now()
        minutes = int((now - job.queued_at).total_seconds() // 60)
        # Said in the job's log (not as a heartbeat: the job is not running).
        if job.queued_at == NOT_SENT:
            why = "its task could not be enqueued before"
            line = f"{stamp()} Its task is enqueued now.\n"
        else:
            why = f"its task, enqueued {minutes} min ago, never started"
            line = (
                f"{stamp()} Its task, enqueued {minutes} min ago, has not started (lost with a worker, "
                "or still waiting for a free one): enqueued again.\n"
            )
        still_lost = type(job)._default_manager.filter(pk=job.pk, status=waiting, queued_at=job.queued_at)
        with transaction.atomic():
            if not still_lost.update(queued_at=now, log=Concat(F("log"), Value(line))):
                continue  # started, or sent again by another pass, meanwhile
            logger.warning("%s: %s; enqueuing another", job, why)
            job.queued_at = now
            transaction.on_commit(lambda job=job: send_or_leave_to_housekeeping(job, send))
            transaction.on_commit(metrics.JOBS_RECOVERED.labels(kind, "redispatched").inc)
        sent += 1
    return sent


def send_or_leave_to_housekeeping(job: Job, send: Callable[[Job], object]) -> bool:
    """`send(job)` for a job already committed as waiting; False when the broker failed.

    Run on commit, after the request's work is stored: a broker error raised from here
    answered an upload 500 and had its view remove the files of the model it had just
    committed. The job is marked NOT_SENT instead (its log says so), and the next
    housekeeping pass, within a minute, sends its task.
    """
    try:
        send(job)
        return True
    except Exception as exc:  # whatever the broker raises: the job is stored, its task is not
        refused = type(exc).__name__
        logger.warning(
            "%s: could not enqueue its task (%s: %s); housekeeping sends it", job, type(exc).__name__, exc
        )
    line = (
        f"{stamp()} Its task could not be enqueued (the task queue did not answer: {refused}); "
        "it is sent again within a minute.\n"
    )
    manager = type(job)._default_manager
    try:
        manager.filter(pk=job.pk, queued_at=job.queued_at).update(
            queued_at=NOT_SENT, log=Concat(F("log"), Value(line))
        )
        job.queued_at = NOT_SENT
    except DatabaseError:  # then it is due one delay after its enqueue, as a lost task
        logger.warning("%s: could not mark its task as not sent", job, exc_info=True)
    return False


# ------------------------------------------------------- a group's share of the workers
#
# django-q2 hands tasks out in the order they were enqueued, whoever's they are: one member
# uploading a handful of slow models (a smoke test may take 2 minutes) kept every worker,
# and another group's build waited 99 s instead of 1. A task whose group already runs its
# share while other groups' jobs wait, or all workers but one, therefore leaves its job
# waiting (DEFERRED) and frees the worker; the job is sent again when a job ends or at the
# housekeeping minute, once its group may run one more. The jobs running are counted over
# every node (the database's Running rows); the share and the limit from a node's workers.


@dataclass(frozen=True)
class Kind:
    model: type[Job]
    group: str  # the lookup from a job to its group's id
    waiting: str  # the status of a job waiting for a worker
    send: str | None  # the dotted path of its send function; None: never deferred


KINDS: list[Kind] = []


def register_kind(model: type[Job], *, group: str, waiting: str, send: str | None = None) -> None:
    """Count `model`'s jobs in their group's share; `send` (a dotted path): defer them too.
    Executions have none: they wait for their own concurrency slots, and count."""
    KINDS.append(Kind(model, group, waiting, send))


def group_share() -> int:
    """How many jobs one group runs at once while other groups' jobs wait for a worker."""
    return settings.WORKER_JOBS_PER_GROUP or max(1, settings.Q_CLUSTER["workers"] // 2)


def group_limit() -> int:
    """How many jobs one group runs at once while no other group's job waits: all but one
    of a node's workers, kept for the next group's job (it would otherwise wait for one of
    this group's jobs to end, up to a smoke test's 2 minutes or a training run's 13)."""
    return max(group_share(), settings.Q_CLUSTER["workers"] - 1)


def _why_wait(running: int, others_waiting: Callable[[], bool]) -> str | None:
    """Why a group running `running` jobs waits to run one more; None when it need not."""
    limit = group_limit()
    if running >= limit:
        kept = limit < settings.Q_CLUSTER["workers"]  # not when the share is set past it
        return f"this group's jobs already take {running} of them" + (
            ", and one is kept for other groups' jobs" if kept else ""
        )
    if running >= group_share() and others_waiting():
        return f"this group's jobs already take {running} of them while other groups' jobs wait"
    return None


def _running(group_id: int | None = None) -> Counter:
    """group id -> its jobs Running now, of every kind (of one group only, when given)."""
    counts: Counter = Counter()
    for kind in KINDS:
        rows = kind.model._default_manager.filter(status=RUNNING)
        if group_id is not None:
            rows = rows.filter(**{kind.group: group_id})
        for group, n in rows.order_by().values_list(kind.group).annotate(n=Count("pk")):
            counts[group] += n
    return counts


def _groups_waiting() -> set[int]:
    """The groups with a job whose task waits for a worker (not one deferred, nor an
    execution still waiting for a concurrency slot: queued_at empty)."""
    groups: set[int] = set()
    for kind in KINDS:
        rows = kind.model._default_manager.filter(status=kind.waiting, queued_at__isnull=False)
        groups.update(
            rows.exclude(queued_at=DEFERRED).order_by().values_list(kind.group, flat=True).distinct()
        )
    return groups


def _kind(model: type[Job]) -> Kind:
    return next(kind for kind in KINDS if kind.model is model)


def must_wait_for_share(model: type[Job], pk: int) -> bool:
    """For a task about to claim its job: True when the job's group already runs its
    share of jobs while another group's jobs wait for a worker, or all but one of a node's
    workers. The job is then left waiting, marked DEFERRED (its log says why), for
    `send_deferred` to send."""
    kind = _kind(model)
    manager = model._default_manager
    group_id = manager.filter(pk=pk, status=kind.waiting).values_list(kind.group, flat=True).first()
    if group_id is None:
        return False  # not waiting (any more): the claim says so
    why = _why_wait(_running(group_id)[group_id], lambda: bool(_groups_waiting() - {group_id}))
    if why is None:
        return False
    line = (
        f"{stamp()} Waiting for a free worker: {why} (NEOMARIL_WORKER_JOBS_PER_GROUP). "
        "It starts when one of them ends.\n"
    )
    manager.filter(pk=pk, status=kind.waiting).exclude(queued_at=DEFERRED).update(
        queued_at=DEFERRED, log=Concat(F("log"), Value(line))
    )
    logger.info("%s %s deferred: %s", model.__name__, pk, why)
    return True


def send_deferred() -> int:
    """Send the tasks of deferred jobs whose group may run one more again (`_why_wait`),
    oldest first per kind; returns how many were sent."""
    deferred = [
        (kind, pk, group)
        for kind in KINDS
        if kind.send
        for pk, group in kind.model._default_manager.filter(status=kind.waiting, queued_at=DEFERRED)
        .order_by("pk")
        .values_list("pk", kind.group)
    ]
    if not deferred:
        return 0
    running, waiting = _running(), _groups_waiting()
    sent = 0
    for kind, pk, group in deferred:
        if _why_wait(running[group], lambda group=group: bool(waiting - {group})):
            continue
        manager = kind.model._default_manager
        with transaction.atomic():
            if not manager.filter(pk=pk, status=kind.waiting, queued_at=DEFERRED).update(
                queued_at=timezone.now()
            ):
                continue  # sent by another pass meanwhile
            job = manager.get(pk=pk)
            send = import_string(kind.send)
            transaction.on_commit(lambda job=job, send=send: send_or_leave_to_housekeeping(job, send))
        running[group] += 1  # it is about to run
        sent += 1
    return sent


def send_deferred_quietly() -> None:
    """`send_deferred`, where a job ends: its failure must not fail the job's outcome
    (the housekeeping minute sends them as well)."""
    try:
        send_deferred()
    except Exception:
        logger.exception("could not send the deferred jobs; housekeeping will")


def run_steps(name: str, steps: dict[str, Callable[[], object]]) -> dict[str, object]:
    """Run every step of a housekeeping pass, even when an earlier one failed.

    The report maps each step to its result, or to "error: <type>: <message>" (the
    traceback goes to the log).
    """
    report: dict[str, object] = {}
    for step_name, step in steps.items():
        try:
            report[step_name] = step()
        except Exception as exc:
            logger.exception("%s: %s failed", name, step_name)
            report[step_name] = f"error: {type(exc).__name__}: {exc}"
    return report


def schedule_every_minute(name: str, func: str) -> None:
    """Create (or correct) the django-q2 schedule running ``func`` every minute; idempotent.

    For post_migrate hooks, so a fresh database gets its housekeeping without a step.
    """
    # django_q's models load with the app registry; this runs after it is ready.
    from django_q.models import Schedule

    Schedule.objects.update_or_create(
        name=name,
        defaults={"func": func, "schedule_type": Schedule.MINUTES, "minutes": 1, "repeats": -1},
    )


# ------------------------------------------------------------------- the output rule

_COPY_CHUNK = 1024 * 1024
# The longest output path kept (relative to data_path): what an execution's column holds.
OUTPUT_PATH_MAX_CHARS = 1024


class BadOutput(ValueError):
    """An Async entrypoint's return value that is not an acceptable output; says why."""


def check_output(value: object, folder: Path, input_name: str) -> Path:
    """The output file named by an Async entrypoint's return value, or BadOutput saying why.

    A relative path is taken relative to data_path (`folder`). The file must be a regular
    file inside data_path once every symlink is resolved, and not the input file itself
    (the input is kept as the record of what the model was given).

    Any holder of the group token reads the message, so it names no server folder: a path
    is shown as ``<data_path>/…``, and an absolute one elsewhere is not shown at all.
    """
    rule = "It must return the path of a file it wrote inside data_path."
    if not isinstance(value, str) or not value:
        raise BadOutput(f"The entrypoint returned {value!r}, not a file path. {rule}")
    root = folder.resolve()
    candidate = Path(value) if os.path.isabs(value) else folder / value
    named = _named_in_data_path(value, folder, root)
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError):  # a symlink loop: its message names the server's folders
        raise BadOutput(
            f"The entrypoint returned {_quoted(named)}, which can't be resolved (a symlink loop). {rule}"
        ) from None
    if not resolved.is_relative_to(root):
        if named is None:
            raise BadOutput(f"The entrypoint returned an absolute path outside data_path. {rule}")
        lexical = os.path.normpath(candidate)
        if _named_in_data_path(lexical, folder, root) is None:  # "../" out of it
            raise BadOutput(f"The entrypoint returned {_quoted(named)}, which is outside data_path. {rule}")
        # Inside data_path by its name, outside once resolved: a symlink points out.
        how = "is a symlink" if os.path.islink(lexical) else "goes through a symlink"
        raise BadOutput(
            f"The entrypoint returned {_quoted(named)}, which {how} pointing outside data_path. {rule}"
        )
    if named is None:  # an absolute path elsewhere that a symlink brings back inside
        named = f"<data_path>/{resolved.relative_to(root).as_posix()}"
    shown = _quoted(named)
    if not resolved.exists():
        raise BadOutput(f"The entrypoint returned {shown}, but there is no such file. {rule}")
    if resolved.is_dir():
        raise BadOutput(f"The entrypoint returned {shown}, which is a directory, not a file. {rule}")
    if not resolved.is_file():
        raise BadOutput(f"The entrypoint returned {shown}, which is not a regular file. {rule}")
    relative = str(resolved.relative_to(root))
    if len(relative) > OUTPUT_PATH_MAX_CHARS:
        raise BadOutput(
            f"The entrypoint returned a path of {len(relative)} characters inside data_path; "
            f"at most {OUTPUT_PATH_MAX_CHARS} are kept. Write the result under a shorter path."
        )
    if resolved == root / input_name:
        raise BadOutput(
            f"The entrypoint returned the input file '{input_name}' itself. Write the result to a new "
            "file inside data_path and return its path."
        )
    return resolved


def _named_in_data_path(value: str, folder: Path, root: Path) -> str | None:
    """``value`` as ``<data_path>/…``; None for an absolute path not under data_path.

    A relative path is data_path's already. An absolute one may start with data_path as
    the model was given it or with its resolved form (the model may have resolved it).
    """
    if not os.path.isabs(value):
        return f"<data_path>/{value}"
    for form in (value, os.path.normpath(value)):  # normpath: "//" and "/./" left in by joins
        for base in (str(folder).rstrip(os.sep), str(root).rstrip(os.sep)):
            if form == base:
                return "<data_path>/"
            if form.startswith(base + os.sep):
                return f"<data_path>/{form[len(base) + 1 :]}"
    return None


def _quoted(named: str | None) -> str:
    if named is None:
        return "an absolute path outside data_path"
    return f"'{named}'" if len(named) <= 300 else f"'{named[:300]}…'"


class NotKept(ValueError):
    """A file the sandbox wrote that can't be copied out (a link, a device, gone); says why."""


def open_regular_file(source: Path, root: Path) -> BinaryIO:
    """``source`` (inside ``root``) opened for reading with no symlink followed on the way.

    Every folder and the file itself are opened without following links, and the file must
    be a regular one: code that swapped its output for a link to the platform's files
    gets a NotKept, not their content.
    """
    relative = source.relative_to(root)
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in relative.parts[:-1]:  # walk down without following links
            next_fd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = next_fd
        try:
            file_fd = os.open(relative.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
        except OSError as exc:
            raise NotKept(
                f"{relative.as_posix()} can't be kept: it is not a regular file ({exc.strerror})."
            ) from None
    except OSError as exc:
        raise NotKept(f"{relative.as_posix()} can't be kept: {exc.strerror}.") from None
    finally:
        os.close(fd)
    handle = os.fdopen(file_fd, "rb")
    if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
        handle.close()
        raise NotKept(f"{relative.as_posix()} can't be kept: it is not a regular file.")
    return handle


def copy_regular_file(source: Path, target: Path, root: Path) -> int:
    """Copy ``source`` (inside ``root``, no symlink on the way) to ``target``; returns its size."""
    with open_regular_file(source, root) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, _COPY_CHUNK)
    return target.stat().st_size
