"""Model inputs that used to answer 500, break a page later, or read wrongly."""

from __future__ import annotations

import json

import pytest
from django.test import Client

from models_app.models import MLModel
from models_app.schema_inference import infer_schema
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client, token_client
from tests.helpers.uploads import file, sync_payload

PT = {"HTTP_ACCEPT_LANGUAGE": "pt-BR,pt;q=0.9"}


def _login(user, **headers) -> Client:
    client = Client(**headers)
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def model(cast):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    assert response.status_code == 201
    return MLModel.objects.get(hash=response.json()["hash"])


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ('{"a": 1e999}', "The schema cannot be used: it contains a number too large for JSON"),
        (
            '{"a": "\\ud800"}',
            "The schema cannot be used: it contains \\ud800, a lone surrogate, which is not text.",
        ),
        (
            json.dumps({"a": json.loads("[" * 70 + "1" + "]" * 70)}),
            "The schema cannot be used: it nests arrays or objects more than 64 levels deep.",
        ),
    ],
)
def test_schemas_that_broke_the_insert_or_the_docs_are_refused(cast, schema, expected):
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(schema=file("schema.json", schema)), format="multipart"
    )
    assert response.status_code == 400
    (message,) = response.json()["errors"]["schema"]
    assert message.startswith(expected), message
    assert not MLModel.objects.exists()


def test_a_deep_value_is_described_down_to_a_depth_and_shown_whole():
    value = json.loads("[" * 500 + "1" + "]" * 500)  # a model's answer may nest as it likes
    schema = infer_schema(value)
    assert schema["example"] == value
    inner = schema
    for _ in range(33):
        inner = inner["items"]
    assert inner == {"description": "Nested too deeply to be described here: see the example."}


def test_a_build_number_in_other_digits_is_a_400(cast, model):
    response = api_client(cast.owner).get(f"/api/v1/models/{model.hash}/logs?build=²")
    assert response.status_code == 400
    assert response.json()["errors"]["build"] == ["build must be a build number, e.g. 1."]


def test_a_version_beyond_the_column_is_not_found(cast, model):
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DEPLOYED)
    path = f"/api/v1/run/{model.hash}/versions/{'9' * 20}"
    response = token_client(cast.group_token).post(path, {"a": 1}, format="json")
    assert response.status_code == 404, response.content
    tried = _login(cast.owner).post(
        path + "/try", {"a": 1}, content_type="application/json"
    )  # a member's session
    assert tried.status_code == 404, tried.content


def test_restarting_a_deleted_model_says_it_is_deleted(cast, model):
    client = api_client(cast.owner)
    assert client.delete(f"/api/v1/models/{model.hash}").status_code in (200, 202, 204)
    response = client.post(f"/api/v1/models/{model.hash}/restart")
    assert response.status_code == 409
    assert response.json()["detail"] == "A Deleted model cannot be restarted: upload it again."


def test_a_share_link_lifetime_beyond_any_date_is_refused_in_the_pages_language(cast, model):
    client = _login(cast.owner, **PT)
    response = client.post(f"/models/{model.hash}/share-links/", {"expires_in": "9" * 30}, follow=True)
    assert response.status_code == 200
    assert "Um link de compartilhamento vale entre" in response.content.decode()
    assert not model.share_links.exists()


@pytest.mark.parametrize(("given", "stored"), [("03.09", "3.9"), (" 3.11 ", "3.11")])
def test_a_python_version_is_stored_as_the_interpreter_names_it(cast, given, stored):
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(python_version=given), format="multipart"
    )
    assert response.status_code == 201, response.content
    assert MLModel.objects.get().python_version == stored


@pytest.mark.parametrize("given", ["٣.٩", "３.９", "3.0009"])
def test_a_python_version_in_other_digits_is_refused(cast, given):
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(python_version=given), format="multipart"
    )
    assert response.status_code == 400
    assert "python_version must look like 3.9" in response.json()["errors"]["python_version"][0]


def test_names_with_control_characters_are_refused(cast):
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(name="evil\x1b[31m\x07"), format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["name"] == ["A name cannot hold control characters (\\x1b)."]
    experiment = api_client(cast.owner).post(
        "/api/v1/training/experiments",
        {"experiment_name": "tab\there", "model_type": "Classification", "group": cast.group.name},
        format="json",
    )
    assert experiment.status_code == 400
    assert experiment.json()["errors"]["experiment_name"] == ["A name cannot hold control characters (\\t)."]


def test_a_file_field_sent_twice_is_refused_not_resolved_to_the_last(cast):
    """Django keeps the last of repeated parts: the other file was dropped without a word."""
    two_sources = [
        file("a.py", "def score(d, b):\n    return {}\n"),
        file("b.py", "def score(d, b):\n    return {}\n"),
    ]
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(source=two_sources), format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {"source": ["2 files were sent in this field, which takes one."]}
    assert not MLModel.objects.exists()


def test_extra_files_may_come_several_in_their_field(cast):
    extras = [file("utils.py", "X = 1\n"), file("helpers.py", "Y = 2\n")]
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(extra=extras), format="multipart")
    assert response.status_code == 201, response.json()
