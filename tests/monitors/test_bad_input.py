"""Monitoring inputs that used to answer 500, or were taken wrongly: each is a clear 400
now, and nothing is stored."""

from __future__ import annotations

import html
import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from monitors.models import Monitor, Period
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.monitors import configuration, form_data, make_monitor

API = "/api/v1/monitoring"
DEEP = "[" * 5000 + "]" * 5000


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _register(client: Client, model, config, **fields):
    data, files = form_data(config, **fields)
    return client.post(f"/models/{model.hash}/monitoring/register/", {**data, **files})


# ------------------------------------------------------------------------ settings


def test_a_word_that_is_not_a_boolean_does_not_remove_the_secret(cast, model, run):
    monitor = make_monitor(model, run, webhook_url="https://hooks.example/a")
    monitor.set_webhook_secret("a-long-enough-signing-secret")
    monitor.save()
    response = api_client(cast.owner).patch(
        f"{API}/{model.hash}", {"remove_webhook_secret": "nope"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["remove_webhook_secret"] == ["Send true or false, not 'nope'."]
    assert Monitor.objects.get(model=model).webhook_signed


SIGNING_SECRET = "0123456789abcdef0123"


def _monitor(model, run, *, signed: bool) -> Monitor:
    monitor = make_monitor(model, run, webhook_url="https://hooks.example/a")
    if signed:
        monitor.set_webhook_secret(SIGNING_SECRET)
        monitor.save()
    return monitor


@pytest.mark.parametrize("signed", [True, False], ids=["signed", "unsigned"])
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"remove_webhook_secret": "maybe"}, "Send true or false, not 'maybe'."),
        ({"remove_webhook_secret": 2, "minimum_rows": 5}, "Send true or false, not 2."),
        (
            {"webhook_secret": "fedcba9876543210fedc", "remove_webhook_secret": True},
            "Give a new signing secret or stop signing, not both.",
        ),
    ],
)
def test_stopping_to_sign_is_checked_whether_or_not_a_secret_is_set(cast, model, run, signed, body, message):
    """It used to be read only while a secret was set: without one, "maybe" was a 200, and
    a new secret sent with `true` turned signing on."""
    _monitor(model, run, signed=signed)
    response = api_client(cast.owner).patch(f"{API}/{model.hash}", body, format="json")
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["remove_webhook_secret"] == [message]
    monitor = Monitor.objects.get(model=model)
    assert monitor.webhook_signed is signed and monitor.minimum_rows == 100
    assert monitor.webhook_secret() == (SIGNING_SECRET if signed else None)


def test_stopping_to_sign_without_a_secret_changes_nothing_else(cast, model, run):
    _monitor(model, run, signed=False)
    response = api_client(cast.owner).patch(
        f"{API}/{model.hash}", {"remove_webhook_secret": True, "minimum_rows": 5}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["webhook_signed"] is False and response.json()["minimum_rows"] == 5


def test_the_page_shows_an_error_on_stopping_to_sign_even_without_a_secret(cast, model, run):
    """The page offers the box only while notices are signed; a form posted from an older
    page (the secret removed since) still shows why it was refused."""
    _monitor(model, run, signed=False)
    client = _login(cast.owner)
    page = client.get(f"/models/{model.hash}/monitoring/").content.decode()
    assert "remove_webhook_secret" not in page
    data = {"webhook_url": "https://hooks.example/a", "warning_threshold": "0.1", "drift_threshold": "0.25"}
    refused = client.post(
        f"/models/{model.hash}/monitoring/settings/",
        {**data, "minimum_rows": "50", "webhook_secret": SIGNING_SECRET, "remove_webhook_secret": "true"},
    )
    assert refused.status_code == 400
    assert "not both" in refused.content.decode() and "remove_webhook_secret" in refused.content.decode()
    assert not Monitor.objects.get(model=model).webhook_signed


def test_a_misspelt_setting_is_refused_not_ignored(cast, model, run):
    make_monitor(model, run)
    response = api_client(cast.owner).patch(f"{API}/{model.hash}", {"drift_treshold": 0.9}, format="json")
    assert response.status_code == 400
    (message,) = response.json()["errors"]["drift_treshold"]
    assert (
        message.startswith("Not a monitoring setting; one of webhook_url, ") and "drift_threshold" in message
    )
    assert Monitor.objects.get(model=model).drift_threshold == 0.25


@pytest.mark.parametrize("path", ["", "/periods"])
def test_bodies_nested_too_deeply_are_a_400(cast, model, run, path):
    make_monitor(model, run)
    client = api_client(cast.owner)
    method = client.patch if path == "" else client.post
    response = method(f"{API}/{model.hash}{path}", DEEP, content_type="application/json")
    assert response.status_code == 400
    assert "nested too deeply" in response.json()["detail"]


# -------------------------------------------------------------------- registration


@pytest.mark.parametrize(
    ("config_text", "expected"),
    [
        (DEEP, "The configuration is nested too deeply to be read."),
        (
            json.dumps(configuration(InputCols=["\ud800"])),
            "The configuration cannot be used: it contains \\ud800, a lone surrogate, which is not text.",
        ),
        (
            json.dumps(
                configuration(TrainData={"TrainDateRef": "2026-01-15", "NeomarilTrainingExecution": "²"})
            ),
            'TrainData.NeomarilTrainingExecution must be a run number or "<experiment hash>/<run number>"',
        ),
    ],
)
def test_configurations_that_broke_the_page_are_refused(cast, model, queued, config_text, expected):
    client = _login(cast.owner)
    response = _register(client, model, config_text)
    assert response.status_code == 400
    assert expected in html.unescape(response.content.decode())
    assert not Monitor.objects.filter(model=model).exists()
    assert client.get(f"/models/{model.hash}/monitoring/").status_code == 200


def test_a_minimum_beyond_the_column_is_refused(cast, model, queued):
    response = _register(_login(cast.owner), model, configuration(), minimum_rows="9" * 25)
    assert response.status_code == 400
    assert "less than or equal to 2147483647" in response.content.decode()
    assert not Monitor.objects.filter(model=model).exists()


def test_registering_again_checks_the_thresholds_it_keeps(cast, model, run, queued):
    make_monitor(model, run, warning_threshold=0.3, drift_threshold=0.5)
    response = _register(_login(cast.owner), model, configuration(), drift_threshold="0.2")
    assert response.status_code == 400
    assert "must be above the warning threshold (0.3)" in response.content.decode()
    monitor = Monitor.objects.get(model=model)
    assert (monitor.warning_threshold, monitor.drift_threshold) == (0.3, 0.5)


# ------------------------------------------------------------------------- periods


@pytest.mark.parametrize(
    ("date", "expected"),
    [
        ("9999-12-31", "falls outside the dates that can be stored"),
        ("2999-01-01", "has not begun yet"),
        ("0001-01-01T00:00:00+05:00", "falls outside the dates that can be stored"),
    ],
)
def test_periods_not_begun_or_out_of_range_are_refused(cast, model, run, queued, date, expected):
    make_monitor(model, run, period="Year")
    response = api_client(cast.owner).post(f"{API}/{model.hash}/periods", {"date": date}, format="json")
    assert response.status_code == 400
    assert expected in response.json()["errors"]["date"][0]
    assert not Period.objects.exists()
    if date[:4] != "0001":  # the page's date field has no time zone to push it out of range
        page = _login(cast.owner).post(f"/models/{model.hash}/monitoring/periods/", {"date": date})
        assert page.status_code == 400 and expected in page.content.decode()
        assert not Period.objects.exists()


def test_a_merge_over_every_storable_day_is_a_400(cast, model, run):
    make_monitor(model, run)
    response = api_client(cast.owner).get(f"{API}/{model.hash}/merged?start=0001-01-01&end=9999-12-31")
    assert response.status_code == 400


def test_a_period_request_with_another_key_than_date_is_refused(cast, model, run, queued):
    make_monitor(model, run)
    response = api_client(cast.owner).post(
        f"{API}/{model.hash}/periods", {"start": "2026-01-01"}, format="json"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"start": ["Not a field of this request; it takes date."]}
    assert not Period.objects.exists()


def test_a_period_that_ended_before_the_model_was_uploaded_is_refused(cast, model, run, queued):
    make_monitor(model, run, period="Day")
    uploaded = timezone.localtime(model.created_at).date()
    client = api_client(cast.owner)
    for day in ("0001-01-01", (uploaded - timedelta(days=1)).isoformat()):
        response = client.post(f"{API}/{model.hash}/periods", {"date": day}, format="json")
        assert response.status_code == 400
        assert response.json()["errors"]["date"] == [
            f"The Day period of {day} ended before the model was uploaded on {uploaded}: "
            f"it has no calls to compare. Ask for a date from {uploaded} on."
        ]
    assert not Period.objects.exists()
    # The day of the upload has calls from then on: it runs.
    response = client.post(f"{API}/{model.hash}/periods", {"date": uploaded.isoformat()}, format="json")
    assert response.status_code == 202
    assert Period.objects.count() == 1
