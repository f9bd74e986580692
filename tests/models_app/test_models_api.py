"""Describe, search, logs and actions: who may see and do what."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from django.utils.module_loading import import_string

from models_app import services, tasks
from models_app.models import MLModel, ModelBuild
from tests.helpers.clients import api_client
from tests.helpers.uploads import sync_payload


@pytest.fixture
def model(cast):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    assert response.status_code == 201
    return MLModel.objects.get(hash=response.json()["hash"])


ENDPOINTS = [
    ("get", "/api/v1/models/{hash}"),
    ("get", "/api/v1/models/{hash}/status"),
    ("get", "/api/v1/models/{hash}/logs"),
    ("get", "/api/v1/models/{hash}/events"),
    ("post", "/api/v1/models/{hash}/disable"),
    ("post", "/api/v1/models/{hash}/restart"),
    ("delete", "/api/v1/models/{hash}"),
]


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_outsider_gets_404_and_nothing_changes(cast, model, method, path):
    response = getattr(api_client(cast.outsider), method)(path.format(hash=model.hash))
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    model.refresh_from_db()
    assert model.status == "Ready"


@pytest.mark.parametrize("method,path", ENDPOINTS)
def test_unknown_hash_is_404(cast, method, path):
    response = getattr(api_client(cast.owner), method)(path.format(hash="M" + "0" * 32))
    assert response.status_code == 404


def test_teammate_and_admin_can_describe(cast, model):
    for user in (cast.teammate, cast.admin):
        body = api_client(user).get(f"/api/v1/models/{model.hash}").json()
        assert body["hash"] == model.hash and body["model_reference"] == "score"
        assert body["python_version"] == "3.9" and body["requirements"] == []
        assert body["allow_network"] is True


def test_runners_show_how_busy_each_replica_is_and_which_is_leaving(cast, model, monkeypatch):
    from models_app import api

    described = {
        "model": model.hash, "build": 1, "pid": 41, "alive": True, "memory_bytes": 9, "requests": 7,
        "started_at": 1.0, "last_used": 2.0, "socket": "/run/x.sock",
    }  # fmt: skip
    replicas = [{**described, "replica": 0, "utilization": 0.875, "draining": False},
                {**described, "replica": 1, "utilization": 0.0, "draining": True}]  # fmt: skip
    monkeypatch.setattr(api, "runners_of", lambda model_hash: replicas if model_hash == model.hash else [])
    answer = api_client(cast.teammate).get(f"/api/v1/models/{model.hash}/runners").json()
    assert [(r["replica"], r["utilization"], r["draining"]) for r in answer["runners"]] == [
        (0, 0.875, False),
        (1, 0.0, True),
    ]
    assert "socket" not in answer["runners"][0]  # the node's paths stay on the node


def test_wrong_method_is_405(cast, model):
    assert api_client(cast.owner).put(f"/api/v1/models/{model.hash}", {}).status_code == 405
    assert api_client(cast.owner).get(f"/api/v1/models/{model.hash}/disable").status_code == 405


def test_search_filters_and_paginates(cast, model):
    client = api_client(cast.owner)
    client.post(
        "/api/v1/models", sync_payload(name="Churn Async", operation="Async", schema=None), format="multipart"
    )
    MLModel.objects.filter(name="Churn Async").update(status="Deployed")
    assert client.get("/api/v1/models").json()["count"] == 2
    assert [m["name"] for m in client.get("/api/v1/models?name=churn").json()["results"]] == ["Churn Async"]
    assert [m["name"] for m in client.get("/api/v1/models?status=Ready").json()["results"]] == ["Teste Sync"]
    assert [m["name"] for m in client.get("/api/v1/models?operation=Async").json()["results"]] == [
        "Churn Async"
    ]
    assert client.get("/api/v1/models?group=other-team").json()["count"] == 0
    page = client.get("/api/v1/models?page_size=1").json()
    assert page["count"] == 2 and len(page["results"]) == 1 and page["next"]
    bad = client.get("/api/v1/models?status=Sleeping")
    assert bad.status_code == 400 and "Unknown status 'Sleeping'" in bad.json()["detail"]
    assert api_client(cast.outsider).get("/api/v1/models").json()["count"] == 0


def test_logs_of_unknown_build(cast, model):
    client = api_client(cast.owner)
    assert client.get(f"/api/v1/models/{model.hash}/logs?build=9").status_code == 404
    assert client.get(f"/api/v1/models/{model.hash}/logs?build=x").status_code == 400
    assert client.get(f"/api/v1/models/{model.hash}/logs").json()["status"] == "Queued"


def test_build_task_runs_once_even_if_delivered_twice(cast, model, monkeypatch):
    calls = []
    monkeypatch.setattr(tasks, "_build", lambda m, log, timings: calls.append(m.pk) or {})
    build = model.builds.get()
    assert tasks.build_model(build.pk) == "deployed"
    assert tasks.build_model(build.pk) == "already handled"
    assert calls == [model.pk]


def test_a_model_deleted_while_its_build_passed_records_no_deploy(cast, model, monkeypatch):
    def passed_but_deleted_meanwhile(m, log, timings):
        MLModel.objects.filter(pk=m.pk).update(status=MLModel.Status.DELETED)
        return {"env_fingerprint": "f" * 64, "python_full_version": "3.11.7", "smoke_result": {}}

    monkeypatch.setattr(tasks, "_build_steps", passed_but_deleted_meanwhile)
    build = model.builds.get()
    assert tasks.build_model(build.pk) == "failed"
    build.refresh_from_db()
    assert build.status == "Failed" and "Build succeeded" not in build.log
    assert "The model was deleted while it was being built: nothing was deployed." in build.log
    assert not model.events.filter(action="deployed").exists()
    model.refresh_from_db()
    assert model.status == "Deleted"


def test_build_crash_in_our_code_fails_the_model_not_stuck(cast, model, monkeypatch):
    def boom(m, log, timings):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(tasks, "_build", boom)
    tasks.build_model(model.builds.get().pk)
    model.refresh_from_db()
    assert model.status == "Failed" and "disk on fire" in model.status_message
    assert "Internal error" in model.builds.get().log


def test_a_model_deleted_while_it_builds_says_so_not_what_broke(cast, model, monkeypatch):
    def deleted_meanwhile(m, log, timings):
        MLModel.objects.filter(pk=m.pk).update(status=MLModel.Status.DELETED)
        raise FileNotFoundError(f"{m.folder}/smoke")  # its folder went from under the build

    monkeypatch.setattr(tasks, "_build_steps", deleted_meanwhile)
    build = model.builds.get()
    assert tasks.build_model(build.pk) == "failed"
    log = ModelBuild.objects.get(pk=build.pk).log
    assert "Build failed: The model was deleted while it was being built: nothing was deployed." in log
    assert "Internal error" not in log and "Traceback" not in log
    model.refresh_from_db()
    assert model.status == "Deleted"


def test_disabled_model_build_is_cancelled(cast, model):
    services.disable(model, cast.owner)
    build = model.builds.get()
    assert build.status == "Cancelled"
    assert tasks.build_model(build.pk) == "already handled"


def test_stale_build_is_requeued_once_then_failed(cast, model):
    build = model.builds.get()
    old = timezone.now() - timedelta(seconds=tasks.STALE_BUILD_SECONDS + 5)
    ModelBuild.objects.filter(pk=build.pk).update(status="Running", heartbeat_at=old, started_at=old)
    MLModel.objects.filter(pk=model.pk).update(status="Building")

    assert tasks.housekeeping() == {
        "recovered_builds": 1,
        "redispatched_builds": 0,
        "sent_deferred_jobs": 0,
        "purged_predictions": 0,
        "revoked_login_tokens": 0,
        "removed_smoke_folders": 0,
        "measured_group_storage": 2,  # the cast's two groups, never measured yet
    }
    model.refresh_from_db()
    assert model.status == "Ready" and "re-queued" in model.status_message
    retry = model.builds.get(number=2)
    assert retry.recovered and retry.status == "Queued"
    assert "worker running this build stopped" in model.builds.get(number=1).log

    ModelBuild.objects.filter(pk=retry.pk).update(status="Running", heartbeat_at=old)
    MLModel.objects.filter(pk=model.pk).update(status="Building")
    tasks.housekeeping()
    model.refresh_from_db()
    assert model.status == "Failed" and "interrupted twice" in model.status_message
    assert model.builds.count() == 2


def test_fresh_running_build_is_left_alone(cast, model):
    ModelBuild.objects.filter(model=model).update(status="Running", heartbeat_at=timezone.now())
    assert tasks.recover_stale_builds() == 0


def test_housekeeping_is_scheduled(db):
    from django_q.models import Schedule

    schedule = Schedule.objects.get(name="neomaril-housekeeping")
    assert schedule.func == "models_app.tasks.housekeeping" and schedule.minutes == 1
    # The stored dotted path must still name the function (django-q2 imports it each run).
    assert import_string(schedule.func) is tasks.housekeeping


def test_delete_removes_files_and_secrets(cast, model):
    assert model.folder.exists()
    services.delete(model, cast.owner)
    model.refresh_from_db()
    assert model.status == "Deleted" and not model.folder.exists()
    assert MLModel.objects.filter(hash=model.hash).exists()  # the hash is never reused
    with pytest.raises(services.ActionRefused):
        services.delete(model, cast.owner)


def test_models_dir_is_private(cast, model):
    assert (model.folder.stat().st_mode & 0o777) == 0o700
    assert settings.MODELS_DIR in model.folder.parents


def test_status_with_its_log_in_one_answer(cast, model):
    client = api_client(cast.owner)
    plain = client.get(f"/api/v1/models/{model.hash}/status").json()
    assert set(plain) == {
        "hash",
        "version",
        "status",
        "status_message",
        "deployed_at",
    }  # unchanged without include
    both = client.get(f"/api/v1/models/{model.hash}/status?include=log").json()
    assert {key: both[key] for key in plain} == plain
    logs = client.get(f"/api/v1/models/{model.hash}/logs").json()
    assert both["build"] == logs and both["build"]["number"] == 1
    bad = client.get(f"/api/v1/models/{model.hash}/status?include=everything")
    assert bad.status_code == 400 and "everything" in bad.json()["detail"]
    assert api_client(cast.outsider).get(f"/api/v1/models/{model.hash}/status?include=log").status_code == 404


def test_the_polled_answer_never_says_deployed_before_the_logs_last_line(cast, model, monkeypatch):
    # The model page's badge and log come from this one answer (static/js/model.js). Poll it
    # while the build runs and right after it records its outcome: whenever it says the
    # build is over, the log it carries is complete.
    client = api_client(cast.owner)
    url = f"/api/v1/models/{model.hash}/status?include=log"
    answers: list[dict] = []

    def build(m, log, timings):
        log("Smoke test passed.")
        answers.append(client.get(url).json())
        return {}

    finish = tasks._finish

    def finish_and_poll(*args, **kwargs):
        answers.append(client.get(url).json())
        outcome = finish(*args, **kwargs)
        answers.append(client.get(url).json())
        return outcome

    monkeypatch.setattr(tasks, "_build", build)
    monkeypatch.setattr(tasks, "_finish", finish_and_poll)
    assert tasks.build_model(model.builds.get().pk) == "deployed", model.builds.get().log
    assert [a["status"] for a in answers] == ["Building", "Building", "Deployed"]
    for answer in answers:
        if answer["status"] in ("Deployed", "Failed"):
            assert answer["build"]["log"].rstrip().endswith("Build succeeded: model deployed."), answer
            assert answer["build"]["status"] != "Running", answer
