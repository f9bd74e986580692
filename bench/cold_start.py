"""What the sandbox adds to a model's cold start: one oneshot call, sandboxed and not.

Runs the real launcher (models_app.runtime.sandbox) and runner.py on a small model
(imports json and pickle, loads a pickled dict, answers one call), alternating the two
modes in one run so both see the same machine load. Warm calls never go through the
launcher, so this is the whole cost of the sandbox on the serving path.

    .venv/bin/python bench/cold_start.py [--runs 15] [--python /path/to/python3.11]
"""

from __future__ import annotations

import argparse
import os
import pickle
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
os.environ.setdefault("NEOMARIL_DATA_DIR", tempfile.mkdtemp(prefix="neomaril-bench-"))

import django  # noqa: E402

django.setup()

from django.test import override_settings  # noqa: E402

from models_app.runtime.oneshot import run_oneshot  # noqa: E402
from models_app.runtime.sandbox import Limits, UserCode  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--python", default=sys.executable, help="the interpreter of the model")
    args = parser.parse_args()
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
