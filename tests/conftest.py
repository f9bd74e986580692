"""Fixtures every test may use: the cast (an owner, a teammate, an outsider and an admin)
and settings that keep the suite fast. Helpers live in tests/helpers/."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connections
from django.utils import translation

from groups import nodes, services
from groups.models import Membership
from models_app.serving import front as front_module
from tests.helpers.browser import CHROMIUM_FLAGS, POLICY_REFUSALS, chromium_path, note_policy_refusal
from tests.helpers.cast import PASSWORD, Cast


@pytest.fixture(autouse=True)
def _tasks_held_unknown(monkeypatch):
    """groups.nodes.tasks_held reads the test run's Redis, where other tests' tasks come
    and go: pinned to "can't say" (as on the ORM broker). Tests about it set their own,
    or call the real one (tests/groups/test_nodes.py keeps a reference)."""
    monkeypatch.setattr(nodes, "tasks_held", lambda: None)


@pytest.fixture(autouse=True)
def _default_language_after_each_test():
    """A page requested in Portuguese leaves Portuguese active on the test's thread (the
    locale middleware sets it per request and nothing resets it): the next test in the
    process would read its English strings translated."""
    yield
    translation.activate(django_settings.LANGUAGE_CODE)


@pytest.fixture
def model_host():
    """A real model host serving its control socket on a thread, as `make run` starts it."""
    from models_app.serving import paths
    from models_app.serving.host import ControlServer, ModelHost

    host = ModelHost()
    control = ControlServer(paths.host_socket(), host)
    thread = threading.Thread(target=control.serve_forever, daemon=True)
    thread.start()
    yield host
    control.shutdown()
    control.server_close()
    paths.host_socket().unlink(missing_ok=True)  # as the next test's "no host" expects
    host.shutdown()


@pytest.fixture
def cast(db) -> Cast:
    User = get_user_model()
    admin = User.objects.create_superuser("admin", password=PASSWORD)
    owner = User.objects.create_user("owner", password=PASSWORD)
    teammate = User.objects.create_user("teammate", password=PASSWORD)
    outsider = User.objects.create_user("outsider", password=PASSWORD)
    group, token = services.create_group(name="datarisk", description="Risk models", created_by=admin)
    Membership.objects.filter(group=group, user=admin).delete()
    services.set_membership(group, owner, Membership.Role.OWNER)
    services.set_membership(group, teammate, Membership.Role.MEMBER)
    other, other_token = services.create_group(name="other-team", created_by=None)
    services.set_membership(other, outsider, Membership.Role.OWNER)
    return Cast(owner, teammate, outsider, admin, group, token, other, other_token)


@pytest.fixture(autouse=True)
def _fast_test_settings(settings):
    # Password stretching dominates test time otherwise; hashing itself is Django's.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    # No collectstatic in unit tests: serve from the app folders without a manifest.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _no_recorder_after_the_test():
    """The prediction recorder's writer thread outlives the test that started it, and would
    keep trying a database the next test does not share (or that is gone)."""
    yield
    from monitoring.recorder import recorder

    if recorder._thread is not None or recorder.buffer:
        recorder.stop(discard=True)


@pytest.fixture(scope="session", autouse=True)
def _no_sessions_left_on_the_test_database(request):
    """PostgreSQL refuses to drop a database a session still uses. Threads that ran
    Django code (the WSGI bridge's workers, the call lookups', the recorder's) keep their
    own connections, which Django closes only on the thread that opened them: end those
    sessions before pytest-django drops the test database."""
    if connections["default"].vendor != "postgresql":
        yield
        return
    request.getfixturevalue("django_db_setup")  # so this ends before the database is dropped
    blocker = request.getfixturevalue("django_db_blocker")
    yield
    with blocker.unblock(), connections["default"].cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (Debian's) for the session's browser tests."""
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop in this thread while it runs; the tests'
    # own database calls (and the test database's teardown) are synchronous all the same.
    with pytest.MonkeyPatch.context() as patch, sync_playwright() as playwright:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_FLAGS)
        new_context = browser.new_context

        def new_watched_context(*args, **kwargs):
            context = new_context(*args, **kwargs)
            context.on("console", note_policy_refusal)
            return context

        browser.new_context = new_watched_context
        yield browser
        browser.close()


@pytest.fixture(autouse=True)
def no_policy_refusals(request):
    if "browser" not in request.fixturenames:
        yield
        return
    POLICY_REFUSALS.clear()
    yield
    refused, POLICY_REFUSALS[:] = list(POLICY_REFUSALS), []
    assert not refused, "Chromium refused something under the Content-Security-Policy:\n" + "\n".join(refused)


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    yield page
    context.close()


@pytest.fixture
def lookup_threads_disconnect(monkeypatch):
    """On PostgreSQL each CallLookup's thread keeps a connection of its own: close them after
    the test (a web worker's exit does), or the test database could not be dropped."""
    executors = []

    def recorded(*args, **kwargs):
        executors.append(ThreadPoolExecutor(*args, **kwargs))
        return executors[-1]

    monkeypatch.setattr(front_module, "ThreadPoolExecutor", recorded)
    yield
    for executor in executors:
        executor.submit(connections.close_all).result()
        executor.shutdown()
