"""Monitoring fixtures without running jobs: a deployed model, a configuration, a form."""

from __future__ import annotations

import json

from django.core.files.uploadedfile import SimpleUploadedFile

from models_app.models import MLModel
from monitors.forms import MonitoringForm
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
