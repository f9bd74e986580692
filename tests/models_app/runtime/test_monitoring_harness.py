"""The monitoring harness (runner kind "monitor"): the real harness, in the real sandbox, in a
real environment with pandas and pyarrow (the harnesses' session environment, conftest.py).

Each run starts a sandboxed interpreter that imports pandas (about two seconds), so the
tests that run one are marked slow; the protocol checks are not.
"""

from __future__ import annotations

import json
import struct
import subprocess
import textwrap
from pathlib import Path

import pytest

from models_app.runtime.oneshot import RunResult, run_oneshot
from models_app.runtime.sandbox import (
    MONITORING_HARNESS_PATH,
    RUNNER_PATH,
    Limits,
    UserCode,
    build_runner_env,
)
from tests.helpers.interpreters import supported_interpreter

LIMITS = Limits(memory_mb=8192, processes=512, disk_mb=512, tmp_mb=128)
slow = pytest.mark.slow

MAKE_REFERENCE = textwrap.dedent(
    """
    import sys
    import numpy as np
    import pandas as pd

    folder = sys.argv[1]
    X = pd.DataFrame({
        "age": [30.0, np.nan, 45.5, 60.0],
        "city": ["SP", "RJ", None, "SP"],
        "n": np.array([1, 2, 3, 4], dtype="int64"),
        "when": pd.to_datetime(["2024-01-03 00:00", "2024-01-01 00:00", None, "2024-02-10 12:30"]),
        "flag": [True, False, True, True],
    })
    X.to_parquet(folder + "/X_train.parquet", index=False)
    pd.DataFrame({"proba": [0.1, 0.9, np.nan, 0.5]}).to_parquet(folder + "/model_output.parquet", index=False)
    """
)

# Sync: the request and the answer as JSON strings. A request {"fail": ...} raises.
SYNC_SOURCE = """
    import json

    import pandas as pd


    def parse(input_data, output_data):
        request = json.loads(input_data)
        if "fail" in request:
            raise ValueError("bad record %s" % request["fail"])
        rows = request if isinstance(request, list) else [request]
        answer = json.loads(output_data)
        return pd.DataFrame(rows), pd.DataFrame({"proba": [answer["proba"]] * len(rows)})


    def shap_values(features, model_path):
        with open(model_path) as f:
            assert f.read() == "the model", "model_path is the model's file"
        return pd.DataFrame({"age": pd.to_numeric(features["age"]) * 2, "n": -features["n"]})


    def shap_age_only(features, model_path):
        return pd.DataFrame({"age": features["age"]})


    def returns_dict(input_data, output_data):
        return {"features": pd.DataFrame()}


    def returns_one_frame(input_data, output_data):
        return (pd.DataFrame({"age": [1.0]}), [0.5])
"""

# Async: the paths of the input file and of the model's result file.
ASYNC_SOURCE = """
    import pandas as pd


    def parse(input_file, result_file):
        features = pd.read_csv(input_file)
        outputs = pd.read_csv(result_file)
        return features, outputs
"""

SAMPLE = {"age": 41, "city": "SP", "n": 2, "when": "2024-03-01", "flag": False}


@pytest.fixture(scope="session")
def reference(training_python, tmp_path_factory) -> Path:
    """A training run's X_train.parquet and model_output.parquet (NaN, None, NaT, bools, datetimes)."""
    folder = tmp_path_factory.mktemp("monitoring-reference")
    subprocess.run([str(training_python), "-c", MAKE_REFERENCE, str(folder)], check=True, timeout=120)
    return folder


@pytest.fixture
def job(tmp_path: Path) -> Path:
    """A monitoring job's folders: code/ (read-only: preprocess.py, model.pkl) and work/ (writable)."""
    (tmp_path / "code").mkdir()
    (tmp_path / "work").mkdir()
    (tmp_path / "code" / "model.pkl").write_text("the model")
    return tmp_path


def monitor(
    python: Path,
    job: Path,
    reference: Path | None,
    *,
    source: str = SYNC_SOURCE,
    entrypoint: str = "parse",
    **spec,
) -> RunResult:
    """One harness run; ``spec`` overrides the validate spec's defaults (period: mode="period")."""
    path = job / "code" / "preprocess.py"
    path.write_text(textwrap.dedent(source))
    full = {
        "mode": "validate",
        "shap_entrypoint": None,
        "model_path": str(job / "code" / "model.pkl"),
        "operation": "sync",
        "input_cols": ["age", "city", "n", "when", "flag"],
        "output_cols": ["proba"],
        "out_file": str(job / "work" / "out.json"),
        "date_col": "when",
        "sample": {"input": json.dumps(SAMPLE), "output": json.dumps({"proba": 0.75})},
    }
    if reference is not None:
        full["reference"] = {
            "X_train": str(reference / "X_train.parquet"),
            "model_output": str(reference / "model_output.parquet"),
        }
    full.update(spec)
    read_only = [job / "code", *([reference] if reference is not None else [])]
    code = UserCode(
        python=python, env={}, cwd=job / "work", read_only=read_only, writable=job / "work", limits=LIMITS
    )
    return run_oneshot(
        code, source=str(path), entrypoint=entrypoint, kind="monitor", args=[json.dumps(full)], timeout=120
    )


def out(job: Path) -> dict:
    return json.loads((job / "work" / "out.json").read_text())


def records(job: Path, *calls: tuple[object, object]) -> str:
    """Write a period's records file (JSON lines of the request and the answer); returns its path."""
    path = job / "work" / "records.jsonl"
    path.write_text(
        "".join(json.dumps({"input": json.dumps(i), "output": json.dumps(o)}) + "\n" for i, o in calls)
    )
    return str(path)


# ------------------------------------------------------------------------------ validate


@slow
def test_validate_writes_the_reference_values_json_safe(training_python, job, reference):
    result = monitor(training_python, job, reference, shap_entrypoint=None)
    assert result.ok, result
    assert result.result == {"rows": 4, "features": [SAMPLE], "outputs": [{"proba": 0.75}]}
    assert out(job) == {
        "inputs": {
            "age": [30.0, None, 45.5, 60.0],
            "city": ["SP", "RJ", None, "SP"],
            "n": [1, 2, 3, 4],
            "when": ["2024-01-03T00:00:00", "2024-01-01T00:00:00", None, "2024-02-10T12:30:00"],
            "flag": [True, False, True, True],
        },
        "outputs": {"proba": [0.1, 0.9, None, 0.5]},
        "rows": 4,
        "date_range": ["2024-01-01T00:00:00", "2024-02-10T12:30:00"],
    }


@slow
def test_validate_without_a_date_column_has_no_date_range(training_python, job, reference):
    result = monitor(training_python, job, reference, date_col=None, input_cols=["age"])
    assert result.ok, result
    assert out(job)["date_range"] is None
    assert list(out(job)["inputs"]) == ["age"]


@slow
@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"input_cols": ["age", "ghost", "spook"]},
            "the training run's X_train lacks InputCols 'ghost', 'spook' "
            "(it has: 'age', 'city', 'n', 'when', 'flag')",
        ),
        (
            {"output_cols": ["score"]},
            "the training run's model_output lacks OutputCols 'score' (it has: 'proba')",
        ),
        (
            {"date_col": "day"},
            "the training run's X_train lacks TrainDateCol 'day' (it has: 'age', 'city', 'n', 'when', 'flag')",
        ),
        (
            {
                "sample": {
                    "input": json.dumps({"age": 1.0, "city": "SP"}),
                    "output": json.dumps({"proba": 0.5}),
                }
            },
            "the preprocess output lacks InputCols 'n', 'when', 'flag' (its features have: 'age', 'city')",
        ),
        (
            {"input_cols": ["age", "n"], "shap_entrypoint": "shap_age_only"},
            "the SHAP output lacks InputCols 'n' (it has: 'age')",
        ),
    ],
    ids=["InputCols", "OutputCols", "TrainDateCol", "preprocess-output", "shap-output"],
)
def test_a_missing_column_is_a_config_error_naming_the_key(training_python, job, reference, spec, expected):
    result = monitor(training_python, job, reference, **spec)
    assert not result.ok
    assert (result.phase, result.error) == ("config", expected)
    assert not (job / "work" / "out.json").exists()


@slow
@pytest.mark.parametrize(
    ("date_col", "expected"),
    [
        ("n", "the training run's X_train column 'n' (TrainDateCol) holds int64 values, not dates, e.g. 1"),
        (
            "city",
            "the training run's X_train column 'city' (TrainDateCol) has 3 value(s) that are not dates, e.g. 'SP'",
        ),
    ],
)
def test_a_date_column_that_holds_no_dates_is_a_config_error(
    training_python, job, reference, date_col, expected
):
    # Numbers read as dates are nanoseconds after 1970: a reference range that means nothing.
    result = monitor(training_python, job, reference, date_col=date_col)
    assert not result.ok
    assert (result.phase, result.error) == ("config", expected)
    assert not (job / "work" / "out.json").exists()


@slow
def test_a_preprocess_that_raises_is_a_call_error_with_the_users_traceback(training_python, job, reference):
    result = monitor(
        training_python,
        job,
        reference,
        sample={"input": json.dumps({"fail": "x"}), "output": json.dumps({"proba": 0.5})},
    )
    assert not result.ok
    assert result.phase == "call"
    assert result.error == "the preprocess function 'parse' raised: ValueError: bad record x"
    assert "preprocess.py" in result.traceback and 'raise ValueError("bad record' in result.traceback
    assert "monitoring_harness.py" not in result.traceback and "runner.py" not in result.traceback


@slow
@pytest.mark.parametrize(
    ("entrypoint", "returned"),
    [
        ("returns_dict", "it returned a dict"),
        ("returns_one_frame", "it returned a tuple of 2 (a pandas.core.frame.DataFrame, a list)"),
    ],
)
def test_a_bad_return_value_is_a_result_error_naming_the_function(
    training_python, job, reference, entrypoint, returned
):
    result = monitor(training_python, job, reference, entrypoint=entrypoint)
    assert not result.ok
    assert result.phase == "result"
    assert result.error == (
        f"TypeError: the preprocess function {entrypoint!r} must return a 2-tuple (features, outputs) "
        f"of pandas DataFrames; {returned}"
    )


@slow
def test_a_missing_shap_function_is_an_import_error_naming_it(training_python, job, reference):
    result = monitor(training_python, job, reference, shap_entrypoint="get_shap")
    assert not result.ok
    assert result.phase == "import"
    assert "entrypoint 'get_shap' not found" in result.error
    assert "shap_values" in result.error  # the functions the file does define


@slow
def test_validate_async_calls_the_preprocess_with_the_two_file_paths(training_python, job, reference):
    (job / "code" / "input.csv").write_text("age,city\n41,SP\n52,\n")
    (job / "code" / "output.csv").write_text("proba\n0.25\n0.5\n")
    result = monitor(
        training_python,
        job,
        reference,
        source=ASYNC_SOURCE,
        operation="async",
        input_cols=["age", "city"],
        date_col=None,
        sample={"input": str(job / "code" / "input.csv"), "output": str(job / "code" / "output.csv")},
    )
    assert result.ok, result
    assert result.result == {"rows": 4, "features": [{"age": 41, "city": "SP"}], "outputs": [{"proba": 0.25}]}
    assert out(job)["inputs"] == {"age": [30.0, None, 45.5, 60.0], "city": ["SP", "RJ", None, "SP"]}


@slow
def test_without_the_sandbox_the_runner_finds_the_harness_beside_itself(
    training_python, job, reference, settings
):
    settings.UNSAFE_NO_SANDBOX = True
    result = monitor(training_python, job, reference, input_cols=["n"])
    assert result.ok, result
    assert out(job)["inputs"] == {"n": [1, 2, 3, 4]}


# -------------------------------------------------------------------------------- period


@slow
def test_period_skips_and_counts_a_failing_record(training_python, job):
    records_file = records(
        job,
        ({"age": 20.5, "city": "SP", "n": 1, "when": "2024-05-01", "flag": True}, {"proba": 0.1}),
        ({"fail": "second"}, {"proba": 0.2}),
        ([{"age": None, "city": "RJ", "n": 3, "when": None, "flag": False}] * 2, {"proba": 0.3}),
    )
    result = monitor(training_python, job, None, mode="period", records_file=records_file, sample=None)
    assert result.ok, result
    assert result.result == {"rows": 3, "records": 3, "skipped": 1}
    assert out(job) == {
        "inputs": {
            "age": [20.5, None, None],
            "city": ["SP", "RJ", "RJ"],
            "n": [1, 3, 3],
            "when": ["2024-05-01", None, None],
            "flag": [True, False, False],
        },
        "outputs": {"proba": [0.1, 0.3, 0.3]},
        "rows": 3,
        "records": 3,
        "skipped": 1,
        "errors": ["record 2: the preprocess function 'parse' raised: ValueError: bad record second"],
        "shap": None,
    }
    assert "neomaril: skipped record 2: the preprocess function 'parse' raised" in result.output


@slow
def test_period_keeps_the_first_five_messages_and_fails_when_every_record_failed(training_python, job):
    records_file = records(job, *[({"fail": n}, {"proba": 0.5}) for n in range(1, 8)])
    result = monitor(training_python, job, None, mode="period", records_file=records_file)
    assert not result.ok
    assert result.phase == "call"
    assert result.error == (
        "every record failed; the first: record 1: the preprocess function 'parse' raised: ValueError: bad record 1"
    )
    assert result.output.count("neomaril: skipped record") == 5
    assert "bad record 1" in result.traceback


@slow
def test_period_shap_sums_absolute_values_per_input_column(training_python, job):
    records_file = records(
        job,
        ([{"age": 10.0, "n": 1}, {"age": -3.0, "n": 2}], {"proba": 0.1}),
        ({"age": None, "n": 4}, {"proba": 0.2}),
    )
    result = monitor(
        training_python,
        job,
        None,
        mode="period",
        records_file=records_file,
        input_cols=["age", "n"],
        shap_entrypoint="shap_values",
    )
    assert result.ok, result
    # SHAP is age * 2 and -n: |20| + |-6| over 2 values (NaN skipped); |-1| + |-2| + |-4| over 3.
    assert out(job)["shap"] == {"age": {"sum_abs": 26.0, "n": 2}, "n": {"sum_abs": 7.0, "n": 3}}
    assert out(job)["inputs"] == {"age": [10.0, -3.0, None], "n": [1, 2, 4]}


@slow
def test_period_async_reads_each_records_files(training_python, job):
    calls = []
    for number, (age, proba) in enumerate([(30, 0.1), (40, 0.9)], 1):
        (job / "code" / f"in{number}.csv").write_text(f"age\n{age}\n")
        (job / "code" / f"out{number}.csv").write_text(f"proba\n{proba}\n")
        calls.append(
            {"input": str(job / "code" / f"in{number}.csv"), "output": str(job / "code" / f"out{number}.csv")}
        )
    path = job / "work" / "records.jsonl"
    path.write_text("".join(json.dumps(call) + "\n" for call in calls))
    result = monitor(
        training_python,
        job,
        None,
        source=ASYNC_SOURCE,
        mode="period",
        operation="async",
        records_file=str(path),
        input_cols=["age"],
    )
    assert result.ok, result
    assert out(job)["inputs"] == {"age": [30, 40]} and out(job)["outputs"] == {"proba": [0.1, 0.9]}


# ------------------------------------------------------------------------------ protocol


def test_a_monitor_request_carries_exactly_the_spec(tmp_path):
    request = json.dumps({"source": "", "entrypoint": "", "kind": "monitor", "args": []}).encode()
    proc = subprocess.run(
        [str(supported_interpreter("3.8").path), str(RUNNER_PATH), "oneshot"],
        input=struct.pack(">I", len(request)) + request,
        capture_output=True,
        env=build_runner_env({}, home=str(tmp_path)),
        timeout=30,
        check=False,
    )
    assert proc.returncode == 2
    assert b"a 'monitor' request's 'args' must be [spec_json]" in proc.stderr


def test_a_bad_spec_is_a_protocol_error(tmp_path):
    source = tmp_path / "preprocess.py"
    source.write_text("def parse(i, o):\n    return None\n")
    request = json.dumps(
        {
            "source": str(source),
            "entrypoint": "parse",
            "kind": "monitor",
            "args": [json.dumps({"mode": "weekly"})],
        }
    ).encode()
    proc = subprocess.run(
        [str(supported_interpreter("3.8").path), str(RUNNER_PATH), "oneshot"],
        input=struct.pack(">I", len(request)) + request,
        capture_output=True,
        env=build_runner_env({}, home=str(tmp_path)),
        timeout=30,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    frame = json.loads(proc.stdout[4:])
    assert frame["ok"] is False and frame["phase"] == "protocol"
    assert (
        frame["error"]
        == "ProtocolError: monitoring spec: 'mode' must be one of validate, period, not 'weekly'"
    )


def test_harness_compiles_on_the_oldest_supported_python():
    proc = subprocess.run(
        [
            str(supported_interpreter("3.8").path),
            "-c",
            "import ast, sys; ast.parse(open(sys.argv[1]).read(), feature_version=(3, 8))",
            str(MONITORING_HARNESS_PATH),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
