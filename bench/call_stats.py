"""The call statistics' cost on a busy model: hourly counts (HourlyCalls) against counting
the records, and what counting by the hour adds to writing the calls.

Sets up a throw-away data folder and database, records ``--per-day`` calls a day for
``--days`` days to one Sync model through the recorder's own batch insert (500 calls a
batch, as a web process writes them), then times, in one run, median of ``--repeat``:

- ours: ``monitoring.stats.call_stats`` (the model page and ``GET /models/<hash>``) and
  the dashboard's 24-hour count, which sum the model's hours and count only the window's
  first part-hour from the records;
- rows: the same figures counted from the records (their covering index), as before
  HourlyCalls;
- writing: a batch through ``Recorder._insert`` (records + hourly counts) against the
  records' INSERT alone.

    .venv/bin/python bench/call_stats.py [--per-day 1600000] [--days 2] [--repeat 5]

PostgreSQL: set DATABASE_URL to an empty database (tests/backends.py starts one).
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta

from inprocess import setup_django  # noqa: E402  (bench/ is this script's folder)

setup_django()

from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.db.models import Count, Q  # noqa: E402

from groups.models import Group  # noqa: E402
from models_app.models import MLModel  # noqa: E402
from monitoring.models import PredictionRecord  # noqa: E402
from monitoring.recorder import BATCH_SIZE, Call, Recorder  # noqa: E402
from monitoring.stats import MAX_SAMPLES, WINDOW, call_stats, calls_since, latency_percentiles  # noqa: E402

INPUT = '{"age": 41, "income": 5200.5, "city": "Campinas", "segment": "B", "tenure_months": 17}'
OUTPUT = '{"pred": 1, "proba": 0.8125}'


def rows_call_stats(model_id: int) -> dict:
    """The statistics as they were counted before HourlyCalls: from the records alone."""
    since = datetime.now(UTC) - WINDOW
    records = PredictionRecord.objects.filter(model_id=model_id)
    window = records.filter(at__gte=since)
    day = window.aggregate(calls=Count("pk"), errors=Count("pk", filter=Q(status_code__gte=400)))
    latencies = list(window.order_by("-at").values_list("latency_ms", flat=True)[:MAX_SAMPLES])
    return {
        "total": records.count(),
        "day": day["calls"],
        "day_errors": day["errors"],
        "day_latency": latency_percentiles(latencies),
        "day_latency_samples": len(latencies),
        "last_at": records.order_by("-at").values_list("at", flat=True).first(),
    }


def records_only(batch: list[Call]) -> None:
    """Recorder._insert without adding to the hours."""
    with transaction.atomic(), connection.cursor() as cursor:
        Recorder.insert_records(cursor, batch)


def median_ms(function, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--per-day", type=int, default=1_600_000)
    parser.add_argument("--days", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    group = Group.objects.create(name="bench")
    model = MLModel.objects.create(
        name="bench", group=group, operation="Sync", model_reference="score", python_version="3.11",
        input_type="json", source_file="app.py", model_file="model.pkl", requirements_file="requirements.txt",
        status="Deployed", schema={"age": 41}, smoke_result={"pred": 1},
    )  # fmt: skip
    live = MLModel.objects.filter(pk=model.pk)

    total = args.per_day * args.days
    step = timedelta(days=args.days) / total
    start = datetime.now(UTC) - timedelta(days=args.days)
    written = time.perf_counter()
    for first in range(0, total, BATCH_SIZE):
        Recorder._insert([
            Call(model.pk, 1, start + step * n, 500 if n % 100 == 0 else 200, 1.0 + n % 7, INPUT, OUTPUT)
            for n in range(first, min(first + BATCH_SIZE, total))
        ])  # fmt: skip
    written = time.perf_counter() - written
    print(f"{connection.vendor}: {total:,} calls recorded ({args.per_day:,} a day for {args.days} days) "
          f"in {written:.0f} s; median of {args.repeat}")  # fmt: skip

    ours, rows = call_stats(model.pk), rows_call_stats(model.pk)
    for key in ("total", "day", "day_errors"):  # the window moved by a few ms between the two
        assert abs(ours[key] - rows[key]) <= args.per_day / 86_400 + 1, (key, ours[key], rows[key])
    since = datetime.now(UTC) - WINDOW
    figures = {
        "call_stats (model page, GET /models/<hash>)": (
            median_ms(lambda: call_stats(model.pk), args.repeat),
            median_ms(lambda: rows_call_stats(model.pk), args.repeat),
        ),
        "dashboard's 24-hour count": (
            median_ms(lambda: calls_since(since, model__in=live), args.repeat),
            median_ms(
                lambda: PredictionRecord.objects.filter(model__in=live, at__gte=since).count(), args.repeat
            ),
        ),
    }
    for name, (ours_ms, rows_ms) in figures.items():
        print(f"{name}: ours {ours_ms:.1f} ms, rows {rows_ms:.1f} ms ({rows_ms / ours_ms:.0f}x)")

    now = datetime.now(UTC)
    batch = [Call(model.pk, 1, now, 200, 1.0, INPUT, OUTPUT) for _ in range(BATCH_SIZE)]
    with_hours = median_ms(lambda: Recorder._insert(batch), args.repeat * 4)
    alone = median_ms(lambda: records_only(batch), args.repeat * 4)
    print(f"writing a batch of {BATCH_SIZE}: with hourly counts {with_hours:.2f} ms, records alone {alone:.2f} ms "
          f"(+{(with_hours - alone) / BATCH_SIZE * 1000:.1f} us a call)")  # fmt: skip


if __name__ == "__main__":
    main()
