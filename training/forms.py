"""The one definition of each training request: an experiment, a run, a promotion.

The pages and the API validate through these forms (the API's OpenAPI bodies are read
off their fields), into `services.TrainingUpload` or `models_app.services.ModelUpload`.
Every check runs on one post and every problem is reported at once, at its field.
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile, UploadedFile
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from groups.forms import DefaultBooleanField
from groups.storable_json import storable_problem
from models_app.access import models_for
from models_app.forms import (
    NAME_TOO_LONG,
    FileOrTextField,
    FileOrTextInput,
    GroupField,
    ModelUploadForm,
    MultipleFileField,
    PythonVersionField,
    UploadCheckingForm,
    refuse_control_characters,
)
from models_app.models import MLModel
from models_app.services import NamedFile
from models_app.validation import (
    check_entrypoint_name,
    check_source,
    check_unique_names,
    parse_requirements,
)
from training import automl, services
from training.automl import config as automl_config
from training.models import MODEL_ARTIFACT, Experiment, TrainingRun
from training.parquet_footer import NotParquet, parquet_rows

TABLE_SUFFIXES = (".csv", ".parquet")
# Roles of an External run's uploaded artifacts, as form fields.
EXTERNAL_TABLES = ("X_train", "y_train", "model_output")
# The Custom run's function unless the run names another (the form's default).
TRAINING_REFERENCE = "train_model"


class ExperimentForm(forms.Form):
    """A training experiment of one of the user's groups."""

    use_required_attribute = False

    experiment_name = forms.CharField(
        max_length=64,
        validators=[refuse_control_characters],
        label=_("Name"),
        error_messages={
            "required": _("Give the experiment a name."),
            "max_length": NAME_TOO_LONG,
        },
    )
    model_type = forms.ChoiceField(
        choices=Experiment.ModelType.choices,
        label=_("Model type"),
        error_messages={
            "required": _("Give the model type: Classification, Regression or Unsupervised."),
            "invalid_choice": _(
                "model_type must be Classification, Regression or Unsupervised, not '%(value)s'."
            ),
        },
    )
    group = GroupField(
        required_message=_("Give the name of one of your groups: it will own the experiment."),
        help_text=_("The name of one of your groups: it owns the experiment and its runs."),
    )
    force = DefaultBooleanField(
        default=False,
        label=_("Force"),
        help_text=_("Create a new experiment even when the group has one with this name and type."),
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["group"].offer_to(user)
        # No `required` (the page posts with novalidate and shows the server's messages),
        # so the required fields say so with aria-required.
        for name in ("experiment_name", "model_type", "group"):
            self.fields[name].widget.attrs["aria-required"] = "true"


class TrainingRunForm(UploadCheckingForm):
    """A new run of an experiment: Custom (data + code) or External (artifacts).

    A valid form's `upload` is the `services.TrainingUpload` for `services.create_run`.
    """

    example_names = {
        "train_data": "train.csv",
        "source": "train.py",
        "requirements": "requirements.txt",
        "env": ".env",
        "extra": "utils.py",
        "X_train": "X_train.csv",
        "y_train": "y_train.csv",
        "model_output": "model_output.csv",
        "model": "model.pkl",
        "metrics": "metrics.json",
        "conf_dict": "conf.json",
        "params": "params.json",
    }

    run_name = forms.CharField(
        max_length=128,
        validators=[refuse_control_characters],
        label=_("Run name"),
        error_messages={"required": _("Give the run a name.")},
    )
    training_type = forms.TypedChoiceField(
        choices=[
            (TrainingRun.TrainingType.CUSTOM, _("Custom: your training code")),
            (TrainingRun.TrainingType.EXTERNAL, _("External: a model trained elsewhere")),
            (TrainingRun.TrainingType.AUTOML, _("AutoML: the platform searches the pipeline")),
        ],
        empty_value=TrainingRun.TrainingType.CUSTOM,
        required=False,
        initial=TrainingRun.TrainingType.CUSTOM,
        widget=forms.RadioSelect,
        error_messages={
            "invalid_choice": _("training_type must be Custom, External or AutoML, not '%(value)s'.")
        },
    )
    description = forms.CharField(
        required=False, max_length=2000, label=_("Description"), widget=forms.Textarea(attrs={"rows": 2})
    )
    python_version = PythonVersionField()
    allow_network = DefaultBooleanField(
        default=True,
        label=_("Allow network access"),
        help_text=_("Let the training code open outbound network connections."),
    )
    train_data = forms.FileField(
        allow_empty_file=True,
        required=False,
        label=_("Training data (.csv or .parquet)"),
        help_text=_(
            "Custom: given to the training function as a DataFrame (its name is in inputFileName). "
            "AutoML: the data the search trains on."
        ),
    )
    source = forms.FileField(
        allow_empty_file=True,
        required=False,
        label=_("Training script (.py)"),
        widget=forms.ClearableFileInput(attrs={"accept": ".py,text/x-python"}),
        help_text=_(
            "Custom: defines the training function; checked by parsing, never imported by the portal."
        ),
    )
    training_reference = forms.CharField(
        max_length=100,
        required=False,
        empty_value="train_model",
        initial=TRAINING_REFERENCE,
        label=_("Training function"),
        help_text=_("Custom: train_model(df, base_path), or the older train_model(base_path)."),
    )
    requirements = forms.FileField(
        allow_empty_file=True,
        required=False,  # Custom and External runs need it; AutoML brings its own
        label=_("requirements.txt"),
        widget=forms.ClearableFileInput(attrs={"accept": ".txt,text/plain"}),
        help_text=_(
            "Installed with uv into the run's own environment (pandas, pyarrow and cloudpickle are "
            "added when not named)."
        ),
        error_messages={"required": _("Upload requirements.txt (it may be empty).")},
    )
    env = forms.FileField(
        allow_empty_file=True,
        label=_(".env (secrets)"),
        required=False,
        help_text=_("KEY=VALUE lines, in the training code's environment. Encrypted at rest."),
    )
    extra = MultipleFileField(
        label=_("Extra files"),
        required=False,
        help_text=_("Put beside the script (Custom), or kept with the run (External)."),
    )
    X_train = forms.FileField(
        allow_empty_file=True,
        required=False,
        label="X_train",
        help_text=_("External: the features (.csv or .parquet)."),
    )
    y_train = forms.FileField(
        allow_empty_file=True,
        required=False,
        label="y_train",
        help_text=_("External: the target (.csv or .parquet)."),
    )
    model_output = forms.FileField(
        allow_empty_file=True,
        required=False,
        label=_("Model output"),
        help_text=_(
            "External: the model's outputs on X_train (.csv or .parquet); monitoring compares "
            "production outputs with them."
        ),
    )
    model = forms.FileField(
        allow_empty_file=True,
        required=False,
        label=_("Model file"),
        help_text=_("External: the fitted model, a pickle (model.pkl)."),
    )
    metrics = FileOrTextField(
        required=False,
        label=_("Metrics"),
        widget=FileOrTextInput(attrs={"accept": ".json,application/json"}),
        help_text=_('External: JSON object of metric name → number, e.g. {"auc": 0.97}.'),
    )
    conf_dict = FileOrTextField(
        required=False,
        label=_("AutoML configuration (conf.json)"),
        widget=FileOrTextInput(attrs={"accept": ".json,application/json"}),
        help_text=_(
            "AutoML: the original product's conf.json (train_data, model_flow, target, iterations, "
            "metric, split, stages), as a file or as JSON text; see docs/training.md (AutoML)."
        ),
    )
    params = FileOrTextField(
        required=False,
        label=_("Parameters"),
        widget=FileOrTextInput(attrs={"accept": ".json,application/json"}),
        help_text=_("External: JSON object of the parameters you logged; kept with the generated ones."),
    )

    def __init__(self, *args, experiment: Experiment, **kwargs):
        super().__init__(*args, **kwargs)
        self.experiment = experiment
        self.upload: services.TrainingUpload | None = None
        self.fields["python_version"].offer()
        for name in ("run_name", "requirements"):
            self.fields[name].widget.attrs["aria-required"] = "true"

    def clean_training_reference(self) -> str:
        value = self.cleaned_data["training_reference"]
        self._check(check_entrypoint_name, value)
        return value

    # Each file gets its safe name in its own clean_<field>, so a bad name is that field's
    # error and every other check still runs.
    def clean_train_data(self) -> NamedFile | None:
        return self._named("train_data")

    def clean_source(self) -> NamedFile | None:
        return self._named("source")

    def clean_requirements(self) -> NamedFile | None:
        return self._named("requirements")

    def clean_env(self) -> NamedFile | None:
        return self._named("env")

    def clean_X_train(self) -> NamedFile | None:  # noqa: N802  (the field's name)
        return self._named("X_train")

    def clean_y_train(self) -> NamedFile | None:
        return self._named("y_train")

    def clean_model_output(self) -> NamedFile | None:
        return self._named("model_output")

    def clean_model(self) -> NamedFile | None:
        return self._named("model")

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        kind = data.get("training_type")
        custom = kind == TrainingRun.TrainingType.CUSTOM
        named: dict[str, NamedFile | None] = {
            name: data.get(name)
            for name in ("train_data", "source", "requirements", "env", *EXTERNAL_TABLES, "model")
        }
        if "training_type" in self.errors:
            # Which files a run needs depends on its type: checked against none, rather than
            # against the External run's list as if the type were External.
            return data
        if kind == TrainingRun.TrainingType.AUTOML:
            self._clean_automl(data, named)
            return data
        if named["requirements"] is None and "requirements" not in self.errors:
            self.add_error("requirements", gettext("Upload requirements.txt (it may be empty)."))
        if kind == TrainingRun.TrainingType.CUSTOM:
            wanted = {
                "train_data": gettext("Upload the training data (.csv or .parquet)."),
                "source": gettext("Upload the training script (.py)."),
            }
            unwanted = (*EXTERNAL_TABLES, "model", "metrics", "params")
            # Translators: %(field)s is the name of a form field, e.g. X_train.
            why = gettext("%(field)s is only used by External runs.")
        else:
            wanted = {
                "X_train": gettext(
                    "Upload X_train, the features the model was fitted on (.csv or .parquet)."
                ),
                "model_output": gettext(
                    "Upload model_output, the model's outputs on X_train (.csv or .parquet): "
                    "monitoring compares production outputs with them."
                ),
                "model": gettext("Upload the fitted model file (model.pkl)."),
            }
            if self.experiment.model_type != Experiment.ModelType.UNSUPERVISED:
                wanted["y_train"] = gettext("Upload y_train, the target (.csv or .parquet).")
            unwanted = ("train_data", "source")
            # Translators: %(field)s is the name of a form field, e.g. train_data.
            why = gettext("%(field)s is only used by Custom runs (an External run brings its artifacts).")
        for field, message in wanted.items():
            if named.get(field) is None and field not in self.errors and not data.get(field):
                self.add_error(field, message)
        for field in unwanted:
            if data.get(field) and field not in self.errors:
                self.add_error(field, why % {"field": field})
        if not custom and self._sent_another_training_reference(data):
            self.add_error("training_reference", why % {"field": "training_reference"})
        if data.get("conf_dict") and "conf_dict" not in self.errors:
            # Translators: conf_dict is the AutoML configuration's field name.
            self.add_error("conf_dict", gettext("conf_dict is only used by AutoML runs."))
        for field in ("train_data", *EXTERNAL_TABLES):
            upload = named.get(field)
            if upload is not None and not upload.name.lower().endswith(TABLE_SUFFIXES):
                self.add_error(field, _not_a_table(upload))
            elif upload is not None:
                self._check_not_empty(field, upload)
        source = named.get("source")
        if custom and source is not None:
            if not source.name.endswith(".py"):
                self.add_error(
                    "source",
                    gettext("'%(name)s' is not a .py file. Upload the training script.")
                    % {"name": source.name},
                )
            elif data.get("training_reference"):
                text = self._text("source", source, "python")
                if text is not None:
                    self._attempt(
                        check_source,
                        text,
                        data["training_reference"],
                        filename=source.name,
                        parameters=("df", "base_path"),
                        also_accepts=("base_path",),
                        reference_field="training_reference",
                    )
        requirements = self._requirements(named.get("requirements"))
        env_values = self._env_values(named.get("env"))
        metrics = self._json_object("metrics", data.get("metrics"))
        if metrics is not None:
            metrics = self._metrics(metrics)
        params = self._json_object("params", data.get("params"))
        if not custom and "metrics" not in self.errors and metrics is None:
            metrics = {}
        stored = {
            field: [upload.name] for field, upload in named.items() if upload is not None and field != "env"
        }
        if data.get("extra"):
            stored["extra"] = [upload.name for upload in data["extra"]]
        self._attempt(check_unique_names, stored)

        if not self._errors:
            self.upload = services.TrainingUpload(
                experiment=self.experiment,
                name=data["run_name"],
                training_type=kind,
                description=data.get("description", ""),
                python_version=data["python_version"],
                allow_network=data["allow_network"],
                training_reference=data["training_reference"] if custom else "",
                train_file=named["train_data"],
                source_file=named["source"],
                requirements_file=named["requirements"],
                requirements=requirements,
                env_values=env_values,
                extra_files=data["extra"],
                inputs={}
                if custom
                else {role: named[role] for role in (*EXTERNAL_TABLES, "model") if named[role]},
                metrics=None if custom else metrics,
                logged_params=None if custom else params,
            )
        return data

    def _clean_automl(self, data: dict[str, Any], named: dict[str, NamedFile | None]) -> None:
        """An AutoML run: the training data and the configuration; the platform brings the rest."""
        if self.experiment.model_type != Experiment.ModelType.CLASSIFICATION:
            self.add_error(
                "training_type",
                gettext(
                    "AutoML trains binary classification models only, and this experiment is "
                    "%(model_type)s: run AutoML in a Classification experiment, or train this one with "
                    "a Custom or External run."
                )
                % {"model_type": self.experiment.model_type},
            )
        train = named["train_data"]
        if train is None and "train_data" not in self.errors:
            self.add_error("train_data", gettext("Upload the training data (.csv or .parquet)."))
        elif train is not None and not train.name.lower().endswith(TABLE_SUFFIXES):
            self.add_error("train_data", _not_a_table(train))
            train = None
        elif train is not None and not self._check_not_empty("train_data", train):
            train = None
        for field in (
            "source",
            "requirements",
            "env",
            "extra",
            *EXTERNAL_TABLES,
            "model",
            "metrics",
            "params",
            "training_reference",
        ):
            if field == "training_reference" and not self._sent_another_training_reference(data):
                continue
            if data.get(field) and field not in self.errors:
                self.add_error(
                    field,
                    gettext(
                        # Translators: %(field)s is the name of a form field, e.g. requirements.
                        "%(field)s is not used by AutoML runs: the platform supplies the training code and "
                        "its environment."
                    )
                    % {"field": field},
                )
        asked_python = str(self.data.get("python_version") or "").strip()
        if asked_python and "python_version" not in self.errors:
            chosen = str(data.get("python_version") or "").split(".")[:2]
            if chosen != settings.AUTOML_PYTHON.split(".")[:2]:
                self.add_error(
                    "python_version",
                    gettext("AutoML runs use the platform's Python %(version)s: leave python_version out.")
                    % {"version": settings.AUTOML_PYTHON},
                )
        conf: dict | None = None
        if data.get("conf_dict") is None and "conf_dict" not in self.errors:
            self.add_error(
                "conf_dict", gettext("Give the AutoML configuration (conf.json), as a file or as JSON text.")
            )
        else:
            raw = self._json_object("conf_dict", data.get("conf_dict"))
            if raw is not None and train is not None:
                header = self._csv_header(train, raw) if train.name.lower().endswith(".csv") else None
                try:
                    conf = automl_config.normalise(raw, file_name=train.name, header=header)
                except automl_config.ConfigError as exc:
                    self.add_error("conf_dict", exc.problems)
                else:
                    problem = _csv_target_problem(train, conf, header) if header is not None else None
                    if problem is not None:
                        self.add_error("conf_dict", problem)
        if self._errors or conf is None or train is None:
            return
        requirements_text = automl.REQUIREMENTS.read_text()
        self.upload = services.TrainingUpload(
            experiment=self.experiment,
            name=data["run_name"],
            training_type=TrainingRun.TrainingType.AUTOML,
            description=data.get("description", ""),
            python_version=settings.AUTOML_PYTHON,
            allow_network=data["allow_network"],
            training_reference=automl.TRAINING_FUNCTION,
            train_file=train,
            source_file=_text_file(automl.SOURCE_NAME, automl.SEARCH_SCRIPT.read_text()),
            requirements_file=_text_file("requirements.txt", requirements_text),
            requirements=parse_requirements(requirements_text),
            inputs={"conf": _text_file(automl.CONF_NAME, json.dumps(conf, indent=2))},
        )

    def _check_not_empty(self, field: str, upload: NamedFile) -> bool:
        """Refuse a table with no rows (or a parquet file that is none) here, rather than
        let the run fail on it once started."""
        if not upload.file.size:
            problem = gettext("'%(name)s' is empty: a table needs at least its header row.")
        elif upload.name.lower().endswith(".csv"):
            if not _csv_without_rows(upload):
                return True
            problem = gettext("'%(name)s' has a header row and no rows of data.")
        else:
            try:
                rows = parquet_rows(upload.file, upload.file.size)
            except NotParquet:
                problem = gettext(
                    "'%(name)s' is not a parquet file that can be read: save the table again with pandas' "
                    "to_parquet, or upload it as a .csv file."
                )
            else:
                if rows != 0:  # None: a footer too large to read here; the run reads the file
                    return True
                problem = gettext("'%(name)s' is a parquet table with no rows of data.")
        self.add_error(field, problem % {"name": upload.name})
        return False

    def _sent_another_training_reference(self, data: dict[str, Any]) -> bool:
        """A training function named for a run that has none (External, AutoML): only the
        form's own default, which the portal's page always sends, passes."""
        return (
            "training_reference" not in self.errors
            and (data.get("training_reference") or TRAINING_REFERENCE) != TRAINING_REFERENCE
        )

    def _csv_header(self, train: NamedFile, conf: dict) -> list[str] | None:
        """The uploaded CSV's column names, read with the configuration's separator."""
        given = conf.get("train_data") if isinstance(conf.get("train_data"), dict) else {}
        sep = given.get("sep", ",")
        if not isinstance(sep, str) or len(sep) != 1:
            return None
        train.file.seek(0)
        first = train.file.readline(1024 * 1024)
        train.file.seek(0)
        try:
            line = first.decode("utf-8-sig")
        except UnicodeDecodeError:
            return None
        return next(csv.reader([line.rstrip("\r\n")], delimiter=sep), None)

    def _json_object(self, field: str, value: object) -> dict | None:
        if value is None or field in self.errors:
            return None
        if isinstance(value, UploadedFile):
            named = self._named(field)
            value = self._text(field, named, "json") if named else None
            if value is None:
                return None
        try:
            parsed = json.loads(value)
        except ValueError as exc:
            self.add_error(
                field, gettext("%(field)s is not valid JSON: %(error)s.") % {"field": field, "error": exc}
            )
            return None
        except RecursionError:  # json recurses once per level: about 1,000 levels deep
            self.add_error(
                field,
                gettext(
                    "%(field)s is JSON nested too deeply (objects or arrays inside one another about "
                    "1,000 levels deep or more): send a flatter document."
                )
                % {"field": field},
            )
            return None
        if not isinstance(parsed, dict):
            self.add_error(
                field,
                # Translators: %(type)s is a Python type's name: list, str, int...
                gettext("%(field)s must be a JSON object of name → value, not %(type)s.")
                % {"field": field, "type": type(parsed).__name__},
            )
            return None
        problem = storable_problem(parsed, allow_nan=field == "metrics")  # metrics: NaN becomes null
        if problem is not None:
            # Translators: %(problem)s starts with "it", e.g. "it contains a number too large for JSON".
            self.add_error(
                field,
                gettext("%(field)s cannot be stored: %(problem)s") % {"field": field, "problem": problem},
            )
            return None
        return parsed

    def _metrics(self, metrics: dict) -> dict[str, float | None] | None:
        problems, clean = [], {}
        for name, value in metrics.items():
            if isinstance(value, bool) or not (value is None or isinstance(value, int | float)):
                problems.append(
                    gettext("The metric '%(name)s' is %(value)s, not a number.")
                    % {"name": name, "value": json.dumps(value)[:60]}
                )
            elif value is None or not _finite(value):
                clean[name] = None
            else:
                clean[name] = value
        if problems:
            self.add_error("metrics", problems)
            return None
        return clean


def _finite(number: int | float) -> bool:
    """False for NaN, infinities, and integers too large for a float (like 1e999, which
    parses to infinity: every chart and comparison would see them as such)."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


# How much of a CSV's start is read to see a row after its header.
CSV_PEEK_BYTES = 1024 * 1024


def _csv_without_rows(upload: NamedFile) -> bool:
    """Whether the CSV is its header line and blank lines only. A file past the first MiB
    has rows; a header with quoted line breaks reads as rows too (left to the run)."""
    upload.file.seek(0)
    start = upload.file.read(CSV_PEEK_BYTES)
    upload.file.seek(0)
    if len(start) == CSV_PEEK_BYTES:
        return False
    lines = start.splitlines()
    return len(lines) >= 1 and not any(line.strip() for line in lines[1:])


# What pandas' read_csv reads as a missing value, and as a boolean
# (True is class 1 to the search).
PANDAS_NA_TEXTS = frozenset(
    {"", "None", "NULL", "null", "NA", "N/A", "n/a", "<NA>", "#NA", "#N/A", "#N/A N/A"}
) | {"NaN", "-NaN", "nan", "-nan", "1.#IND", "-1.#IND", "1.#QNAN", "-1.#QNAN"}
PANDAS_BOOLEAN_TEXTS = frozenset({"True", "TRUE", "true", "False", "FALSE", "false"})


def _csv_target_problem(upload: NamedFile, conf: dict, header: list[str]) -> str | None:
    """Why the AutoML target in the CSV's first MiB can't be the binary 0/1 target the
    search needs, or None. Only what is sure to fail the run once started is reported: a
    value that is neither 0 nor 1 (read as the search reads it) or a missing one; the rest
    of a larger file is checked when the run starts."""
    target, sep = conf["target"], conf["train_data"]["sep"]
    upload.file.seek(0)
    start = upload.file.read(CSV_PEEK_BYTES)
    upload.file.seek(0)
    cut = len(start) == CSV_PEEK_BYTES
    if cut:
        start = start[: start.rfind(b"\n") + 1]
    try:
        reader = csv.reader(io.StringIO(start.decode("utf-8-sig")), delimiter=sep)
        rows = [(reader.line_num, row) for row in reader]
    except (UnicodeDecodeError, csv.Error):
        return None
    if cut:
        rows = rows[:-1]  # perhaps a record cut inside a quoted line break
    column = header.index(target)
    found: set[str] = set()
    for line, row in rows[1:]:
        if not row:  # a blank line: pandas skips it
            continue
        if len(row) != len(header):  # pandas would read this file otherwise: left to the run
            return None
        value = row[column]
        if value in PANDAS_NA_TEXTS:
            return gettext(
                "target: column '%(target)s' has a missing value (line %(line)s of '%(name)s'); AutoML "
                "needs the class of every row, 0 or 1."
            ) % {"target": target, "line": line, "name": upload.name}
        found.add(value)
    if all(value in PANDAS_BOOLEAN_TEXTS or _zero_or_one(value) for value in found):
        return None
    shown = sorted(found)
    return gettext(
        "target: AutoML needs a binary target holding 0 and 1 (1 = the positive class), and column "
        "'%(target)s' of '%(name)s' holds %(values)s: recode it as 0 and 1."
    ) % {
        "target": target,
        "name": upload.name,
        "values": ", ".join(repr(value) for value in shown[:10]) + (", …" if len(shown) > 10 else ""),
    }


def _zero_or_one(text: str) -> bool:
    """Whether the search reads the value as class 0 or 1 (it takes float(value))."""
    try:
        return float(text) in (0.0, 1.0)
    except ValueError:
        return False


def _not_a_table(upload: NamedFile) -> str:
    return gettext("'%(name)s' is not a .csv or .parquet file.") % {"name": upload.name}


def _text_file(name: str, text: str) -> NamedFile:
    return NamedFile(name, SimpleUploadedFile(name, text.encode("utf-8")))


class VersionOfSelect(forms.Select):
    """The run page's choice between a new model and a version of one of the group's models
    (the API sends the hash instead). Read when rendered, so the API never queries them;
    each model's option names its operation (training.js makes the form's match)."""

    def __init__(self, models):
        self.models = models
        self.operations: dict[str, str] = {}
        super().__init__(choices=self.options_of_models)

    def options_of_models(self) -> list:
        models = list(self.models())
        self.operations = {model.hash: model.operation for model in models}
        choices: list = [("", _("A new model"))]
        if models:
            choices.append(
                (
                    _("A new version of"),
                    [(model.hash, f"{model.name} ({model.operation})") for model in models],
                )
            )
        return choices

    def create_option(self, name, value, label, selected, index, subindex=None, attrs=None):
        option = super().create_option(name, value, label, selected, index, subindex, attrs)
        if value in self.operations:
            option["attrs"]["data-model-operation"] = self.operations[value]
        return option


class PromoteForm(ModelUploadForm):
    """A model from a Succeeded run: the scoring code, schema and operation come from the
    request; the model file, the Python version, the group and the (frozen) requirements
    from the run, so its environment is reused. `requirements` becomes optional: lines
    the scoring code needs beyond the training's."""

    # Taken from the run (None removes an inherited field).
    group = None
    model = None
    python_version = None
    taken_elsewhere = (
        ("group", "model", "python_version"),
        _("A promoted model takes its %(field)s from the training run: leave %(field)s out."),
    )
    requirements = forms.FileField(
        allow_empty_file=True,
        required=False,
        label=_("Extra requirements"),
        widget=forms.ClearableFileInput(attrs={"accept": ".txt,text/plain"}),
        help_text=_(
            "Optional: packages the scoring code needs beyond the training's environment, "
            "which the model otherwise reuses as it is (no build)."
        ),
    )

    version_of = forms.CharField(
        required=False,
        max_length=33,
        label=_("Promote as"),
        help_text=_(
            "Optional: one of the group's models (its hash). The run becomes that model's next "
            "version, with its name and operation, and goes live once Deployed."
        ),
    )

    def __init__(self, *args, user, run: TrainingRun, **kwargs):
        super().__init__(*args, user=user, **kwargs)
        self.run = run
        self.user = user
        group = run.experiment.group
        self.fields["version_of"].widget = VersionOfSelect(
            lambda: (
                models_for(user).filter(group=group).exclude(status=MLModel.Status.DELETED).order_by("name")
            )
        )
        if self.data.get("version_of"):  # a version takes the model's name
            self.fields["name"].required = False
            self.fields["name"].widget.attrs.pop("aria-required", None)
        self.automl = run.training_type == TrainingRun.TrainingType.AUTOML
        if self.automl:
            # Two arguments are enough: the platform brings the scoring code and the
            # schema defaults to the first row of X_train.
            for name in ("source", "model_reference"):
                self.fields[name].required = False
                self.fields[name].widget.attrs.pop("aria-required", None)
            self.fields["source"].help_text = gettext(
                "Optional for AutoML runs: the platform supplies the scoring code."
            )
            self.fields["model_reference"].initial = ""
            self.fields["schema"].help_text = gettext(
                # Translators: %(file)s is the name of the run's schema file.
                "Optional for AutoML runs: Sync models get %(file)s (the first row of X_train) unless you "
                "give an example here."
            ) % {"file": automl.SCHEMA_ARTIFACT}
            self.fields["model_reference"].help_text = gettext(
                # Translators: %(sync)s and %(async)s are the names of the scoring functions.
                "Optional for AutoML runs: %(sync)s (Sync) or %(async)s (Async)."
            ) % {"sync": automl.SYNC_ENTRYPOINT, "async": automl.ASYNC_ENTRYPOINT}

    def clean_model_reference(self) -> str:
        if self.automl and not self.cleaned_data.get("model_reference"):
            sync = self.cleaned_data.get("operation") != MLModel.Operation.ASYNC
            return automl.SYNC_ENTRYPOINT if sync else automl.ASYNC_ENTRYPOINT
        return super().clean_model_reference()

    def clean_version_of(self) -> MLModel | None:
        value = self.cleaned_data["version_of"].strip()
        if not value:
            return None
        model = models_for(self.user).filter(hash=value).exclude(status=MLModel.Status.DELETED).first()
        if model is None:
            raise forms.ValidationError(
                gettext("No model '%(hash)s' among your groups' models.") % {"hash": value}
            )
        group = self.run.experiment.group
        if model.group_id != group.pk:
            raise forms.ValidationError(
                gettext(
                    "Model '%(hash)s' belongs to group %(group)s; this run's versions can only go to "
                    "models of group %(run_group)s."
                )
                % {"hash": value, "group": model.group.name, "run_group": group.name}
            )
        return model

    def clean(self) -> dict[str, Any]:
        run = self.run
        target = self.cleaned_data.get("version_of")
        if target is not None:
            # A version has its model's name and operation: the same may be sent (the
            # portal's form and the SDK do), another is refused rather than dropped.
            asked = self.data.get("operation")
            if asked and asked != target.operation:
                self.add_error(
                    "operation",
                    gettext("Model '%(hash)s' is %(operation)s: its versions are %(operation)s too.")
                    % {"hash": target.hash, "operation": target.operation},
                )
            asked_name = (self.data.get("name") or "").strip()
            if asked_name and asked_name != target.name:
                self.add_error(
                    "name",
                    gettext(
                        "Model '%(hash)s' is named '%(name)s' and its versions keep that name: leave name out."
                    )
                    % {"hash": target.hash, "name": target.name},
                )
            self.cleaned_data.update(name=target.name, operation=target.operation)
        extra_text, extra_lines = "", []
        if self.cleaned_data.get("requirements") is not None:
            extra_text = self._text("requirements", self.cleaned_data["requirements"], "requirements") or ""
            # Checked on their own first, so an error gives the line of the user's file, not
            # of the merged one; lines in error are left out (their error is reported once).
            allowed = settings.ALLOW_REQUIREMENT_OPTIONS
            extra_lines = self._attempt(parse_requirements, extra_text, allow_options=allowed)
            if extra_lines is None:
                extra_text, extra_lines = "", []
        frozen_lines, text = services.promoted_requirements(run, extra_text)
        conflicts = services.frozen_pin_conflicts(frozen_lines, extra_lines)
        if conflicts:
            self.add_error(
                "requirements",
                [
                    gettext(
                        "%(requirement)s conflicts with the training run's environment, which has "
                        "%(pin)s: the model is built on that environment, so leave %(name)s out of "
                        "requirements or allow %(version)s."
                    )
                    % conflict
                    for conflict in conflicts
                ],
            )
        self.cleaned_data["requirements"] = services.frozen_requirements_file(text)
        self.cleaned_data["python_version"] = run.python_full_version or run.python_version
        self.cleaned_data["group"] = run.experiment.group
        # Named only: services.promote opens the run's file once the upload is accepted.
        self.cleaned_data["model"] = NamedFile(MODEL_ARTIFACT, None)
        if self.automl:
            self._automl_defaults()
        return super().clean()

    def _automl_defaults(self) -> None:
        data = self.cleaned_data
        if data.get("source") is None and "source" not in self.errors:
            data["source"] = _text_file("app.py", automl.SCORE_SCRIPT.read_text())
        sync = data.get("operation") != MLModel.Operation.ASYNC
        schema_path = self.run.artifacts_folder / automl.SCHEMA_ARTIFACT
        if sync and not data.get("schema") and not data.get("schema_text") and schema_path.is_file():
            data["schema_text"] = schema_path.read_text(encoding="utf-8")
