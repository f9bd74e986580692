"""Records Sync calls without slowing them: a bounded in-memory buffer per web process,
written to the database in batches by a background thread.

The buffer is bounded by count and by bytes (a few large inputs must not take the
process's memory while the database is slow). A call whose input and answer are over
NEOMARIL_RECORD_MAX_KB is recorded without them (`payload_kept` false): its status and
latency still count in the model's call statistics, monitoring skips it. Calls not
recorded at all (the buffer full) are counted; the count is written as a DroppedRecords
row and logged, so a gap in the records is always visible.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import socket
import threading
import time
import weakref
from datetime import datetime
from typing import NamedTuple

from django.conf import settings
from django.db import close_old_connections, connection, transaction

from groups.metrics import RECORDING_DROPPED, RECORDING_PAYLOADS_DROPPED
from groups.outages import RepeatedFailure

logger = logging.getLogger(__name__)

FLUSH_INTERVAL = 0.5
BATCH_SIZE = 500


class Call(NamedTuple):  # a tuple: built on every call, so cheap to build
    model_id: int
    version: int
    at: datetime
    status_code: int
    latency_ms: float
    input: str
    output: str
    live: bool = True  # answered by the version the run URL serves (CalledModel.live)
    payload_kept: bool = True


def _size(call: Call) -> int:
    """The bytes a call holds in the buffer and the database, near enough: its texts."""
    return len(call.input) + len(call.output)


class Recorder:
    def __init__(self, capacity: int, capacity_bytes: int | None = None, max_call_bytes: int | None = None):
        # A deque rather than queue.Queue: appending and popping are atomic, without the
        # Queue's lock and condition (about 4 µs of CPU per call between the two ends).
        # The length check before an append is not atomic with it: threads recording at
        # the same moment can each add one past the capacity, a bound that still holds.
        self.buffer: collections.deque[Call] = collections.deque()
        self.capacity = capacity
        self.capacity_bytes = settings.RECORD_BUFFER_BYTES if capacity_bytes is None else capacity_bytes
        self.max_call_bytes = settings.RECORD_MAX_CALL_BYTES if max_call_bytes is None else max_call_bytes
        # What the buffer holds, in _size: added here, taken off by the writer, under
        # _bytes_lock (an unguarded += from two threads can lose one, and the drift stays).
        self.buffered_bytes = 0
        self._bytes_lock = threading.Lock()
        self.dropped = 0  # not yet written to the database
        self.dropped_total = 0
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._atexit_registered = False
        # gunicorn forks its workers after import. The child has no writer thread, and the
        # parent's buffered calls are the parent's to write. Set at the fork, not checked
        # by comparing pids on every call (a getpid() system call each time).
        this = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: (recorder := this()) is not None and recorder._forked())

    def record(self, call: Call) -> None:
        """Called on the request path: never blocks, never touches the database."""
        self._ensure_thread()
        size = _size(call)
        if size > self.max_call_bytes:
            call = call._replace(input="", output="", payload_kept=False)
            size = 0
            RECORDING_PAYLOADS_DROPPED.inc()
        if len(self.buffer) < self.capacity:
            with self._bytes_lock:
                kept = self.buffered_bytes + size <= self.capacity_bytes
                if kept:
                    self.buffered_bytes += size
            if kept:
                self.buffer.append(call)
                return
        with self._lock:
            self.dropped += 1
            self.dropped_total += 1
        RECORDING_DROPPED.inc()
        self._wake.set()

    def _ensure_thread(self) -> None:
        # On every call, so one attribute check; a writer that died is replaced (see _run).
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    if not self._atexit_registered:
                        atexit.register(lambda: self.flush())  # whatever flush is then
                        self._atexit_registered = True
                    self._thread = threading.Thread(target=self._run, name="prediction-recorder", daemon=True)
                    self._thread.start()

    def _forked(self) -> None:
        """In a child process just forked (the parent's atexit registration carries over)."""
        self._thread = None
        self.buffer.clear()
        self.buffered_bytes = 0
        self.dropped = 0
        # Another thread may have held these at the fork: the child's copies would stay held.
        self._lock = threading.Lock()
        self._bytes_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()

    def _run(self) -> None:
        failures = RepeatedFailure(logger, "writing prediction records")
        try:
            while not self._stop.is_set():
                self._wake.wait(FLUSH_INTERVAL)
                self._wake.clear()
                if self._stop.is_set():
                    break
                try:
                    self.flush()
                    close_old_connections()
                    failures.worked()
                except Exception as exc:  # keep recording after a database hiccup; the calls stay buffered
                    failures.failed(exc, "retrying every second")
                    time.sleep(1)
        finally:
            # Ended anyway (a BaseException): the next call starts another writer rather
            # than leaving calls buffered for good.
            with self._lock:
                if self._thread is threading.current_thread():
                    self._thread = None

    def stop(self, discard: bool = False) -> None:
        """Stop this process's writer (the next call starts another); `discard`: forget what
        is buffered too. For the test suite, whose database is gone after each test."""
        thread = self._thread
        if thread is not None:
            self._stop.set()
            self._wake.set()
            thread.join(10)
            self._stop.clear()
        if discard:
            self.buffer.clear()
            with self._bytes_lock:
                self.buffered_bytes = 0

    @staticmethod
    def _insert(batch: list[Call]) -> None:
        """The batch's records, and its counts added to their models' hours (HourlyCalls),
        in one transaction, so the two always agree."""
        with transaction.atomic(), connection.cursor() as cursor:
            Recorder.insert_records(cursor, batch)
            Recorder.add_to_hours(cursor, batch)

    @staticmethod
    def insert_records(cursor, batch: list[Call]) -> None:
        """One prepared INSERT run over the whole batch. At thousands of calls a second the
        ORM's bulk_create (a model instance per row, query compilation) cost the web
        process more CPU than answering the calls did."""
        # Imported here: the recorder is loaded by the ASGI front before Django sets its apps up.
        from monitoring.models import PredictionRecord

        table = connection.ops.quote_name(PredictionRecord._meta.db_table)
        adapt = connection.ops.adapt_datetimefield_value
        cursor.executemany(
            f"INSERT INTO {table} (model_id, version, at, status_code, latency_ms, input, output, live, "  # noqa: S608
            "payload_kept) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (c.model_id, c.version, adapt(c.at), c.status_code, c.latency_ms, c.input, c.output, c.live,
                 c.payload_kept)
                for c in batch
            ],
        )  # fmt: skip

    @staticmethod
    def add_to_hours(cursor, batch: list[Call]) -> None:
        """Add the batch's calls and errors to their models' hours. Added to, not set: every
        web process of every node adds its own batches. In key order, so two transactions
        adding to the same rows lock them in the same order (PostgreSQL) and cannot deadlock."""
        from monitoring.models import HourlyCalls
        from monitoring.stats import ERROR_STATUS, hour_of

        counts: dict[tuple[int, datetime], list[int]] = collections.defaultdict(lambda: [0, 0])
        for c in batch:
            count = counts[c.model_id, hour_of(c.at)]
            count[0] += 1
            count[1] += c.status_code >= ERROR_STATUS
        hours = connection.ops.quote_name(HourlyCalls._meta.db_table)
        adapt = connection.ops.adapt_datetimefield_value
        cursor.executemany(
            f"INSERT INTO {hours} (model_id, hour, calls, errors) VALUES (%s, %s, %s, %s) "  # noqa: S608
            f"ON CONFLICT (model_id, hour) DO UPDATE SET calls = {hours}.calls + excluded.calls, "
            f"errors = {hours}.errors + excluded.errors",
            [(model_id, adapt(hour), n, errors) for (model_id, hour), (n, errors) in sorted(counts.items())],
        )

    def flush(self) -> int:
        """Write everything buffered so far; returns how many records were written."""
        from monitoring.models import DroppedRecords

        written = 0
        while True:
            batch: list[Call] = []
            while len(batch) < BATCH_SIZE:
                try:
                    batch.append(self.buffer.popleft())
                except IndexError:
                    break
            if not batch:
                break
            try:
                self._insert(batch)
            except BaseException:
                self.buffer.extendleft(reversed(batch))  # kept, in order, for the next try
                raise
            with self._bytes_lock:
                self.buffered_bytes -= sum(map(_size, batch))
            written += len(batch)
        with self._lock:
            dropped, self.dropped = self.dropped, 0
        if dropped:
            logger.warning(
                "%d call(s) were not recorded: the prediction buffer was full (NEOMARIL_RECORD_BUFFER, "
                "NEOMARIL_RECORD_BUFFER_MB)",
                dropped,
            )
            DroppedRecords.objects.create(count=dropped, process=f"{socket.gethostname()}:{os.getpid()}")
        return written


recorder = Recorder(capacity=settings.RECORD_BUFFER_SIZE)
