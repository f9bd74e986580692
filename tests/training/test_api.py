"""The training API without workers: experiments, run uploads, comparison, artifacts, promote."""

from __future__ import annotations

import io
import json
import shutil
import uuid
import zipfile
from pathlib import Path

import pytest
from django.conf import settings

from models_app import environments
from models_app.models import MLModel
from tests.helpers.clients import api_client
from tests.helpers.monitors import deployed_model
from tests.helpers.training import custom_payload, external_payload, finished_run, make_experiment
from tests.helpers.uploads import file
from training import automl
from training.models import Experiment, TrainingRun

API = "/api/v1/training"

SCORE = "def score(data, base_path):\n    return {'ok': True}\n"


def _create(client, **body):
    return client.post(
        f"{API}/experiments",
        {"experiment_name": "Teste notebook", "model_type": "Classification", "group": "datarisk", **body},
        format="json",
    )


# ----------------------------------------------------------------------- experiments


def test_create_experiment_then_the_same_one_again_unless_forced(cast):
    client = api_client(cast.owner)
    first = _create(client)
    assert first.status_code == 201, first.content
    body = first.json()
    assert body["hash"].startswith("T") and len(body["hash"]) == 33
    assert (body["name"], body["group"], body["model_type"], body["runs"]) == (
        "Teste notebook",
        "datarisk",
        "Classification",
        [],
    )
    again = _create(client)
    assert again.status_code == 200 and again.json()["hash"] == body["hash"]
    other_type = _create(client, model_type="Regression")
    assert other_type.status_code == 201 and other_type.json()["hash"] != body["hash"]
    forced = _create(client, force=True)
    assert forced.status_code == 201 and forced.json()["hash"] != body["hash"]
    assert Experiment.objects.filter(name="Teste notebook", model_type="Classification").count() == 2


def test_create_experiment_reports_every_problem(cast):
    response = api_client(cast.owner).post(
        f"{API}/experiments", {"model_type": "Clustering", "group": "other-team"}, format="json"
    )
    assert response.status_code == 400
    errors = response.json()["errors"] if "errors" in response.json() else response.json()
    text = json.dumps(errors)
    assert "Give the experiment a name." in text
    assert "model_type must be Classification, Regression or Unsupervised, not 'Clustering'." in text
    assert "you are not a member of a group named 'other-team'" in text


@pytest.mark.parametrize(
    ("body", "kind"),
    [("[]", "list"), ('"Teste"', "string"), ("3", "number"), ("null", "null")],
)
def test_create_experiment_refuses_a_json_body_that_is_not_an_object(cast, body, kind):
    response = api_client(cast.owner).post(f"{API}/experiments", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json()["detail"] == f"Send a JSON object, not {kind}."
    assert not Experiment.objects.exists()


@pytest.mark.parametrize(("name", "kind"), [(["Teste"], "list"), ({"pt": "Teste"}, "object")])
def test_create_experiment_refuses_a_name_that_is_not_text(cast, name, kind):
    """The form read it as its Python text: an experiment named "['Teste']"."""
    response = _create(api_client(cast.owner), experiment_name=name)
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["experiment_name"] == [
        f"experiment_name takes one value, not a JSON {kind}."
    ]
    assert not Experiment.objects.exists()


def test_create_experiment_refuses_json_nested_too_deeply(cast):
    response = api_client(cast.owner).post(
        f"{API}/experiments", "[" * 5000 + "]" * 5000, content_type="application/json"
    )
    assert response.status_code == 400, response.content
    assert "nested too deeply" in response.json()["detail"]


def test_create_experiment_as_multipart_ignores_a_file_part(cast):
    response = api_client(cast.owner).post(
        f"{API}/experiments",
        {
            "experiment_name": "Teste notebook",
            "model_type": "Classification",
            "group": "datarisk",
            "x": file("x.txt", "not a field of an experiment"),
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert (response.json()["name"], response.json()["group"]) == ("Teste notebook", "datarisk")


def test_experiments_are_listed_searched_and_hidden_from_outsiders(cast):
    churn = make_experiment(cast.group, cast.owner, name="Churn")
    make_experiment(cast.group, cast.owner, name="Fraud", model_type="Regression")
    make_experiment(cast.other_group, cast.outsider, name="Churn elsewhere")
    teammate = api_client(cast.teammate)
    names = [e["name"] for e in teammate.get(f"{API}/experiments").json()["results"]]
    assert sorted(names) == ["Churn", "Fraud"]
    assert [e["name"] for e in teammate.get(f"{API}/experiments?name=chu").json()["results"]] == ["Churn"]
    found = teammate.get(f"{API}/experiments?model_type=Regression").json()["results"]
    assert [e["name"] for e in found] == ["Fraud"]
    assert teammate.get(f"{API}/experiments?model_type=Nope").status_code == 400
    assert teammate.get(f"{API}/experiments/{churn.hash}").json()["name"] == "Churn"
    assert api_client(cast.outsider).get(f"{API}/experiments/{churn.hash}").status_code == 404
    assert api_client(cast.admin).get(f"{API}/experiments/{churn.hash}").status_code == 200
    assert api_client().get(f"{API}/experiments").status_code in (401, 403)
    assert teammate.get(f"{API}/experiments/Tnope").status_code == 404
    assert teammate.delete(f"{API}/experiments/{churn.hash}").status_code == 405


# ------------------------------------------------------------------------------ runs


def test_custom_run_is_stored_and_requested(cast):
    experiment = make_experiment(cast.group, cast.owner)
    client = api_client(cast.teammate)
    response = client.post(
        f"{API}/experiments/{experiment.hash}/runs",
        custom_payload(env=file(".env", "API_KEY=s3cr3t\n"), extra=[file("utils.py", "X = 1\n")]),
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["number"], body["status"], body["training_type"], body["run_name"]) == (
        1,
        "Requested",
        "Custom",
        "First test",
    )
    assert body["env_names"] == ["API_KEY"] and "s3cr3t" not in response.content.decode()
    # The harness's needs join the user's requirements, the user's pins first.
    assert body["requirements"] == ["scikit-learn==1.6.1", "pandas", "pyarrow", "cloudpickle"]
    run = TrainingRun.objects.get(experiment=experiment, number=1)
    stored = sorted(p.name for p in run.work_folder.iterdir())
    assert stored == ["app.py", "dados.csv", "requirements.txt", "utils.py"]
    assert run.requested_by == cast.teammate
    second = client.post(f"{API}/experiments/{experiment.hash}/runs", custom_payload(), format="multipart")
    assert second.json()["number"] == 2


def test_the_users_own_pins_of_platform_packages_win(cast):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        custom_payload(requirements=file("requirements.txt", "Pandas==2.2.3\npyarrow>=15\n")),
        format="multipart",
    )
    assert response.json()["requirements"] == ["pandas==2.2.3", "pyarrow>=15", "cloudpickle"]


def _errors(response) -> str:
    return json.dumps(response.json())


def test_custom_run_reports_every_problem_at_once(cast):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        {
            "training_type": "Custom",
            "python_version": "2.7",
            "model": file("model.pkl", b"x"),
            "conf_dict": json.dumps({"target": "y"}),
        },
        format="multipart",
    )
    assert response.status_code == 400
    text = _errors(response)
    for message in (
        "Give the run a name.",
        "Upload the training data (.csv or .parquet).",
        "Upload the training script (.py).",
        "Upload requirements.txt (it may be empty).",
        "model is only used by External runs.",
        "conf_dict is only used by AutoML runs.",
        "Select a valid choice",
    ):
        assert message in text, message
    assert not TrainingRun.objects.exists()
    assert not any(p.name.startswith(".incoming") for p in settings.TRAININGS_DIR.glob("*"))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"train_data": file("data.xlsx", "x")}, "'data.xlsx' is not a .csv or .parquet file."),
        (
            {"train_data": file("train.csv", "")},
            "'train.csv' is empty: a table needs at least its header row.",
        ),
        (
            {"train_data": file("train.csv", "a,b,target\r\n\r\n")},
            "'train.csv' has a header row and no rows of data.",
        ),
        (
            {"source": file("app.py", "def fit(df, base_path):\n    pass\n")},
            "no top-level function named 'train_model'",
        ),
        (
            {"source": file("app.py", "def train_model(a, b, c):\n    pass\n")},
            "must accept exactly two positional arguments, e.g. `def train_model(df, base_path):`, "
            "or `def train_model(base_path):`, but it requires 3.",
        ),
        ({"source": file("app.py", "def train_model(:\n")}, "does not parse as Python"),
        ({"training_type": "Deep"}, "training_type must be Custom, External or AutoML, not 'Deep'."),
        ({"requirements": file("requirements.txt", "./local-package\n")}, "is a local path"),
        ({"env": file(".env", "not a line\n")}, "env"),
        ({"run_name": "First\x1b[2Jtest"}, "A name cannot hold control characters (\\\\x1b)."),
    ],
)
def test_custom_run_refuses_bad_input(cast, overrides, message):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs", custom_payload(**overrides), format="multipart"
    )
    assert response.status_code == 400
    assert message in _errors(response)


def test_one_parameter_training_function_is_accepted(cast):
    experiment = make_experiment(cast.group, cast.owner)
    source = "import os\n\ndef train_model(base_path):\n    return os.environ['inputFileName']\n"
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        custom_payload(source=file("app.py", source)),
        format="multipart",
    )
    assert response.status_code == 201, response.content


def test_a_custom_run_written_on_windows_with_a_latin1_script_is_accepted(cast):
    """PowerShell's UTF-16 requirements.txt and .env, and a script with a coding line, as
    pip and Python read them; the requirements are stored in UTF-8, the script as sent."""
    experiment = make_experiment(cast.group, cast.owner)
    source = (
        b"# -*- coding: latin-1 -*-\ndef train_model(df, base_path):\n    return {'note': 'r\xe9sum\xe9'}\n"
    )
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        custom_payload(
            source=file("app.py", source),
            requirements=file("requirements.txt", "scikit-learn==1.6.1\r\n".encode("utf-16")),
            env=file(".env", "API_KEY=s3cr3t\r\n".encode("utf-16")),
        ),
        format="multipart",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["requirements"] == ["scikit-learn==1.6.1", "pandas", "pyarrow", "cloudpickle"]
    assert body["env_names"] == ["API_KEY"]
    run = TrainingRun.objects.get(experiment=experiment)
    assert (run.work_folder / "requirements.txt").read_bytes() == b"scikit-learn==1.6.1\r\n"
    assert (run.work_folder / "app.py").read_bytes() == source


def test_a_training_script_that_is_not_utf8_and_declares_nothing_is_refused(cast):
    experiment = make_experiment(cast.group, cast.owner)
    source = b"def train_model(df, base_path):\n    return {'note': 'r\xe9sum\xe9'}\n"
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        custom_payload(source=file("app.py", source)),
        format="multipart",
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["source"] == [
        "'app.py' is not UTF-8 text (line 2) and declares no other encoding, so Python could not import "
        "it. Save it as UTF-8, or declare its encoding on its first or second line, e.g. "
        "# -*- coding: latin-1 -*-"
    ]


def test_external_run_metrics_and_params_files_in_utf16_are_read(cast):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        external_payload(
            metrics=file("metrics.json", '{"auc": 0.91}'.encode("utf-16")),
            params=file("params.json", '{"modelo": "árvore"}'.encode("utf-16-le")),  # JSON needs no BOM
        ),
        format="multipart",
    )
    assert response.status_code == 201, response.content
    run = TrainingRun.objects.get()
    assert run.metrics == {"auc": 0.91} and run.params == {"logged": {"modelo": "árvore"}}


def test_external_run_needs_its_artifacts(cast):
    experiment = make_experiment(cast.group, cast.owner)
    client = api_client(cast.owner)
    ok = client.post(f"{API}/experiments/{experiment.hash}/runs", external_payload(), format="multipart")
    assert ok.status_code == 201, ok.content
    run = TrainingRun.objects.get(pk=TrainingRun.objects.get(experiment=experiment).pk)
    assert run.inputs == {
        "X_train": "X_train.csv",
        "y_train": "y_train.csv",
        "model_output": "model_output.csv",
        "model": "model.pkl",
    }
    assert run.metrics == {"auc": 0.91}
    bad = client.post(
        f"{API}/experiments/{experiment.hash}/runs",
        external_payload(
            X_train=None,
            y_train=None,
            model=None,
            model_output=file("out.txt", "x"),
            metrics=json.dumps({"auc": "high", "f1": True}),
            source=file("app.py", SCORE),
        ),
        format="multipart",
    )
    assert bad.status_code == 400
    text = _errors(bad)
    for message in (
        "Upload X_train",
        "Upload y_train",
        "Upload the fitted model file (model.pkl).",
        "'out.txt' is not a .csv or .parquet file.",
        "The metric 'auc' is \\\"high\\\", not a number.",
        "The metric 'f1' is true, not a number.",
        "source is only used by Custom runs",
    ):
        assert message in text, message


def _automl_run() -> dict:
    return {
        "run_name": "automl",
        "training_type": "AutoML",
        "train_data": file("dados.csv", "a,b,target\n1,2,0\n3,4,1\n"),
        "conf_dict": json.dumps(AUTOML_CONF),
    }


def test_a_training_function_named_for_a_run_without_one_is_refused(cast):
    experiment = make_experiment(cast.group, cast.owner)
    client = api_client(cast.owner)
    runs = f"{API}/experiments/{experiment.hash}/runs"
    external = client.post(runs, external_payload(training_reference="fit"), format="multipart")
    assert external.status_code == 400
    assert external.json()["errors"]["training_reference"] == [
        "training_reference is only used by Custom runs (an External run brings its artifacts)."
    ]
    refused = client.post(runs, {**_automl_run(), "training_reference": "fit"}, format="multipart")
    assert refused.status_code == 400
    assert refused.json()["errors"]["training_reference"] == [
        "training_reference is not used by AutoML runs: the platform supplies the training code and its "
        "environment."
    ]
    # The portal's page sends the field's default with every run: that one passes.
    default = client.post(runs, external_payload(training_reference="train_model"), format="multipart")
    assert default.status_code == 201, default.content
    assert (
        client.post(
            runs, {**_automl_run(), "training_reference": "train_model"}, format="multipart"
        ).status_code
        == 201
    )


def test_an_automl_run_runs_on_the_platforms_python_and_says_so_when_asked_another(cast, settings):
    experiment = make_experiment(cast.group, cast.owner)
    client = api_client(cast.owner)
    runs = f"{API}/experiments/{experiment.hash}/runs"
    other = "3.9" if settings.AUTOML_PYTHON != "3.9" else "3.11"
    refused = client.post(runs, {**_automl_run(), "python_version": other}, format="multipart")
    assert refused.status_code == 400
    assert refused.json()["errors"]["python_version"] == [
        f"AutoML runs use the platform's Python {settings.AUTOML_PYTHON}: leave python_version out."
    ]
    same = client.post(runs, {**_automl_run(), "python_version": settings.AUTOML_PYTHON}, format="multipart")
    assert same.status_code == 201, same.content


@pytest.mark.parametrize("field", ["X_train", "y_train", "model_output"])
def test_an_external_table_with_only_its_header_is_refused(cast, field):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        external_payload(**{field: file(f"{field}.csv", "a,b\n")}),
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["errors"][field] == [f"'{field}.csv' has a header row and no rows of data."]
    assert not TrainingRun.objects.exists()


def test_an_automl_run_on_a_header_only_table_is_refused(cast):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        {**_automl_run(), "train_data": file("dados.csv", "a,b,target\n")},
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["errors"]["train_data"] == ["'dados.csv' has a header row and no rows of data."]


@pytest.mark.parametrize("field", ["metrics", "params"])
def test_external_run_refuses_json_nested_too_deeply(cast, field):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        external_payload(**{field: "[" * 5000 + "]" * 5000}),
        format="multipart",
    )
    assert response.status_code == 400, response.content
    (message,) = response.json()["errors"][field]
    assert message.startswith(f"{field} is JSON nested too deeply") and "flatter" in message
    assert not TrainingRun.objects.exists()


@pytest.mark.parametrize(
    ("field", "text", "expected"),
    [
        ("params", '{"x": NaN}', "params cannot be stored: it contains a number too large for JSON"),
        ("params", '{"x": 1e999}', "params cannot be stored: it contains a number too large for JSON"),
        ("params", '{"\\ud800": 1}', "params cannot be stored: it contains \\ud800, a lone surrogate"),
        ("metrics", '{"\\ud800": 1}', "metrics cannot be stored: it contains \\ud800, a lone surrogate"),
    ],
)
def test_external_run_refuses_what_could_not_be_stored_or_shown(cast, field, text, expected):
    """These broke the insert (NaN, infinity in a JSON column) or every page showing the run."""
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs", external_payload(**{field: text}), format="multipart"
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"][field][0].startswith(expected)
    assert not TrainingRun.objects.exists()


def test_external_run_metrics_may_hold_nan(cast):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        external_payload(metrics='{"auc": NaN, "f1": 0.9}'),
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert TrainingRun.objects.get().metrics == {"auc": None, "f1": 0.9}


def test_external_run_metric_too_large_for_a_float_is_kept_as_null_like_infinity(cast):
    """It was stored as it came, and the run then failed with an internal error."""
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        external_payload(metrics='{"rows": 1' + "0" * 400 + ', "inf": 1e999, "f1": 0.9}'),
        format="multipart",
    )
    assert response.status_code == 201, response.content
    assert TrainingRun.objects.get().metrics == {"rows": None, "inf": None, "f1": 0.9}


def test_unsupervised_external_run_needs_no_target(cast):
    experiment = make_experiment(cast.group, cast.owner, model_type="Unsupervised")
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs", external_payload(y_train=None), format="multipart"
    )
    assert response.status_code == 201, response.content


def test_runs_of_other_groups_are_404(cast):
    experiment = make_experiment(cast.group, cast.owner)
    finished_run(experiment)
    outsider = api_client(cast.outsider)
    base = f"{API}/experiments/{experiment.hash}/runs"
    assert outsider.post(base, custom_payload(), format="multipart").status_code == 404
    for suffix in ("", "/1", "/1/status", "/1/logs", "/1/artifacts"):
        path = base + suffix
        assert outsider.get(path).status_code == 404, path
    assert api_client(cast.owner).get(f"{base}/99").status_code == 404
    assert api_client(cast.owner).get(f"{base}/99999999999").status_code == 404


# ------------------------------------------------------------------- compare and read


def test_runs_compare_sorted_by_a_metric(cast):
    experiment = make_experiment(cast.group, cast.owner)
    finished_run(experiment, number=1, metrics={"auc": 0.81, "f1": 0.5})
    finished_run(experiment, number=2, metrics={"auc": 0.93})
    finished_run(experiment, number=3, status=TrainingRun.Status.FAILED, metrics={})
    finished_run(experiment, number=4, metrics={"auc": 0.88, "f1": 0.7})
    client = api_client(cast.owner)
    base = f"{API}/experiments/{experiment.hash}/runs"
    body = client.get(f"{base}?sort=auc").json()
    assert body["metrics"] == ["auc", "f1"]
    assert [run["number"] for run in body["runs"]] == [2, 4, 1, 3]  # no auc: last
    assert [run["number"] for run in client.get(f"{base}?sort=auc&order=asc").json()["runs"]] == [1, 4, 2, 3]
    assert [run["number"] for run in client.get(f"{base}?sort=f1").json()["runs"]] == [4, 1, 3, 2]
    assert [run["number"] for run in client.get(base).json()["runs"]] == [4, 3, 2, 1]
    assert [run["number"] for run in client.get(f"{base}?status=Failed").json()["runs"]] == [3]
    wrong = client.get(f"{base}?sort=rmse")
    assert wrong.status_code == 400 and "Can't sort by 'rmse'" in _errors(wrong)
    assert client.get(f"{base}?order=up").status_code == 400


def test_runs_sorted_by_a_metric_put_those_that_did_not_succeed_after_the_succeeded_ones(cast):
    """A Failed External run keeps the metrics it was uploaded with: it led the ranking."""
    experiment = make_experiment(cast.group, cast.owner)
    succeeded, failed = TrainingRun.Status.SUCCEEDED, TrainingRun.Status.FAILED
    for number, state, auc in [
        (1, succeeded, 0.81),
        (2, failed, 0.99),
        (3, succeeded, 0.93),
        (4, TrainingRun.Status.REQUESTED, 0.5),
        (5, failed, None),
        (6, failed, 0.7),
    ]:
        finished_run(experiment, number=number, status=state, metrics={} if auc is None else {"auc": auc})
    client = api_client(cast.owner)
    base = f"{API}/experiments/{experiment.hash}/runs"

    def numbers(query):
        return [run["number"] for run in client.get(f"{base}?{query}").json()["runs"]]

    assert numbers("sort=auc&order=desc") == [3, 1, 2, 6, 4, 5]
    assert numbers("sort=auc&order=asc") == [1, 3, 4, 6, 2, 5]
    assert numbers("sort=number&order=asc") == [1, 2, 3, 4, 5, 6]  # by a run's own field: as it is


def test_status_log_and_detail(cast):
    experiment = make_experiment(cast.group, cast.owner)
    run = finished_run(
        experiment, status=TrainingRun.Status.FAILED, error_message="Bad return value: no 'X_train'"
    )
    TrainingRun.objects.filter(pk=run.pk).update(log="2026-12-02 01:00:00 hello\n")
    client = api_client(cast.owner)
    base = f"{API}/experiments/{experiment.hash}/runs/1"
    assert client.get(f"{base}/status").json() == {
        "trainingExecutionId": 1,
        "Status": "Failed",
        "Message": "Bad return value: no 'X_train'",
    }
    assert client.get(f"{base}/logs").json()["log"].endswith("hello\n")
    detail = client.get(base).json()
    assert detail["experiment_name"] == "Teste notebook" and detail["group"] == "datarisk"
    assert detail["promoted_models"] == []


def test_artifacts_zip_once_finished(cast):
    experiment = make_experiment(cast.group, cast.owner)
    finished_run(experiment)
    TrainingRun.objects.create(
        experiment=experiment,
        number=2,
        name="busy",
        training_type="Custom",
        status="Running",
        python_version="3.9",
    )
    client = api_client(cast.owner)
    busy = client.get(f"{API}/experiments/{experiment.hash}/runs/2/artifacts")
    assert busy.status_code == 409 and "Run 2 is Running" in _errors(busy)
    response = client.get(f"{API}/experiments/{experiment.hash}/runs/1/artifacts")
    assert response.status_code == 200
    assert f'filename="training-{experiment.hash}-1.zip"' in response["Content-Disposition"]
    bundle = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert sorted(bundle.namelist()) == ["metrics.json", "model.pkl", "training.log"]
    assert bundle.read("model.pkl") == b"\x80\x04K\x01."


# --------------------------------------------------------------------------- promote


def _promote(client, experiment, number, **overrides):
    payload = {
        "name": "Teste notebook promoted custom",
        "model_reference": "score",
        "source": file("app.py", SCORE),
        "schema": json.dumps({"a": 1}),
        "operation": "Sync",
        **overrides,
    }
    return client.post(
        f"{API}/experiments/{experiment.hash}/runs/{number}/promote",
        {k: v for k, v in payload.items() if v is not None},
        format="multipart",
    )


def _promote_as_version(cast, **overrides):
    model = deployed_model(cast.group, name="Scorer")
    experiment = make_experiment(cast.group, cast.owner)
    finished_run(experiment)
    response = _promote(api_client(cast.owner), experiment, 1, version_of=model.hash, **overrides)
    return model, experiment, response


def test_a_run_promoted_as_a_version_is_listed_under_its_model(cast):
    model, experiment, response = _promote_as_version(cast, name=None, operation=None)
    assert response.status_code == 201, response.content
    client = api_client(cast.owner)
    (promoted,) = client.get(f"{API}/experiments/{experiment.hash}/runs/1").json()["promoted_models"]
    version = model.all_versions().get(version=2)
    assert (promoted["hash"], promoted["version"], promoted["version_hash"]) == (model.hash, 2, version.hash)
    assert promoted["url"].endswith(f"/api/v1/models/{model.hash}/versions/2")
    assert client.get(promoted["url"]).status_code == 200  # the link leads somewhere


def test_a_version_keeps_its_models_name_and_operation_or_the_promotion_says_so(cast):
    model, _experiment, response = _promote_as_version(cast, name="Renamed", operation="Async")
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert errors["name"] == [
        f"Model '{model.hash}' is named 'Scorer' and its versions keep that name: leave name out."
    ]
    assert errors["operation"] == [f"Model '{model.hash}' is Sync: its versions are Sync too."]
    assert model.all_versions().count() == 1
    # Its own name and operation may be sent: the portal's form and the SDK send the operation.
    _model, _experiment, response = _promote_as_version(cast, name="Scorer", operation="Sync")
    assert response.status_code == 201, response.content


def test_promoting_as_a_version_of_a_deleted_model_is_a_conflict(cast):
    model = deployed_model(cast.group, name="Scorer", status=MLModel.Status.DELETED)
    experiment = make_experiment(cast.group, cast.owner)
    finished_run(experiment)
    response = _promote(api_client(cast.owner), experiment, 1, name=None, version_of=model.hash)
    assert response.status_code == 409, response.content
    assert response.json() == {
        "detail": "This model is deleted: promote the run as a new model instead.",
        "code": "conflict",
    }
    assert model.all_versions().count() == 1


@pytest.mark.parametrize("state", ["Requested", "Running", "Failed"])
def test_only_a_succeeded_run_is_promoted(cast, state):
    experiment = make_experiment(cast.group, cast.owner)
    finished_run(
        experiment, status=state, error_message="Bad return value: boom" if state == "Failed" else ""
    )
    response = _promote(api_client(cast.owner), experiment, 1)
    assert response.status_code == 409
    assert f"Run 1 of experiment 'Teste notebook' is {state}" in _errors(response)
    assert "only a Succeeded run can be promoted" in _errors(response)
    assert not MLModel.objects.exists()


@pytest.fixture
def fake_environment():
    """A complete-looking environment under a fingerprint of its own (the environments
    folder is shared by the session's tests), removed afterwards."""
    made: list[Path] = []

    def make() -> tuple[str, Path]:
        fingerprint = uuid.uuid4().hex * 2
        env = environments.environment_path(settings.ENVS_DIR, fingerprint)
        (env / "bin").mkdir(parents=True)
        (env / "bin" / "python").write_text("")
        (env / environments.MARKER_NAME).write_text("{}")
        made.append(env)
        return fingerprint, env

    yield make
    for env in made:
        shutil.rmtree(env, ignore_errors=True)
    for link in settings.ENVS_DIR.iterdir():  # the aliases promote made to them
        if link.is_symlink() and not link.exists():
            link.unlink()


def test_promote_reuses_the_runs_environment_and_remembers_the_run(cast, fake_environment):
    experiment = make_experiment(cast.group, cast.owner)
    fingerprint, env = fake_environment()
    run = finished_run(experiment, env_fingerprint=fingerprint)
    response = _promote(api_client(cast.teammate), experiment, 1)
    assert response.status_code == 201, response.content
    body = response.json()
    model = MLModel.objects.get(hash=body["hash"])
    assert model.training_run == run and model.group == cast.group
    assert model.python_version == "3.9.20"
    assert model.requirements == ["scikit-learn==1.6.1", "numpy==2.0.2"]
    assert (model.folder / "model.pkl").read_bytes() == b"\x80\x04K\x01."
    assert (model.folder / "requirements.txt").read_text().splitlines() == [
        "scikit-learn==1.6.1",
        "numpy==2.0.2",
    ]
    assert body["training_run"]["number"] == 1 and body["training_run"]["experiment"] == experiment.hash
    # The frozen set is an alias of the run's environment: the model's build reuses it.
    fingerprint = environments.requirements_fingerprint("3.9.20", model.requirements)
    alias = environments.environment_path(settings.ENVS_DIR, fingerprint)
    assert alias.is_symlink() and alias.resolve() == env.resolve()
    assert environments.is_complete(alias)
    promoted = (
        api_client(cast.owner).get(f"{API}/experiments/{experiment.hash}/runs/1").json()["promoted_models"]
    )
    assert [(m["hash"], m["name"]) for m in promoted] == [(model.hash, "Teste notebook promoted custom")]


def test_promote_with_extra_requirements_builds_a_new_set(cast, fake_environment):
    experiment = make_experiment(cast.group, cast.owner)
    fingerprint, _env = fake_environment()
    finished_run(experiment, env_fingerprint=fingerprint)
    response = _promote(
        api_client(cast.owner), experiment, 1, requirements=file("requirements.txt", "requests==2.32.3\n")
    )
    assert response.status_code == 201, response.content
    model = MLModel.objects.get(hash=response.json()["hash"])
    assert model.requirements == ["scikit-learn==1.6.1", "numpy==2.0.2", "requests==2.32.3"]


def test_promote_reads_extra_requirements_written_by_powershell(cast, fake_environment):
    experiment = make_experiment(cast.group, cast.owner)
    fingerprint, _env = fake_environment()
    finished_run(experiment, env_fingerprint=fingerprint)
    extra = file("requirements.txt", "requests==2.32.3\r\n".encode("utf-16"))
    response = _promote(api_client(cast.owner), experiment, 1, requirements=extra)
    assert response.status_code == 201, response.content
    model = MLModel.objects.get(hash=response.json()["hash"])
    assert model.requirements == ["scikit-learn==1.6.1", "numpy==2.0.2", "requests==2.32.3"]


def test_promote_numbers_the_lines_of_the_users_own_requirements(cast):
    experiment = make_experiment(cast.group, cast.owner)
    finished_run(experiment)
    response = _promote(
        api_client(cast.owner),
        experiment,
        1,
        requirements=file("requirements.txt", "requests==2.32.3\n--index-url http://x\n"),
    )
    assert response.status_code == 400, response.content
    (message,) = response.json()["errors"]["requirements"]
    assert message.startswith("Line 2: pip options such as --index-url are not allowed"), message
    assert not MLModel.objects.exists()


def test_promote_reports_every_problem_of_the_scoring_upload(cast):
    experiment = make_experiment(cast.group, cast.owner)
    finished_run(experiment)
    response = _promote(
        api_client(cast.owner),
        experiment,
        1,
        name="",
        source=file("app.py", "def predict(x):\n    pass\n"),
        schema=None,
        group="other-team",
    )
    assert response.status_code == 400
    text = _errors(response)
    assert "Give the model a name." in text
    assert "no top-level function named 'score'" in text
    assert "Sync models need a schema" in text
    assert not MLModel.objects.exists()


def test_a_bad_file_name_is_its_fields_error_and_the_other_checks_still_run(cast):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        custom_payload(
            train_data=file(".hidden.csv", "a\n1\n"),
            requirements=file("requirements.txt", "--index-url https://example.invalid/simple\n"),
        ),
        format="multipart",
    )
    assert response.status_code == 400
    body = response.json()
    errors = body.get("errors", body)
    text = json.dumps(errors)
    assert "train_data" in text and "requirements" in text, text


# ---------------------------------------------------------------------------- AutoML

AUTOML_CONF = {
    "train_data": {"file_type": "csv", "file_name": "dados.csv", "sep": ","},
    "model_flow": "classification",
    "target": "target",
    "iterations": 3,
    "stages": {"models": ["logeg", "lightgbm"]},
}


def test_automl_run_brings_the_platforms_code_and_environment(cast):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        {
            "run_name": "automl",
            "training_type": "AutoML",
            "train_data": file("dados.csv", "a,b,target\n1,2,0\n3,4,1\n"),
            "conf_dict": json.dumps(AUTOML_CONF),
        },
        format="multipart",
    )
    assert response.status_code == 201, response.content
    run = TrainingRun.objects.get(experiment=experiment)
    assert (run.training_type, run.training_reference, run.source_file) == (
        "AutoML",
        "train_model",
        "automl.py",
    )
    assert run.python_version == settings.AUTOML_PYTHON
    assert (run.work_folder / "automl.py").read_bytes() == automl.SEARCH_SCRIPT.read_bytes()
    conf = json.loads((run.work_folder / "automl_conf.json").read_text())
    assert conf["stages"]["models"] == ["logreg", "lightgbm"] and conf["iterations"] == 3
    pinned = [
        line for line in automl.REQUIREMENTS.read_text().splitlines() if line and not line.startswith("#")
    ]
    assert run.requirements[: len(pinned)] == pinned


def test_automl_run_reports_the_configurations_problems_and_unused_fields(cast):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        {
            "run_name": "automl",
            "training_type": "AutoML",
            "train_data": file("dados.csv", "a,b,label\n1,2,0\n"),
            "conf_dict": json.dumps({**AUTOML_CONF, "metric": "accuracy"}),
            "source": file("app.py", "def train_model(df, base_path):\n    pass\n"),
        },
        format="multipart",
    )
    assert response.status_code == 400
    text = _errors(response)
    assert "metric must be one of auc, precision, recall, f1, gini, ks, not 'accuracy'." in text
    assert "target: 'target' not in the training data's columns (a, b, label)." in text
    assert "source is not used by AutoML runs" in text
    missing = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        {"run_name": "automl", "training_type": "AutoML"},
        format="multipart",
    )
    assert "Give the AutoML configuration (conf.json)" in _errors(missing)
    assert "Upload the training data" in _errors(missing)


def test_automl_run_refuses_a_configuration_nested_too_deeply(cast):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs",
        {
            "run_name": "automl",
            "training_type": "AutoML",
            "train_data": file("dados.csv", "a,b,target\n1,2,0\n"),
            "conf_dict": file("conf.json", '{"a": ' * 5000 + "1" + "}" * 5000),
        },
        format="multipart",
    )
    assert response.status_code == 400, response.content
    (message,) = response.json()["errors"]["conf_dict"]
    assert message.startswith("conf_dict is JSON nested too deeply"), message
    assert not TrainingRun.objects.exists()


def test_an_automl_run_is_promoted_with_two_arguments(cast):
    experiment = make_experiment(cast.group, cast.owner)
    run = finished_run(experiment, training_type="AutoML")
    (run.artifacts_folder / "extras").mkdir()
    (run.artifacts_folder / "extras" / "schema.json").write_text('{"a": 1.5, "b": 2}')
    client = api_client(cast.owner)
    sync = client.post(
        f"{API}/experiments/{experiment.hash}/runs/1/promote",
        {"name": "Teste notebook promoted autoML", "operation": "Sync"},
        format="multipart",
    )
    assert sync.status_code == 201, sync.content
    model = MLModel.objects.get(hash=sync.json()["hash"])
    assert (model.model_reference, model.schema, model.source_file) == ("score", {"a": 1.5, "b": 2}, "app.py")
    assert (model.folder / "app.py").read_bytes() == automl.SCORE_SCRIPT.read_bytes()
    batch = client.post(
        f"{API}/experiments/{experiment.hash}/runs/1/promote",
        {"name": "Teste notebook promoted autoML", "operation": "Async"},
        format="multipart",
    )
    assert batch.status_code == 201, batch.content
    model = MLModel.objects.get(hash=batch.json()["hash"])
    assert (model.model_reference, model.input_type, model.schema) == ("score_file", "csv", None)


def test_promote_refuses_fields_it_takes_from_the_run_rather_than_dropping_them(cast):
    experiment = make_experiment(cast.group, cast.owner)
    finished_run(experiment)
    response = _promote(
        api_client(cast.owner),
        experiment,
        1,
        group="other-team",
        python_version="3.9",
        model=file("model.pkl", b"\x80\x04K\x01."),
    )
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    for field in ("group", "python_version", "model"):
        assert errors[field] == [
            f"A promoted model takes its {field} from the training run: leave {field} out."
        ]
    assert not MLModel.objects.exists()
