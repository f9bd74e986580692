"""Model versions in the SDK against the fake transport: add_version's upload (create_model's
files and order), waiting for a version and its failed build, listing every page, the live
version, rollback and its 409, and calling or managing one version on its own URLs.

No Django and no server, like test_unit.py: stdlib, requests and pytest only, so these run
on Python 3.8 as well (test_py38.py).
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import pytest
from neomaril_codex import base
from neomaril_codex.base import NeomarilExecution
from neomaril_codex.exceptions import BuildError, InputError, NotFoundError, StateError, WaitTimeout
from neomaril_codex.model import NeomarilModel, NeomarilModelClient, NeomarilModelVersion

from tests.helpers.sdk import sdk_env
from tests.sdk.fake import URL, FakeServer, logged_in_server, model_info, session_with

HASH = "M" + "a" * 32
V2_HASH = "M" + "c" * 32
OTHER = "M" + "d" * 32
VERSIONS = f"/api/v1/models/{HASH}/versions"


def version_info(number: int = 2, **overrides):
    info = {
        "model": HASH,
        "version": number,
        "live": False,
        "hash": HASH if number == 1 else V2_HASH,
        "status": "Ready",
        "status_message": "",
        "operation": "Sync",
        "model_reference": "score",
        "python_version": "3.9",
        "created_by": "ana",
        "run_url": f"{URL}/api/v1/run/{HASH}/versions/{number}",
        "url": f"{URL}{VERSIONS}/{number}",
    }
    info.update(overrides)
    return info


def statuses(*values: str):
    """A status handler answering `values` in turn; the last one repeats."""
    remaining = list(values)

    def handler(sent):
        status = remaining.pop(0) if len(remaining) > 1 else remaining[0]
        return 200, {"hash": V2_HASH, "version": 2, "status": status, "status_message": ""}, {}

    return handler


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
    return NeomarilModel(client._conn, model_info(status="Deployed"))


@pytest.fixture
def files(tmp_path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "app.py").write_text("def score(data, base_path):\n    return {}\n")
    (folder / "model.pkl").write_bytes(b"\x80\x04v2")
    (folder / "requirements.txt").write_text("six\n")
    (folder / "schema.json").write_text('{"x": 1}')
    (folder / "utils.py").write_text("X = 2\n")
    (folder / ".env").write_text("API_KEY=secret\n")
    (folder / "input.csv").write_text("a,b\n1,2\n")
    return folder


def names(function) -> list:
    return [name for name in inspect.signature(function).parameters if name != "self"]


# add_version --------------------------------------------------------------------------------


def test_add_version_takes_create_models_file_arguments_in_their_order():
    create = names(NeomarilModelClient.create_model)
    for inherited in ("model_name", "group", "operation"):
        create.remove(inherited)
    assert names(NeomarilModel.add_version) == create


def test_add_version_uploads_the_files_and_waits_for_the_version(model, server, files, sleeps, caplog):
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    server.on("POST", VERSIONS, 201, version_info())
    server.handle("GET", f"{VERSIONS}/2/status", statuses("Ready", "Building", "Deployed"))
    server.on("GET", f"{VERSIONS}/2", 200, version_info(status="Deployed", live=True))
    PATH = str(files) + "/"

    version = model.add_version(
        "score",
        PATH + "app.py",
        PATH + "model.pkl",
        PATH + "requirements.txt",
        {"x": 1},
        [PATH + "utils.py"],
        PATH + ".env",
        "3.10",
    )

    assert isinstance(version, NeomarilModelVersion) and version.model is model
    assert (version.model_hash, version.version, version.hash) == (HASH, 2, V2_HASH)
    assert version.status == "Deployed" and version.live  # read again once Deployed
    sent = server.last("POST", VERSIONS)
    assert sent.streamed
    fields, uploaded = sent.multipart()
    assert fields == {"model_reference": ["score"], "python_version": ["3.10"], "schema": ['{"x": 1}']}
    assert uploaded == [
        ("source", "app.py", (files / "app.py").read_bytes()),
        ("model", "model.pkl", b"\x80\x04v2"),
        ("requirements", "requirements.txt", b"six\n"),
        ("env", ".env", b"API_KEY=secret\n"),
        ("extra", "utils.py", b"X = 2\n"),
    ]
    assert [s.path for s in server.sent if s.method == "GET"] == [f"{VERSIONS}/2/status"] * 3 + [
        f"{VERSIONS}/2"
    ]
    assert len(sleeps) == 2
    assert (
        f"Version 2 of model 'Teste notebook Sync' ({HASH}) uploaded; it is being built and goes live once Deployed."
        in caplog.text
    )
    assert f"Version 2 of model 'Teste notebook Sync' ({HASH}) is Deployed" in caplog.text


def test_add_version_runs_on_the_live_versions_python_unless_told(model, server, files):
    server.on("GET", f"/api/v1/models/{HASH}", 200, model_info(python_version="3.8", version=3))
    server.on("POST", VERSIONS, 201, version_info(4))
    version = model.add_version(
        "score",
        files / "app.py",
        files / "model.pkl",
        files / "requirements.txt",
        schema=files / "schema.json",
        input_type="json",
        wait_for_ready=False,
        sample_file=files / "input.csv",
    )
    assert version.version == 4 and version.status == "Ready"
    fields, uploaded = server.last("POST").multipart()
    assert fields == {"model_reference": ["score"], "python_version": ["3.8"], "input_type": ["json"]}
    assert [field for field, _, _ in uploaded] == ["source", "model", "requirements", "schema", "sample"]


def test_add_version_checks_every_file_before_sending(model, server, files):
    before = len(server.sent)
    with pytest.raises(InputError) as raised:
        model.add_version("score", "nope.py", files / "model.pkl", None, extra_files=["gone.py"])
    assert str(raised.value) == (
        "source_file: no such file 'nope.py'; requirements_file: expected a file path, got NoneType; "
        "extra_files: no such file 'gone.py'"
    )
    assert len(server.sent) == before


def test_a_refused_version_upload_names_the_fields(model, server, files):
    body = {
        "detail": "source: app.py does not define score.",
        "code": "invalid",
        "errors": {"source": ["app.py does not define score."]},
    }
    server.on("POST", VERSIONS, 400, body)
    with pytest.raises(InputError) as raised:
        model.add_version(
            "score", files / "app.py", files / "model.pkl", files / "requirements.txt", python_version="3.9"
        )
    assert raised.value.errors == {"source": ["app.py does not define score."]}
    gone = "This model is deleted: upload a new model instead."
    server.on("POST", VERSIONS, 409, {"detail": gone, "code": "conflict"})
    with pytest.raises(StateError, match=gone):
        model.add_version(
            "score", files / "app.py", files / "model.pkl", files / "requirements.txt", python_version="3.9"
        )


def test_a_failed_version_build_raises_create_models_build_error_with_its_log(model, server, files, sleeps):
    server.on("POST", VERSIONS, 201, version_info())
    server.handle(
        "GET",
        f"{VERSIONS}/2/status",
        lambda sent: (
            200,
            {"hash": V2_HASH, "version": 2, "status": "Failed", "status_message": "The smoke test failed."},
            {},
        ),
    )
    log = "\n".join(f"line {i}" for i in range(60)) + "\nModuleNotFoundError: No module named 'sklearn'\n"
    server.on("GET", f"{VERSIONS}/2/logs", 200, {"number": 1, "log": log})
    with pytest.raises(BuildError) as raised:
        model.add_version(
            "score", files / "app.py", files / "model.pkl", files / "requirements.txt", python_version="3.9"
        )
    message = str(raised.value)
    assert message.startswith(
        f"The build of version 2 of model 'Teste notebook Sync' ({HASH}) failed: The smoke test failed.\n"
        "--- end of the build log ---\n"
    )
    assert (
        message.endswith("No module named 'sklearn'") and "line 59" in message and "line 5\n" not in message
    )
    assert raised.value.log.endswith("No module named 'sklearn'")
    assert server.last("GET").path == f"{VERSIONS}/2/logs"  # the version's log, not the live one's


def test_waiting_for_a_version_gives_up_or_says_how_to_restart_it(model, server, sleeps):
    version = NeomarilModelVersion(model, version_info())
    server.handle("GET", f"{VERSIONS}/2/status", statuses("Building"))
    with pytest.raises(WaitTimeout, match="still Building after 0 s"):
        version.wait_ready(timeout=0)
    server.handle("GET", f"{VERSIONS}/2/status", statuses("Disabled"))
    with pytest.raises(StateError, match=r"version\.restart\(\)"):
        version.wait_ready()


# Listing and finding ------------------------------------------------------------------------


def test_versions_follows_every_page(model, server):
    pages = {
        "1": {"count": 3, "next": f"{URL}{VERSIONS}?page=2&page_size=500", "previous": None,
              "results": [version_info(3, status="Failed"), version_info(2, live=True, status="Deployed")]},
        "2": {"count": 3, "next": None, "previous": f"{URL}{VERSIONS}?page_size=500",
              "results": [version_info(1, status="Deployed")]},
    }  # fmt: skip
    server.handle("GET", VERSIONS, lambda sent: (200, pages["2" if "page=2" in sent.path else "1"], {}))
    versions = model.versions()
    assert [(v.version, v.status, v.live) for v in versions] == [
        (3, "Failed", False),
        (2, "Deployed", True),
        (1, "Deployed", False),
    ]
    assert all(v.model is model for v in versions)
    assert [s.path for s in server.sent if s.method == "GET"] == [
        f"{VERSIONS}?page_size=500",
        f"{VERSIONS}?page=2&page_size=500",
    ]


def test_get_version_by_number(model, server):
    server.on("GET", f"{VERSIONS}/2", 200, version_info(status="Deployed", live=True))
    version = model.get_version(2)
    assert (version.version, version.hash, version.live, version.status) == (2, V2_HASH, True, "Deployed")
    assert repr(version) == f"<NeomarilModelVersion 2 of {HASH} Deployed live hash={V2_HASH}>"
    server.on(
        "GET", f"{VERSIONS}/9", 404, {"detail": f"Model '{HASH}' has no version 9.", "code": "not_found"}
    )
    with pytest.raises(NotFoundError, match="has no version 9"):
        model.get_version(9)
    before = len(server.sent)
    for wrong in (0, "2", 2.0, True):
        with pytest.raises(InputError, match="version must be a version number"):
            model.get_version(wrong)
    assert len(server.sent) == before


def test_live_version_is_asked_now(model, server):
    server.on("GET", f"/api/v1/models/{HASH}/status", 200, {"hash": HASH, "version": 3, "status": "Deployed"})
    assert model.live_version == 3
    server.on("GET", f"/api/v1/models/{HASH}/status", 200, {"hash": HASH, "version": 1, "status": "Deployed"})
    assert model.live_version == 1


# Rollback -----------------------------------------------------------------------------------


def test_set_live_by_number_or_version_is_one_call(model, server, caplog):
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    server.on("POST", f"{VERSIONS}/1/live", 200, version_info(1, live=True, status="Deployed"))
    server.on("POST", f"{VERSIONS}/2/live", 200, version_info(2, live=True, status="Deployed"))

    first = model.set_live(1)
    assert (first.version, first.live, first.hash) == (1, True, HASH)
    assert server.last().method == "POST" and server.last().path == f"{VERSIONS}/1/live"
    assert f"Model 'Teste notebook Sync' ({HASH}) now serves version 1" in caplog.text

    second = NeomarilModelVersion(model, version_info(2, status="Deployed"))
    assert not second.live
    assert model.set_live(second) is second and second.live
    assert server.last().path == f"{VERSIONS}/2/live"
    assert second.make_live() is second and server.last().path == f"{VERSIONS}/2/live"


def test_set_live_refused_is_a_state_error_with_the_servers_reason(model, server):
    detail = "Version 2 is Failed: only a Deployed version can go live."
    server.on("POST", f"{VERSIONS}/2/live", 409, {"detail": detail, "code": "conflict"})
    with pytest.raises(StateError) as raised:
        model.set_live(2)
    assert str(raised.value) == detail and raised.value.status_code == 409


def test_set_live_refuses_a_version_of_another_model_before_sending(model, server):
    other = NeomarilModel(model._conn, model_info(hash=OTHER))
    stranger = NeomarilModelVersion(other, version_info(model=OTHER))
    before = len(server.sent)
    with pytest.raises(InputError, match=f"is a version of another model, not of {HASH}"):
        model.set_live(stranger)
    assert len(server.sent) == before


# One version: calls and lifecycle --------------------------------------------------------------


def test_version_predict_calls_its_own_url_with_the_models_token(model, server, monkeypatch):
    server.on("POST", f"/api/v1/run/{HASH}/versions/2", 200, {"answered_by": "v2"})
    version = NeomarilModelVersion(model, version_info(status="Deployed"))
    monkeypatch.setenv("NEOMARIL_GROUP_TOKEN", "nmg_env")
    assert version.predict({"x": 1}) == {"answered_by": "v2"}
    sent = server.last()
    assert (sent.method, sent.path) == ("POST", f"/api/v1/run/{HASH}/versions/2")
    assert sent.json() == {"x": 1} and sent.headers["Authorization"] == "Bearer nmg_env"
    model.set_token("nmg_model")
    version.predict('{"x": 2}')
    assert server.last().headers["Authorization"] == "Bearer nmg_model" and server.last().body == b'{"x": 2}'
    version.predict({"x": 3}, group_token="nmg_call")
    assert server.last().headers["Authorization"] == "Bearer nmg_call"
    assert version.run_url == f"{URL}/api/v1/run/{HASH}/versions/2"
    server.on(
        "POST",
        f"/api/v1/run/{HASH}/versions/2",
        409,
        {"detail": "Version 2 is Building, not Deployed.", "code": "not_deployed"},
    )
    with pytest.raises(StateError, match="Building, not Deployed"):
        version.predict({"x": 1})


def test_async_version_predict_starts_an_execution_of_the_model(model, server, files, caplog):
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    async_model = NeomarilModel(model._conn, model_info(operation="Async"))
    version = NeomarilModelVersion(async_model, version_info(operation="Async", status="Deployed"))
    server.on(
        "POST",
        f"/api/v1/run/{HASH}/versions/2",
        202,
        {
            "execution_id": 7,
            "version": 2,
            "status": "Requested",
            "url": f"{URL}/api/v1/run/{HASH}/executions/7",
        },
    )
    execution = version.predict(files / "input.csv", group_token="nmg")
    assert isinstance(execution, NeomarilExecution)
    assert (execution.model_hash, execution.execution_id, execution.status) == (HASH, 7, "Requested")
    assert execution.url == f"{URL}/api/v1/run/{HASH}/executions/7"  # executions are the model's
    sent = server.last("POST")
    assert sent.path == f"/api/v1/run/{HASH}/versions/2"
    assert sent.multipart() == ({}, [("file", "input.csv", b"a,b\n1,2\n")])
    record = next(r for r in caplog.records if "started" in r.getMessage())
    assert (record.getMessage(), record.funcName) == (
        "Execution 7 started. Use the id to check its status.",
        "predict",
    )
    with pytest.raises(InputError, match="takes the path of a file"):
        version.predict({"x": 1}, group_token="nmg")


def test_version_status_info_and_logs_are_its_own(model, server):
    version = NeomarilModelVersion(model, version_info())
    server.on(
        "GET",
        f"{VERSIONS}/2/status",
        200,
        {"hash": V2_HASH, "version": 2, "status": "Building", "status_message": "", "deployed_at": None},
    )
    assert version.get_status() == "Building" and version.status == "Building"
    server.on("GET", f"{VERSIONS}/2", 200, version_info(status="Deployed", live=True, requirements=["six"]))
    info = version.version_info()
    assert info["requirements"] == ["six"] and version.status == "Deployed" and version.live
    server.on("GET", f"{VERSIONS}/2/logs", 200, {"number": 2, "log": "built"})
    assert version.get_logs(build=2) == "built"
    assert server.last().path == f"{VERSIONS}/2/logs?build=2"
    version.get_logs()
    assert server.last().path == f"{VERSIONS}/2/logs"


def test_version_restart_disable_and_delete(model, server, sleeps):
    version = NeomarilModelVersion(model, version_info(status="Deployed"))
    server.on("POST", f"{VERSIONS}/2/disable", 200, {"hash": V2_HASH, "version": 2, "status": "Disabled"})
    assert version.disable() == "Disabled" and version.status == "Disabled"
    server.on("POST", f"{VERSIONS}/2/restart", 200, {"hash": V2_HASH, "version": 2, "status": "Ready"})
    server.handle("GET", f"{VERSIONS}/2/status", statuses("Building", "Deployed"))
    server.on("GET", f"{VERSIONS}/2", 200, version_info(status="Deployed"))
    assert version.restart() == "Ready"
    assert version.restart(wait_for_ready=True) == "Deployed" and version.status == "Deployed"
    assert [s.path for s in server.sent if s.method == "POST"][-3:] == [
        f"{VERSIONS}/2/disable",
        f"{VERSIONS}/2/restart",
        f"{VERSIONS}/2/restart",
    ]

    live = "Version 2 is live: make another version live before deleting it."
    server.on("DELETE", f"{VERSIONS}/2", 409, {"detail": live, "code": "conflict"})
    with pytest.raises(StateError, match=live):
        version.delete()
    server.on("DELETE", f"{VERSIONS}/2", 200, {"hash": V2_HASH, "version": 2, "status": "Deleted"})
    version.delete()
    assert server.last().method == "DELETE" and version.status == "Deleted"
    assert repr(version) == f"<NeomarilModelVersion 2 of {HASH} Deleted hash={V2_HASH}>"
