"""NeomarilModel's monitoring against the fake transport: register_monitoring's positional
order (the original product's), a dict configuration sent as a JSON file, the missing-files
report, waiting for the validation and for a period, and the periods' reads.

No Django and no server, like test_unit.py: stdlib, requests and pytest only, so these
run on Python 3.8 as well.
"""

from __future__ import annotations

import datetime
import inspect
import json
import logging

import pytest
from neomaril_codex import base
from neomaril_codex.exceptions import ExecutionError, InputError, NotFoundError, StateError, WaitTimeout
from neomaril_codex.model import NeomarilModel, NeomarilModelClient

from tests.helpers.sdk import sdk_env
from tests.sdk.fake import URL, FakeServer, logged_in_server, model_info, session_with

M_HASH = "M" + "a" * 32
MONITORING = f"/api/v1/monitoring/{M_HASH}"
CONFIGURATION = {
    "Period": "Day",
    "TrainData": {"NeomarilTrainingExecution": "T" + "b" * 32 + "/1", "TrainDateRef": "2026-01-31"},
    "InputCols": ["radius", "texture"],
    "OutputCols": ["pred"],
}


def monitor_info(status="Unvalidated", **overrides):
    info = {
        "model": M_HASH,
        "status": status,
        "message": "",
        "period": "Day",
        "input_cols": ["radius", "texture"],
        "output_cols": ["pred"],
        "log": "",
        "last_period": None,
    }
    info.update(overrides)
    return info


def period_info(status="Queued", **overrides):
    info = {
        "id": 7,
        "kind": "Day",
        "start": "2026-05-26T00:00:00Z",
        "end": "2026-05-27T00:00:00Z",
        "status": status,
        "trigger": "demand",
        "error_message": "",
        "columns": [],
    }
    info.update(overrides)
    return info


def answers(*values):
    """A handler's successive bodies; the last one repeats."""
    remaining = list(values)

    def next_value():
        return remaining.pop(0) if len(remaining) > 1 else remaining[0]

    return next_value


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    sdk_env(monkeypatch, tmp_path)


@pytest.fixture
def sleeps(monkeypatch):
    asked = []
    monkeypatch.setattr(base.time, "sleep", asked.append)
    return asked


@pytest.fixture
def server() -> FakeServer:
    return logged_in_server()


@pytest.fixture
def model(server) -> NeomarilModel:
    client = NeomarilModelClient("ana", "pw", URL, session=session_with(server))
    server.on("GET", f"/api/v1/models/{M_HASH}", 200, model_info())
    return client.get_model(M_HASH)


@pytest.fixture
def PATH(tmp_path) -> str:
    folder = tmp_path / "samples"
    folder.mkdir()
    (folder / "configuration.json").write_text(json.dumps(CONFIGURATION))
    (folder / "preprocess.py").write_text("def parse(input, output):\n    return None, None\n")
    (folder / "requirements.txt").write_text("scipy\n")
    return str(folder) + "/"


def test_register_monitoring_keeps_the_original_argument_order():
    parameters = inspect.signature(NeomarilModel.register_monitoring).parameters
    assert list(parameters) == [
        "self",
        "preprocess_reference",
        "shap_reference",
        "configuration_file",
        "preprocess_file",
        "requirements_file",
        "webhook_url",
        "wait_for_ready",
    ]
    keyword_only = [name for name, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert keyword_only == ["webhook_url", "wait_for_ready"]


def test_register_monitoring_uploads_its_files_and_returns_the_model_hash(model, server, PATH, caplog):
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    server.on("POST", MONITORING, 202, monitor_info())
    hash_ = model.register_monitoring(
        "parse",
        "get_shap",
        PATH + "configuration.json",
        PATH + "preprocess.py",
        PATH + "requirements.txt",
        webhook_url="https://hooks.example/drift",
    )
    assert hash_ == M_HASH
    sent = server.last("POST", MONITORING)
    assert sent.headers["Authorization"] == "Token nmu_user"
    fields, files = sent.multipart()
    assert fields == {
        "preprocess_reference": ["parse"],
        "shap_reference": ["get_shap"],
        "webhook_url": ["https://hooks.example/drift"],
    }
    assert [(field, name) for field, name, _ in files] == [
        ("configuration", "configuration.json"),
        ("preprocess", "preprocess.py"),
        ("requirements", "requirements.txt"),
    ]
    assert json.loads(files[0][2]) == CONFIGURATION
    assert f"Monitoring of model {M_HASH} registered (Day period); it is Unvalidated" in caplog.text


def test_a_dict_configuration_is_sent_as_a_json_file_and_optional_parts_are_left_out(model, server, PATH):
    server.on("POST", MONITORING, 202, monitor_info())
    model.register_monitoring(
        "parse", configuration_file=CONFIGURATION, preprocess_file=PATH + "preprocess.py"
    )
    fields, files = server.last("POST", MONITORING).multipart()
    assert fields == {"preprocess_reference": ["parse"]}
    assert [(field, name) for field, name, _ in files] == [
        ("configuration", "configuration.json"),
        ("preprocess", "preprocess.py"),
    ]
    assert json.loads(files[0][2]) == CONFIGURATION


def test_missing_files_are_reported_at_once_before_anything_is_sent(model, server, PATH):
    with pytest.raises(InputError) as raised:
        model.register_monitoring("parse", None, None, None)
    message = str(raised.value)
    assert (
        "configuration_file: required (the monitoring configuration: a dict or the path of a JSON file)"
        in message
    )
    assert "preprocess_file: required (the .py file defining parse)" in message
    with pytest.raises(InputError) as raised:
        model.register_monitoring("parse", None, ["not", "a", "dict"], PATH + "nope.py", PATH + "missing.txt")
    message = str(raised.value)
    assert "configuration_file: expected a dict or the path of a JSON file, got list" in message
    assert f"preprocess_file: no such file '{PATH}nope.py'" in message
    assert f"requirements_file: no such file '{PATH}missing.txt'" in message
    assert not [sent for sent in server.sent if sent.path.startswith("/api/v1/monitoring")]


def test_the_servers_refusal_is_an_input_error_with_every_field(model, server, PATH):
    errors = {"configuration": ['Period must be one of Day, Week, Month, Year, not "Hour".']}
    server.on(
        "POST",
        MONITORING,
        400,
        {"detail": "configuration: " + errors["configuration"][0], "code": "invalid", "errors": errors},
    )
    with pytest.raises(InputError, match="Period must be one of Day") as raised:
        model.register_monitoring("parse", None, CONFIGURATION, PATH + "preprocess.py")
    assert raised.value.errors == errors


def test_register_monitoring_waits_until_validated_when_asked(model, server, PATH, sleeps, caplog):
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    server.on("POST", MONITORING, 202, monitor_info())
    statuses = answers("Unvalidated", "Validating", "Validating", "Validated")
    server.handle("GET", MONITORING, lambda sent: (200, monitor_info(statuses()), {}))
    assert (
        model.register_monitoring("parse", None, CONFIGURATION, PATH + "preprocess.py", wait_for_ready=True)
        == M_HASH
    )
    assert sleeps == [0.5, 0.75, 1.125]
    told = [r.getMessage() for r in caplog.records if r.funcName == "wait_monitoring"]
    assert told == [
        f"The monitoring validation of model {M_HASH}: {status}"
        for status in ("Unvalidated", "Validating", "Validated")
    ]


def test_wait_monitoring_returns_the_validated_monitoring(model, server, sleeps):
    server.on("GET", MONITORING, 200, monitor_info("Validated", reference_rows=500))
    assert model.wait_monitoring()["reference_rows"] == 500
    assert sleeps == []


def test_wait_monitoring_raises_with_the_message_and_the_log_when_invalidated(model, server, sleeps):
    message = "config: InputCols: no column 'radius' in X_train (available: a, b)."
    log = "".join(f"line {i}\n" for i in range(50)) + message + "\n"
    server.on("GET", MONITORING, 200, monitor_info("Invalidated", message=message, log=log))
    with pytest.raises(ExecutionError) as raised:
        model.wait_monitoring()
    text = str(raised.value)
    assert text.startswith(f"The monitoring validation of model {M_HASH} failed: {message}")
    assert text.endswith("line 49\n" + message) and "line 5\n" not in text
    assert raised.value.body["status"] == "Invalidated"


def test_wait_monitoring_times_out(model, server, sleeps):
    server.on("GET", MONITORING, 200, monitor_info("Validating"))
    with pytest.raises(
        WaitTimeout, match=f"The monitoring validation of model {M_HASH} is still Validating after 0 s"
    ):
        model.wait_monitoring(timeout=0)


def test_get_monitoring_of_a_model_that_is_not_monitored_is_not_found(model, server):
    detail = f"Model '{M_HASH}' is not monitored: register it with POST /api/v1/monitoring/{M_HASH}."
    server.on("GET", MONITORING, 404, {"detail": detail, "code": "not_found"})
    with pytest.raises(NotFoundError, match="is not monitored"):
        model.get_monitoring()


@pytest.mark.parametrize(
    ("date", "sent"),
    [
        (None, {}),
        ("2026-05-26", {"date": "2026-05-26"}),
        (datetime.date(2026, 5, 26), {"date": "2026-05-26"}),
        (
            datetime.datetime(2026, 5, 26, 14, 30, tzinfo=datetime.timezone.utc),
            {"date": "2026-05-26T14:30:00+00:00"},
        ),
    ],
)
def test_run_monitoring_requests_the_period_of_a_date(model, server, date, sent):
    server.on("POST", f"{MONITORING}/periods", 202, period_info())
    assert model.run_monitoring(date) == period_info()
    assert server.last("POST", f"{MONITORING}/periods").json() == sent


def test_run_monitoring_waits_for_the_period_and_returns_its_detail(model, server, sleeps):
    server.on("POST", f"{MONITORING}/periods", 202, period_info())
    statuses = answers("Queued", "Running", "Succeeded")
    server.handle(
        "GET", f"{MONITORING}/periods/7", lambda sent: (200, period_info(statuses(), log="done\n"), {})
    )
    finished = model.run_monitoring("2026-05-26", wait=True)
    assert finished["status"] == "Succeeded" and finished["log"] == "done\n"
    assert sleeps == [0.5, 0.75]


def test_run_monitoring_raises_when_the_period_failed(model, server, sleeps):
    server.on("POST", f"{MONITORING}/periods", 202, period_info())
    failed = period_info(
        "Failed", error_message="call: parse raised KeyError: 'x'", log="Traceback…\nKeyError: 'x'\n"
    )
    server.on("GET", f"{MONITORING}/periods/7", 200, failed)
    with pytest.raises(ExecutionError) as raised:
        model.run_monitoring(wait=True)
    assert str(raised.value).startswith(
        f"Monitoring period 7 (Day from 2026-05-26T00:00:00Z) of model {M_HASH} failed: call: parse raised KeyError"
    )
    assert raised.value.log.endswith("KeyError: 'x'")


def test_run_monitoring_of_a_monitoring_that_is_not_validated_is_a_state_error(model, server):
    detail = f"The monitoring of {M_HASH} is Invalidated; periods run once it is Validated."
    server.on("POST", f"{MONITORING}/periods", 409, {"detail": detail, "code": "conflict"})
    with pytest.raises(StateError, match="is Invalidated; periods run once it is Validated"):
        model.run_monitoring()


def test_monitoring_periods_and_one_period(model, server):
    server.on(
        "GET", f"{MONITORING}/periods", 200, {"periods": [period_info("Succeeded", id=8), period_info()]}
    )
    assert [p["id"] for p in model.monitoring_periods()] == [8, 7]
    server.on("GET", f"{MONITORING}/periods/8", 200, period_info("Succeeded", id=8, shap={"radius": 0.2}))
    assert model.monitoring_period(8)["shap"] == {"radius": 0.2}
    assert server.last("GET").path == f"{MONITORING}/periods/8"
