"""The SDK against a fake transport: arguments, requests sent, errors, files, logging.

No Django and no server: these run on every supported Python (the 3.8 run is in
test_py38.py) with only requests and pytest installed.
"""

from __future__ import annotations

import io
import json
import logging
import os
from pathlib import Path

import neomaril_codex
import pytest
import requests
from neomaril_codex import _log, _upload, base, exceptions
from neomaril_codex._dotenv import load_dotenv, parse_dotenv
from neomaril_codex.base import NeomarilExecution
from neomaril_codex.exceptions import (
    AuthenticationError,
    BuildError,
    ExecutionError,
    InputError,
    ModelError,
    NeomarilError,
    NetworkError,
    NotFoundError,
    PermissionDeniedError,
    ServerError,
    StateError,
    WaitTimeout,
)
from neomaril_codex.model import NeomarilModel, NeomarilModelClient

from tests.helpers.sdk import sdk_env
from tests.sdk.fake import URL, FakeServer, logged_in_server, model_info, session_with

HASH = "M" + "a" * 32


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    """No NEOMARIL_* from the developer's shell, and a working directory without a .env."""
    sdk_env(monkeypatch, tmp_path)
    monkeypatch.setattr(base.time, "sleep", lambda seconds: None)


@pytest.fixture
def server() -> FakeServer:
    return logged_in_server()


@pytest.fixture
def client(server) -> NeomarilModelClient:
    return NeomarilModelClient("ana", "pw", URL, session=session_with(server))


@pytest.fixture
def files(tmp_path) -> Path:
    folder = tmp_path / "files"
    folder.mkdir()
    (folder / "app.py").write_text("def score(data, base_path):\n    return {}\n")
    (folder / "model.pkl").write_bytes(b"\x80\x04pickle")
    (folder / "requirements.txt").write_text("")
    (folder / "schema.json").write_text('{"x": 1}')
    (folder / "utils.py").write_text("X = 1\n")
    (folder / ".env").write_text("API_KEY=secret\n")
    (folder / "input.csv").write_text("a,b\n1,2\n")
    return folder


# Connecting ------------------------------------------------------------------------------


def test_user_and_password_from_the_environment_are_exchanged_for_a_token(monkeypatch, server):
    monkeypatch.setenv("NEOMARIL_URL", URL + "/")
    monkeypatch.setenv("NEOMARIL_USER", "ana")
    monkeypatch.setenv("NEOMARIL_PASSWORD", "pw")
    server.on("GET", "/api/v1/groups", 200, [{"name": "datarisk"}])
    client = NeomarilModelClient(session=session_with(server))
    assert client.url == URL
    login = server.sent[0]
    assert login.path == "/api/v1/auth/login" and "Authorization" not in login.headers
    assert login.json() == {"username": "ana", "password": "pw", "token_name": "neomaril_codex"}
    assert client.list_groups() == [{"name": "datarisk"}]
    assert server.last("GET").headers["Authorization"] == "Token nmu_user"
    assert repr(client) == f"<NeomarilModelClient {URL} as 'ana'>"


def test_api_token_is_used_as_it_is(monkeypatch, server):
    monkeypatch.setenv("NEOMARIL_URL", URL + "/api/v1")  # the API's URL works as well
    monkeypatch.setenv("NEOMARIL_TOKEN", "nmu_given")
    client = NeomarilModelClient(session=session_with(server))
    assert client.url == URL
    assert [s.path for s in server.sent] == ["/api/v1/auth/me"]
    assert server.sent[0].headers["Authorization"] == "Token nmu_given"


def test_explicit_password_wins_over_the_token_in_the_environment(monkeypatch, server):
    monkeypatch.setenv("NEOMARIL_TOKEN", "nmu_env")
    NeomarilModelClient("ana", "pw", URL, session=session_with(server))
    assert server.sent[0].path == "/api/v1/auth/login"


def test_dotenv_in_the_working_directory_is_read_without_overriding(monkeypatch, tmp_path, server):
    (tmp_path / ".env").write_text(
        f"NEOMARIL_URL={URL}\nNEOMARIL_USER=from-file\nNEOMARIL_PASSWORD='pw'\nNEOMARIL_GROUP_TOKEN=nmg_file\n"
    )
    monkeypatch.setenv("NEOMARIL_USER", "from-shell")
    NeomarilModelClient(session=session_with(server))
    assert server.sent[0].json()["username"] == "from-shell"
    assert os.environ["NEOMARIL_GROUP_TOKEN"] == "nmg_file"
    monkeypatch.delenv("NEOMARIL_GROUP_TOKEN")  # set by the .env, not by monkeypatch


@pytest.mark.parametrize(
    ("content", "why"), [(b"NEOMARIL_USER=jos\xe9\n", "can't decode byte 0xe9"), (None, "Is a directory")]
)
def test_a_dotenv_that_cannot_be_read_is_an_input_error_naming_it(
    monkeypatch, tmp_path, server, content, why
):
    monkeypatch.chdir(tmp_path)
    if content is None:
        (tmp_path / ".env").mkdir()  # what a permission error looks like to root, who reads everything
        monkeypatch.setattr("neomaril_codex._dotenv.Path.is_file", lambda self: True)
    else:
        (tmp_path / ".env").write_bytes(content)
    with pytest.raises(InputError) as raised:
        NeomarilModelClient(url=URL, token="nmu_x", session=session_with(server))
    assert f"Could not read {tmp_path / '.env'}" in str(raised.value) and why in str(raised.value)
    assert "Save it as UTF-8" in str(raised.value)
    assert server.sent == []


def test_missing_credentials_and_url_say_what_to_set(monkeypatch, server):
    with pytest.raises(InputError, match="NEOMARIL_URL"):
        NeomarilModelClient(session=session_with(server))
    monkeypatch.setenv("NEOMARIL_URL", URL)
    with pytest.raises(AuthenticationError) as raised:
        NeomarilModelClient(session=session_with(server))
    assert "NEOMARIL_USER and NEOMARIL_PASSWORD, or NEOMARIL_TOKEN" in str(raised.value)
    monkeypatch.setenv("NEOMARIL_USER", "ana")
    with pytest.raises(AuthenticationError, match="NEOMARIL_PASSWORD is missing"):
        NeomarilModelClient(session=session_with(server))
    assert server.sent == []


def test_wrong_password_is_an_authentication_error_with_the_servers_message(server):
    server.on(
        "POST",
        "/api/v1/auth/login",
        401,
        {"detail": "Wrong username or password.", "code": "authentication_failed"},
    )
    with pytest.raises(AuthenticationError) as raised:
        NeomarilModelClient("ana", "nope", URL, session=session_with(server))
    assert str(raised.value) == "Wrong username or password."
    assert raised.value.status_code == 401 and raised.value.code == "authentication_failed"


def test_close_revokes_the_token_it_logged_in_for(server):
    server.on("DELETE", "/api/v1/auth/tokens/t-1", 204, None)
    with NeomarilModelClient("ana", "pw", URL, session=session_with(server)):
        pass
    assert server.last().method == "DELETE" and server.last().path == "/api/v1/auth/tokens/t-1"


# Errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error", "message"),
    [
        (
            400,
            {"detail": "schema: bad", "code": "invalid", "errors": {"schema": ["bad"]}},
            InputError,
            "schema: bad",
        ),
        (
            401,
            {"detail": "Invalid token.", "code": "authentication_failed"},
            AuthenticationError,
            "Invalid token.",
        ),
        (403, {"detail": "Not yours.", "code": "permission_denied"}, PermissionDeniedError, "Not yours."),
        (404, {"detail": "No model 'M1'.", "code": "not_found"}, NotFoundError, "No model 'M1'."),
        (409, {"detail": "It is Building.", "code": "not_deployed"}, StateError, "It is Building."),
        (413, {"detail": "Too large.", "code": "too_large"}, InputError, "Too large."),
        (422, {"detail": "Unprocessable.", "code": "other"}, InputError, "Unprocessable."),
        (500, {"detail": "Server bug.", "code": "error"}, ServerError, "Server bug."),
        (
            502,
            b"<html>Bad Gateway</html>",
            ServerError,
            f"HTTP 502: GET http://neomaril.test/api/v1/models/{HASH} was",
        ),
        (504, {"detail": "Did not answer within 2 s.", "code": "timeout"}, ServerError, "Did not answer"),
    ],
)
def test_every_error_answer_becomes_its_exception(client, server, status, body, error, message):
    server.on("GET", f"/api/v1/models/{HASH}", status, body)
    with pytest.raises(error) as raised:
        client.get_model(HASH)
    assert type(raised.value) is error
    assert str(raised.value).startswith(message)
    assert raised.value.status_code == status
    if status == 400:
        assert raised.value.errors == {"schema": ["bad"]}


def test_exception_hierarchy():
    assert issubclass(PermissionDeniedError, AuthenticationError)
    assert issubclass(StateError, InputError) and issubclass(ModelError, InputError)
    assert issubclass(InputError, ValueError) and issubclass(WaitTimeout, TimeoutError)
    assert issubclass(NetworkError, ServerError) and issubclass(BuildError, ExecutionError)
    for cls in (AuthenticationError, InputError, NotFoundError, ServerError, ExecutionError, WaitTimeout):
        assert issubclass(cls, NeomarilError)


def test_gets_are_retried_once_after_a_dropped_connection_and_posts_never(client, server):
    server.on("GET", f"/api/v1/models/{HASH}", 200, model_info())
    server.failures = [requests.ConnectionError("reset")]
    assert client.get_model(HASH).model_hash == HASH
    server.failures = [requests.ConnectionError("reset"), requests.ConnectionError("reset")]
    with pytest.raises(NetworkError, match="the connection was dropped before an answer arrived"):
        client.get_model(HASH)
    before = len(server.sent)
    server.failures = [requests.ConnectionError("reset")]
    with pytest.raises(NetworkError, match="may have carried it out"):
        client.create_group("x")
    assert len(server.sent) == before + 1


def test_read_timeouts_are_network_errors_and_not_retried(client, server):
    server.failures = [requests.ReadTimeout("slow")]
    before = len(server.sent)
    with pytest.raises(NetworkError, match="no answer within 60"):
        client.get_model(HASH)
    assert len(server.sent) == before + 1


# Groups ----------------------------------------------------------------------------------


def test_groups(client, server, caplog):
    server.on("POST", "/api/v1/groups", 201, {"name": "nb_demo", "group_token": "nmg_new"})
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    assert client.create_group("nb_demo", "Group for the demo") == "nmg_new"
    assert server.last().json() == {"name": "nb_demo", "description": "Group for the demo"}
    assert "nmg_new" not in caplog.text  # the token is returned, never logged

    kept = "The current token is still valid until 2027-01-01; it was kept. Send force=true to replace it."
    server.on(
        "POST",
        "/api/v1/groups/nb_demo/refresh-token",
        200,
        {"refreshed": False, "group_token": None, "detail": kept},
    )
    assert client.refresh_group_token("nb_demo") is None
    assert server.last().json() == {"force": False}
    assert kept in caplog.text
    server.on(
        "POST",
        "/api/v1/groups/nb_demo/refresh-token",
        201,
        {"refreshed": True, "group_token": "nmg_newer", "detail": "New group token issued."},
    )
    assert client.refresh_group_token("nb_demo", force=True) == "nmg_newer"


# create_model ----------------------------------------------------------------------------


def test_create_model_sends_the_documented_positional_call_as_a_streamed_multipart(client, server, files):
    server.on("POST", "/api/v1/models", 201, model_info())
    PATH = str(files) + "/"
    model = client.create_model(
        "Teste notebook Sync",  # model_name
        "score",  # name of the scoring function
        PATH + "app.py",  # Path of the source file
        PATH + "model.pkl",  # Path of the model pkl file,
        PATH + "requirements.txt",  # Path of the requirements file,
        schema=PATH + "schema.json",
        env=PATH + ".env",
        extra_files=[PATH + "utils.py", PATH + "input.csv"],
        python_version="3.9",
        operation="Sync",
        group="datarisk",
        wait_for_ready=False,
    )
    assert isinstance(model, NeomarilModel) and model.model_hash == HASH
    sent = server.last("POST", "/api/v1/models")
    assert sent.streamed and int(sent.headers["Content-Length"]) == len(sent.body)
    assert "Transfer-Encoding" not in sent.headers
    fields, uploaded = sent.multipart()
    assert fields == {
        "name": ["Teste notebook Sync"],
        "group": ["datarisk"],
        "operation": ["Sync"],
        "model_reference": ["score"],
        "python_version": ["3.9"],
    }
    assert uploaded == [
        ("source", "app.py", (files / "app.py").read_bytes()),
        ("model", "model.pkl", b"\x80\x04pickle"),
        ("requirements", "requirements.txt", b""),
        ("schema", "schema.json", b'{"x": 1}'),
        ("env", ".env", b"API_KEY=secret\n"),
        ("extra", "utils.py", b"X = 1\n"),
        ("extra", "input.csv", b"a,b\n1,2\n"),
    ]


def test_create_model_schema_as_a_dict_group_from_env_and_async(client, server, files, monkeypatch):
    server.on("POST", "/api/v1/models", 201, model_info(operation="Async"))
    monkeypatch.setenv("NEOMARIL_GROUP", "from-env")
    client.create_model(
        "batch",
        "score",
        files / "app.py",
        files / "model.pkl",
        files / "requirements.txt",
        schema={"x": 1, "name": "ção"},
        operation="async",
        input_type="csv",
        wait_for_ready=False,
    )
    fields, uploaded = server.last("POST").multipart()
    assert fields["group"] == ["from-env"] and fields["operation"] == ["Async"]
    assert fields["input_type"] == ["csv"]
    assert fields["python_version"] == ["3.10"]
    assert json.loads(fields["schema"][0]) == {"x": 1, "name": "ção"}
    assert [field for field, _, _ in uploaded] == ["source", "model", "requirements"]


def test_an_async_models_schema_csv_is_its_sample_input_as_the_original_notebook_sends_it(
    client, server, files
):
    """Model.ipynb of the original: schema=PATH+'schema.csv', input_type='csv' for Async."""
    server.on("POST", "/api/v1/models", 201, model_info(operation="Async"))
    (files / "schema.csv").write_text("a,b\n1,2\n")
    PATH = str(files) + "/"
    client.create_model(
        "Teste notebook Async", "score", PATH + "app.py", PATH + "model.pkl", PATH + "requirements.txt",
        schema=PATH + "schema.csv", python_version="3.9", operation="Async", input_type="csv",
        group="datarisk", wait_for_ready=False,
    )  # fmt: skip
    fields, uploaded = server.last("POST").multipart()
    assert "schema" not in fields
    assert [(field, name) for field, name, _ in uploaded][-1] == ("sample", "schema.csv")


def test_create_model_checks_its_arguments_before_sending(client, server, files):
    before = len(server.sent)
    with pytest.raises(InputError, match="No group: pass group="):
        client.create_model("m", "score", files / "app.py", files / "model.pkl", files / "requirements.txt")
    with pytest.raises(InputError) as raised:
        client.create_model(
            "m", "score", "nope.py", files / "model.pkl", "missing.txt", schema="no.json", group="g"
        )
    message = str(raised.value)
    assert "source_file: no such file 'nope.py'" in message
    assert "requirements_file: no such file 'missing.txt'" in message
    assert "schema: no such file 'no.json'" in message
    with pytest.raises(InputError, match="operation must be 'Sync' or 'Async'"):
        client.create_model(
            "m", "score", files / "app.py", files / "model.pkl", files / "r", operation="Batch"
        )
    assert len(server.sent) == before


def test_create_model_requires_its_three_files_even_when_none(client, server, files):
    # promote_model shares the upload's assembly and leaves out what is None; these three
    # create_model must name.
    before = len(server.sent)
    with pytest.raises(InputError) as raised:
        client.create_model("m", "score", None, files / "model.pkl", None, group="g")
    assert str(raised.value) == (
        "source_file: expected a file path, got NoneType; "
        "requirements_file: expected a file path, got NoneType"
    )
    assert len(server.sent) == before


def test_create_model_waits_and_a_failed_build_raises_with_the_log_tail(client, server, files):
    server.on("POST", "/api/v1/models", 201, model_info())
    statuses = iter(["Ready", "Building", "Failed"])
    server.handle(
        "GET",
        f"/api/v1/models/{HASH}/status",
        lambda sent: (
            200,
            {"hash": HASH, "status": next(statuses), "status_message": "The smoke test failed."},
            {},
        ),
    )
    log = "\n".join(f"line {i}" for i in range(100)) + "\nRuntimeError: smoke boom\n"
    server.on("GET", f"/api/v1/models/{HASH}/logs", 200, {"number": 1, "log": log})
    with pytest.raises(BuildError) as raised:
        client.create_model(
            "m", "score", files / "app.py", files / "model.pkl", files / "requirements.txt", group="g"
        )
    message = str(raised.value)
    assert message.startswith(
        f"The build of model 'Teste notebook Sync' ({HASH}) failed: The smoke test failed."
    )
    assert (
        message.endswith("RuntimeError: smoke boom") and "line 99" in message and "line 10\n" not in message
    )


def test_wait_ready_gives_up_after_its_timeout(client, server):
    server.on("GET", f"/api/v1/models/{HASH}/status", 200, {"hash": HASH, "status": "Building"})
    model = NeomarilModel(client._conn, model_info())
    with pytest.raises(WaitTimeout, match="still Building after 0 s"):
        model.wait_ready(timeout=0)


def test_wait_ready_polls_quickly_at_first_and_again_when_the_status_changes(client, server, monkeypatch):
    sleeps = []
    monkeypatch.setattr(base.time, "sleep", sleeps.append)
    statuses = iter(["Ready"] * 23 + ["Building"] * 3 + ["Deployed"])
    server.handle(
        "GET",
        f"/api/v1/models/{HASH}/status",
        lambda sent: (200, {"hash": HASH, "status": next(statuses)}, {}),
    )
    model = NeomarilModel(client._conn, model_info())
    assert model.wait_ready() is model
    # 0.25 s for 5 s, then a quarter more each time; Building (the build started after a
    # long queue) starts the quick polls again.
    assert sleeps == [0.25] * 20 + [0.3125, 0.390625, 0.48828125] + [0.25] * 3


def test_a_disabled_model_will_not_become_ready(client, server):
    server.on("GET", f"/api/v1/models/{HASH}/status", 200, {"hash": HASH, "status": "Disabled"})
    with pytest.raises(StateError, match="model.restart"):
        NeomarilModel(client._conn, model_info()).wait_ready()


# Group tokens and predict ----------------------------------------------------------------


@pytest.fixture
def sync_model(client, server) -> NeomarilModel:
    server.on("POST", f"/api/v1/run/{HASH}", 200, {"pred": 0, "proba": 0.0058})
    return NeomarilModel(client._conn, model_info(status="Deployed"))


def test_group_token_precedence_per_call_then_set_token_then_environment(sync_model, server, monkeypatch):
    with pytest.raises(AuthenticationError, match="NEOMARIL_GROUP_TOKEN"):
        sync_model.predict({"x": 1})
    monkeypatch.setenv("NEOMARIL_GROUP_TOKEN", "nmg_env")
    assert sync_model.predict({"x": 1}) == {"pred": 0, "proba": 0.0058}
    assert server.last().headers["Authorization"] == "Bearer nmg_env"
    sync_model.set_token("nmg_set")
    sync_model.predict({"x": 1})
    assert server.last().headers["Authorization"] == "Bearer nmg_set"
    sync_model.predict({"x": 1}, group_token="nmg_call")
    assert server.last().headers["Authorization"] == "Bearer nmg_call"
    sync_model({"x": 1}, "nmg_call2")  # __call__ is predict
    assert server.last().headers["Authorization"] == "Bearer nmg_call2"


class FakeNumber:
    """Stands for a numpy scalar: not JSON, but has .item()."""

    def item(self):
        return 7


def test_sync_inputs_dict_json_text_json_file(sync_model, server, files):
    sync_model.set_token("nmg")
    sync_model.predict({"x": FakeNumber(), "v": [1, 2]})
    sent = server.last()
    assert sent.json() == {"x": 7, "v": [1, 2]} and sent.headers["Content-Type"] == "application/json"
    sync_model.predict('{"raw": true}')
    assert server.last().body == b'{"raw": true}'
    sync_model.predict(str(files / "schema.json"))
    assert server.last().body == b'{"x": 1}'
    sync_model.predict(files / "schema.json")
    assert server.last().body == b'{"x": 1}'
    with pytest.raises(InputError, match="no such file 'nothing.json'"):
        sync_model.predict("nothing.json")


def test_model_error_carries_the_traceback(sync_model, server):
    trace = "Traceback (most recent call last):\n  File \"app.py\", line 3, in score\nKeyError: 'x'"
    server.on(
        "POST",
        f"/api/v1/run/{HASH}",
        422,
        {
            "detail": "The model raised an error: KeyError: 'x'",
            "code": "model_error",
            "model_error": {"error": "KeyError: 'x'", "phase": "call", "traceback": trace},
        },
    )
    with pytest.raises(ModelError) as raised:
        sync_model.predict({}, group_token="nmg")
    assert str(raised.value).startswith(
        "The model raised an error: KeyError: 'x'\n\nThe model's traceback:\n"
    )
    assert raised.value.traceback == trace


def test_async_predict_uploads_the_file_and_logs_the_execution(client, server, files, caplog):
    model = NeomarilModel(client._conn, model_info(operation="Async", status="Deployed"))
    server.on(
        "POST",
        f"/api/v1/run/{HASH}",
        202,
        {"execution_id": 5, "status": "Requested", "url": f"{URL}/api/v1/run/{HASH}/executions/5"},
    )
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    execution = model.predict(str(files / "input.csv"), group_token="nmg")
    assert isinstance(execution, NeomarilExecution)
    assert execution.execution_id == 5 and execution.status == "Requested"
    record = next(r for r in caplog.records if "started" in r.getMessage())
    assert record.getMessage() == "Execution 5 started. Use the id to check its status."
    assert (record.levelname, record.name, record.funcName) == (
        "INFO",
        "neomaril_codex.model",
        "predict",
    )
    sent = server.last("POST")
    assert sent.headers["Authorization"] == "Bearer nmg"
    assert sent.multipart() == ({}, [("file", "input.csv", b"a,b\n1,2\n")])
    with pytest.raises(InputError, match="takes the path of a file"):
        model.predict({"x": 1}, group_token="nmg")


# Executions ------------------------------------------------------------------------------


def execution_info(status: str, **extra):
    return {"execution_id": 5, "model": HASH, "status": status, "error_message": "", **extra}


def test_execution_status_wait_and_download(client, server, tmp_path):
    statuses = iter(["Requested", "Running", "Succeeded", "Succeeded"])
    server.handle(
        "GET", f"/api/v1/run/{HASH}/executions/5", lambda sent: (200, execution_info(next(statuses)), {})
    )
    server.on(
        "GET",
        f"/api/v1/run/{HASH}/executions/5/result",
        200,
        b"a,b,pred\n1,2,1\n",
        {"Content-Disposition": "attachment; filename*=utf-8''sa%C3%ADda.csv"},
    )
    execution = NeomarilExecution(client._conn, HASH, 5, group_token="nmg")
    assert execution.wait_ready() is execution and execution.status == "Succeeded"
    assert server.last().headers["Authorization"] == "Bearer nmg"
    saved = execution.download_result(str(tmp_path / "out"))
    assert saved == str(tmp_path / "out" / "saída.csv")
    assert Path(saved).read_bytes() == b"a,b,pred\n1,2,1\n"
    assert execution.download_result(tmp_path, filename="mine.csv") == str(tmp_path / "mine.csv")
    assert not list(tmp_path.glob("**/*.part"))


def test_execution_without_group_token_uses_the_login(client, server):
    server.on("GET", f"/api/v1/run/{HASH}/executions/5", 200, execution_info("Running"))
    assert NeomarilExecution(client._conn, HASH, 5).get_status() == "Running"
    assert server.last().headers["Authorization"] == "Token nmu_user"


def test_an_execution_s_status_is_a_string_that_reads_as_the_original_s_dict(client, server):
    """Model.ipynb: execution.get_status() is {'ExecutionId', 'Status', 'Message'}, read as
    get_status()['Status']; this SDK answered the string alone (TypeError there)."""
    server.on(
        "GET",
        f"/api/v1/run/{HASH}/executions/5",
        200,
        execution_info("Failed", error_message="The entrypoint raised KeyError: 'x'"),
    )
    status = NeomarilExecution(client._conn, HASH, 5, group_token="nmg").get_status()
    assert status == "Failed" and status.lower() == "failed" and status[:4] == "Fail"
    assert dict(status) == {
        "ExecutionId": 5,
        "Status": "Failed",
        "Message": "The entrypoint raised KeyError: 'x'",
    }
    assert status["Status"] == "Failed" and status.get("Message").startswith("The entrypoint")
    server.on("GET", f"/api/v1/run/{HASH}/executions/5", 200, execution_info("Running"))
    assert NeomarilExecution(client._conn, HASH, 5, group_token="nmg").get_status()["Message"] is None


def test_failed_execution_raises_with_its_error_and_log(client, server):
    server.on(
        "GET",
        f"/api/v1/run/{HASH}/executions/5",
        200,
        execution_info("Failed", error_message="The entrypoint raised KeyError: 'x'"),
    )
    server.on("GET", f"/api/v1/run/{HASH}/executions/5/log", 200, {"log": "start\nKeyError: 'x'\n"})
    with pytest.raises(ExecutionError) as raised:
        NeomarilExecution(client._conn, HASH, 5, group_token="nmg").wait_ready()
    assert str(raised.value) == (
        f"Execution 5 of {HASH} failed: The entrypoint raised KeyError: 'x'\n--- end of its log ---\nstart\nKeyError: 'x'"
    )


def test_result_of_an_unfinished_execution_is_a_state_error(client, server, tmp_path):
    server.on(
        "GET",
        f"/api/v1/run/{HASH}/executions/5/result",
        409,
        {
            "detail": "Execution 5 is Running; its result can be downloaded once it has Succeeded.",
            "code": "not_finished",
        },
    )
    with pytest.raises(StateError, match="is Running"):
        NeomarilExecution(client._conn, HASH, 5).download_result(str(tmp_path))
    assert list(tmp_path.iterdir()) == []


# Models: the rest ------------------------------------------------------------------------


def test_search_models_follows_every_page(client, server):
    pages = {
        "1": {
            "count": 3,
            "next": f"{URL}/api/v1/models?page=2&page_size=500",
            "results": [{"hash": "M1"}, {"hash": "M2"}],
        },
        "2": {"count": 3, "next": None, "results": [{"hash": "M3"}]},
    }
    server.handle(
        "GET", "/api/v1/models", lambda sent: (200, pages["2" if "page=2" in sent.path else "1"], {})
    )
    found = client.search_models(name="Teste", group="datarisk", only_deployed=True)
    assert [m["hash"] for m in found] == ["M1", "M2", "M3"]
    first = next(s for s in server.sent if s.path.startswith("/api/v1/models?"))
    for part in ("name=Teste", "group=datarisk", "status=Deployed", "page_size=500"):
        assert part in first.path
    with pytest.raises(InputError):
        client.search_models(state="Failed", only_deployed=True)


def test_get_model_checks_the_group(client, server):
    server.on("GET", f"/api/v1/models/{HASH}", 200, model_info())
    model = client.get_model(HASH, group="datarisk")
    assert (model.name, model.group, model.operation) == ("Teste notebook Sync", "datarisk", "Sync")
    assert repr(model) == f"<NeomarilModel 'Teste notebook Sync' {HASH} Sync Ready group='datarisk'>"
    assert model.docs == f"{URL}/models/{HASH}/docs/"
    with pytest.raises(NotFoundError, match="not in group 'other'"):
        client.get_model(HASH, group="other")


def test_get_model_as_the_original_english_guide_calls_it(client, server):
    """docs/source/deploying.rst of the original: get_model(group=..., model_id=...)."""
    statuses = iter(["Building", "Deployed", "Deployed"])
    server.handle("GET", f"/api/v1/models/{HASH}", lambda sent: (200, model_info(), {}))
    server.handle("GET", f"/api/v1/models/{HASH}/status", lambda sent: (200, {"status": next(statuses)}, {}))
    model = client.get_model(group="datarisk", model_id=HASH)
    assert model.model_id == model.model_hash == HASH
    waited = client.get_model(model_id=HASH, group_token="nmg-tok", wait_for_ready=True)
    assert waited.status() == "Deployed" and waited._known_token() == "nmg-tok"
    assert client.get_model(HASH, model_id=HASH).model_hash == HASH  # the same model twice
    with pytest.raises(InputError, match="name two models"):
        client.get_model(HASH, model_id="M" + "0" * 32)
    with pytest.raises(InputError, match="Which model"):
        client.get_model()


def test_an_execution_answers_to_the_originals_exec_id(client):
    assert NeomarilExecution(client._conn, HASH, 5).exec_id == 5


# The original product's names and arguments (its Model.ipynb and docstrings) -------------


def test_restart_model_is_restart_waiting_by_default_as_the_original(client, server):
    """Model.ipynb: model.restart_model(wait_for_ready=True); its class docstring: restart_model(False)."""
    statuses = iter(["Building", "Deployed"])
    server.on("POST", f"/api/v1/models/{HASH}/restart", 200, {"hash": HASH, "status": "Ready"})
    server.handle("GET", f"/api/v1/models/{HASH}/status", lambda sent: (200, {"status": next(statuses)}, {}))
    model = NeomarilModel(client._conn, model_info(status="Disabled"))
    assert model.restart_model() == "Deployed"
    assert [s.path for s in server.sent[-3:]] == [
        f"/api/v1/models/{HASH}/restart",
        f"/api/v1/models/{HASH}/status",
        f"/api/v1/models/{HASH}/status",
    ]
    before = len(server.sent)
    assert model.restart_model(False) == "Ready"
    assert [s.path for s in server.sent[before:]] == [f"/api/v1/models/{HASH}/restart"]
    model.restart_model(wait_for_ready=False)
    assert server.last().path == f"/api/v1/models/{HASH}/restart"


def test_execution_data_is_the_execution_fetched_now_as_the_original_names_it(client, server):
    """Model.ipynb reads execution.execution_data."""
    statuses = iter(["Running", "Succeeded"])
    server.handle(
        "GET", f"/api/v1/run/{HASH}/executions/5", lambda sent: (200, execution_info(next(statuses)), {})
    )
    execution = NeomarilExecution(client._conn, HASH, 5, group_token="nmg")
    assert execution.execution_data == execution_info("Running") and execution.status == "Running"
    assert execution.execution_data["status"] == "Succeeded" and execution.status == "Succeeded"
    assert server.last().headers["Authorization"] == "Bearer nmg"


def test_get_model_execution_on_the_model_and_on_the_client(client, server, monkeypatch):
    """The original's model.get_model_execution('1') and
    client.get_model_execution(model_id=..., exec_id=..., group=...)."""
    monkeypatch.setenv("NEOMARIL_GROUP_TOKEN", "nmg_env")
    server.on("GET", f"/api/v1/models/{HASH}", 200, model_info(operation="Async", status="Deployed"))
    server.handle(
        "GET",
        r"/api/v1/run/" + HASH + r"/executions/(\d+)",
        lambda sent: (
            200,
            {**execution_info("Succeeded"), "execution_id": int(sent.path.split("/")[-1])},
            {},
        ),
    )
    model = NeomarilModel(client._conn, model_info(operation="Async"))
    execution = model.get_model_execution("1")
    assert isinstance(execution, NeomarilExecution)
    assert (execution.exec_id, execution.model_hash, execution.status) == (1, HASH, "Succeeded")
    assert server.last().path == f"/api/v1/run/{HASH}/executions/1"
    assert server.last().headers["Authorization"] == "Bearer nmg_env"

    execution = client.get_model_execution(model_id=HASH, exec_id="2", group="datarisk")
    assert (execution.exec_id, execution.model_hash) == (2, HASH)
    assert client.get_model_execution(model_id=HASH, exec_id=3).exec_id == 3
    with pytest.raises(NotFoundError, match="not in group 'other'"):
        client.get_model_execution(model_id=HASH, exec_id=1, group="other")
    with pytest.raises(InputError, match="exec_id must be a whole number, e.g. 5; got 'one'"):
        model.get_model_execution("one")
    with pytest.raises(TypeError):
        client.get_model_execution(HASH, 1)  # keyword-only, as in the original


@pytest.fixture
def async_model(client, server) -> NeomarilModel:
    server.on(
        "POST",
        f"/api/v1/run/{HASH}",
        202,
        {"execution_id": 5, "status": "Requested", "url": f"{URL}/api/v1/run/{HASH}/executions/5"},
    )
    return NeomarilModel(client._conn, model_info(operation="Async", status="Deployed"))


def test_predict_wait_complete_waits_for_an_async_execution(async_model, server, files):
    statuses = iter(["Requested", "Running", "Succeeded"])
    server.handle(
        "GET", f"/api/v1/run/{HASH}/executions/5", lambda sent: (200, execution_info(next(statuses)), {})
    )
    execution = async_model.predict(str(files / "input.csv"), "nmg", True)  # the 2022 positional call
    assert isinstance(execution, NeomarilExecution) and execution.status == "Succeeded"
    polls = [s for s in server.sent if s.path == f"/api/v1/run/{HASH}/executions/5"]
    assert len(polls) == 3 and polls[-1].headers["Authorization"] == "Bearer nmg"

    before = len(server.sent)
    execution = async_model.predict(str(files / "input.csv"), group_token="nmg")  # the default: no wait
    assert execution.status == "Requested"
    assert [s.method for s in server.sent[before:]] == ["POST"]


def test_predict_wait_complete_raises_when_the_execution_failed(async_model, server, files):
    server.on(
        "GET",
        f"/api/v1/run/{HASH}/executions/5",
        200,
        execution_info("Failed", error_message="The entrypoint raised KeyError: 'x'"),
    )
    server.on("GET", f"/api/v1/run/{HASH}/executions/5/log", 200, {"log": "KeyError: 'x'\n"})
    with pytest.raises(ExecutionError, match="Execution 5 of .* failed: The entrypoint raised KeyError"):
        async_model.predict(str(files / "input.csv"), group_token="nmg", wait_complete=True)


def test_predict_wait_complete_has_no_effect_on_a_sync_model(sync_model, server):
    before = len(server.sent)
    assert sync_model.predict({"x": 1}, "nmg", True) == {"pred": 0, "proba": 0.0058}
    assert sync_model.predict({"x": 1}, group_token="nmg", wait_complete=True, timeout=5) == {
        "pred": 0,
        "proba": 0.0058,
    }
    assert [s.method for s in server.sent[before:]] == ["POST", "POST"]
    with pytest.raises(InputError, match="wait_complete must be True or False, got 30"):
        sync_model.predict({"x": 1}, "nmg", 30)
    assert len(server.sent) == before + 2


def test_the_original_exception_names_can_be_imported_and_caught():
    original = (
        "AuthenticationError",
        "ServerError",
        "ModelError",
        "PreprocessingError",
        "GroupError",
        "ExecutionError",
        "TrainingError",
        "InputError",
        "PipelineError",
        "DataSorceError",
        "DatasetNotFoundError",
        "CredentialError",
        "ExternalMonitoringError",
    )
    for name in original:
        cls = getattr(exceptions, name)
        assert issubclass(cls, NeomarilError) and name in exceptions.__all__
    assert issubclass(exceptions.TrainingRunError, ExecutionError)
    assert issubclass(exceptions.TrainingRunError, exceptions.TrainingError)
    assert issubclass(exceptions.DatasetNotFoundError, NotFoundError)
    # ModelError keeps its meaning: the model's own code raised.
    assert issubclass(ModelError, InputError) and not issubclass(ModelError, exceptions.TrainingError)


def test_generate_predict_code_returns_and_logs(client, server, caplog):
    server.on("GET", f"/api/v1/models/{HASH}/code", 200, {"python": "print('hi')\n"})
    caplog.set_level(logging.INFO, logger="neomaril_codex")
    model = NeomarilModel(client._conn, model_info())
    assert model.generate_predict_code("python") == "print('hi')\n"
    assert server.last().path == f"/api/v1/models/{HASH}/code?language=python"
    assert "print('hi')" in caplog.text
    with pytest.raises(InputError, match="curl, python, javascript"):
        model.generate_predict_code("ruby")


def test_lifecycle_logs_and_health(client, server):
    model = NeomarilModel(client._conn, model_info(status="Deployed"))
    server.on("POST", f"/api/v1/models/{HASH}/disable", 200, {"hash": HASH, "status": "Disabled"})
    server.on("POST", f"/api/v1/models/{HASH}/restart", 200, {"hash": HASH, "status": "Ready"})
    server.on("DELETE", f"/api/v1/models/{HASH}", 200, {"hash": HASH, "status": "Deleted"})
    server.on("GET", f"/api/v1/models/{HASH}/logs", 200, {"number": 2, "log": "built"})
    server.on(
        "GET", f"/api/v1/run/{HASH}/health", 503, {"model": HASH, "status": "Disabled", "deployed": False}
    )
    assert model.disable() == "Disabled"
    assert model.health() == {"model": HASH, "status": "Disabled", "deployed": False}
    assert model.restart() == "Ready"
    assert model.get_logs(build=2) == "built"
    assert server.last().path == f"/api/v1/models/{HASH}/logs?build=2"
    assert client.get_logs(HASH) == "built"
    model.delete()
    assert "Deleted" in repr(model)


# Pieces ----------------------------------------------------------------------------------


def test_dotenv_parser():
    text = (
        "# comment\n"
        "export A=1\n"
        "B = two words # trailing comment\n"
        "C='lit#eral \\n'\n"
        'D="line\\nnext \\"q\\""\n'
        'E="multi\n'
        'line"\n'
        "not a line\n"
        'F=""\n'
    )
    assert parse_dotenv(text) == {
        "A": "1",
        "B": "two words",
        "C": "lit#eral \\n",
        "D": 'line\nnext "q"',
        "E": "multi\nline",
        "F": "",
    }


def test_load_dotenv_never_overrides(monkeypatch, tmp_path):
    monkeypatch.setenv("NEOMARIL_USER", "shell")
    (tmp_path / "x.env").write_text("NEOMARIL_USER=file\nNEOMARIL_GROUP=g\n")
    assert load_dotenv(tmp_path / "x.env") == {"NEOMARIL_GROUP": "g"}
    assert os.environ["NEOMARIL_USER"] == "shell"
    assert load_dotenv(tmp_path / "missing.env") == {}


def test_multipart_body_streams_in_chunks_with_a_progress_bar(tmp_path, monkeypatch):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(3 * _upload.CHUNK_SIZE + 17))
    stream = io.StringIO()
    progress = _upload.Progress("Uploading big.bin", stream)
    body = _upload.MultipartBody([("name", 'we"ird\nname')], [("model", 'a "b".bin', big)], progress)
    chunks = list(body)
    assert max(len(c) for c in chunks) <= _upload.CHUNK_SIZE
    assert len(b"".join(chunks)) == len(body)
    drawn = stream.getvalue()
    assert drawn.startswith("\rUploading big.bin") and "100% |" + "█" * 30 + "|" in drawn
    assert drawn.endswith("\n")
    assert b'name="name"\r\n\r\nwe"ird\nname\r\n' in b"".join(chunks)
    assert b'filename="a %22b%22.bin"' in b"".join(chunks)


def test_progress_only_when_interactive_and_large(tmp_path, monkeypatch):
    small, large = tmp_path / "s", tmp_path / "l"
    small.write_bytes(b"x")
    large.write_bytes(b"x" * _upload.PROGRESS_MIN_BYTES)
    monkeypatch.setattr(_upload, "interactive", lambda: True)
    assert _upload.progress_for("x", [("f", "s", small)], None) is None
    assert _upload.progress_for("x", [("f", "l", large)], None) is not None
    assert _upload.progress_for("x", [("f", "l", large)], False) is None
    assert _upload.progress_for("x", [("f", "s", small)], True) is not None
    monkeypatch.setattr(_upload, "interactive", lambda: False)
    assert _upload.progress_for("x", [("f", "l", large)], None) is None


def test_logging_is_quiet_by_default_and_readable_when_asked(monkeypatch):
    logger = logging.getLogger("neomaril_codex")
    assert any(isinstance(h, logging.NullHandler) for h in logger.handlers)
    monkeypatch.setattr(logger, "handlers", list(logger.handlers))
    monkeypatch.setattr(logger, "level", logger.level)
    stream = io.StringIO()
    monkeypatch.setattr(_log.sys, "stderr", stream)
    neomaril_codex.set_log_level("INFO")
    neomaril_codex.set_log_level("INFO")
    assert sum(isinstance(h, _log._SdkHandler) for h in logger.handlers) == 1
    logging.getLogger("neomaril_codex.model").info("Execution %s started.", 5)
    line = stream.getvalue()
    assert (
        " | INFO     | neomaril_codex.model:test_logging_is_quiet_by_default_and_readable_when_asked:" in line
    )
    assert line.endswith(" - Execution 5 started.\n")


def test_notebook_detection(monkeypatch):
    class FakeIPython:
        shell = None

        @classmethod
        def get_ipython(cls):
            return cls.shell

    monkeypatch.setitem(_log.sys.modules, "IPython", FakeIPython)
    assert _log.in_notebook() is False  # installed and imported, but no shell running
    FakeIPython.shell = object()
    assert _log.in_notebook() is True


# Failures while waiting and downloading ------------------------------------------------------


def test_a_wait_asks_again_through_a_server_restart_and_says_so(client, server, caplog, monkeypatch):
    """A restart of a few seconds ended every wait with a NetworkError while the build went on
    (and retrying create_model then made a second model)."""
    sleeps = []
    monkeypatch.setattr(base.time, "sleep", sleeps.append)
    answers = iter(
        [
            (200, {"hash": HASH, "status": "Building"}, {}),
            (502, b"<html>Bad gateway</html>", {}),  # the balancer, the node gone
            (503, {"detail": "Restarting."}, {"Retry-After": "7"}),
            (200, {"hash": HASH, "status": "Deployed"}, {}),
        ]
    )
    server.handle("GET", f"/api/v1/models/{HASH}/status", lambda sent: next(answers))
    model = NeomarilModel(client._conn, model_info())
    caplog.set_level(logging.WARNING, logger="neomaril_codex")
    real_handle = server.send

    def refused_twice_then_answered(request, **kwargs):
        if refused_twice_then_answered.left and request.path_url.endswith("/status"):
            refused_twice_then_answered.left -= 1
            raise requests.ConnectionError("[Errno 111] Connection refused")
        return real_handle(request, **kwargs)

    refused_twice_then_answered.left = 4  # each GET is sent twice before a NetworkError
    monkeypatch.setattr(server, "send", refused_twice_then_answered)
    assert model.wait_ready() is model
    assert base.OUTAGE_RETRY_SECONDS in sleeps and 7 in sleeps  # 7: the 503's Retry-After
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    # Two outages: refused connections, then the balancer's 502 and the restart's 503.
    assert ["answers again" in w for w in warnings] == [False, True, False, True]
    assert "no answer from the server" in warnings[0] and "Connection refused" in warnings[0]
    assert "Bad gateway" in warnings[2]


def test_a_wait_ends_with_the_outage_at_its_timeout_and_at_once_on_other_errors(client, server):
    server.on("GET", f"/api/v1/models/{HASH}/status", 503, {"detail": "Restarting."})
    model = NeomarilModel(client._conn, model_info())
    with pytest.raises(ServerError, match="Restarting"):
        model.wait_ready(timeout=0)
    server.on("GET", f"/api/v1/run/{HASH}/executions/5", 404, {"detail": "No execution 5."})
    with pytest.raises(NotFoundError):  # not an outage: no second ask
        NeomarilExecution(client._conn, HASH, 5, group_token="nmg").wait_ready(timeout=3600)
    assert len([s for s in server.sent if s.path.endswith("/executions/5")]) == 1


def _succeeded_execution(client, server, body: bytes):
    server.on("GET", f"/api/v1/run/{HASH}/executions/5", 200, execution_info("Succeeded"))
    server.on(
        "GET",
        f"/api/v1/run/{HASH}/executions/5/result",
        200,
        body,
        {"Content-Disposition": 'attachment; filename="output.csv"', "Content-Length": str(len(body))},
    )
    return NeomarilExecution(client._conn, HASH, 5, group_token="nmg")


def test_a_download_keeps_a_file_of_the_same_name_unless_told_its_name(client, server, tmp_path):
    """Every result of a model is often output.csv: downloading several into one folder kept
    only the last."""
    (tmp_path / "output.csv").write_bytes(b"MY PRECIOUS DATA")
    execution = _succeeded_execution(client, server, b"pred\n1\n")
    assert execution.download_result(tmp_path) == str(tmp_path / "output (1).csv")
    assert execution.download_result(tmp_path) == str(tmp_path / "output (2).csv")
    assert (tmp_path / "output.csv").read_bytes() == b"MY PRECIOUS DATA"
    assert (tmp_path / "output (2).csv").read_bytes() == b"pred\n1\n"
    assert execution.download_result(tmp_path, filename="output.csv") == str(tmp_path / "output.csv")
    assert (tmp_path / "output.csv").read_bytes() == b"pred\n1\n"  # named by the caller: replaced


def test_a_download_that_cannot_be_written_is_an_input_error_naming_the_file(client, server, tmp_path):
    execution = _succeeded_execution(client, server, b"x" * 1000)
    (tmp_path / "output.csv.part").mkdir()  # where the download would be written
    with pytest.raises(InputError) as raised:
        execution.download_result(tmp_path)
    message = str(raised.value)
    assert message.startswith(f"path: could not save '{tmp_path / 'output.csv'}' (the file is 1,000 bytes): ")
    assert message.endswith("; nothing was saved.") and not (tmp_path / "output.csv").exists()


def test_a_429_is_a_too_many_requests_error_carrying_its_wait(client, server):
    server.on(
        "GET",
        f"/api/v1/run/{HASH}/executions/5",
        429,
        {"detail": "Busy.", "code": "busy"},
        {"Retry-After": "5"},
    )
    with pytest.raises(exceptions.TooManyRequestsError) as raised:
        NeomarilExecution(client._conn, HASH, 5, group_token="nmg").get_status()
    assert isinstance(raised.value, ServerError) and not isinstance(raised.value, InputError)
    assert raised.value.retry_after == 5 and str(raised.value) == "Busy. (Retry-After: 5 s)"


def test_the_token_of_a_login_is_revoked_once_nothing_uses_it(server):
    """Scripts that never called close() left a live token per run."""
    import gc

    client = NeomarilModelClient("ana", "pw", URL, session=session_with(server))
    model = NeomarilModel(client._conn, model_info())
    del client
    gc.collect()
    assert not [s for s in server.sent if s.method == "DELETE"]  # the model still uses it
    del model
    gc.collect()
    deleted = [s for s in server.sent if s.method == "DELETE"]
    assert [s.path for s in deleted] == ["/api/v1/auth/tokens/t-1"]
    assert deleted[0].headers["Authorization"] == "Token nmu_user"

    closed = NeomarilModelClient("ana", "pw", URL, session=session_with(server))
    closed.close()
    del closed
    gc.collect()
    assert len([s for s in server.sent if s.method == "DELETE"]) == 2  # close() revoked it, once


def test_a_closed_client_says_it_was_closed(client, server):
    client.close()
    with pytest.raises(AuthenticationError, match=r"This client was closed \(close\(\) revoked its token\)"):
        client.create_group("g2")


def test_a_download_error_of_requests_is_not_taken_for_the_disks(client, server, tmp_path, monkeypatch):
    """requests' errors are OSErrors too: a bad compressed answer read as "could not save"."""
    execution = _succeeded_execution(client, server, b"x" * 10)

    def broken(self, chunk_size=1):
        raise requests.exceptions.ContentDecodingError("Received response with content-encoding: gzip")

    monkeypatch.setattr(requests.Response, "iter_content", broken)
    with pytest.raises(requests.exceptions.ContentDecodingError):
        execution.download_result(tmp_path)
    assert list(tmp_path.iterdir()) == []
