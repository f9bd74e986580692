"""Docs share links' pages (portal/shared_docs.py): the shared Swagger page and document
for anonymous visitors, the refusals, and the model page's card; and the members' own
docs page sending a token-less "Try it out" to the session twin of the run URL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from models_app import share_links
from models_app.models import DocsShareLink, MLModel
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.uploads import sync_payload


@pytest.fixture
def model(cast):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    model = MLModel.objects.get(hash=response.json()["hash"])
    MLModel.objects.filter(pk=model.pk).update(status="Deployed", deployed_build=1)
    model.refresh_from_db()
    return model


@pytest.fixture
def key(cast, model) -> str:
    return share_links.create(model, cast.owner).key


def login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def test_anonymous_visitor_with_a_link_sees_the_swagger_page_and_document(model, key):
    page = Client().get(f"/shared/docs/{key}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "swagger-ui-bundle.js" in html and page.data["schema_url"] == f"/shared/docs/{key}/openapi.json"
    assert "session-try" not in html  # no session here: Try it out needs the group token
    assert page["Cache-Control"] == "private, no-store" and page["Referrer-Policy"] == "no-referrer"
    document = Client().get(f"/shared/docs/{key}/openapi.json")
    assert document.status_code == 200
    data = document.json()
    assert data["info"]["title"] == model.name
    assert data["components"]["securitySchemes"]["GroupToken"]["scheme"] == "bearer"
    assert "requestBody" in data["paths"][f"/api/v1/run/{model.hash}"]["post"]


def test_without_a_link_the_docs_stay_for_members(model):
    response = Client().get(f"/models/{model.hash}/docs/")
    assert response.status_code == 302 and "/login/" in response["Location"]


def test_expired_link_is_410(model, key):
    DocsShareLink.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    page = Client().get(f"/shared/docs/{key}/")
    assert page.status_code == 410
    assert "This share link expired on" in page.content.decode() and "swagger" not in page.content.decode()
    document = Client().get(f"/shared/docs/{key}/openapi.json")
    assert document.status_code == 410 and document.json()["code"] == "expired"


def test_revoked_link_is_410(cast, model, key):
    share_links.revoke(DocsShareLink.objects.get(), cast.owner)
    page = Client().get(f"/shared/docs/{key}/")
    assert page.status_code == 410 and "was revoked on" in page.content.decode()
    assert Client().get(f"/shared/docs/{key}/openapi.json").status_code == 410


def test_tampered_link_is_404(model, key):
    secret, signature = key.split(":")
    flipped = ("A" if secret[0] != "A" else "B") + secret[1:]
    for bad in (f"{flipped}:{signature}", f"{secret}:{signature[:-1]}x", secret, "nonsense"):
        page = Client().get(f"/shared/docs/{bad}/")
        assert page.status_code == 404, bad
        assert "This share link is not valid" in page.content.decode()
        assert Client().get(f"/shared/docs/{bad}/openapi.json").status_code == 404


def test_deleted_model_s_link_is_410(model, key):
    MLModel.objects.filter(pk=model.pk).update(status="Deleted")
    assert Client().get(f"/shared/docs/{key}/").status_code == 410


def test_owner_creates_copies_and_revokes_from_the_model_page(cast, model):
    client = login(cast.owner)
    card = client.get(f"/models/{model.hash}/").content.decode()
    assert 'id="share-form"' in card and 'id="share-none"' in card
    posted = client.post(f"/models/{model.hash}/share-links/", {"expires_in": "86400"})
    # Shown by the GET it redirects to: a reload (or Back) never posts for a second link.
    assert posted.status_code == 302 and posted["Location"] == f"/models/{model.hash}/share-links/"
    created = client.get(posted["Location"])
    assert created.status_code == 200 and "no-store" in created["Cache-Control"]
    # Not "no-referrer": Chromium would send the page's forms (log out, language) with
    # `Origin: null`, which the CSRF check refuses (tests/portal/test_pages_browser.py).
    assert created["Referrer-Policy"] == "same-origin"
    url = created.context["url"]
    assert url.startswith("http://testserver/shared/docs/") and url in created.content.decode()
    link = DocsShareLink.objects.get()
    reloaded = client.get(posted["Location"])
    assert reloaded["Location"] == f"/models/{model.hash}/#share" and url not in reloaded.content.decode()
    assert DocsShareLink.objects.count() == 1
    assert abs((link.expires_at - link.created_at) - timedelta(days=1)) < timedelta(seconds=1)
    assert Client().get(url.removeprefix("http://testserver")).status_code == 200
    card = client.get(f"/models/{model.hash}/").content.decode()
    assert f'data-link="{link.public_id}"' in card and "badge-active" in card
    revoked = client.post(f"/models/{model.hash}/share-links/{link.public_id}/revoke/")
    assert revoked.status_code == 302
    assert Client().get(url.removeprefix("http://testserver")).status_code == 410


def test_plain_member_sees_the_links_but_no_form(cast, model, key):
    client = login(cast.teammate)
    card = client.get(f"/models/{model.hash}/").content.decode()
    assert 'id="share-links"' in card and 'id="share-form"' not in card and "Revoke</button>" not in card
    response = client.post(f"/models/{model.hash}/share-links/", {"expires_in": "3600"})
    assert response.status_code == 302 and DocsShareLink.objects.count() == 1
    assert login(cast.outsider).post(f"/models/{model.hash}/share-links/").status_code == 404


def test_members_docs_page_sends_token_less_try_it_out_to_the_session_url(cast, model):
    html = login(cast.teammate).get(f"/models/{model.hash}/docs/").content.decode()
    assert "js/model_docs.js" in html
    assert f'"try": "/api/v1/run/{model.hash}/try"' in html
    assert "requestInterceptor(neomarilSessionTry(request))" in html
