"""The Content-Security-Policy on Django's answers (portal/csp.py). Chromium's side (an
injected script does not run; no page of the portal breaks the policy) is checked by
tests/portal/test_pages_browser.py and by every browser test (tests/conftest.py)."""

import json
import re

import pytest
from django.test import Client

from models_app import share_links
from models_app.models import MLModel
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.uploads import sync_payload


def script_sources(policy: str) -> list[str]:
    directive = next(d.strip() for d in policy.split(";") if d.strip().startswith("script-src "))
    return directive.split()[1:]


@pytest.fixture
def member(cast):
    client = Client()
    client.login(username="teammate", password=PASSWORD)
    return client


@pytest.fixture
def model(cast):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    model = MLModel.objects.get(hash=response.json()["hash"])
    MLModel.objects.filter(pk=model.pk).update(status="Deployed", deployed_build=1)
    return model


def test_pages_allow_only_the_portals_own_scripts(member):
    policy = member.get("/").headers["Content-Security-Policy"]
    sources = script_sources(policy)
    assert sources[0] == "'self'" and re.fullmatch(r"'nonce-[\w-]{22}'", sources[1]) and len(sources) == 2
    assert "'unsafe-inline'" not in sources and "'unsafe-eval'" not in sources
    for directive in ("object-src 'none'", "base-uri 'none'", "frame-ancestors 'none'", "form-action 'self'"):
        assert directive in policy


def test_each_answer_has_its_own_nonce(member):
    first = script_sources(member.get("/").headers["Content-Security-Policy"])[1]
    second = script_sources(member.get("/").headers["Content-Security-Policy"])[1]
    assert first != second


def test_anonymous_pages_and_the_browsable_api_carry_it_but_json_does_not(cast):
    assert "script-src 'self'" in Client().get("/login/").headers["Content-Security-Policy"]
    browsable = api_client(cast.owner).get("/api/v1/models", HTTP_ACCEPT="text/html")
    assert (
        browsable.status_code == 200 and "default-src 'self'" in browsable.headers["Content-Security-Policy"]
    )
    # JSON is never run as a document; the Sync fast path's answers must match Django's.
    answer = api_client(cast.owner).get("/api/v1/models")
    assert answer.status_code == 200 and "Content-Security-Policy" not in answer.headers


def inline_scripts(html: str) -> list[tuple[str, str]]:
    """(attributes, body) of each <script> without src= (json_script data blocks aside)."""
    return [
        (attributes, body)
        for attributes, body in re.findall(r"<script([^>]*)>(.*?)</script>", html, re.S)
        if "src=" not in attributes and 'type="application/json"' not in attributes
    ]


@pytest.mark.parametrize("page", ["model", "shared", "platform"])
def test_swagger_pages_start_up_script_carries_the_answers_nonce(cast, member, model, page):
    if page == "model":
        answer = member.get(f"/models/{model.hash}/docs/")
    elif page == "shared":
        answer = Client().get(f"/shared/docs/{share_links.create(model, cast.owner).key}/")
    else:
        answer = member.get("/api/docs/")
    assert answer.status_code == 200
    nonce = script_sources(answer.headers["Content-Security-Policy"])[1].removeprefix("'nonce-").rstrip("'")
    [(attributes, body)] = inline_scripts(answer.content.decode())
    assert f'nonce="{nonce}"' in attributes
    assert "SwaggerUIBundle(" in body


def test_json_data_blocks_are_not_scripts_the_policy_must_allow(member, model):
    html = member.get(f"/models/{model.hash}/").content.decode()
    assert inline_scripts(html) == []
    assert json.loads(
        re.search(r'<script id="model-config" type="application/json">(.*?)</script>', html).group(1)
    )
