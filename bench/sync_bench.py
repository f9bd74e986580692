"""Sync serving benchmark: the real processes (gunicorn + worker + model host) against
the physical limit of calling `score()` in-process.

    make bench          # or: .venv/bin/python bench/sync_bench.py [--duration 10]

Trains a logistic-regression pipeline on scikit-learn's breast-cancer data, deploys it
through the API, and prints in-process score() time, HTTP p50/p99 at concurrency 1,
throughput at concurrency 8 (wrk), the target ratios, the platform's own overhead with a
trivial model, and throughput with input recording on and off. Everything runs on this
machine in one run, so the ratios compare like with like.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models_app.interpreters import discover_interpreters, find_interpreter  # noqa: E402
from tests.helpers.processes import PortalClient, RunningPortal  # noqa: E402

PYTHON = "3.11"
REQUIREMENTS = "scikit-learn==1.6.1\npandas==2.2.3\n"

TRAIN = textwrap.dedent(
    """
    import json, pickle, sys
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X, y)
    pickle.dump(model, open(sys.argv[1] + "/model.pkl", "wb"))
    json.dump(X.iloc[0].to_dict(), open(sys.argv[1] + "/schema.json", "w"))
    """
)

SKLEARN_SOURCE = textwrap.dedent(
    """
    import json
    import os
    import pickle

    import pandas as pd

    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.pkl"), "rb") as f:
        MODEL = pickle.load(f)


    def score(data, base_path):
        df = pd.DataFrame(data=json.loads(data), index=[0])
        return {"pred": int(MODEL.predict(df)[0]), "proba": float(MODEL.predict_proba(df)[0, 1])}
    """
)

TRIVIAL_SOURCE = "def score(data, base_path):\n    return {'ok': 1}\n"

IN_PROCESS = textwrap.dedent(
    """
    import importlib.util, json, statistics, sys, time
    folder, source, calls = sys.argv[1], sys.argv[2], int(sys.argv[3])
    spec = importlib.util.spec_from_file_location("app", folder + "/" + source)
    module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)
    data = open(folder + "/schema.json").read()
    for _ in range(200):
        module.score(data, folder)
    walls = []
    cpu_start = time.process_time()
    for _ in range(calls):
        t = time.perf_counter(); module.score(data, folder); walls.append(time.perf_counter() - t)
    cpu = (time.process_time() - cpu_start) / calls
    print(json.dumps({"median_ms": statistics.median(walls) * 1000, "cpu_ms": cpu * 1000}))
    """
)

WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
"""
WRK_TOKEN = 'wrk.headers["Authorization"] = "Bearer {token}"\n'


def ensure_wrk() -> str:
    if not shutil.which("wrk"):
        print("Installing wrk from Debian's packages...", flush=True)
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "wrk"],
            check=True,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    return shutil.which("wrk")


def uv() -> str:
    from uv import find_uv_bin

    return find_uv_bin()


def make_venv(venv: Path, requirements: list[str]) -> Path:
    """A throw-away venv of the host's Python (the one the platform gives models) with
    `requirements` from PyPI; returns its interpreter."""
    python = find_interpreter(PYTHON, discover_interpreters()).path
    subprocess.run([uv(), "venv", "-q", "--no-project", "-p", str(python), str(venv)], check=True)
    subprocess.run(
        [uv(), "pip", "install", "-q", "-p", str(venv / "bin" / "python"), *requirements], check=True
    )
    return venv / "bin" / "python"


def train(folder: Path) -> Path:
    """Train in a throw-away venv with the same requirements the model will get."""
    python = make_venv(folder / "train-venv", REQUIREMENTS.split())
    subprocess.run([str(python), "-c", TRAIN, str(folder)], check=True)
    return python


def in_process(python: Path, folder: Path, source: str, calls: int = 3000) -> dict:
    (folder / "app.py").write_text(source)
    # Same thread settings as a runner (models_app.serving.host.SINGLE_THREADED).
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    out = subprocess.run(
        [str(python), "-c", IN_PROCESS, str(folder), "app.py", str(calls)],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    return json.loads(out.stdout)


def children_cpu() -> float:
    """CPU seconds of this script's finished children (wrk runs)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# Warm-up runs print the first error answers (a callback per response costs wrk CPU,
# so measured runs go without it and only count them).
SHOW_ERRORS = """
shown = 0
response = function(status, headers, body)
  if status ~= 200 and shown < 5 then
    shown = shown + 1
    io.stderr:write("HTTP " .. status .. ": " .. body .. "\\n")
  end
end
"""


def wrk(
    url: str,
    token: str | None,
    body: str,
    *,
    connections: int,
    duration: int,
    folder: Path,
    warm_up: bool = False,
) -> dict:
    """POST `body` to `url` for `duration` seconds (with the group token, if any)."""
    script = folder / "post.lua"
    script.write_text(
        WRK_SCRIPT.format(body=json.dumps(body))
        + (WRK_TOKEN.format(token=token) if token else "")
        + (SHOW_ERRORS if warm_up else "")
    )
    threads = min(connections, 2)
    completed = subprocess.run(
        ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--latency", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    )
    out, errors = completed.stdout, completed.stderr
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if non_2xx:
        raise SystemExit(f"wrk got {non_2xx.group(1)} error answers:\n{out}{errors}")

    def ms(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return {
        "requests": int(re.search(r"(\d+) requests in", out).group(1)),
        "p50_ms": ms("50"),
        "p99_ms": ms("99"),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
    }


# A process's kind by its command line, first match wins (a runner's bwrap carries
# runner.py in its arguments too, and counts with it).
CPU_KINDS = (("runner.py", "runners"), ("gunicorn", "web"), ("modelhost", "host"), ("qcluster", "worker"))


def cpu_split(portal: RunningPortal) -> dict[str, float]:
    """CPU seconds used so far by the portal's processes, by kind: model runners, web
    workers, the model host, the task worker, and the rest (supervisord, shells)."""
    import psutil

    totals = dict.fromkeys([kind for _, kind in CPU_KINDS] + ["other"], 0.0)
    for proc in psutil.Process(portal.process.pid).children(recursive=True):
        try:
            command = " ".join(proc.cmdline())
            times = proc.cpu_times()
        except psutil.Error:
            continue
        kind = next((kind for marker, kind in CPU_KINDS if marker in command), "other")
        totals[kind] += times.user + times.system
    return totals


def deploy(client: PortalClient, folder: Path, source: str, name: str, replicas: int | None) -> str:
    """Upload the model of `folder` with `source`; `replicas` fixes its runner count
    (min = max); None keeps the default (replicas following the load)."""
    files = {
        "source": ("app.py", source.encode()),
        "model": ("model.pkl", (folder / "model.pkl").read_bytes()),
        "requirements": ("requirements.txt", REQUIREMENTS.encode()),
        "schema": ("schema.json", (folder / "schema.json").read_bytes()),
    }
    model_hash = client.deploy(group="bench", files=files, name=name, python_version=PYTHON)
    if replicas is not None:
        client.patch(
            f"/api/v1/models/{model_hash}", json={"min_replicas": replicas, "max_replicas": replicas}
        )
    return model_hash


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="alternating recording on/off rounds at c=8")
    args = parser.parse_args()
    ensure_wrk()
    cores = os.cpu_count() or 1
    work = Path(tempfile.mkdtemp(prefix="neomaril-bench-"))
    try:
        print(
            f"Training the model (Python {PYTHON}, {REQUIREMENTS.strip().replace(chr(10), ', ')})...",
            flush=True,
        )
        python = train(work)
        body = (work / "schema.json").read_text()
        sklearn_local = in_process(python, work, SKLEARN_SOURCE)
        trivial_local = in_process(python, work, TRIVIAL_SOURCE)

        results: dict = {}
        # Two portals side by side, recording on and off; rounds alternate between them
        # so both see the same machine noise. An idle portal costs almost no CPU.
        portals = {
            flag: RunningPortal(
                work / f"portal-{flag}",
                extra_env={"NEOMARIL_RECORD_PREDICTIONS": "1" if flag == "on" else "0"},
            )
            for flag in ("on", "off")
        }
        try:
            targets = {}
            for flag, portal in portals.items():
                portal.wait_healthy()
                client = PortalClient(portal)
                token = client.create_group("bench")
                sklearn = deploy(client, work, SKLEARN_SOURCE, "breast cancer", replicas=cores)
                targets[flag] = (f"{portal.url}/api/v1/run/{sklearn}", token)
                # Start every replica, fill the pools.
                wrk(*targets[flag], body, connections=8, duration=3, folder=work, warm_up=True)
                if flag == "on":
                    trivial = deploy(client, work, TRIVIAL_SOURCE, "trivial", replicas=cores)
                    targets["trivial"] = (f"{portal.url}/api/v1/run/{trivial}", token)
                    wrk(*targets["trivial"], body, connections=8, duration=3, folder=work, warm_up=True)
            results["c1"] = wrk(*targets["on"], body, connections=1, duration=args.duration, folder=work)
            results["trivial_c1"] = wrk(
                *targets["trivial"], body, connections=1, duration=args.duration, folder=work
            )
            results["trivial_c8"] = wrk(
                *targets["trivial"], body, connections=8, duration=args.duration, folder=work
            )
            rounds = {"on": [], "off": []}
            split = {"web": 0.0, "runners": 0.0, "other": 0.0, "wrk": 0.0, "calls": 0}
            for _ in range(args.rounds):
                for flag in ("on", "off"):
                    before, wrk_before = cpu_split(portals[flag]), children_cpu()
                    result = wrk(*targets[flag], body, connections=8, duration=args.duration, folder=work)
                    rounds[flag].append(result)
                    if flag == "on":
                        after = cpu_split(portals[flag])
                        for kind, seconds in after.items():
                            split[kind if kind in ("web", "runners") else "other"] += seconds - before[kind]
                        split["wrk"] += children_cpu() - wrk_before
                        split["calls"] += result["requests"]
            web_workers = len(portals["on"].programs()["web"].children())
            for flag, runs in rounds.items():
                median_round = sorted(runs, key=lambda r: r["rps"])[len(runs) // 2]
                results[f"c8_recording_{flag}"] = median_round
                results[f"c8_recording_{flag}_all"] = [round(r["rps"]) for r in runs]
        finally:
            for portal in portals.values():
                portal.stop()
        # Once more after the HTTP runs: the machine's speed drifts, and the ratio's
        # denominator should not hang on one moment.
        sklearn_after = in_process(python, work, SKLEARN_SOURCE)
        cpu_ms = (sklearn_local["cpu_ms"] + sklearn_after["cpu_ms"]) / 2

        c1, c8 = results["c1"], results["c8_recording_on"]
        ideal_rps = cores / (cpu_ms / 1000)
        overhead = c1["p50_ms"] - sklearn_local["median_ms"]
        efficiency = c8["rps"] / ideal_rps
        off = results["c8_recording_off"]
        print()
        print(
            f"Machine: {cores} cores; gunicorn {web_workers} workers; {cores} runner replicas; wrk {args.duration} s per run"
        )
        print(
            f"breast-cancer pipeline, in-process score(): median {sklearn_local['median_ms']:.3f} ms, "
            f"CPU {cpu_ms:.3f} ms/call (before the HTTP runs {sklearn_local['cpu_ms']:.3f}, after {sklearn_after['cpu_ms']:.3f})"
        )
        print(f"  HTTP c=1: p50 {c1['p50_ms']:.2f} ms, p99 {c1['p99_ms']:.2f} ms, {c1['rps']:.0f} req/s")
        print(f"  HTTP c=8: {c8['rps']:.0f} req/s (p50 {c8['p50_ms']:.2f} ms, p99 {c8['p99_ms']:.2f} ms)")
        print(
            f"  overhead p50(c=1) - in-process median = {overhead:.2f} ms   (target <= 3 ms: {'met' if overhead <= 3 else 'NOT met'})"
        )
        print(
            f"  throughput(c=8) / (cores / CPU per call) = {c8['rps']:.0f} / {ideal_rps:.0f} = {efficiency:.2f}   (target >= 0.7: {'met' if efficiency >= 0.7 else 'NOT met'})"
        )
        print(
            f"  recording on: {c8['rps']:.0f} req/s, off: {off['rps']:.0f} req/s ({(c8['rps'] / off['rps'] - 1) * 100:+.1f}%)"
            f"  (median of alternating rounds: on {results['c8_recording_on_all']}, off {results['c8_recording_off_all']})"
        )
        calls = split["calls"]
        print(
            "  CPU per call at c=8, recording on (ms): "
            + ", ".join(
                f"{kind} {split[kind] / calls * 1000:.3f}" for kind in ("runners", "web", "wrk", "other")
            )
            + f"; total {sum(split[k] for k in ('runners', 'web', 'wrk', 'other')) / calls * 1000:.3f}"
        )
        t1, t8 = results["trivial_c1"], results["trivial_c8"]
        print(f"trivial model (constant dict), in-process {trivial_local['median_ms'] * 1000:.1f} us")
        print(
            f"  HTTP c=1: p50 {t1['p50_ms']:.2f} ms, p99 {t1['p99_ms']:.2f} ms; c=8: {t8['rps']:.0f} req/s  (the platform's own overhead)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
