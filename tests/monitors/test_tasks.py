"""Validation and periods through the real harness, sandbox and environment (in-process
tasks, records written as the recorder writes them)."""

from __future__ import annotations

import json
import subprocess
import textwrap
from datetime import timedelta

import pytest
from django.utils import timezone

from models_app import environments
from models_app import services as model_services
from models_app import tasks as model_tasks
from models_app.models import MLModel
from monitoring.models import PredictionRecord
from monitors import services, tasks
from monitors.models import Monitor, Period
from tests.helpers.monitors import configuration, deployed_model, reference_run, registration_form, upload
from tests.helpers.receiver import start_receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

REQUIREMENTS = ["pandas==2.2.3", "pyarrow==17.0.0"]
ROWS = 1000

PREPROCESS = textwrap.dedent(
    """
    import json
    import pandas as pd

    SHIFT = {shift}

    def parse(input, output):
        rows = json.loads(input)
        rows = rows if isinstance(rows, list) else [rows]
        answers = json.loads(output)
        answers = answers if isinstance(answers, list) else [answers]
        features = pd.DataFrame(rows)
        features["b"] = features["b"] + SHIFT
        print("parsed", len(features))
        return features, pd.DataFrame(answers)

    def get_shap(features, model_path):
        n = len(features)
        return pd.DataFrame({{"a": features["a"] * 0.001, "b": [2.0] * n, "c": [-1.0] * n}})

    def broken(input, output):
        raise ValueError("cannot parse " + input[:10])

    def lacks_b(input, output):
        features, answers = parse(input, output)
        return features.drop(columns=["b"]), answers

    def not_frames(input, output):
        return {{"a": 1}}

    def shap_lacks_c(features, model_path):
        return get_shap(features, model_path).drop(columns=["c"])
    """
)


def row(i: int) -> dict:
    return {"a": i, "b": (i * 7) % ROWS, "c": "ABC"[i % 3]}


@pytest.fixture(scope="module")
def env_python(django_db_blocker):
    env_path, _ = model_tasks.prepare_environment("3.11", REQUIREMENTS, lambda line: None)
    return environments.env_python(env_path)


@pytest.fixture
def run(cast, env_python):
    run = reference_run(cast.group)
    frame = [row(i) for i in range(ROWS)]
    script = textwrap.dedent(
        """
        import json, sys
        import pandas as pd
        rows = json.loads(sys.argv[1])
        X = pd.DataFrame(rows)
        X["when"] = pd.date_range("2026-01-01", periods=len(X), freq="h")
        X.to_parquet(sys.argv[2] + "/X_train.parquet")
        pd.DataFrame({"pred": (X["a"] >= 500).astype(int)}).to_parquet(sys.argv[2] + "/model_output.parquet")
        """
    )
    subprocess.run([str(env_python), "-c", script, json.dumps(frame), str(run.artifacts_folder)], check=True)
    return run


@pytest.fixture
def model(cast, run):
    model = deployed_model(
        cast.group,
        run,
        requirements=REQUIREMENTS,
        schema={"a": 1, "b": 7, "c": "B"},
        smoke_result={"pred": 0},
    )
    model.folder.mkdir(parents=True, exist_ok=True)
    (model.folder / "model.pkl").write_bytes(b"\x80\x04K\x01.")
    return model


def register(model, user, config=None, shift=0, **fields) -> Monitor:
    form = registration_form(
        model, config, preprocess=upload("preprocess.py", PREPROCESS.format(shift=shift)), **fields
    )
    assert form.is_valid(), form.errors
    monitor = services.register(model, user, form)
    assert tasks.validate_monitor(monitor.pk) in ("Validated", "Invalidated")
    monitor.refresh_from_db()
    return monitor


def config(**overrides) -> dict:
    return configuration(**{"InputCols": ["a", "b", "c"], "OutputCols": ["pred"], **overrides})


def test_validation_decides_the_reference_bins(model, cast):
    monitor = register(model, cast.owner, config(TrainData={"TrainDateCol": "when"}))
    assert monitor.get_status_display() == "Validated", monitor.log
    reference = monitor.reference
    assert reference["rows"] == ROWS
    a = reference["inputs"]["a"]
    assert a["binning"]["kind"] == "numeric" and len(a["binning"]["edges"]) == 9
    assert a["counts"] == [100] * 10 + [0]  # deciles of 0 … 999, then the missing bin
    assert reference["inputs"]["c"]["binning"] == {"kind": "categorical", "categories": ["A", "B", "C"]}
    assert sum(reference["outputs"]["pred"]["counts"]) == ROWS
    assert reference["date_range"][0].startswith("2026-01-01")
    assert "parsed 1" in monitor.log  # the preprocess's prints reach the validation's log
    assert monitor.env_fingerprint and monitor.validated_at is not None


@pytest.mark.parametrize(
    ("overrides", "fields", "expected"),
    [
        ({"InputCols": ["a", "zzz"]}, {}, ["InputCols", "zzz"]),
        ({"OutputCols": ["proba"]}, {}, ["OutputCols", "proba"]),
        ({"TrainData": {"TrainDateCol": "created"}}, {}, ["TrainDateCol", "created"]),
        ({}, {"preprocess_reference": "broken"}, ["broken", "cannot parse"]),
        ({}, {"preprocess_reference": "lacks_b"}, ["InputCols", "b"]),
        ({}, {"preprocess_reference": "not_frames"}, ["not_frames"]),
        ({}, {"shap_reference": "shap_lacks_c"}, ["SHAP output lacks InputCols", "'c'"]),
    ],
)
def test_each_invalid_registration_is_invalidated_with_its_message(model, cast, overrides, fields, expected):
    monitor = register(model, cast.owner, config(**overrides), **fields)
    assert monitor.get_status_display() == "Invalidated", monitor.log
    for word in expected:
        assert word in monitor.error_message, monitor.error_message
    with pytest.raises(services.NotValidated):
        services.request_period(monitor, None, cast.owner)


def test_a_sync_model_not_built_yet_is_invalidated_with_the_reason(model, cast):
    model.smoke_result = None
    model.status = "Building"
    model.save()
    monitor = register(model, cast.owner, config())
    assert "no smoke-test answer yet (it is Building)" in monitor.error_message


def test_an_empty_reference_is_invalidated_not_a_crash_of_every_period(model, cast, run, env_python):
    # X_train and model_output with their columns but no rows: nothing to compare periods with.
    script = (
        "import sys, pandas as pd\n"
        "pd.DataFrame({'a': [], 'b': [], 'c': []}).to_parquet(sys.argv[1] + '/X_train.parquet')\n"
        "pd.DataFrame({'pred': []}).to_parquet(sys.argv[1] + '/model_output.parquet')\n"
    )
    subprocess.run([str(env_python), "-c", script, str(run.artifacts_folder)], check=True)
    monitor = register(model, cast.owner, config(Period="Year"))
    assert monitor.get_status_display() == "Invalidated", monitor.log
    assert monitor.error_message == (
        "The reference input column a has no rows: the run's X_train is empty, so there is nothing "
        "to compare the periods with. Register with a run whose data has rows."
    )


@pytest.fixture
def webhook(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]  # the receiver is on loopback
    receiver, server = start_receiver()
    yield receiver
    server.shutdown()


def record_calls(model, rows: list[dict], per_call: int = 10, broken: int = 0) -> None:
    now = timezone.now()
    records = [
        PredictionRecord(
            model=model,
            at=now - timedelta(seconds=1),
            status_code=200,
            latency_ms=3.0,
            input=json.dumps(rows[i : i + per_call]),
            output=json.dumps(
                [
                    {"pred": int(r["a"] >= 500) if isinstance(r["a"], int) else 0}
                    for r in rows[i : i + per_call]
                ]
            ),
        )
        for i in range(0, len(rows), per_call)
    ]
    records += [
        PredictionRecord(model=model, at=now, status_code=200, latency_ms=1.0, input="{not json", output="{}")
        for _ in range(broken)
    ]
    # failed calls are not monitored, nor a version's trial through its own URL while another is live
    records.append(
        PredictionRecord(model=model, at=now, status_code=422, latency_ms=1.0, input="[]", output="error")
    )
    records.append(
        PredictionRecord(
            model=model,
            version=2,
            live=False,
            at=now,
            status_code=200,
            latency_ms=1.0,
            input="{not json",
            output="{}",
        )
    )
    # nor a call recorded without its input and answer (over NEOMARIL_RECORD_MAX_KB)
    records.append(
        PredictionRecord(
            model=model, at=now, status_code=200, latency_ms=1.0, input="", output="", payload_kept=False
        )
    )
    PredictionRecord.objects.bulk_create(records)


def run_now(monitor, user) -> Period:
    period = services.request_period(monitor, None, user)
    assert tasks.run_period(period.pk) in ("Succeeded", "Failed")
    period.refresh_from_db()
    return period


def test_a_shifted_feature_drifts_and_the_others_stay_stable(model, cast, webhook, settings):
    settings.MONITORING_BATCH_SIZE = 40  # 100 calls → 3 batches, counts added up
    monitor = register(model, cast.owner, config(Period="Year"), shift=2000, webhook_url=webhook.url)
    assert monitor.status == Monitor.Status.VALIDATED, monitor.log
    record_calls(model, [row(i) for i in range(ROWS)], broken=2)
    period = run_now(monitor, cast.owner)
    assert period.status == "Succeeded", period.log
    assert (period.records, period.rows, period.skipped) == (102, ROWS, 2)
    columns = {c.column: c for c in period.columns.all()}
    assert columns["b"].status == "drift" and columns["b"].psi > 5
    for stable in ("a", "c", "pred"):
        assert columns[stable].psi == pytest.approx(0.0, abs=1e-9) and columns[stable].status == "stable"
    assert period.drift_status == "drift"
    assert period.average_psi == pytest.approx(columns["b"].psi / 3)
    assert period.shap == {"a": pytest.approx(0.4995), "b": pytest.approx(2.0), "c": pytest.approx(1.0)}
    assert columns["a"].mean_abs_shap == pytest.approx(0.4995)
    assert "Batch 3" in period.log and "Skipped: record" in period.log
    assert period.webhook_status.startswith("delivered: HTTP 204")
    (notice,) = [json.loads(sent.body) for sent in webhook.requests]
    assert notice["event"] == "monitoring.drift" and notice["model"]["hash"] == model.hash
    assert notice["period"]["drift_status"] == "drift"
    assert [c["column"] for c in notice["columns"]] == ["b"]


def test_a_period_below_the_minimum_is_insufficient(model, cast):
    monitor = register(model, cast.owner, config(Period="Year"), minimum_rows="5000")
    record_calls(model, [row(i) for i in range(100)])
    period = run_now(monitor, cast.owner)
    assert period.status == "Succeeded", period.log
    assert period.drift_status == "insufficient" and period.average_psi is None
    assert {(c.status, c.psi) for c in period.columns.all()} == {("insufficient", None)}
    assert period.rows == 100 and period.webhook_status == ""


def test_a_period_without_records_is_insufficient(model, cast):
    monitor = register(model, cast.owner, config(Period="Year"))
    period = run_now(monitor, cast.owner)
    assert (period.status, period.records, period.rows, period.drift_status) == (
        "Succeeded",
        0,
        0,
        "insufficient",
    )
    assert "No records in this period" in period.log


def test_a_non_number_in_a_numeric_column_fails_the_period_naming_it(model, cast):
    monitor = register(model, cast.owner, config(Period="Year"), shap_reference="")
    record_calls(model, [{**row(i), "a": "many"} for i in range(20)])
    period = run_now(monitor, cast.owner)
    assert period.status == "Failed" and "input column a" in period.error_message
    assert "many" in period.error_message


def test_a_period_longer_than_its_task_goes_on_in_the_next(model, cast, settings, monkeypatch):
    settings.MONITORING_BATCH_SIZE = 30
    # No time left after a batch: every task does one batch and hands over.
    settings.Q_CLUSTER = {
        **settings.Q_CLUSTER,
        "timeout": settings.MONITORING_TIMEOUT + tasks.TASK_TIMEOUT_MARGIN,
    }
    continued = []
    monkeypatch.setattr(
        services, "async_task", lambda *args, **kwargs: continued.append(kwargs.get("continuation"))
    )
    monitor = register(model, cast.owner, config(Period="Year"), shift=2000)
    record_calls(model, [row(i) for i in range(ROWS)], per_call=10)  # 100 calls → 4 batches
    period = services.request_period(monitor, None, cast.owner)
    outcomes = [tasks.run_period(period.pk)]
    while outcomes[-1] == "continued in a new task" and len(outcomes) < 10:
        period.refresh_from_db()
        assert period.status == "Queued" and period.progress["batches"] == len(outcomes)
        outcomes.append(tasks.run_period(period.pk, continuation=True))
    assert outcomes == ["continued in a new task"] * 3 + ["Succeeded"]
    period.refresh_from_db()
    assert (period.records, period.rows, period.attempts, period.progress) == (100, ROWS, 1, None)
    assert {c.column: c.status for c in period.columns.all()} == {
        "a": "stable",
        "b": "drift",
        "c": "stable",
        "pred": "stable",
    }
    assert continued[-3:] == [True, True, True]
    assert "Going on after batch 3 (90 record(s) done)" in period.log


def _after_each_batch(model, cast, settings, monkeypatch, meanwhile) -> Monitor:
    """A Year monitor over 100 recorded calls (4 batches); `meanwhile(monitor)` runs each
    time a batch has been through the sandbox."""
    settings.MONITORING_BATCH_SIZE = 30
    monkeypatch.setattr(services, "async_task", lambda *args, **kwargs: None)
    monitor = register(model, cast.owner, config(Period="Year"))
    record_calls(model, [row(i) for i in range(ROWS)], per_call=10)
    run_harness = tasks._run_harness

    def then_meanwhile(*args, **kwargs):
        result = run_harness(*args, **kwargs)
        meanwhile(monitor)
        return result

    monkeypatch.setattr(tasks, "_run_harness", then_meanwhile)
    return monitor


def test_a_period_stops_when_the_model_is_registered_again_while_it_runs(model, cast, settings, monkeypatch):
    run_harness = tasks._run_harness
    # While a batch is in the sandbox, the model is registered again (and validated).
    monitor = _after_each_batch(
        model,
        cast,
        settings,
        monkeypatch,
        lambda monitor: Monitor.objects.filter(pk=monitor.pk).update(registered_at=timezone.now()),
    )
    period = run_now(monitor, cast.owner)
    assert period.status == "Failed" and "registered again while this period ran" in period.error_message
    assert not period.columns.exists()
    # A period handed over to its next task checks it too: its counts are the old bins'.
    monkeypatch.setattr(tasks, "_run_harness", run_harness)
    settings.Q_CLUSTER = {
        **settings.Q_CLUSTER,
        "timeout": settings.MONITORING_TIMEOUT + tasks.TASK_TIMEOUT_MARGIN,
    }
    second = services.request_period(monitor, None, cast.owner)
    assert tasks.run_period(second.pk) == "continued in a new task"
    Monitor.objects.filter(pk=monitor.pk).update(registered_at=timezone.now())
    assert tasks.run_period(second.pk, continuation=True) == "Failed"


def test_a_period_fails_when_the_model_is_deleted_while_it_runs(model, cast, settings, monkeypatch):
    # The deletion lands while the first batch is in the sandbox: it purges the calls, so
    # the next batch comes up empty and the counts so far are a fraction of the window's.
    def deleted_meanwhile(monitor):
        if not MLModel.objects.filter(pk=model.pk, status=MLModel.Status.DELETED).exists():
            model_services.delete(model, cast.owner)

    monitor = _after_each_batch(model, cast, settings, monkeypatch, deleted_meanwhile)
    period = run_now(monitor, cast.owner)
    assert period.status == "Failed" and "model was deleted while this period ran" in period.error_message
    assert not period.columns.exists()


def test_results_planted_as_a_link_are_not_read(tmp_path):
    secret = tmp_path / "secret_key"
    secret.write_text('{"inputs": {"a": ["platform secret"]}}')
    folder = tmp_path / "sandbox"
    folder.mkdir()
    (folder / tasks.OUT_FILE).symlink_to(secret)
    with pytest.raises(tasks.MonitoringFailed, match="did not leave its results: out.json can't be kept"):
        tasks._read_out(folder)
    (folder / tasks.OUT_FILE).unlink()
    (folder / tasks.OUT_FILE).write_text("[1]")
    with pytest.raises(tasks.MonitoringFailed, match="not a JSON object"):
        tasks._read_out(folder)
