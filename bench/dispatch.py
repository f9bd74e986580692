"""What handing out Async execution slots costs with a long queue: the fair dispatch
(each free slot to the group holding the fewest) against first come, first served.

Sets up a throw-away data folder and database with ``--groups`` groups of
``--models-per-group`` Async models and ``--waiting`` Requested executions spread over
them (one group holding most of them: a flood), then times one ``dispatch()`` handing out
``--free`` slots, median of ``--repeat``, each rolled back so every run sees the same queue.
``dispatch`` runs after every submission and every finished execution.

    .venv/bin/python bench/dispatch.py [--waiting 100000] [--free 3] [--repeat 9]

PostgreSQL: set DATABASE_URL to an empty database (tests/backends.py starts one).
"""

from __future__ import annotations

import argparse
import statistics
import time

from inprocess import setup_django  # noqa: E402  (bench/ is this script's folder)

setup_django()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection, transaction  # noqa: E402
from django.utils import timezone  # noqa: E402

from executions import services  # noqa: E402
from executions.models import Execution  # noqa: E402
from groups.models import Group  # noqa: E402
from models_app.models import MLModel  # noqa: E402


def first_come_first_served() -> list[int]:
    """dispatch() as it was before slots were shared between groups (bench/README.md)."""
    per_model_limit = settings.EXECUTION_CONCURRENCY_PER_MODEL
    chosen: list[int] = []
    with transaction.atomic():
        services._take_lock()
        in_use = services.slots_in_use()
        free = settings.EXECUTION_CONCURRENCY_TOTAL - sum(in_use.values())
        waiting = Execution.objects.filter(status=Execution.Status.REQUESTED, queued_at__isnull=True)
        while free > 0:
            saturated = [model_id for model_id, n in in_use.items() if n >= per_model_limit]
            batch = list(
                waiting.exclude(model_id__in=saturated)
                .exclude(pk__in=chosen)
                .order_by("pk")
                .values_list("pk", "model_id")[:free]
            )
            if not batch:
                break
            for pk, model_id in batch:
                if free and in_use.get(model_id, 0) < per_model_limit:
                    chosen.append(pk)
                    in_use[model_id] = in_use.get(model_id, 0) + 1
                    free -= 1
        if chosen:
            Execution.objects.filter(pk__in=chosen).update(queued_at=timezone.now())
    return chosen


def median_ms(function, repeat: int) -> tuple[float, list[int]]:
    times, handed = [], []
    for _ in range(repeat):
        with transaction.atomic():
            started = time.perf_counter()
            handed = function()
            times.append((time.perf_counter() - started) * 1000)
            transaction.set_rollback(True)  # the same queue for the next run; no task enqueued
    return statistics.median(times), handed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--models-per-group", type=int, default=5)
    parser.add_argument("--waiting", type=int, default=100_000)
    parser.add_argument("--free", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=9)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    settings.EXECUTION_CONCURRENCY_TOTAL = args.free
    models = []
    for g in range(args.groups):
        group = Group.objects.create(name=f"bench-{g}")
        for m in range(args.models_per_group):
            models.append(
                MLModel.objects.create(
                    name=f"m{m}",
                    group=group,
                    operation="Async",
                    model_reference="score",
                    python_version="3.11",
                    source_file="app.py",
                    model_file="model.pkl",
                    requirements_file="requirements.txt",
                    status="Deployed",
                )  # fmt: skip
            )
    flood, others = models[: args.models_per_group], models[args.models_per_group :]
    # The flood first (the oldest), then a few executions of every other group.
    rows, numbers = [], {}
    for n in range(args.waiting):
        model = flood[n % len(flood)] if n < args.waiting * 0.9 else others[n % len(others)]
        numbers[model.pk] = numbers.get(model.pk, 0) + 1
        rows.append(Execution(model=model, number=numbers[model.pk], input_file="in.csv", input_size=10))
    Execution.objects.bulk_create(rows, batch_size=5000)
    if connection.vendor == "postgresql":  # what autovacuum does after such an insert
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
    print(f"{connection.vendor}: {args.waiting:,} waiting executions, {len(models)} models of {args.groups} "
          f"groups (90% of them one group's); {args.free} free slots; median of {args.repeat}")  # fmt: skip

    fair_ms, fair = median_ms(services.dispatch, args.repeat)
    fifo_ms, fifo = median_ms(first_come_first_served, args.repeat)
    group_of = dict(MLModel.objects.values_list("pk", "group__name"))
    model_of = dict(Execution.objects.filter(pk__in=[*fair, *fifo]).values_list("pk", "model_id"))
    print(f"fair dispatch: {fair_ms:.1f} ms; slots to {sorted(group_of[model_of[pk]] for pk in fair)}")
    print(
        f"first come, first served: {fifo_ms:.1f} ms; slots to {sorted(group_of[model_of[pk]] for pk in fifo)}"
    )


if __name__ == "__main__":
    main()
