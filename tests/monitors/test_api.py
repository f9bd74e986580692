"""The monitoring API without workers: register, read, change, delete; periods and merges.

Monitors, periods and column results are created directly where the job is not what a
test is about; queued work is caught by patching `monitors.services.async_task` (the
django-q2 call the services make on commit), so no environment is ever built here.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from unittest import mock

import pytest

from models_app.models import MLModel
from monitors.forms import MonitoringSettingsForm
from monitors.models import Monitor, Period
from tests.helpers.clients import api_client
from tests.helpers.monitors import make_monitor, make_period, uploaded_long_ago
from tests.helpers.training import finished_run, make_experiment
from tests.helpers.uploads import file

API = "/api/v1/monitoring"

PREPROCESS = """
import pandas as pd


def parse(input, output):
    return pd.DataFrame([{"age": 1}]), pd.DataFrame([{"pred": 0}])


def explain(features, model_path):
    return features
"""


@pytest.fixture
def run(cast):
    return finished_run(make_experiment(cast.group, cast.owner))


@pytest.fixture
def model(cast):
    return uploaded_long_ago(
        MLModel.objects.create(
            name="scored",
            group=cast.group,
            operation=MLModel.Operation.SYNC,
            model_reference="score",
            python_version="3.9",
            source_file="app.py",
            model_file="model.pkl",
            requirements_file="requirements.txt",
            status=MLModel.Status.DEPLOYED,
            created_by=cast.owner,
        )
    )


@pytest.fixture
def queued():
    """What the services queued (django-q2's async_task), run on commit."""
    with mock.patch("monitors.services.async_task") as async_task:
        yield async_task


def configuration(run, **overrides) -> dict:
    config = {
        "Period": "Day",
        "TrainData": {
            "NeomarilTrainingExecution": f"{run.experiment.hash}/{run.number}",
            "TrainDateRef": "2026-01-31",
        },
        "InputCols": ["age", "income"],
        "OutputCols": ["pred"],
    }
    config.update(overrides)
    return config


def payload(run, **overrides) -> dict:
    body = {
        "configuration": file("configuration.json", json.dumps(configuration(run))),
        "preprocess": file("preprocess.py", PREPROCESS),
        "preprocess_reference": "parse",
        "shap_reference": "explain",
        "requirements": file("requirements.txt", "scipy\n"),
        "webhook_url": "https://hooks.example/drift",
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not None}


# ----------------------------------------------------------------------- register


def test_register_answers_202_and_queues_the_validation(
    cast, model, run, queued, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(cast.owner).post(f"{API}/{model.hash}", payload(run), format="multipart")
    assert response.status_code == 202, response.content
    body = response.json()
    monitor = Monitor.objects.get(model=model)
    assert body["model"] == model.hash
    assert body["status"] == "Unvalidated" and body["message"] == ""
    assert body["period"] == "Day"
    assert body["training_run"] == {"experiment": run.experiment.hash, "number": 1, "training_type": "Custom"}
    assert (body["train_date_ref"], body["train_date_col"]) == ("2026-01-31", "")
    assert (body["input_cols"], body["output_cols"]) == (["age", "income"], ["pred"])
    assert (body["preprocess_reference"], body["shap_reference"]) == ("parse", "explain")
    assert body["requirements"] == ["scipy"]
    assert body["webhook_url"] == "https://hooks.example/drift"
    assert (body["warning_threshold"], body["drift_threshold"]) == (0.1, 0.25)
    assert body["reference_rows"] is None and body["validated_at"] is None and body["last_period"] is None
    assert body["registered_by"] == "owner" and body["registered_at"]
    queued.assert_called_once()  # what is queued, and for which row (the task's options are the services')
    assert queued.call_args.args == ("monitors.tasks.validate_monitor", monitor.pk)
    assert (monitor.code_folder / "preprocess.py").read_text() == PREPROCESS


def test_teammates_and_admins_register_outsiders_get_404(cast, model, run, queued):
    assert api_client(cast.teammate).post(f"{API}/{model.hash}", payload(run)).status_code == 202
    assert api_client(cast.admin).post(f"{API}/{model.hash}", payload(run)).status_code == 202
    assert Monitor.objects.get(model=model).registered_by == cast.admin  # registering again replaces
    Monitor.objects.all().delete()
    response = api_client(cast.outsider).post(f"{API}/{model.hash}", payload(run))
    assert response.status_code == 404
    assert response.json()["detail"] == f"No model '{model.hash}' among your groups' models."
    assert not Monitor.objects.exists()


def test_register_reports_every_missing_part(cast, model):
    response = api_client(cast.owner).post(f"{API}/{model.hash}", {}, format="multipart")
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert errors["configuration"] == ["Upload the monitoring configuration (a JSON file)."]
    assert errors["preprocess"] == ["Upload the preprocess script (a .py file)."]
    assert errors["preprocess_reference"] == ["Name the preprocess function, e.g. parse."]
    assert not Monitor.objects.exists()


def test_register_reads_a_utf16_configuration_and_requirements_and_a_latin1_preprocess(
    cast, model, run, queued
):
    preprocess = b"# -*- coding: latin-1 -*-\n" + PREPROCESS.replace('"age"', '"\xe2ge"').encode("latin-1")
    response = api_client(cast.owner).post(
        f"{API}/{model.hash}",
        payload(
            run,
            configuration=file("configuration.json", json.dumps(configuration(run)).encode("utf-16")),
            requirements=file("requirements.txt", "scipy\r\n".encode("utf-16")),
            preprocess=file("preprocess.py", preprocess),
        ),
        format="multipart",
    )
    assert response.status_code == 202, response.content
    body = response.json()
    assert body["period"] == "Day" and body["requirements"] == ["scipy"]
    # Stored as sent: the harness imports it by its coding line.
    assert (Monitor.objects.get(model=model).code_folder / "preprocess.py").read_bytes() == preprocess


def test_register_refuses_a_configuration_no_json_reader_decodes(cast, model, run):
    response = api_client(cast.owner).post(
        f"{API}/{model.hash}",
        payload(run, configuration=file("configuration.json", b'{"Period": "D\xeda"}')),
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["errors"]["configuration"] == [
        "'configuration.json' is not UTF-8 text (line 1). Save it as UTF-8 and upload it again."
    ]


def test_register_reports_a_bad_configuration_at_its_field(cast, model, run):
    bad = configuration(run, Period="Hour")
    response = api_client(cast.owner).post(
        f"{API}/{model.hash}",
        payload(run, configuration=file("configuration.json", json.dumps(bad))),
        format="multipart",
    )
    assert response.status_code == 400
    assert response.json()["errors"]["configuration"] == [
        'Period must be one of Day, Week, Month, Year, not "Hour".'
    ]
    assert response.json()["detail"].startswith("configuration: Period must be one of Day")


def test_anonymous_callers_get_401(model):
    assert api_client().get(f"{API}/{model.hash}").status_code == 401


# ----------------------------------------------------------------------- read, change, delete


def test_get_shows_the_monitor_and_its_last_period(cast, model, run):
    monitor = make_monitor(model, run, cast.owner, error_message="")
    make_period(monitor, 25)
    last = make_period(monitor, 26)
    body = api_client(cast.teammate).get(f"{API}/{model.hash}").json()
    assert body["status"] == "Validated" and body["reference_rows"] == 500
    assert body["registered_by"] == "owner"
    assert body["last_period"]["id"] == last.pk
    assert body["last_period"]["start"] == "2026-05-26T00:00:00Z"
    assert [c["column"] for c in body["last_period"]["columns"]] == ["age", "city", "pred"]


def test_last_period_is_of_the_current_registration(cast, model, run):
    """Registered by the day, then again by the week: the day (a later start than the week
    holding it) is no longer the model's verdict."""
    monitor = make_monitor(model, run, registered_at=datetime(2026, 5, 1, tzinfo=UTC))
    day = make_period(monitor, 26, drift_status="drift", psi=0.9)
    Monitor.objects.filter(pk=monitor.pk).update(
        registered_at=datetime(2026, 5, 27, tzinfo=UTC), period="Week"
    )
    monitor.refresh_from_db()
    client = api_client(cast.owner)
    assert client.get(f"{API}/{model.hash}").json()["last_period"] is None
    week = make_period(monitor, 25, kind="Week", end=datetime(2026, 6, 1, tzinfo=UTC))
    assert client.get(f"{API}/{model.hash}").json()["last_period"]["id"] == week.pk
    listed = {
        p["id"]: p["current_registration"]
        for p in client.get(f"{API}/{model.hash}/periods").json()["periods"]
    }
    assert listed == {week.pk: True, day.pk: False}


def test_validating_is_shown_as_validating(cast, model, run):
    make_monitor(model, run, status=Monitor.Status.VALIDATING)
    assert api_client(cast.owner).get(f"{API}/{model.hash}").json()["status"] == "Validating"


def test_get_answers_404_to_outsiders_unknown_models_and_unmonitored_ones(cast, model, run):
    owner = api_client(cast.owner)
    not_monitored = owner.get(f"{API}/{model.hash}")
    assert not_monitored.status_code == 404
    assert not_monitored.json()["detail"] == (
        f"Model '{model.hash}' is not monitored: register it with POST /api/v1/monitoring/{model.hash}."
    )
    make_monitor(model, run)
    assert owner.get(f"{API}/{model.hash}").status_code == 200
    assert api_client(cast.outsider).get(f"{API}/{model.hash}").status_code == 404
    assert owner.get(f"{API}/M{'0' * 32}").status_code == 404


def test_patch_changes_only_the_fields_sent(cast, model, run):
    make_monitor(model, run, webhook_url="https://hooks.example/a", minimum_rows=50)
    response = api_client(cast.teammate).patch(f"{API}/{model.hash}", {"drift_threshold": 0.3}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["warning_threshold"], body["drift_threshold"], body["minimum_rows"]) == (0.1, 0.3, 50)
    assert body["webhook_url"] == "https://hooks.example/a"
    monitor = Monitor.objects.get(model=model)
    assert monitor.drift_threshold == 0.3 and monitor.status == Monitor.Status.VALIDATED


def test_patch_reports_bad_settings(cast, model, run):
    make_monitor(model, run)
    client = api_client(cast.owner)
    response = client.patch(f"{API}/{model.hash}", {"warning_threshold": 0.5}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["drift_threshold"] == [
        "The drift threshold (0.25) must be above the warning threshold (0.5)."
    ]
    not_an_object = client.patch(f"{API}/{model.hash}", [1, 2], format="json")
    assert not_an_object.status_code == 400
    assert not_an_object.json()["detail"] == "Send a JSON object, not list."
    # A JSON boolean is not a threshold (float(True) stored 1.0).
    boolean = client.patch(f"{API}/{model.hash}", {"drift_threshold": True}, format="json")
    assert boolean.status_code == 400 and boolean.json()["errors"]["drift_threshold"] == ["Enter a number."]
    assert Monitor.objects.get(model=model).warning_threshold == 0.1
    assert Monitor.objects.get(model=model).drift_threshold == 0.25


def test_patch_keeps_what_the_worker_wrote_meanwhile(cast, model, run, monkeypatch):
    # The validation settles while the PATCH is being handled: saving the settings must not
    # write back the status, reference and log the view read before.
    monitor = make_monitor(model, run, status=Monitor.Status.VALIDATING, reference=None, log="started\n")
    real_is_valid = MonitoringSettingsForm.is_valid

    def worker_finishes_first(form):
        Monitor.objects.filter(pk=monitor.pk).update(
            status=Monitor.Status.VALIDATED, reference={"rows": 7}, log="started\nValidated.\n"
        )
        return real_is_valid(form)

    monkeypatch.setattr(MonitoringSettingsForm, "is_valid", worker_finishes_first)
    response = api_client(cast.owner).patch(f"{API}/{model.hash}", {"minimum_rows": 5}, format="json")
    assert response.status_code == 200, response.content
    monitor.refresh_from_db()
    assert (monitor.status, monitor.reference, monitor.log) == (
        Monitor.Status.VALIDATED,
        {"rows": 7},
        "started\nValidated.\n",
    )
    assert monitor.minimum_rows == 5


@pytest.mark.parametrize("value", [3_000_000_000, 9_223_372_036_854_775_807])
def test_patch_bounds_minimum_rows_as_registration_does(cast, model, run, value):
    make_monitor(model, run)
    response = api_client(cast.owner).patch(f"{API}/{model.hash}", {"minimum_rows": value}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["minimum_rows"] == [
        "Ensure this value is less than or equal to 2147483647."
    ]
    assert Monitor.objects.get(model=model).minimum_rows == 100


def test_patch_and_delete_answer_404_to_outsiders(cast, model, run):
    make_monitor(model, run)
    outsider = api_client(cast.outsider)
    assert outsider.patch(f"{API}/{model.hash}", {"minimum_rows": 5}, format="json").status_code == 404
    assert outsider.delete(f"{API}/{model.hash}").status_code == 404
    assert Monitor.objects.get(model=model).minimum_rows == 100


def test_delete_removes_the_registration_its_periods_and_files(
    cast, model, run, django_capture_on_commit_callbacks
):
    monitor = make_monitor(model, run)
    make_period(monitor, 26)
    monitor.code_folder.mkdir(parents=True)
    (monitor.code_folder / "preprocess.py").write_text(PREPROCESS)
    client = api_client(cast.teammate)
    with django_capture_on_commit_callbacks(execute=True):  # the folder goes once the delete commits
        assert client.delete(f"{API}/{model.hash}").status_code == 204
    assert not Monitor.objects.exists() and not Period.objects.exists()
    assert not monitor.folder.exists()
    assert client.get(f"{API}/{model.hash}").status_code == 404
    assert client.delete(f"{API}/{model.hash}").status_code == 404


def test_wrong_methods_answer_405(cast, model, run):
    monitor = make_monitor(model, run)
    period = make_period(monitor, 26)
    client = api_client(cast.owner)
    assert client.put(f"{API}/{model.hash}", {}, format="json").status_code == 405
    assert client.delete(f"{API}/{model.hash}/periods").status_code == 405
    assert client.post(f"{API}/{model.hash}/periods/{period.pk}").status_code == 405
    assert client.post(f"{API}/{model.hash}/merged").status_code == 405


# ----------------------------------------------------------------------- periods


def test_periods_are_listed_newest_first_with_their_columns(cast, model, run):
    monitor = make_monitor(model, run)
    older = make_period(monitor, 25)
    newer = make_period(monitor, 26, status=Period.Status.FAILED, error_message="preprocess raised")
    body = api_client(cast.teammate).get(f"{API}/{model.hash}/periods").json()
    assert [p["id"] for p in body["periods"]] == [newer.pk, older.pk]
    first, second = body["periods"]
    assert (first["status"], first["error_message"], first["columns"]) == ("Failed", "preprocess raised", [])
    assert set(second) == {
        "id", "kind", "start", "end", "status", "trigger", "registered_at", "current_registration",
        "records", "rows", "skipped", "average_psi", "drift_status", "error_message", "requested_at",
        "started_at", "finished_at", "columns",
    }  # fmt: skip
    assert second["current_registration"] is True
    assert (second["kind"], second["trigger"], second["drift_status"], second["rows"]) == (
        "Day",
        "schedule",
        "stable",
        60,
    )
    assert second["columns"][0] == {
        "role": "input",
        "column": "age",
        "psi": 0.05,
        "status": "stable",
        "rows": 60,
        "mean_abs_shap": 0.4,
    }
    assert api_client(cast.outsider).get(f"{API}/{model.hash}/periods").status_code == 404


def test_periods_are_listed_by_status_and_the_newest_few(cast, model, run):
    monitor = make_monitor(model, run)
    statuses = ["Succeeded", "Failed", "Succeeded", "Running", "Queued", "Succeeded"]
    made = [make_period(monitor, day, status=status) for day, status in enumerate(statuses, start=20)]
    client = api_client(cast.teammate)

    def listed(query: str) -> list[int]:
        response = client.get(f"{API}/{model.hash}/periods?{query}")
        assert response.status_code == 200, response.json()
        return [period["id"] for period in response.json()["periods"]]

    newest_first = [period.pk for period in reversed(made)]
    assert listed("") == newest_first
    assert listed("status=Queued,Running") == [made[4].pk, made[3].pk]  # what the tab follows
    assert listed("status=Failed") == [made[1].pk]
    assert listed("status=Succeeded, Failed") == [made[5].pk, made[2].pk, made[1].pk, made[0].pk]
    assert listed("limit=2") == newest_first[:2]
    assert listed("limit=500") == newest_first
    assert listed("status=Succeeded&limit=2") == [made[5].pk, made[2].pk]
    assert listed("status=Queued&limit=1") == [made[4].pk]


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        (
            "status=Done",
            "status",
            "'Done' is not a list of period statuses: use one or more of Queued, Running",
        ),
        ("status=", "status", "'' is not a list of period statuses"),
        ("status=Queued,", "status", "'Queued,' is not a list of period statuses"),
        ("status=queued", "status", "'queued' is not a list"),
        ("limit=0", "limit", "'0' is not a limit: use a whole number from 1 to 500."),
        ("limit=501", "limit", "'501' is not a limit"),
        ("limit=", "limit", "'' is not a limit"),
        ("limit=ten", "limit", "'ten' is not a limit"),
        ("limit=%2B5", "limit", "'+5' is not a limit"),
    ],
)
def test_a_bad_status_or_limit_is_a_400_naming_it(cast, model, run, query, field, message):
    make_period(make_monitor(model, run), 20)
    response = api_client(cast.owner).get(f"{API}/{model.hash}/periods?{query}")
    assert response.status_code == 400
    assert list(response.json()["errors"]) == [field]
    assert message in response.json()["errors"][field][0]


def test_requesting_a_period_queues_the_one_containing_the_date(
    cast, model, run, queued, django_capture_on_commit_callbacks
):
    make_monitor(model, run)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(cast.teammate).post(
            f"{API}/{model.hash}/periods", {"date": "2026-05-26"}, format="json"
        )
    assert response.status_code == 202, response.content
    body = response.json()
    period = Period.objects.get(pk=body["id"])
    assert (body["start"], body["end"]) == ("2026-05-26T00:00:00Z", "2026-05-27T00:00:00Z")
    assert (body["status"], body["trigger"], body["kind"]) == ("Queued", "demand", "Day")
    assert period.requested_by == cast.teammate
    queued.assert_called_once()
    assert queued.call_args.args == ("monitors.tasks.run_period", period.pk)


def test_a_period_is_found_by_a_datetime_and_a_queued_one_is_returned_as_it_is(cast, model, run, queued):
    make_monitor(model, run, period="Week")
    client = api_client(cast.owner)
    first = client.post(
        f"{API}/{model.hash}/periods", {"date": "2026-05-27T23:30:00+00:00"}, format="json"
    ).json()
    assert (first["kind"], first["start"], first["end"]) == (
        "Week",
        "2026-05-25T00:00:00Z",
        "2026-06-01T00:00:00Z",
    )
    again = client.post(f"{API}/{model.hash}/periods", {"date": "2026-05-31T10:00:00"}, format="json")
    assert again.status_code == 202 and again.json()["id"] == first["id"]
    assert Period.objects.count() == 1


def test_without_a_date_the_current_period_is_requested(cast, model, run, queued):
    make_monitor(model, run)
    response = api_client(cast.owner).post(f"{API}/{model.hash}/periods", {}, format="json")
    assert response.status_code == 202
    today = datetime.now(UTC).date().isoformat()
    assert response.json()["start"] == f"{today}T00:00:00Z"


@pytest.mark.parametrize("value", ["26/05/2026", "2026-13-01", "yesterday", 20260526, "2026-05-26T25:00"])
def test_a_bad_date_is_a_400_naming_it_and_the_formats(cast, model, run, value):
    make_monitor(model, run)
    response = api_client(cast.owner).post(f"{API}/{model.hash}/periods", {"date": value}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"]["date"] == [
        f"{value!r} is not a date: use YYYY-MM-DD or an ISO 8601 datetime such as 2026-05-26T14:30:00Z."
    ]
    assert not Period.objects.exists()


@pytest.mark.parametrize(
    "status", [Monitor.Status.UNVALIDATED, Monitor.Status.VALIDATING, Monitor.Status.INVALIDATED]
)
def test_periods_of_a_monitor_that_is_not_validated_are_a_409_naming_its_status(cast, model, run, status):
    monitor = make_monitor(model, run, status=status, error_message="InputCols: no column 'age'")
    response = api_client(cast.owner).post(
        f"{API}/{model.hash}/periods", {"date": "2026-05-26"}, format="json"
    )
    assert response.status_code == 409
    detail = response.json()["detail"]
    assert f"is {monitor.get_status_display()};" in detail and "once it is Validated" in detail
    assert response.json()["code"] == "conflict"
    assert not Period.objects.exists()


def test_requesting_a_period_answers_404_to_outsiders_and_for_unmonitored_models(cast, model, run):
    assert api_client(cast.owner).post(f"{API}/{model.hash}/periods", {}, format="json").status_code == 404
    make_monitor(model, run)
    assert api_client(cast.outsider).post(f"{API}/{model.hash}/periods", {}, format="json").status_code == 404
    assert not Period.objects.exists()


def test_a_period_in_detail_has_its_bins_counts_and_proportions(cast, model, run):
    monitor = make_monitor(model, run)
    period = make_period(monitor, 26, webhook_status="delivered: HTTP 204 (1 attempt)")
    response = api_client(cast.teammate).get(f"{API}/{model.hash}/periods/{period.pk}")
    assert response.status_code == 200
    body = response.json()
    assert body["log"] == "2026-05-27 00:00:01 preprocessing 60 records\n"
    assert body["shap"] == {"age": 0.4, "city": 0.1}
    assert body["webhook_status"] == "delivered: HTTP 204 (1 attempt)"
    age, city, pred = body["columns"]
    assert age["kind"] == "numeric" and age["labels"] == ["(-inf, 30]", "(30, 50]", "(50, +inf)", "(missing)"]
    assert (age["reference_counts"], age["period_counts"]) == ([100, 200, 200, 0], [10, 20, 30, 0])
    assert age["reference_proportions"] == [0.2, 0.4, 0.4, 0.0]
    assert age["period_proportions"] == pytest.approx([1 / 6, 1 / 3, 1 / 2, 0.0])
    assert (age["psi"], age["status"], age["rows"], age["mean_abs_shap"], age["role"]) == (
        0.05,
        "stable",
        60,
        0.4,
        "input",
    )
    assert city["kind"] == "categorical" and city["labels"] == ["rio", "sp", "(unseen)", "(missing)"]
    assert (pred["role"], pred["mean_abs_shap"]) == ("output", None)


def test_an_unknown_period_or_another_models_period_is_a_404(cast, model, run):
    monitor = make_monitor(model, run)
    other_model = MLModel.objects.create(
        name="other", group=cast.group, model_reference="score", python_version="3.9", created_by=cast.owner
    )
    foreign = make_period(make_monitor(other_model, run), 26)
    client = api_client(cast.owner)
    missing = client.get(f"{API}/{model.hash}/periods/999999")
    assert missing.status_code == 404
    assert missing.json()["detail"] == f"The monitoring of model '{model.hash}' has no period 999999."
    assert client.get(f"{API}/{model.hash}/periods/{foreign.pk}").status_code == 404
    period = make_period(monitor, 26)
    assert api_client(cast.outsider).get(f"{API}/{model.hash}/periods/{period.pk}").status_code == 404


# ----------------------------------------------------------------------- merged


def test_merged_adds_the_counts_of_the_succeeded_periods_in_the_range(cast, model, run):
    monitor = make_monitor(model, run)
    first = make_period(monitor, 25, age_counts=(10, 20, 30, 0))
    second = make_period(monitor, 26, age_counts=(30, 20, 10, 0))
    make_period(monitor, 27, status=Period.Status.FAILED)
    make_period(monitor, 28)  # outside [25, 27)
    response = api_client(cast.teammate).get(f"{API}/{model.hash}/merged?start=2026-05-25&end=2026-05-27")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["start"], body["end"], body["periods"]) == (
        "2026-05-25",
        "2026-05-27",
        [first.pk, second.pk],
    )
    age = next(c for c in body["columns"] if c["column"] == "age")
    assert age["period_counts"] == [40, 40, 40, 0] and age["reference_counts"] == [100, 200, 200, 0]
    assert age["rows"] == 120 and age["labels"][-1] == "(missing)" and age["role"] == "input"
    assert age["period_proportions"] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.0])
    assert body["drift_status"] in ("stable", "warning", "drift") and body["average_psi"] is not None


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ("end=2026-05-27", "start", "Give start as YYYY-MM-DD, e.g. start=2026-05-01."),
        ("start=2026-05-25", "end", "Give end as YYYY-MM-DD, e.g. end=2026-05-01."),
        (
            "start=25/05/2026&end=2026-05-27",
            "start",
            "'25/05/2026' is not a date: use YYYY-MM-DD, e.g. start=2026-05-01.",
        ),
        (
            "start=2026-05-25&end=20260527",
            "end",
            "'20260527' is not a date: use YYYY-MM-DD, e.g. end=2026-05-01.",
        ),
        (
            "start=2026-05-27&end=2026-05-27",
            "end",
            "end (2026-05-27) must be after start (2026-05-27): the range is [start, end).",
        ),
    ],
)
def test_merged_reports_a_bad_range(cast, model, run, query, field, message):
    make_monitor(model, run)
    response = api_client(cast.owner).get(f"{API}/{model.hash}/merged?{query}")
    assert response.status_code == 400
    assert response.json()["errors"][field] == [message]


def test_merged_without_a_finished_period_is_a_400_that_says_so(cast, model, run):
    monitor = make_monitor(model, run)
    make_period(monitor, 25, status=Period.Status.FAILED)
    response = api_client(cast.owner).get(f"{API}/{model.hash}/merged?start=2026-05-01&end=2026-06-01")
    assert response.status_code == 400
    assert response.json()["detail"] == "No finished period lies between 2026-05-01 and 2026-06-01."
    assert (
        api_client(cast.outsider)
        .get(f"{API}/{model.hash}/merged?start=2026-05-01&end=2026-06-01")
        .status_code
        == 404
    )
