"""What the metrics add to every Sync call: CPU per call of groups.metrics' hot path.

    .venv/bin/python bench/metrics_cost.py [--calls 200000] [--repeat 7]

A Sync call does, on top of its own work: find the version's series (a dict lookup),
count the call in flight and out, and count its answer by status and its latency by
bucket: all of it locked integers the series adds up, which a thread writes to the
metrics twice a second (ModelSeries.publish). Measured in a
process writing prometheus-client's files (multiprocess mode, as under `make run`) and
in one keeping them in memory, as CPU time (process_time: a busy machine inflates wall
time far more). The best of --repeat rounds of --calls calls.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import timeit
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(calls: int, repeat: int) -> None:
    sys.path.insert(0, str(ROOT))
    from groups import metrics

    model = types.SimpleNamespace(hash="Mbenchv1", model_hash="Mbench", version=1)

    def one_call() -> None:  # what answers.count and aio.predict add to a call
        series = metrics.model_series(model)
        series.call_started()
        series.call_ended()
        metrics.observe_call(model, 200, 0.0012)

    series = metrics.model_series(model)
    parts = {
        "a whole call's metrics": one_call,
        "  in flight (count in and out)": lambda: (series.call_started(), series.call_ended()),
        "  answer and latency, added up": lambda: series.observe(200, 0.0012),
        "writing them at each call instead (not used): counter + histogram": lambda: (
            series.requests(200).inc(),
            series.latency.observe(0.0012),
        ),
        "a gauge's inc + dec for in flight instead (not used)": lambda: (
            series.in_flight_gauge.inc(),
            series.in_flight_gauge.dec(),
        ),
    }
    mode = "files (multiprocess)" if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else "memory"
    for name, work in parts.items():
        work()
        timer = timeit.Timer(work, timer=time.process_time)
        best = min(timer.repeat(number=calls, repeat=repeat)) / calls
        print(f"| {mode} | {name} | {best * 1e6:.2f} µs |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        measure(args.calls, args.repeat)
        return
    print("| values in | what | CPU per call |\n|---|---|---|")
    command = [sys.executable, __file__, "--child", "--calls", str(args.calls), "--repeat", str(args.repeat)]
    with tempfile.TemporaryDirectory() as folder:
        # prometheus-client picks files or memory at its first import: a process for each.
        env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
        subprocess.run(command, env={**env, "PROMETHEUS_MULTIPROC_DIR": folder}, check=True)
        subprocess.run(command, env=env, check=True)


if __name__ == "__main__":
    main()
