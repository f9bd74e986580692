"""NeomarilModel.share_docs against the fake server: the request it sends, the link it
returns, and the owner-only refusal as the SDK's exception."""

from __future__ import annotations

import datetime

import pytest
from neomaril_codex import base
from neomaril_codex.exceptions import PermissionDeniedError
from neomaril_codex.model import NeomarilModelClient

from tests.helpers.sdk import sdk_env
from tests.sdk.fake import URL, logged_in_server, model_info, session_with

HASH = "M" + "a" * 32
LINK = f"{URL}/shared/docs/abc:sig/"


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    sdk_env(monkeypatch, tmp_path)
    monkeypatch.setattr(base.time, "sleep", lambda seconds: None)


@pytest.fixture
def server():
    server = logged_in_server()
    server.on("GET", f"/api/v1/models/{HASH}", 200, model_info())
    return server


@pytest.fixture
def model(server):
    return NeomarilModelClient("ana", "pw", URL, session=session_with(server)).get_model(HASH)


def test_share_docs_posts_the_lifetime_and_returns_the_link(model, server):
    server.on("POST", f"/api/v1/models/{HASH}/share-links", 201, {"url": LINK, "state": "active"})
    assert model.share_docs() == LINK
    assert server.last("POST").json() == {"expires_in": 7 * 86400}
    assert model.share_docs(expires_in=datetime.timedelta(hours=1)) == LINK
    assert server.last("POST").json() == {"expires_in": 3600}
    assert model.share_docs(expires_in=600) == LINK
    assert server.last("POST").json() == {"expires_in": 600}


def test_a_plain_member_is_refused(model, server):
    detail = "Only admins and the owners of the model's group can share its docs."
    server.on(
        "POST", f"/api/v1/models/{HASH}/share-links", 403, {"detail": detail, "code": "permission_denied"}
    )
    with pytest.raises(PermissionDeniedError, match="owners of the model's group"):
        model.share_docs()
