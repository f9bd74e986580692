"""Real training runs: the real task, real uv environments, the user's code in the sandbox.

Slow: the first run downloads scikit-learn, LightGBM, pandas and pyarrow into uv's cache.
The environment of each Python version is built once (by the fixture, exactly as a run
builds it), so every run here reuses it.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from django.conf import settings

from models_app import environments
from models_app import tasks as model_tasks
from models_app.models import MLModel
from tests.helpers.clients import api_client
from tests.helpers.interpreters import run_with, supported_interpreter
from tests.helpers.training import make_experiment
from tests.helpers.uploads import file
from training import services, tasks
from training.models import TrainingRun

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

API = "/api/v1/training"
# Versions with wheels for 3.9 up to 3.13.
REQUIREMENTS = "scikit-learn==1.6.1\nlightgbm==4.5.0\npandas==2.2.3\npyarrow==18.1.0\ncloudpickle==3.1.0\n"
NEWEST_PYTHON = "3.13"

# The guide's training function: scikit-learn + LightGBM on the breast-cancer data.
TWO_PARAMETER_SOURCE = textwrap.dedent(
    """
    import os

    import pandas as pd
    from lightgbm import LGBMClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline


    def train_model(df, base_path):
        assert os.environ["inputFileName"] == "dados.csv"
        assert os.environ["API_KEY"] == "s3cr3t"
        X = df.drop(columns=["target"])
        y = df[["target"]]
        pipe = make_pipeline(SimpleImputer(), LGBMClassifier(n_estimators=30, verbose=-1))
        auc = cross_val_score(pipe, X, y["target"], cv=3, scoring="roc_auc")
        pipe.fit(X, y["target"])
        results = pd.DataFrame({"pred": pipe.predict(X), "proba": pipe.predict_proba(X)[:, 1]})
        with open(os.path.join(base_path, "notes.txt"), "w") as f:
            f.write("trained on %d rows" % len(X))
        print("cross-validated AUC", auc.mean())
        return {"X_train": X, "y_train": y, "model_output": results, "pipeline": pipe,
                "metrics": {"auc": auc.mean(), "n_rows": len(X)}, "extra": ["notes.txt"]}
    """
)

# The older contract: the function reads the file itself.
ONE_PARAMETER_SOURCE = textwrap.dedent(
    """
    import os

    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler


    def train_model(base_path):
        df = pd.read_parquet(os.path.join(base_path, os.environ["inputFileName"])).fillna(0)
        X, y = df.drop(columns=["target"]), df["target"]
        pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)).fit(X, y)
        proba = pipe.predict_proba(X)[:, 1]
        return {"X_train": X, "y_train": y.values, "model_output": proba, "pipeline": pipe,
                "metrics": {"auc_train": roc_auc_score(y, proba)}}
    """
)

SCORE_SOURCE = textwrap.dedent(
    """
    import json
    import os

    import cloudpickle
    import pandas as pd

    with open(os.path.join(os.path.dirname(__file__), "model.pkl"), "rb") as f:
        MODEL = cloudpickle.load(f)


    def score(data, base_path):
        df = pd.DataFrame([json.loads(data)])
        return {"pred": int(MODEL.predict(df)[0]), "proba": float(MODEL.predict_proba(df)[0, 1])}
    """
)

BREAST_CANCER = textwrap.dedent(
    """
    import sys
    from sklearn.datasets import load_breast_cancer
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    X.columns = [c.replace(" ", "_") for c in X.columns]
    df = X.assign(target=y)
    df.loc[df.index % 10 == 0, "mean_texture"] = None  # 10 % missing, for params
    if sys.argv[1].endswith(".parquet"):
        df.to_parquet(sys.argv[1], index=False)
    else:
        df.to_csv(sys.argv[1], index=False)
    """
)


def _environment(version: str) -> Path:
    lines = services.with_platform_requirements(sorted(REQUIREMENTS.split()))
    return environments.ensure_environment(
        interpreter=supported_interpreter(version),
        requirements=lines,
        envs_dir=settings.ENVS_DIR,
        log=lambda line: None,
        timeout=900,
    )


def _in_env(env: Path, code: str, *args: str) -> str:
    return run_with(environments.env_python(env), code, *args)


@pytest.fixture(scope="module")
def env39(tmp_path_factory, django_db_blocker):
    return _environment("3.9")


@pytest.fixture(scope="module")
def data_files(env39, tmp_path_factory):
    folder = tmp_path_factory.mktemp("data")
    csv, parquet = folder / "dados.csv", folder / "dados.parquet"
    _in_env(env39, BREAST_CANCER, str(csv))
    _in_env(env39, BREAST_CANCER, str(parquet))
    return {"csv": csv, "parquet": parquet}


def _start(cast, experiment, **payload) -> TrainingRun:
    body = {
        "run_name": "First test",
        "training_type": "Custom",
        "python_version": "3.9",
        "training_reference": "train_model",
        "requirements": file("requirements.txt", REQUIREMENTS),
        **payload,
    }
    body = {key: value for key, value in body.items() if value is not None}
    response = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs", body, format="multipart"
    )
    assert response.status_code == 201, response.json()
    return TrainingRun.objects.get(experiment=experiment, number=response.json()["number"])


def _run(run: TrainingRun, expected: str = "Succeeded") -> TrainingRun:
    assert tasks.run_training(run.pk) == expected, TrainingRun.objects.get(pk=run.pk).log
    run.refresh_from_db()
    return run


def _read_tables(env: Path, run: TrainingRun) -> dict:
    code = """
        import json, sys
        import pandas as pd
        out = {}
        for name in ("X_train", "y_train", "model_output"):
            df = pd.read_parquet(sys.argv[1] + "/" + name + ".parquet")
            out[name] = {"shape": list(df.shape), "columns": list(df.columns)[:3]}
        print(json.dumps(out))
    """
    return json.loads(_in_env(env, code, str(run.artifacts_folder)))


def test_custom_run_two_parameter_contract_on_csv(cast, env39, data_files):
    experiment = make_experiment(cast.group, cast.owner)
    run = _start(
        cast,
        experiment,
        train_data=file("dados.csv", data_files["csv"].read_bytes()),
        source=file("app.py", TWO_PARAMETER_SOURCE),
        env=file(".env", "API_KEY=s3cr3t\n"),
    )
    run = _run(run)
    assert "Reusing environment" in run.log
    assert "cross-validated AUC" in run.log  # the user's prints reach the log
    assert run.metrics["auc"] > 0.95 and run.metrics["n_rows"] == 569
    names = [entry["name"] for entry in run.artifacts]
    assert names == [
        "model.pkl",
        "X_train.parquet",
        "y_train.parquet",
        "model_output.parquet",
        "metrics.json",
        "params.json",
        "requirements.frozen.txt",
        "extras/notes.txt",
    ]
    assert (run.artifacts_folder / "extras" / "notes.txt").read_text() == "trained on 569 rows"
    assert json.loads((run.artifacts_folder / "metrics.json").read_text()) == run.metrics
    tables = _read_tables(env39, run)
    assert tables["X_train"]["shape"] == [569, 30]
    assert tables["y_train"] == {"shape": [569, 1], "columns": ["target"]}
    assert tables["model_output"] == {"shape": [569, 2], "columns": ["pred", "proba"]}
    params = run.params
    assert params["shape"] == {"rows": 569, "columns": 30}
    assert params["missing"] == {"mean_texture": pytest.approx(0.1011, abs=1e-3)}
    assert [step["name"] for step in params["pipeline"]["steps"]] == ["simpleimputer", "lgbmclassifier"]
    assert params["pipeline"]["steps"][1]["params"]["n_estimators"] == 30
    proportions = params["target"]["values"]
    assert params["target"]["kind"] == "proportions" and sum(proportions.values()) == pytest.approx(1)
    assert proportions["1"] == pytest.approx(357 / 569, abs=1e-3)
    assert "lightgbm==4.5.0" in run.frozen_requirements.splitlines()
    assert run.summary["contract"] == "df, base_path"
    assert run.python_full_version.startswith("3.9.")

    # Promote: same environment (no build), the model answers like the pipeline.
    promoted = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs/{run.number}/promote",
        {
            "name": "Teste notebook promoted custom",
            "model_reference": "score",
            "source": file("app.py", SCORE_SOURCE),
            "schema": file("schema.json", _first_row(env39, data_files["csv"])),
            "operation": "Sync",
        },
        format="multipart",
    )
    assert promoted.status_code == 201, promoted.json()
    model = MLModel.objects.get(hash=promoted.json()["hash"])
    model_tasks.build_model(model.builds.get().pk)
    model.refresh_from_db()
    build_log = model.builds.get().log
    assert model.status == "Deployed", build_log
    assert "Reusing environment" in build_log and "Installing" not in build_log
    expected = json.loads(
        _in_env(
            env39,
            """
            import json, sys, cloudpickle, pandas as pd
            model = cloudpickle.load(open(sys.argv[1], "rb"))
            row = pd.DataFrame([json.loads(sys.argv[2])])
            print(json.dumps({"pred": int(model.predict(row)[0]), "proba": float(model.predict_proba(row)[0, 1])}))
            """,
            str(run.artifacts_folder / "model.pkl"),
            json.dumps(model.schema),
        )
    )
    assert model.smoke_result == expected


def _first_row(env: Path, csv: Path) -> str:
    code = """
        import sys, pandas as pd
        print(pd.read_csv(sys.argv[1]).drop(columns=["target"]).iloc[[0]].to_json(orient="records")[1:-1])
    """
    return _in_env(env, code, str(csv))


def test_custom_run_one_parameter_contract_on_parquet_with_the_newest_python(cast, data_files):
    newest = _environment(NEWEST_PYTHON)
    experiment = make_experiment(cast.group, cast.owner)
    run = _start(
        cast,
        experiment,
        python_version=NEWEST_PYTHON,
        train_data=file("dados.parquet", data_files["parquet"].read_bytes()),
        source=file("app.py", ONE_PARAMETER_SOURCE),
    )
    run = _run(run)
    assert run.python_full_version.startswith(NEWEST_PYTHON + ".")
    assert run.metrics["auc_train"] > 0.95
    assert run.summary["contract"] == "base_path"
    tables = _read_tables(newest, run)
    assert tables["y_train"]["shape"] == [569, 1] and tables["model_output"]["shape"] == [569, 1]
    assert [step["name"] for step in run.params["pipeline"]["steps"]] == [
        "standardscaler",
        "logisticregression",
    ]


BAD_CONTRACTS = {
    "missing key": (
        "def train_model(df, base_path):\n    return {'X_train': df, 'y_train': df['target'], 'pipeline': 1,"
        " 'metrics': {}}\n",
        "model_output",
    ),
    "not a dict": ("def train_model(df, base_path):\n    return [1, 2]\n", "dict"),
    "non-numeric metric": (
        "def train_model(df, base_path):\n    return {'X_train': df, 'y_train': df['target'], "
        "'model_output': df['target'], 'pipeline': 1, 'metrics': {'auc': 'high'}}\n",
        "auc",
    ),
    "exception": (
        "def train_model(df, base_path):\n    raise ValueError('no convergence')\n",
        "no convergence",
    ),
    "rows": (
        "def train_model(df, base_path):\n    return {'X_train': df, 'y_train': df['target'][:10], "
        "'model_output': df['target'], 'pipeline': 1, 'metrics': {}}\n",
        "569",
    ),
}


def test_each_bad_contract_fails_with_its_message(cast, env39, data_files):
    experiment = make_experiment(cast.group, cast.owner)
    for case, (source, needle) in BAD_CONTRACTS.items():
        run = _start(
            cast,
            experiment,
            run_name=case,
            train_data=file("dados.csv", data_files["csv"].read_bytes()),
            source=file("app.py", source),
        )
        run = _run(run, expected="Failed")
        assert needle in run.error_message, (case, run.error_message)
        assert run.artifacts == [] and not run.artifacts_folder.exists()
    exception_run = TrainingRun.objects.get(experiment=experiment, name="exception")
    assert "Traceback" in exception_run.log and "ValueError: no convergence" in exception_run.log
    assert (
        exception_run.error_message
        == "The training function 'train_model' raised: ValueError: no convergence"
    )


def test_a_training_that_runs_too_long_is_stopped(cast, env39, data_files, settings):
    settings.TRAINING_TIMEOUT = 3
    experiment = make_experiment(cast.group, cast.owner)
    run = _start(
        cast,
        experiment,
        train_data=file("dados.csv", data_files["csv"].read_bytes()),
        source=file("app.py", "import time\n\ndef train_model(df, base_path):\n    time.sleep(60)\n"),
    )
    run = _run(run, expected="Failed")
    assert run.error_message == "The training timed out after 3 s and was stopped."
    assert run.duration.total_seconds() < 30


def test_external_run_then_promote(cast, env39, data_files, tmp_path):
    # What log_train sends: the tables and a model fitted outside the platform.
    _in_env(
        env39,
        """
        import sys, cloudpickle, pandas as pd
        from sklearn.linear_model import LogisticRegression
        df = pd.read_csv(sys.argv[1]).fillna(0)
        X, y = df.drop(columns=["target"]), df[["target"]]
        model = LogisticRegression(max_iter=3000).fit(X, y["target"])
        X.to_parquet(sys.argv[2] + "/X_train.parquet", index=False)
        y.to_csv(sys.argv[2] + "/y_train.csv", index=False)
        pd.DataFrame({"proba": model.predict_proba(X)[:, 1]}).to_csv(sys.argv[2] + "/model_output.csv", index=False)
        cloudpickle.dump(model, open(sys.argv[2] + "/model.pkl", "wb"))
        """,
        str(data_files["csv"]),
        str(tmp_path),
    )
    experiment = make_experiment(cast.group, cast.owner, name="External")
    run = _start(
        cast,
        experiment,
        training_type="External",
        run_name="Trained on a laptop",
        training_reference=None,
        X_train=file("X_train.parquet", (tmp_path / "X_train.parquet").read_bytes()),
        y_train=file("y_train.csv", (tmp_path / "y_train.csv").read_bytes()),
        model_output=file("model_output.csv", (tmp_path / "model_output.csv").read_bytes()),
        model=file("model.pkl", (tmp_path / "model.pkl").read_bytes()),
        metrics=json.dumps({"auc": 0.97}),
        params=json.dumps({"max_iter": 3000}),
        extra=[file("roc.png", b"\x89PNG fake")],
    )
    run = _run(run)
    assert (run.artifacts_folder / "extras" / "roc.png").read_bytes() == b"\x89PNG fake"
    assert run.metrics == {"auc": 0.97}
    assert run.params["logged"] == {"max_iter": 3000}
    assert run.params["pipeline"]["class"].endswith("LogisticRegression")
    assert (run.artifacts_folder / "model.pkl").read_bytes() == (tmp_path / "model.pkl").read_bytes()
    promoted = api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs/1/promote",
        {
            "name": "Promoted external",
            "model_reference": "score",
            "source": file("app.py", SCORE_SOURCE),
            "schema": _first_row(env39, data_files["csv"]).replace("null", "0"),
            "operation": "Sync",
        },
        format="multipart",
    )
    assert promoted.status_code == 201, promoted.json()
    model = MLModel.objects.get(hash=promoted.json()["hash"])
    model_tasks.build_model(model.builds.get().pk)
    model.refresh_from_db()
    assert model.status == "Deployed", model.builds.get().log
    assert set(model.smoke_result) == {"pred", "proba"}


def test_an_external_model_file_that_will_not_load_fails_the_run_without_blaming_the_data(cast, env39):
    experiment = make_experiment(cast.group, cast.owner, name="External")
    run = _start(
        cast,
        experiment,
        training_type="External",
        run_name="Not a pickle",
        training_reference=None,
        X_train=file("X_train.csv", "a,b\n1,2\n3,4\n"),
        y_train=file("y_train.csv", "target\n0\n1\n"),
        model_output=file("model_output.csv", "pred\n0\n1\n"),
        model=file("model.pkl", b"not a pickle"),
        metrics=json.dumps({"auc": 0.9}),
    )
    run = _run(run, expected="Failed")
    assert run.error_message.startswith(
        "The model file (model.pkl) could not be loaded in this environment (are its requirements those it "
        "was trained with?): UnpicklingError"
    ), run.error_message
    assert "training data" not in run.error_message
