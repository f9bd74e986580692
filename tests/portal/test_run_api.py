"""The run URL (portal/run_api.py): the checks that happen before any runner is involved (no model host needed)."""

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from groups.models import GroupToken
from models_app.models import MLModel
from tests.helpers.clients import api_client
from tests.helpers.monitors import deployed_model
from tests.helpers.uploads import sync_payload


@pytest.fixture
def model(cast):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    return MLModel.objects.get(hash=response.json()["hash"])


def _run(model_hash, token, body='{"a": 1, "b": 2}'):
    client = APIClient()
    return client.post(
        f"/api/v1/run/{model_hash}",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {token}",
    )


def test_expired_group_token_is_401_saying_so(cast, model):
    GroupToken.objects.filter(group=cast.group).update(expires_at=timezone.now() - timedelta(hours=1))
    response = _run(model.hash, cast.group_token)
    assert response.status_code == 401
    assert "expired on" in response.json()["detail"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_token_of_another_group_is_403_without_naming_the_model_s_group(cast, model):
    response = _run(model.hash, cast.other_token)
    assert response.status_code == 403
    assert response.json() == {
        "detail": "This group token is not valid for this model: use the token of the group that owns it.",
        "code": "permission_denied",
    }
    assert cast.group.name not in response.content.decode()


def test_json_nested_too_deeply_is_400_saying_so(cast, model):
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DEPLOYED)
    response = _run(model.hash, cast.group_token, body="[" * 1000 + "]" * 1000)
    assert response.status_code == 400
    assert response.json() == {
        "detail": "The request body is JSON nested too deeply (objects or arrays inside one another "
        "about 1,000 levels deep or more): send a flatter input.",
        "code": "invalid",
    }


def test_model_not_deployed_is_409_with_its_status(cast, model):
    response = _run(model.hash, cast.group_token)
    assert response.status_code == 409
    assert response.json() == {
        "detail": f"Model '{model.hash}' is Ready, not Deployed: its build is queued.",
        "code": "not_deployed",
    }


def test_a_version_not_deployed_is_named_when_another_one_is_live(cast, model):
    v2 = deployed_model(cast.group, name=model.name, line=model, version=2)
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DISABLED, live_version=v2)
    response = APIClient().post(
        f"/api/v1/run/{model.hash}/versions/1",
        '{"a": 1}',
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {cast.group_token}",
    )
    assert response.status_code == 409
    assert response.json()["detail"] == (
        f"Model '{model.hash}' version 1 is Disabled, not Deployed: it was disabled; restart it to serve again."
    )


def test_deleted_model_is_404(cast, model):
    MLModel.objects.filter(pk=model.pk).update(status="Deleted")
    assert _run(model.hash, cast.group_token).status_code == 404


UNKNOWN_HASH = "M" + "0" * 32


@pytest.mark.parametrize("token", ["nmg_not-a-token", "revoked", None])
def test_without_a_usable_token_no_url_tells_which_models_exist(cast, model, token):
    """401 whether the hash, or the version, exists or not: the answers of a caller
    without a usable token must not map the model hashes (or count the versions)."""
    client = APIClient()
    if token == "revoked":
        token = cast.group_token
        GroupToken.objects.filter(group=cast.group).update(revoked_at=timezone.now())
    if token is not None:
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    deleted = deployed_model(cast.group, name="gone", status=MLModel.Status.DELETED)
    urls = [
        f"/api/v1/run/{model.hash}",
        f"/api/v1/run/{UNKNOWN_HASH}",
        f"/api/v1/run/{deleted.hash}",
        f"/api/v1/run/{model.hash}/versions/1",
        f"/api/v1/run/{model.hash}/versions/7",
        f"/api/v1/run/{UNKNOWN_HASH}/versions/1",
    ]
    answers = {url: client.post(url, "{}", content_type="application/json") for url in urls}
    for reads in (f"/api/v1/run/{model.hash}/executions/1", f"/api/v1/run/{UNKNOWN_HASH}/executions/1"):
        answers[reads] = client.get(reads)
    statuses = {url: answer.status_code for url, answer in answers.items()}
    assert set(statuses.values()) == {401}, statuses
    assert len({answer.json()["detail"] for answer in answers.values()}) == 1  # one message for all


def test_a_usable_token_learns_what_does_not_exist(cast, model):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {cast.other_token}")
    assert client.post(f"/api/v1/run/{UNKNOWN_HASH}", "{}", content_type="application/json").json() == {
        "detail": f"No model '{UNKNOWN_HASH}'.",
        "code": "not_found",
    }
    assert client.get(f"/api/v1/run/{UNKNOWN_HASH}/executions/1").status_code == 404
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {cast.group_token}")
    missing_version = client.post(
        f"/api/v1/run/{model.hash}/versions/7", "{}", content_type="application/json"
    )
    assert missing_version.status_code == 404 and "has no version 7" in missing_version.json()["detail"]


def test_patch_settings_checks_the_pair_again_against_a_change_that_landed_meanwhile(
    cast, model, monkeypatch
):
    """Two PATCHes at once, one raising the minimum, one lowering the maximum, each valid
    against what it read: the second to commit is refused instead of storing max < min."""
    from models_app import api as models_api
    from models_app import services

    client = api_client(cast.owner)
    assert client.patch(f"/api/v1/models/{model.hash}", {"max_replicas": 4}, format="json").status_code == 200
    real_change = services.change_settings

    def other_request_commits_first(target, actor, **changes):
        MLModel.objects.filter(pk=target.pk).update(min_replicas=3)  # the other PATCH's
        return real_change(target, actor, **changes)

    monkeypatch.setattr(models_api.services, "change_settings", other_request_commits_first)
    lowered = client.patch(f"/api/v1/models/{model.hash}", {"max_replicas": 2}, format="json")
    assert lowered.status_code == 409, lowered.content
    assert "max_replicas (2) must be at least min_replicas (3)" in lowered.json()["detail"]
    model.refresh_from_db()
    assert (model.min_replicas, model.max_replicas) == (3, 4)


def test_patch_settings_refuses_a_minimum_no_node_can_keep(cast, model, settings):
    settings.HOST_MAX_RUNNERS = 4
    client = api_client(cast.owner)
    over = client.patch(f"/api/v1/models/{model.hash}", {"min_replicas": 5, "max_replicas": 6}, format="json")
    assert over.status_code == 400
    assert over.json()["errors"]["min_replicas"] == [
        "5 replicas is more than a node runs at once (NEOMARIL_HOST_MAX_RUNNERS = 4)."
    ]
    assert client.patch(f"/api/v1/models/{model.hash}", {"min_replicas": 4}, format="json").status_code == 200


def test_either_bound_stops_at_the_per_model_ceiling_of_16(cast, model, settings):
    settings.HOST_CORES, settings.HOST_MAX_RUNNERS, settings.GROUP_WARM_REPLICAS = 32, 64, 64
    client = api_client(cast.owner)
    for field in ("min_replicas", "max_replicas"):
        over = client.patch(f"/api/v1/models/{model.hash}", {field: 17}, format="json")
        assert over.status_code == 400
        assert over.json()["errors"][field] == ["Ensure this value is less than or equal to 16."]
    model.refresh_from_db()
    assert model.effective_max_replicas == 16  # the default, on 32 cores (docs/serving.md)


def test_a_group_keeps_at_most_its_share_of_warm_replicas(cast, model, settings):
    settings.GROUP_WARM_REPLICAS = 3
    client = api_client(cast.owner)
    deployed_model(cast.group, name="churn", min_replicas=3)  # 2 beyond its first
    deployed_model(cast.group, name="gone", min_replicas=9, status=MLModel.Status.DELETED)
    deployed_model(cast.other_group, name="theirs", min_replicas=5)  # another group's share
    deployed_model(cast.group, name="batch", min_replicas=6, operation=MLModel.Operation.ASYNC)
    over = client.patch(f"/api/v1/models/{model.hash}", {"min_replicas": 3}, format="json")
    assert over.status_code == 400, over.content
    assert over.json()["errors"]["min_replicas"] == [
        f"Group {cast.group.name} may keep 3 replicas warm on each node beyond one per model "
        "(NEOMARIL_GROUP_WARM_REPLICAS); 3 here would make it 4, as its other models keep 2: churn (3)."
    ]
    model.refresh_from_db()
    assert model.min_replicas == 1 and not model.events.filter(action="settings_changed").exists()
    assert client.patch(f"/api/v1/models/{model.hash}", {"min_replicas": 2}, format="json").status_code == 200
    # A group over a share lowered since may still lower, or change anything else.
    settings.GROUP_WARM_REPLICAS = 0
    assert (
        client.patch(f"/api/v1/models/{model.hash}", {"request_timeout": 9}, format="json").status_code == 200
    )
    alone = deployed_model(cast.other_group, name="alone")
    refused = api_client(cast.outsider).patch(
        f"/api/v1/models/{alone.hash}", {"min_replicas": 2}, format="json"
    )
    assert refused.json()["errors"]["min_replicas"] == [
        f"Group {cast.other_group.name} may keep 0 replicas warm on each node beyond one per model "
        "(NEOMARIL_GROUP_WARM_REPLICAS); 2 here would make it 5, as its other models keep 4: theirs (5)."
    ]
    lowered = client.patch(f"/api/v1/models/{model.hash}", {"min_replicas": 1}, format="json")
    assert lowered.status_code == 200 and lowered.json()["min_replicas"] == 1


def test_a_raise_that_another_raise_in_the_group_overtook_is_409(cast, model, monkeypatch, settings):
    from models_app import api as models_api
    from models_app import services

    settings.GROUP_WARM_REPLICAS = 2
    churn = deployed_model(cast.group, name="churn")
    real_change = services.change_settings

    def other_request_commits_first(target, actor, **changes):
        MLModel.objects.filter(pk=churn.pk).update(min_replicas=3)  # the other PATCH's
        return real_change(target, actor, **changes)

    monkeypatch.setattr(models_api.services, "change_settings", other_request_commits_first)
    raced = api_client(cast.owner).patch(f"/api/v1/models/{model.hash}", {"min_replicas": 2}, format="json")
    assert raced.status_code == 409, raced.content
    assert "2 here would make it 3, as its other models keep 2: churn (3)." in raced.json()["detail"]
    model.refresh_from_db()
    assert model.min_replicas == 1


def test_session_user_without_token_is_401_not_a_csrf_error(cast, model):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(cast.owner)
    response = client.post(f"/api/v1/run/{model.hash}", '{"a": 1}', content_type="application/json")
    assert response.status_code == 401


def test_patch_settings_validates(cast, model):
    client = api_client(cast.owner)
    changed = client.patch(
        f"/api/v1/models/{model.hash}", {"min_replicas": 2, "max_replicas": 3}, format="json"
    )
    assert (changed.json()["min_replicas"], changed.json()["max_replicas"]) == (2, 3)
    bad = client.patch(f"/api/v1/models/{model.hash}", {"min_replicas": 0}, format="json")
    assert bad.status_code == 400 and "min_replicas" in bad.json()["errors"]
    # The maximum is checked against the minimum, the stored one when not given.
    below = client.patch(f"/api/v1/models/{model.hash}", {"max_replicas": 1}, format="json")
    assert below.status_code == 400
    assert below.json()["errors"]["max_replicas"] == ["max_replicas (1) must be at least min_replicas (2)."]
    # The retired setting is refused, saying what replaced it, not dropped in silence.
    retired = client.patch(f"/api/v1/models/{model.hash}", {"replicas": 2}, format="json")
    assert retired.status_code == 400
    assert "`replicas` is now `min_replicas` and `max_replicas`" in retired.json()["errors"]["replicas"][0]
    assert (
        client.patch(f"/api/v1/models/{model.hash}", {"request_timeout": 0}, format="json").status_code == 400
    )
    assert (
        api_client(cast.outsider)
        .patch(f"/api/v1/models/{model.hash}", {"min_replicas": 1}, format="json")
        .status_code
        == 404
    )
    model.refresh_from_db()
    assert (model.min_replicas, model.max_replicas) == (2, 3)
    # Null gives the maximum back to the node's cores.
    reset = client.patch(f"/api/v1/models/{model.hash}", {"max_replicas": None}, format="json")
    assert reset.status_code == 200 and reset.json()["max_replicas"] is None
    assert model.events.filter(action="settings_changed").count() == 2


def test_each_kind_of_model_changes_its_own_settings(cast, model, settings):
    client = api_client(cast.owner)
    sync = client.patch(f"/api/v1/models/{model.hash}", {"execution_timeout": 60}, format="json")
    assert sync.status_code == 400
    assert sync.json()["errors"]["execution_timeout"] == [
        "Not a setting of a Sync model; its settings: min_replicas, max_replicas, request_timeout."
    ]
    batch = MLModel.objects.get(
        hash=api_client(cast.owner)
        .post(
            "/api/v1/models",
            sync_payload(operation="Async", schema=None, input_type="csv", name="Batch"),
            format="multipart",
        )
        .json()["hash"]
    )
    for name, value in (("min_replicas", 2), ("max_replicas", 3), ("request_timeout", 7)):
        refused = client.patch(f"/api/v1/models/{batch.hash}", {name: value}, format="json")
        assert refused.status_code == 400
        assert refused.json()["errors"][name] == [
            "Not a setting of an Async model; its settings: execution_timeout."
        ]
    changed = client.patch(f"/api/v1/models/{batch.hash}", {"execution_timeout": 90}, format="json")
    assert changed.status_code == 200 and changed.json()["execution_timeout"] == 90
    batch.refresh_from_db()
    assert batch.execution_timeout == 90 and batch.min_replicas == 1
    cap = settings.Q_CLUSTER["timeout"] - 30
    over = client.patch(f"/api/v1/models/{batch.hash}", {"execution_timeout": cap + 1}, format="json")
    assert over.status_code == 400
    assert over.json()["errors"]["execution_timeout"] == [
        f"At most {cap} s: an execution must end within the worker's task timeout (NEOMARIL_TASK_TIMEOUT) less 30 s."
    ]
    back = client.patch(f"/api/v1/models/{batch.hash}", {"execution_timeout": None}, format="json")
    assert back.status_code == 200 and back.json()["execution_timeout"] is None
