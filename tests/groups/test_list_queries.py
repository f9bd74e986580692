"""Lists answer in a number of queries that does not grow with their rows."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from groups import services
from models_app.models import MLModel
from tests.helpers.clients import api_client
from tests.helpers.uploads import file, sync_payload


def _queries(client, url: str) -> int:
    client.get(url)  # the first call also notes the token's last use
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_groups_list_takes_the_same_queries_for_more_groups(cast):
    admin = api_client(cast.admin)
    few = _queries(admin, "/api/v1/groups")
    for number in range(5):
        services.create_group(name=f"extra-{number}", created_by=cast.admin)
    assert _queries(admin, "/api/v1/groups") == few
    tokens = {group["name"]: group["token"] for group in admin.get("/api/v1/groups").json()}
    assert tokens["extra-0"]["prefix"].startswith("nmg_")  # still the group's valid token


def _add_version(client, model: MLModel) -> None:
    payload = sync_payload(source=file("app.py", "def score(data, base_path):\n    return data\n"))
    for inherited in ("name", "group", "operation"):
        payload.pop(inherited)
    assert (
        client.post(f"/api/v1/models/{model.hash}/versions", payload, format="multipart").status_code == 201
    )


def test_the_versions_list_takes_the_same_queries_for_more_versions(cast):
    owner = api_client(cast.owner)
    model = MLModel.objects.get(
        hash=owner.post("/api/v1/models", sync_payload(), format="multipart").json()["hash"]
    )
    _add_version(owner, model)
    url = f"/api/v1/models/{model.hash}/versions"
    few = _queries(owner, url)
    for _ in range(3):
        _add_version(owner, model)
    assert _queries(owner, url) == few
    versions = owner.get(url).json()["results"]
    assert len(versions) == 5 and all(v["last_build"]["number"] == 1 for v in versions)
