"""The training harness (runner kind "train"): real uv environment, real sandbox, no mocks.

One environment with scikit-learn, LightGBM, pandas, pyarrow and cloudpickle is built
for the session the way the platform builds one (uv's cache makes later builds quick).
The platform's own virtualenv has no pyarrow, so artifacts are read back by a small
script run in that environment. Slow: each run starts a sandboxed interpreter that
imports pandas and pyarrow (about a minute in all once the environment exists).
"""

from __future__ import annotations

import json
import struct
import subprocess
import textwrap
from pathlib import Path

import pytest

from models_app.runtime.oneshot import RunResult, run_oneshot
from models_app.runtime.sandbox import HARNESS_PATH, RUNNER_PATH, Limits, UserCode, build_runner_env
from tests.helpers.interpreters import supported_interpreter

pytestmark = pytest.mark.slow

LIMITS = Limits(memory_mb=8192, processes=512, disk_mb=2048, tmp_mb=512)
ROWS, BENIGN, BLANKED = 569, 357, 57  # breast cancer: rows, target == 1, "mean radius" blanked

MAKE_DATA = textwrap.dedent(
    """
    import pickle, sys
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_breast_cancer
    from sklearn.linear_model import LogisticRegression

    folder = sys.argv[1]
    data = load_breast_cancer(as_frame=True).frame
    data.loc[data.index[:57], "mean radius"] = np.nan
    data.to_csv(folder + "/data.csv", index=False)
    data.to_parquet(folder + "/data.parquet", index=False)

    X = data[["mean texture", "mean area", "mean smoothness"]]
    y = data[["target"]]
    model = LogisticRegression(max_iter=2000).fit(X, y["target"])
    output = pd.DataFrame({"proba": model.predict_proba(X)[:, 1]})
    with open(folder + "/external_model.pkl", "wb") as f:
        pickle.dump(model, f)
    for name, frame in (("X_train", X), ("y_train", y), ("model_output", output)):
        frame.to_csv(folder + "/" + name + ".csv", index=False)
        frame.to_parquet(folder + "/" + name + ".parquet", index=False)
    """
)

READ_BACK = textwrap.dedent(
    """
    import json, os, pickle, sys
    import numpy as np
    import pandas as pd

    out, check = sys.argv[1], sys.argv[2]
    info = {}
    frames = {}
    for name in ("X_train", "y_train", "model_output"):
        path = os.path.join(out, name + ".parquet")
        if os.path.exists(path):
            frames[name] = df = pd.read_parquet(path)
            info[name] = {"shape": list(df.shape), "columns": list(df.columns)}
    if check != "none":
        # Here, outside base_path, the training script is not importable.
        with open(os.path.join(out, "model.pkl"), "rb") as f:
            model = pickle.load(f)
        X = frames["X_train"]
        if check == "proba":
            info["proba_matches"] = bool(
                np.allclose(model.predict_proba(X)[:, 1], frames["model_output"].iloc[:, 0])
            )
        else:
            info["predict"] = [float(v) for v in model.predict(X)[:3]]
    print(json.dumps(info))
    """
)


# -------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def datasets(training_python, tmp_path_factory) -> Path:
    """Breast cancer data (csv and parquet) and an externally trained model with its tables."""
    folder = tmp_path_factory.mktemp("training-data")
    subprocess.run([str(training_python), "-c", MAKE_DATA, str(folder)], check=True, timeout=120)
    return folder


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    """A run's folder: base_path (the user's files) and out (the artifacts), both writable."""
    (tmp_path / "base").mkdir()
    (tmp_path / "out").mkdir()
    return tmp_path


def write_app(run_dir: Path, code: str) -> Path:
    source = run_dir / "base" / "app.py"
    source.write_text(textwrap.dedent(code))
    return source


def train(
    python: Path,
    run_dir: Path,
    *,
    source: Path | None = None,
    data_file: str = "data.csv",
    model_type: str = "Classification",
    mode: str = "custom",
    inputs: dict | None = None,
) -> RunResult:
    spec = {
        "mode": mode,
        "base_path": str(run_dir / "base"),
        "data_file": data_file,
        "out_dir": str(run_dir / "out"),
        "model_type": model_type,
    }
    if inputs is not None:
        spec["inputs"] = inputs
    code = UserCode(python=python, env={}, cwd=run_dir / "base", writable=run_dir, limits=LIMITS)
    return run_oneshot(
        code,
        source=str(source) if source else "",
        entrypoint="train_model" if source else "",
        kind="train",
        args=[json.dumps(spec)],
        timeout=120,
    )


def read_back(python: Path, run_dir: Path, check: str = "none") -> dict:
    out = run_dir / "out"
    proc = subprocess.run(
        [str(python), "-c", READ_BACK, str(out), check],
        capture_output=True,
        text=True,
        cwd=out,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def artifacts(run_dir: Path) -> set[str]:
    return {p.name for p in (run_dir / "out").iterdir()}


def copy_data(datasets: Path, run_dir: Path, name: str) -> None:
    (run_dir / "base" / name).write_bytes((datasets / name).read_bytes())


# ------------------------------------------------------------------ custom: df, base_path

LGBM_SOURCE = """
    import os

    import numpy as np
    from lightgbm import LGBMClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline


    def train_model(df, base_path):
        X = df.drop(columns=["target"])
        y = df["target"]
        model = make_pipeline(SimpleImputer(), LGBMClassifier(n_estimators=20, num_leaves=7, verbose=-1))
        model.fit(X, y)
        proba = model.predict_proba(X)[:, 1]
        with open(os.path.join(base_path, "report.txt"), "w") as f:
            f.write(os.environ["inputFileName"])
        return {
            "X_train": X,
            "y_train": y,
            "model_output": proba,
            "pipeline": model,
            "metrics": {"auc": roc_auc_score(y, proba), "rows": np.int64(len(X)), "half": np.float32(0.5)},
            "extra": ["report.txt"],
        }
"""


@pytest.mark.parametrize("data_file", ["data.csv", "data.parquet"])
def test_two_parameter_contract_trains_and_saves_every_artifact(
    training_python, datasets, run_dir, data_file
):
    copy_data(datasets, run_dir, data_file)
    result = train(training_python, run_dir, source=write_app(run_dir, LGBM_SOURCE), data_file=data_file)
    assert result.ok, result
    summary = result.result
    assert summary["contract"] == "df, base_path"
    assert summary["model_saved_with"] == "cloudpickle"
    assert summary["shapes"] == {"X_train": [ROWS, 30], "y_train": [ROWS, 1], "model_output": [ROWS, 1]}
    assert summary["metrics"]["auc"] > 0.97
    assert summary["metrics"]["rows"] == ROWS and summary["metrics"]["half"] == 0.5
    assert summary["extras"] == ["report.txt"]
    assert (run_dir / "base" / "report.txt").read_text() == data_file  # inputFileName was set
    assert summary["warnings"] == []

    params = summary["params"]
    assert params["shape"] == {"rows": ROWS, "columns": 30}
    assert params["columns"][0] == "mean radius" and len(params["columns"]) == 30
    assert params["missing"] == {"mean radius": round(BLANKED / ROWS, 4)}
    assert params["pipeline"]["class"] == "sklearn.pipeline.Pipeline"
    assert [step["name"] for step in params["pipeline"]["steps"]] == ["simpleimputer", "lgbmclassifier"]
    lgbm = params["pipeline"]["steps"][1]
    assert lgbm["class"] == "lightgbm.sklearn.LGBMClassifier"
    assert lgbm["params"]["n_estimators"] == 20 and lgbm["params"]["num_leaves"] == 7
    assert params["pipeline"]["steps"][0]["params"]["strategy"] == "mean"
    assert params["pipeline"]["steps"][0]["params"]["missing_values"] == "nan"  # not JSON: its repr
    target = params["target"]
    assert target["kind"] == "proportions"
    assert set(target["values"]) == {"0", "1"}
    assert target["values"]["1"] == round(BENIGN / ROWS, 6)
    assert sum(target["values"].values()) == pytest.approx(1.0, abs=1e-5)

    out = run_dir / "out"
    assert artifacts(run_dir) == {
        "X_train.parquet",
        "y_train.parquet",
        "model_output.parquet",
        "model.pkl",
        "metrics.json",
        "params.json",
    }
    assert json.loads((out / "metrics.json").read_text()) == summary["metrics"]
    assert json.loads((out / "params.json").read_text()) == params
    back = read_back(training_python, run_dir, "proba")
    assert back["X_train"] == {"shape": [ROWS, 30], "columns": params["columns"]}
    assert back["y_train"] == {"shape": [ROWS, 1], "columns": ["target"]}
    assert back["model_output"] == {"shape": [ROWS, 1], "columns": ["model_output"]}
    assert back["proba_matches"] is True  # the saved pipeline is the fitted one


# ------------------------------------------------------------------- custom: base_path


def test_one_parameter_contract_reads_input_file_name(training_python, datasets, run_dir):
    copy_data(datasets, run_dir, "data.csv")
    (run_dir / "base" / "plots").mkdir()
    source = write_app(
        run_dir,
        """
        import os

        import pandas as pd
        from sklearn.linear_model import LogisticRegression


        def train_model(base_path):
            df = pd.read_csv(os.environ["inputFileName"])  # relative: cwd is base_path
            X = df[["mean texture", "mean area"]].values
            y = df["target"].values
            model = LogisticRegression(max_iter=2000).fit(X, y)
            with open(os.path.join(base_path, "plots", "roc.txt"), "w") as f:
                f.write("roc")
            with open("notes.md", "w") as f:
                f.write("notes")
            return {
                "X_train": X,
                "y_train": y,
                "model_output": model.predict(X),
                "pipeline": model,
                "metrics": {"accuracy": model.score(X, y), "undefined": float("nan")},
                "extras": [os.path.join(base_path, "plots", "roc.txt"), "notes.md", "./notes.md"],
            }
        """,
    )
    result = train(training_python, run_dir, source=source, data_file="data.csv")
    assert result.ok, result
    summary = result.result
    assert summary["contract"] == "base_path"
    assert summary["shapes"] == {"X_train": [ROWS, 2], "y_train": [ROWS, 1], "model_output": [ROWS, 1]}
    assert summary["extras"] == ["plots/roc.txt", "notes.md"]
    assert 0.8 < summary["metrics"]["accuracy"] < 1
    assert summary["metrics"]["undefined"] is None
    assert summary["warnings"] == ["metric 'undefined' is nan; stored as null"]
    assert "neomaril: warning: metric 'undefined' is nan" in result.output
    params = summary["params"]
    assert params["columns"] == ["0", "1"] and params["missing"] == {}
    assert params["pipeline"]["class"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert params["pipeline"]["params"]["max_iter"] == 2000
    assert "steps" not in params["pipeline"]
    back = read_back(training_python, run_dir, "predict")
    assert back["X_train"]["columns"] == ["0", "1"]
    assert back["y_train"]["columns"] == ["y_train"]
    assert back["model_output"]["columns"] == ["model_output"]


def test_regression_target_distribution_and_named_series(training_python, run_dir):
    (run_dir / "base" / "data.csv").write_text("a,b,y\n1,2,10\n2,1,20\n3,5,30\n4,4,40\n")
    source = write_app(
        run_dir,
        """
        import pandas as pd

        class Mean:
            def fit(self, X, y):
                self.value = float(y.mean())
                return self

            def predict(self, X):
                return pd.Series([self.value] * len(X), name="prediction")


        def train_model(df, base_path):
            X, y = df[["a", "b"]], df["y"]
            model = Mean().fit(X, y)
            return {"X_train": X, "y_train": y, "model_output": model.predict(X), "pipeline": model,
                    "metrics": {}}
        """,
    )
    result = train(training_python, run_dir, source=source, model_type="Regression")
    assert result.ok, result
    assert result.result["params"]["target"] == {
        "kind": "distribution",
        "count": 4,
        "mean": 25.0,
        "std": pytest.approx(12.9099, abs=1e-4),
        "min": 10.0,
        "p25": 17.5,
        "p50": 25.0,
        "p75": 32.5,
        "max": 40.0,
    }
    assert result.result["params"]["pipeline"] == {"class": "app.Mean"}
    back = read_back(training_python, run_dir, "predict")
    assert back["model_output"]["columns"] == ["prediction"]  # a Series keeps its name
    # The class lives in the training script, which is not importable where the model is served.
    assert back["predict"] == [25.0, 25.0, 25.0]


SAVE_MODEL_SOURCE = """
    class Booster:
        def save_model(self, path):
            with open(path, "w") as f:
                f.write("booster v1")


    def train_model(df, base_path):
        return {"X_train": df, "y_train": None, "model_output": [0, 1, 0], "pipeline": Booster(),
                "metrics": {"clusters": 2}}
"""


def test_unsupervised_needs_no_target_and_save_model_is_used(training_python, run_dir):
    (run_dir / "base" / "data.csv").write_text("a,b\n1,2\n2,1\n3,5\n")
    source = write_app(run_dir, SAVE_MODEL_SOURCE)
    result = train(training_python, run_dir, source=source, model_type="Unsupervised")
    assert result.ok, result
    assert result.result["model_saved_with"] == "save_model"
    assert (run_dir / "out" / "model.pkl").read_text() == "booster v1"
    assert result.result["shapes"]["y_train"] is None
    assert "target" not in result.result["params"]
    assert "y_train.parquet" not in artifacts(run_dir)


def test_without_the_sandbox_the_runner_finds_the_harness_beside_itself(training_python, run_dir, settings):
    settings.UNSAFE_NO_SANDBOX = True
    (run_dir / "base" / "data.csv").write_text("a,b\n1,2\n")
    source = write_app(run_dir, SAVE_MODEL_SOURCE.replace("[0, 1, 0]", "[0]"))
    result = train(training_python, run_dir, source=source, model_type="Unsupervised")
    assert result.ok, result
    assert result.result["shapes"]["X_train"] == [1, 2]


# ------------------------------------------------------------------- the contract's errors

BAD_SOURCE = """
    import os
    import threading

    import numpy as np
    import pandas as pd

    X = pd.DataFrame({{"a": [1.0, 2.0, 3.0], "b": [0, 1, 0]}})
    y = pd.Series([0, 1, 0], name="y")
    out = np.array([0.1, 0.9, 0.2])
    GOOD = dict(X_train=X, y_train=y, model_output=out, pipeline={{"w": 1}}, metrics={{"acc": 1.0}})


    def fail(n):
        raise ValueError("no convergence after %d rounds" % n)


    def train_model(df, base_path):
        {body}
"""

BAD_CASES = {
    "missing key": (
        "return {k: v for k, v in GOOD.items() if k != 'metrics'}",
        "result",
        ["has no 'metrics' key", "it must contain X_train, y_train"],
    ),
    "not a dict": (
        "return [X, y]",
        "result",
        ["must return a dict with the keys X_train", "returned a list"],
    ),
    "non-numeric metric": (
        "return dict(GOOD, metrics={'acc': 'high'})",
        "result",
        ["metric 'acc' is a str, not a number"],
    ),
    "bool metric": ("return dict(GOOD, metrics={'ok': True})", "result", ["metric 'ok' is a bool"]),
    "numpy bool metric": (
        "return dict(GOOD, metrics={'ok': np.bool_(1)})",
        "result",
        ["metric 'ok' is a bool"],
    ),
    "metrics not a dict": ("return dict(GOOD, metrics=[0.9])", "result", ["metrics must be a dict"]),
    "row counts": (
        "return dict(GOOD, model_output=out[:2])",
        "result",
        ["model_output has 2 rows but X_train has 3"],
    ),
    "no target for a classifier": ("return dict(GOOD, y_train=None)", "result", ["y_train is None"]),
    "no pipeline": ("return dict(GOOD, pipeline=None)", "result", ["'pipeline' is None"]),
    "1-D X_train": (
        "return dict(GOOD, X_train=out)",
        "result",
        ["X_train must be a DataFrame or a 2-D array", "1 dimension"],
    ),
    "extra outside base_path": (
        "return dict(GOOD, extra=['../out/evil.txt'])",
        "result",
        ["extra file '../out/evil.txt' is outside base_path"],
    ),
    "extra symlink outside base_path": (
        "os.symlink('/etc/hostname', 'link.txt'); return dict(GOOD, extras=['link.txt'])",
        "result",
        ["extra file 'link.txt' is outside base_path"],
    ),
    "missing extra": (
        "return dict(GOOD, extra=['nope.png'])",
        "result",
        ["extra file 'nope.png' does not exist"],
    ),
    "unpicklable pipeline": (
        "return dict(GOOD, pipeline=threading.Lock())",
        "save",
        ["could not pickle the pipeline into model.pkl", "TypeError"],
    ),
    "object column parquet refuses": (
        "return dict(GOOD, X_train=pd.DataFrame({'mixed': [1, 'a', 2.5]}))",
        "save",
        ["could not save X_train as X_train.parquet", ".astype(str)"],
    ),
    "raised": ("return fail(3)", "call", ["'train_model' raised: ValueError: no convergence after 3 rounds"]),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_contract_violations_name_the_phase_and_the_key(training_python, run_dir, case):
    body, phase, messages = BAD_CASES[case]
    (run_dir / "base" / "data.csv").write_text("a\n1\n")
    source = write_app(run_dir, BAD_SOURCE.format(body=body))
    result = train(training_python, run_dir, source=source)
    assert not result.ok
    assert result.phase == phase, result
    for message in messages:
        assert message in result.error
    if phase == "call":
        lines = [line.strip() for line in result.traceback.splitlines() if line.lstrip().startswith("File ")]
        assert lines[0] == f'File "{source.name}", line 19, in train_model'  # relative to its folder
        assert "runner.py" not in result.traceback and "training_harness.py" not in result.traceback
    if phase == "save":
        assert "model.pkl" not in artifacts(run_dir)  # nothing half-written is left to promote


def test_zero_parameter_function_is_an_import_error(training_python, run_dir):
    source = write_app(run_dir, "def train_model():\n    return {}\n")
    result = train(training_python, run_dir, source=source)
    assert result.phase == "import"
    assert "'train_model' takes no parameters; it must accept (df, base_path)" in result.error


@pytest.mark.parametrize(
    ("data_file", "content", "message"),
    [
        ("data.parquet", b"not parquet at all", "could not read the training data 'data.parquet'"),
        ("data.csv", b"", "could not read the training data 'data.csv'"),
        ("data.xlsx", b"x", "must be a .csv or a .parquet file"),
        ("absent.csv", None, "does not exist"),
    ],
)
def test_unreadable_training_data_is_a_data_error(training_python, run_dir, data_file, content, message):
    if content is not None:
        (run_dir / "base" / data_file).write_bytes(content)
    source = write_app(run_dir, "def train_model(df, base_path):\n    raise AssertionError('not called')\n")
    result = train(training_python, run_dir, source=source, data_file=data_file)
    assert result.phase == "data", result
    assert message in result.error
    # Named relative to the run's folder (its source sits there), never by the server's path.
    assert f"({data_file})" in result.error and str(run_dir) not in result.error


def test_bad_spec_is_a_protocol_error(training_python, run_dir):
    result = train(training_python, run_dir, mode="federated")
    assert result.phase == "protocol"
    assert "'mode' must be 'custom' or 'external'" in result.error


# -------------------------------------------------------------------------- external


@pytest.mark.parametrize("extension", ["csv", "parquet"])
def test_external_mode_copies_the_model_and_describes_it(training_python, datasets, run_dir, extension):
    inputs_dir = run_dir / "inputs"
    inputs_dir.mkdir()
    inputs: dict = {"metrics": {"auc": 0.91, "gini": 0.82}, "params": {"C": 1.0, "note": "trained offline"}}
    for name in ("X_train", "y_train", "model_output"):
        target = inputs_dir / f"{name}.{extension}"
        target.write_bytes((datasets / f"{name}.{extension}").read_bytes())
        inputs[name] = str(target)
    model = inputs_dir / "model.pkl"
    model.write_bytes((datasets / "external_model.pkl").read_bytes())
    inputs["model"] = str(model)

    result = train(training_python, run_dir, mode="external", inputs=inputs)
    assert result.ok, result
    summary = result.result
    assert summary["contract"] == "external"
    assert summary["model_saved_with"] == "copy"
    assert summary["metrics"] == {"auc": 0.91, "gini": 0.82}
    assert summary["extras"] == []
    assert summary["shapes"] == {"X_train": [ROWS, 3], "y_train": [ROWS, 1], "model_output": [ROWS, 1]}
    params = summary["params"]
    assert params["logged"] == {"C": 1.0, "note": "trained offline"}
    assert params["pipeline"]["class"] == "sklearn.linear_model._logistic.LogisticRegression"
    assert params["pipeline"]["params"]["max_iter"] == 2000
    assert params["target"]["values"]["1"] == round(BENIGN / ROWS, 6)
    assert (run_dir / "out" / "model.pkl").read_bytes() == model.read_bytes()  # not re-pickled
    assert json.loads((run_dir / "out" / "params.json").read_text()) == params
    back = read_back(training_python, run_dir, "proba")
    assert back["model_output"]["columns"] == ["proba"]
    assert back["proba_matches"] is True


def test_external_model_that_cannot_load_is_not_a_training_data_error(training_python, datasets, run_dir):
    # A "data" failure is reported as "Could not read the training data": the data was fine.
    (run_dir / "base" / "model.pkl").write_bytes(b"not a pickle")
    (run_dir / "base" / "X.csv").write_text("a\n1\n")
    inputs = {"X_train": str(run_dir / "base" / "X.csv"), "model": str(run_dir / "base" / "model.pkl")}
    result = train(training_python, run_dir, mode="external", model_type="Unsupervised", inputs=inputs)
    assert result.phase == "call", result
    assert "model file (model.pkl) could not be loaded in this environment" in result.error


def test_external_metrics_are_validated(training_python, run_dir):
    (run_dir / "base" / "X.csv").write_text("a\n1\n")
    (run_dir / "base" / "y.csv").write_text("y\n1\n")
    inputs = {
        "X_train": str(run_dir / "base" / "X.csv"),
        "y_train": str(run_dir / "base" / "y.csv"),
        "model": str(run_dir / "base" / "model.pkl"),
        "metrics": {"auc": "0.9"},
    }
    subprocess.run(
        [str(training_python), "-c", f"import pickle; pickle.dump(1, open({inputs['model']!r}, 'wb'))"],
        check=True,
        timeout=60,
    )
    result = train(training_python, run_dir, mode="external", inputs=inputs)
    assert result.phase == "result"
    assert "metric 'auc' is a str, not a number ('0.9')" in result.error

    # NaN, infinity and integers past a float arrive as null (the form's work): kept so.
    inputs["metrics"] = {"auc": 0.9, "big": None}
    result = train(training_python, run_dir, mode="external", inputs=inputs)
    assert result.ok, result
    assert result.result["metrics"] == {"auc": 0.9, "big": None}


# ------------------------------------------------------------------------ compatibility


def test_a_train_request_carries_exactly_the_spec(tmp_path):
    request = json.dumps({"source": "", "entrypoint": "", "kind": "train", "args": ["{}", "x"]}).encode()
    proc = subprocess.run(
        [str(supported_interpreter("3.8").path), str(RUNNER_PATH), "oneshot"],
        input=struct.pack(">I", len(request)) + request,
        capture_output=True,
        env=build_runner_env({}, home=str(tmp_path)),
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert b"a 'train' request's 'args' must be [spec_json]" in proc.stderr


def test_harness_compiles_on_the_oldest_supported_python():
    proc = subprocess.run(
        [
            str(supported_interpreter("3.8").path),
            "-c",
            "import ast, sys; ast.parse(open(sys.argv[1]).read())",
            str(HARNESS_PATH),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
