"""The metrics the processes count (groups.metrics): series per model version, calls in flight."""

from __future__ import annotations

import itertools
import time

import pytest
from prometheus_client import REGISTRY, CollectorRegistry, Histogram

from groups import metrics
from models_app.calls import CalledModel
from models_app.models import ModelBuild
from monitors.models import Period
from training.models import TrainingRun

_pks = itertools.count(10_000)


def called_model(model_hash: str, version: int = 1) -> CalledModel:
    """A model version no other test counts calls for (its own hash and row)."""
    return CalledModel(
        next(_pks),
        f"{model_hash}v{version}",
        "Deployed",
        "Sync",
        1,
        1,
        None,
        None,
        True,
        1,
        version,
        1,
        model_hash,
    )


def sample(name: str, **labels) -> float | None:
    return REGISTRY.get_sample_value(name, labels)


def test_a_call_is_counted_by_model_version_and_status_with_its_latency():
    model = called_model("Mseries", version=3)
    metrics.observe_call(model, 200, 0.004)
    metrics.observe_call(model, 200, 0.2)
    metrics.observe_call(model, 422, 0.001)
    metrics.publish()
    labels = {"model": "Mseries", "version": "3"}
    assert sample("neomaril_model_requests_total", **labels, status="200") == 2
    assert sample("neomaril_model_requests_total", **labels, status="422") == 1
    assert sample("neomaril_model_request_duration_seconds_count", **labels) == 3
    assert sample("neomaril_model_request_duration_seconds_bucket", **labels, le="0.005") == 2
    assert sample("neomaril_model_request_duration_seconds_sum", **labels) == pytest.approx(0.205)


def test_series_are_created_once_per_version():
    first, second = called_model("Monce", 1), called_model("Monce", 2)
    assert metrics.model_series(first) is metrics.model_series(first)
    assert metrics.model_series(first) is not metrics.model_series(second)
    series = metrics.model_series(first)
    assert series.requests(200) is series.requests(200)
    assert series.labels == ("Monce", "1")


def test_answered_calls_reach_the_metrics_when_published_as_observe_writes_them():
    # A series outside the process's registry, published by the test alone (as below).
    series = metrics.ModelSeries(called_model("Mbatch"))
    values = [0.0004, 0.001, 0.001, 0.0011, 0.7, 29.9, 30, 61]  # bounds, between, past the last
    for seconds in values:
        series.observe(200, seconds)
    series.observe(503, 0.02)
    labels = {"model": "Mbatch", "version": "1"}
    assert sample("neomaril_model_requests_total", **labels, status="200") is None  # not yet
    series.publish()
    series.publish()  # nothing new: nothing written twice
    reference = Histogram("reference_seconds", "", registry=CollectorRegistry(), buckets=metrics.CALL_BUCKETS)
    for seconds in [*values, 0.02]:
        reference.observe(seconds)
    expected = {s.labels["le"]: s.value for s in reference.collect()[0].samples if s.name.endswith("_bucket")}
    got = {le: sample("neomaril_model_request_duration_seconds_bucket", **labels, le=le) for le in expected}
    assert got == expected
    assert sample("neomaril_model_request_duration_seconds_sum", **labels) == pytest.approx(
        sum(values) + 0.02
    )
    assert sample("neomaril_model_requests_total", **labels, status="200") == len(values)
    assert sample("neomaril_model_requests_total", **labels, status="503") == 1


def test_calls_in_flight_reach_the_gauge_when_published():
    # A series outside the process's registry: the publisher thread, which earlier tests of
    # this process may have started, never publishes it behind the test's back.
    series = metrics.ModelSeries(called_model("Mflight"))
    series.call_started()
    series.call_started()
    series.publish()
    assert sample("neomaril_model_calls_in_flight", model="Mflight", version="1") == 2
    series.call_ended()
    series.call_ended()
    assert sample("neomaril_model_calls_in_flight", model="Mflight", version="1") == 2  # not yet
    series.publish()
    assert sample("neomaril_model_calls_in_flight", model="Mflight", version="1") == 0


def test_the_publisher_thread_runs_after_the_first_call(monkeypatch):
    monkeypatch.setattr(metrics._Publisher, "EVERY", 0.01)
    model = called_model("Mthread")
    series = metrics.model_series(model)
    series.call_started()
    assert metrics._publisher._thread is not None and metrics._publisher._thread.is_alive()
    deadline = time.monotonic() + 5
    while sample("neomaril_model_calls_in_flight", model="Mthread", version="1") != 1:
        assert time.monotonic() < deadline, "the publisher did not publish"
        time.sleep(0.01)
    series.call_ended()


def test_job_kinds_are_the_models_names():
    assert metrics.job_kind(ModelBuild) == "model_build"
    assert metrics.job_kind(TrainingRun) == "training_run"
    assert metrics.job_kind(Period) == "period"


def test_fast_calls_are_told_apart_below_the_millisecond_and_around_it():
    """A warm call through the stack takes 0.5-2.5 ms: buckets that wide put every p50 in
    one bucket."""
    series = metrics.ModelSeries(called_model("Mfine"))
    for seconds in (0.0002, 0.0004, 0.0008, 0.0012, 0.002):
        series.observe(200, seconds)
    series.publish()
    labels = {"model": "Mfine", "version": "1"}
    cumulative = [
        sample("neomaril_model_request_duration_seconds_bucket", **labels, le=le)
        for le in ("0.00025", "0.0005", "0.001", "0.0015", "0.0025")
    ]
    assert cumulative == [1, 2, 3, 4, 5]
