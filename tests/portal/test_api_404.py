"""Under /api/ every error is JSON in the API's shape, a path no route matches too; the
portal's paths keep their HTML page."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/v1/nonexistent"),
        ("get", "/api/v2/models"),
        ("get", "/api/"),
        ("delete", "/api/v1/auth/tokens/not-a-uuid"),
        ("get", "/api/v1/models/Mabc123/versions/abc"),
        ("post", "/api/v1/run/Mabc123/versions/abc"),
        ("get", "/api/v1/run/Mabc123/executions/abc"),
    ],
)
def test_a_path_no_api_route_matches_is_a_json_404(cast, method, path):
    for client in (api_client(cast.owner), api_client()):  # before any authentication
        response = getattr(client, method)(path)
        assert response.status_code == 404
        assert response["Content-Type"] == "application/json"
        assert response.json() == {
            "detail": (
                f"No API endpoint at {method.upper()} {path}. "
                "The endpoints are listed at /api/docs/ (OpenAPI document: /api/schema/)."
            ),
            "code": "not_found",
        }


def test_the_same_answer_keeps_the_path_as_sent(cast):
    response = api_client(cast.owner).get("/api/v1/nonexistent?page=2")
    assert response.json()["detail"].startswith("No API endpoint at GET /api/v1/nonexistent. ")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/api/v1/auth/me"),
        ("delete", "/api/v1/users"),
        ("get", "/api/v1/run/Mabc123"),
        ("put", "/api/v1/run/Mabc123/executions"),
    ],
)
def test_a_wrong_method_under_api_is_a_json_405(cast, method, path):
    response = getattr(api_client(cast.owner), method)(path)
    assert response.status_code == 405
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "method_not_allowed"


@pytest.mark.parametrize("path", ["/nonexistent/", "/models/Mabc123/", "/apix/v1/models"])
def test_portal_paths_keep_the_html_page(cast, path):
    client = Client()
    assert client.login(username="owner", password=PASSWORD)
    response = client.get(path)
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert "<h1>Not found</h1>" in response.content.decode()
