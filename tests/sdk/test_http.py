"""The SDK against a stub server on 127.0.0.1: what a real socket does to it.

Answers that are not JSON (a proxy's login page, an empty body), connections dropped in
the middle of an answer, answers that never come, tokens that cannot be put in a header,
and arguments refused before anything is sent: every one is a NeomarilError with a
message that says what happened, and none shows a token.

Stdlib, requests and pytest only: these run on Python 3.8 too (test_py38.py).
"""

from __future__ import annotations

import logging
import socket

import pytest
from neomaril_codex import _http
from neomaril_codex.base import NeomarilExecution
from neomaril_codex.exceptions import (
    InputError,
    NetworkError,
    NotFoundError,
    ServerError,
    TooManyRequestsError,
)
from neomaril_codex.model import NeomarilModel, NeomarilModelClient

from tests.helpers.sdk import sdk_env
from tests.sdk.fake import model_info
from tests.sdk.loopback import Stub, user_info

HASH = "M" + "a" * 32
RUN = f"/api/v1/run/{HASH}"
RESULT = f"{RUN}/executions/5/result"
LOGIN_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Sign in - Corporate proxy</title></head>\n<body>"
    + b"<p>Please sign in to continue.</p>" * 2000
    + b"</body></html>"
)
# Unique enough that finding it in a message means the token leaked.
SECRET = "nmg_S3cretGroupT0ken"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    sdk_env(monkeypatch, tmp_path)
    monkeypatch.setattr(_http, "GET_RETRY_DELAY", 0.0)


@pytest.fixture
def stub():
    with Stub() as running:
        running.on("GET", "/api/v1/auth/me", Stub.reply(200, user_info()))
        yield running


@pytest.fixture
def client(stub) -> NeomarilModelClient:
    return NeomarilModelClient(url=stub.url, token="nmu_user", timeout=5)


def sync_model(client: NeomarilModelClient) -> NeomarilModel:
    return NeomarilModel(client._conn, model_info(status="Deployed"))


def async_model(client: NeomarilModelClient) -> NeomarilModel:
    return NeomarilModel(client._conn, model_info(operation="Async", status="Deployed"))


def posts(stub: Stub, path: str):
    return [r for r in stub.received if r.method == "POST" and r.path == path]


# 1. Answers that are not JSON ------------------------------------------------------------


@pytest.mark.parametrize(
    "body, content_type, shown",
    [(LOGIN_PAGE, "text/html", "Sign in - Corporate proxy"), (b"", "text/plain", "empty")],
)
def test_connecting_to_something_that_answers_no_json_is_a_server_error(stub, body, content_type, shown):
    stub.on("GET", "/api/v1/auth/me", Stub.raw(200, body, content_type))
    with pytest.raises(ServerError) as raised:
        NeomarilModelClient(url=stub.url, token="nmu_user")
    error = raised.value
    message = str(error)
    assert not isinstance(error, NetworkError)  # it answered: a wrong URL, not a network
    assert f"GET {stub.url}/api/v1/auth/me" in message and "HTTP 200" in message
    assert "not JSON" in message and shown in message and "NEOMARIL_URL" in message
    assert len(message) < 600  # a snippet, not the whole page
    assert error.status_code == 200


def test_every_call_answered_with_no_json_is_a_server_error(client, stub, tmp_path):
    model = sync_model(client)
    stub.on("POST", RUN, Stub.raw(200, LOGIN_PAGE, "text/html"))
    stub.on("GET", f"/api/v1/models/{HASH}/status", Stub.raw(200, b"", "application/json"))
    stub.on("GET", "/api/v1/groups", Stub.raw(200, b"<html>oops", "text/html"))
    stub.on("POST", "/api/v1/auth/login", Stub.raw(200, b"", "text/html"))
    stub.on("DELETE", f"/api/v1/models/{HASH}", Stub.raw(200, b"nope", "text/plain"))
    calls = {
        "predict": lambda: model.predict({"x": 1}, group_token="nmg_group"),
        "status": model.status,
        "get_json": client.list_groups,
        "login": lambda: NeomarilModelClient("ana", "pw", stub.url),
        "delete": model.delete,
    }
    for name, call in calls.items():
        with pytest.raises(ServerError, match="not JSON") as raised:
            call()
        assert raised.value.status_code == 200, name


@pytest.mark.parametrize(
    "status, body, content_type, exception",
    [
        (404, b"<!doctype html><title>Not Found</title>", "text/html", NotFoundError),
        (502, b"<html><body><h1>502 Bad Gateway</h1></body></html>", "text/html", ServerError),
        (404, b'["not", "ours"]', "application/json", NotFoundError),
    ],
)
def test_an_error_page_that_is_not_neomarils_says_where_it_came_from(
    stub, status, body, content_type, exception
):
    stub.on("GET", "/api/v1/auth/me", Stub.raw(status, body, content_type))
    with pytest.raises(exception) as raised:  # the class still follows the status
        NeomarilModelClient(url=stub.url, token="nmu_user")
    message = str(raised.value)
    assert f"GET {stub.url}/api/v1/auth/me" in message and f"HTTP {status}" in message
    assert "Is NEOMARIL_URL (url=) the portal's address?" in message
    assert ("not JSON" in message) == (content_type != "application/json")
    assert raised.value.status_code == status


def test_neomarils_own_error_answer_is_told_by_its_detail_alone(stub):
    stub.on("GET", "/api/v1/auth/me", Stub.reply(404, {"detail": "No such thing.", "code": "not_found"}))
    with pytest.raises(NotFoundError) as raised:
        NeomarilModelClient(url=stub.url, token="nmu_user")
    assert str(raised.value) == "No such thing."


# 2. Connections dropped in the middle of an answer ---------------------------------------


def test_a_prediction_dropped_midway_is_a_network_error_and_not_sent_again(client, stub):
    stub.on("POST", RUN, Stub.dropped())
    with pytest.raises(NetworkError) as raised:
        sync_model(client).predict({"x": 1}, group_token="nmg_group")
    assert "dropped" in str(raised.value) and f"POST {stub.url}{RUN}" in str(raised.value)
    assert len(posts(stub, RUN)) == 1  # a POST is never retried


def test_a_post_closed_unanswered_after_it_arrived_says_it_may_have_been_carried_out(client, stub):
    stub.on("POST", RUN, Stub.closed())
    with pytest.raises(NetworkError) as raised:
        sync_model(client).predict({"x": 1}, group_token="nmg_group")
    message = str(raised.value)
    assert message.startswith(f"POST {stub.url}{RUN}: the connection was dropped before an answer arrived")
    assert "may have carried it out" in message and "Could not reach" not in message
    assert len(posts(stub, RUN)) == 1  # it did arrive, once


def test_a_post_to_a_server_that_is_not_there_could_not_reach_it(client, stub):
    with socket.socket() as unused:  # a loopback port nobody listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    client._conn.url = f"http://127.0.0.1:{port}"
    with pytest.raises(NetworkError) as raised:
        sync_model(client).predict({"x": 1}, group_token="nmg_group")
    assert str(raised.value).startswith(f"Could not reach Neomaril at http://127.0.0.1:{port}")
    assert "carried it out" not in str(raised.value)


@pytest.mark.parametrize(
    ("header", "name"),
    [
        ('attachment; filename="a\\"b.csv"', 'a"b.csv'),
        ('attachment; filename="a\\\\b.csv"', "a\\b.csv"),
        ("attachment; filename*=utf-8''r%C3%A9sultat.csv", "résultat.csv"),
        ("attachment; filename=plain.csv", "plain.csv"),
    ],
)
def test_download_names_are_unquoted_as_sent(client, stub, tmp_path, header, name):
    stub.on("GET", RESULT, Stub.raw(200, b"a,b\n", "text/csv", {"Content-Disposition": header}))
    execution = NeomarilExecution(client._conn, HASH, 5, group_token="nmg_group")
    assert execution.download_result(str(tmp_path)) == str(tmp_path / name)


@pytest.mark.parametrize(
    ("sent", "saved"),
    [(".env", "_env"), (".bashrc", "_bashrc"), ("../.profile", "_profile"), ("..", "_."), (".", None)],
)
def test_a_result_name_that_would_be_a_hidden_file_is_saved_as_browsers_do(
    client, stub, tmp_path, sent, saved
):
    """The name is the model's choice: it must not replace the user's `.env` or shell start-up files."""
    stub.on(
        "GET",
        RESULT,
        Stub.raw(200, b"A=1\n", "text/plain", {"Content-Disposition": f'attachment; filename="{sent}"'}),
    )
    (tmp_path / ".env").write_text("SECRET=mine\n")
    execution = NeomarilExecution(client._conn, HASH, 5, group_token="nmg_group")
    expected = tmp_path / (saved or "execution_5_result")
    assert execution.download_result(str(tmp_path)) == str(expected)
    assert expected.read_bytes() == b"A=1\n"
    assert (tmp_path / ".env").read_text() == "SECRET=mine\n"
    # The user's own choice of name is theirs to make.
    assert execution.download_result(str(tmp_path), ".env") == str(tmp_path / ".env")
    assert (tmp_path / ".env").read_bytes() == b"A=1\n"


def test_a_result_no_longer_on_the_server_is_not_found_and_saves_nothing(client, stub, tmp_path):
    detail = (
        "The result of execution 5 is no longer on the server: its file was deleted from the "
        "execution's folder (not by the retention policy), so it can't be downloaded any more."
    )
    stub.on("GET", RESULT, Stub.reply(404, {"detail": detail, "code": "files_removed"}))
    execution = NeomarilExecution(client._conn, HASH, 5, group_token="nmg_group")
    with pytest.raises(NotFoundError) as raised:
        execution.download_result(str(tmp_path / "out"))
    assert str(raised.value) == detail and raised.value.code == "files_removed"
    assert not (tmp_path / "out").exists()


def test_a_get_dropped_midway_is_retried_once_then_a_network_error(client, stub):
    stub.on("GET", f"/api/v1/models/{HASH}/status", Stub.dropped(sent=b'{"status": '))
    with pytest.raises(NetworkError, match="dropped"):
        sync_model(client).status()
    assert [r.path for r in stub.received if "status" in r.path] == [f"/api/v1/models/{HASH}/status"] * 2


def test_a_download_dropped_midway_is_a_network_error_and_leaves_no_file(client, stub, tmp_path):
    stub.on("GET", RESULT, Stub.dropped(sent=b"a,b\n1,2\n", promised=10_000))
    execution = NeomarilExecution(client._conn, HASH, 5, group_token="nmg_group")
    with pytest.raises(NetworkError, match="dropped"):
        execution.download_result(str(tmp_path / "out"), "result.csv")
    assert list((tmp_path / "out").iterdir()) == []


# 3. Tokens that cannot be sent -----------------------------------------------------------


def test_tokens_read_with_their_newline_are_stripped(client, stub, monkeypatch):
    stub.on("POST", RUN, Stub.reply(200, {"pred": 1}))
    stub.on("GET", f"{RUN}/executions/5", Stub.reply(200, {"status": "Running"}))
    model = sync_model(client)
    assert model.predict({"x": 1}, group_token=SECRET + "\n") == {"pred": 1}
    assert stub.received[-1].headers["Authorization"] == f"Bearer {SECRET}"
    model.set_token(f"  {SECRET}\r\n")
    model.predict({"x": 1})
    assert stub.received[-1].headers["Authorization"] == f"Bearer {SECRET}"
    model.get_execution(5, group_token=f"{SECRET}\n")
    assert stub.received[-1].headers["Authorization"] == f"Bearer {SECRET}"

    NeomarilModelClient(url=stub.url, token="nmu_user\n")
    assert stub.received[-1].headers["Authorization"] == "Token nmu_user"


@pytest.mark.parametrize(
    "inside",
    ["\n", " ", "\t", "\x00", "\x7f", "\u2028", "\u20ac"],
    ids=["newline", "space", "tab", "nul", "del", "line-separator", "euro"],
)
def test_a_token_with_whitespace_control_or_non_latin1_characters_is_refused_unseen(
    client, stub, caplog, inside
):
    caplog.set_level(logging.DEBUG)
    token = SECRET[:8] + inside + SECRET[8:]
    model = sync_model(client)
    model_with_token = sync_model(client)
    model_with_token.set_token(token)
    calls = [
        lambda: model.predict({"x": 1}, group_token=token),
        lambda: model_with_token.predict({"x": 1}),
        lambda: model.get_execution(5, group_token=token),
        lambda: model.health(group_token=token),
        lambda: NeomarilModelClient(url=stub.url, token=token.replace("nmg_", "nmu_")),
    ]
    for call in calls:
        with pytest.raises(InputError) as raised:
            call()
        shown = f"{raised.value}{raised.value!r}{raised.value.body}"
        assert "token" in shown and SECRET[:8] not in shown and SECRET[8:] not in shown
    assert SECRET[8:] not in caplog.text
    assert [r.path for r in stub.received] == ["/api/v1/auth/me"]  # the client fixture's, only


# 4. Arguments refused before sending -----------------------------------------------------


def test_download_into_a_path_that_is_a_file_is_an_input_error(client, stub, tmp_path):
    stub.on("GET", RESULT, Stub.raw(200, b"a,b\n", "text/csv"))
    existing = tmp_path / "result.csv"
    existing.write_text("keep me")
    execution = NeomarilExecution(client._conn, HASH, 5, group_token="nmg_group")
    with pytest.raises(InputError) as raised:
        execution.download_result(str(existing))
    assert str(existing) in str(raised.value) and "filename=" in str(raised.value)
    assert existing.read_text() == "keep me"
    assert execution.download_result(str(tmp_path), "result.csv") == str(existing)  # the way to do it
    assert existing.read_text() == "a,b\n"


@pytest.mark.parametrize("timeout", ["5", -1, 0, [5, 10], (5, "10"), True, float("nan")])
def test_a_wrong_timeout_is_an_input_error(client, stub, timeout):
    stub.on("POST", RUN, Stub.reply(200, {"pred": 1}))
    model = sync_model(client)
    with pytest.raises(InputError, match="timeout"):
        model.predict({"x": 1}, group_token="nmg_group", timeout=timeout)
    assert posts(stub, RUN) == []


def test_timeouts_that_worked_still_do(client, stub):
    stub.on("POST", RUN, Stub.reply(200, {"pred": 1}))
    model = sync_model(client)
    for timeout in (5, 2.5, (3, 10), None):
        assert model.predict({"x": 1}, group_token="nmg_group", timeout=timeout) == {"pred": 1}
    with pytest.raises(InputError, match="timeout"):
        NeomarilModelClient(url=stub.url, token="nmu_user", timeout="60")


def test_a_wrong_execution_number_is_an_input_error(client, stub):
    stub.on("GET", f"{RUN}/executions/5", Stub.reply(200, {"status": "Running"}))
    model = async_model(client)
    for wrong in ("abc", "5.5", 5.5, None, [5]):
        with pytest.raises(InputError, match="execution_id"):
            model.get_execution(wrong, group_token="nmg_group")
    for right in (5, "5", " 5 ", 5.0):  # what int() took before
        assert model.get_execution(right, group_token="nmg_group").execution_id == 5


# 5. Answers without what they should have ------------------------------------------------


def test_an_async_answer_without_execution_id_is_a_server_error(client, stub, tmp_path):
    stub.on("POST", RUN, Stub.reply(202, {"status": "Requested"}))
    data = tmp_path / "input.csv"
    data.write_text("a,b\n1,2\n")
    with pytest.raises(ServerError, match="execution_id") as raised:
        async_model(client).predict(str(data), group_token="nmg_group")
    assert raised.value.status_code == 202 and raised.value.body == {"status": "Requested"}


def test_answers_without_the_fields_the_sdk_reads_are_server_errors(client, stub):
    """A portal of another version (or another service) that answers JSON without what the
    SDK reads is named as such, never a KeyError or TypeError from inside the SDK."""
    model = sync_model(client)
    stub.on("POST", f"/api/v1/models/{HASH}/disable", Stub.reply(200, {"detail": "ok"}))
    stub.on("GET", f"/api/v1/models/{HASH}/status", Stub.reply(200, ["Deployed"]))
    stub.on("GET", f"/api/v1/models/{HASH}/logs", Stub.reply(200, {"lines": []}))
    stub.on("POST", f"/api/v1/models/{HASH}/share-links", Stub.reply(201, {"id": 3}))
    stub.on("GET", f"/api/v1/models/{HASH}/versions", Stub.reply(200, {"items": []}))
    calls = {
        model.disable: "an object with 'status'",
        model.status: "a JSON object, not an array",
        model.get_logs: "an object with 'log'",
        model.share_docs: "an object with 'url'",
        model.versions: "an object with 'results'",
    }
    for call, lacking in calls.items():
        with pytest.raises(ServerError) as raised:
            call()
        message = str(raised.value)
        assert f"needs {lacking}" in message and "HTTP 20" in message, message
        assert "as new as this SDK" in message
    assert raised.value.body == {"items": []}


# 6. Messages -----------------------------------------------------------------------------


def test_too_many_requests_says_when_to_retry(stub):
    detail = "Too many failed logins from your address (5). Logins from it are refused for 15 minutes."
    stub.on(
        "POST",
        "/api/v1/auth/login",
        Stub.reply(429, {"detail": detail, "code": "locked_out"}, {"Retry-After": "900"}),
    )
    with pytest.raises(TooManyRequestsError) as raised:
        NeomarilModelClient("ana", "pw", stub.url)
    assert str(raised.value).startswith(detail) and "Retry-After: 900 s" in str(raised.value)
    assert raised.value.status_code == 429 and raised.value.code == "locked_out"
    assert raised.value.retry_after == 900


def test_an_upload_timeout_names_the_read_timeout(stub, tmp_path):
    client = NeomarilModelClient(url=stub.url, token="nmu_user", timeout=5, upload_timeout=0.3)
    stub.on("POST", RUN, stub.silent(10))
    data = tmp_path / "input.csv"
    data.write_text("a,b\n1,2\n")
    with pytest.raises(NetworkError) as raised:
        async_model(client).predict(str(data), group_token="nmg_group")
    message = str(raised.value)
    assert "no answer within 0.3 s" in message and "(" not in message.split("s.")[0]


def test_a_sync_timeout_names_the_timeout(client, stub):
    stub.on("POST", RUN, stub.silent(10))
    with pytest.raises(NetworkError, match=r"no answer within 0\.2 s\. Pass a larger timeout="):
        sync_model(client).predict({"x": 1}, group_token="nmg_group", timeout=0.2)


def test_a_folder_given_as_a_file_is_called_a_folder(client, stub, tmp_path):
    folder = tmp_path / "inputs"
    folder.mkdir()
    for model in (async_model(client), sync_model(client)):
        with pytest.raises(InputError) as raised:
            model.predict(str(folder), group_token="nmg_group")
        assert f"'{folder}' is a folder, not a file" in str(raised.value)
        assert "no such file" not in str(raised.value)
    assert posts(stub, RUN) == []


def test_https_to_a_plain_http_server_says_nothing_was_sent(stub):
    """It said the server "may have carried it out", though the TLS handshake had failed."""
    with pytest.raises(NetworkError) as raised:
        NeomarilModelClient("ana", "pw", stub.url.replace("http://", "https://"), timeout=5)
    message = str(raised.value)
    assert message.startswith("Could not reach Neomaril at https://") and "TLS handshake failed" in message
    assert "may have carried it out" not in message and not stub.received
