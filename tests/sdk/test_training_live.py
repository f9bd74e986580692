"""The SDK's training module against the real processes (`make run`: web, worker, model host).

The original training guide's calls run here as written: create_training_experiment, a
Custom run of a scikit-learn + LightGBM train_model on the breast-cancer data with
wait_complete=True, get_status, download_result, promote_model and a prediction equal to
the pipeline's own; the guide's External example — log_train in a "notebook"
environment that has scikit-learn, LightGBM and matplotlib — promoted and called; and
the guide's AutoML run, promoted with two arguments.

Slow: the first run fills uv's cache with scikit-learn, LightGBM, pandas, pyarrow and
matplotlib; a run's environment and the notebook's are built once.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
from django.conf import settings
from models_app import environments
from neomaril_codex.exceptions import ExecutionError, StateError
from neomaril_codex.model import NeomarilModel
from neomaril_codex.training import NeomarilTrainingClient, NeomarilTrainingExecution

from tests.helpers.interpreters import supported_interpreter
from tests.helpers.processes import RunningPortal
from tests.helpers.sdk import sdk_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# The training run's environment (the same pins as tests/training/test_real_runs.py, so
# uv's cache serves both), and the analyst's notebook: those, plus matplotlib for the
# guide's plot and requests for the SDK (run from sdk/src).
TRAIN_REQUIREMENTS = (
    "scikit-learn==1.6.1\nlightgbm==4.5.0\npandas==2.2.3\npyarrow==18.1.0\ncloudpickle==3.1.0\n"
)
NOTEBOOK_PYTHON = "3.10"
NOTEBOOK_REQUIREMENTS = [*TRAIN_REQUIREMENTS.split(), "numpy==2.0.2", "matplotlib==3.9.4", "requests"]

BREAST_CANCER = """
import sys
from sklearn.datasets import load_breast_cancer
X, y = load_breast_cancer(return_X_y=True, as_frame=True)
X.columns = [c.replace(" ", "_") for c in X.columns]
df = X.assign(target=y)
df.loc[df.index % 10 == 0, "mean_texture"] = None  # some missing values for the imputer
df.to_csv(sys.argv[1], index=False)
"""

# The guide's training function (its newer one-parameter form reads the file itself).
TRAIN_SOURCE = """
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.model_selection import cross_val_score
import os

def train_model(base_path):
    df = pd.read_csv(base_path+"/dados.csv")
    X = df.drop(columns=['target'])
    y = df[["target"]]

    pipe = make_pipeline(SimpleImputer(), LGBMClassifier(verbose=-1))

    auc = cross_val_score(pipe, X, y, cv=5, scoring="roc_auc")
    f_score = cross_val_score(pipe, X, y, cv=5, scoring="f1")
    pipe.fit(X, y)

    results = pd.DataFrame({"pred": pipe.predict(X), "proba": pipe.predict_proba(X)[:,1]})

    return {"X_train": X, "y_train": y, "model_output": results, "pipeline": pipe,
            "metrics": {"auc": auc.mean(), "f1_score": f_score.mean()}}
"""

# The deploying guide's scoring function.
SCORE_SOURCE = """
import json
import pickle

import pandas as pd

def score(data, base_path):
    with open(base_path+"/model.pkl", "rb") as f:
        model = pickle.load(f)

    df = pd.DataFrame(data=json.loads(data), index=[0])

    return {"pred": int(model.predict(df)[0]), "proba": float(model.predict_proba(df)[0,1])}
"""

# The original conf.json, small: two trials of logistic regressions.
AUTOML_CONF = {
    "train_data": {"file_type": "csv", "file_name": "dados.csv", "sep": ","},
    "model_flow": "classification",
    "target": "target",
    "iterations": 2,
    "metric": "auc",
    "seed": 42,
    "split_type": "stratified",
    "stages": {"models": ["logreg"], "missing": ["median"], "unbalance": ["none"]},
}

# The pipeline's own answer for one row, in the notebook environment.
PREDICT = """
import json, pickle, sys
import pandas as pd
model = pickle.load(open(sys.argv[1], "rb"))
df = pd.DataFrame(data=json.loads(sys.argv[2]), index=[0])
print(json.dumps({"pred": int(model.predict(df)[0]), "proba": float(model.predict_proba(df)[0, 1])}))
"""

# The guide's External example, unchanged but for reporting what the test checks next.
EXTERNAL_SCRIPT = """
import json
import neomaril_codex
neomaril_codex.set_log_level("INFO")

from neomaril_codex.training import NeomarilTrainingClient
import pandas as pd
from lightgbm import LGBMClassifier
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.model_selection import cross_val_score
import matplotlib.pyplot as plt

# Start the model client
client = NeomarilTrainingClient()

# Create an experiment
training = client.create_training_experiment('Teste', 'Classification', group='datarisk')

# Your variables
base_path = './samples/train/'
df = pd.read_csv(base_path+"/dados.csv")
X = df.drop(columns=['target'])
y = df[["target"]]


plt.scatter(df["mean_radius"], df["mean_texture"])

# Graph Title
plt.title("Relação entre mean_radius e mean_texture")

# Config axis
plt.xlabel("mean_radius")
plt.ylabel("mean_texture")

fig = plt.gcf()

# Plot
plt.show()

# Build a pipeline
pipe = make_pipeline(SimpleImputer(), LGBMClassifier(force_col_wise=True))

# log the model and save the metrics and model output
with training.log_train('Teste 1', X, y) as logger:
    pipe.fit(X, y)
    logger.save_model(pipe)

    logger.add_extra('./extra.txt')

    logger.save_and_add_plot(fig, 'graphic1')
    model_output = pd.DataFrame({"pred": pipe.predict(X), "proba": pipe.predict_proba(X)[:,1]})
    logger.save_model_output(model_output)

    auc = cross_val_score(pipe, X, y, cv=5, scoring="roc_auc")
    f_score = cross_val_score(pipe, X, y, cv=5, scoring="f1")
    logger.save_metric(name='auc', value=auc.mean())
    logger.save_metric(name='f1_score', value=f_score.mean())

    logger.set_python_version('3.10')

run = logger.execution
row = X.iloc[[1]]
print(json.dumps({
    "training_id": training.training_id,
    "exec_id": run.exec_id,
    "row": json.loads(row.to_json(orient="records"))[0],
    "pred": int(pipe.predict(row)[0]),
    "proba": float(pipe.predict_proba(row)[0, 1]),
}))
"""


@pytest.fixture(scope="module")
def live():
    # A short data folder, also under pytest-xdist: the model host's sockets live in it,
    # and Unix socket paths are limited to 107 bytes.
    folder = Path(tempfile.mkdtemp(prefix="nm-sdkt-"))
    portal = RunningPortal(folder / "data", extra_env={"NEOMARIL_LOGIN_RATE": "1000/min"})
    try:
        portal.wait_healthy()
        yield portal
    finally:
        portal.stop()
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def group_token(live) -> str:
    with NeomarilTrainingClient(live.admin[0], live.admin[1], live.url) as admin:
        return admin.create_group("datarisk", "Risk models")


@pytest.fixture(scope="module")
def notebook() -> Path:
    """The analyst's own environment, where the External model is fitted."""
    return environments.ensure_environment(
        interpreter=supported_interpreter(NOTEBOOK_PYTHON),
        requirements=sorted(NOTEBOOK_REQUIREMENTS),
        envs_dir=settings.ENVS_DIR,
        log=lambda line: None,
        timeout=900,
    )


def in_notebook(notebook: Path, code: str, *args: str, cwd=None, env=None) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [str(environments.env_python(notebook)), "-c", textwrap.dedent(code), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    return done


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, notebook) -> Path:
    """The analyst's folder: ./samples/train/ (data, training code, requirements) and
    ./samples/deploy/ (scoring code, schema), as in the guide."""
    root = tmp_path_factory.mktemp("notebook")
    train = root / "samples" / "train"
    deploy = root / "samples" / "deploy"
    train.mkdir(parents=True)
    deploy.mkdir(parents=True)
    in_notebook(notebook, BREAST_CANCER, str(train / "dados.csv"))
    (train / "app.py").write_text(TRAIN_SOURCE)
    (train / "requirements.txt").write_text(TRAIN_REQUIREMENTS)
    (deploy / "app.py").write_text(SCORE_SOURCE)
    with open(train / "dados.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    example = {name: float(value) for name, value in rows[1].items() if name != "target"}
    (deploy / "schema.json").write_text(json.dumps(example))
    (root / "extra.txt").write_text("Trained on the breast-cancer data.\n")
    monitoring = root / "samples" / "monitoring"
    monitoring.mkdir()
    (monitoring / "preprocess.py").write_text(MONITORING_PREPROCESS)
    (monitoring / "configuration.json").write_text(json.dumps(MONITORING_CONFIGURATION))
    (monitoring / "requirements.txt").write_text("")
    automl = root / "samples" / "autoML"
    automl.mkdir()
    shutil.copy(train / "dados.csv", automl / "dados.csv")
    (automl / "conf.json").write_text(json.dumps(AUTOML_CONF))
    return root


@pytest.fixture
def env(monkeypatch, live, workdir, group_token):
    """The guide's setup: NEOMARIL_URL, NEOMARIL_USER, NEOMARIL_PASSWORD, the group token,
    and the analyst's folder as the working directory."""
    return sdk_env(monkeypatch, workdir, live, NEOMARIL_GROUP_TOKEN=group_token)


# The guide's monitoring files: the preprocess turns one recorded call (raw JSON) into
# features; the SHAP function here is a linear stand-in (the shap package is not needed).
MONITORING_PREPROCESS = """
import json
import pandas as pd


def parse(input, output):
    given = json.loads(input)
    answers = json.loads(output)
    rows = given if isinstance(given, list) else [given]
    return pd.DataFrame(rows), pd.DataFrame(answers if isinstance(answers, list) else [answers])


def get_shap(features, model_path):
    return (features - features.mean()).abs()
"""
MONITORING_CONFIGURATION = {
    "Period": "Day",
    "TrainData": {"TrainDateRef": "2023-01-15"},
    "InputCols": ["mean_radius", "mean_texture"],
    "OutputCols": ["pred"],
}


def test_custom_training_then_promote_as_the_guide_does(env, workdir, notebook):
    from neomaril_codex.training import NeomarilTrainingClient

    # Start the client
    training_client = NeomarilTrainingClient()

    # fmt: off
    # Creating a new training experiment
    training = training_client.create_training_experiment(
        experiment_name='Teste notebook', # Experiment name, this is how you find your model in MLFLow
        model_type='Classification', # Model type. Can be Classification, Regression or Unsupervised
        group='datarisk' # This is the default group. Create a new one when using for a new project
    )

    # With the experiment class we can create multiple model runs
    PATH = './samples/train/'

    run1 = training.run_training(
        run_name='First test', # Run name
        train_data=PATH+'dados.csv', # Path to the file with training data
        training_type='Custom', # Training type. Can be External, Custom or AutoML
        source_file=PATH+'app.py', # Path of the source file
        requirements_file=PATH+'requirements.txt', # Path of the requirements file,
        #env=PATH+'.env'  #  File for env variables (this will be encrypted in the server)
        #extra_files=[PATH+'utils.py'], # List with extra files paths that should be uploaded along (they will be all in the same folder)
        training_reference='train_model', # The name of the entrypoint function that is going to be called inside the source file
        python_version='3.9', # Can be 3.8 to 3.10
        wait_complete=True
    )
    # fmt: on

    assert isinstance(run1, NeomarilTrainingExecution)
    assert run1.get_status() == {"trainingExecutionId": run1.exec_id, "Status": "Succeeded", "Message": None}
    data = run1.execution_data
    assert data["run_name"] == "First test" and data["python_full_version"].startswith("3.9.")
    assert set(data["metrics"]) == {"auc", "f1_score"} and 0.9 < data["metrics"]["auc"] <= 1.0
    assert "lightgbm==4.5.0" in data["frozen_requirements"].splitlines()
    assert [row["number"] for row in training.compare("auc")] == [run1.exec_id]

    saved = run1.download_result()
    assert saved == f"training-{training.training_id}-{run1.exec_id}.zip"
    with zipfile.ZipFile(saved) as bundle:
        assert set(bundle.namelist()) >= {
            "model.pkl",
            "X_train.parquet",
            "y_train.parquet",
            "model_output.parquet",
            "metrics.json",
            "params.json",
            "requirements.frozen.txt",
            "training.log",
        }
        pipeline = Path(bundle.extract("model.pkl", workdir / "custom-result"))

    # fmt: off
    PATH = './samples/deploy/'
    # Promoting a custom training execution
    model = run1.promote_model('Teste notebook promoted custom', # model_name
                                    'score', # name of the scoring function
                                    PATH+'app.py', # Path of the source file
                                    schema=PATH+'schema.json', # Path of the schema file, but it could be a dict (only required for Sync models)
        #                           env=PATH+'.env'  #  File for env variables (this will be encrypted in the server)
        #                           extra_files=[PATH+'utils.py'], # List with extra files paths that should be uploaded along (they will be all in the same folder)
                                    operation="Sync" # Can be Sync or Async
    )
    # fmt: on

    assert isinstance(model, NeomarilModel) and model.status() == "Deployed"
    row = json.loads((workdir / "samples" / "deploy" / "schema.json").read_text())
    expected = json.loads(in_notebook(notebook, PREDICT, str(pipeline), json.dumps(row)).stdout)
    answer = model.predict(row)
    assert answer["pred"] == expected["pred"]
    assert answer["proba"] == pytest.approx(expected["proba"], rel=1e-9)
    assert "Reusing environment" in model.get_logs()  # promote reused the run's environment
    assert [m["hash"] for m in run1.execution_info()["promoted_models"]] == [model.model_hash]

    # fmt: off
    PATH = './samples/monitoring/'
    # Registering the monitoring of the promoted model (its run is the reference)
    model.register_monitoring('parse', # name of the preprocess function
                              'get_shap', # name of the SHAP function
                              configuration_file=PATH+'configuration.json', # Path of the configuration file, but it could be a dict
                              preprocess_file=PATH+'preprocess.py', # Path of the preprocess script
                              requirements_file=PATH+'requirements.txt' # Path of the requirements file
    )
    # fmt: on
    assert model.wait_monitoring(timeout=600)["status"] == "Validated"
    with open(workdir / "samples" / "train" / "dados.csv", newline="") as f:
        rows = [
            {k: (float(v) if v else None) for k, v in r.items() if k != "target"} for r in csv.DictReader(f)
        ]
    for one in rows:  # the training data itself, a row per call as the guide's score takes it
        model.predict(one)
    time.sleep(2)  # the recorder writes every 0.5 s
    period = model.run_monitoring(wait=True, timeout=600)
    assert period["status"] == "Succeeded" and period["rows"] == len(rows) + 1  # and the call above
    assert period["drift_status"] == "stable" and period["average_psi"] < 0.01
    assert {c["column"] for c in period["columns"]} == {"mean_radius", "mean_texture", "pred"}
    assert all(c["mean_abs_shap"] > 0 for c in period["columns"] if c["role"] == "input")
    assert model.monitoring_periods()[0]["id"] == period["id"]


def test_external_training_with_log_train_then_promote(env, live, workdir, notebook):
    script_env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "DJANGO_"))},
        "PYTHONPATH": str(ROOT / "sdk" / "src"),
        "MPLBACKEND": "Agg",
    }
    done = in_notebook(notebook, EXTERNAL_SCRIPT, cwd=workdir, env=script_env)
    reported = json.loads(done.stdout.strip().splitlines()[-1])
    # No requirements were set: they were generated from the pickled pipeline's modules.
    generated = [line for line in done.stderr.splitlines() if "generated one from the modules" in line]
    assert len(generated) == 1, done.stderr
    assert "lightgbm==4.5.0" in generated[0] and "scikit-learn==1.6.1" in generated[0]

    client = NeomarilTrainingClient()
    training = client.get_training(reported["training_id"], "datarisk")
    assert (training.experiment_name, training.model_type) == ("Teste", "Classification")
    run = training.get_training_execution(reported["exec_id"]).wait_ready(timeout=900)
    data = run.execution_data
    assert (data["training_type"], data["python_full_version"][:5]) == ("External", "3.10.")
    assert set(data["metrics"]) == {"auc", "f1_score"}
    kept = {artifact["name"] for artifact in data["artifacts"]}
    assert {"model.pkl", "X_train.parquet", "y_train.parquet", "model_output.parquet"} <= kept
    # The SDK uploaded the plot and the extra file with the run.
    assert sorted(data["files"]["extra"]) == ["extra.txt", "graphic1.png"]

    PATH = "./samples/deploy/"
    model = run.promote_model(
        "Teste notebook promoted external",
        "score",
        PATH + "app.py",
        schema=PATH + "schema.json",
        operation="Sync",
    )
    answer = model.predict(reported["row"])
    assert answer["pred"] == reported["pred"]
    assert answer["proba"] == pytest.approx(reported["proba"], rel=1e-9)


def test_automl_training_then_promote_with_two_arguments(env, workdir):
    training_client = NeomarilTrainingClient()
    # fmt: off
    training = training_client.create_training_experiment('Teste notebook Training AutoML', # Experiment name
                                                          'Classification', # Model type. Can be Classification, Regression or Unsupervised
                                                          group='datarisk' # This is the default group. Create a new one when using for a new project
                                                          )

    PATH = './samples/autoML/'

    run2 = training.run_training(
        run_name='First test', # Run name
        training_type='AutoML', # Training type. Can be External, Custom or AutoML
        train_data=PATH+'dados.csv', # Path to the file with training data
        conf_dict=PATH+'conf.json', # Path of the configuration file
        wait_complete=True
    )

    # Promoting an AutoML training execution
    model = run2.promote_model('Teste notebook promoted autoML', # model_name
                               operation="Sync" # Can be Sync or Async
    )
    # fmt: on

    data = run2.execution_data
    assert data["training_type"] == "AutoML" and {"auc", "gini", "ks"} <= set(data["metrics"])
    assert model.status() == "Deployed"
    example = model.schema  # the first row of X_train
    assert "target" not in example and "mean_radius" in example
    answer = model.predict(example)
    assert answer["pred"] in (0, 1) and 0.0 <= answer["proba"] <= 1.0


def test_promoting_a_failed_run_is_refused_with_its_state(env, workdir):
    client = NeomarilTrainingClient()
    training = client.create_training_experiment("Broken", "Classification", group="datarisk")
    (workdir / "broken.py").write_text("def train_model(df, base_path):\n    raise KeyError('target')\n")
    PATH = "./samples/train/"
    with pytest.raises(ExecutionError) as failed:
        training.run_training(
            "broken",
            train_data=PATH + "dados.csv",
            source_file="broken.py",
            requirements_file=PATH + "requirements.txt",
            python_version="3.9",
            wait_complete=True,
        )
    assert "KeyError: 'target'" in str(failed.value) and "--- end of its log ---" in str(failed.value)
    run = training.get_training_execution()
    assert run.get_status()["Status"] == "Failed" and "KeyError" in run.get_status()["Message"]
    with pytest.raises(StateError) as refused:
        run.promote_model("nope", "score", "./samples/deploy/app.py", schema={"x": 1})
    assert refused.value.status_code == 409
    assert str(refused.value).startswith(f"Run {run.exec_id} of experiment 'Broken' is Failed")
