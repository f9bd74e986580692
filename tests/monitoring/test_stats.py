"""Call statistics: latency percentiles that one cold start cannot spoil."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from models_app.models import MLModel
from monitoring.stats import call_stats, latency_percentiles, percentile
from tests.helpers.calls import record_calls
from tests.helpers.clients import api_client
from tests.helpers.uploads import sync_payload

# 99 calls of 1..99 ms and one cold start of 5.3 s: the mean would read 102.5 ms.
WITH_COLD_START = [float(ms) for ms in range(1, 100)] + [5300.0]


def test_percentiles_of_a_known_list_with_one_huge_outlier():
    assert latency_percentiles(WITH_COLD_START) == {"p50": 50.5, "p95": 95.05, "p99": 151.01}
    assert sum(WITH_COLD_START) / len(WITH_COLD_START) == 102.5  # what the page showed before


def test_percentile_interpolates_like_numpy():
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0], 0) == 1.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 100) == 4.0
    assert latency_percentiles([7.0]) == {"p50": 7.0, "p95": 7.0, "p99": 7.0}
    assert latency_percentiles([]) is None
    with pytest.raises(ValueError):
        percentile([], 50)


@pytest.fixture
def model(cast):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    return MLModel.objects.get(hash=response.json()["hash"])


def test_call_stats_take_the_last_24_hours(model):
    now = timezone.now()
    record_calls(
        model,
        *(
            {"latency_ms": latency, "at": now - timedelta(seconds=n), "status_code": 422 if n == 3 else 200}
            for n, latency in enumerate(WITH_COLD_START)
        ),
        {"latency_ms": 99_999.0, "at": now - timedelta(hours=25)},  # outside the window
    )
    stats = call_stats(model.pk, now=now)
    assert stats["total"] == 101
    assert (stats["day"], stats["day_errors"], stats["day_latency_samples"]) == (100, 1, 100)
    assert stats["day_latency"] == {"p50": 50.5, "p95": 95.05, "p99": 151.01}
    assert stats["last_at"] == now


def test_call_stats_without_calls(model):
    stats = call_stats(model.pk)
    assert stats["day_latency"] is None and stats["total"] == 0 and stats["last_at"] is None
