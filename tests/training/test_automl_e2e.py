"""AutoML through the real processes (`make run`): a run on scikit-learn's breast-cancer
data with logreg and LightGBM, 10 iterations, then the run promoted with two arguments
as a Sync model and as an Async model, both answering as the pipeline itself does."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import pytest
import requests

from models_app import environments
from models_app.validation import parse_requirements
from tests.helpers.interpreters import run_with, supported_interpreter
from tests.helpers.processes import PortalClient, RunningPortal
from training import automl

pytestmark = [pytest.mark.slow]

MAKE_DATA = """
import sys
from sklearn.datasets import load_breast_cancer
X, y = load_breast_cancer(return_X_y=True, as_frame=True)
X.columns = [c.replace(" ", "_") for c in X.columns]
X.assign(target=y).to_csv(sys.argv[1], index=False)
"""

PIPELINE_ANSWERS = """
import json, sys
import cloudpickle, pandas as pd
model = cloudpickle.load(open(sys.argv[1], "rb"))
X = pd.read_csv(sys.argv[2]).drop(columns=["target"]).head(5)
print(json.dumps({"pred": model.predict(X).tolist(), "proba": model.predict_proba(X)[:, 1].tolist()}))
"""

CONF = {
    "train_data": {"file_type": "csv", "file_name": "breast.csv", "sep": ","},
    "model_flow": "classification",
    "target": "target",
    "iterations": 10,
    "stages": {"models": ["logeg", "lightgbm"]},  # the original spelling
}


def test_automl_run_then_promoted_with_two_arguments(tmp_path):
    data = tmp_path / "data"
    # The platform's AutoML environment, built by the platform's code where the portal
    # will look for it (a run reuses it, as it would any existing environment).
    env = environments.ensure_environment(
        interpreter=supported_interpreter("3.11"),
        requirements=parse_requirements(automl.REQUIREMENTS.read_text()),
        envs_dir=data / "envs",
        log=lambda line: None,
        timeout=1200,
    )
    python = environments.env_python(env)
    csv = tmp_path / "breast.csv"
    run_with(python, MAKE_DATA, str(csv))

    portal = RunningPortal(data)
    try:
        portal.wait_healthy()
        client = PortalClient(portal)
        token = client.create_group("datarisk")
        experiment = client.post(
            "/api/v1/training/experiments",
            json={"experiment_name": "Teste autoML", "model_type": "Classification", "group": "datarisk"},
        ).json()["hash"]
        created = client.post(
            f"/api/v1/training/experiments/{experiment}/runs",
            data={"run_name": "automl", "training_type": "AutoML", "conf_dict": json.dumps(CONF)},
            files={"train_data": ("breast.csv", csv.read_bytes())},
        )
        assert created.status_code == 201, created.text
        run_path = f"/api/v1/training/experiments/{experiment}/runs/1"
        run = client.wait_for(run_path, ("Succeeded", "Failed"), 900)
        log = client.get(f"{run_path}/logs").json()["log"]
        assert run["status"] == "Succeeded", log
        assert "Reusing environment" in log
        assert run["metrics"]["auc"] > 0.95, run["metrics"]
        assert run["metrics"]["gini"] == pytest.approx(2 * run["metrics"]["auc"] - 1)
        names = {artifact["name"] for artifact in run["artifacts"]}
        assert {
            "extras/leaderboard.json",
            "extras/roc.json",
            "extras/ks.json",
            "extras/importances.json",
        } <= names
        expected = json.loads(
            run_with(
                python,
                PIPELINE_ANSWERS,
                str(data / "trainings" / experiment / "1" / "artifacts" / "model.pkl"),
                str(csv),
            )
        )

        def promote(operation: str) -> str:
            response = client.post(
                f"{run_path}/promote", data={"name": "Teste notebook promoted autoML", "operation": operation}
            )
            assert response.status_code == 201, response.text
            model_hash = response.json()["hash"]
            status = client.wait_status(model_hash, {"Deployed", "Failed"}, 300)
            assert status == "Deployed", client.get(f"/api/v1/models/{model_hash}/logs").json()["log"]
            return model_hash

        group_token = {"Authorization": f"Bearer {token}"}
        rows = [{k: v for k, v in row.items() if k != "target"} for row in _rows(csv, 5)]
        sync_model = promote("Sync")
        one = requests.post(
            f"{portal.url}/api/v1/run/{sync_model}", json=rows[0], headers=group_token, timeout=30
        )
        assert one.status_code == 200, one.text
        assert one.json()["pred"] == expected["pred"][0]
        assert one.json()["proba"] == pytest.approx(expected["proba"][0], abs=1e-9)
        many = requests.post(
            f"{portal.url}/api/v1/run/{sync_model}", json=rows, headers=group_token, timeout=30
        )
        assert many.json()["pred"] == expected["pred"]
        assert many.json()["proba"] == pytest.approx(expected["proba"], abs=1e-9)

        async_model = promote("Async")
        lines = csv.read_text().splitlines()[:6]
        header = lines[0].split(",")
        without_target = "\n".join(
            ",".join(v for k, v in zip(header, line.split(","), strict=True) if k != "target")
            for line in lines
        )
        submitted = requests.post(
            f"{portal.url}/api/v1/run/{async_model}",
            files={"file": ("carteira.csv", without_target.encode())},
            headers=group_token,
            timeout=30,
        )
        assert submitted.status_code == 202, submitted.text
        execution = f"/api/v1/run/{async_model}/executions/{submitted.json()['execution_id']}"
        deadline = time.monotonic() + 120
        while (
            requests.get(f"{portal.url}{execution}", headers=group_token, timeout=10).json()["status"]
            not in (
                "Succeeded",
                "Failed",
            )
            and time.monotonic() < deadline
        ):
            time.sleep(0.5)
        result = requests.get(f"{portal.url}{execution}/result", headers=group_token, timeout=30)
        assert result.status_code == 200, requests.get(
            f"{portal.url}{execution}/log", headers=group_token, timeout=30
        ).text
        scored = list(_csv_dicts(result.text))
        assert [int(row["pred"]) for row in scored] == expected["pred"]
        assert [float(row["proba"]) for row in scored] == pytest.approx(expected["proba"], abs=1e-9)
        assert list(scored[0])[:3] == header[:3]  # the same file, with pred and proba added
    finally:
        portal.stop()


def _csv_dicts(text: str):
    import csv

    return csv.DictReader(io.StringIO(text))


def _rows(path: Path, count: int) -> list[dict]:
    rows = []
    for row in _csv_dicts(path.read_text()):
        rows.append({key: float(value) for key, value in row.items()})
        if len(rows) == count:
            break
    return rows
