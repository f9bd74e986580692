"""Training pages (server side): experiments, an experiment's runs, the run form, a run, promote.

Every page gets the same checklist: works for a member and a teammate, outsider 404,
anonymous to the login page, bad id 404, wrong method 405, bad input 400 with every
error at its field. No worker runs: runs are put in their states directly.
"""

from __future__ import annotations

import io
import json
import re
import shutil
import zipfile

import pytest
from django.test import Client

from models_app.models import MLModel
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
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


def test_experiment_list_pages_keep_the_filters(cast):
    for number in range(51):  # 50 a page
        make_experiment(cast.group, cast.owner, name=f"Churn {number}")
    client = _login(cast.owner)
    first = _html(client.get("/training/?q=churn"))
    assert "Page 1 of 2" in first and ">Previous</a>" not in first
    assert '<a class="btn btn-small" href="?q=churn&amp;page=2">Next</a>' in first
    second = _html(client.get("/training/?q=churn&page=2"))
    assert "Page 2 of 2" in second and ">Next</a>" not in second
    assert '<a class="btn btn-small" href="?q=churn&amp;page=1">Previous</a>' in second
    assert 'class="pager"' not in _html(client.get("/training/?q=churn+1"))  # 11 on one page


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


def test_experiment_page_shows_the_latest_runs_and_counts_them_all(cast, experiment, monkeypatch):
    from training import pages

    monkeypatch.setattr(pages, "MAX_SHOWN_RUNS", 2)
    for number in (1, 2, 3):
        finished_run(experiment, number=number, name=f"run {number}", metrics={"auc": 0.8})
    html = _html(_login(cast.owner).get(f"/training/{experiment.hash}/"))
    assert re.findall(r'<tr data-run="(\d+)"', html) == ["3", "2"]
    assert "The latest 2 are shown." in html and "3 runs · 3 Succeeded" in html


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


@pytest.mark.parametrize(
    "params",
    [
        {"shape": {"rows": "120", "columns": 3}},
        {"shape": {"rows": 1.5, "columns": None}},
        {"pipeline": {"class": "Pipeline", "steps": 5}},
        {"pipeline": {"class": "Pipeline", "steps": [{"name": "model", "steps": True}]}},
    ],
)
def test_run_page_shows_params_of_an_unexpected_shape_without_failing(cast, experiment, params):
    """params.json is written in the sandbox, by the process that ran the user's code:
    these answered 500 (a count the page spells out in words, steps that are no list)."""
    finished_run(experiment, params={**params, "note": "kept"})
    response = _login(cast.owner).get(f"/training/{experiment.hash}/runs/1/")
    assert response.status_code == 200
    html = _html(response)
    assert "rows ×" not in html and "&quot;note&quot;: &quot;kept&quot;" in html


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
    # A GET of the promote form's target (the language switch reloads it) goes to the run's page.
    promote_reloaded = _login(cast.owner).get(url + "promote/")
    assert promote_reloaded.status_code == 302 and promote_reloaded["Location"] == url
    assert _login(cast.owner).put(url + "promote/").status_code == 405


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


def test_promote_answers_the_upload_script_in_json(cast, experiment):
    """The form's script (upload_form.js) posts with XMLHttpRequest and keeps the chosen
    files on the page: it needs the errors, or where to go, as JSON."""
    finished_run(experiment)
    client = _login(cast.owner)
    url = f"/training/{experiment.hash}/runs/1/promote/"
    fields = {"model_reference": "score", "operation": "Sync", "schema_text": '{"a": 1}'}
    refused = client.post(
        url, {**fields, "name": "", "source": file("app.py", SCORE)}, HTTP_X_REQUESTED_WITH="XMLHttpRequest"
    )
    assert refused.status_code == 400 and refused.json() == {"errors": {"name": ["Give the model a name."]}}
    assert not MLModel.objects.exists()
    created = client.post(
        url,
        {**fields, "name": "Churn scorer", "source": file("app.py", SCORE)},
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )
    model = MLModel.objects.get()
    assert created.status_code == 201
    assert created.json() == {"hash": model.hash, "redirect": f"/models/{model.hash}/"}


def test_promote_of_a_run_that_cannot_be_promoted_answers_the_script_409(cast, experiment):
    finished_run(experiment, status=TrainingRun.Status.FAILED)
    answer = _login(cast.owner).post(
        f"/training/{experiment.hash}/runs/1/promote/",
        {"name": "x", "operation": "Sync"},
        HTTP_X_REQUESTED_WITH="XMLHttpRequest",
    )
    assert answer.status_code == 409
    assert answer.json() == {
        "errors": {
            "__all__": ["Run 1 of experiment 'Churn' is Failed; only a Succeeded run can be promoted."]
        }
    }


def test_model_page_without_a_run_has_no_promoted_line(cast):
    from tests.helpers.uploads import sync_payload

    client = _login(cast.owner)
    response = client.post("/models/new/", sync_payload())
    assert response.status_code == 302
    assert 'id="promoted-from"' not in _html(client.get(response["Location"]))


# --- AutoML: the run form's fields ----------------------------------------------------------

AUTOML_CSV = "mean_radius,texture,city,DATE,target\n17.9,10.3,SP,2024-01-01,1\n11.4,20.1,RJ,2024-02-01,0\n"
SEARCH_STANDIN = "def train_model(df, base_path):\n    raise NotImplementedError('stand-in')\n"
SCORE_STANDIN = (
    "def score(data, base_path):\n    return {'pred': 1}\n\n\n"
    "def score_file(data_path, model_path):\n    return data_path\n"
)


@pytest.fixture
def automl_files(monkeypatch, tmp_path):
    """The platform's AutoML files; stand-ins for those not written yet (the search and
    scoring code are another colleague's work in progress)."""
    from training import automl

    standins = {
        "SEARCH_SCRIPT": SEARCH_STANDIN,
        "SCORE_SCRIPT": SCORE_STANDIN,
        "REQUIREMENTS": "scikit-learn==1.7.2\noptuna==4.6.0\n",
    }
    for name, text in standins.items():
        if not getattr(automl, name).is_file():
            path = tmp_path / name.lower()
            path.write_text(text)
            monkeypatch.setattr(automl, name, path)
    return automl


def automl_fields(**overrides) -> dict:
    """The AutoML fields as a browser posts the form's defaults (prefixed names)."""
    from training.automl.config import STAGES

    fields = {
        "conf_source": "fields",
        "target": "target",
        "sep": ",",
        "cat_cols": "",
        "iterations": "1",
        "metric": "auc",
        "seed": "42",
        "split_type": "random",
        "val_size": "0.2",
        "holdout_size": "0.1",
        "stratify_col": "",
        "date_col": "",
        "oot_by": "size",
        "oot_split_size": "0.2",
        "split_date": "",
        **{stage: list(options) for stage, options in STAGES.items()},
    }
    fields.update(overrides)
    return {f"automl-{key}": value for key, value in fields.items() if value is not None}


def automl_payload(**overrides) -> dict:
    form_keys = ("run_name", "train_data", "conf_dict", "requirements", "source")
    fields = {key: overrides.pop(key) for key in list(overrides) if key not in form_keys}
    return {
        "run_name": "Search",
        "training_type": "AutoML",
        "train_data": file("dados.csv", AUTOML_CSV),
        **automl_fields(**fields),
        **overrides,
    }


def _unprefixed(post: dict) -> dict:
    return {key.removeprefix("automl-"): value for key, value in post.items()}


def test_the_fields_defaults_make_the_default_configuration():
    from training.automl.config import normalise
    from training.automl.fields import conf_from_fields

    conf = conf_from_fields(_unprefixed(automl_fields()))
    assert conf == {
        "model_flow": "classification",
        "train_data": {"sep": ","},
        "target": "target",
        "iterations": 1,
        "seed": 42,
        "metric": "auc",
        "split_type": "random",
        "val_size": 0.2,
        "holdout_size": 0.1,
        "stages": {
            "models": ["logreg", "rf", "dt", "lightgbm", "xgboost", "catboost"],
            "missing": ["mean", "median", "tail", "random", "none"],
            "cleaner": ["iqr", "rare", "none"],
            "encoding": ["rankcount", "catboost", "count", "dt"],
            "preprocess": ["norm", "robust", "minmax", "binarizer", "none"],
            "unbalance": ["smote", "random_under", "none"],
        },
    }
    # The form's defaults are the configuration's defaults.
    defaults = normalise({"model_flow": "classification", "target": "target"}, file_name="d.csv")
    assert normalise(conf, file_name="d.csv") == defaults


@pytest.mark.parametrize(
    ("split", "expected"),
    [
        ({"split_type": "random"}, {"val_size": 0.25, "holdout_size": 0.15}),
        ({"split_type": "stratified"}, {"val_size": 0.25, "holdout_size": 0.15, "stratify_col": "city"}),
        ({"split_type": "oot"}, {"val_size": 0.25, "date_col": "DATE", "oot_split_size": 0.3}),
        (
            {"split_type": "oot", "oot_by": "date"},
            {"val_size": 0.25, "date_col": "DATE", "split_date": "2024-02-01"},
        ),
        (
            {"split_type": "oot", "oot_by": "date", "split_date": " "},
            {"val_size": 0.25, "date_col": "DATE", "split_date": ""},
        ),
    ],
)
def test_the_fields_keep_only_the_options_of_the_split_type(split, expected):
    from training.automl.fields import conf_from_fields

    typed = {
        "val_size": "0.25",
        "holdout_size": "0.15",
        "stratify_col": "city",
        "date_col": " DATE ",
        "oot_split_size": "0.3",
        "split_date": "2024-02-01",
    }
    conf = conf_from_fields(_unprefixed(automl_fields(**{**typed, **split})))
    kept = {key: conf[key] for key in typed if key in conf}
    assert kept == expected
    assert conf["split_type"] == split["split_type"]


def test_the_fields_pass_what_was_typed_on_for_normalise_to_judge():
    from training.automl.fields import conf_from_fields

    conf = conf_from_fields(
        _unprefixed(
            automl_fields(
                target="  ",
                sep="\t",
                cat_cols=" city, ,DATE ,",
                iterations="2.5",
                seed="abc",
                val_size="nan",
                holdout_size="1e-1",
                metric="accuracy",
                models=[],
                missing=["median", "bogus"],
            )
        )
    )
    assert "target" not in conf  # empty: normalise says it is required
    assert conf["train_data"] == {"sep": "\t"}  # a tab is a separator, not blank space
    assert conf["cat_cols"] == ["city", "DATE"]
    assert (conf["iterations"], conf["seed"], conf["val_size"], conf["holdout_size"]) == (
        2.5,
        "abc",
        "nan",
        0.1,
    )
    assert conf["metric"] == "accuracy"
    assert conf["stages"]["models"] == [] and conf["stages"]["missing"] == ["median", "bogus"]
    # Fields left out of a post (a hand-made client) are simply not in the configuration.
    assert conf_from_fields({"target": "y"}) == {"model_flow": "classification", "target": "y"}


def test_the_fields_form_reads_a_post_and_knows_when_a_file_is_chosen():
    from django.http import QueryDict

    from training.automl.fields import AutoMLFieldsForm

    post = QueryDict(mutable=True)
    for key, value in automl_fields(iterations="7", models=["rf"]).items():
        post.setlist(key, value if isinstance(value, list) else [value])
    form = AutoMLFieldsForm(post)
    assert not form.uses_file
    assert form.conf()["iterations"] == 7 and form.conf()["stages"]["models"] == ["rf"]
    post["automl-conf_source"] = "file"
    assert AutoMLFieldsForm(post).uses_file
    assert not AutoMLFieldsForm().uses_file  # the page as first shown


def test_run_form_offers_the_automl_options_as_fields(cast, experiment):
    html = _html(_login(cast.teammate).get(f"/training/{experiment.hash}/runs/new/?type=AutoML"))
    assert re.search(r'value="AutoML"[^>]*checked', html)
    section = re.search(
        r'id="automl-fields">(.*?)<div class="form-section" data-training-type="Custom External"', html, re.S
    ).group(1)
    assert 'id="id_conf_dict_error"' in section  # problems are listed at the section's top
    assert re.search(r'name="automl-conf_source" value="fields"[^>]*checked', section)
    assert 'type="file" name="conf_dict"' in section
    assert re.search(r'<input type="text" name="automl-target" list="automl-columns"', section)
    assert '<datalist id="automl-columns"></datalist>' in section
    assert re.search(r'type="number" name="automl-iterations" value="1"', section)
    assert re.search(r'type="number" name="automl-seed" value="42"', section)
    metric = re.search(r'<select name="automl-metric".*?</select>', section, re.S).group(0)
    assert re.findall(r'<option value="(\w+)"', metric) == ["auc", "precision", "recall", "f1", "gini", "ks"]
    assert re.search(r'name="automl-split_type" value="random"[^>]*checked', section)
    assert re.search(r'data-split-types="random stratified" id="automl-holdout"', section)
    assert 'data-split-types="stratified" id="automl-stratify"' in section
    assert 'data-split-types="oot" id="automl-oot"' in section and 'data-oot-by="date"' in section
    assert 'type="date" name="automl-split_date"' in section
    boxes = re.findall(r'<input type="checkbox" name="automl-(\w+)" value="(\w+)"[^>]*?( checked)?>', section)
    assert len(boxes) == 26 and all(checked for _stage, _option, checked in boxes)
    assert ("models", "catboost", " checked") in boxes and ("unbalance", "random_under", " checked") in boxes
    # The training data is shared with Custom; AutoML needs no requirements, script or .env.
    assert 'data-training-type="Custom AutoML" id="data-fields"' in html
    assert 'data-training-type="Custom External" id="environment-fields"' in html
    assert 'id="automl-environment"' in html


def test_run_form_starts_an_automl_run_from_the_fields(cast, experiment, automl_files):
    from training.automl.config import normalise

    client = _login(cast.teammate)
    payload = automl_payload(
        iterations="3",
        metric="ks",
        split_type="stratified",
        stratify_col="city",
        cat_cols="city",
        models=["logreg", "lightgbm"],
        unbalance=["none"],
    )
    response = client.post(f"/training/{experiment.hash}/runs/new/", payload)
    assert response.status_code == 302, _html(response)
    run = TrainingRun.objects.get(experiment=experiment)
    assert (run.training_type, run.name, run.status) == ("AutoML", "Search", "Requested")
    assert run.inputs == {"conf": "automl_conf.json"}
    assert sorted(p.name for p in run.work_folder.iterdir()) == [
        "automl.py",
        "automl_conf.json",
        "dados.csv",
        "requirements.txt",
    ]
    assert (run.work_folder / "automl.py").read_text() == automl_files.SEARCH_SCRIPT.read_text()
    assert (run.work_folder / "requirements.txt").read_text() == automl_files.REQUIREMENTS.read_text()
    conf = json.loads((run.work_folder / "automl_conf.json").read_text())
    assert conf == normalise(
        {
            "model_flow": "classification",
            "target": "target",
            "cat_cols": ["city"],
            "iterations": 3,
            "metric": "ks",
            "split_type": "stratified",
            "stratify_col": "city",
            "stages": {"models": ["logreg", "lightgbm"], "unbalance": ["none"]},
        },
        file_name="dados.csv",
    )
    assert conf["stages"]["missing"] == ["mean", "median", "tail", "random", "none"]  # all checked
    # The page's script posts the same fields.
    answer = client.post(f"/training/{experiment.hash}/runs/new/", automl_payload(), **XHR)
    assert answer.status_code == 201 and answer.json()["number"] == 2


def test_run_form_lists_every_automl_problem_at_the_configuration(cast, experiment, automl_files):
    client = _login(cast.owner)
    payload = automl_payload(
        target="tagret",
        iterations="0",
        val_size="0.8",
        holdout_size="0.15",
        models=[],
        sep=";",
    )
    response = client.post(f"/training/{experiment.hash}/runs/new/", payload)
    assert response.status_code == 400
    problems = _field_errors(_html(response), "conf_dict")
    assert problems == [
        "iterations must be a whole number from 1 to 500, not 0.",
        "val_size + holdout_size is 0.95; leave at least 10 % of the data to train on.",
        "stages.models must be a non-empty list of logreg, rf, dt, lightgbm, xgboost, catboost.",
        # read with the chosen separator, the header is one column
        "target: &#x27;tagret&#x27; not in the training data&#x27;s columns "
        "(mean_radius,texture,city,DATE,target).",
    ]
    section = re.search(r'id="automl-fields">(.*?)id="automl-conf-fields"', _html(response), re.S).group(1)
    assert 'id="automl-conf-problems"' in section and "has-error" in section
    # What was typed is shown again.
    assert 'name="automl-target" value="tagret"' in _html(response)
    assert re.search(r'name="automl-models" value="logreg"(?![^>]*checked)', _html(response))
    # The script gets them as the form's errors, at conf_dict.
    payload["train_data"] = file("dados.csv", AUTOML_CSV)
    answer = client.post(f"/training/{experiment.hash}/runs/new/", payload, **XHR)
    assert answer.status_code == 400 and answer.json()["errors"] == {
        "conf_dict": [
            "iterations must be a whole number from 1 to 500, not 0.",
            "val_size + holdout_size is 0.95; leave at least 10 % of the data to train on.",
            "stages.models must be a non-empty list of logreg, rf, dt, lightgbm, xgboost, catboost.",
            "target: 'tagret' not in the training data's columns (mean_radius,texture,city,DATE,target).",
        ]
    }
    assert not TrainingRun.objects.exists()


def test_run_form_takes_an_uploaded_conf_json_instead_of_the_fields(cast, experiment, automl_files):
    client = _login(cast.owner)
    conf = {"model_flow": "classification", "target": "target", "iterations": 5, "metric": "f1"}
    payload = automl_payload(
        conf_source="file", iterations="zero", conf_dict=file("conf.json", json.dumps(conf))
    )
    response = client.post(f"/training/{experiment.hash}/runs/new/", payload)
    assert response.status_code == 302, _html(response)
    run = TrainingRun.objects.get()
    saved = json.loads((run.work_folder / "automl_conf.json").read_text())
    assert (saved["iterations"], saved["metric"]) == (5, "f1")  # the fields were not used
    # The fields are used when chosen, whatever file was also sent.
    payload = automl_payload(iterations="2", conf_dict=file("conf.json", json.dumps(conf)))
    assert client.post(f"/training/{experiment.hash}/runs/new/", payload).status_code == 302
    run = TrainingRun.objects.get(number=2)
    assert json.loads((run.work_folder / "automl_conf.json").read_text())["iterations"] == 2
    missing = client.post(f"/training/{experiment.hash}/runs/new/", automl_payload(conf_source="file"))
    assert missing.status_code == 400
    assert _field_errors(_html(missing), "conf_dict") == [
        "Give the AutoML configuration (conf.json), as a file or as JSON text."
    ]


# --- AutoML: a run's page -----------------------------------------------------------------

LEADERBOARD = {
    "metric": "auc",
    "seed": 42,
    "best_trial": 3,
    "trials": [
        {
            "number": 3,
            "value": 0.9731,
            "state": "COMPLETE",
            "error": None,
            "params": {
                "model": "lightgbm",
                "missing": "median",
                "cleaner": "iqr",
                "encoding": "count",
                "preprocess": "none",
                "unbalance": "smote",
                "lightgbm__n_estimators": 120,
                "lightgbm__learning_rate": 0.05,
            },
            "duration_seconds": 1.25,
        },
        {
            "number": 0,
            "value": 0.91,
            "state": "COMPLETE",
            "error": None,
            "params": {"model": "logreg", "missing": "mean", "logreg__C": 0.5},
            "duration_seconds": 0.4,
        },
        {
            "number": 1,
            "value": None,
            "state": "FAIL",
            "error": "ValueError: Input contains NaN",
            "params": {"model": "xgboost", "missing": "none"},
            "duration_seconds": 0.1,
        },
    ],
}
ROC = {"fpr": [0.0, 0.1, 0.3, 1.0], "tpr": [0.0, 0.7, 0.9, 1.0], "auc": 0.98}
KS = {
    # As scikit-learn's roc_curve answers them: descending, the first one infinite (dropped).
    "thresholds": [float("inf"), 0.9, 0.42, 0.1],
    "tpr": [0.0, 0.5, 0.9, 1.0],
    "fpr": [0.0, 0.02, 0.05, 0.6],
    "ks": 0.85,
    "threshold": 0.42,
}
SCHEMA = {"mean_radius": 17.99, "texture": 10.38, "city": "SP"}


def automl_run(experiment, artifacts: dict[str, object] | None = None, conf: object = "default", **fields):
    """A Succeeded AutoML run with the given extras (name → JSON-able, or bytes as is)."""
    from training.automl.config import normalise

    run = finished_run(
        experiment,
        training_type="AutoML",
        metrics={"auc": 0.98, "gini": 0.96, "ks": 0.85, "validation_auc": 0.9731},
        inputs={"conf": "automl_conf.json"},
        train_file="dados.csv",
        **fields,
    )
    if artifacts is None:
        artifacts = {
            "leaderboard.json": LEADERBOARD,
            "importances.json": {
                "features": [{"name": f"f{i:02d}", "importance": (25 - i) / 325} for i in range(25)]
            },
            "roc.json": ROC,
            "ks.json": KS,
            "schema.json": SCHEMA,
        }
    extras = run.artifacts_folder / "extras"
    extras.mkdir(parents=True, exist_ok=True)
    for name, content in artifacts.items():
        data = content if isinstance(content, bytes) else json.dumps(content).encode()
        (extras / name).write_bytes(data)
        run.artifacts.append({"name": f"extras/{name}", "size": len(data)})
    run.save(update_fields=["artifacts"])
    if conf is not None:
        if conf == "default":
            conf = normalise(
                {
                    "model_flow": "classification",
                    "target": "target",
                    "metric": "auc",
                    "split_type": "oot",
                    "date_col": "DATE",
                    "oot_split_size": 0.25,
                    "stages": {"models": ["lightgbm", "logreg"]},
                },
                file_name="dados.csv",
            )
        run.work_folder.mkdir(parents=True, exist_ok=True)
        (run.work_folder / "automl_conf.json").write_text(
            json.dumps(conf) if not isinstance(conf, str) else conf
        )
    return run


def _charts(html: str) -> dict:
    return json.loads(re.search(r'id="automl-charts"[^>]*>(.*?)</script>', html, re.S).group(1))


def test_automl_run_page_shows_the_leaderboard_importances_curves_and_configuration(cast, experiment):
    automl_run(experiment)
    response = _login(cast.teammate).get(f"/training/{experiment.hash}/runs/1/")
    assert response.status_code == 200
    html = _html(response)
    board = re.search(r'id="leaderboard-table">(.*?)</table>', html, re.S).group(1)
    headers = re.findall(r'<th scope="col"[^>]*>(.*?)</th>', board)
    assert headers == [
        "Rank",
        "Trial",
        "auc",
        "Model",
        "missing",
        "cleaner",
        "encoding",
        "preprocess",
        "unbalance",
        "Hyperparameters",
        "Duration",
    ]
    trials = re.findall(r'<tr data-trial="(\d*)" data-state="(\w*)"', board)
    assert trials == [("3", "COMPLETE"), ("0", "COMPLETE"), ("1", "FAIL")]  # best first, failed last
    best = re.search(r'<tr data-trial="3".*?</tr>', board, re.S).group(0)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", best, re.S)
    assert cells[0] == "1" and "best</span>" in cells[1] and cells[2] == "0.9731"
    assert cells[3:9] == [
        "<code>lightgbm</code>",
        "<code>median</code>",
        "<code>iqr</code>",
        "<code>count</code>",
        "<code>none</code>",
        "<code>smote</code>",
    ]
    assert "<summary>2 values</summary>" in cells[9]  # hyperparameters, folded
    assert (
        "<dt>learning_rate</dt><dd><code>0.05</code></dd><dt>n_estimators</dt><dd><code>120</code></dd>"
        in cells[9]
    )
    assert cells[10] == "1.2 s"
    failed = re.search(r'<tr data-trial="1".*?</tr>\s*<tr class="trial-error".*?</tr>', board, re.S).group(0)
    assert 'badge-Failed">failed</span>' in failed and "ValueError: Input contains NaN" in failed
    assert "3 trials: 2 complete, 1 failed; auc on the validation data, seed 42." in html

    importances = re.search(r'id="importances-table">(.*?)</table>', html, re.S).group(1)
    rows = re.findall(
        r'<tr data-feature="(\w+)">.*?<td class="num"[^>]*>(.*?)</td>.*?width: ([\d.]+)%', importances, re.S
    )
    assert len(rows) == 20 and rows[0] == ("f00", "7.7 %", "100.0") and rows[19] == ("f19", "1.8 %", "24.0")
    assert "The top 20 of 25 features" in html

    charts = _charts(html)
    assert charts["roc"] == {"fpr": ROC["fpr"], "tpr": ROC["tpr"], "auc": 0.98, "aucText": "0.98"}
    assert charts["ks"]["thresholds"] == [0.1, 0.42, 0.9]  # ascending for the chart
    assert charts["ks"]["gap"] == {"threshold": 0.42, "tpr": 0.9, "fpr": 0.05, "thresholdText": "0.42"}
    assert charts["ks"]["ksText"] == "0.85"
    assert 'id="roc-problem"' not in html and 'id="ks-problem"' not in html

    config = re.search(r'id="automl-config-props">(.*?)</dl>', html, re.S).group(1)
    assert "<dt>Target</dt><dd>target</dd>" in config
    assert "<dt>Categorical columns</dt><dd>detected</dd>" in config
    assert "<dt>Split</dt><dd>out of time by DATE: the latest 25 % held out</dd>" in config
    assert "<dt>Data</dt><dd>dados.csv (csv, separator &#x27;,&#x27;)</dd>" in config
    stages = re.search(r'id="automl-config-stages">(.*?)</dl>', html, re.S).group(1)
    assert (
        '<dt>models</dt><dd><ul class="chips" aria-label="models"><li>lightgbm</li><li>logreg</li></ul>'
        in stages
    )
    assert "&quot;oot_split_size&quot;: 0.25" in html  # the conf.json, folded


def test_automl_run_page_while_requested_shows_its_configuration_only(cast, experiment):
    run = TrainingRun.objects.create(
        experiment=experiment, number=1, name="s", training_type="AutoML", python_version="3.11"
    )
    run.work_folder.mkdir(parents=True)
    (run.work_folder / "automl_conf.json").write_text(
        json.dumps({"target": "y", "split_type": "random", "holdout_size": 0.1})
    )
    html = _html(_login(cast.owner).get(f"/training/{experiment.hash}/runs/1/"))
    assert "<dt>Target</dt><dd>y</dd>" in html and "<dt>Split</dt><dd>random: 10 % held out</dd>" in html
    assert 'id="automl-leaderboard"' not in html and 'id="automl-charts"' not in html


def test_automl_form_and_configuration_speak_portuguese(cast, experiment):
    from training.automl.config import MAX_ITERATIONS

    pt = {"HTTP_ACCEPT_LANGUAGE": "pt-BR,pt;q=0.9,en;q=0.5"}
    url = f"/training/{experiment.hash}/runs/new/?type=AutoML"
    section = re.search(
        r'id="automl-fields">(.*?)<div class="form-section" data-training-type="Custom External"',
        _html(_login(cast.teammate).get(url, **pt)),
        re.S,
    ).group(1)
    assert '<label for="id_automl-target">Coluna alvo</label>' in section
    assert f"Pipelines que a busca testa, de 1 a {MAX_ITERATIONS}." in section
    assert ">Preencher as opções abaixo<" in section and ">Linhas embaralhadas.<" in section
    assert ">vírgula ,</option>" in section and "Os estimadores que a busca testa." in section
    # A translated option shows its key beside it; a brand name is its own label.
    assert "regressão logística <code" in section and ">LightGBM <code" in section
    for english in ("Target column", "Pipelines the search tries", "Shuffled rows.", "logistic regression"):
        assert english not in section
    # The labels are translated when shown, not at import: English pages keep English.
    english = _html(_login(cast.teammate).get(url, HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9"))
    assert f"Pipelines the search tries, 1 to {MAX_ITERATIONS}." in english and "Coluna alvo" not in english

    train = {"file_name": "dados.csv", "file_type": "csv", "sep": ";"}
    conf = {
        "target": "y",
        "split_type": "stratified",
        "holdout_size": 0.1,
        "stratify_col": "UF",
        "train_data": train,
    }
    automl_run(experiment, conf=conf)
    html = _html(_login(cast.owner).get(f"/training/{experiment.hash}/runs/1/", **pt))
    config = re.search(r'id="automl-config-props">(.*?)</dl>', html, re.S).group(1)
    assert "<dt>Alvo</dt><dd>y</dd>" in config
    assert "<dt>Colunas categóricas</dt><dd>detectadas</dd>" in config
    assert "<dt>Divisão</dt><dd>stratified: 10 % separados, por UF</dd>" in config
    assert "<dt>Dados</dt><dd>dados.csv (csv, separador &#x27;;&#x27;)</dd>" in config
    assert "<dt>Validação</dt>" in config and "held out" not in config and "separator" not in config


@pytest.mark.parametrize(
    ("artifacts", "problems"),
    [
        (
            {},
            {
                "leaderboard-problem": "leaderboard.json was not produced.",
                "importances-problem": "importances.json was not produced.",
                "roc-problem": "roc.json was not produced.",
                "ks-problem": "ks.json was not produced.",
            },
        ),
        (
            {
                "leaderboard.json": b"{not json",
                "importances.json": b"\xff\xfe",
                "roc.json": b"[" * 100_000,
                "ks.json": b"0" * (2 * 1024 * 1024 + 1),
            },
            {
                "leaderboard-problem": "leaderboard.json is not valid JSON.",
                "importances-problem": "importances.json is not valid JSON.",
                "roc-problem": "roc.json is not valid JSON.",
                "ks-problem": "ks.json is larger than the 2 MB this page reads.",
            },
        ),
        (
            {
                "leaderboard.json": {"trials": "many"},
                "importances.json": {"features": [{"name": "a", "importance": "high"}]},
                "roc.json": {"fpr": [0, 1], "tpr": [0]},
                "ks.json": {"thresholds": [0.5, 0.2], "tpr": [1.5, 2], "fpr": [0, 0]},
            },
            {
                "leaderboard-problem": "leaderboard.json has no list of trials.",
                "importances-problem": "importances.json names no feature with a numeric importance.",
                "roc-problem": "roc.json&#x27;s fpr, tpr lists differ in length.",
                "ks-problem": "ks.json&#x27;s tpr values must lie between 0 and 1.",
            },
        ),
        (
            {
                "leaderboard.json": [1, 2],
                "importances.json": None,
                "roc.json": b'{"fpr": [NaN, 0.5], "tpr": [Infinity, 0.5], "auc": NaN}',
                "ks.json": {"thresholds": ["a", "b"], "tpr": [0, 1], "fpr": [0, 1]},
            },
            {
                "leaderboard-problem": "leaderboard.json has no list of trials.",
                "importances-problem": "importances.json has no list of features.",
                "roc-problem": "roc.json has fewer than two points.",
                "ks-problem": "ks.json has fewer than two points.",
            },
        ),
    ],
    ids=["missing", "corrupt", "wrong-shapes", "wrong-types"],
)
def test_automl_run_page_names_unusable_artifacts_instead_of_failing(cast, experiment, artifacts, problems):
    automl_run(experiment, artifacts, conf="{broken")
    response = _login(cast.owner).get(f"/training/{experiment.hash}/runs/1/")
    assert response.status_code == 200
    html = _html(response)
    for element, message in problems.items():
        assert re.search(rf'id="{element}">[^<]*: {re.escape(message)}</p>', html), element
    assert _charts(html) == {"roc": None, "ks": None}
    assert "The configuration can't be shown: automl_conf.json is not valid JSON." in html
    assert 'id="promote-form"' in html  # the model itself is fine


def test_automl_run_page_does_not_follow_links_or_trust_strings(cast, experiment, tmp_path):
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"features": [{"name": "SECRET", "importance": 1}]}))
    hostile = "</script><script>alert(1)</script>"
    run = automl_run(
        experiment,
        {
            "leaderboard.json": {
                "metric": hostile,
                "trials": [
                    {
                        "number": 1,
                        "value": 0.5,
                        "state": "COMPLETE",
                        "params": {"model": hostile, "x__y": [hostile]},
                    }
                ],
            },
            "roc.json": {"fpr": [0, 1], "tpr": [0, 1], "auc": hostile},
            "ks.json": KS,
        },
    )
    (run.artifacts_folder / "extras" / "importances.json").symlink_to(secret)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "automl_conf.json").write_text(json.dumps({"target": "SECRET"}))
    shutil.rmtree(run.work_folder)
    run.work_folder.symlink_to(outside)  # a folder swapped for a link
    html = _html(_login(cast.owner).get(f"/training/{experiment.hash}/runs/1/"))
    assert "<script>alert(1)" not in html and "SECRET" not in html
    assert "importances.json is not a regular file." in html
    assert "automl_conf.json is not in the run&#x27;s folder." in html
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert _charts(html)["roc"]["auc"] is None


def test_automl_run_page_names_a_folder_where_an_artifact_should_be(cast, experiment):
    run = automl_run(experiment)
    roc = run.artifacts_folder / "extras" / "roc.json"
    roc.unlink()
    roc.mkdir()  # the run's code may leave anything under its name
    response = _login(cast.owner).get(f"/training/{experiment.hash}/runs/1/")
    assert response.status_code == 200
    assert "roc.json is not a regular file." in _html(response)
    assert _charts(_html(response))["roc"] is None and _charts(_html(response))["ks"] is not None


def test_automl_curves_are_thinned_and_take_the_widest_gap_when_no_threshold_is_given():
    from training.automl.results import ks_view, roc_view

    steps = [i / 999 for i in range(1000)]
    roc = roc_view({"fpr": steps, "tpr": [min(1, 2 * s) for s in steps]})
    assert len(roc["fpr"]) == 200 and (roc["fpr"][0], roc["fpr"][-1]) == (0, 1) and roc["auc"] is None
    ks = ks_view({"thresholds": [0.9, 0.5, 0.1], "tpr": [0.2, 0.8, 1.0], "fpr": [0.0, 0.1, 0.7]})
    assert ks["gap"]["threshold"] == 0.5 and ks["ks"] == pytest.approx(0.7)


def test_experiment_page_offers_an_automl_run_and_lists_it_like_the_others(cast, experiment):
    automl_run(experiment)
    html = _html(_login(cast.owner).get(f"/training/{experiment.hash}/"))
    assert f'href="/training/{experiment.hash}/runs/new/?type=AutoML" id="new-automl-run-link"' in html
    row = re.search(r'<tr data-run="1".*?</tr>', html, re.S).group(0)
    assert '<span class="pill">AutoML</span>' in row and 'data-metric="validation_auc"' in row


# --- AutoML: promote -----------------------------------------------------------------------


def test_promote_form_of_an_automl_run_asks_for_name_and_operation(cast, experiment):
    automl_run(experiment)
    html = _html(_login(cast.owner).get(f"/training/{experiment.hash}/runs/1/"))
    form = re.search(r'id="promote-form".*?</form>', html, re.S).group(0)
    required, optional = form.split('id="promote-optional"')
    assert 'name="name"' in required and 'name="operation"' in required and 'name="input_type"' in required
    assert 'name="source"' not in required and 'name="model_reference"' not in required
    assert "Optional: the platform supplies these" in optional
    for name in ("source", "model_reference", "schema", "schema_text", "env", "requirements", "extra"):
        assert f'name="{name}"' in optional
    assert "a Sync model's schema is the first row of <code>X_train</code>" in optional
    assert "Optional for AutoML runs: the platform supplies the scoring code." in optional
    assert re.search(r'Schema \(\.json\)<span class="optional">optional</span>', optional)


def test_promote_an_automl_run_with_two_fields(cast, experiment, automl_files):
    run = automl_run(experiment)
    client = _login(cast.teammate)
    response = client.post(
        f"/training/{experiment.hash}/runs/1/promote/", {"name": "Cancer", "operation": "Sync"}
    )
    assert response.status_code == 302, _html(response)
    model = MLModel.objects.get()
    assert (model.name, model.training_run, model.operation) == ("Cancer", run, "Sync")
    assert (model.model_reference, model.input_type, model.schema) == ("score", "json", SCHEMA)
    assert (model.folder / model.source_file).read_text() == automl_files.SCORE_SCRIPT.read_text()


def test_promote_an_automl_run_without_its_schema_says_what_is_missing(cast, experiment, automl_files):
    automl_run(experiment, {"leaderboard.json": LEADERBOARD})
    client = _login(cast.owner)
    page = _html(client.get(f"/training/{experiment.hash}/runs/1/"))
    assert "this run has no <code>extras/schema.json</code>: give a Sync model's schema below." in page
    response = client.post(
        f"/training/{experiment.hash}/runs/1/promote/", {"name": "Cancer", "operation": "Sync"}
    )
    assert response.status_code == 400
    assert _field_errors(_html(response), "schema")[0].startswith("Sync models need a schema")
    # Async needs none: the platform's score_file reads the file.
    response = client.post(
        f"/training/{experiment.hash}/runs/1/promote/", {"name": "Batch", "operation": "Async"}
    )
    assert response.status_code == 302, _html(response)
    assert MLModel.objects.get().model_reference == "score_file"


def test_an_automl_run_whose_files_were_deleted_says_so_not_that_they_were_never_produced(cast, experiment):
    run = automl_run(experiment)
    assert (
        api_client(cast.owner)
        .delete(f"/api/v1/training/experiments/{experiment.hash}/runs/1/artifacts")
        .status_code
        == 204
    )
    response = _login(cast.teammate).get(f"/training/{experiment.hash}/runs/{run.number}/")
    assert response.status_code == 200
    html = _html(response)
    assert "The run&#x27;s files were deleted." in html and "was not produced" not in html
