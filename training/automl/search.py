"""Neomaril AutoML: the training script the platform supplies for AutoML runs.

An AutoML run is a Custom run whose source is this file: the platform copies it into the
run's work folder as ``automl.py``, writes the run's normalised configuration beside it
as ``automl_conf.json`` and calls ``train_model(base_path)`` through the training harness,
in an environment built from the pinned ``requirements.txt`` beside this file.

``train_model`` reads and checks the data, splits it (random, stratified or out of
time), searches ``iterations`` pipelines (missing values, cleaner, categorical encoding,
scaling, rebalancing, model and its hyperparameters) with Optuna's TPE sampler seeded by
the configuration, scores each on the validation split, refits the best one on train +
validation and evaluates it on the holdout. It writes leaderboard.json,
importances.json, roc.json, ks.json and schema.json into base_path.

Standalone on purpose: no platform import, and only numpy at module level, because the
platform's own interpreter imports this file for the metric functions below and has
numpy but none of the modelling libraries (those are imported inside the functions).
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from typing import NamedTuple

import numpy as np

CONF_FILE = "automl_conf.json"
ARTIFACTS = ("leaderboard.json", "importances.json", "roc.json", "ks.json", "schema.json")
HOLDOUT_METRICS = ("auc", "gini", "ks", "precision", "recall", "f1")
# Rebalancing is searched only when the minority class is under this share of the rows.
UNBALANCED_SHARE = 0.10
THRESHOLD = 0.5
MAX_CURVE_POINTS = 200
MAX_ERROR_CHARS = 1000

# The hyperparameters searched for each model: (kind, low, high) or ("choice", options).
# Small on purpose: a few iterations must reach good regions; fixed settings (seeds, one
# thread) are in _model().
SPACES = {
    "logreg": {"C": ("log", 1e-3, 100.0)},
    "rf": {
        "n_estimators": ("int", 50, 300),
        "max_depth": ("int", 2, 16),
        "min_samples_leaf": ("int", 1, 20),
        "max_features": ("choice", ("sqrt", 0.5, 1.0)),
    },
    "dt": {
        "max_depth": ("int", 2, 12),
        "min_samples_leaf": ("int", 1, 50),
        "criterion": ("choice", ("gini", "entropy")),
    },
    "lightgbm": {
        "n_estimators": ("int", 50, 400),
        "learning_rate": ("log", 0.01, 0.3),
        "num_leaves": ("int", 8, 64),
        "min_child_samples": ("int", 5, 50),
        "colsample_bytree": ("float", 0.5, 1.0),
        "reg_lambda": ("log", 1e-3, 10.0),
    },
    "xgboost": {
        "n_estimators": ("int", 50, 400),
        "learning_rate": ("log", 0.01, 0.3),
        "max_depth": ("int", 2, 8),
        "subsample": ("float", 0.6, 1.0),
        "colsample_bytree": ("float", 0.5, 1.0),
        "min_child_weight": ("log", 0.5, 10.0),
    },
    "catboost": {
        "iterations": ("int", 100, 400),
        "learning_rate": ("log", 0.01, 0.3),
        "depth": ("int", 3, 8),
        "l2_leaf_reg": ("log", 1.0, 10.0),
    },
}


# ----------------------------------------------------------------------------- metrics
# Pure numpy: the search scores with them, and the platform can use them without
# scikit-learn. y holds 0/1 classes, score the probability (or any score) of class 1.


def _arrays(y, score):
    positive = np.asarray(y, dtype=float).ravel() == 1
    score = np.asarray(score, dtype=float).ravel()
    if positive.shape != score.shape:
        raise ValueError(f"y has {positive.size} values but score has {score.size}")
    return positive, score


def auc(y, score) -> float:
    """Area under the ROC curve (ties count half); NaN when y holds a single class."""
    positive, score = _arrays(y, score)
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    # Mann-Whitney: the positives' ranks, tied scores sharing their average rank.
    _, inverse, counts = np.unique(score, return_inverse=True, return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = average_rank[inverse]
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def gini(y, score) -> float:
    """The Gini coefficient, 2 * AUC - 1."""
    return 2.0 * auc(y, score) - 1.0


def roc_points(y, score):
    """(thresholds, fpr, tpr) at each distinct score, highest first: predicting 1 for
    score >= threshold gives that false and true positive rate."""
    positive, score = _arrays(y, score)
    order = np.argsort(-score, kind="mergesort")
    score, positive = score[order], positive[order]
    true_pos = np.cumsum(positive)
    false_pos = np.cumsum(~positive)
    last_of_each = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    n_pos, n_neg = max(int(true_pos[-1]), 1), max(int(false_pos[-1]), 1)
    return score[last_of_each], false_pos[last_of_each] / n_neg, true_pos[last_of_each] / n_pos


def ks(y, score) -> float:
    """Kolmogorov-Smirnov statistic: the largest TPR - FPR over thresholds."""
    positive, score = _arrays(y, score)
    if positive.all() or not positive.any():
        return float("nan")
    _, fpr, tpr = roc_points(positive, score)
    return float(np.max(tpr - fpr))


def precision_recall_f1(y, score, threshold: float = THRESHOLD) -> tuple[float, float, float]:
    """Precision, recall and F1 of predicting 1 for score >= threshold (0 when undefined)."""
    positive, score = _arrays(y, score)
    predicted = score >= threshold
    true_pos = int(np.sum(predicted & positive))
    precision = true_pos / int(predicted.sum()) if predicted.any() else 0.0
    recall = true_pos / int(positive.sum()) if positive.any() else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return float(precision), float(recall), float(f1)


def metric(name: str, y, score) -> float:
    """One of HOLDOUT_METRICS by name; higher is better for every one."""
    if name in ("precision", "recall", "f1"):
        return precision_recall_f1(y, score)[("precision", "recall", "f1").index(name)]
    functions = {"auc": auc, "gini": gini, "ks": ks}
    if name not in functions:
        raise ValueError(f"metric: unknown metric {name!r}; use one of {', '.join(HOLDOUT_METRICS)}")
    return functions[name](y, score)


# ------------------------------------------------------------------------ entrypoint


def train_model(base_path):
    """Search pipelines on the run's data; return the harness's dict (see the module doc)."""
    import pandas as pd

    conf = _load_conf(base_path)
    data = _prepare(_read_data(base_path, conf), conf)
    split = _split(data, conf)
    _say(
        f"AutoML: {len(data.y)} rows, {len(data.features)} features "
        f"({len(data.categorical)} categorical); {conf['split_type']} split: train {len(split.train)}, "
        f"validation {len(split.validation)}, holdout {len(split.holdout)}"
    )
    space = _search_space(conf, data, data.y.iloc[split.train])
    _say("Searching " + "; ".join(f"{stage}: {', '.join(map(str, o))}" for stage, o in space.items()))
    trials = _search(conf, data, split, space)
    best = trials[0]
    _say(f"Best: trial {best['number']}, validation {conf['metric']} {best['value']:.4f}")

    fit_rows = np.concatenate([split.train, split.validation])
    X_fit, y_fit = data.X.iloc[fit_rows].reset_index(drop=True), data.y.iloc[fit_rows].reset_index(drop=True)
    pipeline = _build_pipeline(best["params"], data, y_fit, conf["seed"])
    pipeline.fit(X_fit, y_fit)
    holdout_proba = pipeline.predict_proba(data.X.iloc[split.holdout])[:, 1]
    y_holdout = data.y.iloc[split.holdout].to_numpy()
    metrics = _holdout_metrics(y_holdout, holdout_proba)
    metrics[f"validation_{conf['metric']}"] = best["value"]
    _say("Holdout: " + ", ".join(f"{name} {value:.4f}" for name, value in metrics.items()))
    positives = float(np.mean(y_fit))
    warning = one_class_warning(holdout_proba, minority_share=min(positives, 1 - positives))
    if warning:
        _say(warning)

    leaderboard = {
        "metric": conf["metric"],
        "seed": conf["seed"],
        "best_trial": best["number"],
        "trials": trials,
    }
    _write_artifacts(base_path, leaderboard, pipeline, data, X_fit, y_holdout, holdout_proba)
    output = pd.DataFrame(
        {"pred": pipeline.predict(X_fit).astype(int), "proba": pipeline.predict_proba(X_fit)[:, 1]}
    )
    return {
        "X_train": X_fit,
        "y_train": y_fit.to_frame(conf["target"]),
        "model_output": output,
        "pipeline": pipeline,
        "metrics": metrics,
        "extra": list(ARTIFACTS),
    }


def _say(line):
    # Printed lines reach the run's live log; flushed so they arrive as they happen.
    print(line, flush=True)


# ---------------------------------------------------------------------------- the data


class _Data(NamedTuple):
    X: object  # DataFrame of the raw features, as the pipeline takes them
    y: object  # Series of 0/1
    features: list
    categorical: list
    numeric: list
    dates: object = None  # Series of Timestamps (oot) or None
    strata: object = None  # Series (stratified) or None


class _Split(NamedTuple):
    train: np.ndarray  # row positions
    validation: np.ndarray
    holdout: np.ndarray


def _load_conf(base_path):
    path = os.path.join(base_path, CONF_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{CONF_FILE} is missing from {base_path}; the platform writes it there")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _read_data(base_path, conf):
    import pandas as pd

    train_data = conf["train_data"]
    path = os.path.join(base_path, train_data["file_name"])
    if not os.path.isfile(path):
        raise FileNotFoundError(f"train_data.file_name: {train_data['file_name']!r} is not in {base_path}")
    if train_data["file_type"] == "parquet":
        return pd.read_parquet(path)
    return pd.read_csv(path, sep=train_data.get("sep") or ",")


def _prepare(df, conf):
    """The features, target, dates and strata, checked against the configuration."""
    if conf["model_flow"] != "classification":
        raise ValueError(f"model_flow: AutoML trains classification models only, not {conf['model_flow']!r}")
    if df.empty:
        raise ValueError(f"train_data: {conf['train_data']['file_name']!r} has no rows")
    target, date_col = conf["target"], conf.get("date_col")
    _require_column(df, target, "target")
    y = _binary_target(df[target], target)
    dates = strata = None
    if date_col:
        _require_column(df, date_col, "date_col")
        dates = _parse_dates(df[date_col], date_col, required=conf["split_type"] == "oot")
    if conf["split_type"] == "stratified":
        _require_column(df, conf["stratify_col"], "stratify_col")
        strata = df[conf["stratify_col"]].astype(str)  # missing values make a stratum of their own
    # The date only orders the rows: a model that learnt it could not score the future.
    features = [column for column in df.columns if column not in (target, date_col)]
    if not features:
        raise ValueError(f"train_data: no feature column is left besides target {target!r} and date_col")
    X = df[features]
    categorical = _categorical_columns(X, conf["cat_cols"], target, date_col)
    numeric = [column for column in features if column not in categorical]
    return _Data(X, y, features, categorical, numeric, dates, strata)


def _require_column(df, column, key):
    if column not in df.columns:
        shown = ", ".join(repr(str(c)) for c in list(df.columns)[:20])
        raise ValueError(f"{key}: the data has no column {column!r} (its columns: {shown})")


def _binary_target(series, name):
    missing = int(series.isna().sum())
    if missing:
        raise ValueError(f"target: column {name!r} has {missing} missing value(s); every row needs its class")
    values = set(series.unique().tolist())
    try:
        as_numbers = {float(value) for value in values}
    except (TypeError, ValueError):
        as_numbers = None
    if as_numbers != {0.0, 1.0}:
        shown = ", ".join(sorted(repr(value) for value in values)[:10])
        raise ValueError(
            f"target: AutoML classification needs a binary target holding 0 and 1 (1 = the positive "
            f"class); column {name!r} holds {shown}"
        )
    return series.astype(float).astype(int)


def _parse_dates(series, name, required):
    import pandas as pd

    raw = series.astype(str).where(series.notna()) if series.dtype.kind in "iuf" else series
    parsed = pd.to_datetime(raw, errors="coerce", format="mixed")
    bad = parsed.isna() & series.notna()
    if bad.any():
        example = series[bad].iloc[0]
        raise ValueError(
            f"date_col: column {name!r} has {int(bad.sum())} value(s) that are not dates, e.g. {example!r}"
        )
    if required and parsed.isna().any():
        raise ValueError(
            f"date_col: column {name!r} has {int(parsed.isna().sum())} missing date(s); an out-of-time "
            "split must place every row in time"
        )
    return parsed


def _categorical_columns(X, cat_cols, target, date_col):
    import pandas as pd

    if cat_cols is None:
        categorical = [
            column
            for column in X.columns
            if pd.api.types.is_bool_dtype(X[column])
            or not (
                pd.api.types.is_numeric_dtype(X[column]) or pd.api.types.is_datetime64_any_dtype(X[column])
            )
        ]
    else:
        for column in cat_cols:
            if column in (target, date_col):
                raise ValueError(
                    f"cat_cols: {column!r} is the {'target' if column == target else 'date_col'}"
                )
            if column not in X.columns:
                _require_column(X, column, "cat_cols")
        categorical = [column for column in X.columns if column in cat_cols]
    for column in X.columns:
        if column in categorical or pd.api.types.is_numeric_dtype(X[column]):
            continue
        kind = "dates" if pd.api.types.is_datetime64_any_dtype(X[column]) else "text"
        raise ValueError(
            f"cat_cols: column {column!r} holds {kind}, not numbers, and is not categorical; "
            + (
                "name it as date_col, or drop it from the data"
                if kind == "dates"
                else "add it to cat_cols (or leave cat_cols empty to detect the categorical columns)"
            )
        )
    return categorical


# ---------------------------------------------------------------------------- the split


def _split(data, conf):
    """Train, validation and holdout row positions; each must hold both classes."""
    n, seed = len(data.y), conf["seed"]
    rows = np.arange(n)
    for key in ("val_size",) if conf["split_type"] == "oot" else ("val_size", "holdout_size"):
        if not 0 < conf[key] < 1:
            raise ValueError(f"{key}: must be a fraction between 0 and 1, not {conf[key]!r}")
    n_val = max(1, round(conf["val_size"] * n))
    if conf["split_type"] == "oot":
        in_holdout = _out_of_time(data.dates, conf)
        holdout, rest = rows[in_holdout], rows[~in_holdout]
        holdout_key = "split_date" if conf.get("split_date") else "oot_split_size"
        train, validation = _take(rest, n_val, seed, None, "val_size")
    else:
        n_holdout = max(1, round(conf["holdout_size"] * n))
        strata = data.strata.to_numpy() if data.strata is not None else None
        rest, holdout = _take(rows, n_holdout, seed, strata, "holdout_size")
        train, validation = _take(rest, n_val, seed, strata[rest] if strata is not None else None, "val_size")
        holdout_key = "holdout_size"
    for name, part, key in (
        ("holdout", holdout, holdout_key),
        ("validation", validation, "val_size"),
        ("train", train, "val_size and holdout_size"),
    ):
        classes = np.unique(data.y.iloc[part])
        if classes.size < 2:
            only = f"all of class {classes[0]}" if classes.size else "none"
            raise ValueError(
                f"{key}: the {name} split has {part.size} row(s), {only}; every split needs both "
                "classes: give more rows or change the sizes"
            )
    return _Split(np.sort(train), np.sort(validation), np.sort(holdout))


def _take(rows, count, seed, strata, key):
    """(the rest, ``count`` rows drawn at random) out of ``rows``, within strata if given."""
    from sklearn.model_selection import train_test_split

    if count >= len(rows):
        raise ValueError(
            f"{key}: {len(rows)} rows cannot give {count} to this split and keep some to train on"
        )
    try:
        return train_test_split(rows, test_size=count, random_state=seed, stratify=strata)
    except ValueError as exc:
        if strata is None:
            raise ValueError(f"{key}: {len(rows)} rows cannot be split so: {exc}") from exc
        raise ValueError(f"stratify_col: cannot stratify the {key} split: {exc}") from exc


def _out_of_time(dates, conf):
    """Whether each row is in the out-of-time holdout: on/after split_date, else the latest
    oot_split_size share (rows of the boundary's date all go to the holdout)."""
    import pandas as pd

    if conf.get("split_date"):
        try:
            cut = pd.Timestamp(conf["split_date"])
        except (TypeError, ValueError) as exc:
            raise ValueError(f"split_date: {conf['split_date']!r} is not a date") from exc
        key = "split_date"
    else:
        size = conf.get("oot_split_size")
        if not (isinstance(size, (int, float)) and 0 < size < 1):
            raise ValueError(f"oot_split_size: must be a fraction between 0 and 1, not {size!r}")
        ordered = np.sort(dates.to_numpy())
        cut = pd.Timestamp(ordered[len(ordered) - max(1, round(size * len(ordered)))])
        key = "oot_split_size"
    in_holdout = (dates >= cut).to_numpy()
    if not in_holdout.any():
        raise ValueError(
            f"{key}: no row is on or after {cut.date()}; the latest date is {dates.max().date()}"
        )
    if in_holdout.all():
        raise ValueError(f"{key}: every row is on or after {cut.date()}; nothing is left to train on")
    return in_holdout


# ---------------------------------------------------------------------------- the search


def _search_space(conf, data, y_train):
    """The options searched for each stage, without those this data cannot use."""
    stages = conf["stages"]
    if not stages["models"]:
        raise ValueError("stages.models: give at least one model")
    known = {
        "models": list(SPACES),
        **{stage: [*options, "none"] for stage, options in STEP_FACTORIES.items()},
    }
    for stage, options in stages.items():
        for option in options:
            if stage in known and option not in known[stage]:
                raise ValueError(f"stages.{stage}: unknown option {option!r}; use {', '.join(known[stage])}")
    space = {"model": list(stages["models"])}
    # Missing categories always become a category of their own (see _build_pipeline), so
    # the missing stage is about the numeric columns.
    with_missing = [column for column in data.numeric if data.X[column].isna().any()]
    if with_missing:
        space["missing"] = list(stages["missing"])  # narrowed below, once the rest is known
    space["cleaner"] = [
        option
        for option in stages["cleaner"]
        if not (option == "iqr" and not data.numeric) and not (option == "rare" and not data.categorical)
    ]
    if data.categorical:
        if not stages["encoding"]:
            raise ValueError(
                f"stages.encoding: the data has categorical columns ({', '.join(map(repr, data.categorical))}); "
                "give at least one encoding"
            )
        space["encoding"] = list(stages["encoding"])
    space["preprocess"] = list(stages["preprocess"])
    share = float(np.mean(y_train))
    if min(share, 1 - share) < UNBALANCED_SHARE:
        space["unbalance"] = list(stages["unbalance"])
    if with_missing:
        space["missing"] = _missing_options(space, with_missing)
    return {stage: options for stage, options in space.items() if options}


def _missing_options(space, with_missing):
    """The missing stage's options on data with missing numbers: "none" (leave them to the
    later steps) only when every model, scaler and sampler searched takes NaN, since a
    trial draws each stage on its own."""
    cannot = [
        f"{option} (stages.{stage})"
        for stage, intolerant in NAN_INTOLERANT.items()
        for option in space.get("model" if stage == "models" else stage, [])
        if option in intolerant
    ]
    if not cannot:
        return space["missing"]
    imputations = [option for option in space["missing"] if option != "none"]
    if not imputations:
        raise ValueError(
            f"stages.missing: the numeric column(s) {', '.join(map(repr, with_missing[:10]))} have missing "
            f"values, which {', '.join(cannot)} cannot take, and 'none' is the only option given; add an "
            f"imputation ({', '.join(STEP_FACTORIES['missing'])}) to stages.missing, or search only options "
            "that take missing values"
        )
    return imputations


def _search(conf, data, split, space):
    """Run the trials; return the leaderboard's rows, best first, failed last."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own progress lines instead
    seed, total, name = conf["seed"], conf["iterations"], conf["metric"]
    X_train, y_train = data.X.iloc[split.train], data.y.iloc[split.train]
    X_val, y_val = data.X.iloc[split.validation], data.y.iloc[split.validation].to_numpy()
    first_error = []

    def objective(trial):
        params = {stage: trial.suggest_categorical(stage, options) for stage, options in space.items()}
        params.update(_suggest_hyperparameters(trial, params["model"]))
        started = time.perf_counter()
        try:
            pipeline = _build_pipeline(params, data, y_train, seed)
            pipeline.fit(X_train, y_train)
            value = metric(name, y_val, pipeline.predict_proba(X_val)[:, 1])
            if not math.isfinite(value):
                raise ValueError(f"the validation {name} is undefined ({value})")
            return value
        except Exception as exc:
            first_error[:] = first_error or [exc]
            trial.set_user_attr("error", _describe(exc))
            raise
        finally:
            trial.set_user_attr("duration_seconds", round(time.perf_counter() - started, 3))

    def progress(study, trial):
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        best = f"best so far {max(t.value for t in complete):.4f}" if complete else "no trial succeeded yet"
        # Numbered as in the leaderboard (from 0), with the count so far for the impatient.
        head = f"[{trial.number + 1}/{total}] trial {trial.number} ({trial.params.get('model')})"
        if trial.state == optuna.trial.TrialState.COMPLETE:
            _say(f"{head}: {name} {trial.value:.4f}; {best}")
        else:
            _say(f"{head} failed: {trial.user_attrs.get('error')}; {best}")

    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    for params in _coverage_trials(space, total, seed):
        study.enqueue_trial(params)
    study.optimize(objective, n_trials=total, catch=(Exception,), callbacks=[progress])
    trials = [_leaderboard_row(trial) for trial in study.trials]
    if not any(row["state"] == "COMPLETE" for row in trials):
        raise RuntimeError(
            f"every one of the {len(trials)} trials failed; the first with {trials[0]['params']}: "
            f"{trials[0]['error']}"
        ) from (first_error[0] if first_error else None)
    complete = sorted(
        (row for row in trials if row["state"] == "COMPLETE"), key=lambda r: (-r["value"], r["number"])
    )
    return complete + [row for row in trials if row["state"] != "COMPLETE"]


def _coverage_trials(space, iterations, seed):
    """The first trials: each configured option of every stage once (as far as the
    iterations allow, in a seeded order), so even a short search tries them all before
    TPE concentrates on what worked."""
    rng = np.random.default_rng(seed)
    orders = {stage: [options[i] for i in rng.permutation(len(options))] for stage, options in space.items()}
    count = min(iterations, max(len(options) for options in space.values()))
    return [{stage: order[i % len(order)] for stage, order in orders.items()} for i in range(count)]


def _suggest_hyperparameters(trial, model):
    params = {}
    for key, spec in SPACES[model].items():
        name = f"{model}__{key}"
        if spec[0] == "choice":
            params[name] = trial.suggest_categorical(name, spec[1])
        elif spec[0] == "int":
            params[name] = trial.suggest_int(name, spec[1], spec[2])
        else:
            params[name] = trial.suggest_float(name, spec[1], spec[2], log=spec[0] == "log")
    return params


def _leaderboard_row(trial):
    complete = trial.state.name == "COMPLETE"
    return {
        "number": trial.number,
        "value": float(trial.value) if complete else None,
        "state": "COMPLETE" if complete else "FAIL",
        "error": None if complete else trial.user_attrs.get("error", "the trial did not finish"),
        "params": dict(trial.params),
        "duration_seconds": trial.user_attrs.get("duration_seconds"),
    }


def _describe(exc):
    text = f"{type(exc).__name__}: {exc}".strip()
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


# -------------------------------------------------------------------------- the pipeline


def _build_pipeline(params, data, y, seed):
    """The pipeline a trial's params describe; it takes the raw feature DataFrame.

    Every step keeps one column per input feature (in order), so the model's importances
    map back to the features. Columns get safe names first: LightGBM and XGBoost refuse
    some characters in feature names.
    """
    steps = _input_steps(data)
    safe = dict(zip(data.features, steps[0][1].safe_names(data.features), strict=True))
    context = _StepContext(
        numeric=[safe[c] for c in data.numeric],
        categorical=[safe[c] for c in data.categorical],
        seed=seed,
        positive_share=float(np.mean(y)),
        minority_count=int(min(np.sum(y), len(y) - np.sum(y))),
    )
    for stage in ("missing", "cleaner", "encoding", "preprocess", "unbalance"):
        option = params.get(stage, "none")
        step = STEP_FACTORIES[stage][option](context) if option != "none" else None
        if step is not None:
            steps.append((stage, step))
    model = params["model"]
    hyper = {key.split("__", 1)[1]: value for key, value in params.items() if key.startswith(model + "__")}
    steps.append(("model", _model(model, hyper, seed)))
    if "unbalance" in dict(steps):
        from imblearn.pipeline import Pipeline
    else:
        from sklearn.pipeline import Pipeline
    return Pipeline(steps)


class _StepContext(NamedTuple):
    numeric: list  # safe names
    categorical: list
    seed: int
    positive_share: float
    minority_count: int


def _input_steps(data):
    from feature_engine.imputation import CategoricalImputer

    Features, _ = _custom_transformers()
    steps = [("features", Features(columns=list(data.features), categorical=list(data.categorical)))]
    if data.categorical:
        # Always, not only when the training data lacks values: the encoders cannot take a
        # missing category, and a production record may have one.
        safe = Features.safe_names(data.features)
        names = [safe[data.features.index(c)] for c in data.categorical]
        steps.append(("categorical_missing", CategoricalImputer(variables=names, ignore_format=True)))
    return steps


def _missing(option):
    def make(context):
        if not context.numeric:
            return None
        from feature_engine import imputation

        variables = context.numeric
        if option in ("mean", "median"):
            return imputation.MeanMedianImputer(imputation_method=option, variables=variables)
        if option == "tail":
            return imputation.EndTailImputer(imputation_method="gaussian", tail="right", variables=variables)
        return imputation.RandomSampleImputer(variables=variables, random_state=context.seed, seed="general")

    return make


def _cleaner_iqr(context):
    if not context.numeric:
        return None
    from feature_engine.outliers import Winsorizer

    # Capping, not trimming: a pipeline step must keep every row it is asked to score.
    return Winsorizer(
        capping_method="iqr", tail="both", fold=1.5, variables=context.numeric, missing_values="ignore"
    )


def _cleaner_rare(context):
    if not context.categorical:
        return None
    from feature_engine.encoding import RareLabelEncoder

    return RareLabelEncoder(tol=0.05, n_categories=2, variables=context.categorical, ignore_format=True)


def _encoding(option):
    def make(context):
        import category_encoders
        from feature_engine import encoding

        variables = context.categorical
        if option == "rankcount":
            return _custom_transformers()[1](variables=variables)
        if option == "catboost":
            return category_encoders.CatBoostEncoder(cols=variables, random_state=context.seed)
        if option == "count":
            return encoding.CountFrequencyEncoder(variables=variables, ignore_format=True, unseen="encode")
        # An unseen category gets the share of positives: what the tree would say without it.
        return encoding.DecisionTreeEncoder(
            variables=variables,
            regression=False,
            scoring="roc_auc",
            random_state=context.seed,
            ignore_format=True,
            unseen="encode",
            fill_value=context.positive_share,
        )

    return make


def _scaler(option):
    def make(context):
        from sklearn import preprocessing

        scaler = {
            "norm": preprocessing.StandardScaler,
            "robust": preprocessing.RobustScaler,
            "minmax": preprocessing.MinMaxScaler,
            "binarizer": preprocessing.Binarizer,
        }[option]()
        return scaler.set_output(transform="pandas")  # later steps and importances keep the names

    return make


def _smote(context):
    from imblearn.over_sampling import SMOTE

    # SMOTE needs more minority rows than neighbours.
    return SMOTE(random_state=context.seed, k_neighbors=max(1, min(5, context.minority_count - 1)))


def _random_under(context):
    from imblearn.under_sampling import RandomUnderSampler

    return RandomUnderSampler(random_state=context.seed)


# The options that fail on NaN (scikit-learn 1.7: LogisticRegression, Binarizer; SMOTE);
# the other models, scalers and samplers take it (trees learn where missing values go).
NAN_INTOLERANT = {"models": ("logreg",), "preprocess": ("binarizer",), "unbalance": ("smote",)}

STEP_FACTORIES = {
    "missing": {option: _missing(option) for option in ("mean", "median", "tail", "random")},
    "cleaner": {"iqr": _cleaner_iqr, "rare": _cleaner_rare},
    "encoding": {option: _encoding(option) for option in ("rankcount", "catboost", "count", "dt")},
    "preprocess": {option: _scaler(option) for option in ("norm", "robust", "minmax", "binarizer")},
    "unbalance": {"smote": _smote, "random_under": _random_under},
}


def _model(name, hyper, seed):
    """A seeded, single-threaded model: the same seed must give the same leaderboard."""
    if name == "logreg":
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(max_iter=5000, random_state=seed, **hyper)
    if name == "rf":
        from sklearn.ensemble import RandomForestClassifier

        return RandomForestClassifier(n_jobs=1, random_state=seed, **hyper)
    if name == "dt":
        from sklearn.tree import DecisionTreeClassifier

        return DecisionTreeClassifier(random_state=seed, **hyper)
    if name == "lightgbm":
        from lightgbm import LGBMClassifier

        return LGBMClassifier(n_jobs=1, random_state=seed, verbose=-1, **hyper)
    if name == "xgboost":
        from xgboost import XGBClassifier

        return XGBClassifier(n_jobs=1, random_state=seed, tree_method="hist", **hyper)
    from catboost import CatBoostClassifier

    # allow_writing_files: CatBoost would otherwise write a catboost_info folder in base_path.
    return CatBoostClassifier(random_seed=seed, thread_count=1, verbose=0, allow_writing_files=False, **hyper)


_CUSTOM = []


def _custom_transformers():
    """(Features, RankCountEncoder), defined on first use: they subclass scikit-learn's
    classes, which this module must not import at its top. Defined in a function, they are
    pickled by value with the model, so scoring needs only the libraries, not this file;
    for the same reason their methods use nothing else of this module."""
    if _CUSTOM:
        return _CUSTOM[0]
    from sklearn.base import BaseEstimator, TransformerMixin

    class Features(TransformerMixin, BaseEstimator):
        """The pipeline's entry: picks the training columns in order (a missing one is an
        error naming it), categorical values as text, numbers as floats, safe names."""

        def __init__(self, columns=(), categorical=()):
            self.columns = columns
            self.categorical = categorical

        @staticmethod
        def safe_names(columns):
            names, seen = [], set()
            for column in columns:
                name = re.sub(r"[^0-9A-Za-z_]", "_", str(column)) or "column"
                while name in seen:
                    name += "_"
                seen.add(name)
                names.append(name)
            return names

        def fit(self, X, y=None):
            self.feature_names_in_ = np.asarray(list(self.columns), dtype=object)
            self.n_features_in_ = len(self.columns)
            self.names_out_ = self.safe_names(self.columns)
            return self

        def transform(self, X):
            import pandas as pd

            missing = [column for column in self.columns if column not in X.columns]
            if missing:
                raise ValueError(
                    f"the input lacks the column(s) {', '.join(map(repr, missing))}; "
                    f"the model takes {', '.join(map(repr, self.columns))}"
                )
            out = {}
            for column, name in zip(self.columns, self.names_out_, strict=True):
                values = X[column]
                if column in self.categorical:
                    out[name] = values.astype(object).where(values.isna(), values.astype(str))
                else:
                    try:
                        out[name] = pd.to_numeric(values).astype(float)
                    except (TypeError, ValueError) as exc:
                        raise ValueError(f"column {column!r} must hold numbers: {exc}") from exc
            return pd.DataFrame(out, index=X.index)

    class RankCountEncoder(TransformerMixin, BaseEstimator):
        """Each category becomes its frequency rank (1 = most frequent); an unseen one
        ranks after all the known ones."""

        def __init__(self, variables=()):
            self.variables = variables

        def fit(self, X, y=None):
            self.ranks_ = {}
            for column in self.variables:
                counts = X[column].value_counts()
                ordered = sorted(counts.items(), key=lambda item: (-item[1], str(item[0])))
                self.ranks_[column] = {value: rank for rank, (value, _) in enumerate(ordered, start=1)}
            self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
            return self

        def transform(self, X):
            X = X.copy()
            for column, ranks in self.ranks_.items():
                X[column] = X[column].map(ranks).fillna(len(ranks) + 1).astype(float)
            return X

    _CUSTOM.append((Features, RankCountEncoder))
    return _CUSTOM[0]


# -------------------------------------------------------------------------- the artifacts


def one_class_warning(proba, minority_share: float, threshold: float = THRESHOLD):
    """A line for the log when the model's `pred` is one class for every holdout row: its
    precision, recall and f1 (0 when it never predicts 1) say little of its ranking.

    `minority_share`: the smaller class's share of the training rows. Balancing is advised
    only where it is searched (under UNBALANCED_SHARE); with classes near even, scores that
    all fall on one side come from the model (a strong regularisation, say)."""
    positives = int((np.asarray(proba) >= threshold).sum())
    if positives not in (0, len(proba)) or not len(proba):
        return None
    label = 1 if positives else 0
    if minority_share < UNBALANCED_SHARE:
        advice = "search with a balancing stage (stages.unbalance) so that the classes weigh alike"
    else:
        advice = (
            f"the classes are not rare ({minority_share:.0%} of the rows are the smaller one), so the "
            "scores sit on one side because of the chosen model itself: search more iterations or "
            "other models (stages.models)"
        )
    return (
        f"Warning: at the threshold {threshold} the model predicts {label} for every holdout row "
        f"(its scores run from {float(np.min(proba)):.4f} to {float(np.max(proba)):.4f}), so the "
        f"promoted model's pred is {label} for every input. Its proba still ranks the rows (auc, ks): "
        f"read proba against a threshold of your own, or {advice}."
    )


def _holdout_metrics(y, proba):
    precision, recall, f1 = precision_recall_f1(y, proba)
    area = auc(y, proba)
    return {
        "auc": area,
        "gini": 2 * area - 1,
        "ks": ks(y, proba),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def _write_artifacts(base_path, leaderboard, pipeline, data, X_fit, y_holdout, holdout_proba):
    thresholds, fpr, tpr = roc_points(y_holdout, holdout_proba)
    gap = tpr - fpr
    best = int(np.argmax(gap))
    kept = _thin(len(thresholds), keep=best)
    # The ROC curve starts at (0, 0): nothing predicted positive.
    roc_kept = _thin(len(thresholds) + 1)
    roc_fpr, roc_tpr = np.r_[0.0, fpr][roc_kept], np.r_[0.0, tpr][roc_kept]
    documents = {
        "leaderboard.json": leaderboard,
        "importances.json": {"features": _importances(pipeline, data.features)},
        "roc.json": {"fpr": roc_fpr.tolist(), "tpr": roc_tpr.tolist(), "auc": auc(y_holdout, holdout_proba)},
        "ks.json": {
            "thresholds": thresholds[kept].tolist(),
            "tpr": tpr[kept].tolist(),
            "fpr": fpr[kept].tolist(),
            "ks": float(gap[best]),
            "threshold": float(thresholds[best]),
        },
        "schema.json": {str(k): _plain(v) for k, v in X_fit.iloc[0].items()},
    }
    for name, document in documents.items():
        with open(os.path.join(base_path, name), "w", encoding="utf-8") as f:
            json.dump(_plain(document), f, indent=2, ensure_ascii=False, allow_nan=False)
            f.write("\n")


def _thin(count, keep=None):
    """At most MAX_CURVE_POINTS positions out of range(count), both ends (and keep) included."""
    if count <= MAX_CURVE_POINTS:
        return np.arange(count)
    room = MAX_CURVE_POINTS - (1 if keep is not None else 0)
    chosen = set(np.linspace(0, count - 1, room).round().astype(int).tolist())
    if keep is not None:
        chosen.add(keep)
    return np.array(sorted(chosen))


def _importances(pipeline, features):
    model = pipeline.steps[-1][1]
    values = getattr(model, "feature_importances_", None)
    if values is None and getattr(model, "coef_", None) is not None:
        values = np.abs(np.asarray(model.coef_)).ravel()
    if values is None:
        return []
    values = np.asarray(values, dtype=float)
    names = list(features) if len(values) == len(features) else [f"feature_{i}" for i in range(len(values))]
    total = float(values.sum())
    shares = values / total if total > 0 else values
    rows = [
        {"name": str(name), "importance": float(share)} for name, share in zip(names, shares, strict=True)
    ]
    return sorted(rows, key=lambda row: -row["importance"])


def _plain(value):
    """Plain JSON data: numpy numbers, NaN (null), timestamps (ISO text) converted."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if hasattr(value, "isoformat"):
        return None if str(value) == "NaT" else value.isoformat()
    if type(value).__name__ == "NAType":
        return None
    return str(value)
