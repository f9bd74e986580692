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
from django.utils.functional import lazy
from django.utils.translation import gettext_lazy as _

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

SEPARATORS = [(",", _("comma ,")), (";", _("semicolon ;")), ("|", _("pipe |")), ("\t", _("tab"))]
SPLIT_LABELS = {
    "random": _("Shuffled rows."),
    "stratified": _("Every part keeps a column's proportions."),
    "oot": _("Out of time: the latest records are held out."),
}
OPTION_LABELS = {
    "models": {
        "logreg": _("logistic regression"),
        "rf": _("random forest"),
        "dt": _("decision tree"),
        "lightgbm": "LightGBM",
        "xgboost": "XGBoost",
        "catboost": "CatBoost",
    },
    "missing": {
        "mean": _("mean"),
        "median": _("median"),
        "tail": _("end of tail"),
        "random": _("random sample"),
        "none": _("none"),
    },
    "cleaner": {"iqr": _("IQR outliers"), "rare": _("rare labels"), "none": _("none")},
    "encoding": {
        "rankcount": _("rank count"),
        "catboost": "CatBoost",
        "count": _("count"),
        "dt": _("decision tree"),
    },
    "preprocess": {
        "norm": _("normaliser"),
        "robust": _("robust scaler"),
        "minmax": _("min-max scaler"),
        "binarizer": _("binarizer"),
        "none": _("none"),
    },
    "unbalance": {"smote": "SMOTE", "random_under": _("random under-sampling"), "none": _("none")},
}
STAGE_HELP = {
    "models": _("The estimators the search tries."),
    "missing": _("How missing values are filled."),
    "cleaner": _("Outliers and rare categories."),
    "encoding": _("How categorical columns become numbers."),
    "preprocess": _("Scaling of the numeric columns."),
    "unbalance": _("Rebalancing the classes before fitting."),
}


def _percent_format(message: str, values: Mapping[str, Any]) -> str:
    return message % values


# A message with placeholders, filled in when shown (in the page's language), not at import.
_formatted = lazy(_percent_format, str)


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
        _("Configuration"),
        [(FIELDS, _("Fill in the options below")), (FILE, _("Upload a conf.json"))],
        FIELDS,
        radio=True,
    )
    target = _text(
        _("Target column"),
        help_text=_("The column to predict (0/1). With a CSV, its columns are offered once chosen."),
        list="automl-columns",
        **{"aria-required": "true"},
        autocomplete="off",
        spellcheck="false",
    )
    sep = _select(
        _("CSV separator"),
        SEPARATORS,
        ",",
        help_text=_("How the CSV's columns are separated (train_data.sep); parquet needs none."),
    )
    cat_cols = _text(
        _("Categorical columns"),
        help_text=_("Comma-separated names; leave empty to detect them (text columns)."),
        autocomplete="off",
        spellcheck="false",
    )
    iterations = _number(
        _("Iterations"),
        1,
        help_text=_formatted(_("Pipelines the search tries, 1 to %(max)s."), {"max": MAX_ITERATIONS}),
        min=1,
        max=MAX_ITERATIONS,
        step=1,
    )
    metric = _select(
        _("Metric"),
        [(metric, metric) for metric in METRICS],
        METRICS[0],
        help_text=_("What the search maximises, on the validation data."),
    )
    seed = _number(
        _("Seed"), DEFAULT_SEED, help_text=_("The same seed and data give the same search."), min=0, step=1
    )
    split_type = _select(
        _("Split"),
        [(split, SPLIT_LABELS.get(split, split)) for split in SPLIT_TYPES],
        SPLIT_TYPES[0],
        radio=True,
    )
    val_size = _number(
        _("Validation share"),
        0.2,
        help_text=_("The share of the data the search scores its trials on (val_size)."),
        min=0,
        max=1,
        step=0.01,
    )
    holdout_size = _number(
        _("Holdout share"),
        0.1,
        help_text=_("Kept aside for the final metrics and curves (holdout_size)."),
        min=0,
        max=1,
        step=0.01,
    )
    stratify_col = _text(
        _("Stratify by"),
        help_text=_("The column whose proportions every part keeps; empty: the target."),
        list="automl-columns",
        autocomplete="off",
        spellcheck="false",
    )
    date_col = _text(
        _("Date column"),
        help_text=_("The column that orders the records in time."),
        list="automl-columns",
        autocomplete="off",
        spellcheck="false",
    )
    oot_by = _select(
        _("Hold out"),
        [(OOT_BY_SIZE, _("the latest share of the records")), (OOT_BY_DATE, _("the records from a date on"))],
        OOT_BY_SIZE,
        radio=True,
    )
    oot_split_size = _number(
        _("Out-of-time share"),
        0.2,
        help_text=_("The latest share of the records, held out (oot_split_size)."),
        min=0,
        max=1,
        step=0.01,
    )
    split_date = forms.CharField(
        required=False,
        label=_("From date"),
        help_text=_("Records on or after this date are held out (split_date, YYYY-MM-DD)."),
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
