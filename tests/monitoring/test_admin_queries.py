"""The admin's list of recorded calls stays cheap on a big table: its filters are fixed
choices, not a scan of the calls' status codes or a list of every model."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from monitoring.models import PredictionRecord
from tests.helpers.monitors import deployed_model

URL = "/admin/monitoring/predictionrecord/"


@pytest.fixture
def admin_browser(cast) -> Client:
    client = Client()
    client.force_login(cast.admin)
    return client


def _record(model, codes: list[int]) -> None:
    now = timezone.now()
    PredictionRecord.objects.bulk_create(
        PredictionRecord(
            model=model,
            at=now - timedelta(seconds=index),
            status_code=code,
            latency_ms=1.5,
            input='{"a": 1}',
            output='{"pred": 1}',
        )
        for index, code in enumerate(codes)
    )


def _captured(client: Client, url: str) -> list[str]:
    client.get(url)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200
    return [query["sql"] for query in captured.captured_queries]


def test_the_calls_list_neither_scans_status_codes_nor_lists_every_model(cast, admin_browser):
    called = deployed_model(cast.group, name="called")
    _record(called, [200, 201, 404, 500])
    few = _captured(admin_browser, URL)
    for number in range(20):
        deployed_model(cast.group, name=f"never called {number}")
    _record(called, [200, 422, 503] * 10)
    many = _captured(admin_browser, URL)
    assert len(many) == len(few)
    assert not [sql for sql in many if "DISTINCT" in sql.upper()], "a filter reads every call's status"
    page = admin_browser.get(URL).content.decode()
    assert "called (" in page and "never called" not in page


@pytest.mark.parametrize(
    ("status", "expected"),
    [("2xx", [200, 201]), ("4xx", [404, 422]), ("5xx", [500, 503]), (None, [200, 201, 404, 422, 500, 503])],
)
def test_the_calls_list_filters_by_class_of_status(cast, admin_browser, status, expected):
    _record(deployed_model(cast.group), [200, 201, 404, 422, 500, 503])
    response = admin_browser.get(URL, {"status": status} if status else {})
    assert response.status_code == 200
    shown = sorted(record.status_code for record in response.context["cl"].result_list)
    assert shown == expected
    assert all(f"?status={name}" in response.content.decode() for name in ("2xx", "4xx", "5xx"))


def test_the_calls_list_finds_a_models_calls_by_its_hash(cast, admin_browser):
    wanted = deployed_model(cast.group, name="wanted")
    _record(wanted, [200, 500])
    _record(deployed_model(cast.group, name="other"), [200])
    response = admin_browser.get(URL, {"q": wanted.hash})
    assert [record.model for record in response.context["cl"].result_list] == [wanted, wanted]
