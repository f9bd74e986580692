"""Monitoring through the real processes (`make run`): train, promote, register with a
preprocess that shifts one feature, send calls (and Async executions), run the period:
the shifted feature drifts and the others stay stable."""

from __future__ import annotations

import csv
import io
import json
import textwrap
import time

import pytest
import requests

from tests.helpers.processes import PortalClient, RunningPortal

pytestmark = [pytest.mark.slow]

ROWS = 600

TRAINING = textwrap.dedent(
    """
    import pandas as pd


    class Threshold:
        def fit(self, X):
            self.cut_ = float(X["a"].median())
            return self

        def predict(self, X):
            return (X["a"] >= self.cut_).astype(int)


    def train_model(df, base_path):
        X = df[["a", "b", "c"]]
        model = Threshold().fit(X)
        return {"X_train": X, "y_train": df["y"], "model_output": pd.DataFrame({"pred": model.predict(X)}),
                "pipeline": model, "metrics": {"cut": model.cut_}}
    """
)

SCORING = textwrap.dedent(
    """
    import json
    import os

    import cloudpickle
    import pandas as pd

    HERE = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(HERE, "model.pkl"), "rb") as handle:
        MODEL = cloudpickle.load(handle)


    def score(data, base_path):
        given = json.loads(data)
        rows = given if isinstance(given, list) else [given]
        preds = [int(p) for p in MODEL.predict(pd.DataFrame(rows))]
        answers = [{"pred": p} for p in preds]
        return answers if isinstance(given, list) else answers[0]


    def score_file(data_path, model_path):
        frame = pd.read_csv(os.path.join(data_path, os.environ["inputFileName"]))
        out = os.path.join(data_path, "result.csv")
        pd.DataFrame({"pred": MODEL.predict(frame)}).to_csv(out, index=False)
        return out
    """
)

PREPROCESS = textwrap.dedent(
    """
    import json
    import pandas as pd


    def parse(input, output):
        given = json.loads(input)
        features = pd.DataFrame(given if isinstance(given, list) else [given])
        features["b"] = features["b"] + 5000
        answers = json.loads(output)
        return features, pd.DataFrame(answers if isinstance(answers, list) else [answers])


    def parse_files(input, output):
        features = pd.read_csv(input)
        features["b"] = features["b"] + 5000
        return features, pd.read_csv(output)
    """
)


def row(i: int) -> dict:
    return {"a": i, "b": (i * 7) % ROWS, "c": "ABC"[i % 3]}


def as_csv(rows: list[dict], with_y: bool = False) -> bytes:
    out = io.StringIO()
    fields = ["a", "b", "c", *(["y"] if with_y else [])]
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({**r, **({"y": int(r["a"] >= ROWS // 2)} if with_y else {})})
    return out.getvalue().encode()


CONFIG = {
    "Period": "Year",
    "TrainData": {"TrainDateRef": "2026-01-15"},
    "InputCols": ["a", "b", "c"],
    "OutputCols": ["pred"],
}


def test_train_promote_register_call_and_watch_the_shifted_feature_drift(tmp_path):
    portal = RunningPortal(tmp_path / "data")
    try:
        portal.wait_healthy()
        client = PortalClient(portal)
        token = client.create_group("datarisk")
        group_token = {"Authorization": f"Bearer {token}"}
        experiment = client.post(
            "/api/v1/training/experiments",
            json={"experiment_name": "Monitoring", "model_type": "Classification", "group": "datarisk"},
        ).json()["hash"]
        created = client.post(
            f"/api/v1/training/experiments/{experiment}/runs",
            data={"run_name": "threshold", "training_type": "Custom", "python_version": "3.11"},
            files={
                "train_data": ("dados.csv", as_csv([row(i) for i in range(ROWS)], with_y=True)),
                "source": ("app.py", TRAINING.encode()),
                "requirements": ("requirements.txt", b""),
            },
        )
        assert created.status_code == 201, created.text
        run_path = f"/api/v1/training/experiments/{experiment}/runs/1"
        run = client.wait_for(run_path, ("Succeeded", "Failed"), 600)
        assert run["status"] == "Succeeded", client.get(f"{run_path}/logs").json()["log"]

        def promote(operation: str, reference: str, **files) -> str:
            response = client.post(
                f"{run_path}/promote",
                data={"name": f"monitored {operation}", "operation": operation, "model_reference": reference},
                files={"source": ("score.py", SCORING.encode()), **files},
            )
            assert response.status_code == 201, response.text
            model_hash = response.json()["hash"]
            status = client.wait_status(model_hash, {"Deployed", "Failed"}, 300)
            assert status == "Deployed", client.get(f"/api/v1/models/{model_hash}/logs").json()["log"]
            return model_hash

        def register(model_hash: str, reference: str) -> dict:
            response = client.post(
                f"/api/v1/monitoring/{model_hash}",
                data={"preprocess_reference": reference},
                files={
                    "configuration": ("config.json", json.dumps(CONFIG).encode()),
                    "preprocess": ("preprocess.py", PREPROCESS.encode()),
                },
            )
            assert response.status_code == 202, response.text
            monitor = client.wait_for(f"/api/v1/monitoring/{model_hash}", ("Validated", "Invalidated"), 300)
            assert monitor["status"] == "Validated", monitor["log"]
            return monitor

        def run_period(model_hash: str) -> dict:
            response = client.post(f"/api/v1/monitoring/{model_hash}/periods", json={})
            assert response.status_code == 202, response.text
            path = f"/api/v1/monitoring/{model_hash}/periods/{response.json()['id']}"
            period = client.wait_for(path, ("Succeeded", "Failed"), 300)
            assert period["status"] == "Succeeded", period["log"]
            return period

        def assert_only_b_drifts(period: dict) -> None:
            columns = {c["column"]: c for c in period["columns"]}
            assert period["rows"] == ROWS
            assert columns["b"]["status"] == "drift", period
            for stable in ("a", "c", "pred"):
                assert columns[stable]["status"] == "stable", period
                assert columns[stable]["psi"] == pytest.approx(0.0, abs=1e-9)
            assert period["drift_status"] == "drift"

        # Sync: the calls go through the run URL and are recorded by the web process.
        sync_model = promote("Sync", "score", schema=("schema.json", json.dumps(row(1)).encode()))
        register(sync_model, "parse")
        for start in range(0, ROWS, 20):
            answer = requests.post(
                f"{portal.url}/api/v1/run/{sync_model}",
                json=[row(i) for i in range(start, start + 20)],
                headers=group_token,
                timeout=30,
            )
            assert answer.status_code == 200, answer.text
        time.sleep(2)  # the recorder writes in batches every 0.5 s
        assert_only_b_drifts(run_period(sync_model))
        listed = client.get(f"/api/v1/monitoring/{sync_model}/periods").json()["periods"]
        assert listed[0]["drift_status"] == "drift"

        # Async: each execution's input and result files go through the preprocess.
        async_model = _promote_async(client, run_path)
        register(async_model, "parse_files")
        for start in range(0, ROWS, 200):
            submitted = requests.post(
                f"{portal.url}/api/v1/run/{async_model}",
                files={"file": ("carteira.csv", as_csv([row(i) for i in range(start, start + 200)]))},
                headers=group_token,
                timeout=30,
            )
            assert submitted.status_code == 202, submitted.text
            execution = f"/api/v1/run/{async_model}/executions/{submitted.json()['execution_id']}"
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                status = requests.get(f"{portal.url}{execution}", headers=group_token, timeout=10).json()[
                    "status"
                ]
                if status in ("Succeeded", "Failed"):
                    break
                time.sleep(0.3)
            assert status == "Succeeded"
        assert_only_b_drifts(run_period(async_model))
    finally:
        portal.stop()


def _promote_async(client: PortalClient, run_path: str) -> str:
    response = client.post(
        f"{run_path}/promote",
        data={
            "name": "monitored Async",
            "operation": "Async",
            "model_reference": "score_file",
            "input_type": "csv",
        },
        files={
            "source": ("score.py", SCORING.encode()),
            "sample": ("sample.csv", as_csv([row(i) for i in range(5)])),
        },
    )
    assert response.status_code == 201, response.text
    model_hash = response.json()["hash"]
    status = client.wait_status(model_hash, {"Deployed", "Failed"}, 300)
    assert status == "Deployed", client.get(f"/api/v1/models/{model_hash}/logs").json()["log"]
    return model_hash
