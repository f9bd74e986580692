"""The AutoML configuration (the original product's `conf.json`), checked before anything runs.

`normalise` reports every problem at once and answers the configuration with every key
present (defaults filled in, the original spelling `logeg` read as `logreg`), which is
what the search script (`search.py`, run in the sandbox) receives as `automl_conf.json`.
Pure Python (with Django's gettext for the messages): the platform never imports the
search's libraries.
"""

from __future__ import annotations

import datetime
import math
from typing import Any

from django.utils.translation import gettext

# Every option of every stage, in the order the search offers them.
STAGES: dict[str, tuple[str, ...]] = {
    "models": ("logreg", "rf", "dt", "lightgbm", "xgboost", "catboost"),
    "missing": ("mean", "median", "tail", "random", "none"),
    "cleaner": ("iqr", "rare", "none"),
    "encoding": ("rankcount", "catboost", "count", "dt"),
    "preprocess": ("norm", "robust", "minmax", "binarizer", "none"),
    "unbalance": ("smote", "random_under", "none"),
}
SPELLINGS = {"logeg": "logreg"}  # the original documentation's spelling
METRICS = ("auc", "precision", "recall", "f1", "gini", "ks")
SPLIT_TYPES = ("random", "stratified", "oot")
FILE_TYPES = ("csv", "parquet")
MAX_ITERATIONS = 500
DEFAULT_SEED = 42
KEYS = (
    "train_data",
    "model_flow",
    "target",
    "cat_cols",
    "iterations",
    "metric",
    "split_type",
    "val_size",
    "holdout_size",
    "stratify_col",
    "date_col",
    "oot_split_size",
    "split_date",
    "stages",
    "seed",
)


class ConfigError(ValueError):
    """The configuration's problems, one message each."""

    def __init__(self, problems: list[str]):
        super().__init__("; ".join(problems))
        self.problems = problems


def normalise(conf: object, *, file_name: str, header: list[str] | None = None) -> dict[str, Any]:
    """The checked configuration with every key, or ConfigError listing every problem.

    ``file_name`` is the uploaded training data's name; ``header``, when known (CSV),
    its column names, so a misspelt target is caught before the run starts.
    """
    if not isinstance(conf, dict):
        raise ConfigError(
            [
                # Translators: %(type)s is the JSON value's Python type name, e.g. list or str.
                gettext("The configuration must be a JSON object, not %(type)s.")
                % {"type": type(conf).__name__}
            ]
        )
    problems: list[str] = []
    unknown = sorted(set(conf) - set(KEYS))
    if unknown:
        problems.append(
            gettext("Unknown key(s) %(unknown)s; the configuration takes %(keys)s.")
            % {"unknown": ", ".join(unknown), "keys": ", ".join(KEYS)}
        )

    out: dict[str, Any] = {"train_data": _train_data(conf.get("train_data"), file_name, problems)}

    flow = conf.get("model_flow")
    if flow is None:
        problems.append(gettext("model_flow is required: use 'classification'."))
    elif flow != "classification":
        problems.append(
            gettext("model_flow must be 'classification', not %(value)s (the only flow AutoML runs).")
            % {"value": repr(flow)}
        )
    out["model_flow"] = "classification"

    target = conf.get("target")
    if not isinstance(target, str) or not target:
        problems.append(gettext("target is required: the name of the target column in the training data."))
    out["target"] = target

    cat_cols = conf.get("cat_cols")
    if cat_cols is not None and not (
        isinstance(cat_cols, list) and all(isinstance(c, str) for c in cat_cols)
    ):
        problems.append(gettext("cat_cols must be a list of column names (or left out to detect them)."))
        cat_cols = None
    out["cat_cols"] = cat_cols

    out["iterations"] = _integer(conf, "iterations", 1, 1, MAX_ITERATIONS, problems)
    out["seed"] = _integer(conf, "seed", DEFAULT_SEED, 0, 2**31 - 1, problems)
    out["metric"] = _choice(conf, "metric", METRICS, "auc", problems)
    split_type = _choice(conf, "split_type", SPLIT_TYPES, "random", problems)
    out["split_type"] = split_type
    out["val_size"] = _fraction(conf, "val_size", 0.2, problems)
    out["holdout_size"] = _fraction(conf, "holdout_size", 0.1, problems)
    out["stratify_col"] = conf.get("stratify_col", target)
    if out["stratify_col"] is not None and not isinstance(out["stratify_col"], str):
        problems.append(gettext("stratify_col must be a column name."))
    out["date_col"] = conf.get("date_col")
    if out["date_col"] is not None and not isinstance(out["date_col"], str):
        problems.append(gettext("date_col must be a column name."))
        out["date_col"] = None
    out["oot_split_size"] = None
    out["split_date"] = None
    if split_type == "oot":
        _oot(conf, out, problems)
    elif out["val_size"] + out["holdout_size"] >= 0.9:
        problems.append(
            gettext("val_size + holdout_size is %(total)s; leave at least 10 %% of the data to train on.")
            % {"total": format(out["val_size"] + out["holdout_size"], "g")}
        )
    out["stages"] = _stages(conf.get("stages"), problems)

    if header is not None and isinstance(target, str):
        columns = set(header)
        named = {
            "target": [target],
            "cat_cols": cat_cols or [],
            "date_col": [out["date_col"]] if out["date_col"] else [],
        }
        if split_type == "stratified" and isinstance(out["stratify_col"], str):
            named["stratify_col"] = [out["stratify_col"]]
        for key, names in named.items():
            missing = [name for name in names if name not in columns]
            if missing:
                problems.append(
                    # Translators: %(key)s is target, cat_cols, date_col or stratify_col;
                    # %(names)s the quoted column names it gives; %(columns)s the data's columns.
                    gettext("%(key)s: %(names)s not in the training data's columns (%(columns)s).")
                    % {
                        "key": key,
                        "names": ", ".join(repr(n) for n in missing),
                        "columns": ", ".join(header[:20]) + (", …" if len(header) > 20 else ""),
                    }
                )
    if problems:
        raise ConfigError(problems)
    return out


def _train_data(value: object, file_name: str, problems: list[str]) -> dict[str, str]:
    suffix = file_name.rsplit(".", 1)[-1].lower()
    value = {} if value is None else value
    if not isinstance(value, dict):
        problems.append(gettext("train_data must be an object: file_type, file_name and sep."))
        value = {}
    file_type = value.get("file_type", suffix)
    if file_type not in FILE_TYPES:
        problems.append(
            gettext("train_data.file_type must be csv or parquet, not %(value)s.")
            % {"value": repr(file_type)}
        )
    elif file_type != suffix:
        problems.append(
            gettext("train_data.file_type is %(value)s but the uploaded data is '%(file_name)s'.")
            % {"value": repr(file_type), "file_name": file_name}
        )
    given_name = value.get("file_name", file_name)
    if given_name != file_name:
        problems.append(
            gettext(
                "train_data.file_name is %(value)s but the uploaded data is '%(file_name)s'; "
                "name the file you upload."
            )
            % {"value": repr(given_name), "file_name": file_name}
        )
    sep = value.get("sep", ",")
    if not isinstance(sep, str) or len(sep) != 1:
        problems.append(
            gettext("train_data.sep must be one character, e.g. ',' or ';', not %(value)s.")
            % {"value": repr(sep)}
        )
    return {"file_type": file_type, "file_name": file_name, "sep": sep if isinstance(sep, str) else ","}


def _integer(conf: dict, key: str, default: int, low: int, high: int, problems: list[str]) -> int:
    value = conf.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        problems.append(
            gettext("%(key)s must be a whole number from %(low)s to %(high)s, not %(value)s.")
            % {"key": key, "low": low, "high": high, "value": repr(value)}
        )
        return default
    return value


def _fraction(conf: dict, key: str, default: float, problems: list[str]) -> float:
    value = conf.get(key, default)
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 < value < 1
        or math.isnan(value)
    ):
        problems.append(
            gettext("%(key)s must be a fraction between 0 and 1, e.g. %(default)s, not %(value)s.")
            % {"key": key, "default": default, "value": repr(value)}
        )
        return default
    return float(value)


def _choice(conf: dict, key: str, choices: tuple[str, ...], default: str, problems: list[str]) -> str:
    value = conf.get(key, default)
    if value not in choices:
        problems.append(
            gettext("%(key)s must be one of %(choices)s, not %(value)s.")
            % {"key": key, "choices": ", ".join(choices), "value": repr(value)}
        )
        return default
    return value


def _oot(conf: dict, out: dict, problems: list[str]) -> None:
    if not isinstance(out["date_col"], str) or not out["date_col"]:
        problems.append(
            gettext("split_type 'oot' needs date_col: the column that orders the records in time.")
        )
    size, date = conf.get("oot_split_size"), conf.get("split_date")
    if size is not None and date is not None:
        problems.append(gettext("Give oot_split_size or split_date for an oot split, not both."))
    elif date is not None:
        try:
            datetime.date.fromisoformat(str(date))
        except ValueError:
            problems.append(
                gettext("split_date must be a date as YYYY-MM-DD, not %(value)s.") % {"value": repr(date)}
            )
        else:
            out["split_date"] = str(date)
    else:
        out["oot_split_size"] = _fraction(conf, "oot_split_size", 0.2, problems)


def _stages(value: object, problems: list[str]) -> dict[str, list[str]]:
    value = {} if value is None else value
    if not isinstance(value, dict):
        problems.append(
            gettext("stages must be an object with lists for %(stages)s.") % {"stages": ", ".join(STAGES)}
        )
        value = {}
    unknown = sorted(set(value) - set(STAGES))
    if unknown:
        problems.append(
            gettext("Unknown stage(s) %(unknown)s; stages are %(stages)s.")
            % {"unknown": ", ".join(unknown), "stages": ", ".join(STAGES)}
        )
    stages: dict[str, list[str]] = {}
    for stage, options in STAGES.items():
        chosen = value.get(stage, list(options))
        if not isinstance(chosen, list) or not chosen or not all(isinstance(o, str) for o in chosen):
            problems.append(
                gettext("stages.%(stage)s must be a non-empty list of %(options)s.")
                % {"stage": stage, "options": ", ".join(options)}
            )
            stages[stage] = list(options)
            continue
        chosen = [SPELLINGS.get(option, option) for option in chosen]
        wrong = [option for option in chosen if option not in options]
        if wrong:
            problems.append(
                gettext("stages.%(stage)s: unknown option(s) %(wrong)s; use %(options)s.")
                % {"stage": stage, "wrong": ", ".join(repr(w) for w in wrong), "options": ", ".join(options)}
            )
        stages[stage] = list(dict.fromkeys(o for o in chosen if o in options)) or list(options)
    return stages
