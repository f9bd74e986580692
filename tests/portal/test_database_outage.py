"""A database that can't be reached is a 503 saying so (portal.database_outage), not a 500.

The outage is PostgreSQL's client error when the server went away, raised by every new
query (`database_down`); the requests are what the audit sent while it was stopped:
the REST API, the login, the run URL (Django's view; the ASGI fast path is in
tests/models_app/serving/test_front_database_outage.py) and the portal's pages, whether
the database is first read by the view or by a middleware (the page's time zone).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from unittest import mock

import pytest
from django.db import OperationalError, ProgrammingError, connections
from django.test import Client
from prometheus_client import REGISTRY

from models_app.serving.answers import DATABASE_UNAVAILABLE
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client, token_client

UNAVAILABLE = {"detail": DATABASE_UNAVAILABLE, "code": "unavailable"}


@contextlib.contextmanager
def database_down(error: Exception | None = None) -> Iterator[None]:
    """Every query fails as psycopg does when the server went away (or with `error`)."""

    def unreachable(self, *args, **kwargs):
        raise error or OperationalError("server closed the connection unexpectedly")

    with mock.patch.object(type(connections["default"]), "ensure_connection", unreachable):
        yield


def assert_unavailable_json(response) -> None:
    assert response.status_code == 503, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Retry-After"] == "5"
    assert response.json() == UNAVAILABLE


def test_the_message_says_what_happened_and_what_to_do():
    assert DATABASE_UNAVAILABLE.startswith("The database did not answer (unreachable or too busy)")
    assert "retry in a few seconds" in DATABASE_UNAVAILABLE


def test_an_api_endpoint_is_503_unavailable_with_retry_after(cast, caplog):
    client = api_client(cast.owner)  # its token is issued while the database is up
    with database_down(), caplog.at_level(logging.ERROR):
        response = client.get("/api/v1/models")
    assert_unavailable_json(response)
    outage = [r for r in caplog.records if r.name == "portal.database_outage"]
    assert [r.getMessage() for r in outage] == [
        "the database is unreachable: GET /api/v1/models answered 503 "
        "(server closed the connection unexpectedly)"
    ]
    assert outage[0].exc_info is None  # one line, not a traceback per request


def test_each_503_of_an_outage_is_counted(cast):
    # No model's series counts them (no model was looked up): an outage shows in /metrics.
    def answered() -> float:
        return REGISTRY.get_sample_value("neomaril_database_unavailable_answers_total") or 0.0

    before = answered()
    client = Client(raise_request_exception=False)
    client.force_login(cast.owner)
    api = api_client(cast.owner)
    with database_down():
        assert api.get("/api/v1/models").status_code == 503
        assert client.get("/").status_code == 503
    assert answered() == before + 2


def test_the_api_login_is_503_unavailable(cast):
    with database_down():
        response = Client().post(
            "/api/v1/auth/login",
            {"username": "owner", "password": PASSWORD},
            content_type="application/json",
        )
    assert_unavailable_json(response)


@pytest.mark.parametrize("body", ["json", "upload"])
def test_the_run_url_through_django_is_503_unavailable(cast, body):
    """A Sync call (JSON) and an Async submission (an upload) to the run URL's Django view."""
    client = token_client(cast.group_token)
    with database_down():
        if body == "json":
            response = client.post("/api/v1/run/Mnope", {"a": 1}, format="json")
        else:
            response = client.post("/api/v1/run/Mnope", {"file": ("in.csv", b"a\n1\n")}, format="multipart")
    assert_unavailable_json(response)


def test_an_interface_error_is_an_outage_too(cast):
    """psycopg's "connection already closed", on a connection the server ended."""
    from django.db import InterfaceError

    client = api_client(cast.owner)
    with database_down(InterfaceError("connection already closed")):
        assert_unavailable_json(client.get("/api/v1/models"))


def test_a_page_whose_middleware_meets_the_outage_is_the_503_page(cast):
    """A logged-in page: the time zone middleware reads the user (the session) first."""
    client = Client(raise_request_exception=False)
    client.force_login(cast.owner)
    with database_down():
        response = client.get("/")
        portuguese = client.get("/", HTTP_ACCEPT_LANGUAGE="pt-BR")
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == "5"
    page = response.content.decode()
    assert "<h1>The database is unreachable</h1>" in page
    assert "reload the page in a few seconds" in page
    assert "Something went wrong" not in page  # not the 500 page
    assert portuguese.status_code == 503
    assert "O banco de dados está inacessível" in portuguese.content.decode()


def test_a_page_whose_view_meets_the_outage_is_the_503_page(cast):
    """The login form: the view is the first to read the database."""
    with database_down():
        response = Client().post("/login/", {"username": "owner", "password": PASSWORD})
    assert response.status_code == 503
    assert response["Retry-After"] == "5"
    assert "<h1>The database is unreachable</h1>" in response.content.decode()


def test_a_full_disk_stays_507_and_other_database_errors_stay_500(cast):
    client = api_client(cast.owner)
    with database_down(OperationalError("database or disk is full")):
        response = client.get("/api/v1/models")
    assert response.status_code == 507
    assert response.json()["code"] == "insufficient_storage"
    client.raise_request_exception = False  # a bug's 500: the test client would raise it
    with database_down(ProgrammingError('relation "models_app_mlmodel" does not exist')):
        response = client.get("/api/v1/models")
    assert response.status_code == 500
    assert response.json()["code"] == "error"
    assert "Retry-After" not in response
