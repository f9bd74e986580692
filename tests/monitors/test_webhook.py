"""The drift webhook: its address checked, its secret kept encrypted, its notices signed.

Periods are made directly (tests/helpers/monitors.py) and `tasks.notify` sends their
notice to a receiver on loopback, which each test allows or not.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import re
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.test import Client
from django.utils import timezone

from monitors import tasks
from monitors.models import Monitor, Period
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.monitors import make_monitor, make_period
from tests.helpers.receiver import start_receiver

API = "/api/v1/monitoring"
SECRET = "a-long-enough-signing-secret"


@pytest.fixture
def receiver(settings):
    settings.WEBHOOK_ALLOWED_NETWORKS = ["127.0.0.0/8"]
    found, server = start_receiver()
    yield found
    server.shutdown()


@pytest.fixture(autouse=True)
def no_waiting_between_tries(monkeypatch):
    monkeypatch.setattr(tasks.time, "sleep", lambda seconds: None)


def drifting_period(model, run, url: str, secret: str | None = None):
    monitor = make_monitor(model, run, webhook_url=url)
    monitor.set_webhook_secret(secret)
    monitor.save()
    return make_period(monitor, 3, drift_status="drift", psi=0.6)


# ------------------------------------------------------------------------- sending


def test_a_notice_with_a_secret_is_signed_and_verifies(model, run, receiver):
    period = drifting_period(model, run, receiver.url, SECRET)
    status = tasks.notify(period)
    assert status == "delivered: HTTP 204 (1 attempt, signed)"
    (sent,) = receiver.requests
    timestamp = sent.headers["X-Neomaril-Timestamp"]
    expected = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + sent.body, hashlib.sha256).hexdigest()
    assert sent.headers["X-Neomaril-Signature"] == f"sha256={expected}"
    assert json.loads(sent.body)["period"]["id"] == period.pk
    period.refresh_from_db()
    assert period.webhook_status == status and "signed" in period.log
    # The receiver's check docs/monitoring.md gives accepts it, and nothing else.
    is_from_neomaril = documented_check()
    assert is_from_neomaril(SECRET, sent.headers, sent.body)
    assert not is_from_neomaril(SECRET, sent.headers, sent.body.replace(b"drift", b"stable"))
    assert not is_from_neomaril("another-secret-of-length", sent.headers, sent.body)
    stale = {**sent.headers, "X-Neomaril-Timestamp": str(int(timestamp) - 600)}
    assert not is_from_neomaril(SECRET, stale, sent.body)


def documented_check():
    text = (Path(__file__).resolve().parents[2] / "docs" / "monitoring.md").read_text()
    (code,) = [
        block for block in re.findall(r"```python\n(.*?)```", text, re.S) if "def is_from_neomaril" in block
    ]
    namespace: dict = {}
    exec(code, namespace)  # noqa: S102  (our own documentation)
    return namespace["is_from_neomaril"]


def test_a_notice_without_a_secret_is_sent_unsigned(model, run, receiver):
    period = drifting_period(model, run, receiver.url)
    assert tasks.notify(period) == "delivered: HTTP 204 (1 attempt)"
    assert "X-Neomaril-Signature" not in receiver.requests[0].headers


def test_an_internal_receiver_is_refused_without_a_try(model, run, receiver, settings):
    period = drifting_period(model, run, receiver.url)
    settings.WEBHOOK_ALLOWED_NETWORKS = []  # as by default
    status = tasks.notify(period)
    assert status.startswith("refused: The webhook URL points at 127.0.0.1, which is not a public address")
    assert status.endswith("(1 attempt)")
    assert receiver.requests == []
    period.refresh_from_db()
    assert "refused" in period.webhook_status and "NEOMARIL_WEBHOOK_ALLOWED_NETWORKS" in period.log


def test_a_redirect_is_reported_not_followed(model, run, receiver):
    receiver.status, receiver.location = 301, "http://169.254.169.254/"
    period = drifting_period(model, run, receiver.url)
    assert tasks.notify(period) == "failed: HTTP 301 (redirects are not followed) (1 attempt)"
    assert len(receiver.requests) == 1


def test_a_5xx_answer_is_tried_three_times(model, run, receiver):
    receiver.status = 503
    period = drifting_period(model, run, receiver.url, SECRET)
    assert tasks.notify(period) == "failed: HTTP 503 (3 attempts, signed)"
    assert len(receiver.requests) == 3


def test_a_notice_retried_while_the_period_runs_again_leaves_the_new_run_alone(
    model, run, receiver, monkeypatch
):
    """The 503s are retried with sleeps; a re-run asked for meanwhile starts afresh, and the
    earlier run's outcome must not land in its log and status."""
    receiver.status = 503
    period = drifting_period(model, run, receiver.url)

    def rerun_during_the_wait(seconds):
        Period.objects.filter(pk=period.pk).update(
            requested_at=timezone.now(), status=Period.Status.QUEUED, log="", webhook_status=""
        )

    monkeypatch.setattr(tasks.time, "sleep", rerun_during_the_wait)
    assert tasks.notify(period) == "failed: HTTP 503 (3 attempts)"
    rerun = Period.objects.get(pk=period.pk)
    assert (rerun.webhook_status, rerun.log) == ("", "")
    # A re-run asked for before the notice was put together: none is sent for the old outcome.
    receiver.requests.clear()
    assert tasks.notify(period) == "skipped: the period was run again"
    assert receiver.requests == []


def test_a_secret_no_key_decrypts_sends_nothing(model, run, receiver, settings):
    period = drifting_period(model, run, receiver.url, SECRET)
    settings.NEOMARIL_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # its key was dropped
    status = tasks.notify(period)
    assert status.startswith("refused: the signing secret: Cannot decrypt")
    assert receiver.requests == []
    period.refresh_from_db()
    # Its column holds 300 characters (PostgreSQL refused the longer message); the log all of it.
    assert len(period.webhook_status) <= 300 and status.startswith(period.webhook_status.rstrip("…"))
    assert status in period.log


# ---------------------------------------------------------------------- API and page


def test_the_api_sets_a_secret_without_ever_returning_it(cast, model, run):
    make_monitor(model, run, webhook_url="https://hooks.example/a")
    client = api_client(cast.owner)
    unsigned = client.get(f"{API}/{model.hash}").json()
    assert unsigned["webhook_signed"] is False
    response = client.patch(f"{API}/{model.hash}", {"webhook_secret": SECRET}, format="json")
    assert response.status_code == 200, response.content
    assert response.json()["webhook_signed"] is True
    assert SECRET not in response.content.decode()
    monitor = Monitor.objects.get(model=model)
    assert monitor.webhook_secret() == SECRET and SECRET.encode() not in bytes(
        monitor.webhook_secret_ciphertext
    )
    kept = client.patch(f"{API}/{model.hash}", {"drift_threshold": 0.4}, format="json")
    assert kept.json()["webhook_signed"] is True
    removed = client.patch(f"{API}/{model.hash}", {"remove_webhook_secret": True}, format="json")
    assert removed.json()["webhook_signed"] is False
    assert Monitor.objects.get(model=model).webhook_secret_ciphertext is None


def test_the_api_refuses_internal_urls_and_short_secrets_and_changes_nothing(cast, model, run):
    make_monitor(model, run, webhook_url="https://hooks.example/a")
    client = api_client(cast.owner)
    response = client.patch(
        f"{API}/{model.hash}",
        {"webhook_url": "http://169.254.169.254/latest/meta-data/", "webhook_secret": "short"},
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert "169.254.169.254, which is not a public address" in errors["webhook_url"][0]
    assert "at least 16 characters" in errors["webhook_secret"][0]
    monitor = Monitor.objects.get(model=model)
    assert monitor.webhook_url == "https://hooks.example/a" and not monitor.webhook_signed


def test_the_api_refuses_a_url_no_notice_can_be_posted_to(cast, model, run):
    make_monitor(model, run, webhook_url="https://hooks.example/a")
    response = api_client(cast.owner).patch(
        f"{API}/{model.hash}", {"webhook_url": "ftp://hooks.example/drop"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["webhook_url"] == [
        "The webhook URL must start with https:// (or http://): notices are HTTP POST requests."
    ]
    assert Monitor.objects.get(model=model).webhook_url == "https://hooks.example/a"


def test_registration_takes_a_secret_and_refuses_an_internal_url(cast, model, run, monkeypatch):
    from tests.monitors.test_api import payload

    monkeypatch.setattr("monitors.services.async_task", lambda *args, **kwargs: None)
    client = api_client(cast.owner)
    refused = client.post(
        f"{API}/{model.hash}", payload(run, webhook_url="http://10.0.0.5/hook"), format="multipart"
    )
    assert refused.status_code == 400
    assert "10.0.0.5, which is not a public address" in refused.json()["errors"]["webhook_url"][0]
    assert not Monitor.objects.filter(model=model).exists()
    response = client.post(f"{API}/{model.hash}", payload(run, webhook_secret=SECRET), format="multipart")
    assert response.status_code == 202, response.content
    assert response.json()["webhook_signed"] is True
    again = client.post(f"{API}/{model.hash}", payload(run), format="multipart")  # no secret: kept
    assert again.json()["webhook_signed"] is True
    assert Monitor.objects.get(model=model).webhook_secret() == SECRET


def test_the_page_sets_and_removes_the_secret(cast, model, run):
    monitor = make_monitor(model, run, webhook_url="https://hooks.example/a")
    client = Client()
    assert client.login(username=cast.owner.username, password=PASSWORD)
    page = client.get(f"/models/{model.hash}/monitoring/").content.decode()
    assert "Notices are not signed" in page and "remove_webhook_secret" not in page
    settings_url = f"/models/{model.hash}/monitoring/settings/"
    data = {"webhook_url": "https://hooks.example/a", "warning_threshold": "0.1", "drift_threshold": "0.25"}
    assert (
        client.post(settings_url, {**data, "minimum_rows": "100", "webhook_secret": SECRET}).status_code
        == 302
    )
    monitor.refresh_from_db()
    assert monitor.webhook_secret() == SECRET
    page = client.get(f"/models/{model.hash}/monitoring/").content.decode()
    assert "Notices are signed" in page and SECRET not in page and "remove_webhook_secret" in page
    # The password box comes back empty: saving other settings keeps the secret.
    assert client.post(settings_url, {**data, "minimum_rows": "50", "webhook_secret": ""}).status_code == 302
    monitor.refresh_from_db()
    assert monitor.webhook_secret() == SECRET and monitor.minimum_rows == 50
    both = client.post(
        settings_url, {**data, "minimum_rows": "50", "webhook_secret": SECRET, "remove_webhook_secret": "on"}
    )
    assert both.status_code == 400 and "not both" in both.content.decode()
    client.post(settings_url, {**data, "minimum_rows": "50", "remove_webhook_secret": "on"})
    monitor.refresh_from_db()
    assert not monitor.webhook_signed


def test_key_rotation_re_encrypts_webhook_secrets(model, run, settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.NEOMARIL_ENCRYPTION_KEYS = [old]
    monitor = make_monitor(model, run, webhook_url="https://hooks.example/a")
    monitor.set_webhook_secret(SECRET)
    monitor.save()
    settings.NEOMARIL_ENCRYPTION_KEYS = [new, old]
    out = io.StringIO()
    call_command("rotate_encryption_keys", stdout=out)
    assert "1 monitors (webhook_secret_ciphertext)" in out.getvalue()
    settings.NEOMARIL_ENCRYPTION_KEYS = [new]
    monitor.refresh_from_db()
    assert monitor.webhook_secret() == SECRET
