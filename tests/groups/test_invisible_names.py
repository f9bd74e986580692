"""Names hold no invisible characters: Unicode's format characters (Cf) are refused as
control characters are (groups.forms.refuse_control_characters), on every name.

A model named only U+200B (zero-width space) was accepted: strip() keeps format
characters, and the check knew only control characters and direction marks, so the name
showed as nothing on every page, and "churn" with a zero-width joiner inside looked like
"churn" while being another name. Every Cf is refused, the joiners of emoji sequences
too: a name is for telling things apart.
"""

from __future__ import annotations

import pytest
from django.test import Client

from groups.forms import refuse_control_characters
from models_app.models import MLModel
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.training import custom_payload, finished_run, make_experiment
from tests.helpers.uploads import sync_payload
from training.models import Experiment, TrainingRun

INVISIBLE = [
    ("\u200b", "\\u200b"),  # zero-width space, alone: a name that shows as nothing
    ("ch\u200durn", "\\u200d"),  # zero-width joiner: looks like "churn"
    ("score\ufeff", "\\ufeff"),  # byte order mark
    ("in\u00advoice", "\\xad"),  # soft hyphen
    ("\u2060\u2060", "\\u2060"),  # word joiner
    ("churn\U000e0041", "\\U000e0041"),  # a tag character
    ("invoice\u202elmth.exe", "\\u202e"),  # a direction mark, refused before too
]
MESSAGE = "A name cannot hold control characters ({})."


def _message(escaped: str) -> list[str]:
    return [MESSAGE.format(escaped)]


@pytest.mark.parametrize(("name", "escaped"), INVISIBLE)
def test_a_model_name_refuses_format_characters(cast, name, escaped):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(name=name), format="multipart")
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["name"] == _message(escaped)
    assert not MLModel.objects.exists()


def test_every_name_of_the_api_refuses_a_zero_width_space(cast):
    client = api_client(cast.owner)
    experiment = client.post(
        "/api/v1/training/experiments",
        {"experiment_name": "\u200b", "model_type": "Classification", "group": cast.group.name},
        format="json",
    )
    assert experiment.status_code == 400
    assert experiment.json()["errors"]["experiment_name"] == _message("\\u200b")
    assert not Experiment.objects.exists()

    existing = make_experiment(cast.group, cast.owner)
    run = client.post(
        f"/api/v1/training/experiments/{existing.hash}/runs",
        custom_payload(run_name="\u200b"),
        format="multipart",
    )
    assert run.status_code == 400
    assert run.json()["errors"]["run_name"] == _message("\\u200b")
    assert not TrainingRun.objects.exists()

    finished_run(existing)
    promoted = client.post(
        f"/api/v1/training/experiments/{existing.hash}/runs/1/promote",
        {"name": "\u200b", "operation": "Sync"},
        format="multipart",
    )
    assert promoted.status_code == 400
    assert promoted.json()["errors"]["name"] == _message("\\u200b")
    assert not MLModel.objects.exists()

    token = client.post("/api/v1/auth/tokens", {"name": "\u200b"}, format="json")
    assert token.status_code == 400
    # The token a login issues is named by the login: the same rule.
    login = Client().post(
        "/api/v1/auth/login",
        {"username": cast.owner.username, "password": PASSWORD, "token_name": "lap\u200btop"},
        content_type="application/json",
    )
    assert login.status_code == 400 and login.json()["errors"]["token_name"] == _message("\\u200b")
    assert token.json()["errors"]["name"] == _message("\\u200b")


def test_the_token_page_refuses_a_zero_width_space(cast):
    client = Client()
    assert client.login(username=cast.owner.username, password=PASSWORD)
    before = cast.owner.api_tokens.count()
    response = client.post("/account/tokens/", {"name": "\u200b"})
    assert MESSAGE.format("\\u200b") in response.content.decode()
    assert cast.owner.api_tokens.count() == before


@pytest.mark.parametrize(
    "name",
    [
        "Crédito PF",
        "Modelo de previsão — v2",
        "模型",
        "ψ-model",
        "score 😀",
        "Ölçüm_1",
        "name with  two spaces",
    ],
)
def test_names_in_any_script_are_kept(name):
    refuse_control_characters(name)  # raises nothing
