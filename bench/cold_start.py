"""Cold starts: what the sandbox adds to one call, and upload → Deployed → first call.

Default mode: runs the real launcher (models_app.runtime.sandbox) and runner.py on a
small model (imports json and pickle, loads a pickled dict, answers one call),
alternating sandboxed and unsandboxed in one run so both see the same machine load.
Warm calls never go through the launcher, so this is the whole cost of the sandbox on
the serving path.

    .venv/bin/python bench/cold_start.py [--runs 15] [--python /path/to/python3.11]

`--deploy`: starts the real processes (`make run`) twice, warm-on-deploy on and off
(`NEOMARIL_WARM_ON_DEPLOY`), uploads the scikit-learn pipeline model of the build tests
once to build its environment, then `--runs` more uploads of it (same requirements: the
environment exists) and times upload → Deployed and the first call after Deployed.
Then the cold import of pandas + scikit-learn in that environment, with the bytecode
compiled at build time and with every `__pycache__` removed (read-only, as in the sandbox).

    .venv/bin/python bench/cold_start.py --deploy [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("NEOMARIL_DATA_DIR", tempfile.mkdtemp(prefix="neomaril-bench-"))

import django  # noqa: E402

django.setup()

from django.test import override_settings  # noqa: E402

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


def deploy_and_call(client: PortalClient, files: dict, token: str, name: str) -> tuple[float, float, dict]:
    """Seconds from the upload to Deployed, then the first call's seconds and answer."""
    started = time.perf_counter()
    created = client.post(
        "/api/v1/models",
        data={
            "group": "bench",
            "name": name,
            "operation": "Sync",
            "model_reference": "score",
            "python_version": real_models.PYTHON,
        },
        files=files,
    )
    assert created.status_code == 201, created.text
    model_hash = created.json()["hash"]
    while (status := client.get(f"/api/v1/models/{model_hash}/status").json()["status"]) not in {
        "Deployed",
        "Failed",
    }:
        time.sleep(0.02)
    deployed = time.perf_counter() - started
    if status != "Deployed":
        raise SystemExit(client.get(f"/api/v1/models/{model_hash}/logs").json()["log"])
    started = time.perf_counter()
    answer = requests.post(
        f"{client.url}/api/v1/run/{model_hash}",
        data=json.dumps(real_models.SCHEMA),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        timeout=120,
    )
    first_call = time.perf_counter() - started
    assert answer.status_code == 200, answer.text
    return deployed, first_call, answer.json()


def cold_import(python: Path) -> float:
    """Seconds for a fresh interpreter to import pandas and scikit-learn's pipeline, writing no .pyc."""
    code = "import pandas, sklearn.pipeline, sklearn.linear_model, sklearn.preprocessing"
    started = time.perf_counter()
    subprocess.run(
        [str(python), "-c", code], check=True, env={"PYTHONDONTWRITEBYTECODE": "1", "PATH": "/usr/bin"}
    )
    return time.perf_counter() - started


def deploy_bench(runs: int) -> None:
    work = Path(tempfile.mkdtemp(prefix="neomaril-cold-deploy-"))
    print("Training the model (the build tests' scikit-learn pipeline)...", flush=True)
    pickle_bytes = real_models.train_model_pickle(work / "trained").read_bytes()
    files = {
        "source": ("app.py", real_models.SYNC_SOURCE.encode()),
        "model": ("model.pkl", pickle_bytes),
        "requirements": ("requirements.txt", real_models.REQUIREMENTS.encode()),
        "schema": ("schema.json", json.dumps(real_models.SCHEMA).encode()),
    }
    figures: dict[str, list[tuple[float, float]]] = {}
    env_path = None
    try:
        for warm in ("1", "0"):
            portal = RunningPortal(work / f"portal-warm-{warm}", extra_env={"NEOMARIL_WARM_ON_DEPLOY": warm})
            try:
                portal.wait_healthy()
                client = PortalClient(portal)
                token = client.create_group("bench")
                deploy_and_call(client, files, token, "builds the environment")
                figures[warm] = [deploy_and_call(client, files, token, f"run {n}")[:2] for n in range(runs)]
                env_path = next((portal.data_dir / "envs").glob("[0-9a-f]" * 8 + "*"))
            finally:
                portal.stop()
        print(f"\nupload → Deployed with an existing environment, then the first call ({runs} runs each)")
        for warm, label in (("1", "warm on deploy (default)"), ("0", "NEOMARIL_WARM_ON_DEPLOY=0")):
            deployed = [d for d, _ in figures[warm]]
            first = [f for _, f in figures[warm]]
            print(
                f"  {label:26s} Deployed after median {statistics.median(deployed):5.2f} s"
                f" (max {max(deployed):5.2f});  first call median {statistics.median(first) * 1000:7.1f} ms"
                f" (max {max(first) * 1000:7.1f})"
            )
        assert env_path is not None
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
    parser.add_argument("--runs", type=int, default=None, help="15 (3 with --deploy)")
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the model")
    parser.add_argument(
        "--deploy", action="store_true", help="upload → Deployed → first call, real processes"
    )
    args = parser.parse_args()
    if args.deploy:
        deploy_bench(args.runs or 3)
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
