"""Training runs in tests: payloads for the run endpoint, and runs put in a given state."""

from __future__ import annotations

import json
from pathlib import Path

from django.utils import timezone

from tests.helpers.uploads import file
from training.models import Experiment, TrainingRun

TRAIN_SOURCE = """
import pandas as pd


def train_model(df, base_path):
    X = df.drop(columns=["target"])
    return {"X_train": X, "y_train": df["target"], "model_output": X.iloc[:, :1],
            "pipeline": None, "metrics": {"auc": 0.5}}
"""


def custom_payload(**overrides) -> dict:
    payload = {
        "run_name": "First test",
        "training_type": "Custom",
        "python_version": "3.9",
        "train_data": file("dados.csv", "a,b,target\n1,2,0\n3,4,1\n"),
        "source": file("app.py", TRAIN_SOURCE),
        "training_reference": "train_model",
        "requirements": file("requirements.txt", "scikit-learn==1.6.1\n"),
    }
    payload.update(overrides)
    return {key: value for key, value in payload.items() if value is not None}


def external_payload(**overrides) -> dict:
    payload = {
        "run_name": "Trained elsewhere",
        "training_type": "External",
        "python_version": "3.9",
        "X_train": file("X_train.csv", "a,b\n1,2\n3,4\n"),
        "y_train": file("y_train.csv", "target\n0\n1\n"),
        "model_output": file("model_output.csv", "pred\n0\n1\n"),
        "model": file("model.pkl", b"\x80\x04K\x01."),
        "metrics": json.dumps({"auc": 0.91}),
        "requirements": file("requirements.txt", "scikit-learn==1.6.1\n"),
    }
    payload.update(overrides)
    return {key: value for key, value in payload.items() if value is not None}


def make_experiment(group, user=None, *, name: str = "Teste notebook", model_type: str = "Classification"):
    return Experiment.objects.create(name=name, group=group, model_type=model_type, created_by=user)


def finished_run(
    experiment: Experiment,
    *,
    number: int = 1,
    status: str = TrainingRun.Status.SUCCEEDED,
    metrics: dict | None = None,
    frozen: str = "scikit-learn==1.6.1\nnumpy==2.0.2\n",
    model_bytes: bytes = b"\x80\x04K\x01.",
    **fields,
) -> TrainingRun:
    """A run as a worker leaves it, without running one: row, artifacts folder, model file."""
    now = timezone.now()
    run = TrainingRun.objects.create(
        experiment=experiment,
        number=number,
        name=fields.pop("name", f"run {number}"),
        training_type=fields.pop("training_type", TrainingRun.TrainingType.CUSTOM),
        status=status,
        python_version="3.9",
        python_full_version=fields.pop("python_full_version", "3.9.20"),
        requirements=["scikit-learn==1.6.1", "pandas", "pyarrow", "cloudpickle"],
        frozen_requirements=frozen,
        env_fingerprint=fields.pop("env_fingerprint", "0" * 64),
        metrics=metrics if metrics is not None else {"auc": 0.9},
        started_at=now,
        finished_at=now if status in (TrainingRun.Status.SUCCEEDED, TrainingRun.Status.FAILED) else None,
        attempts=1,
        **fields,
    )
    if status == TrainingRun.Status.SUCCEEDED:
        folder = Path(run.artifacts_folder)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "model.pkl").write_bytes(model_bytes)
        (folder / "metrics.json").write_text(json.dumps(run.metrics))
        run.artifacts = [
            {"name": "model.pkl", "size": len(model_bytes)},
            {"name": "metrics.json", "size": (folder / "metrics.json").stat().st_size},
        ]
        run.save(update_fields=["artifacts"])
    return run
