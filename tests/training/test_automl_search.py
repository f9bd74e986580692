"""The AutoML search script (training/automl/search.py) and the scoring of its models (score.py).

The metric functions are pure numpy: their known answers run here, in the platform's own
interpreter, which has no scikit-learn (so importing search.py here also proves it needs
nothing else at its top).

The slow tests build the AutoML environment from requirements.txt with the platform's
own `ensure_environment` on Python 3.11 and run search.py exactly as an AutoML run does:
copied into a work folder as automl.py beside automl_conf.json and the data, called by
the training harness (runner kind "train") in the sandbox. What the harness saved
(model.pkl, the parquet tables, params.json) is read back, and scored with score.py, by
scripts run in that environment (the platform's interpreter has no pyarrow).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

from models_app import environments, sandboxes
from models_app.runtime.oneshot import run_oneshot
from models_app.validation.requirements import parse_requirements
from tests.helpers.interpreters import run_with, supported_interpreter

AUTOML = Path(__file__).resolve().parents[2] / "training" / "automl"
SEARCH, SCORE, REQUIREMENTS = AUTOML / "search.py", AUTOML / "score.py", AUTOML / "requirements.txt"
JSON_ARTIFACTS = ("leaderboard.json", "importances.json", "roc.json", "ks.json", "schema.json")
STAGES = {
    "models": ["logreg", "rf", "dt", "lightgbm", "xgboost", "catboost"],
    "missing": ["mean", "median", "tail", "random", "none"],
    "cleaner": ["iqr", "rare", "none"],
    "encoding": ["rankcount", "catboost", "count", "dt"],
    "preprocess": ["norm", "robust", "minmax", "binarizer", "none"],
    "unbalance": ["smote", "random_under", "none"],
}


def _search_module():
    spec = importlib.util.spec_from_file_location("automl_search_under_test", SEARCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as the runner imports it
    spec.loader.exec_module(module)
    return module


search = _search_module()


# ------------------------------------------------------------------ metrics (fast)

Y, SCORES = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]


def test_known_answers_auc_gini_ks():
    assert search.auc(Y, SCORES) == pytest.approx(0.75)
    assert search.gini(Y, SCORES) == pytest.approx(0.5)
    assert search.ks(Y, SCORES) == pytest.approx(0.5)


def test_precision_recall_f1_at_the_threshold():
    # 0.8 is the only score >= 0.5: one true positive, no false one, one positive missed.
    assert search.precision_recall_f1(Y, SCORES) == pytest.approx((1.0, 0.5, 2 / 3))
    # Everything predicted positive at 0.1.
    assert search.precision_recall_f1(Y, SCORES, threshold=0.1) == pytest.approx((0.5, 1.0, 2 / 3))
    assert search.precision_recall_f1(Y, SCORES, threshold=0.9) == (0.0, 0.0, 0.0)


def test_a_model_that_predicts_one_class_for_every_holdout_row_is_said_so():
    warning = search.one_class_warning([0.085, 0.17, 0.12], minority_share=0.04)
    assert warning.startswith("Warning: at the threshold 0.5 the model predicts 0 for every holdout row")
    assert "from 0.0850 to 0.1700" in warning and "stages.unbalance" in warning
    assert "predicts 1 for every" in search.one_class_warning([0.6, 0.9], minority_share=0.04)
    assert search.one_class_warning(SCORES, minority_share=0.04) is None  # both classes predicted
    assert search.one_class_warning([], minority_share=0.04) is None


def test_with_classes_near_even_the_warning_does_not_advise_balancing():
    # An audit's run on 48 % positives: a heavily regularised logreg scored 0.47-0.48.
    warning = search.one_class_warning([0.4716, 0.4826], minority_share=0.48)
    assert "stages.unbalance" not in warning
    assert "the classes are not rare (48% of the rows are the smaller one)" in warning
    assert "search more iterations or other models (stages.models)" in warning


def test_tied_scores_count_half_and_a_perfect_ranking_is_one():
    assert search.auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert search.auc([0, 1, 0, 1], [0.2, 0.2, 0.1, 0.9]) == pytest.approx(0.875)
    assert search.auc([1, 0, 1], [0.9, 0.1, 0.7]) == 1.0
    assert search.ks([1, 0, 1], [0.9, 0.1, 0.7]) == 1.0
    assert search.gini([1, 0, 1], [0.1, 0.9, 0.7]) == -1.0  # a negative above every positive


def test_a_single_class_has_no_auc_or_ks():
    assert search.auc([1, 1], [0.2, 0.3]) != search.auc([1, 1], [0.2, 0.3])  # NaN
    assert search.ks([0, 0], [0.2, 0.3]) != search.ks([0, 0], [0.2, 0.3])


def test_roc_points_go_down_the_distinct_scores():
    thresholds, fpr, tpr = search.roc_points(Y, SCORES)
    assert thresholds.tolist() == [0.8, 0.4, 0.35, 0.1]
    assert fpr.tolist() == [0.0, 0.5, 0.5, 1.0]
    assert tpr.tolist() == [0.5, 0.5, 1.0, 1.0]


def test_metric_by_name():
    assert search.metric("gini", Y, SCORES) == pytest.approx(0.5)
    assert search.metric("recall", Y, SCORES) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="metric: unknown metric 'accuracy'"):
        search.metric("accuracy", Y, SCORES)


# ------------------------------------------------- the search space (fast, pandas only)


def _space(models, *, missing=("mean", "none"), preprocess=("none",), unbalance=("none",), positives=0.5):
    import pandas as pd

    X = pd.DataFrame({"a": [1.0, None, 3.0, 4.0], "b": [1.0, 2.0, 3.0, 4.0]})
    data = search._Data(X, pd.Series([0, 1, 0, 1]), ["a", "b"], [], ["a", "b"])
    stages = {
        **STAGES,
        "models": list(models),
        "missing": list(missing),
        "preprocess": list(preprocess),
        "unbalance": list(unbalance),
    }
    y_train = pd.Series([1] * round(100 * positives) + [0] * round(100 * (1 - positives)))
    return search._search_space({"stages": stages}, data, y_train)


def test_missing_values_are_left_in_only_when_every_option_searched_takes_them():
    # Trees take NaN: leaving it is one more option to try.
    assert _space(["lightgbm", "rf", "dt", "xgboost", "catboost"])["missing"] == ["mean", "none"]
    # A trial draws its model and its missing option apart: logreg could draw "none".
    assert _space(["logreg", "lightgbm"])["missing"] == ["mean"]
    assert _space(["lightgbm"], preprocess=("norm", "binarizer"))["missing"] == ["mean"]
    # SMOTE only where the unbalance stage is searched, i.e. with a rare class.
    assert _space(["lightgbm"], unbalance=("smote",))["missing"] == ["mean", "none"]
    assert _space(["lightgbm"], unbalance=("smote",), positives=0.05)["missing"] == ["mean"]


def test_leaving_missing_values_to_an_option_that_cannot_take_them_is_refused_before_the_search():
    with pytest.raises(
        ValueError, match=r"^stages\.missing: the numeric column\(s\) 'a' have missing"
    ) as raised:
        _space(["logreg", "lightgbm"], missing=("none",), preprocess=("binarizer",))
    assert "which logreg (stages.models), binarizer (stages.preprocess) cannot take" in str(raised.value)
    assert "add an imputation (mean, median, tail, random) to stages.missing" in str(raised.value)


# --------------------------------------------------------- real runs (slow)

MAKE_DATA = textwrap.dedent(
    """
    import sys
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_breast_cancer, make_classification

    folder = sys.argv[1]
    rng = np.random.default_rng(0)
    cancer = load_breast_cancer(as_frame=True).frame
    cancer.to_csv(folder + "/breast.csv", index=False)

    # A text column with missing values and a rare category, and missing numbers.
    df = cancer.copy()
    segment = np.where(df["mean radius"] > 14, rng.choice(["a", "b"], len(df)),
                       rng.choice(["c", "d", "e"], len(df))).astype(object)
    segment[rng.random(len(df)) < 0.1] = None
    segment[:4] = "rare"
    df.insert(0, "segment", segment)
    df.loc[rng.random(len(df)) < 0.1, "mean texture"] = np.nan
    df.to_parquet(folder + "/categorical.parquet", index=False)

    # Out of time: 800 days in shuffled order; "day" tells the test where each row fell.
    X, y = make_classification(n_samples=800, n_features=6, random_state=3)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(6)])
    frame["day"] = np.arange(800)
    frame["DATE"] = pd.date_range("2021-01-01", periods=800, freq="D").strftime("%Y-%m-%d")
    frame["target"] = y
    frame.sample(frac=1.0, random_state=0).to_csv(folder + "/oot.csv", index=False, sep=";")

    # 5 % positives.
    X, y = make_classification(n_samples=1500, n_features=8, weights=[0.95], flip_y=0, random_state=1)
    frame = pd.DataFrame(X, columns=[f"x{i}" for i in range(8)]).assign(target=y)
    assert abs(frame["target"].mean() - 0.05) < 0.01
    frame.to_csv(folder + "/unbalanced.csv", index=False)
    """
)

# Reads what the harness saved; X_train, y_train and model_output as lists of rows.
READ_TABLES = textwrap.dedent(
    """
    import json, sys
    import pandas as pd

    out = {}
    for name in ("X_train", "y_train", "model_output"):
        df = pd.read_parquet(sys.argv[1] + "/" + name + ".parquet")
        out[name] = {"columns": list(df.columns), "rows": json.loads(df.to_json(orient="values"))}
    print(json.dumps(out))
    """
)

# score.py in a promoted model's folder against the pipeline's own outputs on X_train.
CHECK_SCORING = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    import numpy as np
    import pandas as pd

    model_dir, out_dir, data_dir = sys.argv[1:4]
    spec = importlib.util.spec_from_file_location("score", os.path.join(model_dir, "score.py"))
    score = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(score)
    X = pd.read_parquet(os.path.join(out_dir, "X_train.parquet"))
    expected = pd.read_parquet(os.path.join(out_dir, "model_output.parquet"))
    records = X.head(5).astype(object).where(X.head(5).notna(), None).to_dict("records")
    records = [dict(reversed(list(r.items())), unused="ignored") for r in records]  # order is not needed
    result = {"expected": {"pred": expected["pred"].head(20).tolist(), "proba": expected["proba"].head(20).tolist()}}
    dumps = lambda value: json.dumps(value, default=lambda number: number.item())  # numpy numbers
    result["single"] = score.score(dumps(records[0]), model_dir)
    result["list"] = score.score(dumps(records), model_dir)
    try:
        score.score(dumps({k: v for k, v in records[0].items() if k != X.columns[1]}), model_dir)
    except ValueError as exc:
        result["missing_column"] = str(exc)
    batch = X.head(20).assign(id=range(20))
    for extension in ("csv", "parquet"):
        folder = os.path.join(data_dir, extension)
        os.makedirs(folder)
        name = "input." + extension
        if extension == "csv":
            batch.to_csv(os.path.join(folder, name), index=False, sep=";")
        else:
            batch.to_parquet(os.path.join(folder, name), index=False)
        os.environ["inputFileName"] = name
        path = score.score_file(folder, model_dir)
        read = pd.read_csv(path, sep=";") if extension == "csv" else pd.read_parquet(path)
        result[extension] = {"path": path, "columns": list(read.columns),
                             "pred": read["pred"].tolist(), "proba": read["proba"].tolist()}
    print(json.dumps(result))
    """
)

# Configurations the search must refuse before searching, each naming its key.
CHECK_ERRORS = textwrap.dedent(
    """
    import importlib.util, json, os, sys
    import numpy as np
    import pandas as pd

    search_path, folder = sys.argv[1:3]
    spec = importlib.util.spec_from_file_location("automl", search_path)
    automl = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(automl)
    base = json.loads(sys.argv[3])
    df = pd.DataFrame({"a": np.arange(40.0), "b": ["x", "y"] * 20, "when": ["2020-01-%02d" % (i % 28 + 1) for i in range(40)],
                       "target": [0, 1] * 20})
    df.loc[3, "a"] = np.nan
    cases = {
        "no_target": ({"target": "label"}, df),
        "not_binary": ({}, df.assign(target=[0, 1, 2, 3] * 10)),
        "missing_target": ({}, df.assign(target=[0, 1, None, 1] * 10)),
        "cat_cols": ({"cat_cols": ["b", "colour"]}, df),
        "text_not_in_cat_cols": ({"cat_cols": []}, df),
        "stratify_col": ({"split_type": "stratified", "stratify_col": "region"}, df),
        "date_col": ({"split_type": "oot", "date_col": "b"}, df),
        "too_few_rows": ({"holdout_size": 0.02}, df.head(12)),
        "missing_left_to_logreg": (
            {"stages": dict(base["stages"], models=["logreg"], missing=["none"], preprocess=["norm"])}, df
        ),
        # The audit's configuration: one trial of logreg on data with missing numbers.
        "logreg_on_missing_values": ({"iterations": 1, "stages": dict(base["stages"], models=["logreg"])}, df),
        # Infinity: no imputation removes it (the iqr cleaner would cap it), logreg refuses it.
        "all_trials_fail": (
            {"iterations": 2, "stages": dict(base["stages"], models=["logreg"], missing=["median"], cleaner=["none"])},
            df.assign(a=df["a"].where(df.index != 5, np.inf)),
        ),
    }
    answers = {}
    for case, (overrides, data) in cases.items():
        data.to_csv(os.path.join(folder, "dados.csv"), index=False)
        with open(os.path.join(folder, "automl_conf.json"), "w") as f:
            json.dump(dict(base, **overrides), f)
        try:
            automl.train_model(folder)
            answers[case] = None
        except Exception as exc:
            answers[case] = type(exc).__name__ + ": " + str(exc)
    print(json.dumps(answers))
    """
)


@dataclass
class AutoMLRun:
    work: Path  # base_path: automl.py, the data, the json artifacts
    out: Path  # what the harness saved
    summary: dict  # the harness's summary: metrics, params, extras, shapes
    log: str

    def json(self, name: str) -> dict:
        return json.loads((self.work / name).read_text())

    @property
    def leaderboard(self) -> dict:
        return self.json("leaderboard.json")


def automl_conf(file_name: str, **overrides) -> dict:
    conf = {
        "train_data": {"file_type": Path(file_name).suffix[1:], "file_name": file_name, "sep": ","},
        "model_flow": "classification",
        "target": "target",
        "cat_cols": None,
        "iterations": 10,
        "metric": "auc",
        "seed": 42,
        "split_type": "random",
        "val_size": 0.2,
        "holdout_size": 0.1,
        "stratify_col": "target",
        "date_col": None,
        "oot_split_size": None,
        "split_date": None,
        "stages": {**STAGES, "models": ["logreg", "lightgbm"]},
    }
    conf.update(overrides)
    return conf


@pytest.fixture(scope="module")
def automl_python() -> Path:
    """The AutoML environment, built by the platform's own code from requirements.txt."""
    env = environments.ensure_environment(
        interpreter=supported_interpreter("3.11"),
        requirements=parse_requirements(REQUIREMENTS.read_text()),
        envs_dir=settings.ENVS_DIR,
        log=lambda line: None,
        timeout=1200,
        uv_cache_dir=Path(settings.UV_CACHE_DIR) if settings.UV_CACHE_DIR else None,
    )
    return environments.env_python(env)


@pytest.fixture(scope="module")
def datasets(automl_python, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("automl-data")
    run_with(automl_python, MAKE_DATA, folder)
    return folder


def run_automl(python: Path, folder: Path, data: Path, conf: dict) -> AutoMLRun:
    """One AutoML run as the platform makes it: automl.py, automl_conf.json and the data in
    the work folder, train_model(base_path) called by the harness in the sandbox."""
    work, out = folder / "work", folder / "out"
    work.mkdir(parents=True)
    out.mkdir()
    shutil.copyfile(SEARCH, work / "automl.py")
    shutil.copyfile(data, work / data.name)
    (work / "automl_conf.json").write_text(json.dumps(conf))
    spec = {
        "mode": "custom",
        "base_path": str(work),
        "data_file": data.name,
        "out_dir": str(out),
        "model_type": "Classification",
    }
    lines: list[str] = []
    result = run_oneshot(
        sandboxes.training_code(
            python=python, folder=folder, home=work, env={"inputFileName": data.name}, network=False
        ),
        source=str(work / "automl.py"),
        entrypoint="train_model",
        kind="train",
        args=[json.dumps(spec)],
        timeout=900,
        on_output_line=lines.append,
    )
    log = "\n".join(lines)
    assert result.ok, f"{result.phase}: {result.error}\n{result.traceback}\n{log[-5000:]}"
    return AutoMLRun(work, out, result.result, log)


def tables(python: Path, run: AutoMLRun) -> dict:
    return json.loads(run_with(python, READ_TABLES, run.out))


def stage_options(leaderboard: dict, stage: str, state: str = "COMPLETE") -> set:
    return {trial["params"].get(stage) for trial in leaderboard["trials"] if trial["state"] == state} - {None}


@pytest.fixture(scope="module")
def breast_cancer_run(automl_python, datasets, tmp_path_factory) -> AutoMLRun:
    return run_automl(
        automl_python, tmp_path_factory.mktemp("breast"), datasets / "breast.csv", automl_conf("breast.csv")
    )


@pytest.mark.slow
def test_breast_cancer_search_beats_095_and_writes_every_artifact(automl_python, breast_cancer_run):
    run = breast_cancer_run
    metrics = run.summary["metrics"]
    assert set(metrics) == {"auc", "gini", "ks", "precision", "recall", "f1", "validation_auc"}
    assert metrics["auc"] > 0.95
    assert metrics["gini"] == pytest.approx(2 * metrics["auc"] - 1)
    assert 0 < metrics["ks"] <= 1 and 0 < metrics["f1"] <= 1
    assert sorted(run.summary["extras"]) == sorted(JSON_ARTIFACTS)
    # 569 rows: 57 in the holdout (10 %), the other 512 are X_train (train + validation).
    assert run.summary["shapes"] == {"X_train": [512, 30], "y_train": [512, 1], "model_output": [512, 2]}
    assert "[10/10] trial 9" in run.log and "best so far" in run.log

    board = run.leaderboard
    assert (board["metric"], board["seed"]) == ("auc", 42)
    assert len(board["trials"]) == 10
    values = [t["value"] for t in board["trials"] if t["state"] == "COMPLETE"]
    assert values == sorted(values, reverse=True)
    assert board["best_trial"] == board["trials"][0]["number"]
    assert metrics["validation_auc"] == pytest.approx(values[0])
    for trial in board["trials"]:
        assert set(trial) == {"number", "value", "state", "error", "params", "duration_seconds"}
        model = trial["params"]["model"]
        assert model in ("logreg", "lightgbm")
        assert any(key.startswith(model + "__") for key in trial["params"])
    # Balanced data (63 % positives), no categorical column, nothing missing: not searched.
    assert all(not {"unbalance", "encoding", "missing"} & set(t["params"]) for t in board["trials"])
    assert stage_options(board, "model") == {"logreg", "lightgbm"}
    assert stage_options(board, "preprocess") == set(STAGES["preprocess"])

    importances = run.json("importances.json")["features"]
    assert len(importances) == 30
    assert sum(row["importance"] for row in importances) == pytest.approx(1.0)
    shares = [row["importance"] for row in importances]
    assert shares == sorted(shares, reverse=True)
    assert {row["name"] for row in importances} >= {"mean radius", "worst texture"}

    roc = run.json("roc.json")
    assert 2 <= len(roc["fpr"]) == len(roc["tpr"]) <= 200
    assert (roc["fpr"][0], roc["tpr"][0], roc["fpr"][-1], roc["tpr"][-1]) == (0.0, 0.0, 1.0, 1.0)
    assert roc["auc"] == pytest.approx(metrics["auc"])
    ks = run.json("ks.json")
    assert len(ks["thresholds"]) == len(ks["tpr"]) == len(ks["fpr"]) <= 200
    assert ks["ks"] == pytest.approx(metrics["ks"])
    at = ks["thresholds"].index(ks["threshold"])
    assert ks["tpr"][at] - ks["fpr"][at] == pytest.approx(ks["ks"])

    schema = run.json("schema.json")
    read = tables(automl_python, run)
    assert list(schema) == read["X_train"]["columns"] == run.summary["params"]["columns"]
    assert list(schema.values()) == pytest.approx(read["X_train"]["rows"][0])
    assert read["model_output"]["columns"] == ["pred", "proba"]
    assert read["y_train"]["columns"] == ["target"]
    pipeline = run.summary["params"]["pipeline"]
    assert pipeline["steps"][0]["name"] == "features" and pipeline["steps"][-1]["name"] == "model"


@pytest.mark.slow
def test_the_same_seed_gives_the_same_leaderboard(automl_python, datasets, breast_cancer_run, tmp_path):
    again = run_automl(automl_python, tmp_path, datasets / "breast.csv", automl_conf("breast.csv"))

    def comparable(board):
        return [(t["number"], t["value"], t["state"], t["params"]) for t in board["trials"]]

    assert comparable(again.leaderboard) == comparable(breast_cancer_run.leaderboard)
    assert again.summary["metrics"] == breast_cancer_run.summary["metrics"]


@pytest.mark.slow
def test_out_of_time_split_keeps_the_latest_dates_for_the_holdout(automl_python, datasets, tmp_path):
    conf = automl_conf(
        "oot.csv",
        split_type="oot",
        date_col="DATE",
        oot_split_size=0.25,
        iterations=6,
        train_data={"file_type": "csv", "file_name": "oot.csv", "sep": ";"},
    )
    run = run_automl(automl_python, tmp_path, datasets / "oot.csv", conf)
    read = tables(automl_python, run)
    columns = read["X_train"]["columns"]
    assert "DATE" not in columns and "target" not in columns
    # 800 days: the latest 200 are the holdout, all 600 before them train or validate.
    days = sorted(row[columns.index("day")] for row in read["X_train"]["rows"])
    assert days == list(range(600))
    assert "oot split: train 440, validation 160, holdout 200" in run.log
    assert run.summary["metrics"]["auc"] > 0.8
    assert "DATE" not in run.json("schema.json")


@pytest.mark.slow
def test_categorical_data_goes_through_every_missing_cleaner_and_encoding_option(
    automl_python, datasets, tmp_path
):
    conf = automl_conf(
        "categorical.parquet",
        iterations=12,
        metric="ks",
        seed=7,
        split_type="stratified",
        holdout_size=0.2,
        stages={**STAGES, "models": ["lightgbm", "dt"], "preprocess": ["norm", "none"]},
    )
    run = run_automl(automl_python, tmp_path, datasets / "categorical.parquet", conf)
    board = run.leaderboard
    assert all(trial["state"] == "COMPLETE" for trial in board["trials"]), board["trials"]
    for stage in ("missing", "cleaner", "encoding"):
        assert stage_options(board, stage) == set(STAGES[stage]), stage
    assert run.summary["metrics"]["auc"] > 0.9
    assert "1 categorical" in run.log and "stratified split" in run.log
    schema = run.json("schema.json")
    assert list(schema)[0] == "segment" and (schema["segment"] is None or isinstance(schema["segment"], str))


@pytest.fixture(scope="module")
def categorical_run(automl_python, datasets, tmp_path_factory) -> AutoMLRun:
    # CatBoost and the CatBoost encoder: the pipeline most likely to trip over pickling.
    conf = automl_conf(
        "categorical.parquet",
        iterations=3,
        stages={**STAGES, "models": ["catboost"], "encoding": ["catboost"], "missing": ["median"]},
    )
    return run_automl(
        automl_python, tmp_path_factory.mktemp("scoring"), datasets / "categorical.parquet", conf
    )


@pytest.mark.slow
def test_unbalanced_data_searches_smote_and_random_under(automl_python, datasets, tmp_path):
    conf = automl_conf(
        "unbalanced.csv",
        iterations=6,
        metric="f1",
        stages={**STAGES, "models": ["logreg", "lightgbm"], "unbalance": ["smote", "random_under"]},
    )
    run = run_automl(automl_python, tmp_path, datasets / "unbalanced.csv", conf)
    board = run.leaderboard
    assert stage_options(board, "unbalance") == {"smote", "random_under"}
    pipeline = run.summary["params"]["pipeline"]
    assert pipeline["class"] == "imblearn.pipeline.Pipeline"
    sampler = next(step for step in pipeline["steps"] if step["name"] == "unbalance")
    assert sampler["class"].rsplit(".", 1)[1] in ("SMOTE", "RandomUnderSampler")
    assert run.summary["params"]["target"]["values"]["1"] == pytest.approx(0.05, abs=0.01)
    # The sampler works at fit time only: X_train and model_output keep every row.
    assert run.summary["shapes"]["model_output"][0] == run.summary["shapes"]["X_train"][0] == 1350


@pytest.mark.slow
def test_score_py_answers_as_the_pipeline_does(automl_python, categorical_run, tmp_path):
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    shutil.copyfile(categorical_run.out / "model.pkl", model_dir / "model.pkl")
    shutil.copyfile(categorical_run.work / "schema.json", model_dir / "schema.json")
    shutil.copyfile(SCORE, model_dir / "score.py")
    (tmp_path / "data").mkdir()
    # Run from a folder without automl.py: the pickle must not need the training script.
    result = json.loads(
        run_with(automl_python, CHECK_SCORING, model_dir, categorical_run.out, tmp_path / "data")
    )
    expected = result["expected"]

    assert result["single"]["pred"] == expected["pred"][0]
    assert isinstance(result["single"]["pred"], int)
    assert result["single"]["proba"] == pytest.approx(expected["proba"][0], abs=1e-9)
    assert result["list"]["pred"] == expected["pred"][:5]
    assert result["list"]["proba"] == pytest.approx(expected["proba"][:5], abs=1e-9)
    assert "missing column(s) 'mean radius'" in result["missing_column"]
    for extension in ("csv", "parquet"):
        answer = result[extension]
        assert answer["path"] == str(tmp_path / "data" / extension / f"output.{extension}")
        assert answer["columns"][-3:] == ["id", "pred", "proba"]
        assert answer["pred"] == expected["pred"]
        assert answer["proba"] == pytest.approx(expected["proba"], abs=1e-9)


@pytest.mark.slow
def test_configuration_the_data_contradicts_is_refused_naming_the_key(automl_python, tmp_path):
    base = automl_conf("dados.csv", iterations=3, holdout_size=0.2)
    output = run_with(automl_python, CHECK_ERRORS, SEARCH, tmp_path, json.dumps(base))
    answers = json.loads(output.splitlines()[-1])  # after the search's progress lines
    assert answers["no_target"].startswith("ValueError: target: the data has no column 'label'")
    assert answers["not_binary"].startswith("ValueError: target: AutoML classification needs a binary target")
    assert answers["missing_target"].startswith("ValueError: target: column 'target' has 10 missing value(s)")
    assert answers["cat_cols"].startswith("ValueError: cat_cols: the data has no column 'colour'")
    assert answers["text_not_in_cat_cols"].startswith("ValueError: cat_cols: column 'b' holds text")
    assert answers["stratify_col"].startswith("ValueError: stratify_col: the data has no column 'region'")
    assert answers["date_col"].startswith(
        "ValueError: date_col: column 'b' has 40 value(s) that are not dates"
    )
    assert answers["too_few_rows"].startswith("ValueError: holdout_size: the holdout split has 1 row(s)")
    assert answers["missing_left_to_logreg"].startswith(
        "ValueError: stages.missing: the numeric column(s) 'a' have missing values, which logreg "
        "(stages.models) cannot take, and 'none' is the only option given"
    )
    assert answers["logreg_on_missing_values"] is None  # it failed: "'missing': 'none' … contains NaN"
    assert answers["all_trials_fail"].startswith("RuntimeError: every one of the 2 trials failed")
    assert "infinity" in answers["all_trials_fail"]
