"""`GET /metrics` (portal.metrics): who may read it, and what it says after real work.

Calls go through both front ends (Django's run view, and the ASGI fast path), to a
runner started by a fake model host (tests/helpers/fake_serving.py). The values of the
processes' own metrics accumulate over a test process, so each test counts the calls
of a model of its own (its hash is a label). Adding up several processes' files is in
test_metrics_dir.py; the real processes under `make run`, in
tests/deploy/test_metrics_e2e.py.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from django.core.wsgi import get_wsgi_application
from django.db import connections
from django.test import Client
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from executions.models import Execution
from groups.models import Group
from models_app.models import MLModel, ModelBuild
from models_app.serving import aio
from models_app.serving.front import ServingFront
from monitoring.recorder import Call, Recorder
from portal import metrics
from portal.wsgi_bridge import WSGIBridge
from tests.helpers.clients import api_client, asgi_post
from tests.helpers.fake_serving import fake_host
from tests.helpers.uploads import sync_payload

pytestmark = pytest.mark.django_db(transaction=True)  # the fast path reads on its own connection

LOOPBACK = "127.0.0.1"


def get_metrics(remote: str = LOOPBACK, **headers):
    return Client().get("/metrics", REMOTE_ADDR=remote, **headers)


def scrape(**headers) -> dict[tuple[str, frozenset], float]:
    response = get_metrics(**headers)
    assert response.status_code == 200, response.content
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.content.decode())
        for sample in family.samples
    }


def value(samples: dict, name: str, **labels) -> float | None:
    return samples.get((name, frozenset(labels.items())))


# ------------------------------------------------------------------------ access


def test_loopback_may_read_them_and_others_get_403_in_the_apis_shape():
    assert get_metrics(LOOPBACK).status_code == 200
    assert get_metrics("::1").status_code == 200
    assert get_metrics("::ffff:127.0.0.1").status_code == 200  # bound to "::"
    refused = get_metrics("192.0.2.10")
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "The metrics are served to clients in NEOMARIL_METRICS_ALLOWED_NETWORKS; through a reverse "
        "proxy, only when the proxy is one of NEOMARIL_TRUSTED_PROXIES.",
        "code": "permission_denied",
    }


def test_the_token_opens_them_from_anywhere_and_a_wrong_one_from_nowhere(settings):
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    assert get_metrics("192.0.2.10", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token").status_code == 200
    wrong = get_metrics(LOOPBACK, HTTP_AUTHORIZATION="Bearer guess")
    assert wrong.status_code == 403 and wrong.json()["detail"].startswith("Wrong metrics token")
    refused = get_metrics("192.0.2.10")
    assert refused.status_code == 403 and "Bearer <NEOMARIL_METRICS_TOKEN>" in refused.json()["detail"]
    malformed = get_metrics(LOOPBACK, HTTP_AUTHORIZATION="Bearer two words")
    assert malformed.status_code == 403 and "Malformed Authorization header" in malformed.json()["detail"]
    # Another scheme (a user's API token) is not a metrics token: the network rule decides.
    assert get_metrics(LOOPBACK, HTTP_AUTHORIZATION="Token nmu_x").status_code == 200


def test_without_networks_only_the_token_opens_them(settings):
    settings.METRICS_ALLOWED_NETWORKS = []
    assert get_metrics(LOOPBACK).status_code == 403
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    assert get_metrics(LOOPBACK, HTTP_AUTHORIZATION="Bearer s3cret-metrics-token").status_code == 200


@pytest.mark.parametrize(
    ("trusted", "remote", "headers", "status"),
    [
        # A proxy on this machine that nobody declared: every request would look local.
        ([], LOOPBACK, {"HTTP_X_FORWARDED_FOR": "203.0.113.5"}, 403),
        ([], LOOPBACK, {"HTTP_X_FORWARDED_PROTO": "https"}, 403),
        ([], LOOPBACK, {"HTTP_X_FORWARDED_FOR": "127.0.0.1, 203.0.113.5"}, 403),  # a client's own entry
        # A client naming a local address itself.
        ([], "203.0.113.9", {"HTTP_X_FORWARDED_FOR": "127.0.0.1"}, 403),
        # A declared proxy: the client's address counts (Django reads X-Forwarded-For).
        (["10.0.0.2"], "10.0.0.2", {"HTTP_X_FORWARDED_FOR": "127.0.0.1"}, 200),
        (["10.0.0.2"], "10.0.0.2", {"HTTP_X_FORWARDED_FOR": "203.0.113.5"}, 403),
        (["10.0.0.2"], "10.0.0.2", {"HTTP_X_FORWARDED_PROTO": "https"}, 403),  # no client named
        # Bound to "::", the same IPv4 proxy arrives as an IPv4-mapped address.
        (["10.0.0.2"], "::ffff:10.0.0.2", {"HTTP_X_FORWARDED_FOR": "127.0.0.1"}, 200),
        (["10.0.0.0/8"], "::ffff:10.0.0.2", {"HTTP_X_FORWARDED_FOR": "203.0.113.5"}, 403),
        # uvicorn already took the client from a declared proxy's header.
        (["10.0.0.2"], LOOPBACK, {"HTTP_X_FORWARDED_FOR": "127.0.0.1"}, 200),
        (["10.0.0.2"], LOOPBACK, {"HTTP_X_FORWARDED_FOR": "127.0.0.1, 10.0.0.2"}, 200),
        # A client on the balancer's own machine: every entry is a declared proxy.
        (["127.0.0.1"], LOOPBACK, {"HTTP_X_FORWARDED_FOR": "127.0.0.1"}, 200),
        (["127.0.0.1"], LOOPBACK, {"HTTP_X_FORWARDED_FOR": "127.0.0.1, 203.0.113.5"}, 403),
    ],
)
def test_forwarded_headers_count_only_through_declared_proxies(settings, trusted, remote, headers, status):
    settings.TRUSTED_PROXIES = trusted
    assert get_metrics(remote, **headers).status_code == status


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_only_get_and_head(method):
    # CSRF checked as a browser's request would be: the 405 must come before Django's 403 page.
    response = getattr(Client(enforce_csrf_checks=True), method)("/metrics", REMOTE_ADDR=LOOPBACK)
    assert response.status_code == 405 and response["Allow"] == "GET, HEAD"
    assert response.json()["code"] == "method_not_allowed"
    assert Client().head("/metrics", REMOTE_ADDR=LOOPBACK).status_code == 200


def test_prometheus_text_by_default_and_openmetrics_when_asked():
    assert get_metrics()["Content-Type"].startswith("text/plain")
    asked = get_metrics(HTTP_ACCEPT="application/openmetrics-text; version=1.0.0")
    assert asked["Content-Type"].startswith("application/openmetrics-text")
    assert asked.content.rstrip().endswith(b"# EOF")


def test_not_redirected_to_https(settings):
    settings.SECURE_SSL_REDIRECT = True
    assert get_metrics().status_code == 200


# ------------------------------------------------------------- after real calls


@pytest.fixture
def serving(settings):
    with tempfile.TemporaryDirectory(prefix="nm-") as run_dir:  # short: Unix socket paths
        settings.RUN_DIR = Path(run_dir)
        settings.RECORD_PREDICTIONS = False  # the recorder's thread has no test database access
        yield


@pytest.fixture
def deployed(cast, serving) -> MLModel:
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    MLModel.objects.filter(hash=response.json()["hash"]).update(status=MLModel.Status.DEPLOYED)
    return MLModel.objects.get(hash=response.json()["hash"])


def django_call(model: MLModel, token: str, body: bytes) -> int:
    response = Client().post(
        f"/api/v1/run/{model.hash}",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )
    return response.status_code


def test_calls_through_django_are_counted_with_the_cold_start(deployed, cast, monkeypatch):
    host = fake_host(monkeypatch, deployed)
    assert django_call(deployed, cast.group_token, b'{"x": 1}') == 200  # the cold start
    assert django_call(deployed, cast.group_token, b'{"x": 2}') == 200
    assert django_call(deployed, cast.group_token, b"{not json") == 400
    assert host.ops() == ["ensure"]
    model = {"model": deployed.hash, "version": "1"}
    samples = scrape()
    assert value(samples, "neomaril_model_requests_total", **model, status="200") == 2
    assert value(samples, "neomaril_model_requests_total", **model, status="400") == 1
    assert value(samples, "neomaril_model_request_duration_seconds_count", **model) == 3
    assert value(samples, "neomaril_model_request_duration_seconds_bucket", **model, le="+Inf") == 3
    assert value(samples, "neomaril_model_cold_starts_total", **model, outcome="started") == 1
    assert value(samples, "neomaril_model_cold_start_duration_seconds_count", **model) == 1
    assert value(samples, "neomaril_model_calls_in_flight", **model) == 0


def test_calls_on_the_fast_path_are_counted(deployed, cast, monkeypatch):
    fake_host(monkeypatch, deployed)
    front = ServingFront(fallback=WSGIBridge(get_wsgi_application(), workers=1))
    path = f"/api/v1/run/{deployed.hash}"
    bearer = {"Authorization": f"Bearer {cast.group_token}"}
    try:
        assert asgi_post(front, path, b'{"x": 3}', bearer)[0] == 200
        assert asgi_post(front, path, b"[1, 2]", bearer)[0] == 400
        assert asgi_post(front, path, b"x" * 3_000_000, bearer)[0] == 413
    finally:
        executor = front.lookup._executor  # PostgreSQL: the lookup thread's own connection
        if executor is not None:
            executor.submit(connections.close_all).result()
            executor.shutdown()
    model = {"model": deployed.hash, "version": "1"}
    samples = scrape()
    assert value(samples, "neomaril_model_requests_total", **model, status="200") == 1
    assert value(samples, "neomaril_model_requests_total", **model, status="400") == 1
    assert value(samples, "neomaril_model_requests_total", **model, status="413") == 1
    assert value(samples, "neomaril_model_request_duration_seconds_count", **model) == 3


def test_a_cold_start_that_fails_is_counted_as_failed(deployed, cast):
    # No model host in RUN_DIR: the call is answered 503 and the start counted as failed.
    assert django_call(deployed, cast.group_token, b'{"x": 1}') == 503
    samples = scrape()
    model = {"model": deployed.hash, "version": "1"}
    assert value(samples, "neomaril_model_cold_starts_total", **model, outcome="failed") == 1
    assert value(samples, "neomaril_model_requests_total", **model, status="503") == 1
    assert value(samples, "neomaril_model_host_up") == 0


@pytest.mark.parametrize(
    "status, answered",
    [
        ("Deleted", (404, "not_found", "No model '{hash}'.")),
        (
            "Disabled",
            (
                409,
                "not_deployed",
                "Model '{hash}' is Disabled, not Deployed: it was disabled; restart it to serve again.",
            ),
        ),
    ],
)
def test_a_call_whose_model_left_service_before_its_start_gets_the_run_urls_answer(
    deployed, cast, monkeypatch, status, answered
):
    # Looked up Deployed, then deleted or disabled (through another node, say) before the
    # host started a runner for it: not a failed start (503), and not counted as one.
    refusal = {"ok": False, "error": "…", "code": "not_deployed", "model_status": status}
    monkeypatch.setattr(aio, "host_call", lambda request, timeout: refusal)
    response = Client().post(
        f"/api/v1/run/{deployed.hash}", b'{"x": 1}', content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {cast.group_token}",
    )  # fmt: skip
    code, error_code, detail = answered
    assert (response.status_code, response.json()) == (
        code,
        {"detail": detail.format(hash=deployed.hash), "code": error_code},
    )
    model = {"model": deployed.hash, "version": "1"}
    assert not value(scrape(), "neomaril_model_cold_starts_total", **model, outcome="failed")


def test_a_versions_calls_carry_its_number(deployed, cast, monkeypatch):
    version = MLModel.objects.create(
        **{
            field: getattr(deployed, field)
            for field in ("name", "group", "operation", "model_reference", "python_version", "schema")
        },
        line=deployed,
        version=2,
        status=MLModel.Status.DEPLOYED,
        deployed_build=1,
    )
    MLModel.objects.filter(pk=deployed.pk).update(live_version=version)
    fake_host(monkeypatch, version)
    assert django_call(deployed, cast.group_token, b'{"x": 1}') == 200
    samples = scrape()
    assert (
        value(samples, "neomaril_model_requests_total", model=deployed.hash, version="2", status="200") == 1
    )
    assert (
        value(samples, "neomaril_model_requests_total", model=deployed.hash, version="1", status="200")
        is None
    )


@pytest.fixture
def second_version(deployed):
    return MLModel.objects.create(
        name=deployed.name, group=deployed.group, model_reference="score", python_version="3.11",
        line=deployed, version=2,
    )  # fmt: skip


def test_runners_come_from_the_model_hosts_status_at_scrape_time(deployed, second_version, monkeypatch):
    version = second_version
    status = {
        "runners": [
            {"model": deployed.hash, "alive": True, "memory_bytes": 100, "calls_queued": 3},
            {"model": deployed.hash, "alive": True, "memory_bytes": 50, "calls_queued": 1},
            {"model": deployed.hash, "alive": False, "memory_bytes": 0},  # crashed, not restarted yet
            {"model": version.hash, "alive": True, "memory_bytes": 70},  # a version warming
            {"model": "Mgone", "alive": True, "memory_bytes": 10},  # deleted since
        ]
    }
    asked = []

    def host_call(request, timeout):
        asked.append((request, timeout))
        return {"ok": True, **status}

    monkeypatch.setattr(metrics, "host_call", host_call)
    samples = scrape()
    assert asked == [({"op": "status"}, metrics.HOST_TIMEOUT)]
    assert value(samples, "neomaril_model_host_up") == 1
    assert value(samples, "neomaril_model_runners", model=deployed.hash, version="1") == 2
    assert value(samples, "neomaril_model_runner_memory_bytes", model=deployed.hash, version="1") == 150
    assert value(samples, "neomaril_model_calls_queued", model=deployed.hash, version="1") == 4
    assert value(samples, "neomaril_model_runners", model=deployed.hash, version="2") == 1
    assert value(samples, "neomaril_model_calls_queued", model=deployed.hash, version="2") == 0
    assert not [key for key in samples if ("model", "Mgone") in key[1]]


def test_the_hosts_refused_scale_ups_and_evictions_are_counters_read_at_scrape_time(
    deployed, second_version, monkeypatch
):
    version = second_version
    status = {
        "runners": [],  # evicted or stopped since: the counts stay
        "refused_scale_ups": {
            deployed.hash: {"runners": 4, "memory": 0},
            version.hash: {"runners": 0, "memory": 2},
            "Mgone": {"runners": 1, "memory": 0},  # deleted since
        },
        "evictions": {version.hash: 3, "Mgone": 1},
    }
    monkeypatch.setattr(metrics, "host_call", lambda request, timeout: {"ok": True, **status})
    response = get_metrics()
    families = {f.name: f for f in text_string_to_metric_families(response.content.decode())}
    assert families["neomaril_model_scale_ups_refused"].type == "counter"
    assert families["neomaril_model_runner_evictions"].type == "counter"
    samples = scrape()
    refused = "neomaril_model_scale_ups_refused_total"
    assert value(samples, refused, model=deployed.hash, version="1", budget="runners") == 4
    assert value(samples, refused, model=deployed.hash, version="1", budget="memory") == 0
    assert value(samples, refused, model=deployed.hash, version="2", budget="memory") == 2
    assert value(samples, "neomaril_model_runner_evictions_total", model=deployed.hash, version="2") == 3
    assert value(samples, "neomaril_model_runner_evictions_total", model=deployed.hash, version="1") is None
    assert not [key for key in samples if ("model", "Mgone") in key[1]]


def test_models_and_jobs_by_state_come_from_the_database(deployed, cast):
    ModelBuild.objects.create(model=deployed, number=2, status=ModelBuild.Status.SUCCEEDED)
    ModelBuild.objects.create(model=deployed, number=3, status=ModelBuild.Status.FAILED)
    Execution.objects.create(model=deployed, number=1, input_file="in.csv", input_size=3)
    samples = scrape()
    builds = {state: ModelBuild.objects.filter(status=state).count() for state in ModelBuild.Status.values}
    assert builds["Succeeded"] == 1 and builds["Failed"] == 1 and builds["Queued"] == 1  # the upload's
    for state, count in builds.items():
        assert value(samples, "neomaril_jobs", kind="model_build", state=state) == count
    assert value(samples, "neomaril_jobs", kind="execution", state="Requested") == 1
    assert value(samples, "neomaril_jobs", kind="execution", state="Running") == 0
    assert value(samples, "neomaril_jobs", kind="training_run", state="Succeeded") == 0
    assert value(samples, "neomaril_jobs", kind="period", state="Failed") == 0
    assert value(samples, "neomaril_jobs", kind="monitor", state="Running") == 0
    assert value(samples, "neomaril_models", status="Deployed") == 1
    assert value(samples, "neomaril_models", status="Failed") == 0


def test_a_models_status_is_its_live_versions(deployed, cast):
    """As the API and the model list say: a first version that failed, a second one Deployed
    and live, is a Deployed model."""
    payload = sync_payload()
    for inherited in ("name", "group", "operation"):
        payload.pop(inherited)
    response = api_client(cast.owner).post(
        f"/api/v1/models/{deployed.hash}/versions", payload, format="multipart"
    )
    assert response.status_code == 201, response.json()
    second = deployed.all_versions().get(version=2)
    MLModel.objects.filter(pk=second.pk).update(status=MLModel.Status.DEPLOYED)
    MLModel.objects.filter(pk=deployed.pk).update(status=MLModel.Status.FAILED, live_version=second)
    assert api_client(cast.owner).get(f"/api/v1/models/{deployed.hash}").json()["status"] == "Deployed"
    samples = scrape()
    assert value(samples, "neomaril_models", status="Deployed") == 1
    assert value(samples, "neomaril_models", status="Failed") == 0


def test_recording_drops_are_counted():
    before = value(scrape(), "neomaril_recording_dropped_total")
    recorder = Recorder(capacity=1)
    recorder._ensure_thread = lambda: None  # no writer: the buffer stays full
    call = Call(1, 1, timezone.now(), 200, 1.0, json.dumps({}), "{}")
    for _ in range(3):
        recorder.record(call)
    assert recorder.dropped_total == 2
    assert value(scrape(), "neomaril_recording_dropped_total") == before + 2


def test_calls_recorded_without_their_payload_are_counted():
    before = value(scrape(), "neomaril_recording_payloads_dropped_total")
    recorder = Recorder(capacity=10, max_call_bytes=10)
    recorder._ensure_thread = lambda: None
    recorder.record(Call(1, 1, timezone.now(), 200, 1.0, json.dumps({"x": "a" * 20}), "{}"))
    assert value(scrape(), "neomaril_recording_payloads_dropped_total") == before + 1


def test_the_data_disks_free_space_and_reserve_are_read_at_scrape_time(settings, monkeypatch):
    settings.DISK_RESERVE_MB = 300
    monkeypatch.setattr(
        metrics, "free_bytes", lambda folder: 123 * 1024 * 1024 if folder == settings.DATA_DIR else 0
    )
    samples = scrape()
    assert value(samples, "neomaril_data_disk_free_bytes") == 123 * 1024 * 1024
    assert value(samples, "neomaril_data_disk_reserve_bytes") == 300 * 1024 * 1024


def test_each_groups_stored_bytes_and_quota_are_gauges(cast, settings):
    settings.GROUP_STORAGE_MB = 0
    Group.objects.filter(pk=cast.group.pk).update(stored_bytes=7 * 1024 * 1024, storage_quota_mb=10)
    samples = scrape()
    assert value(samples, "neomaril_group_stored_bytes", group="datarisk") == 7 * 1024 * 1024
    assert value(samples, "neomaril_group_storage_quota_bytes", group="datarisk") == 10 * 1024 * 1024
    assert value(samples, "neomaril_group_stored_bytes", group="other-team") == 0
    assert value(samples, "neomaril_group_storage_quota_bytes", group="other-team") is None  # no limit
    settings.GROUP_STORAGE_MB = 1
    assert value(scrape(), "neomaril_group_storage_quota_bytes", group="other-team") == 1024 * 1024


def test_run_calls_refused_before_a_model_are_counted_by_status(deployed, cast):
    before = {
        status: value(scrape(), "neomaril_run_calls_refused_total", status=status) or 0
        for status in ["401", "403", "404", "409"]
    }
    assert django_call(deployed, "nmg_not-a-token", b"{}") == 401
    assert django_call(deployed, cast.other_token, b"{}") == 403
    missing = MLModel(hash="M" + "0" * 31)
    assert django_call(missing, cast.group_token, b"{}") == 404
    assert django_call(missing, cast.group_token, b"{}") == 404
    MLModel.objects.filter(pk=deployed.pk).update(status=MLModel.Status.DISABLED)
    assert django_call(deployed, cast.group_token, b"{}") == 409
    samples = scrape()
    counted = {
        status: value(samples, "neomaril_run_calls_refused_total", status=status) - before[status]
        for status in before
    }
    assert counted == {"401": 1, "403": 1, "404": 2, "409": 1}
    # Never per model: an unknown hash makes no series.
    assert not [
        labels
        for name, labels in samples
        if name == "neomaril_run_calls_refused_total" and dict(labels).keys() != {"status"}
    ]
