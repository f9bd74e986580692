"""The AutoML configuration: defaults, the original spellings, every invalid case with its message."""

from __future__ import annotations

import pytest

from training.automl.config import STAGES, ConfigError, normalise

MINIMAL = {"model_flow": "classification", "target": "target"}


def test_defaults_fill_every_key():
    conf = normalise(MINIMAL, file_name="dados.csv")
    assert conf == {
        "train_data": {"file_type": "csv", "file_name": "dados.csv", "sep": ","},
        "model_flow": "classification",
        "target": "target",
        "cat_cols": None,
        "iterations": 1,
        "seed": 42,
        "metric": "auc",
        "split_type": "random",
        "val_size": 0.2,
        "holdout_size": 0.1,
        "stratify_col": "target",
        "date_col": None,
        "oot_split_size": None,
        "split_date": None,
        "stages": {stage: list(options) for stage, options in STAGES.items()},
    }


def test_the_original_example_is_accepted():
    conf = normalise(
        {
            "train_data": {"file_type": "csv", "file_name": "dados.csv", "sep": ";"},
            "model_flow": "classification",
            "target": "TARGET",
            "cat_cols": ["ID"],
            "iterations": 10,
            "metric": "ks",
            "split_type": "oot",
            "val_size": 0.2,
            "date_col": "DATE",
            "oot_split_size": 0.1,
            "stages": {
                "models": ["logeg", "lightgbm"],
                "missing": ["mean"],
                "cleaner": ["iqr"],
                "encoding": ["catboost"],
                "preprocess": ["none"],
                "unbalance": ["none"],
            },
        },
        file_name="dados.csv",
        header=["ID", "DATE", "x", "TARGET"],
    )
    assert conf["stages"]["models"] == ["logreg", "lightgbm"]  # the original spelling, read right
    assert (conf["split_type"], conf["oot_split_size"], conf["split_date"]) == ("oot", 0.1, None)
    assert conf["train_data"]["sep"] == ";"


@pytest.mark.parametrize(
    ("conf", "message"),
    [
        ([1], "The configuration must be a JSON object, not list."),
        ({"target": "t"}, "model_flow is required: use 'classification'."),
        ({**MINIMAL, "model_flow": "clustering"}, "model_flow must be 'classification', not 'clustering'"),
        ({"model_flow": "classification"}, "target is required"),
        ({**MINIMAL, "cat_cols": "ID"}, "cat_cols must be a list of column names"),
        ({**MINIMAL, "iterations": 0}, "iterations must be a whole number from 1 to 500, not 0."),
        ({**MINIMAL, "iterations": 2.5}, "iterations must be a whole number from 1 to 500, not 2.5."),
        (
            {**MINIMAL, "metric": "accuracy"},
            "metric must be one of auc, precision, recall, f1, gini, ks, not 'accuracy'.",
        ),
        (
            {**MINIMAL, "split_type": "kfold"},
            "split_type must be one of random, stratified, oot, not 'kfold'.",
        ),
        ({**MINIMAL, "val_size": 1.5}, "val_size must be a fraction between 0 and 1, e.g. 0.2, not 1.5."),
        ({**MINIMAL, "holdout_size": "big"}, "holdout_size must be a fraction between 0 and 1"),
        ({**MINIMAL, "val_size": 0.5, "holdout_size": 0.45}, "leave at least 10 % of the data to train on"),
        ({**MINIMAL, "split_type": "oot"}, "split_type 'oot' needs date_col"),
        (
            {
                **MINIMAL,
                "split_type": "oot",
                "date_col": "d",
                "oot_split_size": 0.2,
                "split_date": "2020-01-01",
            },
            "Give oot_split_size or split_date for an oot split, not both.",
        ),
        (
            {**MINIMAL, "split_type": "oot", "date_col": "d", "split_date": "01/02/2020"},
            "split_date must be a date as YYYY-MM-DD",
        ),
        (
            {**MINIMAL, "stages": {"models": ["svm"]}},
            "stages.models: unknown option(s) 'svm'; use logreg, rf, dt",
        ),
        ({**MINIMAL, "stages": {"models": []}}, "stages.models must be a non-empty list"),
        ({**MINIMAL, "stages": {"scaler": ["norm"]}}, "Unknown stage(s) scaler"),
        ({**MINIMAL, "stages": ["models"]}, "stages must be an object"),
        (
            {**MINIMAL, "train_data": {"file_type": "xlsx"}},
            "train_data.file_type must be csv or parquet, not 'xlsx'.",
        ),
        (
            {**MINIMAL, "train_data": {"file_type": "parquet"}},
            "train_data.file_type is 'parquet' but the uploaded data is 'dados.csv'.",
        ),
        (
            {**MINIMAL, "train_data": {"file_name": "other.csv"}},
            "train_data.file_name is 'other.csv' but the uploaded data is 'dados.csv'",
        ),
        ({**MINIMAL, "train_data": {"sep": ";;"}}, "train_data.sep must be one character"),
        ({**MINIMAL, "targett": "x"}, "Unknown key(s) targett"),
    ],
)
def test_each_invalid_configuration_is_refused_with_its_message(conf, message):
    with pytest.raises(ConfigError) as refused:
        normalise(conf, file_name="dados.csv")
    assert any(message in problem for problem in refused.value.problems), refused.value.problems


@pytest.mark.parametrize("split_type", ["random", "oot"])
def test_a_date_col_that_is_not_a_name_is_refused_with_or_without_the_header(split_type):
    for header in (None, ["ID", "x", "target"]):
        with pytest.raises(ConfigError) as refused:
            normalise(
                {**MINIMAL, "split_type": split_type, "date_col": ["x"]}, file_name="dados.csv", header=header
            )
        assert "date_col must be a column name." in refused.value.problems


def test_every_problem_at_once():
    with pytest.raises(ConfigError) as refused:
        normalise({"metric": "x", "iterations": -1, "stages": {"models": ["svm"]}}, file_name="d.csv")
    assert len(refused.value.problems) == 5  # model_flow, target, iterations, metric, models


def test_columns_are_checked_against_the_header():
    with pytest.raises(ConfigError) as refused:
        normalise(
            {
                **MINIMAL,
                "target": "TARGET",
                "cat_cols": ["ID", "city"],
                "split_type": "stratified",
                "stratify_col": "region",
            },
            file_name="dados.csv",
            header=["ID", "x", "target"],
        )
    problems = " ".join(refused.value.problems)
    assert "target: 'TARGET' not in the training data's columns (ID, x, target)." in problems
    assert "cat_cols: 'city' not in" in problems
    assert "stratify_col: 'region' not in" in problems
