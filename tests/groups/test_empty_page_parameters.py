"""An empty `page` or `page_size` is a 400 naming it, as any other bad value is
(groups/api/pagination.py): DRF read `?page=` as the first page and `?page_size=` as the
default, which docs/api.md promises never to do."""

from __future__ import annotations

import pytest

from tests.helpers.clients import api_client


@pytest.mark.parametrize("path", ["/api/v1/users", "/api/v1/models", "/api/v1/training/experiments"])
def test_an_empty_page_size_is_400_naming_it(cast, path):
    response = api_client(cast.admin).get(f"{path}?page_size=")
    assert response.status_code == 400, response.content
    assert response.json() == {
        "detail": "page_size: '' is not a page size: use a whole number from 1 to 500.",
        "code": "invalid",
        "errors": {"page_size": ["'' is not a page size: use a whole number from 1 to 500."]},
    }


@pytest.mark.parametrize("path", ["/api/v1/users", "/api/v1/models", "/api/v1/training/experiments"])
def test_an_empty_page_is_400_naming_it(cast, path):
    response = api_client(cast.admin).get(f"{path}?page=")
    assert response.status_code == 400, response.content
    assert response.json() == {
        "detail": "page: '' is not a page number: use 1, 2, …",
        "code": "invalid",
        "errors": {"page": ["'' is not a page number: use 1, 2, …"]},
    }


def test_left_out_they_are_the_first_page_of_the_default_size(cast):
    page = api_client(cast.admin).get("/api/v1/users").json()
    assert page["count"] == 4 and len(page["results"]) == 4 and page["previous"] is None


def test_the_links_between_pages_never_send_an_empty_one(cast):
    client = api_client(cast.admin)
    second = client.get("/api/v1/users", {"page": "2", "page_size": "1"}).json()
    assert second["previous"] == "http://testserver/api/v1/users?page_size=1"  # page 1: left out
    assert client.get(second["previous"]).status_code == 200
    assert client.get(second["next"]).status_code == 200
