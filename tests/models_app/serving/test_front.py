"""The ASGI fast path for Sync calls (models_app.serving.front), driven in-process.

What it answers itself must be what Django's run view answers (same status, bytes and
security headers); everything it cannot serve as a plain call must reach Django; a
change in the database (revoked token, disabled model) must count from the next call.
The real runner round trip through gunicorn is covered by tests/models_app/serving/test_e2e.py.
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from django.core.wsgi import get_wsgi_application
from django.db import DatabaseError, connection, connections
from django.utils import timezone
from rest_framework.test import APIClient

from groups.models import GroupToken
from models_app.calls import lookup_call
from models_app.models import MLModel
from models_app.serving import front as front_module
from models_app.serving.answers import NESTED_TOO_DEEPLY
from models_app.serving.front import CallLookup, CommitListener, NotCached, ServingFront
from portal.wsgi_bridge import WSGIBridge
from tests.helpers.clients import api_client, asgi_post
from tests.helpers.loops import run_async
from tests.helpers.uploads import sync_payload

pytestmark = [
    pytest.mark.django_db(transaction=True),  # the front reads on its own connection
    pytest.mark.usefixtures("lookup_threads_disconnect"),
]

# Headers the server adds (uvicorn) or that differ per response.
SERVER_HEADERS = {"date", "server", "content-length"}


class CountingFallback:
    """The Django side, counting what reaches it."""

    def __init__(self) -> None:
        self.app = WSGIBridge(get_wsgi_application(), workers=2)
        self.calls = 0

    async def __call__(self, scope, receive, send):
        self.calls += 1
        await self.app(scope, receive, send)


def django_post(path: str, body: bytes, token: str):
    response = APIClient().post(
        path, body, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}"
    )
    return response.status_code, {k.lower(): v for k, v in response.items()}, response.content


@pytest.fixture
def model(cast):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    MLModel.objects.filter(hash=response.json()["hash"]).update(status=MLModel.Status.DEPLOYED)
    return MLModel.objects.get(hash=response.json()["hash"])


@pytest.fixture
def front(settings):
    with tempfile.TemporaryDirectory(prefix="nm-") as run_dir:  # short: Unix socket paths
        settings.RUN_DIR = Path(run_dir)  # no model host, no runners
        settings.RECORD_PREDICTIONS = False  # the recorder's thread has no test database access
        fallback = CountingFallback()
        yield ServingFront(fallback=fallback), fallback


def bearer(token):
    return {"Authorization": f"Bearer {token}"}


@pytest.mark.parametrize(
    ("body", "status"),
    [(b"{not json", 400), (b"[1, 2]", 400), (b'{"a": 1, "b": 2}', 503)],
    ids=["not-json", "not-an-object", "no-model-host"],
)
def test_answers_itself_exactly_as_django_does(front, model, cast, body, status):
    app, fallback = front
    path = f"/api/v1/run/{model.hash}"
    got = asgi_post(app, path, body, bearer(cast.group_token))
    assert fallback.calls == 0, "the fast path should have answered"
    expected = django_post(path, body, cast.group_token)
    assert got[0] == expected[0] == status
    assert got[2] == expected[2]
    assert {k: v for k, v in got[1].items() if k not in SERVER_HEADERS} == {
        k: v for k, v in expected[1].items() if k not in SERVER_HEADERS
    }
    assert got[1]["content-length"] == str(len(got[2]))
    assert got[1].get("retry-after") == ("5" if status == 503 else None)  # the model host restarting


def test_body_in_several_chunks_is_read_whole(front, model, cast):
    app, fallback = front
    status, _, content = asgi_post(
        app, f"/api/v1/run/{model.hash}", b"[" + b"1, " * 5000 + b"1]", bearer(cast.group_token), chunks=7
    )
    assert (status, fallback.calls) == (400, 0)
    assert b"not a JSON list" in content


def test_body_over_the_limit_is_413_on_both_paths(front, model, cast, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    app = ServingFront(fallback=front[1])  # reads the limit when built
    body = b'{"a": "' + b"x" * 200 + b'"}'
    path = f"/api/v1/run/{model.hash}"
    status, _, content = asgi_post(app, path, body, bearer(cast.group_token))
    assert status == 413 and b"100-byte limit" in content
    assert django_post(path, body, cast.group_token)[:3:2] == (413, content)


def test_declared_length_over_the_limit_is_413_before_the_body_is_read(front, model, cast):
    app, fallback = front
    received = []
    status, _, content = asgi_post(
        app,
        f"/api/v1/run/{model.hash}",
        b"{}",
        bearer(cast.group_token),
        declared_length=10**9,
        received=received,
    )
    limit = app.max_body
    assert (status, fallback.calls, received) == (413, 0, [])
    assert json.loads(content) == {
        "detail": f"The request body is larger than the {limit}-byte limit for Sync calls "
        "(DATA_UPLOAD_MAX_MEMORY_SIZE); send large inputs to an Async model as a file.",
        "code": "too_large",
    }


def test_json_nested_too_deeply_is_400_on_both_paths(front, model, cast):
    app, fallback = front
    path = f"/api/v1/run/{model.hash}"
    body = b'{"a": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    status, _, content = asgi_post(app, path, body, bearer(cast.group_token))
    assert (status, fallback.calls) == (400, 0)
    assert json.loads(content) == {"detail": NESTED_TOO_DEEPLY, "code": "invalid"}
    assert "nested too deeply" in NESTED_TOO_DEEPLY
    assert django_post(path, body, cast.group_token)[:3:2] == (400, content)


@pytest.mark.parametrize(
    ("case", "status"),
    [
        ("no-token", 401),
        ("unknown-token", 401),
        ("other-group", 403),
        ("expired-token", 401),
        ("unknown-model", 404),
        ("not-deployed", 409),
        ("async-model", 415),  # the executions app wants a multipart upload
    ],
)
def test_everything_else_is_answered_by_django(front, model, cast, case, status):
    app, fallback = front
    path = f"/api/v1/run/{model.hash}"
    headers = bearer(cast.group_token)
    if case == "no-token":
        headers = {}
    elif case == "unknown-token":
        headers = bearer("nmg_nope")
    elif case == "other-group":
        headers = bearer(cast.other_token)
    elif case == "expired-token":
        GroupToken.objects.filter(group=cast.group).update(expires_at=timezone.now() - timedelta(hours=1))
    elif case == "unknown-model":
        path = "/api/v1/run/Mnope"
    elif case == "not-deployed":
        MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.BUILDING)
    elif case == "async-model":
        MLModel.objects.filter(pk=model.pk).update(operation=MLModel.Operation.ASYNC)
    got_status, _, content = asgi_post(app, path, b'{"a": 1}', headers)
    assert fallback.calls == 1
    assert got_status == status, content


def test_revoked_token_and_disabled_model_count_from_the_next_call(front, model, cast):
    app, fallback = front
    path = f"/api/v1/run/{model.hash}"
    for _ in range(2):  # the second call is answered from the lookup cache
        assert asgi_post(app, path, b"[1]", bearer(cast.group_token))[0] == 400
    assert fallback.calls == 0

    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DISABLED)
    status, _, content = asgi_post(app, path, b"[1]", bearer(cast.group_token))
    assert (status, fallback.calls) == (409, 1), content

    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DEPLOYED)
    assert asgi_post(app, path, b"[1]", bearer(cast.group_token))[0] == 400
    GroupToken.objects.filter(group=cast.group).update(revoked_at=timezone.now())
    status, _, content = asgi_post(app, path, b"[1]", bearer(cast.group_token))
    assert (status, fallback.calls) == (401, 2), content


def test_disallowed_host_is_left_to_django(front, model, cast, settings):
    app, fallback = front
    settings.ALLOWED_HOSTS = ["portal.example"]
    status, _, content = asgi_post(app, f"/api/v1/run/{model.hash}", b"[1]", bearer(cast.group_token))
    assert (status, fallback.calls) == (400, 1)
    assert b"not a JSON list" not in content  # Django's DisallowedHost answer, not the body check


def test_settings_changed_after_the_front_was_built_apply_from_the_next_call(front, model, cast, settings):
    """The front reads its settings once, and again when they change (override_settings)."""
    app, fallback = front
    path = f"/api/v1/run/{model.hash}"
    assert asgi_post(app, path, b"[1]", bearer(cast.group_token))[0] == 400  # its own body check
    assert fallback.calls == 0
    settings.ALLOWED_HOSTS = ["portal.example"]
    status, _, content = asgi_post(app, path, b"[1]", bearer(cast.group_token))
    assert (status, fallback.calls) == (400, 1)
    assert b"not a JSON list" not in content


def test_https_redirect_is_left_to_django(front, model, cast, settings):
    settings.SECURE_SSL_REDIRECT = True
    fallback = CountingFallback()  # SecurityMiddleware reads the setting when it is built
    app = ServingFront(fallback=fallback)
    status, headers, _ = asgi_post(app, f"/api/v1/run/{model.hash}", b"[1]", bearer(cast.group_token))
    assert (status, fallback.calls) == (301, 1)
    assert headers["location"].startswith("https://")


def test_lookup_cache_is_bounded(model, cast, monkeypatch):
    lookup = CallLookup()
    monkeypatch.setattr(CallLookup, "MAX_CACHED", 3)
    for n in range(10):
        run_async(lookup(model.hash, f"nmg_guess{n}"))
    assert len(lookup._cache) <= 3
    target = run_async(lookup(model.hash, cast.group_token))
    assert target.model.pk == model.pk and target.token.group_id == cast.group.pk


def test_sqlite_lookup_asks_sqlite_only_after_a_commit(model, cast):
    """Between commits the lookup answers from its cache without a statement (the WAL
    index's header is unchanged); any commit, by any connection, makes it ask again."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: PostgreSQL reuses answers until a notification (TestPostgresqlReuse)")
    lookup = CallLookup()
    assert lookup.now(model.hash, cast.group_token).model.status == MLModel.Status.DEPLOYED
    assert lookup.now(model.hash, cast.group_token) is not None  # maps the header
    statements: list[str] = []
    lookup._sqlite.set_trace_callback(statements.append)
    for _ in range(50):
        assert lookup.now(model.hash, cast.group_token).model.pk == model.pk
    assert statements == []

    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DISABLED)
    assert lookup.now(model.hash, cast.group_token).model.status == MLModel.Status.DISABLED
    assert statements[0] == "PRAGMA data_version" and len(statements) == 2  # and the query
    # A commit that changes nothing the lookup reads still clears its cache: exact, not clever.
    GroupToken.objects.filter(group=cast.group).update(expires_at=timezone.now() + timedelta(days=3))
    statements.clear()
    lookup.now(model.hash, cast.group_token)
    assert len(statements) == 2


class TestWalIndexHeader:
    """The header check behind the SQLite lookup (front.WalIndexHeader)."""

    def test_changes_with_every_commit_and_only_then(self, tmp_path):
        import sqlite3

        path = str(tmp_path / "db.sqlite3")
        writer = sqlite3.connect(path, isolation_level=None)
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("CREATE TABLE t (x)")
        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("SELECT count(*) FROM t").fetchone()
        watch = front_module.WalIndexHeader(path)
        assert watch.header() is None  # not mapped yet
        watch.open()
        seen = {watch.header()}
        assert None not in seen and watch.header() in seen  # no commit: the same
        for n in range(3):
            writer.execute("INSERT INTO t VALUES (?)", [n])
            assert watch.header() not in seen
            seen.add(watch.header())
        writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the next commit restarts the WAL
        writer.execute("INSERT INTO t VALUES (9)")
        assert watch.header() not in seen
        reader.close()
        writer.close()

    def test_an_unchanged_header_means_unchanged_data_while_another_connection_commits(self, tmp_path):
        """The cache's premise under concurrent commits: whenever the header reads the same
        before and after a query as at an earlier query, the data is the earlier data."""
        import sqlite3
        import threading

        path = str(tmp_path / "db.sqlite3")
        setup = sqlite3.connect(path, isolation_level=None)
        setup.execute("PRAGMA journal_mode=WAL")
        setup.execute("CREATE TABLE t (v INTEGER)")
        setup.execute("INSERT INTO t VALUES (0)")
        done = threading.Event()

        def commit_increments() -> None:
            writer = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            for _ in range(3000):
                writer.execute("UPDATE t SET v = v + 1")
            writer.close()
            done.set()

        reader = sqlite3.connect(path, isolation_level=None)
        reader.execute("SELECT v FROM t").fetchone()
        watch = front_module.WalIndexHeader(path)
        watch.open()
        seen_header, seen_value, vouched, values = None, None, 0, set()
        threading.Thread(target=commit_increments, daemon=True).start()
        while not done.is_set():
            before = watch.header()
            (value,) = reader.execute("SELECT v FROM t").fetchone()
            after = watch.header()
            values.add(value)
            if before is None or before != after:
                continue  # a commit in between: nothing to vouch for
            if before == seen_header:
                assert value == seen_value
                vouched += 1
            seen_header, seen_value = before, value
        assert done.wait(30)
        assert vouched > 100 and len(values) > 100  # both sides really ran
        setup.close()

    def test_no_header_to_vouch_for_means_none(self, tmp_path):
        import sqlite3

        path = str(tmp_path / "rollback.sqlite3")
        sqlite3.connect(path).execute("CREATE TABLE t (x)")  # journal_mode DELETE: no -shm file
        watch = front_module.WalIndexHeader(path)
        watch.open()
        assert watch.header() is None

        def header(version=3007000, init=1) -> bytes:
            fields = version.to_bytes(4, sys.byteorder) + bytes(8) + bytes([init]) + bytes(35)
            return fields

        cases = {
            "a commit in progress (copies differ)": header() + header()[:20] + b"x" + header()[21:],
            "not initialised": header(init=0) * 2,
            "another layout version": header(version=3007001) * 2,
        }
        for name, content in cases.items():
            fake = tmp_path / name
            (tmp_path / f"{name}-shm").write_bytes(content + bytes(32768))
            watch = front_module.WalIndexHeader(str(fake))
            watch.open()
            assert watch.header() is None, name
        (tmp_path / "good-shm").write_bytes(header() * 2 + bytes(32768))
        watch = front_module.WalIndexHeader(str(tmp_path / "good"))
        watch.open()
        assert watch.header() == header()


def test_lookup_through_a_thread_for_databases_other_than_sqlite(model, cast):
    """PostgreSQL's lookup runs lookup_call on a thread of its own; same answers."""
    inline = run_async(CallLookup()(model.hash, cast.group_token))
    threaded_lookup = CallLookup()
    threaded_lookup._sqlite_name = None  # as for any other database vendor
    threaded = run_async(threaded_lookup(model.hash, cast.group_token))
    assert threaded == inline
    assert threaded_lookup._executor is not None and not threaded_lookup._cache
    assert run_async(threaded_lookup("Mnope", cast.group_token)) is None


def test_postgresql_lookup_thread_has_its_own_connection_and_reconnects(model, cast):
    """The real thread on the suite's PostgreSQL pass: when the server drops its connection,
    that call fails (the front leaves it to Django) and the next one connects again."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: NEOMARIL_TEST_BACKENDS=postgres runs it (SQLite answers inline)")
    lookup = CallLookup()
    assert run_async(lookup(model.hash, cast.group_token)).model.pk == model.pk

    def backend_pid() -> int:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            return cursor.fetchone()[0]

    pid = lookup._executor.submit(backend_pid).result()
    assert pid != backend_pid()  # the thread's own connection, not the caller's
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    with pytest.raises(DatabaseError):
        run_async(lookup(model.hash, cast.group_token))
    assert run_async(lookup(model.hash, cast.group_token)).model.pk == model.pk
    assert lookup._executor.submit(backend_pid).result() not in (pid, backend_pid())


class TestPostgresqlReuse:
    """On PostgreSQL the lookup's answers are reused while its CommitListener is live,
    until the notification of the next commit to the tables it reads (migration 0011)."""

    @pytest.fixture(autouse=True)
    def asked(self, monkeypatch) -> list[str]:
        if connection.vendor != "postgresql":
            pytest.skip(
                "PostgreSQL only: NEOMARIL_TEST_BACKENDS=postgres runs it (SQLite reads its WAL index)"
            )
        asked: list[str] = []

        def counted(model_hash: str, token: str):
            asked.append(model_hash)
            return lookup_call(model_hash, token)

        monkeypatch.setattr(front_module, "lookup_call", counted)
        return asked

    @staticmethod
    async def until(condition, what: str, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, what
            await asyncio.sleep(0.01)

    @staticmethod
    async def on_a_thread(write) -> None:
        """Database work from the event loop, on a thread whose connection is then closed."""

        def run() -> None:
            try:
                write()
            finally:
                connections.close_all()

        await asyncio.get_running_loop().run_in_executor(None, run)

    async def listening(self, lookup: CallLookup, model, token: str):
        """The first answer, once the listener is live: asked, and kept."""
        await lookup(model.hash, token)  # starts the listener
        await self.until(lookup.listener.live, "the listener never went live")
        return await lookup(model.hash, token)

    def test_answers_are_reused_until_a_commit_is_notified(self, model, cast, asked):
        lookup = CallLookup()
        token = cast.group_token

        async def scenario() -> None:
            kept = await self.listening(lookup, model, token)
            before = len(asked)
            for _ in range(20):
                assert lookup.now(model.hash, token) == kept
                assert await lookup(model.hash, token) == kept
            assert len(asked) == before  # no query

            revoke = GroupToken.objects.filter(group=cast.group).update
            await self.on_a_thread(lambda: revoke(revoked_at=timezone.now()))
            await self.until(lambda: not lookup._cache, "the commit's notification never arrived")
            with pytest.raises(NotCached):
                lookup.now(model.hash, token)
            assert (await lookup(model.hash, token)).token.revoked
            assert len(asked) == before + 1
            assert lookup.now(model.hash, token).token.revoked

        run_async(scenario())

    def test_an_answer_a_commit_overtook_is_not_reused(self, model, cast, asked, monkeypatch):
        """A commit notified while the query was on its way may postdate what it read."""
        lookup = CallLookup()
        token = cast.group_token

        def committed_meanwhile(model_hash: str, token: str):
            changes = lookup._changes
            MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DISABLED)
            deadline = time.monotonic() + 10
            while lookup._changes == changes:  # until the listener has the notification
                assert time.monotonic() < deadline, "the commit's notification never arrived"
                time.sleep(0.01)
            return lookup_call(model_hash, token)

        async def scenario() -> None:
            await self.listening(lookup, model, token)
            monkeypatch.setattr(front_module, "lookup_call", committed_meanwhile)
            assert (await lookup("Mnope", token)) is None
            with pytest.raises(NotCached):
                lookup.now("Mnope", token)

        run_async(scenario())

    def test_without_its_connection_every_call_asks_until_it_listens_again(
        self, model, cast, asked, monkeypatch
    ):
        monkeypatch.setattr(CommitListener, "RETRY", (1.0, 1.0))
        lookup = CallLookup()
        token = cast.group_token

        def terminate(pid: int) -> None:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])

        async def scenario() -> None:
            await self.listening(lookup, model, token)
            pid = lookup.listener.backend_pid
            await self.on_a_thread(lambda: terminate(pid))
            await self.until(lambda: not lookup.listener.live(), "the listener did not notice")
            with pytest.raises(NotCached):
                lookup.now(model.hash, token)
            before = len(asked)
            for _ in range(3):
                await lookup(model.hash, token)
            assert len(asked) == before + 3
            await self.until(lookup.listener.live, "the listener never listened again")
            assert lookup.listener.backend_pid not in (None, pid)

        run_async(scenario())

    @pytest.mark.parametrize(
        "probe",
        # The server's side of the sleep outlives the connection: short, or a backend still
        # running would keep the test database from being dropped.
        ["SELECT pg_sleep(1), %s::text", "SELECT %s::text"],
        ids=["server-stops-answering", "notifications-lost"],
    )
    def test_without_proof_that_notifications_arrive_the_reuse_ends_within_two_heartbeats(
        self, model, cast, monkeypatch, probe
    ):
        """A server that stops answering, or a pooler that does not carry notifications
        (the listener's own never comes back): the same end."""
        monkeypatch.setattr(CommitListener, "HEARTBEAT", 0.2)
        lookup = CallLookup()

        async def scenario() -> None:
            await self.listening(lookup, model, cast.group_token)
            monkeypatch.setattr(CommitListener, "PROBE_SQL", probe)
            proven = time.monotonic()
            await self.until(lambda: not lookup.listener.live(), "still live", timeout=5)
            assert time.monotonic() - proven <= 2 * 0.2 + 0.1
            with pytest.raises(NotCached):
                lookup.now(model.hash, cast.group_token)

        run_async(scenario())
        time.sleep(1)  # the server's sleep ends


class SwallowingConnection:
    """A listening connection whose wait for notifications swallows a cancellation, as
    psycopg's can on Python 3.11 (its asyncio.wait_for)."""

    info = SimpleNamespace(backend_pid=1)
    swallowing = True

    def __init__(self) -> None:
        self.channels: list[str] = []

    @classmethod
    async def connect(cls, **_params) -> SwallowingConnection:
        return cls()

    async def __aenter__(self) -> SwallowingConnection:
        return self

    async def __aexit__(self, *_exc) -> None:
        return None

    async def execute(self, sql: str, params=None) -> None:
        if sql.startswith("LISTEN "):
            self.channels.append(sql.split()[1])

    async def notifies(self, *, timeout: float):
        yield SimpleNamespace(channel=self.channels[-1])  # its own probe: proven
        try:
            await asyncio.sleep(timeout)
        except asyncio.CancelledError:
            if not self.swallowing:
                raise


def test_the_listener_ends_with_its_loop_even_when_a_cancellation_is_swallowed_below_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "psycopg", SimpleNamespace(AsyncConnection=SwallowingConnection))
    monkeypatch.setattr(SwallowingConnection, "swallowing", True)
    monkeypatch.setattr(CommitListener, "HEARTBEAT", 0.05)
    listener = CommitListener({}, lambda: None)

    async def scenario() -> None:
        listener.start()
        await asyncio.sleep(0.2)
        assert listener.live()
        listener._task.cancel()
        done, _ = await asyncio.wait({listener._task}, timeout=2)
        if not done:  # let this loop close, then fail
            SwallowingConnection.swallowing = False
            listener._task.cancel()
        assert done, "the listener outlived its cancellation: its loop could never close"
        assert not listener.live()

    run_async(scenario())


def test_a_list_of_records_reaches_the_model_and_a_list_of_numbers_does_not(front, model, cast):
    app, _fallback = front
    status, _, content = asgi_post(app, f"/api/v1/run/{model.hash}", b"[]", bearer(cast.group_token))
    assert status == 400 and b"not a JSON list of nothing" in content
    status, _, content = asgi_post(
        app, f"/api/v1/run/{model.hash}", b'[{"a": 1}, 2]', bearer(cast.group_token)
    )
    assert status == 400 and b"not a JSON list with a number among its objects (item 1)" in content
