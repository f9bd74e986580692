"""Monitoring fixtures without running jobs: a deployed model, a configuration, a form."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from django.core.files.uploadedfile import SimpleUploadedFile

from models_app.models import MLModel
from monitors.forms import MonitoringForm
from monitors.models import ColumnResult, Monitor, Period
from tests.helpers.training import finished_run, make_experiment

PREPROCESS = """
import json
import pandas as pd

def parse(input, output):
    rows = json.loads(input)
    rows = rows if isinstance(rows, list) else [rows]
    answers = json.loads(output)
    answers = answers if isinstance(answers, list) else [answers]
    return pd.DataFrame(rows), pd.DataFrame(answers)

def get_shap(features, model_path):
    return features.astype(float) * 0.5
"""


# When the monitoring tests' models were uploaded: before the periods they ask for
# (a period that ended before the upload has no calls, and is refused).
UPLOADED = datetime(2026, 1, 1, tzinfo=UTC)


def uploaded_long_ago(model: MLModel) -> MLModel:
    """`model` as if uploaded at UPLOADED (created_at is set on create, whatever is given)."""
    MLModel.objects.filter(pk=model.pk).update(created_at=UPLOADED)
    model.refresh_from_db()
    return model


def deployed_model(group, run=None, **fields) -> MLModel:
    """A Sync model as a finished build leaves it (no environment behind it)."""
    values = {
        "name": "monitored",
        "group": group,
        "operation": MLModel.Operation.SYNC,
        "model_reference": "score",
        "python_version": "3.11",
        "input_type": MLModel.InputType.JSON,
        "source_file": "app.py",
        "model_file": "model.pkl",
        "requirements_file": "requirements.txt",
        "status": MLModel.Status.DEPLOYED,
        "schema": {"a": 1.0, "b": 2.0},
        "smoke_result": {"pred": 1},
        "training_run": run,
        **fields,
    }
    return MLModel.objects.create(**values)


def reference_run(group, number: int = 1, **fields):
    return finished_run(make_experiment(group), number=number, **fields)


def configuration(**overrides) -> dict:
    config = {
        "Period": "Week",
        "TrainData": {"TrainDateRef": "2026-01-15"},
        "InputCols": ["a", "b"],
        "OutputCols": ["pred"],
    }
    config.update(overrides)
    return {key: value for key, value in config.items() if value is not None}


def upload(name: str, content: str | bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content.encode() if isinstance(content, str) else content)


def form_data(config: dict | str | None = None, **overrides) -> tuple[dict, dict]:
    """(data, files) of a registration, as the page and the API post it."""
    raw = config if isinstance(config, str) else json.dumps(config if config is not None else configuration())
    data = {"preprocess_reference": "parse", "shap_reference": "get_shap"}
    files = {"configuration": upload("config.json", raw), "preprocess": upload("preprocess.py", PREPROCESS)}
    for key, value in overrides.items():
        (files if isinstance(value, SimpleUploadedFile) else data)[key] = value
    return {k: v for k, v in data.items() if v is not None}, files


def registration_form(model: MLModel, config=None, **overrides) -> MonitoringForm:
    data, files = form_data(config, **overrides)
    return MonitoringForm(data, files, model=model)


# A registration and its periods as the worker leaves them, for the API and the pages.
NUMERIC = {"kind": "numeric", "edges": [30.0, 50.0]}  # (-inf, 30], (30, 50], (50, +inf), (missing)
CATEGORICAL = {"kind": "categorical", "categories": ["rio", "sp"]}  # rio, sp, (unseen), (missing)


def make_monitor(model, run, user=None, *, status=Monitor.Status.VALIDATED, **fields) -> Monitor:
    values = {
        "model": model,
        "training_run": run,
        "status": status,
        "period": "Day",
        "train_date_ref": "2026-01-31",
        "input_cols": ["age", "city"],
        "output_cols": ["pred"],
        "preprocess_reference": "parse",
        "preprocess_file": "preprocess.py",
        "reference": {"rows": 500},
        "registered_by": user,
        **fields,
    }
    return Monitor.objects.create(**values)


def make_period(
    monitor,
    day: int,
    *,
    status=Period.Status.SUCCEEDED,
    drift_status="stable",
    psi=0.05,
    age_counts=(10, 20, 30, 0),
    outputs=True,
    **fields,
) -> Period:
    """A day of May 2026; a Succeeded one with its columns (age, city and, with `outputs`, pred)."""
    start = datetime(2026, 5, day, tzinfo=UTC)
    done = status == Period.Status.SUCCEEDED
    values = {
        "monitor": monitor,
        "kind": "Day",
        "start": start,
        "end": start + timedelta(days=1),
        "status": status,
        "records": 60 if done else None,
        "rows": sum(age_counts) if done else None,
        "average_psi": psi if done else None,
        "drift_status": drift_status if done else "",
        "error_message": "preprocess raised KeyError: 'age'" if status == Period.Status.FAILED else "",
        "log": "2026-05-27 00:00:01 preprocessing 60 records\n",
        "shap": {"age": 0.4, "city": 0.1} if done else None,
        **fields,
    }
    period = Period.objects.create(**values)
    if done:
        column = {"period": period, "role": "input"}
        ColumnResult.objects.create(
            **column,
            column="age",
            binning=NUMERIC,
            reference_counts=[100, 200, 200, 0],
            period_counts=list(age_counts),
            psi=psi,
            status=drift_status,
            mean_abs_shap=0.4,
        )
        ColumnResult.objects.create(
            **column,
            column="city",
            binning=CATEGORICAL,
            reference_counts=[250, 250, 0, 0],
            period_counts=[30, 30, 0, 0],
            psi=0.0,
            status="stable",
            mean_abs_shap=0.1,
        )
        if outputs:
            ColumnResult.objects.create(
                period=period,
                role="output",
                column="pred",
                binning=NUMERIC,
                reference_counts=[250, 250, 0, 0],
                period_counts=[30, 30, 0, 0],
                psi=0.0,
                status="stable",
            )
    return period
