"""A data scientist's journey in a real headless Chromium against the real processes
(`make run`: web, worker, model host): create an experiment, start a custom training
run with the form, watch it finish, promote it, and call the promoted model."""

from __future__ import annotations

import json
import random
import re
import textwrap

import pytest
import requests

from tests.helpers.browser import screenshot
from tests.helpers.processes import PortalClient, RunningPortal

pytestmark = [pytest.mark.slow, pytest.mark.browser]

TRAIN = textwrap.dedent(
    """
    import pandas as pd
    from sklearn.linear_model import LogisticRegression


    def train_model(df, base_path):
        X, y = df[["x1", "x2"]], df["target"]
        model = LogisticRegression().fit(X, y)
        proba = model.predict_proba(X)[:, 1]
        print("PROBA0=%.10f" % proba[0])  # the pipeline's own answer for the first row
        return {"X_train": X, "y_train": y, "model_output": pd.DataFrame({"proba": proba}),
                "pipeline": model, "metrics": {"accuracy": model.score(X, y)}}
    """
)

SCORE = textwrap.dedent(
    """
    import json, os
    import cloudpickle
    import pandas as pd

    MODEL = cloudpickle.load(open(os.path.join(os.path.dirname(__file__), "model.pkl"), "rb"))


    def score(data, base_path):
        row = pd.DataFrame([json.loads(data)])
        return {"proba": float(MODEL.predict_proba(row)[0, 1])}
    """
)


def _data() -> tuple[str, dict]:
    rng = random.Random(7)
    rows = [(rng.gauss(0, 1), rng.gauss(0, 1)) for _ in range(200)]
    lines = ["x1,x2,target"] + [f"{a:.6f},{b:.6f},{int(a + b > 0)}" for a, b in rows]
    return "\n".join(lines) + "\n", {"x1": float(f"{rows[0][0]:.6f}"), "x2": float(f"{rows[0][1]:.6f}")}


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    portal = RunningPortal(tmp_path_factory.mktemp("journey"))
    try:
        portal.wait_healthy()
        client = PortalClient(portal)
        token = client.create_group("datarisk")
        yield {"portal": portal, "client": client, "token": token}
    finally:
        portal.stop()


def test_train_watch_promote_and_call(page, live, tmp_path):
    url, (username, password) = live["portal"].url, live["portal"].admin
    csv, first_row = _data()
    files = {
        "dados.csv": csv,
        "app.py": TRAIN,
        "requirements.txt": "scikit-learn==1.6.1\n",
        "score.py": SCORE,
    }
    for name, content in files.items():
        (tmp_path / name).write_text(content)

    page.goto(f"{url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")  # not the language switch in the top bar
    page.wait_for_url(f"{url}/")

    page.goto(f"{url}/training/")
    page.fill("#id_experiment_name", "Journey")
    page.select_option("#id_model_type", "Classification")
    page.select_option("#id_group", "datarisk")
    page.click("#experiment-submit")
    page.wait_for_url(re.compile(r"/training/T[0-9a-f]{32}/$"))

    page.click("#new-run-link")
    page.fill("#id_run_name", "First test")
    page.select_option("#id_python_version", "3.11")
    page.set_input_files("#id_train_data", str(tmp_path / "dados.csv"))
    page.set_input_files("#id_source", str(tmp_path / "app.py"))
    page.set_input_files("#id_requirements", str(tmp_path / "requirements.txt"))
    page.click("#run-submit")
    page.wait_for_url(re.compile(r"/training/T[0-9a-f]{32}/runs/1/$"))

    # The page follows the run by itself: environment build, then the training.
    page.wait_for_function(
        "() => document.querySelector('#run-status').textContent.trim() === 'Succeeded'"
        " || document.querySelector('#run-status').textContent.trim() === 'Failed'",
        timeout=600_000,
    )
    assert page.inner_text("#run-status").strip() == "Succeeded", page.inner_text("#run-log")
    # The badge changes in place first; the whole log and the promote form come with the
    # reload after it.
    page.wait_for_selector("#promote-form")
    log = page.inner_text("#run-log")
    screenshot(page, "training-run-succeeded")
    expected = float(re.search(r"PROBA0=([0-9.]+)", log).group(1))
    assert page.locator("#run-metrics tr[data-metric=accuracy]").count() == 1

    page.fill("#id_name", "Journey promoted")
    page.fill("#id_model_reference", "score")
    page.set_input_files("#id_source", str(tmp_path / "score.py"))
    page.fill("#id_schema_text", json.dumps(first_row))
    page.click("#promote-submit")
    page.wait_for_url(re.compile(r"/models/M[0-9a-f]{32}/$"))
    assert "Promoted from training run 1" in page.inner_text("#promoted-from")
    model_hash = page.url.rstrip("/").rsplit("/", 1)[1]

    client = live["client"]
    status = client.wait_status(model_hash, {"Deployed", "Failed"}, timeout=300)
    build_log = client.get(f"/api/v1/models/{model_hash}/logs").json()["log"]
    assert status == "Deployed", build_log
    assert "Reusing environment" in build_log  # promote does not rebuild
    answer = requests.post(
        f"{url}/api/v1/run/{model_hash}",
        json=first_row,
        headers={"Authorization": f"Bearer {live['token']}"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["proba"] == pytest.approx(expected, abs=1e-9)
