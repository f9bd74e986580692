"""What walking a group's folders costs (groups.storage.measure, run by the housekeeping
every 10 minutes per group, and within a minute of a deletion), and what taking an
upload's bytes costs (groups.storage.take, in the upload's transaction).

Sets up a throw-away data folder and database with one group, one Async model and
``--executions`` execution folders (an input and a result each, as retention keeps them),
then times, median of ``--repeat``:

- the walk of the group's folders (cold: the kernel's dentry cache dropped first when
  run as root; warm: walked again at once);
- ``take``: one conditional UPDATE.

    .venv/bin/python bench/storage_walk.py [--executions 100000] [--repeat 3]

The data folder is on this machine's disk: on NFS each entry costs a round trip.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from inprocess import setup_django  # noqa: E402  (bench/ is this script's folder)

setup_django()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402

from groups import storage  # noqa: E402
from groups.models import Group  # noqa: E402
from models_app.models import MLModel  # noqa: E402


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as caches:
            caches.write("2\n")  # dentries and inodes
        return True
    except OSError:
        return False


def timed(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--executions", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    group = Group.objects.create(name="bench")
    model = MLModel.objects.create(
        name="m", group=group, operation="Async", model_reference="score", python_version="3.11",
        source_file="app.py", model_file="model.pkl", requirements_file="requirements.txt", status="Deployed",
    )  # fmt: skip
    root = settings.EXECUTIONS_DIR / model.hash
    for number in range(1, args.executions + 1):
        folder = root / str(number)
        folder.mkdir(parents=True)
        (folder / "input.csv").write_bytes(b"a,b\n1,2\n" * 64)
        (folder / "output.csv").write_bytes(b"a,b,pred\n1,2,0\n" * 64)
    entries = args.executions * 3
    cold = []
    for _ in range(args.repeat):
        if not drop_caches():
            break
        cold.append(timed(lambda: storage.measure(group.pk)))
    warm = [timed(lambda: storage.measure(group.pk)) for _ in range(args.repeat)]
    measured = storage.measure(group.pk)
    print(f"{args.executions:,} executions ({entries:,} entries, {measured / 2**20:,.0f} MB counted); "
          f"median of {args.repeat}")  # fmt: skip
    if cold:
        print(
            f"walk, cold cache: {statistics.median(cold):.2f} s ({statistics.median(cold) / entries * 1e6:.1f} µs an entry)"
        )
    else:
        print("walk, cold cache: not measured (dropping the kernel's caches needs root)")
    print(
        f"walk, warm cache: {statistics.median(warm):.2f} s ({statistics.median(warm) / entries * 1e6:.1f} µs an entry)"
    )

    def take() -> None:
        with transaction.atomic():
            storage.take(group, 4096)
            transaction.set_rollback(True)

    takes = [timed(take) for _ in range(args.repeat * 100)]
    print(f"take (one conditional UPDATE, in its transaction): {statistics.median(takes) * 1000:.2f} ms")


if __name__ == "__main__":
    main()
