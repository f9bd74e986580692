"""Training through the real processes (`make run`): a worker killed in the middle of a
run has its run re-run once, from its inputs, and the training process dies with it."""

from __future__ import annotations

import os
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers.processes import PortalClient, RunningPortal, descendants_running

pytestmark = [pytest.mark.slow]

SLOW_TRAINING = textwrap.dedent(
    """
    import time
    import pandas as pd


    class Mean:
        def fit(self, X):
            self.mean_ = X.mean()
            return self


    def train_model(df, base_path):
        time.sleep(8)
        X = df[["x"]]
        return {"X_train": X, "y_train": df["y"], "model_output": X, "pipeline": Mean().fit(X),
                "metrics": {"mean": float(X["x"].mean())}}
    """
)


def _training_processes(folder: Path) -> list[psutil.Process]:
    real = os.path.realpath(folder)
    found = []
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if ((proc.info["cwd"] or "").startswith(real) or real in cmdline) and "oneshot" in cmdline:
            found.append(proc)
    return found


def test_worker_killed_mid_run_then_the_run_runs_again(tmp_path):
    data = tmp_path / "data"
    portal = RunningPortal(data, extra_env={"NEOMARIL_TRAINING_STALE_SECONDS": "15"})
    try:
        portal.wait_healthy()
        client = PortalClient(portal)
        client.create_group("datarisk")
        experiment = client.post(
            "/api/v1/training/experiments",
            json={"experiment_name": "Recovery", "model_type": "Regression", "group": "datarisk"},
        ).json()["hash"]
        created = client.post(
            f"/api/v1/training/experiments/{experiment}/runs",
            data={"run_name": "slow", "training_type": "Custom", "python_version": "3.11"},
            files={
                "train_data": ("dados.csv", b"x,y\n1,2\n3,4\n"),
                "source": ("app.py", SLOW_TRAINING.encode()),
                "requirements": ("requirements.txt", b""),
            },
        )
        assert created.status_code == 201, created.text
        run_path = f"/api/v1/training/experiments/{experiment}/runs/1"
        assert client.wait_for(run_path, ("Running",), 120)["status"] == "Running"
        folder = data / "trainings" / experiment / "1" / "sandbox"
        deadline = time.monotonic() + 180  # the environment is built first
        while not _training_processes(folder) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _training_processes(folder), client.get(f"{run_path}/logs").json()["log"]

        workers = descendants_running(portal.process.pid, "qcluster")
        assert workers
        for proc in workers:
            proc.kill()
        deadline = time.monotonic() + 10
        while _training_processes(folder) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _training_processes(folder), "the training process outlived its killed worker"

        finished = client.wait_for(run_path, ("Succeeded", "Failed"), 240)
        log = client.get(f"{run_path}/logs").json()["log"]
        assert finished["status"] == "Succeeded", log
        assert finished["attempts"] == 2, log
        assert "The worker running this training stopped" in log
        assert finished["metrics"] == {"mean": 2.0}
    finally:
        portal.stop()
