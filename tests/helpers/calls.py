"""Recorded calls written the way web processes write them (monitoring.recorder), so a
test's calls are counted in their hours (HourlyCalls) as production's are."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from monitoring.recorder import Call, Recorder


def record_calls(model, *calls: dict) -> None:
    """Write one call per dict (keys of monitoring.recorder.Call; `at` defaults to now,
    `status_code` to 200, `latency_ms` to 1.0, input and output to "{}") in one batch."""
    Recorder._insert([call(model, **fields) for fields in calls])


def call(
    model,
    *,
    at: datetime | None = None,
    status_code: int = 200,
    latency_ms: float = 1.0,
    input: str = "{}",  # noqa: A002 (the record's field)
    output: str = "{}",
    version: int = 1,
    live: bool = True,
) -> Call:
    """One call as the web process queues it (the defaults of record_calls)."""
    return Call(
        model_id=model.pk,
        version=version,
        at=at or timezone.now(),
        status_code=status_code,
        latency_ms=latency_ms,
        input=input,
        output=output,
        live=live,
    )
