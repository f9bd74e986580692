"""Model pages (server side): list, upload form, model page, settings, actions, executions.

Every page gets the same checklist: works, teammate can, outsider 404, bad id 404, wrong
method 405, bad input 400 with the errors next to the fields.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from django.test import Client

from executions.models import Execution
from models_app.models import MLModel, ModelEvent
from tests.helpers.calls import record_calls
from tests.helpers.cast import PASSWORD
from tests.helpers.uploads import file, sync_payload

ROOT = Path(__file__).resolve().parents[2]
XHR = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _upload(client: Client, **overrides) -> MLModel:
    response = client.post("/models/new/", sync_payload(**overrides))
    assert response.status_code == 302, response.content.decode()[:2000]
    return MLModel.objects.get(hash=response["Location"].split("/")[2])


@pytest.fixture
def sync_model(cast) -> MLModel:
    model = _upload(_login(cast.owner), env=file(".env", "API_KEY=form-secret\n"))
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DEPLOYED)
    model.refresh_from_db()
    return model


@pytest.fixture
def async_model(cast) -> MLModel:
    model = _upload(
        _login(cast.owner), name="Batch", operation="Async", schema=None, sample=file("in.csv", "a\n1\n")
    )
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DEPLOYED)
    model.refresh_from_db()
    return model


def _execution(model: MLModel, number: int, status: str, **fields) -> Execution:
    """An execution row with its files on disk, as a real one has (the pages check them)."""
    execution = Execution.objects.create(
        model=model, number=number, input_file="in.csv", input_size=8, status=status, **fields
    )
    execution.folder.mkdir(parents=True)
    execution.input_path.write_text("a,b\n1,2\n")
    if execution.output_path is not None:
        execution.output_path.parent.mkdir(parents=True, exist_ok=True)
        execution.output_path.write_text("pred\n1\n")
    return execution


# --- upload ---------------------------------------------------------------------------


def test_form_offers_host_python_versions_and_user_groups(cast):
    page = _login(cast.owner).get("/models/new/")
    html = page.content.decode()
    assert page.status_code == 200
    for version in ("3.8", "3.9", "3.13"):
        assert f'<option value="{version}"' in html
    assert '<option value="3.7"' not in html
    assert '<option value="datarisk"' in html and "other-team" not in html
    assert 'id="upload-form"' in html and "js/upload.js" in html
    assert 'aria-required="true"' in html  # the service checks these, the page says so


def test_group_can_be_preselected(cast):
    html = _login(cast.owner).get("/models/new/?group=datarisk").content.decode()
    assert '<option value="datarisk" selected>' in html


def test_user_without_groups_is_told_why(db, django_user_model):
    loner = django_user_model.objects.create_user("loner", password=PASSWORD)
    html = _login(loner).get("/models/new/").content.decode()
    assert "You are not in any group yet" in html


def test_upload_through_form_creates_model(cast):
    client = _login(cast.owner)
    payload = sync_payload(env=file(".env", "API_KEY=form-secret\n"))
    response = client.post("/models/new/", payload)
    model = MLModel.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/models/{model.hash}/"
    page = client.get(response["Location"]).content.decode()
    assert "Teste Sync" in page and "API_KEY" in page and "form-secret" not in page
    assert "was uploaded" in page
    assert model.builds.get().status == "Queued"
    assert model.created_by == cast.owner and model.group == cast.group


def test_upload_with_pasted_schema_and_empty_requirements(cast):
    model = _upload(
        _login(cast.owner),
        schema=None,
        schema_text='{"a": 1, "b": 2}',
        requirements=file("requirements.txt", ""),
        extra=[file("utils.py", "X = 1\n"), file("vocab.txt", "a\nb\n")],
    )
    assert model.schema == {"a": 1, "b": 2} and model.schema_file == "schema.json"
    assert model.extra_files == ["utils.py", "vocab.txt"]
    assert model.requirements == []


def test_xhr_upload_answers_json(cast):
    client = _login(cast.owner)
    created = client.post("/models/new/", sync_payload(), **XHR)
    model = MLModel.objects.get()
    assert created.status_code == 201
    assert created.json() == {"hash": model.hash, "redirect": f"/models/{model.hash}/"}
    bad = client.post("/models/new/", sync_payload(name="", source=None), **XHR)
    assert bad.status_code == 400
    errors = bad.json()["errors"]
    assert errors["name"] == ["Give the model a name."]
    assert errors["source"] == ["Upload the scoring script (.py)."]
    assert MLModel.objects.count() == 1


def test_form_errors_are_shown_next_to_the_field(cast):
    client = _login(cast.owner)
    response = client.post("/models/new/", sync_payload(source=file("app.py", "def score(x):\n  pass\n")))
    assert response.status_code == 400
    html = response.content.decode()
    assert "has-error" in html and "must accept exactly two positional arguments" in html
    assert 'id="id_source_error"' in html and 'aria-invalid="true"' in html
    assert not MLModel.objects.exists()


def test_every_problem_is_reported_at_once(cast):
    payload = sync_payload(
        name="",
        source=file("app.py", "def score(x):\n  pass\n"),
        model=None,
        requirements=file("requirements.txt", "-e ./local\n"),
        schema=None,
        sample=file("in.csv", "a\n"),
    )
    errors = _login(cast.owner).post("/models/new/", payload, **XHR).json()["errors"]
    assert set(errors) == {"name", "source", "model", "requirements", "schema", "sample"}


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"schema": None, "schema_text": "{not json"}, "schema_text", "not valid JSON"),
        ({"schema_text": '{"a": 1}'}, "schema_text", "not both"),
        ({"group": "other-team"}, "group", "Select a valid choice"),
        ({"python_version": "3.7"}, "python_version", "Select a valid choice"),
        ({"operation": "Async", "input_type": "parquet", "schema": None}, None, None),
        ({"input_type": "csv"}, "input_type", "input_type must be 'json'"),
    ],
)
def test_bad_upload_values(cast, overrides, field, message):
    response = _login(cast.owner).post("/models/new/", sync_payload(**overrides), **XHR)
    if field is None:
        assert response.status_code == 201
        return
    assert response.status_code == 400
    assert message in " ".join(response.json()["errors"][field])


def test_file_over_the_size_limit_is_refused_at_its_field(cast, settings):
    settings.MAX_UPLOAD_FILE_BYTES = 1000
    payload = sync_payload(model=file("model.pkl", b"x" * 5000))
    response = _login(cast.owner).post("/models/new/", payload)
    assert response.status_code == 400
    html = response.content.decode()
    assert "larger than the per-file limit" in html
    # The file was sent: neither "upload it" nor "cut off", which would send the user looking elsewhere.
    assert "Upload the model file" not in html and "was cut off" not in html
    assert not MLModel.objects.exists()


def test_upload_page_methods_and_login(cast):
    assert _login(cast.owner).put("/models/new/").status_code == 405
    anonymous = Client().get("/models/new/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/login/")


# --- list -----------------------------------------------------------------------------


def test_model_list_filters(cast, sync_model, async_model):
    client = _login(cast.teammate)
    html = client.get("/models/").content.decode()
    assert "Teste Sync" in html and "Batch" in html
    assert "Batch" not in client.get("/models/?operation=Sync").content.decode()
    assert "Teste Sync" not in client.get("/models/?q=batc").content.decode()
    assert "Batch" in client.get(f"/models/?q={async_model.hash}").content.decode()
    assert "No model matches" in client.get("/models/?status=Failed").content.decode()
    MLModel.objects.filter(pk=async_model.pk).update(status=MLModel.Status.DELETED)
    assert "Batch" not in client.get("/models/").content.decode()  # deleted: only when asked for
    assert "Batch" in client.get("/models/?status=Deleted").content.decode()


def test_model_list_pages_keep_the_filters(cast):
    MLModel.objects.bulk_create(
        MLModel(
            name=f"Scorer {number}",
            group=cast.group,
            operation="Sync",
            model_reference="score",
            python_version="3.9",
            input_type="json",
            source_file="app.py",
            model_file="m.pkl",
            requirements_file="r.txt",
        )
        for number in range(51)  # 50 a page
    )
    client = _login(cast.owner)
    first = client.get("/models/?operation=Sync").content.decode()
    assert "Page 1 of 2" in first and ">Previous</a>" not in first
    assert '<a class="btn btn-small" href="?operation=Sync&amp;page=2">Next</a>' in first
    second = client.get("/models/?operation=Sync&page=2").content.decode()
    assert "Page 2 of 2" in second and ">Next</a>" not in second
    assert '<a class="btn btn-small" href="?operation=Sync&amp;page=1">Previous</a>' in second
    assert 'class="pager"' not in client.get("/models/?q=scorer+1").content.decode()  # 11 on one page


def test_model_list_outsider_and_bad_filters(cast, sync_model):
    assert "Teste Sync" not in _login(cast.outsider).get("/models/").content.decode()
    client = _login(cast.owner)
    assert client.get("/models/?status=Nope").status_code == 400
    assert client.get("/models/?group=other-team").status_code == 400  # not one of mine
    assert client.post("/models/").status_code == 405


# --- model page -----------------------------------------------------------------------


def test_sync_model_page(cast, sync_model):
    response = _login(cast.teammate).get(f"/models/{sync_model.hash}/")
    html = response.content.decode()
    assert response.status_code == 200
    assert "API_KEY" in html and "form-secret" not in html
    # try it: pre-filled with the schema example; sent with the member's session, no token field
    assert 'id="try-body"' in html and "&quot;a&quot;: 1" in html
    assert 'id="try-session-note"' in html and "try-token" not in html
    assert cast.group_token not in html
    # generated code for the run URL, in three tabs
    assert f"http://testserver/api/v1/run/{sync_model.hash}" in html
    for lang in ("curl", "python", "javascript"):
        assert f'id="code-{lang}"' in html
    assert "NEOMARIL_GROUP_TOKEN" in html
    assert f'href="/models/{sync_model.hash}/docs/"' in html
    # the data the page's script uses
    config = json.loads(
        re.search(r'<script id="model-config" type="application/json">(.*?)</script>', html)[1]
    )
    assert config["statusUrl"] == f"/api/v1/models/{sync_model.hash}/status"
    assert config["runUrl"] == f"/api/v1/run/{sync_model.hash}"
    assert config["runnersUrl"] == f"/api/v1/models/{sync_model.hash}/runners"
    # serving: settings form and recorded calls
    assert 'name="min_replicas"' in html and 'name="max_replicas"' in html and "0 calls" in html
    # actions available from Deployed
    for action in ("restart", "disable", "delete"):
        assert f'action="/models/{sync_model.hash}/{action}/"' in html


def test_model_page_counts_recorded_calls(cast, sync_model):
    record_calls(sync_model, *({"status_code": code, "latency_ms": 10} for code in (200, 200, 422)))
    html = _login(cast.owner).get(f"/models/{sync_model.hash}/").content.decode()
    assert "3 calls" in html and "1 error" in html and "3 in all" in html


def test_model_page_access(cast, sync_model):
    assert _login(cast.outsider).get(f"/models/{sync_model.hash}/").status_code == 404
    assert _login(cast.owner).get("/models/Mnope/").status_code == 404
    assert _login(cast.owner).post(f"/models/{sync_model.hash}/").status_code == 405
    assert _login(cast.admin).get(f"/models/{sync_model.hash}/").status_code == 200


def test_building_model_page_polls(cast):
    model = _upload(_login(cast.owner))
    html = _login(cast.owner).get(f"/models/{model.hash}/").content.decode()
    assert "badge-Ready" in html and "The log follows the build" in html
    assert 'id="try-form" data-show-when="Deployed" hidden' in html
    assert "Waiting for a worker" in html


def test_a_queued_model_reads_queued_everywhere_the_portal_draws_its_badge(cast):
    # "Ready" in blue read as done: the portal says Queued, the API keeps the state's name.
    client = _login(cast.owner)
    model = _upload(client)
    badge = re.compile(r'<span class="badge badge-Ready[^"]*"[^>]*>([^<]*)</span>')
    for url in (f"/models/{model.hash}/", "/models/", "/", f"/groups/{model.group.name}/"):
        html = client.get(url).content.decode()
        # The model page draws it twice: in its title and in its versions table.
        assert badge.findall(html) and set(badge.findall(html)) == {"Queued"}, url
    assert '<option value="Ready">Queued</option>' in client.get("/models/").content.decode()
    assert client.get(f"/api/v1/models/{model.hash}").json()["status"] == "Ready"
    script = (ROOT / "static" / "js" / "model.js").read_text()
    assert 'value === "Ready" ? "Queued" : value' in script
    assert "statusBadge.textContent = statusLabel(next)" in script


def test_async_model_page_lists_executions(cast, async_model):
    _execution(async_model, 1, "Succeeded", output_file="results/out.csv", output_size=10)
    _execution(async_model, 2, "Failed", error_message="The entrypoint raised KeyError: 'x'")
    _execution(async_model, 3, "Running")
    html = _login(cast.teammate).get(f"/models/{async_model.hash}/").content.decode()
    assert 'id="execution-form"' in html and 'name="file"' in html
    assert 'id="execution-session-note"' in html and 'type="password"' not in html  # no token to paste
    assert f'href="/api/v1/run/{async_model.hash}/executions/1/result"' in html
    assert f"/api/v1/run/{async_model.hash}/executions/2/result" not in html
    assert "KeyError" in html and 'data-status="Running"' in html
    assert f'href="/models/{async_model.hash}/executions/3/"' in html
    assert "3 in all" in html and 'id="try-form"' not in html


def test_model_page_offers_no_download_of_files_deleted_by_hand(cast, async_model):
    done = _execution(async_model, 1, "Succeeded", output_file="out.csv", output_size=10)
    kept_input = _execution(async_model, 2, "Succeeded", output_file="out.csv", output_size=10)
    shutil.rmtree(done.folder)
    kept_input.output_path.unlink()
    html = _login(cast.teammate).get(f"/models/{async_model.hash}/").content.decode()
    run = f"/api/v1/run/{async_model.hash}/executions"
    assert f'href="{run}/1/input"' not in html and f'href="{run}/1/result"' not in html
    assert f'href="{run}/2/input"' in html and f'href="{run}/2/result"' not in html
    assert html.count("files removed") == 2


def test_deleted_model_page(cast, sync_model):
    MLModel.objects.filter(pk=sync_model.pk).update(status=MLModel.Status.DELETED)
    html = _login(cast.owner).get(f"/models/{sync_model.hash}/").content.decode()
    assert "This model was deleted" in html
    assert 'id="try-form"' not in html and "code-curl" not in html
    delete_form = re.search(rf'<form[^>]*action="/models/{sync_model.hash}/delete/"[^>]*>', html)[0]
    assert " hidden" in delete_form  # no action applies to a deleted model


# --- serving settings -----------------------------------------------------------------


def test_serving_settings(cast, sync_model, settings):
    settings.HOST_CORES = 4
    client = _login(cast.teammate)
    response = client.post(
        f"/models/{sync_model.hash}/settings/",
        {"min_replicas": "2", "max_replicas": "3", "request_timeout": "12"},
        follow=True,
    )
    assert response.redirect_chain[-1][0].endswith("#serving")
    assert "2 to 3 replicas per node as the load asks, request timeout 12 s" in response.content.decode()
    sync_model.refresh_from_db()
    assert (sync_model.min_replicas, sync_model.max_replicas, sync_model.request_timeout) == (2, 3, 12)
    assert ModelEvent.objects.filter(model=sync_model, action="settings_changed").exists()
    response = client.post(
        f"/models/{sync_model.hash}/settings/",
        {"min_replicas": "1", "max_replicas": "", "request_timeout": ""},
        follow=True,
    )
    assert "1 to 4 (the node&#x27;s cores) replicas per node" in response.content.decode()
    sync_model.refresh_from_db()
    assert (sync_model.min_replicas, sync_model.max_replicas, sync_model.request_timeout) == (1, None, None)
    # A minimum above the cores with no maximum: the minimum is the maximum, and said so.
    settings.HOST_CORES = 2
    response = client.post(
        f"/models/{sync_model.hash}/settings/",
        {"min_replicas": "3", "max_replicas": "", "request_timeout": ""},
        follow=True,
    )
    assert (
        "3 to 3 (the minimum: above the node&#x27;s 2 cores) replicas per node" in response.content.decode()
    )


def test_serving_settings_bad_input(cast, sync_model, async_model, settings):
    client = _login(cast.owner)
    response = client.post(
        f"/models/{sync_model.hash}/settings/", {"min_replicas": "0", "request_timeout": "x"}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert "greater than or equal to 1" in html and "Enter a whole number" in html
    # The answer opens at the Serving card, where the errors are (not 1,300 px above them).
    assert f'action="/models/{sync_model.hash}/settings/#serving"' in html
    below = client.post(f"/models/{sync_model.hash}/settings/", {"min_replicas": "3", "max_replicas": "2"})
    assert below.status_code == 400
    assert "The maximum must be at least the minimum (3)." in below.content.decode()
    settings.HOST_MAX_RUNNERS = 2
    over = client.post(f"/models/{sync_model.hash}/settings/", {"min_replicas": "3", "max_replicas": ""})
    assert over.status_code == 400
    assert (
        "3 replicas is more than a node runs at once (NEOMARIL_HOST_MAX_RUNNERS = 2)."
        in over.content.decode()
    )
    settings.HOST_MAX_RUNNERS, settings.GROUP_WARM_REPLICAS = 16, 1
    share = client.post(f"/models/{sync_model.hash}/settings/", {"min_replicas": "3", "max_replicas": ""})
    assert share.status_code == 400
    assert (
        f"Group {cast.group.name} may keep 1 replicas warm on each node beyond one per model "
        "(NEOMARIL_GROUP_WARM_REPLICAS); 3 here would make it 2." in share.content.decode()
    )
    sync_model.refresh_from_db()
    assert (sync_model.min_replicas, sync_model.max_replicas) == (1, None)
    refused = client.post(f"/models/{async_model.hash}/settings/", {"min_replicas": "2"}, follow=True)
    assert "Only the serving settings of a Sync model" in refused.content.decode()
    assert (
        _login(cast.outsider).post(f"/models/{sync_model.hash}/settings/", {"min_replicas": "2"}).status_code
        == 404
    )
    # A GET of the form's target (the language switch reloads it) goes to the form.
    reloaded = client.get(f"/models/{sync_model.hash}/settings/")
    assert reloaded.status_code == 302 and reloaded["Location"] == f"/models/{sync_model.hash}/#serving"
    assert client.put(f"/models/{sync_model.hash}/settings/").status_code == 405


def test_serving_settings_overtaken_by_another_change_is_409_on_the_form(
    cast, sync_model, monkeypatch, settings
):
    from models_app import services
    from tests.helpers.monitors import deployed_model

    settings.GROUP_WARM_REPLICAS = 2
    churn = deployed_model(sync_model.group, name="churn")
    real_change = services.change_settings

    def other_request_commits_first(target, actor, **changes):
        MLModel.objects.filter(pk=churn.pk).update(min_replicas=3)  # another raise in the group
        return real_change(target, actor, **changes)

    monkeypatch.setattr(services, "change_settings", other_request_commits_first)
    response = _login(cast.owner).post(
        f"/models/{sync_model.hash}/settings/", {"min_replicas": "2", "max_replicas": ""}
    )
    assert response.status_code == 409
    assert "2 here would make it 3, as its other models keep 2: churn (3)." in response.content.decode()
    sync_model.refresh_from_db()
    assert sync_model.min_replicas == 1


# --- actions --------------------------------------------------------------------------


def test_actions_need_confirmation(cast, sync_model):
    client = _login(cast.owner)
    page = client.post(f"/models/{sync_model.hash}/disable/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Disable this model?" in html and 'name="confirm" value="yes"' in html
    sync_model.refresh_from_db()
    assert sync_model.status == "Deployed"  # nothing happened yet


def test_model_actions(cast, sync_model):
    owner = _login(cast.owner)
    assert (
        _login(cast.outsider).post(f"/models/{sync_model.hash}/disable/", {"confirm": "yes"}).status_code
        == 404
    )
    response = owner.post(f"/models/{sync_model.hash}/disable/", {"confirm": "yes"}, follow=True)
    sync_model.refresh_from_db()
    assert sync_model.status == "Disabled" and "was disabled" in response.content.decode()
    again = owner.post(f"/models/{sync_model.hash}/disable/", {"confirm": "yes"}, follow=True)
    assert "cannot be disabled" in again.content.decode()
    _login(cast.teammate).post(f"/models/{sync_model.hash}/restart/", {"confirm": "yes"})
    sync_model.refresh_from_db()
    assert sync_model.status == "Ready" and sync_model.builds.count() == 2
    deleted = owner.post(f"/models/{sync_model.hash}/delete/", {"confirm": "yes"})
    assert deleted.status_code == 302 and deleted["Location"] == "/models/"
    sync_model.refresh_from_db()
    assert sync_model.status == "Deleted"


def test_model_action_bad_requests(cast, sync_model):
    owner = _login(cast.owner)
    reloaded = owner.get(f"/models/{sync_model.hash}/disable/")  # the confirmation page's language switch
    assert reloaded.status_code == 302 and reloaded["Location"] == f"/models/{sync_model.hash}/"
    assert owner.delete(f"/models/{sync_model.hash}/disable/").status_code == 405
    assert owner.post(f"/models/{sync_model.hash}/explode/", {"confirm": "yes"}).status_code == 404
    assert owner.post("/models/Mnope/disable/", {"confirm": "yes"}).status_code == 404


# --- dashboard ------------------------------------------------------------------------


def test_dashboard_lists_models_of_my_groups_only(cast):
    _login(cast.owner).post("/models/new/", sync_payload())
    assert "Teste Sync" in _login(cast.teammate).get("/").content.decode()
    assert "Teste Sync" not in _login(cast.outsider).get("/").content.decode()


def test_dashboard_last_activity_and_figures(cast, sync_model, async_model):
    _execution(async_model, 1, "Succeeded")
    response = _login(cast.owner).get("/")
    html = response.content.decode()
    rows = {m.name: m for m in response.context["models"]}
    assert rows["Batch"].activity == "execution requested"
    assert response.context["stats"]["deployed"] == 2 and response.context["stats"]["executions"] == 1
    assert '2</span><span class="label">deployed models' in html


# --- execution page -------------------------------------------------------------------


def test_execution_page(cast, async_model):
    _execution(async_model, 1, "Succeeded", output_file="out.csv", output_size=10, log="scoring 1 row\n")
    _execution(async_model, 2, "Running")
    client = _login(cast.teammate)
    html = client.get(f"/models/{async_model.hash}/executions/1/").content.decode()
    assert "Execution 1" in html and "scoring 1 row" in html
    assert f'href="/api/v1/run/{async_model.hash}/executions/1/result"' in html
    running = client.get(f"/models/{async_model.hash}/executions/2/").content.decode()
    assert 'id="execution-config"' in running and "This page follows the execution" in running
    assert _login(cast.outsider).get(f"/models/{async_model.hash}/executions/1/").status_code == 404
    assert client.get(f"/models/{async_model.hash}/executions/9/").status_code == 404
    assert client.get("/models/Mnope/executions/1/").status_code == 404
    assert client.post(f"/models/{async_model.hash}/executions/1/").status_code == 405
    MLModel.objects.filter(pk=async_model.pk).update(status=MLModel.Status.DELETED)
    assert client.get(f"/models/{async_model.hash}/executions/1/").status_code == 404


def test_execution_page_says_files_deleted_by_hand_are_gone(cast, async_model):
    execution = _execution(async_model, 1, "Succeeded", output_file="out.csv", output_size=10)
    client = _login(cast.teammate)
    html = client.get(f"/models/{async_model.hash}/executions/1/").content.decode()
    assert "Download input" in html and 'id="files-gone"' not in html
    assert re.search(r'id="result-link" href="[^"]+" download>', html)  # shown
    shutil.rmtree(execution.folder)
    html = client.get(f"/models/{async_model.hash}/executions/1/").content.decode()
    assert "Download input" not in html
    assert re.search(r'id="result-link" href="[^"]+" download hidden>', html)
    assert '<dd id="files-gone">no longer on the server (deleted from the execution\'s folder)</dd>' in html


def test_model_page_shows_latency_percentiles_not_a_mean(cast, sync_model):
    # One cold start among 99 quick calls.
    record_calls(sync_model, *({"latency_ms": latency} for latency in [*range(1, 100), 5300]))
    html = _login(cast.owner).get(f"/models/{sync_model.hash}/").content.decode()
    assert "latency p50 50.5 ms, p95 95.1 ms, p99 151.0 ms" in html, re.findall(r"Last 24 hours.*", html)
    assert "average" not in html
    answer = _login(cast.owner).get(f"/api/v1/models/{sync_model.hash}").json()
    assert answer["calls"] == {
        "total": 100,
        "last_24h": 100,
        "errors_last_24h": 0,
        "latency_ms_last_24h": {"p50": 50.5, "p95": 95.05, "p99": 151.01},
    }
