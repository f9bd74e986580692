"""Docs share links through the API (models_app/share_api.py, rules in models_app/share_links.py)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from models_app.models import DocsShareLink, MLModel
from tests.helpers.clients import api_client
from tests.helpers.uploads import sync_payload


@pytest.fixture
def model(cast):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    return MLModel.objects.get(hash=response.json()["hash"])


def links_url(model) -> str:
    return f"/api/v1/models/{model.hash}/share-links"


def test_owner_creates_a_link_whose_secret_is_stored_hashed(cast, model):
    before = timezone.now()
    response = api_client(cast.owner).post(links_url(model), {"expires_in": 3600}, format="json")
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"  # the link is shown once
    data = response.json()
    assert data["url"].startswith(f"http://testserver/shared/docs/{data['prefix']}")
    assert data["state"] == "active" and data["created_by"] == "owner" and data["revoked_at"] is None
    link = DocsShareLink.objects.get(public_id=data["id"])
    key = data["url"].rsplit("/shared/docs/", 1)[1].rstrip("/")
    secret = key.split(":")[0]
    assert secret not in link.digest and len(link.digest) == 64  # only the hash is kept
    assert timedelta(seconds=3599) < link.expires_at - before < timedelta(seconds=3601)


def test_default_lifetime_is_7_days_and_the_maximum_90(cast, model):
    client = api_client(cast.admin)
    link = client.post(links_url(model), {}, format="json").json()
    stored = DocsShareLink.objects.get(public_id=link["id"])
    assert abs((stored.expires_at - stored.created_at) - timedelta(days=7)) < timedelta(seconds=1)
    too_long = client.post(links_url(model), {"expires_in": 91 * 86400}, format="json")
    assert too_long.status_code == 400 and "expires_in" in too_long.json()["errors"]
    too_short = client.post(links_url(model), {"expires_in": 10}, format="json")
    assert too_short.status_code == 400


def test_plain_member_may_list_but_not_create_or_revoke(cast, model):
    link = api_client(cast.owner).post(links_url(model), {}, format="json").json()
    member = api_client(cast.teammate)
    refused = member.post(links_url(model), {}, format="json")
    assert refused.status_code == 403
    assert refused.json() == {
        "detail": "Only admins and the owners of the model's group can share its docs.",
        "code": "permission_denied",
    }
    assert member.delete(f"{links_url(model)}/{link['id']}").status_code == 403
    listed = member.get(links_url(model)).json()
    assert [item["id"] for item in listed] == [link["id"]] and "url" not in listed[0]
    assert DocsShareLink.objects.count() == 1 and DocsShareLink.objects.get().revoked_at is None


def test_outsider_gets_404(cast, model):
    outsider = api_client(cast.outsider)
    assert outsider.get(links_url(model)).status_code == 404
    assert outsider.post(links_url(model), {}, format="json").status_code == 404
    assert api_client(cast.owner).get("/api/v1/models/M0000/share-links").status_code == 404


def test_owner_revokes_and_the_list_says_so(cast, model):
    client = api_client(cast.owner)
    link = client.post(links_url(model), {}, format="json").json()
    assert client.delete(f"{links_url(model)}/{link['id']}").status_code == 204
    assert client.delete(f"{links_url(model)}/{link['id']}").status_code == 204  # again: no change
    listed = client.get(links_url(model)).json()
    assert listed[0]["state"] == "revoked" and listed[0]["revoked_by"] == "owner"
    assert client.delete(f"{links_url(model)}/not-a-link").status_code == 404


def test_deleted_model_cannot_be_shared(cast, model):
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DELETED)
    response = api_client(cast.owner).post(links_url(model), {}, format="json")
    assert response.status_code == 409 and response.json()["code"] == "deleted"
