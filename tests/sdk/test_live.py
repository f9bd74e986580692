"""The SDK against the real processes (`make run`: web, worker, model host).

The documentation's examples run here as written (reference/deploying.pt.rst and
DESIGN.md's compatibility section): positional create_model, wait_ready, predict,
async predict/wait/download, the three sources of the group token, docs and generated
code; then the error paths a user meets.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests
from neomaril_codex.base import NeomarilExecution
from neomaril_codex.exceptions import (
    AuthenticationError,
    BuildError,
    ModelError,
    NotFoundError,
    PermissionDeniedError,
    StateError,
)
from neomaril_codex.model import NeomarilModel, NeomarilModelClient

from tests.helpers import real_models
from tests.helpers.processes import RunningPortal
from tests.helpers.sdk import sdk_env

pytestmark = pytest.mark.slow


SYNC_SOURCE = textwrap.dedent(
    """
    import json

    def score(data, base_path):
        d = json.loads(data)
        if d.get("boom"):
            raise ValueError("boom: " + d["boom"])
        return {"double": d["x"] * 2, "label": d["name"].upper()}
    """
)
ASYNC_SOURCE = textwrap.dedent(
    """
    import os

    def score(data_path, model_path):
        text = open(os.path.join(data_path, os.environ["inputFileName"])).read()
        out = os.path.join(data_path, "output.csv")
        with open(out, "w") as f:
            f.write(text.strip() + ",scored\\n")
        return out
    """
)
BROKEN_SOURCE = textwrap.dedent(
    """
    def score(data, base_path):
        raise RuntimeError("smoke boom: the model cannot answer its schema")
    """
)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    portal = RunningPortal(
        tmp_path_factory.mktemp("sdk-live") / "data", extra_env={"NEOMARIL_LOGIN_RATE": "1000/min"}
    )
    try:
        portal.wait_healthy()
        yield portal
    finally:
        portal.stop()


@pytest.fixture(scope="module")
def admin(live) -> NeomarilModelClient:
    """An admin's client, connected with positional arguments as in the original SDK."""
    return NeomarilModelClient(live.admin[0], live.admin[1], live.url)


@pytest.fixture(scope="module")
def group_token(admin) -> str:
    return admin.create_group("datarisk", "Risk models")


@pytest.fixture(scope="module")
def other_token(admin) -> str:
    return admin.create_group("others")


@pytest.fixture(scope="module")
def PATH(tmp_path_factory) -> str:
    """A folder of the files the documentation's examples upload, as `PATH + 'app.py'`."""
    folder = tmp_path_factory.mktemp("files")
    (folder / "app.py").write_text(SYNC_SOURCE)
    (folder / "model.pkl").write_bytes(b"unused")
    (folder / "requirements.txt").write_text("")
    (folder / "schema.json").write_text(json.dumps({"x": 21, "name": "ana"}))
    (folder / "async_app.py").write_text(ASYNC_SOURCE)
    (folder / "broken.py").write_text(BROKEN_SOURCE)
    (folder / "input.csv").write_text("a,b\n1,2\n")
    return str(folder) + "/"


@pytest.fixture
def env(monkeypatch, tmp_path, live):
    """The documented setup: NEOMARIL_URL, NEOMARIL_USER, NEOMARIL_PASSWORD; no .env around."""
    return sdk_env(monkeypatch, tmp_path, live)


@pytest.fixture(scope="module")
def sync_model(admin, group_token, PATH) -> NeomarilModel:
    return admin.create_model(
        "doubler",
        "score",
        PATH + "app.py",
        PATH + "model.pkl",
        PATH + "requirements.txt",
        schema=PATH + "schema.json",
        python_version="3.9",
        group="datarisk",
    )


@pytest.fixture(scope="module")
def async_model(admin, group_token, PATH) -> NeomarilModel:
    return admin.create_model(
        "Teste notebook Async",
        "score",
        PATH + "async_app.py",
        PATH + "model.pkl",
        PATH + "requirements.txt",
        python_version="3.9",
        operation="Async",
        group="datarisk",
    )


def test_documented_sync_example_with_a_real_sklearn_model(env, group_token, tmp_path):
    folder = tmp_path / "sklearn"
    real_models.train_model_pickle(folder)
    (folder / "app.py").write_text(real_models.SYNC_SOURCE)
    (folder / "requirements.txt").write_text(real_models.REQUIREMENTS)
    (folder / "schema.json").write_text(json.dumps(real_models.SCHEMA))
    (folder / ".env").write_text("API_KEY=s3cr3t-value\n")
    PATH = str(folder) + "/"
    env.setenv("NEOMARIL_GROUP_TOKEN", group_token)

    # As in the documentation, unchanged but for the env= line it shows commented out.
    from neomaril_codex.model import NeomarilModelClient

    client = NeomarilModelClient()
    # fmt: off
    model = client.create_model(
        "Teste notebook Sync",  # model_name
        "score",  # name of the scoring function
        PATH + "app.py",  # Path of the source file
        PATH + "model.pkl",  # Path of the model pkl file,
        PATH + "requirements.txt",  # Path of the requirements file,
        schema=PATH + "schema.json",  # Path of the schema file, but it could be a dict (only required for Sync models)
        env=PATH + ".env",  #  File for env variables (this will be encrypted in the server)
        python_version="3.9",  # Can be 3.7 to 3.10
        operation="Sync",  # Can be Sync or Async
        group="datarisk",  # Model group (create one using the client)
    )
    # fmt: on
    model.wait_ready()
    assert model.status() == "Deployed"
    answer = model.predict({"radius": 17.99, "texture": 10.38, "smoothness": 0.1184})
    assert set(answer) == {"pred", "proba", "vector", "secret_ok"}
    assert answer["pred"] in (0, 1) and 0.0 <= answer["proba"] <= 1.0
    assert answer["vector"] == [0, 1, 2] and answer["secret_ok"] is True
    assert model.model_info()["env_names"] == ["API_KEY"]


def test_documented_async_example(env, group_token, async_model, PATH, tmp_path, caplog):
    env.setenv("NEOMARIL_GROUP_TOKEN", group_token)
    caplog.set_level(logging.INFO, logger="neomaril_codex")

    execution = async_model.predict(PATH + "input.csv")

    assert isinstance(execution, NeomarilExecution) and execution.execution_id >= 1
    started = [r for r in caplog.records if "started" in r.getMessage()]
    assert [(r.levelname, r.name, r.funcName, r.getMessage()) for r in started] == [
        (
            "INFO",
            "neomaril_codex.model",
            "predict",
            f"Execution {execution.execution_id} started. Use the id to check its status.",
        )
    ]
    execution.wait_ready(timeout=300)
    assert execution.get_status() == "Succeeded"
    info = execution.execution_info()
    assert (info["input_file"], info["output_file"], info["input_size"]) == ("input.csv", "output.csv", 8)
    saved = execution.download_result(str(tmp_path / "results"))
    assert saved == str(tmp_path / "results" / "output.csv")
    assert Path(saved).read_text() == "a,b\n1,2,scored\n"
    again = async_model.get_execution(execution.execution_id)
    assert again.status == "Succeeded"
    assert [e["execution_id"] for e in async_model.list_executions()][0] == execution.execution_id


def test_group_token_from_env_then_set_token_then_per_call(env, sync_model, group_token, other_token):
    model = NeomarilModelClient().get_model(sync_model.model_hash)  # no token set on this object
    with pytest.raises(AuthenticationError, match="No group token"):
        model.predict({"x": 1, "name": "a"})
    env.setenv("NEOMARIL_GROUP_TOKEN", group_token)
    assert model.predict({"x": 1, "name": "a"}) == {"double": 2, "label": "A"}
    model.set_token("nmg_not-a-real-token")  # set_token wins over the environment
    with pytest.raises(AuthenticationError) as unknown:
        model.predict({"x": 1, "name": "a"})
    assert str(unknown.value) == "Unknown group token. Check it, or refresh the group's token."
    assert model.predict({"x": 2, "name": "b"}, group_token=group_token) == {"double": 4, "label": "B"}
    with pytest.raises(PermissionDeniedError) as wrong_group:
        model.predict({"x": 2, "name": "b"}, group_token=other_token)
    assert "not valid for this model" in str(wrong_group.value)
    assert "others" not in str(wrong_group.value)  # the model's group is not disclosed
    model.set_token(group_token)
    assert model({"x": 3, "name": "c"}) == {"double": 6, "label": "C"}


def test_docs_url_is_the_models_swagger_page(live, sync_model):
    docs = sync_model.docs
    assert docs == f"{live.url}/models/{sync_model.model_hash}/docs/"
    anonymous = requests.get(docs, timeout=30, allow_redirects=False)
    assert anonymous.status_code == 302 and "/login/" in anonymous.headers["Location"]
    browser = requests.Session()
    login_page = browser.get(f"{live.url}/login/", timeout=30)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login_page.text).group(1)
    browser.post(
        f"{live.url}/login/",
        data={"username": live.admin[0], "password": live.admin[1], "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{live.url}/login/"},
        timeout=30,
    )
    page = browser.get(docs, timeout=30)
    assert page.status_code == 200 and "swagger" in page.text.lower()
    document = browser.get(f"{live.url}/api/v1/models/{sync_model.model_hash}/openapi.json", timeout=30)
    assert document.status_code == 200 and document.json()["info"]["title"].startswith("doubler")


def test_generated_code_runs(env, sync_model, group_token, tmp_path):
    expected = sync_model.predict({"x": 21, "name": "ana"}, group_token=group_token)
    run_env = {**os.environ, "NEOMARIL_GROUP_TOKEN": group_token}
    curl = sync_model.generate_predict_code()
    assert curl.startswith(f"curl -sS -X POST {sync_model.run_url}")
    answer = subprocess.run(["bash", "-c", curl], env=run_env, capture_output=True, text=True, timeout=60)
    assert json.loads(answer.stdout) == expected == {"double": 42, "label": "ANA"}, answer.stderr
    (tmp_path / "call.py").write_text(sync_model.generate_predict_code("python"))
    python = subprocess.run(
        [sys.executable, "call.py"], cwd=tmp_path, env=run_env, capture_output=True, text=True, timeout=60
    )
    assert python.stdout.strip() == "{'double': 42, 'label': 'ANA'}", python.stderr


def test_wrong_password_and_unknown_model(live, env, admin):
    env.setenv("NEOMARIL_PASSWORD", "not-the-password")
    with pytest.raises(AuthenticationError) as raised:
        NeomarilModelClient()
    assert str(raised.value) == "Wrong username or password." and raised.value.status_code == 401
    with pytest.raises(NotFoundError) as missing:
        admin.get_model("M" + "0" * 32)
    assert missing.value.status_code == 404 and "M" + "0" * 32 in str(missing.value)


def test_failed_build_surfaces_the_log(admin, group_token, PATH):
    with pytest.raises(BuildError) as raised:
        admin.create_model(
            "broken",
            "score",
            PATH + "broken.py",
            PATH + "model.pkl",
            PATH + "requirements.txt",
            schema={"x": 1},  # a dict works as well as a file
            python_version="3.9",
            group="datarisk",
        )
    message = str(raised.value)
    assert message.startswith("The build of model 'broken' (M")
    assert "--- end of the build log ---" in message
    assert "RuntimeError: smoke boom: the model cannot answer its schema" in message
    assert "RuntimeError: smoke boom" in raised.value.log


def test_refused_upload_names_the_fields(admin, group_token, PATH):
    with pytest.raises(Exception) as raised:
        admin.create_model(
            "bad", "predict", PATH + "app.py", PATH + "model.pkl", PATH + "requirements.txt",
            schema=PATH + "schema.json", python_version="2.1", group="datarisk",
        )  # fmt: skip
    error = raised.value
    assert type(error).__name__ == "InputError" and error.status_code == 400
    assert set(error.errors) >= {"python_version", "source"}
    assert "Python 2.1 is not available on this host" in error.errors["python_version"][0]


def test_model_error_and_lifecycle(sync_model, group_token, admin, PATH):
    sync_model.set_token(group_token)
    with pytest.raises(ModelError) as raised:
        sync_model.predict({"x": 1, "name": "a", "boom": "bad input"})
    assert str(raised.value).startswith("The model raised an error: ValueError: boom: bad input")
    assert "in score" in raised.value.traceback
    model = admin.create_model(
        "short-lived", "score", PATH + "app.py", PATH + "model.pkl", PATH + "requirements.txt",
        schema=PATH + "schema.json", python_version="3.9", group="datarisk",
    )  # fmt: skip
    model.set_token(group_token)
    assert model.health()["deployed"] is True
    assert model.disable() == "Disabled"
    with pytest.raises(StateError, match="is Disabled, not Deployed"):
        model.predict({"x": 1, "name": "a"})
    assert model.health()["deployed"] is False
    assert model.restart(wait_for_ready=True) == "Deployed"
    assert model.predict({"x": 5, "name": "e"}) == {"double": 10, "label": "E"}
    assert "smoke" in model.get_logs().lower()
    model.delete()
    assert model.status() == "Deleted"
    with pytest.raises(NotFoundError):
        model.predict({"x": 1, "name": "a"})


def test_token_from_dotenv_search_and_groups(live, env, admin, sync_model, tmp_path):
    env.delenv("NEOMARIL_USER")
    env.delenv("NEOMARIL_PASSWORD")
    env.delenv("NEOMARIL_URL")
    token = requests.post(
        f"{live.url}/api/v1/auth/login",
        json={"username": live.admin[0], "password": live.admin[1]},
        timeout=30,
    ).json()["token"]
    (tmp_path / ".env").write_text(f"NEOMARIL_URL={live.url}\nNEOMARIL_TOKEN='{token}'\n")
    client = NeomarilModelClient()
    env.delenv("NEOMARIL_URL")  # set from the .env: undone here, not by monkeypatch
    env.delenv("NEOMARIL_TOKEN")
    assert client.user["username"] == live.admin[0]
    found = client.search_models(name="doub", group="datarisk", only_deployed=True)
    assert [m["hash"] for m in found] == [sync_model.model_hash]
    assert client.search_models(state="Failed", group="datarisk")[0]["name"] == "broken"
    assert "datarisk" in [g["name"] for g in client.list_groups()]
    assert client.get_model(sync_model.model_hash, group="datarisk").name == "doubler"

    first = client.create_group("rotating")
    assert client.refresh_group_token("rotating") is None  # still valid: kept
    second = client.refresh_group_token("rotating", force=True)
    assert second.startswith("nmg_") and second != first


def test_client_close_revokes_its_login_token(live, env):
    client = NeomarilModelClient()
    token = client._conn.user_token
    client.close()
    me = requests.get(f"{live.url}/api/v1/auth/me", headers={"Authorization": f"Token {token}"}, timeout=30)
    assert me.status_code == 401


def test_upload_shows_progress_when_asked(live, group_token, PATH, tmp_path, capfd):
    (tmp_path / "model.pkl").write_bytes(os.urandom(3 * 1024 * 1024))
    client = NeomarilModelClient(live.admin[0], live.admin[1], live.url, progress=True)
    model = client.create_model(
        "big pickle", "score", PATH + "app.py", tmp_path / "model.pkl", PATH + "requirements.txt",
        schema={"x": 1, "name": "a"}, python_version="3.9", group="datarisk", wait_for_ready=False,
    )  # fmt: skip
    err = capfd.readouterr().err
    assert "Uploading model 'big pickle'" in err and "100% |" in err and "3.0/3.0 MB" in err
    assert model.model_info()["files"]["model"] == "model.pkl"
    model.delete()


def test_a_version_takes_the_models_url_and_one_call_rolls_it_back(admin, group_token, PATH, tmp_path):
    model = admin.create_model(
        "versioned", "score", PATH + "app.py", PATH + "model.pkl", PATH + "requirements.txt",
        schema=PATH + "schema.json", python_version="3.9", group="datarisk",
    )  # fmt: skip
    model.set_token(group_token)
    assert model.predict({"x": 2, "name": "a"}) == {"double": 4, "label": "A"}
    (tmp_path / "app.py").write_text(SYNC_SOURCE.replace('"double": d["x"] * 2', '"triple": d["x"] * 3'))

    version = model.add_version(
        "score",
        tmp_path / "app.py",
        PATH + "model.pkl",
        PATH + "requirements.txt",
        schema=PATH + "schema.json",
    )  # python_version: the live version's (3.9)

    assert (version.version, version.status, version.live) == (2, "Deployed", True)
    assert version.model_hash == model.model_hash
    assert version.hash != model.model_hash and version.version_info()["python_version"] == "3.9"
    assert model.live_version == 2
    assert model.predict({"x": 2, "name": "a"}) == {"triple": 6, "label": "A"}  # the same URL
    assert [(v.version, v.live) for v in model.versions()] == [(2, True), (1, False)]

    first = model.set_live(1)
    assert (first.version, first.live, model.live_version) == (1, True, 1)
    assert model.predict({"x": 2, "name": "b"}) == {"double": 4, "label": "B"}
    assert version.predict({"x": 2, "name": "b"}) == {"triple": 6, "label": "B"}  # its own URL
    with pytest.raises(StateError, match="Version 1 holds the model"):
        first.delete()
    assert version.make_live().live and model.predict({"x": 1, "name": "c"}) == {"triple": 3, "label": "C"}
