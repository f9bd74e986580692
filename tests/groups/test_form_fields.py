"""A JSON body handed to a Django form: a list or an object where one value belongs is a
400 at that field (groups.api.errors.form_fields). A form field reads it as its Python
text, "['a']", and kept that as a name, an e-mail address or a signing secret."""

from __future__ import annotations

from django.contrib.auth import get_user_model

from monitors.models import Monitor
from tests.helpers.clients import api_client
from tests.helpers.monitors import deployed_model, make_monitor, reference_run
from training.models import Experiment


def test_users_create(cast):
    response = api_client(cast.admin).post(
        "/api/v1/users", {"username": "ana", "email": {"address": "a@example.com"}}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"email": ["email takes one value, not a JSON object."]}
    assert not get_user_model().objects.filter(username="ana").exists()


def test_monitoring_settings(cast):
    run = reference_run(cast.group)
    model = deployed_model(cast.group, run)
    make_monitor(model, run)
    secret = ["a-long-enough-signing-secret"]
    response = api_client(cast.owner).patch(
        f"/api/v1/monitoring/{model.hash}", {"webhook_secret": secret}, format="json"
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "webhook_secret": ["webhook_secret takes one value, not a JSON list."]
    }
    assert not Monitor.objects.get(model=model).webhook_signed


def test_experiments(cast):
    response = api_client(cast.owner).post(
        "/api/v1/training/experiments",
        {"experiment_name": ["a", "b"], "model_type": "Classification", "group": "datarisk"},
        format="json",
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "experiment_name": ["experiment_name takes one value, not a JSON list."]
    }
    assert not Experiment.objects.exists()
