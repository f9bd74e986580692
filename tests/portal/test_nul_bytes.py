"""A NUL (%00) in a path is a 404, in a query string a 400 naming the parameter, on every
URL (portal/nul_bytes.py): PostgreSQL cannot look one up (a 500), and SQLite answered a
filter with one as if it were not there. Run on PostgreSQL too (tests.backends)."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import pytest
from django.core.wsgi import get_wsgi_application
from django.test import Client

from models_app.models import MLModel
from models_app.serving.front import ServingFront
from portal.nul_bytes import IN_A_NAME, IN_A_VALUE
from portal.wsgi_bridge import WSGIBridge
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client, asgi_post, token_client
from tests.helpers.uploads import sync_payload


@pytest.fixture
def model_hash(cast):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    assert response.status_code == 201, response.content
    return response.json()["hash"]


def _no_endpoint(method: str, path: str) -> dict:
    return {
        "detail": (
            f"No API endpoint at {method.upper()} {path}. "
            "The endpoints are listed at /api/docs/ (OpenAPI document: /api/schema/)."
        ),
        "code": "not_found",
    }


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/models/{hash}\x00"),
        ("get", "/api/v1/models/{hash}\x00/status"),
        ("get", "/api/v1/run/{hash}\x00/health"),
        ("post", "/api/v1/run/{hash}\x00"),
        ("get", "/api/v1/users/a\x00b"),
        ("post", "/api/v1/users/a\x00b/reset"),
        ("get", "/api/v1/groups/a\x00b"),
        ("delete", "/api/v1/groups/datarisk/members/a\x00b"),
        ("get", "/api/v1/training/experiments/E\x00"),
    ],
)
def test_a_nul_in_an_api_path_is_the_json_404_of_a_path_that_names_nothing(cast, model_hash, method, path):
    path = path.format(hash=model_hash)
    for client in (api_client(cast.admin), token_client(cast.group_token), api_client()):
        response = getattr(client, method)(path.replace("\x00", "%00"))
        assert response.status_code == 404, response.content
        assert response["Content-Type"] == "application/json"
        assert response.json() == _no_endpoint(method, path)


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/api/v1/models?name=%00", "name"),
        ("/api/v1/models?group=da%00tarisk", "group"),
        ("/api/v1/models?status=Ready&operation=%00", "operation"),
        ("/api/v1/training/experiments?name=%00", "name"),
        ("/api/v1/users?page=1%00", "page"),
        ("/api/v1/groups/datarisk?x=%00", "x"),
    ],
)
def test_a_nul_in_an_api_query_value_is_400_naming_the_parameter(cast, path, name):
    response = api_client(cast.admin).get(path)
    assert response.status_code == 400, response.content
    assert response.json() == {
        "detail": f"{name}: {IN_A_VALUE}",
        "code": "invalid",
        "errors": {name: [IN_A_VALUE]},
    }


def test_a_nul_in_a_query_name_is_400_naming_it(cast):
    response = api_client(cast.admin).get("/api/v1/models?na%00me=x&group=%00")
    assert response.status_code == 400
    assert response.json() == {
        "detail": f"na%00me: {IN_A_NAME}",
        "code": "invalid",
        "errors": {"na\x00me": [IN_A_NAME], "group": [IN_A_VALUE]},
    }


def test_a_filter_without_nul_still_filters(cast, model_hash):
    client = api_client(cast.admin)
    assert client.get("/api/v1/models?name=Teste").json()["count"] == 1
    assert client.get("/api/v1/models?name=nothing-like-it").json()["count"] == 0


@pytest.fixture
def logged_in(cast):
    client = Client()
    assert client.login(username=cast.owner.username, password=PASSWORD)
    return client


@pytest.mark.parametrize("path", ["/shared/docs/a%00b/", "/shared/docs/a%00b/openapi.json", "/models/M%00/"])
def test_a_nul_in_a_page_path_is_the_not_found_page(logged_in, path):
    response = logged_in.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"There is nothing here" in response.content
    assert b"owner" in response.content  # the page of the user logged in, as any 404


def test_a_nul_in_a_page_query_is_a_plain_400_naming_the_parameter(logged_in):
    response = logged_in.get("/models/?name=%00")
    assert response.status_code == 400
    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == f"Bad request: the query parameter 'name': {IN_A_VALUE}"


@pytest.mark.parametrize("path", ["/models/", "/api/v1/auth/me"])
def test_a_session_cookie_with_a_nul_is_no_session(db, path):
    client = Client()
    client.cookies["sessionid"] = "abcdefghijklmnop\x00"  # as `sessionid="abcdefghijklmnop\000"` arrives
    response = client.get(path)
    assert response.status_code in (302, 401, 403), response.content  # not logged in, not a 500
    if path == "/models/":
        assert response["Location"].startswith("/login/")
        assert response.cookies["sessionid"].value == ""  # deleted


# ------------------------------------------------------------------ the run URL's fast path


@pytest.fixture
def front(settings):
    with tempfile.TemporaryDirectory(prefix="nm-") as run_dir:  # short: Unix socket paths
        settings.RUN_DIR = Path(run_dir)
        settings.RECORD_PREDICTIONS = False
        yield ServingFront(fallback=WSGIBridge(get_wsgi_application(), workers=1))


@pytest.mark.django_db(transaction=True)  # the front reads on its own connection
@pytest.mark.usefixtures("lookup_threads_disconnect")
def test_the_fast_path_leaves_a_nul_in_a_run_url_to_django(cast, model_hash, front, caplog):
    assert front.run_call_hash(f"/api/v1/run/{model_hash}\x00") is None
    assert front.run_call_hash(f"/api/v1/run/{model_hash}", b"a=%00") is None
    assert front.run_call_hash(f"/api/v1/run/{model_hash}", b"a=1") == model_hash
    bearer = {"Authorization": f"Bearer {cast.group_token}"}
    with caplog.at_level(logging.ERROR):
        status, _, content = asgi_post(front, f"/api/v1/run/{model_hash}\x00", b"{}", bearer)
    assert status == 404, content
    assert b"No API endpoint at POST" in content
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # nothing looked up


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("lookup_threads_disconnect")
def test_the_fast_path_leaves_a_nul_in_a_run_url_query_to_django(cast, model_hash, front):
    MLModel.objects.filter(hash=model_hash).update(status=MLModel.Status.DEPLOYED)
    path, bearer = f"/api/v1/run/{model_hash}", {"Authorization": f"Bearer {cast.group_token}"}
    # Served by the fast path (503: no model host here) without a NUL; Django's 400 with one.
    assert asgi_post(front, path, b"{}", bearer, query=b"x=1")[0] == 503
    status, _, content = asgi_post(front, path, b"{}", bearer, query=b"x=%00")
    assert status == 400, content
    assert json.loads(content) == {
        "detail": f"x: {IN_A_VALUE}",
        "code": "invalid",
        "errors": {"x": [IN_A_VALUE]},
    }
