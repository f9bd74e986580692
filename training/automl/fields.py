"""The AutoML configuration as form fields: the browser's way to write conf.json.

The run form shows each option of the original `conf.json` as a plain control
(`AutoMLFieldsForm`), and `conf_from_fields` turns what was posted into the
configuration `TrainingRunForm` checks with `config.normalise`. That is the one check:
nothing here validates, so a wrong value reaches `normalise` as it was typed and is
reported there, with the problems of every other key, exactly as for an uploaded file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from django import forms

from training.automl.config import DEFAULT_SEED, MAX_ITERATIONS, METRICS, SPLIT_TYPES, STAGES

PREFIX = "automl"
# How the page takes the configuration: these fields, or an uploaded conf.json.
FIELDS, FILE = "fields", "file"
# How an out-of-time split is cut: the latest share of the records, or from a date on.
OOT_BY_SIZE, OOT_BY_DATE = "size", "date"
# Which split types use which option (the others are left out of the configuration, so
# a value typed before switching type is not checked against the data).
SPLIT_OPTIONS: dict[str, tuple[str, ...]] = {
    "val_size": SPLIT_TYPES,
    "holdout_size": ("random", "stratified"),
    "stratify_col": ("stratified",),
    "date_col": ("oot",),
    "oot_by": ("oot",),
}

SEPARATORS = [(",", "comma ,"), (";", "semicolon ;"), ("|", "pipe |"), ("\t", "tab")]
SPLIT_LABELS = {
    "random": "Shuffled rows.",
    "stratified": "Every part keeps a column's proportions.",
    "oot": "Out of time: the latest records are held out.",
}
OPTION_LABELS = {
    "models": {
        "logreg": "logistic regression",
        "rf": "random forest",
        "dt": "decision tree",
        "lightgbm": "LightGBM",
        "xgboost": "XGBoost",
        "catboost": "CatBoost",
    },
    "missing": {
        "mean": "mean",
        "median": "median",
        "tail": "end of tail",
        "random": "random sample",
        "none": "none",
    },
    "cleaner": {"iqr": "IQR outliers", "rare": "rare labels", "none": "none"},
    "encoding": {"rankcount": "rank count", "catboost": "CatBoost", "count": "count", "dt": "decision tree"},
    "preprocess": {
        "norm": "normaliser",
        "robust": "robust scaler",
        "minmax": "min-max scaler",
        "binarizer": "binarizer",
        "none": "none",
    },
    "unbalance": {"smote": "SMOTE", "random_under": "random under-sampling", "none": "none"},
}
STAGE_HELP = {
    "models": "The estimators the search tries.",
    "missing": "How missing values are filled.",
    "cleaner": "Outliers and rare categories.",
    "encoding": "How categorical columns become numbers.",
    "preprocess": "Scaling of the numeric columns.",
    "unbalance": "Rebalancing the classes before fitting.",
}


class _Options(forms.Field):
    """Checked options of one stage, as posted: unknown ones are normalise's to report."""

    widget = forms.CheckboxSelectMultiple

    def to_python(self, value: Any) -> list[str]:
        return [str(item) for item in value or []]


def _text(label: str, *, help_text: str = "", strip: bool = True, **attrs: Any) -> forms.CharField:
    return forms.CharField(
        required=False, label=label, help_text=help_text, strip=strip, widget=forms.TextInput(attrs=attrs)
    )


def _number(label: str, initial: float | int | None, *, help_text: str = "", **attrs: Any) -> forms.CharField:
    # A CharField: "2.5 iterations" must reach normalise to be reported with its key.
    return forms.CharField(
        required=False,
        label=label,
        help_text=help_text,
        initial=initial,
        widget=forms.NumberInput(attrs={"inputmode": "decimal", **attrs}),
    )


def _select(
    label: str, choices, initial: str, *, help_text: str = "", radio: bool = False
) -> forms.CharField:
    widget = forms.RadioSelect(choices=choices) if radio else forms.Select(choices=choices)
    return forms.CharField(
        required=False, label=label, help_text=help_text, initial=initial, strip=False, widget=widget
    )


class AutoMLFieldsForm(forms.Form):
    """The options of conf.json as fields, named ``automl-<key>`` on the run form.

    Always valid: every field is a lenient string (or list); `conf` is what
    `TrainingRunForm` receives as ``conf_dict``.
    """

    use_required_attribute = False

    conf_source = _select(
        "Configuration",
        [(FIELDS, "Fill in the options below"), (FILE, "Upload a conf.json")],
        FIELDS,
        radio=True,
    )
    target = _text(
        "Target column",
        help_text="The column to predict (0/1). With a CSV, its columns are offered once chosen.",
        list="automl-columns",
        **{"aria-required": "true"},
        autocomplete="off",
        spellcheck="false",
    )
    sep = _select(
        "CSV separator",
        SEPARATORS,
        ",",
        help_text="How the CSV's columns are separated (train_data.sep); parquet needs none.",
    )
    cat_cols = _text(
        "Categorical columns",
        help_text="Comma-separated names; leave empty to detect them (text columns).",
        autocomplete="off",
        spellcheck="false",
    )
    iterations = _number(
        "Iterations",
        1,
        help_text=f"Pipelines the search tries, 1 to {MAX_ITERATIONS}.",
        min=1,
        max=MAX_ITERATIONS,
        step=1,
    )
    metric = _select(
        "Metric",
        [(metric, metric) for metric in METRICS],
        METRICS[0],
        help_text="What the search maximises, on the validation data.",
    )
    seed = _number(
        "Seed", DEFAULT_SEED, help_text="The same seed and data give the same search.", min=0, step=1
    )
    split_type = _select(
        "Split",
        [(split, SPLIT_LABELS.get(split, split)) for split in SPLIT_TYPES],
        SPLIT_TYPES[0],
        radio=True,
    )
    val_size = _number(
        "Validation share",
        0.2,
        help_text="The share of the data the search scores its trials on (val_size).",
        min=0,
        max=1,
        step=0.01,
    )
    holdout_size = _number(
        "Holdout share",
        0.1,
        help_text="Kept aside for the final metrics and curves (holdout_size).",
        min=0,
        max=1,
        step=0.01,
    )
    stratify_col = _text(
        "Stratify by",
        help_text="The column whose proportions every part keeps; empty: the target.",
        list="automl-columns",
        autocomplete="off",
        spellcheck="false",
    )
    date_col = _text(
        "Date column",
        help_text="The column that orders the records in time.",
        list="automl-columns",
        autocomplete="off",
        spellcheck="false",
    )
    oot_by = _select(
        "Hold out",
        [(OOT_BY_SIZE, "the latest share of the records"), (OOT_BY_DATE, "the records from a date on")],
        OOT_BY_SIZE,
        radio=True,
    )
    oot_split_size = _number(
        "Out-of-time share",
        0.2,
        help_text="The latest share of the records, held out (oot_split_size).",
        min=0,
        max=1,
        step=0.01,
    )
    split_date = forms.CharField(
        required=False,
        label="From date",
        help_text="Records on or after this date are held out (split_date, YYYY-MM-DD).",
        widget=forms.DateInput(attrs={"type": "date"}),
    )

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("prefix", PREFIX)
        super().__init__(*args, **kwargs)
        for stage, options in STAGES.items():
            labels = OPTION_LABELS.get(stage, {})
            self.fields[stage] = _Options(
                required=False,
                label=stage,
                help_text=STAGE_HELP.get(stage, ""),
                initial=list(options),
                widget=forms.CheckboxSelectMultiple(
                    choices=[(option, labels.get(option, option)) for option in options]
                ),
            )

    @property
    def stage_fields(self) -> list[forms.BoundField]:
        return [self[stage] for stage in STAGES]

    @property
    def uses_file(self) -> bool:
        """An uploaded conf.json was chosen instead of the fields."""
        return self.is_bound and self.is_valid() and self.cleaned_data["conf_source"] == FILE

    def conf(self) -> dict[str, Any]:
        """The configuration the posted fields describe (valid or not: normalise tells)."""
        self.is_valid()
        return conf_from_fields(self.cleaned_data)


def _number_value(text: str) -> int | float | str:
    """ "3" → 3, "0.25" → 0.25; anything else stays text for normalise to name."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return text
    return value if math.isfinite(value) else text


def conf_from_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    """conf.json from the run form's AutoML fields (their names without the prefix).

    Empty fields are left out (normalise fills their defaults); numbers become numbers;
    options that the chosen split type does not use are left out; the stages are the
    checked options. Nothing is validated here.
    """

    def text(key: str) -> str:
        value = values.get(key)
        return value if isinstance(value, str) else ""

    conf: dict[str, Any] = {"model_flow": "classification"}
    if text("sep"):
        conf["train_data"] = {"sep": text("sep")}
    if text("target").strip():
        conf["target"] = text("target").strip()
    cat_cols = [name.strip() for name in text("cat_cols").split(",") if name.strip()]
    if cat_cols:
        conf["cat_cols"] = cat_cols
    for key in ("iterations", "seed"):
        if text(key).strip():
            conf[key] = _number_value(text(key).strip())
    for key in ("metric", "split_type"):
        if text(key):
            conf[key] = text(key)

    split_type = conf.get("split_type", SPLIT_TYPES[0])

    def used(option: str) -> bool:
        # An unknown split type (a hand-made post) keeps everything: normalise names it.
        return split_type not in SPLIT_TYPES or split_type in SPLIT_OPTIONS[option]

    for key in ("val_size", "holdout_size"):
        if used(key) and text(key).strip():
            conf[key] = _number_value(text(key).strip())
    for key in ("stratify_col", "date_col"):
        if used(key) and text(key).strip():
            conf[key] = text(key).strip()
    if used("oot_by"):
        if text("oot_by") == OOT_BY_DATE:
            # Even empty: "from a date" without one is a problem, not the default share.
            conf["split_date"] = text("split_date").strip()
        elif text("oot_split_size").strip():
            conf["oot_split_size"] = _number_value(text("oot_split_size").strip())

    stages = {
        stage: [str(option) for option in values[stage]]
        for stage in STAGES
        if isinstance(values.get(stage), list | tuple)
    }
    if stages:
        conf["stages"] = stages
    return conf
