"""What the log keeps of bad requests (portal/logs.py)."""

import logging

from django.test import Client
from rest_framework.test import APIClient

from tests.helpers.monitors import deployed_model


def test_refused_run_calls_are_not_logged_other_4xx_are(cast, caplog):
    model = deployed_model(cast.group)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Bearer nmg_not-a-token")
    with caplog.at_level(logging.INFO, logger="django.request"):
        assert (
            client.post(f"/api/v1/run/{model.hash}", "{}", content_type="application/json").status_code == 401
        )
        assert client.get("/api/v1/models").status_code == 401
    lines = [record.getMessage() for record in caplog.records if record.name == "django.request"]
    assert lines == ["Unauthorized: /api/v1/models"]


def test_a_disallowed_host_is_one_warning_line(db, caplog):
    with caplog.at_level(logging.INFO, logger="django.security"):
        assert Client().get("/login/", HTTP_HOST="evil.example").status_code == 400
    [record] = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert record.levelname == "WARNING" and record.exc_info is None
    assert "evil.example" in record.getMessage()


def test_an_api_call_to_a_disallowed_host_says_which_header_and_setting(db):
    response = Client().get("/api/v1/models", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "The request's Host header names a host this server does not answer to; call it by one of "
        "its names, or ask an admin to add this one to ALLOWED_HOSTS."
    )
