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
    assert response.json() == {
        "detail": "CSRF check failed (CSRF token missing.): send the session's CSRF token in the X-CSRFToken header.",
        "code": "permission_denied",
    }
    assert runner[0] == []
    assert post_try(client, model.hash).status_code == 200


def test_a_script_with_a_group_token_is_told_to_use_the_run_url(cast, model, runner):
    """Django's CSRF check answers before the view: it gave scripts its HTML page."""
    response = Client(enforce_csrf_checks=True).post(
        f"/api/v1/run/{model.hash}/try",
        BODY,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {cast.group_token}",
    )
    assert response.status_code == 403
    assert response.json() == {
        "detail": "This URL takes a logged-in member's session (the portal's Try it). With a group "
        "token, call the run URL itself: POST /api/v1/run/<hash>.",
        "code": "permission_denied",
    }
    assert runner[0] == []


def test_a_caller_not_logged_in_is_told_to_log_in(model, runner):
    response = Client(enforce_csrf_checks=True).post(
        f"/api/v1/run/{model.hash}/try", BODY, content_type="application/json"
    )
    assert response.status_code == 403
    assert response.json()["detail"] == (
        "Log in to the portal first (/login/): this URL takes a member's session and its CSRF token."
    )


def test_a_failed_csrf_check_outside_the_api_is_still_the_page(cast):
    client = session(cast.admin, csrf=False)
    response = client.post("/groups/", {"name": "nocsrf"})
    assert response.status_code == 403
    assert "text/html" in response["Content-Type"]


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


@pytest.mark.parametrize("method", ["get", "trace", "delete"])
def test_another_method_is_405_before_the_login(model, method):
    # As on the run URL: not a login page for a method the URL never takes.
    response = getattr(Client(), method)(f"/api/v1/run/{model.hash}/try")
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


# ------------------------------------------------------------------ bodies the CSRF check reads first
# Django's CSRF check reads request.POST, which parses a multipart body before the view
# runs: the answers must still be the run URL's, in the API's JSON.

BOUNDARY = "nEoMaRiL-b0undary"


def _multipart(name: str, content: bytes) -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        f"Content-Type: text/csv\r\n\r\n".encode()
        + content
        + f"\r\n--{BOUNDARY}--\r\n".encode()
    )


def post_raw_try(client: Client, path: str, body: bytes, content_type: str):
    return client.post(
        path, body, content_type=content_type, HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value
    )


@pytest.fixture
def batch(cast):
    """A Deployed Async model (no worker: its executions stay Requested)."""
    payload = sync_payload(operation="Async", schema=None, input_type="csv", name="Batch")
    model_hash = api_client(cast.owner).post("/api/v1/models", payload, format="multipart").json()["hash"]
    MLModel.objects.filter(hash=model_hash).update(status=MLModel.Status.DEPLOYED, deployed_build=1)
    return MLModel.objects.get(hash=model_hash)


def _try_and_run(cast, model: MLModel, payload, content_type: str | None = None, path: str = ""):
    """The same upload through /try (a teammate's session) and through the run URL;
    `payload`: a raw body with its `content_type`, or a function giving the form's fields."""
    client = session(cast.teammate)
    url = f"/api/v1/run/{model.hash}{path}"
    if content_type is None:
        tried = client.post(f"{url}/try", payload(), HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
        run = token_client(cast.group_token).post(url, payload(), format="multipart")
    else:
        tried = post_raw_try(client, f"{url}/try", payload, content_type)
        run = token_client(cast.group_token).post(url, payload, content_type=content_type)
    return tried, run


def test_a_multipart_body_to_a_sync_model_is_a_400_saying_it_takes_json(cast, model, runner):
    client = session(cast.owner)
    response = client.post(
        f"/api/v1/run/{model.hash}/try",
        {"file": file("input.json", BODY)},
        HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value,
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "The request body is not valid JSON: it was sent as a multipart form "
        "(multipart/form-data); a Sync model takes its input as a JSON body (Content-Type: application/json).",
        "code": "invalid",
    }
    # The run URL refuses the same body with the same status and code (it is not JSON).
    run = token_client(cast.group_token).post(
        f"/api/v1/run/{model.hash}", {"file": file("input.json", BODY)}, format="multipart"
    )
    assert (run.status_code, run.json()["code"]) == (400, "invalid")
    assert runner[0] == []  # nothing reached the runner


def test_multipart_without_a_boundary_is_the_run_url_s_json_400(cast, batch, model, runner):
    body = _multipart("input.csv", b"a,b\n1,2\n")
    tried, run = _try_and_run(cast, batch, body, "multipart/form-data")
    assert tried.status_code == run.status_code == 400
    assert tried.json() == run.json()
    assert run.json() == {
        "detail": "The request body could not be read: Invalid boundary in multipart: None",
        "code": "parse_error",
    }
    sync = post_raw_try(session(cast.owner), f"/api/v1/run/{model.hash}/try", body, "multipart/form-data")
    assert sync.status_code == 400 and sync.json() == tried.json()
    assert not Execution.objects.exists() and runner[0] == []


def test_a_bad_body_elsewhere_keeps_the_page_s_400(cast):
    client = session(cast.owner)
    response = post_raw_try(client, "/models/upload/", b"x", "multipart/form-data")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")


def test_an_async_upload_has_the_execution_limit_not_the_model_upload_limit(cast, batch, settings):
    settings.MAX_UPLOAD_FILE_BYTES = settings.MAX_UPLOAD_TOTAL_BYTES = 100
    content = "a,b\n" + "1,2\n" * 1000  # 4 KB: over the model-upload limit, under the execution one
    for path in ("", "/versions/1"):
        tried, run = _try_and_run(cast, batch, lambda: {"file": file("input.csv", content)}, path=path)
        assert tried.status_code == run.status_code == 202, tried.content
    assert [e.input_size for e in Execution.objects.order_by("pk")] == [len(content)] * 4


def test_an_async_upload_over_the_execution_limit_is_the_run_url_s_413(cast, batch, settings):
    settings.MAX_EXECUTION_UPLOAD_BYTES = 1000
    tried, run = _try_and_run(cast, batch, lambda: {"file": file("input.csv", "x" * 5000)})
    assert tried.status_code == run.status_code == 413
    assert tried.json() == run.json()
    assert run.json() == {
        "detail": "The input file is larger than the limit of 1000 bytes.",
        "code": "too_large",
    }
    assert not Execution.objects.exists()
    assert not list(settings.UPLOAD_TMP_DIR.glob("*.upload*"))


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            lambda: {"file": file("input.csv", "a\n1\n"), "extra": file("b.csv", "a\n1\n")},
            "send only the field 'file' (remove 'extra')",
        ),
        (lambda: {"file": file("€" * 100 + ".csv", "a\n1\n")}, "304 bytes long in UTF-8"),
        (lambda: {"file": file("a." + "😀" * 70, "a\n1\n")}, "282 bytes long in UTF-8"),
    ],
    ids=["extra-file", "name-over-255-bytes", "long-extension"],
)
def test_bad_async_uploads_get_the_run_url_s_400(cast, batch, payload, message):
    tried, run = _try_and_run(cast, batch, payload)
    assert tried.status_code == run.status_code == 400
    assert tried.json() == run.json()
    assert message in tried.json()["detail"]
    assert not Execution.objects.exists()


def test_a_mixed_case_media_type_is_accepted_on_try(cast, batch):
    body = _multipart("input.csv", b"a,b\n1,2\n")
    tried, run = _try_and_run(cast, batch, body, f"Multipart/Form-Data; boundary={BOUNDARY}")
    assert tried.status_code == run.status_code == 202, tried.content


def test_try_calls_take_at_most_half_a_web_processs_threads_at_once(
    cast, model, runner, settings, monkeypatch
):
    """Each holds a page thread for the whole model call: twelve calls of a 10 s model had
    taken every thread of a node's worker, its API, pages and /healthz with them."""
    from portal import run_api

    settings.WEB_THREADS = 8
    taken_during_the_call = []
    predict = views.blocking_pool.predict

    def counting(model, body):
        taken_during_the_call.append(run_api.TRY_SLOTS.taken)
        return predict(model, body)

    monkeypatch.setattr(views.blocking_pool, "predict", counting)
    client = session(cast.owner)
    assert post_try(client, model.hash).json() == {"sum": 3}
    assert taken_during_the_call == [1] and run_api.TRY_SLOTS.taken == 0  # given back

    monkeypatch.setattr(run_api.TRY_SLOTS, "taken", 4)  # four calls in progress
    busy = post_try(client, model.hash)
    assert busy.status_code == 429 and busy["Retry-After"] == "5"
    assert busy.json() == {
        "detail": "This server is answering 4 Try it calls already; try again in a few seconds (calls to the "
        "run URL with the group token are not limited this way).",
        "code": "busy",
    }
    run = token_client(cast.group_token).post(
        f"/api/v1/run/{model.hash}", BODY, content_type="application/json"
    )
    assert run.status_code == 200 and len(taken_during_the_call) == 2
