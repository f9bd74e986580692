"""Submitting inputs and reading executions through the API: who may do what, and what comes back."""

from __future__ import annotations

import os
import shutil
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.exceptions import NotFound

from executions.models import Execution
from models_app import services as model_services
from models_app.models import MLModel
from tests.helpers.clients import api_client, token_client
from tests.helpers.executions import CSV, submit
from tests.helpers.uploads import file


@pytest.fixture
def model(deploy):
    return deploy()


def _url(model, path=""):
    return f"/api/v1/run/{model.hash}{path}"


def _finish(execution: Execution, *, output="output.csv", content="a,b,pred\n1,2,1\n", ago=timedelta(0)):
    """Make `execution` Succeeded with a result file, as the task would."""
    (execution.folder / output).write_text(content)
    now = timezone.now() - ago
    Execution.objects.filter(pk=execution.pk).update(
        status=Execution.Status.SUCCEEDED,
        started_at=now - timedelta(seconds=2),
        finished_at=now,
        output_file=output,
        output_size=len(content),
    )
    execution.refresh_from_db()
    return execution


# ------------------------------------------------------------------------ submit


def test_submit_answers_202_with_a_counting_id_and_the_status_url(caller, model):
    first = submit(caller, model)
    assert first.status_code == 202, first.json()
    body = first.json()
    url = f"http://testserver/api/v1/run/{model.hash}/executions/1"
    assert body == {
        "execution_id": 1,
        "status": "Requested",
        "url": url,
        "model": model.hash,
        "version": 1,
        "message": "Execution 1 started. Use the id to check its status.",
    }
    assert first["Location"] == url
    second = submit(caller, model, name="second.csv", content="x\n1\n")
    assert second.json()["execution_id"] == 2

    execution = Execution.objects.get(model=model, number=1)
    assert execution.input_file == "input.csv" and execution.input_size == len(CSV)
    assert execution.requested_by is None  # submitted with the group token
    assert execution.folder == settings.EXECUTIONS_DIR / model.hash / "1"
    assert (execution.folder / "input.csv").read_text() == CSV
    assert oct((execution.folder / "input.csv").stat().st_mode & 0o777) == "0o600"
    # the streamed temporary file was moved, not copied
    assert not list(settings.UPLOAD_TMP_DIR.glob("*.upload*"))


def test_numbers_count_per_model(caller, deploy):
    first, second = deploy(), deploy("explode")
    assert submit(caller, first).json()["execution_id"] == 1
    assert submit(caller, second).json()["execution_id"] == 1
    assert submit(caller, first).json()["execution_id"] == 2


def test_a_field_with_another_name_is_accepted_when_it_is_the_only_file(caller, model):
    response = submit(caller, model, field="input")
    assert response.status_code == 202
    assert Execution.objects.get(model=model).input_file == "input.csv"


def test_wrong_group_token_is_403_and_nothing_is_stored(cast, model):
    response = submit(token_client(cast.other_token), model)
    assert response.status_code == 403
    assert (
        response.json()["detail"]
        == "This group token is not valid for this model: use the token of the group that owns it."
    )
    assert not Execution.objects.exists()
    assert not (settings.EXECUTIONS_DIR / model.hash).exists()


def test_missing_or_unknown_token_is_401(cast, model):
    response = submit(api_client(), model)
    assert response.status_code == 401 and "group token" in response.json()["detail"]
    unknown = submit(token_client("nmg_not-a-real-token"), model)
    assert unknown.status_code == 401 and "Unknown group token" in unknown.json()["detail"]
    # a member's own API token is a login, not the group token the run URL asks for
    assert submit(api_client(cast.owner), model).status_code == 401
    assert not Execution.objects.exists()


def test_unknown_or_deleted_model_is_404(caller, model, cast):
    assert submit(caller, MLModel(hash="M" + "0" * 32)).status_code == 404
    model_services.delete(model, cast.owner)
    response = submit(caller, model)
    assert response.status_code == 404 and response.json()["code"] == "not_found"


def test_model_not_deployed_is_409(caller, model):
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.BUILDING)
    response = submit(caller, model)
    assert response.status_code == 409 and "is Building" in response.json()["detail"]
    assert not Execution.objects.exists()


@pytest.mark.parametrize(
    "payload,message",
    [
        ({}, "No input file: send it in a multipart field named 'file'"),
        ({"file": file(".hidden.csv", CSV)}, "starts with a dot"),
        ({"file": file("empty.csv", "")}, "'empty.csv' is empty"),
        ({"a": file("a.csv", CSV), "b": file("b.csv", CSV)}, "2 files were sent"),
        ({"file": "not a file"}, "No input file"),
    ],
)
def test_bad_upload_is_400_and_nothing_is_stored(caller, model, payload, message):
    response = caller.post(_url(model), payload, format="multipart")
    assert response.status_code == 400, response.json()
    assert message in response.json()["detail"]
    assert response.json()["code"] == "invalid"
    assert not Execution.objects.exists()


def test_body_that_is_not_multipart_is_415(caller, model):
    response = caller.post(_url(model), data=CSV, content_type="text/csv")
    assert response.status_code == 415
    assert "multipart/form-data in a field named 'file'" in response.json()["detail"]


def test_input_over_the_limit_is_413_and_nothing_is_left_behind(caller, model, settings):
    settings.MAX_EXECUTION_UPLOAD_BYTES = 1000
    response = submit(caller, model, content="x" * 5000)
    assert response.status_code == 413
    assert response.json() == {
        "detail": "The input file is larger than the limit of 1000 bytes.",
        "code": "too_large",
    }
    assert not Execution.objects.exists()
    assert not list(settings.UPLOAD_TMP_DIR.glob("*.upload*"))


def test_the_execution_limit_replaces_the_model_upload_limit(caller, model, settings):
    # Model uploads stay limited by MAX_UPLOAD_FILE_BYTES; the run URL has its own limit.
    settings.MAX_UPLOAD_FILE_BYTES = 100
    settings.MAX_UPLOAD_TOTAL_BYTES = 100
    response = submit(caller, model, content="x" * 5000)
    assert response.status_code == 202, response.json()
    assert Execution.objects.get().input_size == 5000


def test_get_on_the_run_url_is_405(caller, model):
    assert caller.get(_url(model)).status_code == 405


# --------------------------------------------------------------- read endpoints

READ_PATHS = ["/executions", "/executions/1", "/executions/1/log", "/executions/1/input"]


@pytest.fixture
def submitted(caller, model):
    assert submit(caller, model).status_code == 202
    return Execution.objects.get(model=model, number=1)


@pytest.mark.parametrize("path", READ_PATHS)
def test_group_token_teammate_and_admin_can_read(cast, model, submitted, path):
    for client in (token_client(cast.group_token), api_client(cast.teammate), api_client(cast.admin)):
        response = client.get(_url(model, path))
        assert response.status_code == 200, (path, response)


@pytest.mark.parametrize("path", [*READ_PATHS, "/executions/1/result"])
def test_outsider_gets_404_and_other_group_token_403(cast, model, submitted, path):
    outsider = api_client(cast.outsider).get(_url(model, path))
    assert outsider.status_code == 404 and outsider.json()["detail"] == f"No model '{model.hash}'."
    other = token_client(cast.other_token).get(_url(model, path))
    assert (
        other.status_code == 403
        and other.json()["detail"]
        == "This group token is not valid for this model: use the token of the group that owns it."
    )
    assert api_client().get(_url(model, path)).status_code == 401


@pytest.mark.parametrize("path", ["/executions/2", "/executions/0", "/executions/99999999999999999999/log"])
def test_unknown_execution_is_404(caller, model, submitted, path):
    response = caller.get(_url(model, path))
    assert response.status_code == 404
    assert "has no execution" in response.json()["detail"]


def test_an_execution_number_of_another_model_is_404(caller, deploy, submitted):
    other = deploy("explode")
    response = caller.get(_url(other, "/executions/1"))
    assert (
        response.status_code == 404
        and response.json()["detail"] == f"Model '{other.hash}' has no execution 1."
    )


@pytest.mark.parametrize(
    "method,path",
    [
        ("post", "/executions"),
        ("delete", "/executions/1"),
        ("put", "/executions/1/log"),
        ("post", "/executions/1/result"),
    ],
)
def test_wrong_method_is_405(caller, model, submitted, method, path):
    assert getattr(caller, method)(_url(model, path)).status_code == 405


def test_describe_reports_state_times_and_files(caller, model, submitted):
    body = caller.get(_url(model, "/executions/1")).json()
    base = f"http://testserver/api/v1/run/{model.hash}/executions/1"
    assert body["execution_id"] == 1 and body["model"] == model.hash
    assert body["status"] == "Requested" and body["started_at"] is None and body["duration"] is None
    assert body["input_file"] == "input.csv" and body["input_size"] == len(CSV)
    assert body["output_file"] == "" and body["output_size"] is None and body["error_message"] == ""
    assert body["url"] == base and body["log_url"] == base + "/log" and body["input_url"] == base + "/input"
    assert body["result_url"] is None and body["files_available"] is True

    _finish(submitted)
    done = caller.get(_url(model, "/executions/1")).json()
    assert done["status"] == "Succeeded" and done["duration"] == 2.0
    assert done["output_file"] == "output.csv" and done["output_size"] == len("a,b,pred\n1,2,1\n")
    assert done["result_url"] == base + "/result"


def test_list_paginates_newest_first_and_filters_by_status(caller, model):
    for _ in range(3):
        submit(caller, model)
    _finish(Execution.objects.get(model=model, number=2))
    listing = caller.get(_url(model, "/executions")).json()
    assert listing["count"] == 3 and [e["execution_id"] for e in listing["results"]] == [3, 2, 1]
    page = caller.get(_url(model, "/executions?page_size=2&page=2")).json()
    assert [e["execution_id"] for e in page["results"]] == [1] and page["previous"]
    succeeded = caller.get(_url(model, "/executions?status=Succeeded")).json()
    assert [e["execution_id"] for e in succeeded["results"]] == [2]
    bad = caller.get(_url(model, "/executions?status=Done"))
    assert bad.status_code == 400 and "Unknown status 'Done'" in bad.json()["detail"]


def test_log_endpoint(caller, model, submitted):
    Execution.objects.filter(pk=submitted.pk).update(log="2026-01-01 00:00:00 [model] hello\n")
    assert caller.get(_url(model, "/executions/1/log")).json() == {
        "execution_id": 1,
        "status": "Requested",
        "log": "2026-01-01 00:00:00 [model] hello\n",
    }


def test_result_of_an_unfinished_execution_is_409_with_its_status(caller, model, submitted):
    for state in ("Requested", "Running"):
        Execution.objects.filter(pk=submitted.pk).update(status=state)
        response = caller.get(_url(model, "/executions/1/result"))
        assert response.status_code == 409
        assert response.json() == {
            "detail": f"Execution 1 is {state}; its result can be downloaded once it has Succeeded.",
            "code": "not_finished",
            "status": state,
        }
    Execution.objects.filter(pk=submitted.pk).update(
        status="Failed", error_message="The entrypoint raised KeyError: 'x'"
    )
    failed = caller.get(_url(model, "/executions/1/result"))
    assert failed.status_code == 409 and failed.json()["status"] == "Failed"
    assert (
        failed.json()["detail"]
        == "Execution 1 Failed, so it has no result: The entrypoint raised KeyError: 'x'"
    )


def test_result_and_input_stream_as_attachments(caller, model, submitted):
    _finish(submitted, content="radius,pred\n1,0\n")
    result = caller.get(_url(model, "/executions/1/result"))
    assert result.status_code == 200 and result.streaming
    assert b"".join(result.streaming_content) == b"radius,pred\n1,0\n"
    assert result["Content-Type"] == "text/csv"
    assert result["Content-Disposition"] == 'attachment; filename="output.csv"'
    assert result["Content-Length"] == str(len("radius,pred\n1,0\n"))
    given = caller.get(_url(model, "/executions/1/input"))
    assert b"".join(given.streaming_content) == CSV.encode()
    assert given["Content-Disposition"] == 'attachment; filename="input.csv"'


def test_result_in_a_subfolder_downloads_under_its_own_name(caller, model, submitted):
    (submitted.folder / "out").mkdir()
    _finish(submitted, output="out/scores.parquet", content="PAR1")
    result = caller.get(_url(model, "/executions/1/result"))
    assert result["Content-Disposition"] == 'attachment; filename="scores.parquet"'
    assert result["Content-Type"] == "application/vnd.apache.parquet"


def test_files_removed_by_retention_are_404_saying_so(caller, model, submitted):
    _finish(submitted)
    Execution.objects.filter(pk=submitted.pk).update(files_removed_at=timezone.now())
    for path in ("/executions/1/result", "/executions/1/input"):
        response = caller.get(_url(model, path))
        assert response.status_code == 404 and response.json()["code"] == "files_removed"
        assert "retention policy" in response.json()["detail"]
    body = caller.get(_url(model, "/executions/1")).json()
    assert body["files_available"] is False and body["result_url"] is None and body["input_url"] is None


def test_files_being_removed_by_retention_are_404_saying_so_before_their_row_is_marked(
    caller, model, submitted, settings
):
    # The housekeeping removes a batch's folders, then marks its rows: a download in
    # between (on another node, say) is told it was retention, not a hand deletion.
    _finish(submitted)
    Execution.objects.filter(pk=submitted.pk).update(
        finished_at=timezone.now() - timedelta(days=settings.EXECUTION_RETENTION_DAYS, minutes=1)
    )
    shutil.rmtree(submitted.folder)
    response = caller.get(_url(model, "/executions/1/result"))
    assert (response.status_code, response.json()) == (
        404,
        {
            "detail": "The files of execution 1 were removed by the retention policy (kept "
            f"{settings.EXECUTION_RETENTION_DAYS} days after an execution ends), so its result can't be "
            "downloaded any more.",
            "code": "files_removed",
        },
    )


def test_files_deleted_by_hand_are_404_saying_they_are_no_longer_on_the_server(caller, model, submitted):
    """An operator cleaning the disk removed the folder: say so, not "missing" or a 500."""
    _finish(submitted)
    shutil.rmtree(submitted.folder)
    for path, what in (("/executions/1/result", "result"), ("/executions/1/input", "input")):
        response = caller.get(_url(model, path))
        assert response.status_code == 404
        assert response.json() == {
            "detail": f"The {what} of execution 1 is no longer on the server: its file was deleted from "
            "the execution's folder (not by the retention policy), so it can't be downloaded any more.",
            "code": "files_removed",
        }
    body = caller.get(_url(model, "/executions/1")).json()
    assert body["files_available"] is False and body["files_removed_at"] is None
    assert body["input_url"] is None and body["result_url"] is None
    listed = caller.get(_url(model, "/executions")).json()["results"][0]
    assert listed["files_available"] is False and listed["input_url"] is None


def test_a_result_deleted_by_hand_leaves_the_input_downloadable(caller, model, submitted):
    _finish(submitted)
    (submitted.folder / "output.csv").unlink()
    body = caller.get(_url(model, "/executions/1")).json()
    assert body["files_available"] is False and body["result_url"] is None
    assert body["input_url"] == f"http://testserver/api/v1/run/{model.hash}/executions/1/input"
    assert caller.get(_url(model, "/executions/1/input")).status_code == 200
    gone = caller.get(_url(model, "/executions/1/result"))
    assert gone.status_code == 404 and gone.json()["code"] == "files_removed"
    # A folder in the file's place is no file to stream either.
    (submitted.folder / "output.csv").mkdir()
    assert caller.get(_url(model, "/executions/1/result")).json()["code"] == "files_removed"


def test_a_file_deleted_between_the_listing_and_the_download_is_the_same_404(caller, model, submitted):
    _finish(submitted)
    assert caller.get(_url(model, "/executions/1")).json()["result_url"]
    (submitted.folder / "output.csv").unlink()  # after the page offered the link
    assert caller.get(_url(model, "/executions/1/result")).json()["code"] == "files_removed"


def test_listing_checks_each_execution_with_one_stat_per_file(caller, model, monkeypatch):
    """The cost of an honest files_available: a stat of the input (and the result once
    Succeeded) per row, nothing that walks folders or resolves paths."""
    for _ in range(3):
        submit(caller, model)
    _finish(Execution.objects.get(model=model, number=2))
    stats = []
    real_stat = os.stat

    def counting_stat(path, *args, **kwargs):
        if str(path).startswith(str(settings.EXECUTIONS_DIR)):
            stats.append(str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", counting_stat)
    listing = caller.get(_url(model, "/executions")).json()["results"]
    assert [e["files_available"] for e in listing] == [True, True, True]
    assert len(stats) == 4  # three inputs, one result


def test_executions_of_a_deleted_model_are_gone(caller, cast, model, submitted):
    model_services.delete(model, cast.owner)
    assert caller.get(_url(model, "/executions")).status_code == 404
    assert api_client(cast.owner).get(_url(model, "/executions/1")).status_code == 404


def test_schema_documents_the_execution_endpoints(db):
    from django.test import Client
    from openapi_spec_validator import validate

    document = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    validate(document)
    prefix = "/api/v1/run/{model_hash}/executions"
    for suffix in (
        "",
        "/{execution_id}",
        "/{execution_id}/log",
        "/{execution_id}/result",
        "/{execution_id}/input",
    ):
        assert prefix + suffix in document["paths"]
    assert document["components"]["schemas"]["ExecutionStatusEnum"]["enum"] == [
        "Requested",
        "Running",
        "Succeeded",
        "Failed",
    ]


def test_admin_edits_the_models_timeout_and_lists_executions(cast, model, submitted):
    from django.test import Client

    client = Client()
    client.force_login(cast.admin)
    page = client.get(f"/admin/models_app/mlmodel/{model.pk}/change/")
    assert page.status_code == 200 and 'name="execution_timeout"' in page.content.decode()
    listing = client.get("/admin/executions/execution/")
    assert listing.status_code == 200 and "input.csv" in listing.content.decode()
    assert client.get("/admin/executions/execution/add/").status_code == 403


def test_a_model_deleted_while_its_input_streamed_in_starts_nothing(model, settings):
    # The view checked the model before the body; the delete came while the body streamed.
    from django.core.files.uploadedfile import SimpleUploadedFile

    from executions import services as execution_services

    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DELETED)
    with pytest.raises(NotFound, match=f"No model '{model.hash}'"):
        execution_services.create_execution(model, SimpleUploadedFile("in.csv", b"a,b\n1,2\n"), name="in.csv")
    assert not model.executions.exists()
    assert not (settings.EXECUTIONS_DIR / model.hash).exists() or not any(
        (settings.EXECUTIONS_DIR / model.hash).iterdir()
    )
