"""An API token revoked (or its account disabled) while an upload's body streams in stores
nothing: the token was checked before the body, and is checked again once it is read."""

from __future__ import annotations

import pytest
from rest_framework import parsers

from groups import services
from groups.api.parsers import REVOKED_DURING_UPLOAD
from groups.models import ApiToken
from models_app.models import MLModel
from tests.helpers.clients import api_client
from tests.helpers.uploads import sync_payload


@pytest.fixture
def meanwhile(monkeypatch):
    """Run an action while the multipart body is being read (after the token's check)."""
    actions = []
    original = parsers.MultiPartParser.parse

    def parse(self, stream, media_type=None, parser_context=None):
        for action in actions:
            action()
        return original(self, stream, media_type, parser_context)

    monkeypatch.setattr(parsers.MultiPartParser, "parse", parse)
    return actions


def test_a_token_revoked_during_an_upload_stores_nothing(cast, meanwhile):
    client = api_client(cast.owner)
    meanwhile.append(lambda: services.revoke_api_token(ApiToken.objects.get(user=cast.owner)))

    response = client.post("/api/v1/models", sync_payload(name="late"), format="multipart")

    assert response.status_code == 401, response.content
    assert response.json()["detail"] == REVOKED_DURING_UPLOAD
    assert not MLModel.objects.filter(name="late").exists()


def test_an_account_disabled_during_an_upload_stores_nothing(cast, meanwhile):
    client = api_client(cast.owner)
    meanwhile.append(lambda: type(cast.owner).objects.filter(pk=cast.owner.pk).update(is_active=False))

    response = client.post("/api/v1/models", sync_payload(name="late"), format="multipart")

    assert response.status_code == 401, response.content
    assert not MLModel.objects.filter(name="late").exists()


def test_a_token_still_valid_stores_the_upload(cast, meanwhile):
    meanwhile.append(lambda: None)
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(name="kept"), format="multipart")
    assert response.status_code == 201, response.content
