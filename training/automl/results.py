"""What the run page shows of an AutoML run: its configuration and its results, read from
the files the run left (leaderboard, importances, ROC and KS curves).

Those files were written inside the sandbox by code running with the run's data: each
is opened without following links, capped in size, and every value's type checked
before a page shows it.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from django.utils.translation import gettext

from training import automl
from training.automl.config import STAGES
from training.display import duration_text, json_text, localized, number_text
from training.models import TrainingRun

Status = TrainingRun.Status
MAX_ARTIFACT_BYTES = 2 * 1024 * 1024
MAX_CURVE_POINTS = 200
MAX_TRIALS_SHOWN = 500
TOP_FEATURES = 20
MAX_TEXT = 300
STAGE_COLUMNS = tuple(stage for stage in STAGES if stage != "models")


class Unusable(ValueError):
    """An artifact that can't be shown; the message says why, for its section."""


def read_json_file(path: Path, *, within: Path, limit: int = MAX_ARTIFACT_BYTES) -> Any:
    """The JSON in ``path``, a file inside ``within``, read without following a link and
    at most ``limit`` bytes.

    NaN and infinities become None (the page's JSON must stay valid for JSON.parse).
    """
    name = path.name
    if not path.parent.resolve().is_relative_to(within.resolve()):
        raise Unusable(gettext("%(name)s is not in the run's folder.") % {"name": name})
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise Unusable(gettext("%(name)s was not produced.") % {"name": name}) from None
    except OSError:
        raise Unusable(gettext("%(name)s is not a regular file.") % {"name": name}) from None
    # Checked before fdopen, which refuses a directory with IsADirectoryError.
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise Unusable(gettext("%(name)s is not a regular file.") % {"name": name})
    with os.fdopen(fd, "rb") as handle:
        raw = handle.read(limit + 1)
    if len(raw) > limit:
        raise Unusable(
            gettext("%(name)s is larger than the %(limit)s MB this page reads.")
            % {"name": name, "limit": limit // (1024 * 1024)}
        )
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=lambda _name: None)
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise Unusable(gettext("%(name)s is not valid JSON.") % {"name": name}) from None


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _short(value: Any, limit: int = MAX_TEXT) -> str:
    text = json_text(value) if value is not None else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def leaderboard_view(data: Any) -> dict:
    """leaderboard.json as table rows: completed trials best first (every metric the search
    offers is better higher), then the others with their error."""
    if not isinstance(data, dict) or not isinstance(data.get("trials"), list):
        raise Unusable(gettext("leaderboard.json has no list of trials."))
    metric = _short(data.get("metric") or "value", 40)
    best = data.get("best_trial")
    best = best if isinstance(best, int) and not isinstance(best, bool) else None
    trials = [trial for trial in data["trials"] if isinstance(trial, dict)]
    rows = []
    for trial in trials[:MAX_TRIALS_SHOWN]:
        number = trial.get("number")
        params = trial.get("params") if isinstance(trial.get("params"), dict) else {}
        value = _finite(trial.get("value"))
        state = _short(trial.get("state") or "", 20)
        duration = _finite(trial.get("duration_seconds"))
        rows.append(
            {
                "number": number if isinstance(number, int) and not isinstance(number, bool) else None,
                "value": value,
                "value_text": number_text(value),
                "state": state,
                "complete": state == "COMPLETE" and value is not None,
                "model": _short(params.get("model"), 60),
                "stages": [_short(params.get(stage), 60) for stage in STAGE_COLUMNS],
                "hyperparams": [
                    (key.split("__", 1)[-1], _short(param))
                    for key, param in sorted(params.items())
                    if key != "model" and key not in STAGE_COLUMNS
                ],
                "duration_text": duration_text(duration) if duration is not None and duration >= 0 else "—",
                "error": _short(trial.get("error"), 2000) if trial.get("error") else "",
            }
        )
    done = sorted((row for row in rows if row["complete"]), key=lambda row: -row["value"])
    for rank, row in enumerate(done, start=1):
        row["rank"] = rank
        row["best"] = row["number"] == best if best is not None else rank == 1
    return {
        "metric": metric,
        "seed": _short(data.get("seed"), 20),
        "rows": done + [row for row in rows if not row["complete"]],
        "complete": len(done),
        "failed": sum(row["state"] == "FAIL" for row in rows),
        "total": len(trials),
        "shown_all": len(trials) <= MAX_TRIALS_SHOWN,
    }


def importances_view(data: Any) -> dict:
    """importances.json as bars: the top features, each with its share and a bar as wide
    as its importance relative to the largest."""
    features = data.get("features") if isinstance(data, dict) else None
    if not isinstance(features, list):
        raise Unusable(gettext("importances.json has no list of features."))
    if not features:
        raise Unusable(gettext("the chosen model reports no feature importances."))
    valid = [
        (_short(feature.get("name"), 120), _finite(feature.get("importance")))
        for feature in features
        if isinstance(feature, dict) and isinstance(feature.get("name"), str | int | float)
    ]
    valid = sorted(((name, value) for name, value in valid if value is not None), key=lambda f: -f[1])
    if not valid:
        raise Unusable(gettext("importances.json names no feature with a numeric importance."))
    top = valid[:TOP_FEATURES]
    largest = max(abs(value) for _name, value in top) or 1.0
    return {
        "features": [
            {
                "name": name,
                "value": value,
                "text": f"{value * 100:.1f} %",
                "width": round(max(value, 0.0) / largest * 100, 1),
            }
            for name, value in top
        ],
        "total": len(valid),
    }


def _curve(data: Any, keys: tuple[str, ...], name: str) -> list[list[float]]:
    """Aligned lists of numbers (points with a missing or infinite value dropped)."""
    if not isinstance(data, dict) or not all(isinstance(data.get(key), list) for key in keys):
        raise Unusable(
            # Translators: %(name)s is roc.json or ks.json; %(keys)s its lists' keys, e.g. fpr, tpr.
            gettext("%(name)s has no %(keys)s lists.") % {"name": name, "keys": ", ".join(keys)}
        )
    columns = [data[key] for key in keys]
    if len({len(column) for column in columns}) != 1:
        raise Unusable(
            # Translators: %(name)s is roc.json or ks.json; %(keys)s its lists' keys, e.g. fpr, tpr.
            gettext("%(name)s's %(keys)s lists differ in length.") % {"name": name, "keys": ", ".join(keys)}
        )
    points = [[_finite(value) for value in point] for point in zip(*columns, strict=True)]
    points = [point for point in points if None not in point]
    if len(points) < 2:
        raise Unusable(gettext("%(name)s has fewer than two points.") % {"name": name})
    for key in keys:
        if key in ("fpr", "tpr") and not all(0 <= p[keys.index(key)] <= 1 for p in points):
            raise Unusable(
                # Translators: %(name)s is roc.json or ks.json; %(key)s a list's key, fpr or tpr.
                gettext("%(name)s's %(key)s values must lie between 0 and 1.") % {"name": name, "key": key}
            )
    return points


def _thin(points: list, limit: int = MAX_CURVE_POINTS) -> list:
    """At most ``limit`` points, evenly spaced, the first and the last kept."""
    if len(points) <= limit:
        return points
    step = (len(points) - 1) / (limit - 1)
    return [points[round(i * step)] for i in range(limit)]


def roc_view(data: Any) -> dict:
    """roc.json for the chart: the holdout's ROC curve and its AUC."""
    points = _thin(_curve(data, ("fpr", "tpr"), "roc.json"))
    auc = _finite(data.get("auc"))
    return {
        "fpr": [p[0] for p in points],
        "tpr": [p[1] for p in points],
        "auc": auc,
        "aucText": number_text(auc),
    }


def ks_view(data: Any) -> dict:
    """ks.json for the chart: TPR and FPR by threshold (ascending), and where the gap
    between them (the KS) is widest: the file's threshold, or the widest gap found."""
    points = sorted(_curve(data, ("thresholds", "tpr", "fpr"), "ks.json"), key=lambda p: p[0])
    threshold = _finite(data.get("threshold"))
    if threshold is not None:
        at = min(points, key=lambda p: abs(p[0] - threshold))
    else:
        at = max(points, key=lambda p: p[1] - p[2])
    ks = _finite(data.get("ks"))
    ks = ks if ks is not None else at[1] - at[2]
    points = _thin(points)
    return {
        "thresholds": [p[0] for p in points],
        "tpr": [p[1] for p in points],
        "fpr": [p[2] for p in points],
        "ks": ks,
        "ksText": number_text(ks),
        "gap": {"threshold": at[0], "tpr": at[1], "fpr": at[2], "thresholdText": number_text(at[0])},
    }


def _percent(value: Any) -> str:
    number = _finite(value)
    return localized(f"{number * 100:g} %") if number is not None else _short(value)


def automl_conf_view(conf: Any) -> dict:
    """The normalised configuration the search ran with, as label → text rows."""
    if not isinstance(conf, dict):
        raise Unusable(gettext("%(name)s is not a JSON object.") % {"name": automl.CONF_NAME})
    train = conf.get("train_data") if isinstance(conf.get("train_data"), dict) else {}
    split = _short(conf.get("split_type"), 20)
    if split == "oot":
        values = {"column": _short(conf.get("date_col"), 120)}
        if conf.get("split_date"):
            # Translators: the run's out-of-time split; %(column)s is its date column, %(date)s
            # the first date held out (YYYY-MM-DD).
            split_text = gettext("out of time by %(column)s: from %(date)s on held out") % {
                **values,
                "date": _short(conf.get("split_date"), 20),
            }
        else:
            # Translators: the run's out-of-time split; %(column)s is its date column, %(share)s
            # a percentage such as "20 %".
            split_text = gettext("out of time by %(column)s: the latest %(share)s held out") % {
                **values,
                "share": _percent(conf.get("oot_split_size")),
            }
    else:
        values = {"split": split, "share": _percent(conf.get("holdout_size"))}
        if split == "stratified":
            # Translators: %(split)s is the split type (stratified), left as is; %(share)s a
            # percentage such as "10 %"; %(column)s the column whose proportions are kept.
            split_text = gettext("%(split)s: %(share)s held out, by %(column)s") % {
                **values,
                "column": _short(conf.get("stratify_col"), 120),
            }
        else:
            # Translators: %(split)s is the split type (random), left as is; %(share)s a
            # percentage such as "10 %".
            split_text = gettext("%(split)s: %(share)s held out") % values
    cat_cols = conf.get("cat_cols")
    file_name = _short(train.get("file_name"), 128)
    file_type = _short(train.get("file_type"), 10)
    if file_type == "csv":
        # Translators: the training data; %(file)s is its file name, %(type)s csv and
        # %(sep)s the column separator, quoted, e.g. ','.
        data_text = gettext("%(file)s (%(type)s, separator %(sep)s)") % {
            "file": file_name,
            "type": file_type,
            "sep": repr(train.get("sep")),
        }
    else:
        data_text = f"{file_name} ({file_type})"
    rows = [
        (gettext("Target"), _short(conf.get("target"), 120)),
        (
            gettext("Categorical columns"),
            ", ".join(_short(c, 120) for c in cat_cols)
            if isinstance(cat_cols, list)
            # Translators: the categorical columns were not listed: the search detects them.
            else gettext("detected"),
        ),
        (gettext("Iterations"), _short(conf.get("iterations"), 20)),
        (gettext("Metric"), _short(conf.get("metric"), 20)),
        (gettext("Split"), split_text),
        (gettext("Validation"), _percent(conf.get("val_size"))),
        (gettext("Seed"), _short(conf.get("seed"), 20)),
        (gettext("Data"), data_text),
    ]
    stages = conf.get("stages") if isinstance(conf.get("stages"), dict) else {}
    return {
        "rows": rows,
        "stages": [
            (stage, [_short(option, 40) for option in stages[stage]])
            for stage in STAGES
            if isinstance(stages.get(stage), list)
        ],
        "json": json.dumps(conf, indent=2, ensure_ascii=False),
    }


def _section(view, path: Path, run: TrainingRun) -> dict:
    """{"data": view(file's JSON)} or {"problem": why it can't be shown}."""
    try:
        return {"data": view(read_json_file(path, within=run.folder)), "problem": ""}
    except Unusable as exc:
        return {"data": None, "problem": str(exc)}


def automl_context(run: TrainingRun) -> dict:
    """What an AutoML run's page shows beyond a Custom run's: the configuration it ran
    with and, once Succeeded, the search's leaderboard, curves and importances."""
    extras = run.artifacts_folder / "extras"
    if run.files_removed_at is not None:  # "leaderboard.json was not produced" would be untrue
        gone = {"data": None, "problem": gettext("The run's files were deleted.")}

        def section(_view, _path, _run):
            return gone
    else:
        section = _section
    context = {"conf": section(automl_conf_view, run.work_folder / automl.CONF_NAME, run), "results": None}
    if run.status == Status.SUCCEEDED:
        roc = section(roc_view, extras / "roc.json", run)
        ks = section(ks_view, extras / "ks.json", run)
        context["results"] = {
            "leaderboard": section(leaderboard_view, extras / "leaderboard.json", run),
            "importances": section(importances_view, extras / "importances.json", run),
            "roc": roc,
            "ks": ks,
            "charts": {"roc": roc["data"], "ks": ks["data"]},
            "has_schema": (run.artifacts_folder / automl.SCHEMA_ARTIFACT).is_file(),
        }
    return context
