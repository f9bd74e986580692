"""The platform's Prometheus metrics: what every process counts as it works.

Sync calls are counted on their hot path (models_app.serving.answers, .aio: added up in
the process, written twice a second and before a scrape, see ModelSeries), jobs when
they settle (groups.jobs), recording drops where they happen (monitoring.recorder).
`GET /metrics` (portal.metrics) adds what is read when it is scraped (runners from the
model host, jobs by state from the database) and says what each metric means
(docs/observability.md).

prometheus-client's multiprocess mode: a process whose environment has
PROMETHEUS_MULTIPROC_DIR when this module is first imported writes its values to
memory-mapped files there, and the scrape adds up every process's files
(portal.metrics_dir prepares the folders: gunicorn's `on_starting`, `manage.py
qcluster`). Without it (tests, runserver, a shell) the values stay in the process.

Per-model series are labelled with the model's hash (its run URL) and the version
number that answered, never its name: names change, and a label that changes starts a
new series. A series, once created, stays until the process exits (multiprocess mode
cannot remove one).
"""

from __future__ import annotations

import atexit
import bisect
import logging
import os
import re
import threading
from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

# Seconds. A warm call of a small model takes about a millisecond (hence the fine steps
# below 2.5 ms, where a p50 lies); a cold start or a slow model tens of seconds
# (NEOMARIL_PREDICT_TIMEOUT: 30 s by default).
CALL_BUCKETS = (
    0.00025, 0.0005, 0.001, 0.0015, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60,
)  # fmt: skip
# Starting a runner: the sandbox, the interpreter, the import of the model (NEOMARIL_COLD_START_TIMEOUT: 120 s).
START_BUCKETS = (0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
# Jobs run from seconds (a cached build, a small execution) to the task timeout (30 min by default).
JOB_BUCKETS = (1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1200, 1800, 3600)

MODEL = ("model", "version")

MODEL_REQUESTS = Counter(
    "neomaril_model_requests",
    "Sync calls that reached a deployed model, by the HTTP status they were answered.",
    (*MODEL, "status"),
)
MODEL_REQUEST_SECONDS = Histogram(
    "neomaril_model_request_duration_seconds",
    "Time to answer a Sync call, from its body's first byte to its answer (the latency recorded with the call).",
    MODEL,
    buckets=CALL_BUCKETS,
)
MODEL_CALLS_IN_FLIGHT = Gauge(
    "neomaril_model_calls_in_flight",
    "Sync calls sent (or waiting to be sent) to the model's runners and not yet answered, "
    "by this node's web processes. A runner answers one call at a time: beyond the model's "
    "running runners, calls wait.",
    MODEL,
    multiprocess_mode="livesum",
)
MODEL_COLD_STARTS = Counter(
    "neomaril_model_cold_starts",
    "Times a web process found no runner for a call and asked the model host to start the "
    "model (concurrent calls of one process share one start), by outcome (started, failed).",
    (*MODEL, "outcome"),
)
MODEL_COLD_START_SECONDS = Histogram(
    "neomaril_model_cold_start_duration_seconds",
    "How long calls waited for the model host to start a model's runners (successful starts).",
    MODEL,
    buckets=START_BUCKETS,
)
RUN_CALLS_REFUSED = Counter(
    "neomaril_run_calls_refused",
    "Run calls refused before reaching a model, by status: 401 (no or wrong token), 403 "
    "(another group's token), 404 (no such model or version), 409 (not deployed). No model "
    "label: a caller's unknown hashes would each make a series. Not logged either.",
    ("status",),
)
RECORDING_DROPPED = Counter(
    "neomaril_recording_dropped",
    "Sync calls not recorded because the web process's buffer was full "
    "(NEOMARIL_RECORD_BUFFER, NEOMARIL_RECORD_BUFFER_MB); also kept as DroppedRecords rows.",
)
RECORDING_PAYLOADS_DROPPED = Counter(
    "neomaril_recording_payloads_dropped",
    "Sync calls recorded without their input and answer, over NEOMARIL_RECORD_MAX_KB together: "
    "counted in the model's call statistics, not monitored.",
)
JOB_SECONDS = Histogram(
    "neomaril_job_duration_seconds",
    "Time from a job's start to its outcome, by kind (model_build, execution, training_run, "
    "monitor, period) and the state it ended in.",
    ("kind", "state"),
    buckets=JOB_BUCKETS,
)
JOBS_RECOVERED = Counter(
    "neomaril_jobs_recovered",
    "Running jobs whose worker stopped (no heartbeat), by kind and what recovery did (requeued, failed); "
    "waiting jobs whose task never started and were sent another (redispatched).",
    ("kind", "outcome"),
)


DATABASE_UNAVAILABLE_ANSWERS = Counter(
    "neomaril_database_unavailable_answers",
    "Requests answered 503 because the database did not answer (API and run URLs, pages): "
    "the calls an outage refused, which no model's series counts (no model was looked up).",
)


class CalledVersion(Protocol):
    """What the metrics need of a called model (models_app.calls.CalledModel)."""

    hash: str  # the version's own
    model_hash: str  # the run URL's hash
    version: int


def job_kind(model_class: type) -> str:
    """The `kind` label of a job's model: ModelBuild -> model_build."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", model_class.__name__).lower()


class ModelSeries:
    """One model version's series in this process, created on its first call.

    `labels()` validates and joins the label values on every call (a few µs): the hot
    path keeps the children it returns, per version row, and per status for the counter.

    The hot path only adds up, under a lock: calls in flight, answered calls by status,
    and their latencies by bucket. `publish()` writes what changed to the metrics: the
    publisher thread twice a second, the /metrics view before it reads them, the process
    at its exit. (Writing the multiprocess files at every call, a counter, a histogram's
    sum and bucket and a gauge twice, cost about 8 µs a call: bench/metrics_cost.py.)
    """

    __slots__ = (
        "_buckets",
        "_in_flight",
        "_lock",
        "_published",
        "_requests",
        "_seconds",
        "_statuses",
        "in_flight_gauge",
        "labels",
        "latency",
    )

    def __init__(self, model: CalledVersion) -> None:
        self.labels = (model.model_hash, str(model.version))
        self._requests: dict[int, Counter] = {}
        self.latency = MODEL_REQUEST_SECONDS.labels(*self.labels)
        self.in_flight_gauge = MODEL_CALLS_IN_FLIGHT.labels(*self.labels)
        self._in_flight = 0
        self._published = 0
        self._statuses: dict[int, int] = {}
        self._buckets = [0] * (len(CALL_BUCKETS) + 1)  # the last one: +Inf
        self._seconds = 0.0
        self._lock = threading.Lock()

    def requests(self, status: int) -> Counter:
        counter = self._requests.get(status)
        if counter is None:
            counter = self._requests[status] = MODEL_REQUESTS.labels(*self.labels, str(status))
        return counter

    def call_started(self) -> None:
        with self._lock:
            self._in_flight += 1
        _publisher.ensure_running()

    def call_ended(self) -> None:
        with self._lock:
            self._in_flight -= 1

    def observe(self, status: int, seconds: float) -> None:
        """Count an answered call and its latency (published later)."""
        with self._lock:
            self._statuses[status] = self._statuses.get(status, 0) + 1
            # Histogram.observe's bucket: the first upper bound at or above the value.
            self._buckets[bisect.bisect_left(CALL_BUCKETS, seconds)] += 1
            self._seconds += seconds
        _publisher.ensure_running()

    def publish(self) -> None:
        """Write the calls counted since the last time, and the calls in flight if that
        count changed, to the metrics."""
        with self._lock:
            in_flight = self._in_flight
            statuses, self._statuses = self._statuses, {}
            buckets = self._buckets
            if statuses:
                self._buckets = [0] * len(buckets)
            seconds, self._seconds = self._seconds, 0.0
        for status, count in statuses.items():
            self.requests(status).inc(count)
        if statuses:
            # What Histogram.observe writes, for many observations at once (its own
            # values: the test compares the outcome with observe's).
            for index, count in enumerate(buckets):
                if count:
                    self.latency._buckets[index].inc(count)
            self.latency._sum.inc(seconds)
        if in_flight != self._published:
            self.in_flight_gauge.set(in_flight)
            self._published = in_flight


class _Publisher:
    """The thread that publishes the calls' metrics, started by a process's first call."""

    EVERY = 0.5  # seconds

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        # A forked child has no thread of its parent's (django-q2 forks after import).
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._thread = None
        self._lock = threading.Lock()

    def ensure_running(self) -> None:
        if self._thread is None:
            with self._lock:
                if self._thread is None:
                    self._thread = threading.Thread(target=self._run, name="metrics-publisher", daemon=True)
                    self._thread.start()

    def _run(self) -> None:
        pause = threading.Event()  # never set: waits without time.sleep, which tests patch
        while True:
            pause.wait(self.EVERY)
            try:
                publish()
            except Exception:  # never lose the thread: the next turn tries again
                logger.exception("publishing the calls' metrics failed")


_publisher = _Publisher()
_series: dict[str, ModelSeries] = {}


def publish() -> None:
    """Write what this process's series counted since the last time to the metrics."""
    for series in list(_series.values()):
        series.publish()


atexit.register(publish)  # a worker that stops keeps what it counted in its last half-second


def model_series(model: CalledVersion) -> ModelSeries:
    """The series of the version that answers, by its hash: never reused, unlike a row's id
    (a rolled-back insert gives its id to the next one)."""
    series = _series.get(model.hash)
    if series is None:  # setdefault: a thread creating it at the same time gets the same one
        series = _series.setdefault(model.hash, ModelSeries(model))
    return series


def observe_call(model: CalledVersion, status: int, seconds: float) -> None:
    """Count one answered Sync call and its latency: on the hot path, keep it cheap."""
    model_series(model).observe(status, seconds)
