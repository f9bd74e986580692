"""Share links and session "Try it" in a real headless Chromium against Django's live server.

No model host runs: the runner's answer is faked at the one client both the run URL and
its session twin use (serving.aio's blocking pool). Nothing is fetched from outside the
portal: Swagger UI comes from drf-spectacular-sidecar's vendored files.
"""

from __future__ import annotations

import json

import pytest

from models_app import share_links
from models_app.models import MLModel
from models_app.runtime.protocol import OK_PREFIX
from models_app.serving import answers, views
from tests.helpers.browser import give_session, screenshot
from tests.helpers.clients import api_client
from tests.helpers.uploads import sync_payload

pytestmark = [pytest.mark.browser]


@pytest.fixture
def model(cast, monkeypatch):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(name="Doubler"), format="multipart")
    model = MLModel.objects.get(hash=response.json()["hash"])
    MLModel.objects.filter(pk=model.pk).update(status="Deployed", deployed_build=1)
    model.refresh_from_db()

    def predict(called, body):
        data = json.loads(body)
        return OK_PREFIX + json.dumps({"sum": data["a"] + data["b"]}).encode() + b"}"

    monkeypatch.setattr(views.blocking_pool, "predict", predict)
    monkeypatch.setattr(answers.recorder, "record", lambda call: None)
    return model


@pytest.fixture
def watched(page, live_server):
    """The page, with every URL it requests checked to stay on the live server."""
    requested, errors = [], []
    page.on("request", lambda request: requested.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    offsite = [url for url in requested if not url.startswith((live_server.url, "data:", "blob:"))]
    assert offsite == [], f"the page fetched from outside the portal: {offsite}"
    assert errors == [], f"JavaScript errors: {errors}"


def login(page, live_server, user) -> None:
    give_session(page, live_server, user)


def try_it_out(page) -> tuple[str, str]:
    """Swagger UI: open the predict operation, try it out with its example; (status, body)."""
    page.click("#operations-model-predict .opblock-summary")
    page.click("#operations-model-predict .try-out__btn")
    page.fill("#operations-model-predict textarea.body-param__text", '{"a": 20, "b": 22}')
    page.click("#operations-model-predict .execute")
    body = page.wait_for_selector(
        "#operations-model-predict .live-responses-table .response-col_description pre"
    )
    status = page.inner_text("#operations-model-predict .live-responses-table .response .response-col_status")
    return status.strip(), body.inner_text()


def test_anonymous_visitor_opens_a_share_link_and_sees_the_swagger_page(cast, model, watched, live_server):
    key = share_links.create(model, cast.owner).key
    page = watched
    page.goto(f"{live_server.url}/shared/docs/{key}/")
    page.wait_for_selector(".swagger-ui .info .title")
    assert "Doubler" in page.inner_text(".swagger-ui .info .title")
    assert page.is_visible(".btn.authorize")  # Try it out asks for the group token
    screenshot(page, "shared-docs-anonymous")
    status, body = try_it_out(page)
    assert status.startswith("401") and "group token" in body  # no token, no call
    page.click(".btn.authorize")
    page.fill(".auth-container input", cast.group_token)
    page.click(".auth-btn-wrapper .btn.modal-btn.auth.authorize")
    page.click(".btn-done")
    page.click("#operations-model-predict .execute")
    page.wait_for_function(
        "() => document.querySelector('#operations-model-predict .live-responses-table .response .response-col_status')"
        ".innerText.trim().startsWith('200')"
    )
    answer = page.inner_text("#operations-model-predict .live-responses-table .response-col_description pre")
    assert json.loads(answer) == {"sum": 42}


def test_revoked_share_link_shows_a_clear_page(cast, model, watched, live_server):
    new = share_links.create(model, cast.owner)
    share_links.revoke(new.link, cast.owner)
    response = watched.goto(f"{live_server.url}/shared/docs/{new.key}/")
    assert response.status == 410
    assert "This link no longer opens the docs" in watched.inner_text("h1")


def test_member_tries_it_out_on_the_docs_page_with_her_session(cast, model, watched, live_server):
    login(watched, live_server, cast.teammate)
    watched.goto(f"{live_server.url}/models/{model.hash}/docs/")
    watched.wait_for_selector(".swagger-ui .info .title")
    status, body = try_it_out(watched)
    assert status.startswith("200") and json.loads(body) == {"sum": 42}


def test_member_tries_her_model_on_its_page_without_a_token(cast, model, watched, live_server):
    login(watched, live_server, cast.teammate)
    watched.goto(f"{live_server.url}/models/{model.hash}/")
    assert watched.is_visible("#try-session-note") and watched.query_selector("#try-token") is None
    watched.fill("#try-body", '{"a": 1, "b": 2}')
    watched.click("#try-submit")
    assert json.loads(watched.wait_for_selector("#try-answer").inner_text()) == {"sum": 3}
    screenshot(watched, "model-try-it-session")
