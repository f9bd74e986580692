"""Training pages (server side): experiments, an experiment's runs, the run form, a run, promote.

Every page gets the same checklist: works for a member and a teammate, outsider 404,
anonymous to the login page, bad id 404, wrong method 405, bad input 400 with every
error at its field. No worker runs: runs are put in their states directly.
"""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from django.test import Client

from models_app.models import MLModel
from tests.helpers.cast import PASSWORD
from tests.helpers.training import custom_payload, external_payload, finished_run, make_experiment
from tests.helpers.uploads import file
from training.models import Experiment, TrainingRun

XHR = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
SCORE = "def score(data, base_path):\n    return {'ok': True}\n"

PARAMS = {
    "shape": {"rows": 120, "columns": 3},
    "columns": ["age", "income", "city"],
    "missing": {"income": 0.125},
    "pipeline": {
        "class": "sklearn.pipeline.Pipeline",
        "params": {"memory": None},
        "steps": [
            {"name": "scale", "class": "sklearn.preprocessing.StandardScaler", "params": {"with_mean": True}},
            {
                "name": "model",
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"C": 0.5, "max_iter": 200},
            },
        ],
    },
    "target": {"kind": "proportions", "values": {"0": 0.75, "1": 0.25}},
}


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _html(response) -> str:
    return response.content.decode()


def _field_errors(html: str, field: str) -> list[str]:
    """The errors shown under one field (the box _field.html renders with its id)."""
    match = re.search(rf'id="id_{field}_error"[^>]*>(.*?)</div>', html, re.S)
    assert match, f"no error box for {field}"
    return re.findall(r'<p class="error">(.*?)</p>', match.group(1))


@pytest.fixture
def experiment(cast) -> Experiment:
    return make_experiment(cast.group, cast.owner, name="Churn")


# --- the list and the new-experiment form ------------------------------------------------


def test_experiment_list_shows_the_groups_experiments_with_their_last_run(cast, experiment):
    finished_run(experiment, number=1)
    finished_run(experiment, number=2, status="Failed", error_message="boom")
    make_experiment(cast.group, cast.owner, name="Fraud", model_type="Regression")
    make_experiment(cast.other_group, cast.outsider, name="Secret plan")
    response = _login(cast.teammate).get("/training/")
    assert response.status_code == 200
    html = _html(response)
    row = re.search(rf'<tr data-experiment="{experiment.hash}">(.*?)</tr>', html, re.S).group(1)
    assert "Churn" in row and "datarisk" in row and "Classification" in row
    assert '<td class="num">2</td>' in row and "badge-Failed" in row  # runs, last run's status
    assert "Fraud" in html and "no runs yet" in html
    assert "Secret plan" not in html
    assert '<a href="/training/" aria-current="page">Training</a>' in html
    assert 'id="experiment-form"' in html and 'name="experiment_name"' in html


def test_experiment_list_filters(cast, experiment):
    make_experiment(cast.group, cast.owner, name="Fraud", model_type="Regression")
    client = _login(cast.owner)
    html = _html(client.get("/training/?q=chu"))
    assert "Churn" in html and "Fraud</a>" not in html
    html = _html(client.get("/training/?model_type=Regression"))
    assert "Fraud</a>" in html and "Churn</a>" not in html
    assert "Churn</a>" in _html(client.get(f"/training/?q={experiment.hash}"))
    bad = client.get("/training/?group=other-team&model_type=Clustering")
    assert bad.status_code == 400 and "Select a valid choice" in _html(bad)


def test_experiment_list_needs_a_login(cast):
    response = Client().get("/training/")
    assert response.status_code == 302 and response["Location"] == "/login/?next=/training/"
    assert Client().post("/training/", {"experiment_name": "x"}).status_code == 302
    assert not Experiment.objects.exists()


def test_new_experiment_is_created_then_found_then_forced(cast):
    client = _login(cast.owner)
    body = {"experiment_name": "Churn", "model_type": "Classification", "group": "datarisk"}
    created = client.post("/training/", body, follow=True)
    experiment = Experiment.objects.get()
    assert created.redirect_chain == [(f"/training/{experiment.hash}/", 302)]
    assert (experiment.name, experiment.group, experiment.created_by) == ("Churn", cast.group, cast.owner)
    assert "Experiment Churn created in datarisk." in _html(created)

    found = _login(cast.teammate).post("/training/", body, follow=True)
    assert found.redirect_chain == [(f"/training/{experiment.hash}/", 302)]
    assert "datarisk already has a Classification experiment named Churn: here it is." in _html(found)
    assert Experiment.objects.count() == 1

    forced = client.post("/training/", {**body, "force": "true"})
    assert forced.status_code == 302 and Experiment.objects.count() == 2
    assert forced["Location"] != f"/training/{experiment.hash}/"


def test_new_experiment_shows_every_problem_at_its_field(cast):
    response = _login(cast.owner).post(
        "/training/", {"experiment_name": "", "model_type": "Clustering", "group": "other-team"}
    )
    assert response.status_code == 400
    html = _html(response)
    assert _field_errors(html, "experiment_name") == ["Give the experiment a name."]
    assert _field_errors(html, "model_type") == [
        "model_type must be Classification, Regression or Unsupervised, not &#x27;Clustering&#x27;."
    ]
    assert "you are not a member of a group named &#x27;other-team&#x27;" in _field_errors(html, "group")[0]
    assert "Please correct the 3 fields marked below." in html
    assert not Experiment.objects.exists()


def test_user_without_groups_is_told_so(cast):
    cast.outsider.memberships.all().delete()
    html = _html(_login(cast.outsider).get("/training/"))
    assert "You are not in any group yet." in html and 'id="experiment-form"' not in html


# --- the experiment page -------------------------------------------------------------------


def test_experiment_page_lists_runs_with_a_column_per_metric(cast, experiment):
    finished_run(experiment, number=1, name="baseline", metrics={"auc": 0.81, "f1": 0.5})
    finished_run(experiment, number=2, name="tuned", metrics={"auc": 0.9312})
    TrainingRun.objects.create(
        experiment=experiment, number=3, name="waiting", training_type="External", python_version="3.9"
    )
    response = _login(cast.teammate).get(f"/training/{experiment.hash}/")
    assert response.status_code == 200
    html = _html(response)
    headers = re.findall(r'<th scope="col"[^>]*data-column="([^"]+)"', html)
    assert headers == ["number", "name", "type", "status", "metric:auc", "metric:f1", "duration", "started"]
    assert 'aria-sort="descending"' in html  # the server's order: newest run first
    rows = re.findall(r'<tr data-run="(\d+)" data-status="(\w+)">', html)
    assert rows == [("3", "Requested"), ("2", "Succeeded"), ("1", "Succeeded")]
    tuned = re.search(r'<tr data-run="2".*?</tr>', html, re.S).group(0)
    assert '<td class="num" data-metric="auc" data-sort-value="0.9312">0.9312</td>' in tuned
    assert '<td class="num" data-metric="f1" data-sort-value="">—</td>' in tuned
    assert f'href="/training/{experiment.hash}/runs/2/"' in tuned
    config = json.loads(re.search(r'id="experiment-config"[^>]*>(.*?)</script>', html, re.S).group(1))
    assert config["metrics"] == ["auc", "f1"]
    assert [(r["number"], r["metrics"]) for r in config["runs"]] == [
        (1, {"auc": 0.81, "f1": 0.5}),
        (2, {"auc": 0.9312}),
        (3, {}),
    ]
    assert '<select id="metric-select">' in html and 'id="metric-chart"' in html
    assert f'href="/training/{experiment.hash}/runs/new/" id="new-run-link"' in html
    assert "/static/js/training.js" in html


def test_experiment_page_without_runs(cast, experiment):
    html = _html(_login(cast.owner).get(f"/training/{experiment.hash}/"))
    assert "No runs yet" in html and 'id="metric-chart-empty"' in html and "metric-select" not in html


def test_experiment_page_access(cast, experiment):
    url = f"/training/{experiment.hash}/"
    assert _login(cast.outsider).get(url).status_code == 404
    assert _login(cast.admin).get(url).status_code == 200
    assert _login(cast.owner).get("/training/Tnope/").status_code == 404
    assert _login(cast.owner).post(url).status_code == 405
    anonymous = Client().get(url)
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")


# --- the run form --------------------------------------------------------------------------


def test_run_form_shows_both_kinds_of_fields(cast, experiment):
    response = _login(cast.teammate).get(f"/training/{experiment.hash}/runs/new/")
    assert response.status_code == 200
    html = _html(response)
    assert 'id="run-form"' in html and 'enctype="multipart/form-data"' in html
    assert 'data-training-type="Custom" id="custom-fields"' in html
    assert 'data-training-type="External" id="external-fields"' in html
    for name in (
        "run_name",
        "train_data",
        "source",
        "requirements",
        "X_train",
        "y_train",
        "model_output",
        "model",
    ):
        assert f'id="id_{name}"' in html
    assert re.search(r'value="Custom"[^>]*checked', html) and not re.search(
        r'value="External"[^>]*checked', html
    )
    assert '<option value="3.9"' in html  # the interpreters of this host
    assert 'id="run-progress"' in html and 'id="run-submit"' in html
    external = _html(_login(cast.owner).get(f"/training/{experiment.hash}/runs/new/?type=External"))
    assert re.search(r'value="External"[^>]*checked', external)


def test_run_form_reports_every_problem_at_once(cast, experiment):
    client = _login(cast.owner)
    payload = {
        "training_type": "Custom",
        "python_version": "2.7",
        "source": file("train.txt", "x"),
        "X_train": file("X_train.csv", "a\n1\n"),
    }
    response = client.post(f"/training/{experiment.hash}/runs/new/", payload)
    assert response.status_code == 400
    html = _html(response)
    assert _field_errors(html, "run_name") == ["Give the run a name."]
    assert _field_errors(html, "requirements") == ["Upload requirements.txt (it may be empty)."]
    assert _field_errors(html, "train_data") == ["Upload the training data (.csv or .parquet)."]
    assert _field_errors(html, "source") == [
        "&#x27;train.txt&#x27; is not a .py file. Upload the training script."
    ]
    assert _field_errors(html, "X_train") == ["X_train is only used by External runs."]
    assert _field_errors(html, "python_version")[0].startswith("Select a valid choice:")
    assert "Please correct the 6 fields marked below." in html
    # The page's script gets the same errors as JSON.
    answer = client.post(
        f"/training/{experiment.hash}/runs/new/", {"training_type": "External", "run_name": "x"}, **XHR
    )
    assert answer.status_code == 400
    errors = answer.json()["errors"]
    assert sorted(errors) == ["X_train", "model", "model_output", "requirements", "y_train"]
    assert not TrainingRun.objects.exists()


def test_run_form_starts_a_custom_run(cast, experiment):
    client = _login(cast.teammate)
    response = client.post(f"/training/{experiment.hash}/runs/new/", custom_payload())
    run = TrainingRun.objects.get(experiment=experiment)
    assert response.status_code == 302 and response["Location"] == f"/training/{experiment.hash}/runs/1/"
    assert (run.number, run.status, run.training_type, run.name) == (1, "Requested", "Custom", "First test")
    assert run.requested_by == cast.teammate
    assert sorted(p.name for p in run.work_folder.iterdir()) == ["app.py", "dados.csv", "requirements.txt"]
    page = _html(client.get(response["Location"]))
    assert "Run 1 is queued" in page


def test_run_form_xhr_starts_an_external_run_with_pasted_metrics(cast, experiment):
    payload = external_payload(metrics=json.dumps({"auc": 0.91, "ks": 0.4}), params='{"max_depth": 4}')
    response = _login(cast.owner).post(f"/training/{experiment.hash}/runs/new/", payload, **XHR)
    assert response.status_code == 201, response.content
    assert response.json() == {"number": 1, "redirect": f"/training/{experiment.hash}/runs/1/"}
    run = TrainingRun.objects.get(experiment=experiment)
    assert run.training_type == "External" and run.metrics == {"auc": 0.91, "ks": 0.4}
    assert run.params == {"logged": {"max_depth": 4}}


def test_run_form_access(cast, experiment):
    url = f"/training/{experiment.hash}/runs/new/"
    assert _login(cast.outsider).get(url).status_code == 404
    assert _login(cast.outsider).post(url, custom_payload()).status_code == 404
    assert Client().get(url)["Location"].startswith("/login/")
    assert _login(cast.owner).put(url).status_code == 405
    assert not TrainingRun.objects.exists()


# --- the run page --------------------------------------------------------------------------


def test_requested_run_page_follows_the_run(cast, experiment):
    TrainingRun.objects.create(
        experiment=experiment, number=1, name="waiting", training_type="Custom", python_version="3.9"
    )
    response = _login(cast.teammate).get(f"/training/{experiment.hash}/runs/1/")
    assert response.status_code == 200
    html = _html(response)
    assert 'id="run-status">Requested</span>' in html
    config = json.loads(re.search(r'id="run-config"[^>]*>(.*?)</script>', html, re.S).group(1))
    api = f"/api/v1/training/experiments/{experiment.hash}/runs/1"
    assert config == {"status": "Requested", "statusUrl": f"{api}/status", "logsUrl": f"{api}/logs"}
    assert "Waiting for a worker to start the run" in html
    assert 'id="promote-form"' not in html and 'id="artifacts-zip"' not in html
    # What the page polls answers to the session.
    client = _login(cast.teammate)
    assert client.get(config["statusUrl"]).json()["Status"] == "Requested"
    assert client.get(config["logsUrl"]).json()["status"] == "Requested"


def test_succeeded_run_page_shows_metrics_params_artifacts_and_requirements(cast, experiment):
    run = finished_run(
        experiment,
        metrics={"auc": 0.93125, "rows_seen": 1200},
        params=PARAMS,
        summary={"shapes": {"X_train": [120, 3]}, "warnings": ["y_train has 2 classes"]},
        log="line one\nline two\n",
    )
    response = _login(cast.teammate).get(f"/training/{experiment.hash}/runs/1/")
    assert response.status_code == 200
    html = _html(response)
    assert 'id="run-status">Succeeded</span>' in html
    assert '<tr data-metric="auc"><th scope="row">auc</th><td class="num" title="0.93125">0.9313</td>' in html
    assert '<td class="num" title="1200">1,200</td>' in html
    assert "<strong>120</strong> rows × <strong>3</strong> columns" in html
    assert '<td><code>income</code></td><td class="num">12.50 %</td>' in html
    pipeline = re.search(r'id="params-pipeline">(.*?)</div>', html, re.S).group(1)
    assert "<strong>scale</strong> <code>sklearn.preprocessing.StandardScaler</code>" in pipeline
    assert "<dt>C</dt><dd><code>0.5</code></dd><dt>max_iter</dt><dd><code>200</code></dd>" in pipeline
    assert "<dt>with_mean</dt><dd><code>true</code></dd>" in pipeline
    target = re.search(r'id="params-target">(.*?)</div>', html, re.S).group(1)
    assert '<th scope="row"><code>0</code></th><td class="num">75.0 %</td>' in target
    assert 'style="width: 25.0%"' in target
    artifacts = re.search(r'id="run-artifacts">(.*?)</ul>', html, re.S).group(1)
    assert "<code>model.pkl</code>" in artifacts and "5\xa0bytes" in artifacts
    zip_url = f"/api/v1/training/experiments/{experiment.hash}/runs/1/artifacts"
    assert f'id="artifacts-zip" href="{zip_url}"' in html
    assert '<details id="frozen-requirements">' in html and "numpy==2.0.2" in html
    assert "Installed (frozen), 2 packages" in html
    assert "line two" in html and "y_train has 2 classes" in html and "120 × 3" in html
    assert 'id="promote-form"' in html and 'value="Churn 1"' in html
    assert "run-config" in html and 'id="live-note"' not in html
    # The zip link works with the member's session.
    bundle = _login(cast.teammate).get(zip_url)
    assert bundle.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(b"".join(bundle.streaming_content))).namelist()
    assert sorted(names) == ["metrics.json", "model.pkl", "training.log"]
    assert run.artifacts[0] == {"name": "model.pkl", "size": 5}


def test_failed_run_page_shows_the_error_and_refuses_promotion(cast, experiment):
    finished_run(experiment, status="Failed", error_message="The training function raised ValueError: no")
    client = _login(cast.owner)
    html = _html(client.get(f"/training/{experiment.hash}/runs/1/"))
    assert "The training function raised ValueError: no" in html
    assert 'id="promote-form"' not in html and "Only a Succeeded run can be promoted." in html
    response = client.post(
        f"/training/{experiment.hash}/runs/1/promote/",
        {"name": "m", "model_reference": "score", "source": file("app.py", SCORE), "schema": '{"a": 1}'},
    )
    assert response.status_code == 409
    error = re.search(r'id="promote-error"><p>(.*?)</p>', _html(response)).group(1)
    assert error == (
        "Run 1 of experiment &#x27;Churn&#x27; is Failed: The training function raised ValueError: no; "
        "only a Succeeded run can be promoted."
    )
    assert not MLModel.objects.exists()


def test_run_page_access(cast, experiment):
    finished_run(experiment)
    url = f"/training/{experiment.hash}/runs/1/"
    assert _login(cast.outsider).get(url).status_code == 404
    assert _login(cast.outsider).post(url + "promote/", {"name": "x"}).status_code == 404
    for missing in ("2", "0", "99999999999"):
        assert _login(cast.owner).get(f"/training/{experiment.hash}/runs/{missing}/").status_code == 404
    assert Client().get(url)["Location"].startswith("/login/")
    assert _login(cast.owner).post(url).status_code == 405
    assert _login(cast.owner).get(url + "promote/").status_code == 405


# --- promote -------------------------------------------------------------------------------


def test_promote_creates_a_model_that_remembers_its_run(cast, experiment):
    run = finished_run(experiment, name="tuned")
    client = _login(cast.teammate)
    response = client.post(
        f"/training/{experiment.hash}/runs/1/promote/",
        {
            "name": "Churn scorer",
            "operation": "Sync",
            "model_reference": "score",
            "source": file("app.py", SCORE),
            "schema_text": '{"a": 1}',
            "env": file(".env", "API_KEY=abc\n"),
        },
    )
    model = MLModel.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/models/{model.hash}/"
    assert (model.name, model.training_run, model.group) == ("Churn scorer", run, cast.group)
    assert model.python_version == "3.9.20" and model.env_names == ["API_KEY"]
    assert (model.folder / "model.pkl").read_bytes() == b"\x80\x04K\x01."
    page = _html(client.get(response["Location"]))
    assert "Churn scorer was created from run 1 of Churn." in page
    promoted = re.search(r'id="promoted-from">(.*?)</p>', page).group(1)
    assert promoted == (
        f'Promoted from <a href="/training/{experiment.hash}/runs/1/">training run 1 of Churn</a>'
    )
    run_page = _html(client.get(f"/training/{experiment.hash}/runs/1/"))
    listed = re.search(r'id="promoted-models">(.*?)</ul>', run_page, re.S).group(1)
    assert f'<a href="/models/{model.hash}/">Churn scorer</a>' in listed


def test_promote_shows_every_problem_at_its_field(cast, experiment):
    finished_run(experiment)
    response = _login(cast.owner).post(
        f"/training/{experiment.hash}/runs/1/promote/",
        {"name": "", "model_reference": "score", "operation": "Sync"},
    )
    assert response.status_code == 400
    html = _html(response)
    assert _field_errors(html, "name") == ["Give the model a name."]
    assert _field_errors(html, "source") == ["Upload the scoring script (.py)."]
    assert _field_errors(html, "schema")[0].startswith("Sync models need a schema")
    assert not MLModel.objects.exists()


def test_model_page_without_a_run_has_no_promoted_line(cast):
    from tests.helpers.uploads import sync_payload

    client = _login(cast.owner)
    response = client.post("/models/new/", sync_payload())
    assert response.status_code == 302
    assert 'id="promoted-from"' not in _html(client.get(response["Location"]))
