"""Login throttling: one count of failed logins, in the database, for the API and the forms."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pytest
from axes.models import AccessAttempt
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.utils import timezone

from groups.authentication import client_ip, lockout_message
from tests.backends import database_url
from tests.helpers.cast import PASSWORD

LIMIT = 3
LOGIN = "/api/v1/auth/login"


@pytest.fixture(autouse=True)
def _small_limit(settings):
    settings.LOGIN_FAILURE_LIMIT = settings.AXES_FAILURE_LIMIT = LIMIT


@pytest.fixture
def user(db):
    return get_user_model().objects.create_user("ana", password=PASSWORD)


def api_login(password: str, client: Client | None = None, **extra):
    return (client or Client()).post(
        LOGIN, {"username": "ana", "password": password}, content_type="application/json", **extra
    )


def _fail(times: int, **extra) -> list[int]:
    return [api_login("wrong", **extra).status_code for _ in range(times)]


def test_the_api_locks_an_address_out_after_the_limit(user):
    assert _fail(LIMIT) == [401] * (LIMIT - 1) + [429]
    response = api_login(PASSWORD)  # even the right password
    assert response.status_code == 429
    assert response.json() == {"detail": lockout_message(), "code": "locked_out"}
    assert "Too many failed logins from your address (3)" in response.json()["detail"]
    assert response["Retry-After"] == str(15 * 60)


def test_a_failure_below_the_limit_does_not_stop_the_right_password(user):
    _fail(LIMIT - 1)
    assert api_login(PASSWORD).status_code == 201


def test_another_address_is_not_locked_out(user):
    _fail(LIMIT)
    assert api_login(PASSWORD, REMOTE_ADDR="10.0.0.2").status_code == 201


def test_the_right_password_works_again_after_the_lockout(user):
    _fail(LIMIT)
    assert api_login(PASSWORD).status_code == 429
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    response = api_login(PASSWORD)
    assert response.status_code == 201
    assert response.json()["user"]["username"] == "ana"


def test_tries_during_the_lockout_do_not_extend_it(user):
    _fail(LIMIT)
    locked_at = AccessAttempt.objects.get().attempt_time
    assert _fail(3) == [429] * 3
    assert AccessAttempt.objects.get().attempt_time == locked_at


def test_a_client_chosen_x_forwarded_for_does_not_reset_the_count(user):
    statuses = [api_login("wrong", HTTP_X_FORWARDED_FOR=f"1.2.3.{n}").status_code for n in range(LIMIT)]
    assert statuses[-1] == 429
    assert api_login(PASSWORD, HTTP_X_FORWARDED_FOR="9.9.9.9, 127.0.0.1").status_code == 429
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"127.0.0.1"}


def test_behind_a_trusted_proxy_the_forwarded_client_is_counted(user, settings):
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    # The client put "6.6.6.6" first; the proxy appended the address it saw.
    _fail(LIMIT, HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.7")
    assert api_login(PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.7").status_code == 429
    assert api_login(PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.8").status_code == 201
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["203.0.113.7"]


@pytest.mark.parametrize(
    ("trusted", "remote", "forwarded", "expected"),
    [
        ([], "10.0.0.1", "1.2.3.4", "10.0.0.1"),
        (["10.0.0.1"], "10.0.0.9", "1.2.3.4", "10.0.0.9"),  # not from the proxy: header ignored
        (["10.0.0.0/8"], "10.0.0.1", "1.2.3.4, 10.0.0.5", "1.2.3.4"),  # two proxies
        (["10.0.0.1"], "10.0.0.1", "", "10.0.0.1"),
        (["10.0.0.1"], "10.0.0.1", "1.2.3.4, junk", "10.0.0.1"),
        (["::1"], "::1", "2001:db8::1", "2001:db8::1"),
        # Bound to "::": IPv4 peers arrive IPv4-mapped, and count as their IPv4 address.
        (["10.0.0.1"], "::ffff:10.0.0.1", "1.2.3.4", "1.2.3.4"),
        ([], "::ffff:10.0.0.9", "1.2.3.4", "10.0.0.9"),
    ],
)
def test_client_ip(rf, settings, trusted, remote, forwarded, expected):
    settings.TRUSTED_PROXIES = trusted
    request = rf.post("/", REMOTE_ADDR=remote, HTTP_X_FORWARDED_FOR=forwarded)
    assert client_ip(request) == expected


def test_the_count_is_shared_by_processes(transactional_db, tmp_path):
    """Failures made by another process (another web worker) lock this one out too."""
    get_user_model().objects.create_user("ana", password=PASSWORD)
    assert _fail(LIMIT - 1) == [401] * (LIMIT - 1)
    script = textwrap.dedent(
        f"""
        import django, json
        django.setup()
        from django.test import Client
        response = Client().post({LOGIN!r}, {{"username": "ana", "password": "wrong"}},
                                 content_type="application/json")
        print(response.status_code)
        """
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": database_url(connection.settings_dict),
        "ALLOWED_HOSTS": "testserver",
        "NEOMARIL_LOGIN_FAILURE_LIMIT": str(LIMIT),
        "NEOMARIL_DATA_DIR": str(django_settings.DATA_DIR),
    }
    other = subprocess.run(
        [sys.executable, "-c", script],
        env=env,
        cwd=Path(django_settings.BASE_DIR),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert other.stdout.strip() == "429", other.stderr[-2000:]  # its first try, the third here
    response = api_login(PASSWORD)
    assert response.status_code == 429
    assert response.json()["code"] == "locked_out"


# --- the login forms -----------------------------------------------------------------


@pytest.mark.parametrize("path", ["/login/", "/admin/login/"])
def test_the_login_forms_are_throttled_with_a_readable_page(user, path):
    client = Client()
    statuses = [client.post(path, {"username": "ana", "password": "wrong"}).status_code for _ in range(LIMIT)]
    assert statuses == [200] * (LIMIT - 1) + [429]
    response = client.post(path, {"username": "ana", "password": PASSWORD})
    assert response.status_code == 429
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    assert "<h1" in html and "Too many failed logins" in html
    assert lockout_message().split("(")[0] in html
    assert "_auth_user_id" not in client.session


def test_the_forms_and_the_api_share_one_count(user):
    client = Client()
    for _ in range(LIMIT - 1):
        assert client.post("/login/", {"username": "ana", "password": "wrong"}).status_code == 200
    assert api_login("wrong").status_code == 429
    assert client.post("/admin/login/", {"username": "ana", "password": PASSWORD}).status_code == 429


def test_the_form_logs_in_after_the_lockout(user):
    client = Client()
    for _ in range(LIMIT):
        client.post("/login/", {"username": "ana", "password": "wrong"})
    AccessAttempt.objects.update(attempt_time=timezone.now() - timedelta(minutes=16))
    response = client.post("/login/", {"username": "ana", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"
