"""Call statistics of a Sync model: counts and latency percentiles of its recorded calls.

A mean hides what callers feel and is spoiled by one slow call (a cold start of a few
seconds once made a 2 ms model read "4088.6 ms average"): the model page and the API show
the median and the tail (p50, p95, p99) of the last 24 hours' calls instead.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from django.db.models import Count, Q, Sum
from django.utils import timezone

from monitoring.models import HourlyCalls, PredictionRecord

WINDOW = timedelta(hours=24)
# The newest calls of the window that the percentiles are taken over: enough for a
# stable p99, bounded so a busy model's page does not load a day of rows.
MAX_SAMPLES = 10_000
PERCENTILES = (50, 95, 99)
# A call's status from which it counts as an error (the caller's or the model's).
ERROR_STATUS = 400
HOUR = timedelta(hours=1)


def percentile(ordered: Sequence[float], q: float) -> float:
    """The q-th percentile of sorted values, interpolated linearly (numpy's default method)."""
    if not ordered:
        raise ValueError("no values")
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_percentiles(values: Sequence[float]) -> dict[str, float] | None:
    """{"p50": …, "p95": …, "p99": …} of the values (milliseconds); None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    return {f"p{q}": round(percentile(ordered, q), 2) for q in PERCENTILES}


def hour_of(at: datetime) -> datetime:
    """The start of the UTC hour `at` falls in: the key of its HourlyCalls row."""
    return at.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def calls_since(since: datetime, **models) -> tuple[int, int]:
    """(calls, errors) recorded since `since` for the models the lookup names
    (`model_id=…` or `model__in=…`).

    Whole hours come from HourlyCalls; only the part of the first hour after `since` is
    counted from the records (through their index by model and time), so the cost is
    that of at most an hour's calls however busy the day was.
    """
    start = hour_of(since)
    first_whole_hour = start if start == since else start + HOUR
    head = PredictionRecord.objects.filter(at__gte=since, at__lt=first_whole_hour, **models).aggregate(
        calls=Count("pk"), errors=Count("pk", filter=Q(status_code__gte=ERROR_STATUS))
    )
    hours = HourlyCalls.objects.filter(hour__gte=first_whole_hour, **models).aggregate(
        calls=Sum("calls"), errors=Sum("errors")
    )
    return head["calls"] + (hours["calls"] or 0), head["errors"] + (hours["errors"] or 0)


def call_stats(model_id: int, now: datetime | None = None) -> dict:
    """Recorded calls of one model: all-time count, the last 24 hours' calls, errors and latency."""
    since = (now or timezone.now()) - WINDOW
    records = PredictionRecord.objects.filter(model_id=model_id)
    day_calls, day_errors = calls_since(since, model_id=model_id)
    window = records.filter(at__gte=since)
    latencies = list(window.order_by("-at").values_list("latency_ms", flat=True)[:MAX_SAMPLES])
    total = HourlyCalls.objects.filter(model_id=model_id).aggregate(calls=Sum("calls"))["calls"]
    return {
        "total": total or 0,
        "day": day_calls,
        "day_errors": day_errors,
        "day_latency": latency_percentiles(latencies),
        "day_latency_samples": len(latencies),
        "last_at": records.order_by("-at").values_list("at", flat=True).first(),
    }
