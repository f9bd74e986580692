"""What the process boundary costs a call, below HTTP: peers.py's score() called in a hot
loop, in a loop that pauses between calls (as every server waits for its next request),
and through runner.py's serve loop over a Unix socket from another process, one call at a
time. Interleaved rounds, medians shown.

    .venv/bin/python bench/boundary.py [--calls 3000] [--rounds 3]

The runner here is not sandboxed: the sandbox is set up once per runner start and adds
nothing per call (bench/README.md, "With the sandbox"). The gap between the hot loop and
the runner is what any design that keeps user code out of the web process pays, before
HTTP; the paused loop shows how much of it is the pause itself (caches and branch
predictors cooled by other processes), not the runner's code.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.peers import OURS_SOURCE  # noqa: E402
from bench.sync_bench import train  # noqa: E402
from models_app.runtime.protocol import HEADER, predict_frame  # noqa: E402

# Runs in the model's interpreter: "loop <calls> <pause_ms>" prints the CPU per call,
# "serve <socket>" answers frames with runner.py's own serve loop.
CHILD = """
import importlib.util, json, os, socket, sys, time
folder, mode = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("app", folder + "/app.py")
app = importlib.util.module_from_spec(spec); spec.loader.exec_module(app)
data = open(folder + "/schema.json").read()
if mode == "loop":
    calls, pause = int(sys.argv[3]), float(sys.argv[4]) / 1000
    for _ in range(200):
        app.score(data, folder)
    cpu = 0.0
    for _ in range(calls):
        if pause:
            time.sleep(pause)
        started = time.thread_time()
        app.score(data, folder)
        cpu += time.thread_time() - started
    print(json.dumps({"cpu_ms": cpu / calls * 1000}))
else:
    spec = importlib.util.spec_from_file_location("runner", sys.argv[4])
    runner = importlib.util.module_from_spec(spec); spec.loader.exec_module(runner)
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(sys.argv[3]); listener.listen(8)
    print("ready", flush=True)
    runner._Server(app.score, 0).serve_forever(listener)
"""

# A runner's thread settings (models_app.sandboxes.SINGLE_THREADED, which needs Django).
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
PAUSE_MS = 0.2  # about what a runner waits between calls at c=1


def loop(python: Path, work: Path, calls: int, pause_ms: float) -> float:
    out = subprocess.run(
        [str(python), "-c", CHILD, str(work), "loop", str(calls), str(pause_ms)],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": "/usr/bin:/bin", **SINGLE_THREADED},
    )
    return json.loads(out.stdout)["cpu_ms"]


def through_runner(server: psutil.Process, path: Path, frame: bytes, calls: int) -> float:
    """The runner's CPU per call (user + system, from /proc), one call at a time."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.connect(str(path))

        def call() -> None:
            sock.sendall(frame)
            (length,) = HEADER.unpack(sock.recv(HEADER.size, socket.MSG_WAITALL))
            answer = sock.recv(length, socket.MSG_WAITALL)
            if not answer.startswith(b'{"ok":true'):
                raise SystemExit(f"The runner answered an error: {answer[:500]!r}")

        for _ in range(200):
            call()
        before = server.cpu_times()
        for _ in range(calls):
            call()
        after = server.cpu_times()
    return (after.user + after.system - before.user - before.system) / calls * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000, help="calls per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="neomaril-boundary-"))
    server = None
    try:
        print("Training the pipeline (sync_bench's requirements)...", flush=True)
        python = train(work)
        (work / "app.py").write_text(OURS_SOURCE)
        path = work / "runner.sock"
        server = subprocess.Popen(
            [
                str(python),
                "-c",
                CHILD,
                str(work),
                "serve",
                str(path),
                str(ROOT / "models_app/runtime/runner.py"),
            ],
            stdout=subprocess.PIPE,
            text=True,
            env={"PATH": "/usr/bin:/bin", **SINGLE_THREADED},
        )
        if server.stdout.readline().strip() != "ready":
            raise SystemExit("The runner did not start")
        frame = predict_frame((work / "schema.json").read_text(), str(work))
        figures: dict[str, list[float]] = {"hot loop": [], "paused loop": [], "through the runner": []}
        for number in range(1, args.rounds + 1):
            print(f"Round {number} of {args.rounds}...", flush=True)
            figures["hot loop"].append(loop(python, work, args.calls, 0))
            figures["paused loop"].append(loop(python, work, args.calls, PAUSE_MS))
            figures["through the runner"].append(
                through_runner(psutil.Process(server.pid), path, frame, args.calls)
            )
            time.sleep(0.5)
        hot = statistics.median(figures["hot loop"])
        print()
        print(f"CPU per call of peers.py's score(), medians of {args.rounds} rounds of {args.calls} calls:")
        for name, values in figures.items():
            value = statistics.median(values)
            print(
                f"  {name:19} {value:.3f} ms  ({value - hot:+.3f} ms, {value / hot - 1:+.0%} over the hot loop)"
                f"  rounds {[round(v, 3) for v in values]}"
            )
        print(f"  (paused loop: {PAUSE_MS} ms of sleep before each call, only the call's CPU counted)")
    finally:
        if server is not None:
            server.kill()
            server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
