"""Builds: smoke tests in the model's own interpreter, real uv environments, lifecycle.

The slow tests build real uv environments (the first run downloads scikit-learn into
uv's cache); the fast ones use the host's interpreter as the model's environment.
"""

from __future__ import annotations

import json
import sys
import textwrap
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.utils import timezone
from django_q.signals import post_spawn

from models_app import interpreters, tasks
from models_app.models import MLModel, ModelBuild
from tests.helpers import real_models
from tests.helpers.clients import api_client
from tests.helpers.uploads import file

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="session")
def model_pickle(tmp_path_factory, django_db_blocker):
    return real_models.train_model_pickle(tmp_path_factory.mktemp("trained")).read_bytes()


def _upload(client, model_pickle, **overrides):
    payload = {
        "name": "Teste notebook Sync",
        "group": "datarisk",
        "operation": "Sync",
        "model_reference": "score",
        "python_version": real_models.PYTHON,
        "source": file("app.py", real_models.SYNC_SOURCE),
        "model": file("model.pkl", model_pickle),
        "requirements": file("requirements.txt", real_models.REQUIREMENTS),
        "schema": file("schema.json", json.dumps(real_models.SCHEMA)),
        "env": file(".env", "API_KEY=s3cr3t-value\n"),
    }
    payload.update(overrides)
    response = client.post(
        "/api/v1/models", {k: v for k, v in payload.items() if v is not None}, format="multipart"
    )
    assert response.status_code == 201, response.json()
    return MLModel.objects.get(hash=response.json()["hash"])


def _build(model: MLModel) -> MLModel:
    build = model.builds.get(status=ModelBuild.Status.QUEUED)
    tasks.build_model(build.pk)
    model.refresh_from_db()
    return model


def _log(client, model) -> str:
    return client.get(f"/api/v1/models/{model.hash}/logs").json()["log"]


@pytest.mark.slow
def test_sync_model_deploys_with_numpy_converted_and_secrets_kept_secret(cast, model_pickle):
    client = api_client(cast.owner)
    model = _build(_upload(client, model_pickle))
    log = _log(client, model)
    assert model.status == "Deployed", log
    assert model.python_full_version.startswith("3.9.")
    assert model.smoke_result["pred"] in (0, 1)
    assert isinstance(model.smoke_result["proba"], float)
    assert model.smoke_result["vector"] == [0, 1, 2]
    assert model.smoke_result["secret_ok"] is True  # the .env value reached the user code
    assert "Smoke test answer" in log and "Build succeeded" in log
    describe = client.get(f"/api/v1/models/{model.hash}").json()
    assert describe["status"] == "Deployed" and describe["last_build"]["status"] == "Succeeded"
    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    everything = dump.getvalue() + log + json.dumps(describe)
    assert "s3cr3t-value" not in everything


@pytest.mark.slow
def test_two_models_with_the_same_requirements_share_one_environment(cast, model_pickle):
    client = api_client(cast.owner)
    first = _build(_upload(client, model_pickle, name="first"))
    second = _build(_upload(client, model_pickle, name="second"))
    assert first.status == second.status == "Deployed"
    assert first.env_fingerprint == second.env_fingerprint
    assert "Reusing environment" in _log(client, second)


@pytest.mark.slow
def test_a_model_written_on_windows_with_a_latin1_script_deploys_in_the_same_environment(cast, model_pickle):
    """UTF-16 files with a byte-order mark (PowerShell 5's `pip freeze > requirements.txt`)
    build the environment their UTF-8 twins build; the script is imported by its coding line."""
    client = api_client(cast.owner)
    labelled = real_models.SYNC_SOURCE.replace('"secret_ok":', '"label": "café", "secret_ok":')
    windows = _build(
        _upload(
            client,
            model_pickle,
            name="from windows",
            source=file("app.py", ("# -*- coding: latin-1 -*-\n" + labelled).encode("latin-1")),
            requirements=file("requirements.txt", real_models.REQUIREMENTS.encode("utf-16")),
            schema=file("schema.json", json.dumps(real_models.SCHEMA).encode("utf-16")),
            env=file(".env", "API_KEY=s3cr3t-value\r\n".encode("utf-16")),
        )
    )
    assert windows.status == "Deployed", _log(client, windows)
    assert windows.smoke_result["label"] == "café" and windows.smoke_result["secret_ok"] is True
    utf8 = _build(_upload(client, model_pickle, name="utf-8"))
    assert utf8.status == "Deployed" and utf8.env_fingerprint == windows.env_fingerprint


@pytest.mark.slow
def test_async_model_with_sample_deploys(cast, model_pickle):
    client = api_client(cast.owner)
    model = _build(
        _upload(
            client,
            model_pickle,
            operation="Async",
            schema=None,
            source=file("app.py", real_models.ASYNC_SOURCE),
            sample=file("input.csv", real_models.SAMPLE_CSV),
            name="Teste Async",
        )
    )
    assert model.status == "Deployed", _log(client, model)
    assert model.smoke_result == {"input_file": "input.csv", "output_file": "smoke/output.csv"}
    assert "Smoke test wrote output.csv" in _log(client, model)


@pytest.mark.slow
def test_missing_package_fails_the_build_naming_it(cast, model_pickle):
    client = api_client(cast.owner)
    requirements = file("requirements.txt", "neomaril-no-such-package-xyz==1.0\n")
    model = _build(
        _upload(
            client,
            model_pickle,
            requirements=requirements,
            source=file("app.py", "def score(a, b):\n    return {}\n"),
        )
    )
    assert model.status == "Failed"
    assert "neomaril-no-such-package-xyz" in model.status_message
    assert "neomaril-no-such-package-xyz" in _log(client, model)
    assert model.builds.get().status == "Failed"


@pytest.mark.slow
def test_user_code_raising_fails_the_build_with_traceback(cast, model_pickle):
    client = api_client(cast.owner)
    source = "def helper(x):\n    return 1 / x\n\ndef score(data, base_path):\n    return {'v': helper(0)}\n"
    model = _build(
        _upload(
            client, model_pickle, source=file("app.py", source), requirements=file("requirements.txt", "")
        )
    )
    assert model.status == "Failed"
    assert "ZeroDivisionError" in model.status_message
    log = _log(client, model)
    assert "Traceback" in log and 'app.py", line 2, in helper' in log


@pytest.mark.slow
def test_non_json_answer_fails_the_build(cast, model_pickle):
    client = api_client(cast.owner)
    source = "def score(data, base_path):\n    return 'not json'\n"
    model = _build(
        _upload(
            client, model_pickle, source=file("app.py", source), requirements=file("requirements.txt", "")
        )
    )
    assert model.status == "Failed"
    assert "not valid JSON" in model.status_message


@pytest.mark.slow
def test_lifecycle_disable_restart_delete(cast, model_pickle):
    client = api_client(cast.teammate)
    model = _build(
        _upload(
            client,
            model_pickle,
            requirements=file("requirements.txt", ""),
            source=file("app.py", "def score(a, b):\n    return {'ok': True}\n"),
        )
    )
    assert model.status == "Deployed"
    disabled = client.post(f"/api/v1/models/{model.hash}/disable")
    assert disabled.status_code == 200 and disabled.json()["status"] == "Disabled"
    again = client.post(f"/api/v1/models/{model.hash}/disable")
    assert again.status_code == 409 and "Disabled model cannot be disabled" in again.json()["detail"]
    restarted = client.post(f"/api/v1/models/{model.hash}/restart")
    assert restarted.json()["status"] == "Ready"
    model = _build(model)
    assert model.status == "Deployed" and model.builds.count() == 2
    assert client.get(f"/api/v1/models/{model.hash}/logs?build=1").json()["number"] == 1
    deleted = client.delete(f"/api/v1/models/{model.hash}")
    assert deleted.json()["status"] == "Deleted"
    model.refresh_from_db()
    assert not model.folder.exists() and model.env_ciphertext is None
    events = [e["action"] for e in client.get(f"/api/v1/models/{model.hash}/events").json()["results"]]
    assert events == ["deleted", "deployed", "restarted", "disabled", "deployed", "created"]
    actors = {e["actor"] for e in client.get(f"/api/v1/models/{model.hash}/events").json()["results"]}
    assert "teammate" in actors
    assert client.post(f"/api/v1/models/{model.hash}/restart").status_code == 409


# ------------------------------------------- fast: the host's interpreter as environment

STDLIB_ASYNC_SOURCE = textwrap.dedent(
    """
    import os


    def score(data_path, model_path):
        output = os.path.join(data_path, "output.csv")
        with open(os.path.join(data_path, os.environ["inputFileName"])) as f, open(output, "w") as out:
            out.write(f.read())
        return output


    def returns_input(data_path, model_path):
        return os.path.join(data_path, os.environ["inputFileName"])
    """
)


def _async_upload(client, entrypoint: str) -> MLModel:
    response = client.post(
        "/api/v1/models",
        {
            "name": f"Async {entrypoint}",
            "group": "datarisk",
            "operation": "Async",
            "model_reference": entrypoint,
            "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
            "source": file("app.py", STDLIB_ASYNC_SOURCE),
            "model": file("model.pkl", b"\x80\x04K\x01."),
            "requirements": file("requirements.txt", ""),
            "sample": file("input.csv", "a,b\n1,2\n"),
        },
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    return MLModel.objects.get(hash=response.json()["hash"])


def test_smoke_test_accepts_a_new_file_written_in_data_path(cast, host_env):
    client = api_client(cast.owner)
    model = _build(_async_upload(client, "score"))
    assert model.status == "Deployed", _log(client, model)
    assert model.smoke_result == {"input_file": "input.csv", "output_file": "smoke/output.csv"}
    assert model.builds.get().status == "Succeeded"


def test_smoke_test_refuses_a_model_that_returns_its_input(cast, host_env):
    """Executions refuse the input file as a result; a build that passed would fail every one."""
    client = api_client(cast.owner)
    model = _build(_async_upload(client, "returns_input"))
    assert model.status == "Failed"
    assert "returned the input file 'input.csv' itself" in model.status_message
    assert "Build failed: The entrypoint returned the input file 'input.csv' itself" in _log(client, model)
    assert model.builds.get().status == "Failed"


def test_a_late_outcome_of_a_recovered_build_is_discarded(cast, host_env):
    model = _async_upload(api_client(cast.owner), "score")
    build = model.builds.get()
    assert ModelBuild.claim(build.pk, waiting=ModelBuild.Status.QUEUED)
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.BUILDING)
    # Recovery took it over: the build ended Failed and a new one will run.
    ModelBuild.objects.filter(pk=build.pk).update(status="Failed", finished_at=timezone.now())
    model.refresh_from_db()
    assert tasks._finish(model, build, ok=True, message="Deployed.") is False
    model.refresh_from_db()
    assert model.status == "Building" and model.deployed_at is None
    assert ModelBuild.objects.get(pk=build.pk).status == "Failed"


def test_a_worker_learns_the_interpreters_as_it_starts(monkeypatch):
    # django-q2 sends post_spawn in each worker before its first task: the first build does
    # not wait for the interpreters' probes, and a failing lookup does not stop the worker.
    interpreters.clear_cache()
    found = []
    monkeypatch.setattr(interpreters, "_discover", lambda *args: found.append(args) or [])
    post_spawn.send(sender="django_q", proc_name="Process-1")
    assert len(found) == 1
    interpreters.discover_interpreters(settings.PYTHON_SEARCH_PATHS)  # the build's lookup
    assert len(found) == 1
    interpreters.clear_cache()
    monkeypatch.setattr(interpreters, "_discover", lambda *args: 1 / 0)
    post_spawn.send(sender="django_q", proc_name="Process-2")
    interpreters.clear_cache()


def test_a_huge_smoke_answer_deploys_but_is_not_kept_on_the_row(cast, host_env, settings):
    """Every load of the model row carried it (up to a runner's 256 MB frame)."""
    settings.MAX_TEXT_FILE_BYTES = 4096
    client = api_client(cast.owner)
    response = client.post(
        "/api/v1/models",
        {
            "name": "Talkative",
            "group": "datarisk",
            "model_reference": "score",
            "python_version": f"{sys.version_info.major}.{sys.version_info.minor}",
            "source": file("app.py", "def score(data, base_path):\n    return {'x': 'a' * 5000}\n"),
            "model": file("model.pkl", b"x"),
            "requirements": file("requirements.txt", ""),
            "schema": file("schema.json", '{"a": 1}'),
        },
        format="multipart",
    )
    model = _build(MLModel.objects.get(hash=response.json()["hash"]))
    assert model.status == "Deployed", _log(client, model)
    assert model.smoke_result is None
    assert "The smoke test's answer is 5009 bytes, over the 4 KB kept as the model's example answer" in _log(
        client, model
    )
