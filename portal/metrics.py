"""`GET /metrics`: this node's metrics in Prometheus' format (docs/observability.md).

Two sources, added up in one answer:

- what the processes counted as they worked (groups.metrics: Sync calls, cold starts,
  calls in flight, jobs' durations, recording drops), read from every program's files
  on this node (portal.metrics_dir), or from this process's memory when the files are
  not in use (tests, runserver);
- what is read when the scrape comes: the runners per model, from this node's model
  host (its `status`, with a short timeout: a host that is down is `host_up 0`, not a
  failed scrape), with what the host counted since it started (scale-ups its budgets
  refused, runners it evicted), and models and jobs by state, from the database (one
  GROUP BY each).
  A gauge kept by the processes for these would be a second copy of a state that the
  host and the database already hold.

A database that can't be reached (a restart, an outage) leaves out the series read from
it, not the whole answer: what the processes counted matters most then.
`neomaril_database_up` says whether this scrape could read it (DatabaseReads).

Who may read it: a client presenting `Authorization: Bearer <NEOMARIL_METRICS_TOKEN>`
(when set), or one whose address is in NEOMARIL_METRICS_ALLOWED_NETWORKS (loopback by
default). Forwarded headers are believed only from NEOMARIL_TRUSTED_PROXIES, as for
login throttling; a request that carries them from any other peer passed through a
proxy nobody declared, whose address is not the client's: the network rule does not
apply to it (the token does).
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
from collections.abc import Callable
from typing import TypeVar

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector
from rest_framework.exceptions import AuthenticationFailed

from executions.models import Execution
from groups import storage
from groups.addresses import parse_address
from groups.api.errors import error_response
from groups.authentication import client_ip, credentials_from_header
from groups.metrics import job_kind, publish
from groups.models import Group
from groups.outages import RepeatedFailure
from groups.uploads import free_bytes
from models_app.models import MLModel, ModelBuild
from models_app.serving.aio import ServingError, host_call
from models_app.serving.answers import DATABASE_OUTAGE_ERRORS
from monitors.models import Monitor, Period
from portal import metrics_dir
from training.models import TrainingRun

logger = logging.getLogger(__name__)
T = TypeVar("T")
# This process's scrapes' reads of the database: logged once per outage.
DATABASE_READS = RepeatedFailure(logger, "/metrics reading the database")

# Seconds the scrape waits for the model host's status (Prometheus' own timeout is 10 s).
HOST_TIMEOUT = 2.0
JOB_MODELS = (ModelBuild, Execution, TrainingRun, Monitor, Period)
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_X_FORWARDED_PROTO", "HTTP_X_REAL_IP", "HTTP_FORWARDED")


class CountedCollector:
    """What the processes counted: every program's files, or this process's memory."""

    def collect(self):
        if metrics_dir.in_use():
            return MultiProcessCollector.merge(metrics_dir.files(), accumulate=True)
        return REGISTRY.collect()


class DatabaseReads:
    """The database's part of one scrape, and its `neomaril_database_up`.

    A read that finds the database unreachable leaves its series out, and the reads after
    it in the scrape are not tried (each would wait for a connection again). Registered
    after the collectors that read: the registry collects in that order, so the gauge
    says how their reads went. Logged once per outage (DATABASE_READS), not per scrape.
    """

    def __init__(self) -> None:
        self.up = True

    def read(self, query: Callable[[], T]) -> T | None:
        """`query()`, or None when the database can't be reached."""
        if not self.up:
            return None
        try:
            result = query()
        except DATABASE_OUTAGE_ERRORS as exc:
            self.up = False
            DATABASE_READS.failed(exc, "its series are left out, and neomaril_database_up is 0, until it can")
            return None
        DATABASE_READS.worked()
        return result

    def collect(self):
        up = GaugeMetricFamily(
            "neomaril_database_up",
            "Whether this scrape could read the database (0: the series read from it are missing).",
        )
        up.add_metric([], 1 if self.up else 0)
        return [up]


class RunnersCollector:
    """Runners per model on this node, and what the host's budgets did to them, as the
    model host reports them."""

    def __init__(self, database: DatabaseReads) -> None:
        self.database = database

    def collect(self):
        up = GaugeMetricFamily(
            "neomaril_model_host_up", "Whether this node's model host answered the scrape."
        )
        try:
            status = host_call({"op": "status"}, timeout=HOST_TIMEOUT)
        except ServingError:
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        runners = GaugeMetricFamily(
            "neomaril_model_runners",
            "Runner processes up on this node, per model and version (the replicas serving it, "
            "and those of a build being warmed).",
            labels=["model", "version"],
        )
        memory = GaugeMetricFamily(
            "neomaril_model_runner_memory_bytes",
            "Resident memory of the model's runners on this node (their sandboxes included).",
            labels=["model", "version"],
        )
        queued = GaugeMetricFamily(
            "neomaril_model_calls_queued",
            "Sync calls waiting for one of the model's runners on this node, as the runners' "
            "own counters show them (sampled each second): the queue that makes replicas grow.",
            labels=["model", "version"],
        )
        # Counted by the host since it started: a restart resets them, which rate() takes in its stride.
        refused = CounterMetricFamily(
            "neomaril_model_scale_ups_refused",
            "Replicas the model's load asked for on this node and the model host's budget "
            "refused (budget: runners, NEOMARIL_HOST_MAX_RUNNERS; memory, "
            "NEOMARIL_HOST_MEMORY_BUDGET_MB), one per scaling pass (each second) it asked; counted "
            "since the model host started (it restarts from 0 with the host).",
            labels=["model", "version", "budget"],
        )
        evictions = CounterMetricFamily(
            "neomaril_model_runner_evictions",
            "The model's runners this node's model host stopped (least recently used) to make "
            "room for another model's; counted since the model host started (it restarts from 0 "
            "with the host).",
            labels=["model", "version"],
        )
        alive = [runner for runner in status.get("runners", []) if runner.get("alive")]
        refusals = status.get("refused_scale_ups", {})
        evicted = status.get("evictions", {})
        # A runner names the version row that it serves; the labels are the run URL's
        # hash and the version number, as for the calls.
        rows = MLModel.objects.filter(
            hash__in={runner["model"] for runner in alive} | refusals.keys() | evicted.keys()
        ).values_list("hash", "version", "line__hash")
        found = self.database.read(lambda: list(rows))
        if found is None:
            return [up]  # no labels without the database: the host's answer alone
        versions = {row_hash: (line_hash or row_hash, str(version)) for row_hash, version, line_hash in found}
        counts: dict[tuple[str, str], list[int]] = {}
        for runner in alive:
            labels = versions.get(runner["model"])
            if labels is not None:  # a model deleted since
                count = counts.setdefault(labels, [0, 0, 0])
                count[0] += 1
                count[1] += runner.get("memory_bytes", 0)
                count[2] += runner.get("calls_queued", 0)
        for labels, (number, rss, waiting) in sorted(counts.items()):
            runners.add_metric(list(labels), number)
            memory.add_metric(list(labels), rss)
            queued.add_metric(list(labels), waiting)
        for row_hash, by_budget in sorted(refusals.items()):
            labels = versions.get(row_hash)
            if labels is not None:  # a model deleted since
                for budget, number in sorted(by_budget.items()):
                    refused.add_metric([*labels, budget], number)
        for row_hash, number in sorted(evicted.items()):
            labels = versions.get(row_hash)
            if labels is not None:
                evictions.add_metric(list(labels), number)
        return [up, runners, memory, queued, refused, evictions]


class StatesCollector:
    """Models and jobs by state, from the database."""

    def __init__(self, database: DatabaseReads) -> None:
        self.database = database

    def collect(self):
        counted = self.database.read(self._count)
        if counted is None:
            return []
        model_counts, job_counts = counted
        models = GaugeMetricFamily(
            "neomaril_models", "Models by status (their live version's).", labels=["status"]
        )
        for status in MLModel.Status.values:
            models.add_metric([status], model_counts.get(status, 0))
        jobs = GaugeMetricFamily(
            "neomaril_jobs",
            "Jobs by kind (model_build, execution, training_run, monitor, period) and state, in the database.",
            labels=["kind", "state"],
        )
        for model in JOB_MODELS:
            for state in model.Status.values:
                jobs.add_metric([job_kind(model), state], job_counts[model].get(state, 0))
        return [models, jobs]

    @staticmethod
    def _count() -> tuple[dict[str, int], dict[type, dict[str, int]]]:
        # A model's status is its live version's (the first row's own when that one is live).
        models = dict(
            MLModel.objects.filter(line__isnull=True)
            .order_by()
            .values_list(Coalesce("live_version__status", "status"))
            .annotate(n=Count("pk"))
        )
        return models, {model: _counts(model.objects.all()) for model in JOB_MODELS}


def _counts(rows) -> dict[str, int]:
    return dict(rows.order_by().values_list("status").annotate(n=Count("pk")))


class GroupStorageCollector:
    """What each group keeps on the data disk, against its quota (groups.storage)."""

    def __init__(self, database: DatabaseReads) -> None:
        self.database = database

    def collect(self):
        groups = self.database.read(
            lambda: list(Group.objects.only("name", "stored_bytes", "storage_quota_mb"))
        )
        if groups is None:
            return []
        kept = GaugeMetricFamily(
            "neomaril_group_stored_bytes",
            "What the group's models, executions, training runs and monitors keep on the data disk.",
            labels=["group"],
        )
        quotas = GaugeMetricFamily(
            "neomaril_group_storage_quota_bytes",
            "The group's storage quota in force; groups without a limit have none.",
            labels=["group"],
        )
        for group in groups:
            kept.add_metric([group.name], group.stored_bytes)
            quota = storage.quota_bytes(group)
            if quota is not None:
                quotas.add_metric([group.name], quota)
        return [kept, quotas]


class DiskCollector:
    """The data folder's free space, against the reserve the platform keeps (docs/deployment.md)."""

    def collect(self):
        free = GaugeMetricFamily(
            "neomaril_data_disk_free_bytes",
            "Free space on the data folder's disk; under neomaril_data_disk_reserve_bytes, uploads "
            "are refused (507) and jobs stopped.",
        )
        reserve = GaugeMetricFamily("neomaril_data_disk_reserve_bytes", "NEOMARIL_DISK_RESERVE_MB, in bytes.")
        free.add_metric([], free_bytes(settings.DATA_DIR))
        reserve.add_metric([], settings.DISK_RESERVE_MB * 1024 * 1024)
        return [free, reserve]


def scrape_registry() -> CollectorRegistry:
    """The collectors of one scrape (cheap to build: nothing is read until it is encoded)."""
    database = DatabaseReads()
    registry = CollectorRegistry(auto_describe=False)
    collectors = (
        CountedCollector(),
        RunnersCollector(database),
        StatesCollector(database),
        GroupStorageCollector(database),
        DiskCollector(),
    )
    for collector in (*collectors, database):  # the database's gauge last: see DatabaseReads
        registry.register(collector)
    return registry


# ---------------------------------------------------------------------------- access


def client_address(request: HttpRequest) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address the networks rule is checked against; None when it can't be known."""
    remote = request.META.get("REMOTE_ADDR", "")
    peer = parse_address(remote)
    if not any(header in request.META for header in FORWARDING_HEADERS):
        return peer  # nobody forwarded it: the peer is the client
    client = client_ip(request)  # X-Forwarded-For, read only from a trusted proxy
    if client != (str(peer) if peer is not None else remote):
        return parse_address(client)
    # The same address: either uvicorn already read the client from a trusted proxy's
    # X-Forwarded-For (gunicorn's forwarded_allow_ips are the same proxies), and it is the
    # right-most entry that is not a trusted proxy; or an undeclared proxy is the peer.
    trusted = [ipaddress.ip_network(item) for item in settings.TRUSTED_PROXIES]
    chain = [parse_address(entry) for entry in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",")]
    for entry in reversed(chain):
        if entry is None:
            return None  # not an address: the chain can't be read
        if not any(entry in network for network in trusted):
            return entry if entry == peer else None
    # Every entry a declared proxy: the request began on a proxy's own machine (a curl on
    # the balancer), and its first entry is where, as uvicorn reads it.
    return chain[0]


def refusal(request: HttpRequest) -> str | None:
    """Why this request may not read the metrics; None when it may."""
    token = settings.METRICS_TOKEN
    try:
        presented = credentials_from_header(
            request.META.get("HTTP_AUTHORIZATION", "").encode("latin-1"), "Bearer"
        )
    except AuthenticationFailed as exc:
        return str(exc.detail)
    if presented is not None and token:
        if hmac.compare_digest(presented.encode(), token.encode()):
            return None
        return "Wrong metrics token: send Authorization: Bearer <NEOMARIL_METRICS_TOKEN>."
    address = client_address(request)
    networks = [ipaddress.ip_network(item) for item in settings.METRICS_ALLOWED_NETWORKS]
    if address is not None and any(address in network for network in networks):
        return None
    how = "with Authorization: Bearer <NEOMARIL_METRICS_TOKEN>, or " if token else ""
    return (
        f"The metrics are served {how}to clients in NEOMARIL_METRICS_ALLOWED_NETWORKS; "
        "through a reverse proxy, only when the proxy is one of NEOMARIL_TRUSTED_PROXIES."
    )


@csrf_exempt  # no cookie is read; without it a POST got Django's HTML CSRF page, not the 405
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """This node's metrics, for a client holding the token or on an allowed network."""
    if request.method not in ("GET", "HEAD"):
        response = error_response(
            405, f'Method "{request.method}" not allowed: GET the metrics.', "method_not_allowed"
        )
        response["Allow"] = "GET, HEAD"
        return response
    problem = refusal(request)
    if problem is not None:
        return error_response(403, problem, "permission_denied")
    publish()  # this process's latest calls; the other processes' are at most half a second old
    encoder, content_type = choose_encoder(request.META.get("HTTP_ACCEPT", ""))
    return HttpResponse(encoder(scrape_registry()), content_type=content_type)
