"""The ASGI fast path (models_app.serving.front) when its call lookup can't reach the database.

It answers the 503 Django gives every API URL then (portal.database_outage): the same
bytes and headers, with Retry-After, before reading the body and without asking the
database again through Django. A lookup that fails once on a connection the server
ended (a restart that is over) is tried again on a new one, not answered 503.
"""

from __future__ import annotations

import json
import logging

import pytest
from django.db import OperationalError, ProgrammingError, connection, connections

from models_app.calls import lookup_call
from models_app.serving import front as front_module
from tests.helpers.clients import asgi_post
from tests.models_app.serving import test_front
from tests.models_app.serving.test_front import SERVER_HEADERS, bearer, django_post
from tests.portal.test_database_outage import UNAVAILABLE, database_down

front, model = test_front.front, test_front.model  # its fixtures: a front, a deployed Sync model

pytestmark = [
    pytest.mark.django_db(transaction=True),  # the front reads on its own connection
    pytest.mark.usefixtures("lookup_threads_disconnect"),
]


def through_django(app) -> None:
    """The lookup PostgreSQL's deployments run: lookup_call on Django's connection, on a thread."""
    app.lookup._sqlite_name = None


def sqlite_file_gone(app) -> None:
    """SQLite's own lookup, whose database file can no longer be opened (its disk went away)."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: the PostgreSQL pass runs the lookup through Django")
    app.lookup._sqlite_name = "/nonexistent/neomaril/db.sqlite3"
    app.lookup._sqlite = None


@pytest.mark.parametrize("outage", [through_django, sqlite_file_gone], ids=["django", "sqlite"])
def test_a_lookup_that_cannot_reach_the_database_is_the_apis_503(front, model, cast, outage):
    app, fallback = front
    outage(app)
    path = f"/api/v1/run/{model.hash}"
    received: list = []
    with database_down():
        status, headers, content = asgi_post(
            app, path, b'{"a": 1}', bearer(cast.group_token), received=received
        )
        expected = django_post(path, b'{"a": 1}', cast.group_token)  # Django's answer to the same call
    assert (status, fallback.calls, received) == (503, 0, [])  # answered before the body was read
    assert json.loads(content) == UNAVAILABLE
    assert headers["retry-after"] == "5" and headers["content-type"] == "application/json"
    assert expected[0] == 503 and expected[2] == content
    assert {k: v for k, v in headers.items() if k not in SERVER_HEADERS} == {
        k: v for k, v in expected[1].items() if k not in SERVER_HEADERS
    }


def test_the_web_workers_inline_lookup_leaves_the_outage_to_the_asgi_path(front, model, cast, caplog):
    """WebProtocol calls accept_now: None hands the call to the ASGI path, which answers the 503."""
    app, _ = front
    sqlite_file_gone(app)
    headers = {b"host": b"127.0.0.1:8000", b"authorization": f"Bearer {cast.group_token}".encode()}
    with caplog.at_level(logging.WARNING, logger="models_app.serving.front"):
        assert app.accept_now(model.hash, headers.get, "http") is None
    assert caplog.records == []  # no traceback: the ASGI path reports it


def test_one_warning_per_outage_and_one_when_it_is_over(front, model, cast, caplog):
    app, fallback = front
    through_django(app)
    path = f"/api/v1/run/{model.hash}"
    with caplog.at_level(logging.WARNING, logger="models_app.serving.front"):
        with database_down():
            for _ in range(3):
                assert asgi_post(app, path, b"[1]", bearer(cast.group_token))[0] == 503
        status, _, content = asgi_post(app, path, b"[1]", bearer(cast.group_token))
    assert (status, fallback.calls) == (400, 0), content  # the fast path's own body check again
    messages = [r.getMessage() for r in caplog.records if r.name == "models_app.serving.front"]
    assert (
        messages[0]
        == "looking up calls in the database failed; calls are answered 503 until a lookup works again"
    )
    assert len(messages) == 2 and messages[1].startswith("looking up calls in the database works again after")


def test_a_connection_the_server_ended_is_replaced_once_not_answered_503(front, model, cast, monkeypatch):
    """After a restart the lookup thread's kept connection fails its first query."""
    app, fallback = front
    through_django(app)
    failures = [OperationalError("terminating connection due to administrator command")]

    def first_fails(model_hash: str, token: str):
        if failures:
            raise failures.pop()
        return lookup_call(model_hash, token)

    monkeypatch.setattr(front_module, "lookup_call", first_fails)
    status, _, content = asgi_post(app, f"/api/v1/run/{model.hash}", b"[1]", bearer(cast.group_token))
    assert (status, fallback.calls, failures) == (400, 0, []), content


def test_another_lookup_error_is_still_left_to_django(front, model, cast, monkeypatch):
    app, fallback = front
    through_django(app)

    def broken(model_hash: str, token: str):
        raise ProgrammingError('relation "groups_grouptoken" does not exist')

    monkeypatch.setattr(front_module, "lookup_call", broken)
    status, _, _ = asgi_post(app, f"/api/v1/run/{model.hash}", b"[1]", bearer(cast.group_token))
    assert (status, fallback.calls) == (400, 1)  # Django's view answered (its own lookup works)


def test_a_database_locked_past_the_lookups_timeout_is_left_to_django(front, model, cast, monkeypatch):
    # SQLite busy with a long write: Django's own connection waits longer (30 s) and answers.
    app, fallback = front
    through_django(app)

    def locked(model_hash: str, token: str):
        raise OperationalError("database is locked")

    monkeypatch.setattr(front_module, "lookup_call", locked)
    status, _, _ = asgi_post(app, f"/api/v1/run/{model.hash}", b"[1]", bearer(cast.group_token))
    assert (status, fallback.calls) == (400, 1)


def test_after_a_real_restart_of_the_lookups_connection_the_call_is_answered(front, model, cast):
    """The PostgreSQL pass: the server ends the lookup thread's connection, as a restart does."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: NEOMARIL_TEST_BACKENDS=postgres runs it (SQLite has no server)")
    app, fallback = front
    app.lookup.listener = None  # every call asks the database (no answers reused)
    path = f"/api/v1/run/{model.hash}"
    assert asgi_post(app, path, b"[1]", bearer(cast.group_token))[0] == 400

    def backend_pid() -> int:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    pid = app.lookup._executor.submit(backend_pid).result()
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    status, _, content = asgi_post(app, path, b"[1]", bearer(cast.group_token))
    assert (status, fallback.calls) == (400, 0), content
    assert app.lookup._executor.submit(backend_pid).result() != pid  # on a new connection
