"""The one definition of a monitoring registration and of its settings.

The pages and the API validate through these forms. What can be checked from the
request alone is checked here and reported at once, at its field (a 400): the
configuration's shape, the reference run, the preprocess source. What needs the
reference data or running the user's code is the validation job's (Invalidated).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from django import forms
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from groups import webhooks
from groups.forms import DefaultBooleanField
from groups.storable_json import storable_problem
from models_app.forms import UploadCheckingForm
from models_app.models import MLModel
from models_app.services import NamedFile
from models_app.validation import check_entrypoint_name, check_source, decode_upload
from monitoring import drift as drift_defaults
from monitors.models import Monitor, PeriodKind
from training.models import Experiment, TrainingRun

MAX_CONFIGURATION_BYTES = 1024 * 1024
MAX_COLUMNS = 1000
MAX_MINIMUM_ROWS = 2_147_483_647  # the column's range (PositiveIntegerField)
RUN_KEY = "NeomarilTrainingExecution"
# Each key of the configuration in the original product's two spellings.
KEYS = {
    "period": ("Period", "period"),
    "train_data": ("TrainData", "train_data"),
    "input_cols": ("InputCols", "input_cols"),
    "output_cols": ("OutputCols", "output_cols"),
}
TRAIN_DATA_KEYS = {
    "run": (RUN_KEY, "neomaril_training_execution"),
    "experiment": ("NeomarilTrainingExperiment", "neomaril_training_experiment"),
    "date_ref": ("TrainDateRef", "train_date_ref"),
    "date_col": ("TrainDateCol", "train_date_col"),
}
_RUN_PATH = re.compile(r"^(T[0-9a-f]{32})/([0-9]{1,9})$")
_RUN_NUMBER = re.compile(r"^[0-9]{1,9}$")  # ASCII: "²".isdigit() is true, int("²") fails


@dataclass
class Configuration:
    """A checked configuration file."""

    period: str
    training_run: TrainingRun
    train_date_ref: date | None
    train_date_col: str
    input_cols: list[str]
    output_cols: list[str]
    raw: dict


def _pick(data: dict, spellings: tuple[str, str], problems: list[str]) -> Any:
    present = [key for key in spellings if key in data]
    if len(present) > 1:
        problems.append(
            gettext("Give %(key)s once: both %(key)s and %(other)s are set.")
            % {"key": spellings[0], "other": spellings[1]}
        )
    return data[present[0]] if present else None


def _unknown(data: dict, known: dict[str, tuple[str, str]], where: str) -> list[str]:
    """The problem of keys `data` should not have; `where` is "configuration" or "TrainData"."""
    spellings = {key for pair in known.values() for key in pair}
    extra = [key for key in data if key not in spellings]
    if not extra:
        return []
    if where == "TrainData":
        if len(extra) > 1:
            message = gettext("Unknown keys %(keys)s in TrainData (known: %(names)s).")
        else:
            message = gettext("Unknown key %(keys)s in TrainData (known: %(names)s).")
    elif len(extra) > 1:
        message = gettext("Unknown keys %(keys)s in the configuration (known: %(names)s).")
    else:
        message = gettext("Unknown key %(keys)s in the configuration (known: %(names)s).")
    names = ", ".join(pair[0] for pair in known.values())
    return [message % {"keys": ", ".join(map(repr, extra)), "names": names}]


def _columns(value: Any, key: str, problems: list[str], *, required: bool) -> list[str]:
    if value is None:
        if required:
            problems.append(
                gettext('%(key)s is missing: list the columns to monitor, e.g. ["age", "income"].')
                % {"key": key}
            )
        return []
    if not isinstance(value, list) or not all(isinstance(c, str) and c.strip() for c in value):
        problems.append(
            gettext("%(key)s must be a list of column names (non-empty strings), not %(value)s.")
            % {"key": key, "value": json.dumps(value)[:200]}
        )
        return []
    if required and not value:
        problems.append(gettext("%(key)s is empty: list at least one column to monitor.") % {"key": key})
    if len(value) > MAX_COLUMNS:
        problems.append(
            gettext("%(key)s lists %(count)s columns; at most %(limit)s.")
            % {"key": key, "count": len(value), "limit": MAX_COLUMNS}
        )
    repeated = sorted({c for c in value if value.count(c) > 1})
    if repeated:
        problems.append(
            gettext("%(key)s names %(columns)s more than once.")
            % {"key": key, "columns": ", ".join(repeated)}
        )
    return value


def parse_configuration(raw: dict, model: MLModel) -> Configuration:
    """The configuration, checked against the model; every problem raised at once."""
    problems: list[str] = _unknown(raw, KEYS, "configuration")
    period_value = _pick(raw, KEYS["period"], problems)
    period = None
    if period_value is None:
        problems.append(gettext("Period is missing: one of Day, Week, Month, Year."))
    elif not isinstance(period_value, str) or period_value.strip().capitalize() not in PeriodKind.values:
        problems.append(
            gettext("Period must be one of Day, Week, Month, Year, not %(value)s.")
            % {"value": json.dumps(period_value)}
        )
    else:
        period = period_value.strip().capitalize()
    input_cols = _columns(_pick(raw, KEYS["input_cols"], problems), "InputCols", problems, required=True)
    output_cols = _columns(_pick(raw, KEYS["output_cols"], problems), "OutputCols", problems, required=False)

    train_data = _pick(raw, KEYS["train_data"], problems)
    run, date_ref, date_col = None, None, ""
    if train_data is None:
        train_data = {}
    if not isinstance(train_data, dict):
        problems.append(
            gettext(
                "TrainData must be an object with NeomarilTrainingExecution and TrainDateRef or TrainDateCol."
            )
        )
    else:
        problems += _unknown(train_data, TRAIN_DATA_KEYS, "TrainData")
        run = _reference_run(train_data, model, problems)
        ref = _pick(train_data, TRAIN_DATA_KEYS["date_ref"], problems)
        col = _pick(train_data, TRAIN_DATA_KEYS["date_col"], problems)
        if (ref is None) == (col is None):
            problems.append(
                gettext(
                    "TrainData needs exactly one of TrainDateRef (the date the training data was taken, "
                    '"YYYY-MM-DD") and TrainDateCol (a date column of the run\'s X_train).'
                )
            )
        elif ref is not None:
            try:
                date_ref = date.fromisoformat(ref) if isinstance(ref, str) and len(ref) == 10 else None
            except ValueError:
                date_ref = None
            if date_ref is None:
                problems.append(
                    gettext("TrainDateRef must be a date written YYYY-MM-DD, not %(value)s.")
                    % {"value": json.dumps(ref)}
                )
        elif not isinstance(col, str) or not col.strip():
            problems.append(
                gettext("TrainDateCol must be a column name, not %(value)s.") % {"value": json.dumps(col)}
            )
        else:
            date_col = col
    if problems:
        raise forms.ValidationError(problems)
    return Configuration(period, run, date_ref, date_col, input_cols, output_cols, raw)


def _reference_run(train_data: dict, model: MLModel, problems: list[str]) -> TrainingRun | None:
    """The training run whose data is the reference: named, or the one the model's live
    version was promoted from (the one whose predictions are recorded)."""
    value = _pick(train_data, TRAIN_DATA_KEYS["run"], problems)
    experiment_hash = _pick(train_data, TRAIN_DATA_KEYS["experiment"], problems)
    promoted_from = model.serving.training_run or model.training_run
    if value is None:
        if promoted_from is None:
            problems.append(
                gettext(
                    "TrainData.%(key)s is missing: this model was not promoted from a training run, so "
                    "name the run whose data is the reference (an External run registers a model trained "
                    'elsewhere), as "<experiment hash>/<run number>".'
                )
                % {"key": RUN_KEY}
            )
        elif promoted_from.files_removed_at is not None:
            problems.append(
                gettext(
                    "The files of run %(number)s of %(experiment)s, which this model was promoted from, "
                    "were deleted, so it has no reference data any more: name another run in "
                    "TrainData.%(key)s."
                )
                % {
                    "key": RUN_KEY,
                    "number": promoted_from.number,
                    "experiment": promoted_from.experiment.hash,
                }
            )
            return None
        return promoted_from
    text = str(value).strip()
    match = _RUN_PATH.match(text)
    if match:
        experiment_hash, number = match[1], int(match[2])
    elif _RUN_NUMBER.match(text):
        number = int(text)
        if experiment_hash is None:
            if promoted_from is None:
                problems.append(
                    gettext(
                        "TrainData.%(key)s %(value)s is a run number; name its experiment too: "
                        '"<experiment hash>/<run number>" or NeomarilTrainingExperiment.'
                    )
                    % {"key": RUN_KEY, "value": json.dumps(value)}
                )
                return None
            experiment_hash = promoted_from.experiment.hash
    else:
        problems.append(
            gettext(
                'TrainData.%(key)s must be a run number or "<experiment hash>/<run number>", not %(value)s.'
            )
            % {"key": RUN_KEY, "value": json.dumps(value)}
        )
        return None
    run = (
        TrainingRun.objects.select_related("experiment")
        .filter(experiment__hash=experiment_hash, experiment__group=model.group_id, number=number)
        .first()
    )
    if run is None:
        exists = Experiment.objects.filter(hash=experiment_hash, group=model.group_id).exists()
        message = (
            gettext(
                "TrainData.%(key)s: there is no run %(number)s in experiment %(experiment)s of group %(group)s."
            )
            if exists
            else gettext("TrainData.%(key)s: no experiment %(experiment)s in group %(group)s.")
        )
        problems.append(
            message
            % {"key": RUN_KEY, "number": number, "experiment": experiment_hash, "group": model.group.name}
        )
        return None
    if run.files_removed_at is not None:
        problems.append(
            gettext(
                "TrainData.%(key)s: the files of run %(number)s of %(experiment)s were deleted, so it "
                "has no reference data any more; name another run."
            )
            % {"key": RUN_KEY, "number": number, "experiment": experiment_hash}
        )
        return None
    if run.status != TrainingRun.Status.SUCCEEDED:
        problems.append(
            gettext(
                "TrainData.%(key)s: run %(number)s of %(experiment)s is %(status)s; only a Succeeded run "
                "has the reference data (X_train, model_output)."
            )
            % {"key": RUN_KEY, "number": number, "experiment": experiment_hash, "status": run.status}
        )
        return None
    return run


def webhook_secret_field() -> forms.CharField:
    return forms.CharField(
        required=False,
        strip=False,  # a secret is taken as given: the receiver checks with the same bytes
        max_length=webhooks.SECRET_MAX_LENGTH,
        widget=forms.PasswordInput(render_value=False),
        label=_("Webhook signing secret"),
        help_text=_(
            "Optional: each notice is then signed (X-Neomaril-Signature) so the receiver can "
            "check it came from here. Stored encrypted and never shown again; left empty, "
            "the current secret stays."
        ),
    )


class ThresholdField(forms.FloatField):
    """A PSI threshold: a number, never a JSON boolean (float(True) would store 1.0)."""

    def to_python(self, value):
        if isinstance(value, bool):
            raise forms.ValidationError(self.error_messages["invalid"], code="invalid")
        return super().to_python(value)


class MonitoringForm(UploadCheckingForm):
    """Register (or re-register) a model for monitoring."""

    example_names = {
        "configuration": "configuration.json",
        "preprocess": "preprocess.py",
        "requirements": "requirements.txt",
    }

    configuration = forms.FileField(
        label=_("Configuration"),
        help_text=_(
            "JSON: Period, TrainData (NeomarilTrainingExecution, TrainDateRef or TrainDateCol), "
            "InputCols, OutputCols. PascalCase or snake_case keys."
        ),
        error_messages={"required": _("Upload the monitoring configuration (a JSON file).")},
    )
    preprocess = forms.FileField(
        label=_("Preprocess"),
        help_text=_("Python file defining the preprocess (and the optional SHAP function)."),
        error_messages={"required": _("Upload the preprocess script (a .py file).")},
    )
    preprocess_reference = forms.CharField(
        max_length=100,
        label=_("Preprocess function"),
        help_text=_("Function (input, output) -> (features_df, outputs_df)."),
        error_messages={"required": _("Name the preprocess function, e.g. parse.")},
    )
    shap_reference = forms.CharField(
        max_length=100,
        required=False,
        label=_("SHAP function"),
        help_text=_("Optional function (features_df, model_path) -> SHAP DataFrame."),
    )
    requirements = forms.FileField(
        required=False,
        allow_empty_file=True,  # "nothing extra" is a fine answer
        label=_("Requirements"),
        help_text=_("Optional extra packages the preprocess needs, on top of the model's."),
    )
    webhook_url = forms.URLField(
        max_length=500,
        required=False,
        assume_scheme="https",
        label=_("Webhook URL"),
        help_text=_("Optional: receives a JSON notice when a period drifts."),
    )
    webhook_secret = webhook_secret_field()
    minimum_rows = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_MINIMUM_ROWS,
        label=_("Minimum rows"),
        help_text=_("Rows below which a period is insufficient."),
    )
    warning_threshold = ThresholdField(
        required=False,
        min_value=0,
        label=_("Warning threshold"),
        help_text=_("PSI from which a column is a warning."),
    )
    drift_threshold = ThresholdField(
        required=False,
        min_value=0,
        label=_("Drift threshold"),
        help_text=_("PSI from which a column drifts."),
    )

    def __init__(self, *args, model: MLModel, **kwargs):
        super().__init__(*args, **kwargs)
        self.model = model
        # No `required` (the page posts with novalidate and shows the server's messages),
        # so the required fields say so with aria-required.
        for name in ("configuration", "preprocess", "preprocess_reference"):
            self.fields[name].widget.attrs["aria-required"] = "true"

    def clean_configuration(self) -> Configuration:
        upload = self.cleaned_data["configuration"]
        if upload.size is not None and upload.size > MAX_CONFIGURATION_BYTES:
            raise forms.ValidationError(
                gettext("The configuration is %(size)s bytes; at most 1 MiB.") % {"size": upload.size}
            )
        text = self._check(decode_upload, upload.read(), "json", field="configuration", name=upload.name)
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(
                gettext("The configuration is not valid JSON: %(error)s.") % {"error": exc}
            ) from None
        except RecursionError:
            raise forms.ValidationError(
                gettext("The configuration is nested too deeply to be read.")
            ) from None
        if not isinstance(raw, dict):
            raise forms.ValidationError(gettext("The configuration must be a JSON object."))
        problem = storable_problem(raw)
        if problem is not None:
            raise forms.ValidationError(
                gettext("The configuration cannot be used: %(problem)s") % {"problem": problem}
            )
        return parse_configuration(raw, self.model)

    def clean_webhook_url(self) -> str:
        return checked_webhook_url(self.cleaned_data["webhook_url"])

    def clean_webhook_secret(self) -> str:
        return checked_webhook_secret(self.cleaned_data["webhook_secret"])

    def clean_preprocess_reference(self) -> str:
        value = self.cleaned_data["preprocess_reference"].strip()
        self._check(check_entrypoint_name, value)
        return value

    def clean_shap_reference(self) -> str:
        value = self.cleaned_data["shap_reference"].strip()
        if value:
            self._check(check_entrypoint_name, value)
        return value

    def clean_preprocess(self) -> NamedFile:
        named = self._named("preprocess")
        if not named.name.endswith(".py"):
            raise forms.ValidationError(
                gettext("The preprocess must be a .py file, not %(name)s.") % {"name": named.name}
            )
        return named

    def clean(self) -> dict:
        data = super().clean()
        if self.model.status == MLModel.Status.DELETED:
            raise forms.ValidationError(
                gettext("The model %(hash)s is deleted; it can't be monitored.") % {"hash": self.model.hash}
            )
        named = data.get("preprocess")
        if named is not None:
            text = self._text("preprocess", named, "python")
            named.file.seek(0)
            for reference, parameters, field in (
                (data.get("preprocess_reference"), ("input", "output"), "preprocess_reference"),
                (data.get("shap_reference"), ("features", "model_path"), "shap_reference"),
            ):
                if text is not None and reference:
                    self._attempt(
                        check_source,
                        text,
                        reference,
                        field="preprocess",
                        filename=named.name,
                        parameters=parameters,
                        reference_field=field,
                    )
        requirements = data.get("requirements")
        data["requirement_lines"] = self._requirements(self._named("requirements")) if requirements else []
        warning = data.get("warning_threshold")
        drift = data.get("drift_threshold")
        # A threshold left out keeps the current registration's value (services.register),
        # else the default: the pair to check is the one that will be stored.
        current = (
            Monitor.objects.filter(model=self.model).only("warning_threshold", "drift_threshold").first()
        )
        if warning is None:
            warning = current.warning_threshold if current is not None else drift_defaults.WARNING
        if drift is None:
            drift = current.drift_threshold if current is not None else drift_defaults.DRIFT
        if warning >= drift:
            self.add_error(
                "drift_threshold",
                gettext("The drift threshold (%(drift)s) must be above the warning threshold (%(warning)s).")
                % {"drift": drift, "warning": warning},
            )
        return data


class MonitoringSettingsForm(forms.ModelForm):
    """What can change without validating again: the webhook, the thresholds, the minimum."""

    webhook_url = forms.URLField(
        label=_("Webhook URL"), max_length=500, required=False, assume_scheme="https"
    )
    webhook_secret = webhook_secret_field()
    remove_webhook_secret = DefaultBooleanField(
        default=False,
        label=_("Stop signing notices"),
        help_text=_("Forget the signing secret: notices are sent unsigned."),
    )

    # Declared, as at registration: the model field's own range depends on the database
    # (SQLite has none), so a value PostgreSQL would refuse passed on SQLite.
    minimum_rows = forms.IntegerField(max_value=MAX_MINIMUM_ROWS, label=_("Minimum rows"))

    class Meta:
        model = Monitor
        fields = ["webhook_url", "warning_threshold", "drift_threshold", "minimum_rows"]
        field_classes = {"warning_threshold": ThresholdField, "drift_threshold": ThresholdField}
        labels = {
            "warning_threshold": _("Warning threshold"),
            "drift_threshold": _("Drift threshold"),
            "minimum_rows": _("Minimum rows"),
        }

    def __init__(self, data=None, *args, instance: Monitor, **kwargs):
        # A partial update: fields not sent keep their value.
        if data is not None:
            data = {**{f: getattr(instance, f) for f in self.Meta.fields}, **{k: v for k, v in data.items()}}
        super().__init__(data, *args, instance=instance, **kwargs)

    def __iter__(self) -> Iterator[forms.BoundField]:
        """The fields a page shows: "Stop signing notices" only while they are signed (or
        when it has an error to show). The field itself is always read, so a bad value, or
        both a new secret and stopping, is a 400 whether or not a secret is set; stopping
        without one changes nothing."""
        for field in super().__iter__():
            if field.name != "remove_webhook_secret" or self.instance.webhook_signed or field.errors:
                yield field

    def clean_webhook_url(self) -> str:
        return checked_webhook_url(self.cleaned_data["webhook_url"])

    def clean_webhook_secret(self) -> str:
        return checked_webhook_secret(self.cleaned_data["webhook_secret"])

    def clean(self) -> dict:
        data = super().clean()
        warning, drift = data.get("warning_threshold"), data.get("drift_threshold")
        if warning is not None and warning < 0:
            self.add_error("warning_threshold", gettext("The warning threshold must be 0 or more."))
        if warning is not None and drift is not None and warning >= drift:
            self.add_error(
                "drift_threshold",
                gettext("The drift threshold (%(drift)s) must be above the warning threshold (%(warning)s).")
                % {"drift": drift, "warning": warning},
            )
        if data.get("minimum_rows") is not None and data["minimum_rows"] < 1:
            self.add_error("minimum_rows", gettext("The minimum must be at least 1 row."))
        if data.get("webhook_secret") and data.get("remove_webhook_secret"):
            self.add_error(
                "remove_webhook_secret",
                gettext("Give a new signing secret or stop signing, not both."),
            )
        return data

    def save(self, commit: bool = True) -> Monitor:
        monitor = super().save(commit=False)
        if self.cleaned_data.get("remove_webhook_secret"):
            monitor.set_webhook_secret(None)
        elif self.cleaned_data.get("webhook_secret"):
            monitor.set_webhook_secret(self.cleaned_data["webhook_secret"])
        if commit:
            # Only the settings: the row's status, reference and log belong to the worker,
            # which may have settled a validation since this request read them.
            monitor.save(update_fields=[*self.Meta.fields, "webhook_secret_ciphertext"])
        return monitor


def checked_webhook_url(url: str) -> str:
    problem = webhooks.url_problem(url) if url else None
    if problem is not None:
        raise forms.ValidationError(problem)
    return url


def checked_webhook_secret(secret: str) -> str:
    """A new secret, or "" (keep the current one)."""
    problem = webhooks.secret_problem(secret) if secret else None
    if problem is not None:
        raise forms.ValidationError(problem)
    return secret
