"""Cold starts: what the sandbox adds to one call, and upload → Deployed → first call.

Default mode: runs the real launcher (models_app.runtime.sandbox) and runner.py on a
small model (imports json and pickle, loads a pickled dict, answers one call),
alternating sandboxed and unsandboxed in one run so both see the same machine load.
Warm calls never go through the launcher, so this is the whole cost of the sandbox on
the serving path.

    .venv/bin/python bench/cold_start.py [--runs 15] [--python /path/to/python3.11]

`--deploy`: upload → Deployed → first call through the real processes, the way a user
of the SDK sees it. Starts two portals (`make run`) side by side, warm-on-deploy on and
off (`NEOMARIL_WARM_ON_DEPLOY`), uploads the scikit-learn pipeline model of the build
tests to each once to build its environment, then `--runs` more uploads of it per
portal, alternating between the two so both see the same machine load (same
requirements: the environment exists). Each upload is the SDK's `create_model`, then
its `wait_ready`; the build log's timings line and the server's `deployed_at` say where
the time went. Then two calls over fresh HTTP connections: the first after Deployed and
a second one. Last, the cold import of pandas + scikit-learn in that environment, with
the bytecode compiled at build time and with every `__pycache__` removed (read-only, as
in the sandbox).

    .venv/bin/python bench/cold_start.py --deploy [--runs 5]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import psutil
import requests
from inprocess import setup_django  # noqa: E402  (bench/ is this script's folder)

setup_django()

from django.test import override_settings  # noqa: E402
from neomaril_codex.model import NeomarilModelClient  # noqa: E402

from models_app.runtime.oneshot import run_oneshot  # noqa: E402
from models_app.runtime.sandbox import Limits, UserCode  # noqa: E402
from tests.helpers import real_models  # noqa: E402
from tests.helpers.processes import PortalClient, RunningPortal  # noqa: E402

MODEL = """
import json, os, pickle
with open(os.path.join(os.path.dirname(__file__), "model.pkl"), "rb") as f:
    WEIGHTS = pickle.load(f)

def score(data, base_path):
    row = json.loads(data)
    return {"pred": sum(WEIGHTS[k] * v for k, v in row.items())}
"""


def one_call(code: UserCode, source: Path, unsafe: bool) -> float:
    with override_settings(UNSAFE_NO_SANDBOX=unsafe):
        started = time.perf_counter()
        result = run_oneshot(
            code,
            source=str(source),
            entrypoint="score",
            kind="sync",
            args=['{"a": 1, "b": 2}', "."],
            timeout=60,
        )
        elapsed = time.perf_counter() - started
    if not result.ok or result.result != {"pred": 5}:
        raise SystemExit(f"the model did not answer as expected: {result}")
    return elapsed


MODES = {"1": "warm on deploy (default)", "0": "NEOMARIL_WARM_ON_DEPLOY=0"}
# The build log's last but one line: "Timings: queue 0.06 s, interpreter 0.05 s, …, warm-up
# 1.89 s (sandbox start 0.01 s, model load 1.87 s, first call 0.01 s)."
TIMINGS_RE = re.compile(r" Timings: (.*)\.$", re.MULTILINE)
STEP_RE = re.compile(r"([a-z][a-z -]*?) (\d+\.\d+) s(?: \(([^)]*)\))?")


@dataclass
class Run:
    """One upload of the model, from the client's side and from its build log."""

    upload: float  # the SDK's create_model, without waiting
    started: float  # from the upload's start to the build's start on a worker (server's clock)
    deployed: float  # from the upload's start to the server's deployed_at
    seen: float  # from the upload's start to wait_ready's return
    steps: dict[str, float]  # the build's timings line, parts as "warm-up / model load"
    first_call: float
    second_call: float
    warm_pids: list[int] = field(default_factory=list)  # the runners the build warmed
    serving_pids: list[int] = field(default_factory=list)  # the runners after the two calls


def parse_timings(log: str) -> dict[str, float]:
    """The build's steps; none from a version of the platform before the timings line."""
    found = TIMINGS_RE.search(log)
    steps: dict[str, float] = {}
    if found is None:
        return steps
    for name, seconds, parts in STEP_RE.findall(found.group(1)):
        steps[name] = float(seconds)
        for part, part_seconds, _ in STEP_RE.findall(parts):
            steps[f"{name} / {part}"] = float(part_seconds)
    return steps


class Portal:
    """A running `make run` with an SDK client, a logged-in API client and a group token."""

    def __init__(self, work: Path, warm: str):
        self.warm = warm
        self.running = RunningPortal(
            work / f"portal-warm-{warm}", extra_env={"NEOMARIL_WARM_ON_DEPLOY": warm}
        )

    def connect(self) -> None:
        self.running.wait_healthy()
        self.api = PortalClient(self.running)
        self.token = self.api.create_group("bench")
        self.sdk = NeomarilModelClient(*self.running.admin, self.running.url, progress=False)

    def call(self, model_hash: str) -> float:
        """Seconds of one Sync call over a fresh connection."""
        started = time.perf_counter()
        answer = requests.post(
            f"{self.running.url}/api/v1/run/{model_hash}",
            data=json.dumps(real_models.SCHEMA),
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
            timeout=120,
        )
        elapsed = time.perf_counter() - started
        assert answer.status_code == 200, answer.text
        return elapsed

    def deploy_and_call(self, files: Path, name: str) -> Run:
        started = time.time()
        model = self.sdk.create_model(
            name,
            "score",
            files / "app.py",
            files / "model.pkl",
            files / "requirements.txt",
            schema=files / "schema.json",
            python_version=real_models.PYTHON,
            operation="Sync",
            group="bench",
            wait_for_ready=False,
        )
        uploaded = time.time()
        model.wait_ready()
        seen = time.time()
        first_call = self.call(model.model_hash)
        second_call = self.call(model.model_hash)
        status = self.api.get(f"/api/v1/models/{model.model_hash}/status", params={"include": "log"}).json()
        log = status["build"]["log"]
        warm = re.search(r"Warm: runner process\(es\) ([\d, ]+) serve the first call", log)
        runners = self.api.get(f"/api/v1/models/{model.model_hash}/runners").json()["runners"]
        return Run(
            upload=uploaded - started,
            started=unix_time(status["build"]["started_at"]) - started,
            deployed=unix_time(status["deployed_at"]) - started,
            seen=seen - started,
            # Before the timings line, at least the queue's pick-up from the build's times.
            steps=parse_timings(log)
            or {"queue": unix_time(status["build"]["started_at"]) - unix_time(status["build"]["created_at"])},
            first_call=first_call,
            second_call=second_call,
            warm_pids=[int(pid) for pid in warm.group(1).split(", ")] if warm else [],
            serving_pids=sorted(runner["pid"] for runner in runners),
        )

    def cpu_seconds(self) -> float:
        """CPU time used so far by this portal's processes, and by those of them already gone."""
        total = 0.0
        for process in self.running.tree():
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total


def unix_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def busy_cpu_seconds() -> float:
    """CPU time the whole machine has spent on anything but idling since it started."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


def median(values) -> float:
    return statistics.median(list(values))


def report(figures: dict[str, list[Run]]) -> None:
    modes = list(figures)
    runs = len(figures[modes[0]])
    print(f"\nupload → Deployed with an existing environment, then two calls (median of {runs} runs)")
    print(f"  {'':34s}" + "".join(f"{MODES[m]:>28s}" for m in modes))

    def row(label: str, values: list[str]) -> None:
        print(f"  {label:34s}" + "".join(f"{v:>28s}" for v in values))

    def seconds(label: str, pick) -> None:
        row(label, [f"{median(pick(r) for r in figures[m]):.2f} s" for m in modes])

    seconds("upload → Deployed, seen by wait_ready", lambda r: r.seen)
    seconds("  upload request (create_model)", lambda r: r.upload)  # the queue starts inside it
    names = []  # the build's steps, in the order of either mode's timings line
    for m in modes:
        for name in figures[m][0].steps:
            if name not in names:
                names.append(name)
    for name in names:
        row(
            f"  {'  ' if ' / ' in name else ''}{name.split(' / ')[-1]}",
            [
                f"{median(r.steps[name] for r in figures[m]):.2f} s" if name in figures[m][0].steps else "-"
                for m in modes
            ],
        )
    seconds(
        "  the rest of the build",  # claiming it, the log's writes, the status saved
        lambda r: (
            r.deployed - r.started - sum(v for k, v in r.steps.items() if k != "queue" and " / " not in k)
        ),
    )
    seconds("  wait_ready's poll (after Deployed)", lambda r: r.seen - r.deployed)
    seconds("upload → Deployed (server's clock)", lambda r: r.deployed)
    for label, pick in (
        ("first call after Deployed", lambda r: r.first_call),
        ("second call", lambda r: r.second_call),
    ):
        row(
            label,
            [
                f"{median(pick(r) for r in figures[m]) * 1000:.1f} ms (max {max(pick(r) for r in figures[m]) * 1000:.1f})"
                for m in modes
            ],
        )
    warmed = figures.get("1", [])
    if warmed:
        same = sum(1 for r in warmed if r.warm_pids and r.warm_pids == r.serving_pids)
        print(
            f"  warm on deploy: the runner the build warmed served the calls in {same} of {len(warmed)} runs"
        )


def cold_import(python: Path) -> float:
    """Seconds for a fresh interpreter to import pandas and scikit-learn's pipeline, writing no .pyc."""
    code = "import pandas, sklearn.pipeline, sklearn.linear_model, sklearn.preprocessing"
    started = time.perf_counter()
    subprocess.run(
        [str(python), "-c", code], check=True, env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin"}
    )
    return time.perf_counter() - started


def deploy_bench(runs: int) -> None:
    logging.getLogger("neomaril_codex").setLevel(logging.WARNING)  # one line per status otherwise
    work = Path(tempfile.mkdtemp(prefix="neomaril-cold-deploy-"))
    print("Training the model (the build tests' scikit-learn pipeline)...", flush=True)
    files = work / "files"
    files.mkdir()
    real_models.train_model_pickle(work / "trained").rename(files / "model.pkl")
    (files / "app.py").write_text(real_models.SYNC_SOURCE)
    (files / "requirements.txt").write_text(real_models.REQUIREMENTS)
    (files / "schema.json").write_text(json.dumps(real_models.SCHEMA))
    portals = [Portal(work, warm) for warm in MODES]
    figures: dict[str, list[Run]] = {portal.warm: [] for portal in portals}
    try:
        for portal in portals:
            portal.connect()
            portal.deploy_and_call(files, "builds the environment")
        # What else the machine did meanwhile: its busy CPU time minus ours (portals and bench).
        ours = [sum(os.times()[:4]) + sum(portal.cpu_seconds() for portal in portals), busy_cpu_seconds()]
        clock = time.monotonic()
        for n in range(runs):
            for portal in portals:
                figures[portal.warm].append(portal.deploy_and_call(files, f"run {n}"))
        elapsed = time.monotonic() - clock
        ours_now = sum(os.times()[:4]) + sum(portal.cpu_seconds() for portal in portals)
        others = (busy_cpu_seconds() - ours[1] - (ours_now - ours[0])) / elapsed
        env_path = next((portals[0].running.data_dir / "envs").glob("[0-9a-f]" * 8 + "*"))
    finally:
        for portal in portals:
            portal.running.stop()
    report(figures)
    cores = os.cpu_count() or 1
    print(
        f"  machine: {cores} cores; other work used {max(others, 0):.2f} of them on average during the runs"
        f" ({elapsed:.0f} s)"
    )
    if others > 0.25 * cores:
        print("  the machine was busy with other work: these figures are slower than a quiet machine's")
    try:
        stripped = work / "env-without-bytecode"
        shutil.copytree(env_path, stripped, symlinks=True)
        for cache in list(stripped.rglob("__pycache__")):
            shutil.rmtree(cache)
        timings = {"compiled": [], "no bytecode": []}
        for _ in range(max(runs, 3)):
            timings["compiled"].append(cold_import(env_path / "bin" / "python"))
            timings["no bytecode"].append(cold_import(stripped / "bin" / "python"))
        print("cold import of pandas + scikit-learn (fresh process, no .pyc written)")
        for name, values in timings.items():
            print(f"  {name:12s} median {statistics.median(values):5.2f} s  (min {min(values):5.2f})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=None, help="15 (5 with --deploy)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the model")
    parser.add_argument(
        "--deploy", action="store_true", help="upload → Deployed → first call, real processes"
    )
    args = parser.parse_args()
    if args.deploy:
        deploy_bench(args.runs or 5)
        return
    args.runs = args.runs or 15
    folder = Path(tempfile.mkdtemp(prefix="neomaril-cold-"))
    source = folder / "app.py"
    source.write_text(MODEL)
    (folder / "model.pkl").write_bytes(pickle.dumps({"a": 1, "b": 2}))
    code = UserCode(
        python=Path(args.python), env={}, cwd=folder, read_only=(folder,), limits=Limits(memory_mb=4096)
    )
    times: dict[str, list[float]] = {"sandboxed": [], "unsandboxed": []}
    one_call(code, source, unsafe=False)  # warm the page cache for both
    for _ in range(args.runs):
        times["sandboxed"].append(one_call(code, source, unsafe=False))
        times["unsandboxed"].append(one_call(code, source, unsafe=True))
    print(f"cold start of one call, {args.runs} runs each, interpreter {args.python}")
    for name, values in times.items():
        print(
            f"  {name:12s} min {min(values) * 1000:6.1f} ms  median {statistics.median(values) * 1000:6.1f} ms"
            f"  max {max(values) * 1000:6.1f} ms"
        )
    added = statistics.median(times["sandboxed"]) - statistics.median(times["unsandboxed"])
    print(f"  the sandbox adds {added * 1000:.1f} ms (median) to a cold start; warm calls are unchanged")


if __name__ == "__main__":
    main()
