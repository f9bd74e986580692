"""What the training API refuses at upload and at promote, rather than let a run or a
model's build fail on it later: each answer is a 400 naming the field and what was wrong,
and nothing is stored."""

from __future__ import annotations

import base64
import json

import pytest

from models_app.models import MLModel
from tests.helpers.clients import api_client
from tests.helpers.training import custom_payload, external_payload, finished_run, make_experiment
from tests.helpers.uploads import file
from training.models import TrainingRun

API = "/api/v1/training"

# Columns a and target (int64), written by pyarrow 22 (the platform has no parquet library
# to write them here): no rows, then the rows (0, 0) and (1, 1).
PARQUET_NO_ROWS = base64.b64decode(
    "UEFSMRUEFQAVAkwVABUAEgAAABUEFQAVAkwVABUAEgAAABUEGTw1ABgGc2NoZW1hFQQAFQQlAhgBYQAVBCUCGAZ0YXJnZXQAFgAZ"
    "HBksJgAcFQQZJQAGGRgBYRUCFgAWHBYeJgAmCCkcFQQVABUCAAAAJgAcFQQZJQAGGRgGdGFyZ2V0FQIWABYcFh4mACYmKRwVBBUA"
    "FQIAAAAWOBYAJggWPAAoIHBhcnF1ZXQtY3BwLWFycm93IHZlcnNpb24gMjIuMC4wGSwcAAAcAAAArQAAAFBBUjE="
)
PARQUET_TWO_ROWS = base64.b64decode(
    "UEFSMRUEFSAVJEwVBBUAEgAAEDwAAAAAAAAAAAEAAAAAAAAAFQAVEhUWLBUEFRAVBhUGHBgIAQAAAAAAAAAYCAAAAAAAAAAAFgAo"
    "CAEAAAAAAAAAGAgAAAAAAAAAABERAAAACSACAAAABAEBAwIVBBUgFSRMFQQVABIAABA8AAAAAAAAAAABAAAAAAAAABUAFRIVFiwV"
    "BBUQFQYVBhwYCAEAAAAAAAAAGAgAAAAAAAAAABYAKAgBAAAAAAAAABgIAAAAAAAAAAAREQAAAAkgAgAAAAQBAQMCFQQZPDUAGAZz"
    "Y2hlbWEVBAAVBCUCGAFhABUEJQIYBnRhcmdldAAWBBkcGSwmABwVBBk1AAYQGRgBYRUCFgQWzAEW1AEmSCYIHBgIAQAAAAAAAAAY"
    "CAAAAAAAAAAAFgAoCAEAAAAAAAAAGAgAAAAAAAAAABERABksFQQVABUCABUAFRAVAgA8KQYZJgAEAAAAJgAcFQQZNQAGEBkYBnRh"
    "cmdldBUCFgQWzAEW1AEmnAIm3AEcGAgBAAAAAAAAABgIAAAAAAAAAAAWACgIAQAAAAAAAAAYCAAAAAAAAAAAEREAGSwVBBUAFQIA"
    "FQAVEBUCADwpBhkmAAQAAAAWmAMWBCYIFqgDACggcGFycXVldC1jcHAtYXJyb3cgdmVyc2lvbiAyMi4wLjAZLBwAABwAAAAxAQAA"
    "UEFSMQ=="
)

AUTOML_CONF = {"model_flow": "classification", "target": "target", "iterations": 1}


def _automl(**overrides) -> dict:
    return {
        "run_name": "automl",
        "training_type": "AutoML",
        "train_data": file("dados.csv", "a,b,target\n1,2,0\n3,4,1\n"),
        "conf_dict": json.dumps(AUTOML_CONF),
        **overrides,
    }


def _post_run(cast, payload, model_type="Classification"):
    experiment = make_experiment(cast.group, cast.owner, model_type=model_type)
    return api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs", payload, format="multipart"
    )


def _refused(response) -> dict:
    assert response.status_code == 400, response.content
    assert not TrainingRun.objects.exists()
    return response.json()["errors"]


# ---------------------------------------------------------------- AutoML: the experiment


@pytest.mark.parametrize("model_type", ["Regression", "Unsupervised"])
def test_automl_is_refused_outside_a_classification_experiment(cast, model_type):
    errors = _refused(_post_run(cast, _automl(), model_type=model_type))
    assert errors == {
        "training_type": [
            f"AutoML trains binary classification models only, and this experiment is {model_type}: run "
            "AutoML in a Classification experiment, or train this one with a Custom or External run."
        ]
    }


# -------------------------------------------------------------------- AutoML: the target


@pytest.mark.parametrize(
    ("rows", "shown"),
    [
        ("1,yes\n2,no\n3,yes\n", "'no', 'yes'"),
        ("1,1\n2,2\n3,1\n", "'1', '2'"),
        ("1,0\n2,1\n3,-1\n", "'-1', '0', '1'"),
    ],
)
def test_an_automl_target_that_is_not_0_and_1_is_refused_with_the_values_found(cast, rows, shown):
    response = _post_run(cast, _automl(train_data=file("dados.csv", "a,target\n" + rows)))
    assert _refused(response) == {
        "conf_dict": [
            "target: AutoML needs a binary target holding 0 and 1 (1 = the positive class), and column "
            f"'target' of 'dados.csv' holds {shown}: recode it as 0 and 1."
        ]
    }


def test_an_automl_target_with_a_missing_class_is_refused_naming_its_line(cast):
    conf = json.dumps({**AUTOML_CONF, "train_data": {"sep": ";"}})
    data = file("dados.csv", 'a;target\n"two\nlines";1\n\n2;\n3;0\n')
    errors = _refused(_post_run(cast, _automl(train_data=data, conf_dict=conf)))
    assert errors == {
        "conf_dict": [
            "target: column 'target' has a missing value (line 5 of 'dados.csv'); AutoML needs the class "
            "of every row, 0 or 1."
        ]
    }


@pytest.mark.parametrize("rows", ["1,0.0\n2,1.0\n", "1,True\n2,False\n", "1, 1\n2,0\n"])
def test_an_automl_target_the_search_reads_as_0_and_1_is_accepted(cast, rows):
    response = _post_run(cast, _automl(train_data=file("dados.csv", "a,target\n" + rows)))
    assert response.status_code == 201, response.content


def test_an_automl_target_is_read_only_in_the_first_mib(cast):
    """Past it, the run checks the whole column when it starts: the request reads no more."""
    padding = "1,0\n" * (1024 * 1024 // 4)
    data = file("dados.csv", "a,target\n" + padding + "2,yes\n")
    response = _post_run(cast, _automl(train_data=data))
    assert response.status_code == 201, response.content


# ------------------------------------------------------------------------ parquet tables


def test_a_parquet_table_without_rows_is_refused_for_every_kind_of_run(cast):
    message = "'{name}' is a parquet table with no rows of data."
    empty = {
        "custom": custom_payload(train_data=file("dados.parquet", PARQUET_NO_ROWS)),
        "automl": _automl(train_data=file("dados.parquet", PARQUET_NO_ROWS)),
        "external": external_payload(X_train=file("X_train.parquet", PARQUET_NO_ROWS)),
    }
    for kind, payload in empty.items():
        errors = _refused(_post_run(cast, payload))
        field = "X_train" if kind == "external" else "train_data"
        name = "X_train.parquet" if kind == "external" else "dados.parquet"
        assert errors == {field: [message.format(name=name)]}, kind


def test_a_parquet_table_with_rows_is_accepted(cast):
    for payload in (
        custom_payload(train_data=file("dados.parquet", PARQUET_TWO_ROWS)),
        _automl(train_data=file("dados.parquet", PARQUET_TWO_ROWS)),
        external_payload(X_train=file("X_train.parquet", PARQUET_TWO_ROWS)),
    ):
        response = _post_run(cast, payload)
        assert response.status_code == 201, response.content


@pytest.mark.parametrize(
    "content",
    [
        b"a,target\n1,0\n",
        b"PAR1",
        b"PAR1\x00\x01\x00\x00\x00PAR1",  # a footer without num_rows: its struct's end only
        PARQUET_TWO_ROWS[:4] + b"\xff\xff\xff\x7fPAR1",  # a footer longer than the file
        PARQUET_TWO_ROWS[:-30] + PARQUET_TWO_ROWS[-8:],  # the footer's end cut off
    ],
)
def test_a_parquet_file_that_is_not_parquet_is_refused(cast, content):
    errors = _refused(_post_run(cast, custom_payload(train_data=file("dados.parquet", content))))
    assert errors == {
        "train_data": [
            "'dados.parquet' is not a parquet file that can be read: save the table again with pandas' "
            "to_parquet, or upload it as a .csv file."
        ]
    }


# ------------------------------------------------------------------------- training_type


@pytest.mark.parametrize("kind", ["custom", "automl", "EXTERNAL", "foo"])
def test_a_misspelt_training_type_is_the_only_error(cast, kind):
    """Not the External run's list of missing artifacts, as if the type were External."""
    for payload in (custom_payload(training_type=kind), _automl(training_type=kind)):
        errors = _refused(_post_run(cast, payload))
        assert errors == {
            "training_type": [f"training_type must be Custom, External or AutoML, not '{kind}'."]
        }


# --------------------------------------------------------------------- training_reference


def test_a_training_function_the_script_lacks_names_training_reference(cast):
    payload = custom_payload(training_reference="fit")
    (message,) = _refused(_post_run(cast, payload))["source"]
    assert "or set training_reference to the right name" in message, message
    assert "model_reference" not in message


# ------------------------------------------------------------------------------ promote


def _promote(cast, requirements: str, frozen: str = "joblib==1.6.0\nscikit-learn==1.6.1\n"):
    experiment = make_experiment(cast.group, cast.owner)
    finished_run(experiment, frozen=frozen)
    return api_client(cast.owner).post(
        f"{API}/experiments/{experiment.hash}/runs/1/promote",
        {
            "name": "Promoted",
            "model_reference": "score",
            "source": file("app.py", "def score(data, base_path):\n    return {}\n"),
            "schema": json.dumps({"a": 1}),
            "operation": "Sync",
            "requirements": file("requirements.txt", requirements),
        },
        format="multipart",
    )


@pytest.mark.parametrize(
    ("line", "shown"),
    [("joblib==1.4.0", "joblib==1.4.0"), ("Joblib<1.5", "joblib<1.5"), ("joblib!=1.6.0", "joblib!=1.6.0")],
)
def test_promote_refuses_a_requirement_the_runs_frozen_pin_cannot_satisfy(cast, line, shown):
    response = _promote(cast, f"requests==2.32.3\n{line}\n")
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "requirements": [
            f"{shown} conflicts with the training run's environment, which has joblib==1.6.0: the model is "
            "built on that environment, so leave joblib out of requirements or allow 1.6.0."
        ]
    }
    assert not MLModel.objects.exists()


@pytest.mark.parametrize(
    "line",
    [
        "joblib==1.6.0",
        "joblib>=1.5,<2",
        "joblib~=1.6",
        "requests==2.32.3",
        'joblib==1.4.0; python_version < "3"',  # a marker: left to the build
    ],
)
def test_promote_accepts_requirements_the_frozen_pins_satisfy(cast, line):
    response = _promote(cast, line + "\n")
    assert response.status_code == 201, response.content
