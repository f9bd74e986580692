"""Versions: a model keeps its run URL while new versions are built, go live, fail or are rolled back.

Builds are real (the runner in the sandbox, on the host's interpreter: no uv); calls go
through the real model host and runners.
"""

from __future__ import annotations

import json
import sys
import textwrap

import pytest

from models_app import services, tasks
from models_app.calls import lookup_call
from models_app.forms import ModelVersionForm
from models_app.models import MLModel, ModelBuild
from models_app.serving import answers
from models_app.serving.aio import blocking_pool
from monitoring.models import PredictionRecord
from monitoring.recorder import recorder
from tests.helpers.clients import api_client
from tests.helpers.uploads import file, sync_payload

pytestmark = pytest.mark.django_db(transaction=True)

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"


def _source(answer: str) -> str:
    return textwrap.dedent(
        f"""
        import json

        def score(data, base_path):
            row = json.loads(data)
            return {{"sum": row["a"] + row["b"], "answered_by": {answer!r}}}
        """
    )


BROKEN_SOURCE = "import a_package_nobody_installed\n\ndef score(data, base_path):\n    return {}\n"


def _versions_url(model: MLModel) -> str:
    return f"/api/v1/models/{model.hash}/versions"


def _create(client, answer="v1") -> MLModel:
    payload = sync_payload(python_version=PYTHON, source=file("app.py", _source(answer)))
    response = client.post("/api/v1/models", payload, format="multipart")
    assert response.status_code == 201, response.json()
    return MLModel.objects.get(hash=response.json()["hash"])


def _add_version(client, model: MLModel, source: str | bytes, **fields):
    payload = sync_payload(python_version=PYTHON, source=file("app.py", source), **fields)
    for inherited in ("name", "group", "operation"):
        payload.pop(inherited, None)
    return client.post(_versions_url(model), payload, format="multipart")


def _build(row: MLModel) -> MLModel:
    tasks.build_model(row.builds.get(status=ModelBuild.Status.QUEUED).pk)
    row.refresh_from_db()
    return row


def _version(model: MLModel, number: int) -> MLModel:
    return model.all_versions().get(version=number)


def _call(model: MLModel, version: int | None = None) -> dict:
    """A call as the run URL makes it: its lookup, the runner, the recording."""
    target = lookup_call(model.hash, "", version)
    answer = json.loads(blocking_pool.predict(target.model, '{"a": 2, "b": 3}'))
    answers.record(target.model, '{"a": 2, "b": 3}', 200, json.dumps(answer).encode(), 0.0)
    return answer["result"]


@pytest.fixture
def deployed(cast, host_env, model_host) -> MLModel:
    model = _build(_create(api_client(cast.owner)))
    assert model.status == "Deployed"
    return model


def test_a_new_version_goes_live_only_once_deployed(cast, deployed):
    client = api_client(cast.owner)
    response = _add_version(client, deployed, _source("v2"))
    assert response.status_code == 201, response.json()
    body = response.json()
    v2 = MLModel.objects.get(hash=body["hash"])
    assert body["version"] == 2 and body["live"] is False and body["model"] == deployed.hash
    assert (v2.name, v2.group, v2.operation, v2.line) == (deployed.name, deployed.group, "Sync", deployed)
    assert body["run_url"].endswith(f"/api/v1/run/{deployed.hash}/versions/2")

    # While it waits for its build, the run URL keeps answering with version 1.
    assert _call(deployed)["answered_by"] == "v1"
    status = client.get(f"/api/v1/models/{deployed.hash}/status").json()
    assert (status["hash"], status["version"], status["status"]) == (deployed.hash, 1, "Deployed")
    assert client.get(f"{_versions_url(deployed)}/2/status").json()["status"] == "Ready"

    _build(v2)
    assert _call(deployed)["answered_by"] == "v2"  # the same URL, the new version
    status = client.get(f"/api/v1/models/{deployed.hash}/status").json()
    assert (status["hash"], status["version"], status["status"]) == (deployed.hash, 2, "Deployed")
    detail = client.get(f"/api/v1/models/{deployed.hash}").json()
    assert detail["version"] == 2 and detail["run_url"].endswith(f"/api/v1/run/{deployed.hash}")
    document = client.get(f"/api/v1/models/{deployed.hash}/openapi.json").json()
    assert document["info"]["version"].startswith("version 2,")  # the docs describe what answers
    events = [e["action"] for e in client.get(f"/api/v1/models/{deployed.hash}/events").json()["results"]]
    assert "version_added" in events and "version_live" in events


def test_a_failed_version_never_replaces_the_working_one(cast, deployed):
    client = api_client(cast.owner)
    response = _add_version(client, deployed, BROKEN_SOURCE)
    assert response.status_code == 201, response.json()
    v2 = _build(MLModel.objects.get(hash=response.json()["hash"]))
    assert v2.status == "Failed"
    assert "a_package_nobody_installed" in client.get(f"{_versions_url(deployed)}/2/logs").json()["log"]
    assert _call(deployed)["answered_by"] == "v1"
    deployed.refresh_from_db()
    assert deployed.live_version is None
    refused = client.post(f"{_versions_url(deployed)}/2/live")
    assert refused.status_code == 409
    assert refused.json()["detail"] == "Version 2 is Failed: only a Deployed version can go live."


def test_rollback_is_one_call_and_forward_again(cast, deployed):
    client = api_client(cast.owner)
    v2 = _build(MLModel.objects.get(hash=_add_version(client, deployed, _source("v2")).json()["hash"]))
    assert _call(deployed)["answered_by"] == "v2"

    response = client.post(f"{_versions_url(deployed)}/1/live")
    assert response.status_code == 200, response.json()
    assert response.json()["live"] is True and response.json()["version"] == 1
    assert _call(deployed)["answered_by"] == "v1"
    listed = client.get(_versions_url(deployed)).json()["results"]
    assert [(v["version"], v["live"]) for v in listed] == [(2, False), (1, True)]

    # A rebuild of version 2 does not take the URL back by itself...
    client.post(f"{_versions_url(deployed)}/2/restart")
    _build(v2)
    assert v2.status == "Deployed" and _call(deployed)["answered_by"] == "v1"
    # ...rolling forward does.
    assert client.post(f"{_versions_url(deployed)}/2/live").status_code == 200
    assert _call(deployed)["answered_by"] == "v2"


def _first_deploy(version: MLModel) -> bool:
    """What a version's first successful build does last (tasks.build_model)."""
    from django.db import transaction

    with transaction.atomic():
        MLModel.objects.filter(pk=version.pk).update(status=MLModel.Status.DEPLOYED)
        return services.go_live_if_newest(version)


def test_a_rollback_stands_when_an_older_version_first_deploys_after_it(cast, deployed):
    """Version 2 fails its build, 3 deploys and goes live, the owner rolls back to 1; then
    2 is restarted and its build succeeds: the owner's choice stands (it took the URL)."""
    client = api_client(cast.owner)
    v2 = _build(MLModel.objects.get(hash=_add_version(client, deployed, BROKEN_SOURCE).json()["hash"]))
    v3 = _build(MLModel.objects.get(hash=_add_version(client, deployed, _source("v3")).json()["hash"]))
    assert (v2.status, v3.status, _call(deployed)["answered_by"]) == ("Failed", "Deployed", "v3")
    assert client.post(f"{_versions_url(deployed)}/1/live").status_code == 200
    assert _first_deploy(v2) is False
    assert _call(deployed)["answered_by"] == "v1"
    # Nor does a version older than one that deployed, with no rollback in between.
    MLModel.objects.filter(pk=deployed.pk).update(live_chosen_at=None, live_version=None)
    assert _first_deploy(v2) is False


def test_a_version_made_after_the_rollback_still_goes_live(cast, deployed):
    client = api_client(cast.owner)
    _build(MLModel.objects.get(hash=_add_version(client, deployed, _source("v2")).json()["hash"]))
    assert client.post(f"{_versions_url(deployed)}/1/live").status_code == 200
    v3 = _build(MLModel.objects.get(hash=_add_version(client, deployed, _source("v3")).json()["hash"]))
    assert v3.status == "Deployed" and _call(deployed)["answered_by"] == "v3"


def test_each_version_keeps_its_url_files_packages_and_author(cast, deployed):
    client = api_client(cast.teammate)
    response = _add_version(
        client, deployed, _source("v2"), requirements=file("requirements.txt", "six==1.16.0\n")
    )
    assert response.status_code == 201, response.json()
    v2 = MLModel.objects.get(hash=response.json()["hash"])
    v1_body = client.get(f"{_versions_url(deployed)}/1").json()
    v2_body = client.get(f"{_versions_url(deployed)}/2").json()
    assert v1_body["hash"] == deployed.hash and v2_body["hash"] == v2.hash != deployed.hash
    assert (v1_body["created_by"], v2_body["created_by"]) == (cast.owner.username, cast.teammate.username)
    assert (v1_body["requirements"], v2_body["requirements"]) == ([], ["six==1.16.0"])
    assert v2_body["files"]["source"] == "app.py" and (v2.folder / "app.py").read_text() == _source("v2")
    assert (deployed.folder / "app.py").read_text() == _source("v1")  # untouched
    assert v1_body["last_build"]["status"] == "Succeeded" and v2_body["last_build"]["status"] == "Queued"
    # The per-version URL calls one version, whichever is live.
    assert _build(v2).status == "Deployed"
    client.post(f"{_versions_url(deployed)}/1/live")
    assert _call(deployed, version=2)["answered_by"] == "v2"
    assert _call(deployed)["answered_by"] == "v1"
    assert lookup_call(deployed.hash, "", 3) is None


def test_calls_record_the_version_that_answered(cast, deployed):
    # Calls an earlier test left in the buffer name models its database no longer has.
    recorder.buffer.clear()
    client = api_client(cast.owner)
    _build(MLModel.objects.get(hash=_add_version(client, deployed, _source("v2")).json()["hash"]))
    _call(deployed)
    _call(deployed, version=1)
    _call(deployed, version=2)
    recorder.flush()
    recorded = PredictionRecord.objects.filter(model=deployed).order_by("pk")
    # Version 1's own URL, with version 2 live, is a trial, not production: not monitored.
    assert [(r.version, r.live) for r in recorded] == [(2, True), (1, False), (2, True)]
    listed = api_client(cast.owner).get(f"/api/v1/models/{deployed.hash}/predictions").json()["results"]
    assert [(r["version"], r["live"]) for r in listed] == [(2, True), (1, False), (2, True)][::-1]
    predictions = f"/api/v1/models/{deployed.hash}/predictions"
    by_version = api_client(cast.owner).get(predictions, {"version": 1}).json()
    assert [(r["version"], r["live"]) for r in by_version["results"]] == [(1, False)]
    live_only = api_client(cast.owner).get(predictions, {"live": "true"}).json()
    assert live_only["count"] == 2 and {r["version"] for r in live_only["results"]} == {2}
    assert api_client(cast.owner).get(predictions, {"live": "false", "version": 2}).json()["count"] == 0
    # Rolled back, version 1 answers live, and version 2's URL is the trial.
    assert api_client(cast.owner).post(f"{_versions_url(deployed)}/1/live").status_code == 200
    assert (lookup_call(deployed.hash, "", 1).model.live, lookup_call(deployed.hash, "", 2).model.live) == (
        True,
        False,
    )
    assert lookup_call(deployed.hash, "").model.live is True


@pytest.mark.parametrize(
    ("query", "field", "message"),
    [
        ({"version": "one"}, "version", "version must be a version number"),
        ({"version": "-1"}, "version", "version must be a version number"),
        ({"live": "yes"}, "live", "live must be true or false, not 'yes'"),
    ],
)
def test_prediction_filters_refuse_bad_values(cast, deployed, query, field, message):
    response = api_client(cast.owner).get(f"/api/v1/models/{deployed.hash}/predictions", query)
    assert response.status_code == 400 and message in response.json()["errors"][field][0]


def test_settings_are_the_models_whichever_version_answers(cast, deployed):
    client = api_client(cast.owner)
    v2 = MLModel.objects.get(hash=_add_version(client, deployed, _source("v2")).json()["hash"])
    response = client.patch(f"/api/v1/models/{deployed.hash}", {"min_replicas": 2}, format="json")
    assert response.status_code == 200
    v2.refresh_from_db()
    assert v2.min_replicas == 2
    v3 = MLModel.objects.get(hash=_add_version(client, deployed, _source("v3")).json()["hash"])
    assert v3.min_replicas == 2 and v3.version == 3


def test_the_models_list_shows_each_model_once_with_its_live_versions_status(cast, deployed):
    client = api_client(cast.owner)
    _add_version(client, deployed, BROKEN_SOURCE)
    listed = client.get("/api/v1/models").json()["results"]
    assert [(m["hash"], m["version"], m["status"]) for m in listed] == [(deployed.hash, 1, "Deployed")]
    assert client.get("/api/v1/models?status=Ready").json()["results"] == []
    assert len(client.get("/api/v1/models?status=Deployed").json()["results"]) == 1


def test_deleting_a_version_spares_the_live_one_and_the_model_takes_all(cast, deployed):
    client = api_client(cast.owner)
    v2 = _build(MLModel.objects.get(hash=_add_version(client, deployed, _source("v2")).json()["hash"]))
    v3 = MLModel.objects.get(hash=_add_version(client, deployed, BROKEN_SOURCE).json()["hash"])
    refused = client.delete(f"{_versions_url(deployed)}/2")
    assert refused.status_code == 409
    assert refused.json()["detail"] == "Version 2 is live: make another version live before deleting it."
    assert client.delete(f"{_versions_url(deployed)}/1").status_code == 409
    assert client.delete(f"{_versions_url(deployed)}/3").status_code == 200
    again = client.delete(f"{_versions_url(deployed)}/3")  # the model itself is alive
    assert again.status_code == 409
    assert again.json() == {"detail": "Version 3 is already deleted.", "code": "conflict"}
    v3.refresh_from_db()
    assert v3.status == "Deleted" and not v3.folder.exists() and v2.folder.exists()
    assert client.delete(f"/api/v1/models/{deployed.hash}").status_code == 200
    assert set(deployed.all_versions().values_list("status", flat=True)) == {"Deleted"}
    assert not v2.folder.exists() and not deployed.folder.exists()
    assert lookup_call(deployed.hash, "").model.status == "Deleted"


def test_a_version_upload_is_checked_like_an_upload(cast, deployed):
    client = api_client(cast.owner)
    response = _add_version(client, deployed, "def score(:\n")
    assert response.status_code == 400
    assert "source" in response.json()["errors"]
    assert deployed.all_versions().count() == 1
    assert api_client(cast.outsider).post(_versions_url(deployed), {}).status_code == 404
    client.delete(f"/api/v1/models/{deployed.hash}")
    gone = _add_version(client, deployed, _source("v2"))
    # A state, not bad input: the 409 of a model deleted while its version uploads.
    assert gone.status_code == 409
    assert gone.json() == {"detail": "This model is deleted: upload a new model instead.", "code": "conflict"}


def test_a_version_written_on_windows_with_a_latin1_script_deploys_and_answers(cast, deployed):
    """A script with a coding line is imported by it (its bytes are kept); a UTF-16 .env and
    requirements.txt, as PowerShell writes them, are read through their byte-order mark."""
    source = (
        b"# -*- coding: latin-1 -*-\n"
        b"import json, os\n\n"
        b"def score(data, base_path):\n"
        b"    row = json.loads(data)\n"
        b"    return {'sum': row['a'] + row['b'], 'answered_by': 'caf\xe9', 'key': os.environ['API_KEY']}\n"
    )
    response = _add_version(
        api_client(cast.owner),
        deployed,
        source,
        env=file(".env", "API_KEY=s3cr3t-value\r\n".encode("utf-16")),
        requirements=file("requirements.txt", "# pip freeze\r\n".encode("utf-16")),
    )
    assert response.status_code == 201, response.json()
    v2 = _build(MLModel.objects.get(hash=response.json()["hash"]))
    assert v2.status == "Deployed", v2.status_message
    assert v2.smoke_result["answered_by"] == "café"
    assert _call(deployed) == {"sum": 5, "answered_by": "café", "key": "s3cr3t-value"}


def test_a_version_without_a_dotenv_keeps_the_live_versions_secrets(cast, host_env):
    client = api_client(cast.owner)
    payload = sync_payload(python_version=PYTHON, env=file(".env", "API_KEY=s3cr3t-value\n"))
    model = MLModel.objects.get(
        hash=client.post("/api/v1/models", payload, format="multipart").json()["hash"]
    )
    kept = MLModel.objects.get(hash=_add_version(client, model, _source("v2")).json()["hash"])
    assert kept.env_names == ["API_KEY"] and services.decrypted_env(kept) == {"API_KEY": "s3cr3t-value"}
    replaced = _add_version(client, model, _source("v3"), env=file(".env", "OTHER=1\n")).json()
    assert replaced["env_names"] == ["OTHER"]
    emptied = _add_version(client, model, _source("v4"), env=file(".env", "")).json()
    assert emptied["env_names"] == []


def test_a_version_uploaded_while_its_model_is_deleted_is_refused_and_leaves_nothing(
    cast, host_env, monkeypatch, settings
):
    client = api_client(cast.owner)
    model = _create(client)
    checked = ModelVersionForm.is_valid

    def deleted_meanwhile(form):  # the upload passed its checks; the model goes before it is stored
        valid = checked(form)
        services.delete(MLModel.objects.get(pk=model.pk), cast.teammate)
        return valid

    monkeypatch.setattr(ModelVersionForm, "is_valid", deleted_meanwhile)
    response = _add_version(client, model, _source("v2"))
    assert response.status_code == 409, response.content
    assert response.json()["detail"] == "This model is deleted: upload a new model instead."
    assert list(model.all_versions().values_list("version", "status")) == [(1, "Deleted")]
    assert not [p for p in settings.MODELS_DIR.iterdir() if p.name.startswith(".incoming-")]


def test_a_version_refuses_the_models_own_fields_rather_than_dropping_them(cast, host_env):
    client = api_client(cast.owner)
    model = _create(client)
    payload = sync_payload(python_version=PYTHON, source=file("app.py", _source("v2")), operation="Async")
    response = client.post(_versions_url(model), payload, format="multipart")
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    for field in ("name", "group", "operation"):
        assert errors[field] == [f"A new version keeps the model's {field}: leave {field} out."]
    assert model.all_versions().count() == 1
