"""The try URL (portal/run_api.py, `POST /api/v1/run/<hash>/try`): a member's session
calls the model through the run URL's own path, with the run URL's answers.

No model host is needed: the runner's answer frame is faked at the one client both URLs
use (serving.aio's blocking pool), so what is compared is everything the platform does
around it — authorisation, the body check, the answer's bytes and the recording.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from executions.models import Execution
from models_app.models import MLModel
from models_app.runtime.protocol import OK_PREFIX
from models_app.serving import answers, views
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client, token_client
from tests.helpers.uploads import file, sync_payload

BODY = '{"a": 1, "b": 2}'


@pytest.fixture
def model(cast):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    model = MLModel.objects.get(hash=response.json()["hash"])
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DEPLOYED, deployed_build=1)
    return model


@pytest.fixture
def runner(monkeypatch):
    """The runner's answer (the sum of a and b, as the runner frames it) and the calls recorded."""
    seen: list[str] = []
    recorded: list = []

    def predict(model, body):
        seen.append(body)
        data = json.loads(body)
        return OK_PREFIX + json.dumps({"sum": data["a"] + data["b"]}).encode() + b"}"

    monkeypatch.setattr(views.blocking_pool, "predict", predict)
    monkeypatch.setattr(answers.recorder, "record", recorded.append)
    return seen, recorded


def session(user, *, csrf: bool = True) -> Client:
    client = Client(enforce_csrf_checks=True)
    assert client.login(username=user.username, password=PASSWORD)
    if csrf:
        client.get("/models/")  # sets the CSRF cookie, as the model page does
    return client


def post_try(client: Client, model_hash: str, body: str = BODY, **extra):
    token = client.cookies["csrftoken"].value if "csrftoken" in client.cookies else ""
    return client.post(
        f"/api/v1/run/{model_hash}/try",
        body,
        content_type="application/json",
        HTTP_X_CSRFTOKEN=token,
        **extra,
    )


def test_member_s_session_gets_the_run_url_s_answer_and_the_call_is_recorded(cast, model, runner):
    seen, recorded = runner
    tried = post_try(session(cast.teammate), model.hash)
    run = token_client(cast.group_token).post(
        f"/api/v1/run/{model.hash}", BODY, content_type="application/json"
    )
    assert tried.status_code == run.status_code == 200
    assert tried.content == run.content == b'{"sum": 3}'
    assert tried["Content-Type"] == run["Content-Type"] == "application/json"
    assert seen == [BODY, BODY]  # the body reached the runner exactly as sent
    assert [(call.model_id, call.status_code, call.input, call.output) for call in recorded] == [
        (model.pk, 200, BODY, '{"sum": 3}')
    ] * 2


def test_admin_outside_the_group_may_try(cast, model, runner):
    assert post_try(session(cast.admin), model.hash).json() == {"sum": 3}


def test_errors_are_the_run_url_s_own(cast, model, runner):
    client = session(cast.owner)
    for body in ("not json", "[" * 1000 + "]" * 1000):
        tried = post_try(client, model.hash, body)
        run = token_client(cast.group_token).post(
            f"/api/v1/run/{model.hash}", body, content_type="application/json"
        )
        assert (tried.status_code, tried.json()) == (run.status_code, run.json())
        assert tried.status_code == 400
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DISABLED)
    tried = post_try(client, model.hash)
    assert tried.status_code == 409 and tried.json()["code"] == "not_deployed"
    assert runner[0] == []  # nothing reached the runner


def test_body_over_the_limit_is_the_run_url_s_413(cast, model, runner, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    body = json.dumps({"a": 1, "b": 2, "pad": "x" * 200})
    tried = post_try(session(cast.owner), model.hash, body)
    run = token_client(cast.group_token).post(
        f"/api/v1/run/{model.hash}", body, content_type="application/json"
    )
    assert (tried.status_code, tried.json()) == (run.status_code, run.json())
    assert tried.status_code == 413


def test_outsider_gets_the_run_url_s_404(cast, model, runner):
    response = post_try(session(cast.outsider), model.hash)
    assert response.status_code == 404
    assert response.json() == {"detail": f"No model '{model.hash}'.", "code": "not_found"}
    assert post_try(session(cast.owner), "M" + "0" * 32).status_code == 404
    assert runner[0] == []


def test_deleted_model_is_404(cast, model, runner):
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DELETED)
    assert post_try(session(cast.owner), model.hash).status_code == 404


def test_anonymous_visitor_is_sent_to_log_in(model, runner):
    response = Client().post(f"/api/v1/run/{model.hash}/try", BODY, content_type="application/json")
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next=/api/v1/run/{model.hash}/try"
    assert runner[0] == []


def test_csrf_token_is_required(cast, model, runner):
    client = session(cast.owner)
    response = client.post(f"/api/v1/run/{model.hash}/try", BODY, content_type="application/json")
    assert response.status_code == 403
    assert runner[0] == []
    assert post_try(client, model.hash).status_code == 200


def test_group_token_does_not_open_the_try_url(cast, model, runner):
    """The try URL is for sessions; programs use the run URL."""
    response = APIClient().post(
        f"/api/v1/run/{model.hash}/try",
        BODY,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {cast.group_token}",
    )
    assert response.status_code == 302 and runner[0] == []


def test_get_is_405(cast, model):
    client = session(cast.owner)
    response = client.get(f"/api/v1/run/{model.hash}/try")
    assert response.status_code == 405 and response["Allow"] == "POST"


def test_async_upload_starts_an_execution_requested_by_the_member(cast):
    payload = sync_payload(operation="Async", schema=None, input_type="csv", name="Batch")
    model_hash = api_client(cast.owner).post("/api/v1/models", payload, format="multipart").json()["hash"]
    MLModel.objects.filter(hash=model_hash).update(status=MLModel.Status.DEPLOYED, deployed_build=1)
    client = session(cast.teammate)
    response = client.post(
        f"/api/v1/run/{model_hash}/try",
        {"file": file("input.csv", "a,b\n1,2\n")},
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )
    assert response.status_code == 202, response.content
    assert response.json()["status"] == "Requested"
    execution = Execution.objects.get(model__hash=model_hash, number=response.json()["execution_id"])
    assert execution.requested_by == cast.teammate
    assert execution.input_file == "input.csv"
