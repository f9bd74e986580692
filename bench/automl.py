"""AutoML against a plain LightGBM and against FLAML, on scikit-learn's breast-cancer data.

Builds the AutoML environment from training/automl/requirements.txt with the platform's
own code (plus FLAML, when it installs beside those pins), then, in that environment, for
each seed: one split (train / validation / holdout, by search.py itself), and on it

- AutoML: search.py's train_model, ``--iterations`` trials over every model and stage;
- LightGBM with its default parameters, fitted on train + validation;
- FLAML's AutoML with the AutoML's wall time as its time budget, searching on train with
  the validation split, its best model then refitted on train + validation.

Each is scored on the same holdout (AUC). Libraries are imported before the clocks start;
every model uses one thread (the AutoML's rule, for reproducibility), FLAML included.

    .venv/bin/python bench/automl.py [--iterations 20] [--seeds 42 7 2024] [--holdout 0.2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
from pathlib import Path

from inprocess import ROOT, setup_django  # noqa: E402  (bench/ is this script's folder)

setup_django()

from django.conf import settings  # noqa: E402

from models_app import environments  # noqa: E402
from models_app.interpreters import discover_interpreters, find_interpreter  # noqa: E402
from models_app.validation.requirements import parse_requirements  # noqa: E402

AUTOML = ROOT / "training" / "automl"
FLAML = "flaml==2.8.0"  # no [automl] extra: it would pull the CUDA xgboost; xgboost-cpu serves it

# Runs in the AutoML environment: argv = search.py, seeds (JSON), iterations, holdout size, flaml?
COMPARE = r"""
import contextlib, importlib.util, io, json, os, sys, tempfile, time, warnings

search_path, seeds, iterations, holdout, with_flaml = sys.argv[1:6]
spec = importlib.util.spec_from_file_location("automl", search_path)
automl = importlib.util.module_from_spec(spec)
sys.modules["automl"] = automl
spec.loader.exec_module(automl)

import numpy as np
import pandas as pd
import catboost, category_encoders, feature_engine, imblearn, lightgbm, optuna, sklearn, xgboost  # noqa
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from lightgbm import LGBMClassifier
if with_flaml == "yes":
    from flaml import AutoML

warnings.filterwarnings("ignore")
data = load_breast_cancer(as_frame=True).frame
stages = {
    "models": ["logreg", "rf", "dt", "lightgbm", "xgboost", "catboost"],
    "missing": ["mean", "median", "tail", "random", "none"],
    "cleaner": ["iqr", "rare", "none"],
    "encoding": ["rankcount", "catboost", "count", "dt"],
    "preprocess": ["norm", "robust", "minmax", "binarizer", "none"],
    "unbalance": ["smote", "random_under", "none"],
}
for seed in json.loads(seeds):
    folder = tempfile.mkdtemp()
    data.to_csv(os.path.join(folder, "dados.csv"), index=False)
    conf = {"train_data": {"file_type": "csv", "file_name": "dados.csv", "sep": ","},
            "model_flow": "classification", "target": "target", "cat_cols": None,
            "iterations": int(iterations), "metric": "auc", "seed": seed, "split_type": "random",
            "val_size": 0.2, "holdout_size": float(holdout), "stratify_col": "target", "date_col": None,
            "oot_split_size": None, "split_date": None, "stages": stages}
    with open(os.path.join(folder, "automl_conf.json"), "w") as f:
        json.dump(conf, f)
    # The very split train_model makes.
    prepared = automl._prepare(data, conf)
    split = automl._split(prepared, conf)
    X, y = prepared.X, prepared.y
    fit_rows = np.concatenate([split.train, split.validation])
    X_hold, y_hold = X.iloc[split.holdout], y.iloc[split.holdout].to_numpy()
    row = {"seed": seed, "rows": {"train": len(split.train), "validation": len(split.validation),
                                  "holdout": len(split.holdout)}}

    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = automl.train_model(folder)
    seconds = time.perf_counter() - started
    board = json.load(open(os.path.join(folder, "leaderboard.json")))
    best = board["trials"][0]
    row["automl"] = {"seconds": seconds, "auc": result["metrics"]["auc"],
                     "best": {k: v for k, v in best["params"].items() if "__" not in k},
                     "failed": sum(t["state"] != "COMPLETE" for t in board["trials"])}

    started = time.perf_counter()
    model = LGBMClassifier(random_state=seed, n_jobs=1, verbose=-1).fit(X.iloc[fit_rows], y.iloc[fit_rows])
    row["lightgbm"] = {"seconds": time.perf_counter() - started,
                       "auc": automl.auc(y_hold, model.predict_proba(X_hold)[:, 1])}

    if with_flaml == "yes":
        started = time.perf_counter()
        search = AutoML()
        search.fit(X.iloc[split.train], y.iloc[split.train], X_val=X.iloc[split.validation],
                   y_val=y.iloc[split.validation], task="classification", metric="roc_auc",
                   time_budget=seconds, seed=seed, n_jobs=1, verbose=0, retrain_full=False)
        final = clone(search.model.estimator).fit(X.iloc[fit_rows], y.iloc[fit_rows])
        row["flaml"] = {"seconds": time.perf_counter() - started, "best": search.best_estimator,
                        "auc": automl.auc(y_hold, final.predict_proba(X_hold)[:, 1])}
    print(json.dumps(row), flush=True)
"""


def build_environment(with_flaml: bool) -> Path:
    requirements = parse_requirements((AUTOML / "requirements.txt").read_text())
    return environments.ensure_environment(
        interpreter=find_interpreter("3.11", discover_interpreters(settings.PYTHON_SEARCH_PATHS)),
        requirements=requirements + ([FLAML] if with_flaml else []),
        envs_dir=settings.ENVS_DIR,
        log=lambda line: None,
        timeout=1800,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42])
    parser.add_argument(
        "--holdout", type=float, default=0.2, help="holdout share (the platform's default: 0.1)"
    )
    parser.add_argument("--no-flaml", action="store_true")
    args = parser.parse_args()

    with_flaml = not args.no_flaml
    try:
        env = build_environment(with_flaml)
    except environments.EnvironmentBuildError as exc:
        if not with_flaml:
            raise
        print(f"FLAML does not install beside the AutoML pins ({exc}); comparing without it")
        with_flaml, env = False, build_environment(False)
    python = environments.env_python(env)
    print(
        f"breast cancer (569 rows, 30 features); AutoML {args.iterations} iterations, all six models; "
        f"holdout {args.holdout:.0%}, validation 20 %; Python 3.11, one thread per model"
    )
    command = [str(python), "-c", COMPARE, str(AUTOML / "search.py"), json.dumps(args.seeds)]
    command += [str(args.iterations), str(args.holdout), "yes" if with_flaml else "no"]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(done.stderr[-5000:])
    rows = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    names = ["automl", "lightgbm"] + (["flaml"] if with_flaml else [])
    for row in rows:
        print(
            f"seed {row['seed']}: train {row['rows']['train']}, validation {row['rows']['validation']}, "
            f"holdout {row['rows']['holdout']}"
        )
        for name in names:
            figures = row[name]
            extra = f"  best {figures['best']}" if "best" in figures else ""
            if name == "automl":
                extra += f"  ({figures['failed']} failed trials)"
            print(f"  {name:9s} holdout AUC {figures['auc']:.4f}  {figures['seconds']:7.2f} s{extra}")
    if len(rows) > 1:
        for name in names:
            aucs = [row[name]["auc"] for row in rows]
            seconds = [row[name]["seconds"] for row in rows]
            print(
                f"mean {name:9s} holdout AUC {statistics.mean(aucs):.4f}  {statistics.mean(seconds):7.2f} s"
            )


if __name__ == "__main__":
    main()
