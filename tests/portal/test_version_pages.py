"""Version pages (server side): the model page's versions, uploading a new version, a
version's page and its actions, the models list and the promote form's "version of".

No worker runs: versions are put in their states directly in the database. The same
checklist as every page: works, teammate can, outsider 404, bad id 404, wrong method
405, bad upload 400 with the errors at their fields.
"""

from __future__ import annotations

import html as html_text
import json
import re

import pytest
from django.test import Client

from models_app import services
from models_app.models import MLModel
from tests.helpers.cast import PASSWORD
from tests.helpers.training import finished_run, make_experiment
from tests.helpers.uploads import file, sync_payload

XHR = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
V2_SOURCE = "import json\n\n\ndef score(data, base_path):\n    return {'answered_by': 'v2'}\n"


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _html(response) -> str:
    return response.content.decode()


def _version_payload(**overrides) -> dict:
    changes = {
        "source": file("app_v2.py", V2_SOURCE),
        "requirements": file("requirements.txt", "pyyaml==6.0.2\n"),
        "schema": file("schema.json", json.dumps({"a": 10, "b": 20})),
        **overrides,
    }
    payload = sync_payload(**changes)
    for inherited in ("name", "group", "operation"):
        payload.pop(inherited, None)
    return payload


def _set(row: MLModel, status: str) -> MLModel:
    MLModel.objects.filter(pk=row.pk).update(status=status)
    row.refresh_from_db()
    return row


def _messages(html: str) -> list[str]:
    """The texts of the page's messages (flash messages and alerts)."""
    found = re.findall(r'class="msg msg-\w+"[^>]*>(.*?)</', html, re.S)
    return [html_text.unescape(re.sub(r"\s+", " ", text)).strip() for text in found]


@pytest.fixture
def model(cast) -> MLModel:
    """A Deployed Sync model (its version 1)."""
    response = _login(cast.owner).post("/models/new/", sync_payload())
    assert response.status_code == 302
    return _set(MLModel.objects.get(hash=response["Location"].split("/")[2]), "Deployed")


@pytest.fixture
def v2(cast, model) -> MLModel:
    """Version 2 of `model`, uploaded through its page and waiting for its build."""
    response = _login(cast.owner).post(f"/models/{model.hash}/versions/new/", _version_payload())
    assert response.status_code == 302, _html(response)[:2000]
    return model.all_versions().get(version=2)


def _go_live(model: MLModel, version: MLModel, user) -> None:
    _set(version, "Deployed")
    services.make_live(model, version, user)


# --- upload a new version ----------------------------------------------------------------


def test_upload_page_shows_the_models_fixed_fields_and_the_upload_form(cast, model):
    response = _login(cast.teammate).get(f"/models/{model.hash}/versions/new/")
    html = _html(response)
    assert response.status_code == 200
    assert "Upload version 2" in html
    assert 'id="version-name" type="text" value="Teste Sync" readonly' in html
    assert 'id="version-group" type="text" value="datarisk" readonly' in html
    assert 'name="operation" value="Sync" checked disabled' in html  # shown, never sent
    assert 'name="name"' not in html and 'name="group"' not in html
    assert 'id="upload-form"' in html and "js/upload_form.js" in html and "js/upload.js" in html
    assert 'id="upload-progress"' in html and 'id="id_source"' in html
    assert f'href="/models/{model.hash}/">Cancel</a>' in html
    # Prefilled with the live version's runtime.
    assert '<option value="3.9" selected>' in html and 'name="model_reference" value="score"' in html


def test_upload_posts_redirect_to_the_models_versions(cast, model):
    client = _login(cast.teammate)
    response = client.post(f"/models/{model.hash}/versions/new/", _version_payload())
    assert response.status_code == 302 and response["Location"] == f"/models/{model.hash}/#versions"
    v2 = model.all_versions().get(version=2)
    assert (v2.line, v2.name, v2.group, v2.operation) == (model, model.name, model.group, "Sync")
    assert v2.created_by == cast.teammate and v2.source_file == "app_v2.py"
    assert v2.requirements == ["pyyaml==6.0.2"] and v2.builds.get().status == "Queued"
    html = _html(client.get(response["Location"]))
    assert "Version 2 of Teste Sync was uploaded. It goes live once its build deploys it." in _messages(html)
    model.refresh_from_db()
    assert model.live_version is None  # version 1 serves until version 2 is deployed


def test_xhr_upload_answers_json(cast, model):
    client = _login(cast.owner)
    created = client.post(f"/models/{model.hash}/versions/new/", _version_payload(), **XHR)
    v2 = model.all_versions().get(version=2)
    assert created.status_code == 201
    assert created.json() == {"hash": v2.hash, "version": 2, "redirect": f"/models/{model.hash}/#versions"}
    bad = client.post(f"/models/{model.hash}/versions/new/", _version_payload(source=None), **XHR)
    assert bad.status_code == 400
    assert bad.json()["errors"]["source"] == ["Upload the scoring script (.py)."]
    assert model.all_versions().count() == 2


def test_upload_errors_are_shown_at_their_fields(cast, model):
    response = _login(cast.owner).post(
        f"/models/{model.hash}/versions/new/",
        _version_payload(source=file("app.py", "def score(x):\n  pass\n"), model=None),
    )
    html = _html(response)
    assert response.status_code == 400
    assert 'id="id_source_error"' in html and "must accept exactly two positional arguments" in html
    assert re.search(r'id="id_model_error"[^>]*><p class="error">Upload the model file', html)
    assert 'aria-invalid="true"' in html and 'id="form-errors"' in html
    assert model.all_versions().count() == 1


def test_an_oversized_file_alone_is_refused_at_its_field(cast, model, settings):
    """A body whose only part is skipped for its size leaves the form no field at all: it
    is still a refused upload (400 at the field), not a server error."""
    settings.MAX_UPLOAD_FILE_BYTES = 1000
    response = _login(cast.owner).post(
        f"/models/{model.hash}/versions/new/", {"model": file("model.pkl", b"x" * 5000)}, **XHR
    )
    assert response.status_code == 400, response.content[:500]
    # Only the size: the part was not cut off, it was skipped for its size.
    assert response.json()["errors"]["model"] == ["'model.pkl' is larger than the per-file limit of 0 MB."]
    assert model.all_versions().count() == 1


def test_a_deleted_model_takes_no_new_version(cast, model):
    services.delete(model, cast.owner)
    client = _login(cast.owner)
    assert 'id="model-deleted"' in _html(client.get(f"/models/{model.hash}/versions/new/"))
    response = client.post(f"/models/{model.hash}/versions/new/", _version_payload())
    assert response.status_code == 400
    assert "This model is deleted: upload a new model instead." in _html(response)
    assert model.all_versions().count() == 1


def test_upload_page_checklist(cast, model):
    url = f"/models/{model.hash}/versions/new/"
    assert _login(cast.outsider).get(url).status_code == 404
    assert _login(cast.outsider).post(url, _version_payload()).status_code == 404
    assert _login(cast.owner).get("/models/Mnothing/versions/new/").status_code == 404
    assert _login(cast.owner).put(url).status_code == 405
    assert Client().get(url).status_code == 302  # to the login page
    assert model.all_versions().count() == 1


# --- the model page: the live version's facts, the versions table --------------------------


def test_the_model_page_shows_its_live_version(cast, model, v2):
    client = _login(cast.owner)
    html = _html(client.get(f"/models/{model.hash}/"))
    assert 'id="live-version" class="pill pill-live" data-refresh hidden' not in html
    assert "Version 1 live" in html and "app.py" in html and "app_v2.py" not in html

    _go_live(model, v2, cast.owner)
    _set(v2, "Disabled")  # the live version's status is the model's
    html = _html(client.get(f"/models/{model.hash}/"))
    assert re.search(r'id="model-status">Disabled<', html)
    assert "Version 2 live" in html
    files = re.search(r'id="files".*?</section>', html, re.S).group(0)
    assert "app_v2.py" in files and "pyyaml==6.0.2" in files and "app.py<" not in files
    assert "&quot;a&quot;: 10" in html  # the live version's schema example (Try it, code)
    assert f"/api/v1/run/{model.hash}" in html and f"/api/v1/run/{v2.hash}" not in html
    assert (
        json.loads(re.search(r'id="model-config"[^>]*>(.*?)</script>', html).group(1))["status"] == "Disabled"
    )
    # Disable and restart follow the live version's status: a Disabled one can restart.
    actions = re.search(r'class="page-actions">(.*?)</div>', html, re.S).group(1)
    restart = re.search(rf'<form method="post" action="/models/{model.hash}/restart/"[^>]*>', actions).group(
        0
    )
    disable = re.search(rf'<form method="post" action="/models/{model.hash}/disable/"[^>]*>', actions).group(
        0
    )
    assert " hidden" not in restart and " hidden" in disable


def test_the_versions_table(cast, model, v2):
    html = _html(_login(cast.owner).get(f"/models/{model.hash}/"))
    section = re.search(r'<section class="card card-flush" id="versions".*?</section>', html, re.S).group(0)
    assert 'data-live="1"' in section and "js/versions.js" in html
    rows = re.findall(r'<tr data-version="(\d+)" data-status="(\w+)"( data-live)?', section)
    assert rows == [("2", "Ready", ""), ("1", "Deployed", " data-live")]  # newest first
    v2_row = re.search(r'<tr data-version="2".*?</tr>', section, re.S).group(0)
    v1_row = re.search(r'<tr data-version="1".*?</tr>', section, re.S).group(0)
    assert f'data-status-url="/api/v1/models/{model.hash}/versions/2/status"' in v2_row
    assert ">Queued</span>" in v2_row and v2.hash in v2_row and "owner" in v2_row
    assert f'href="/models/{model.hash}/versions/2/"' in v2_row
    # Not Deployed: not offered to go live; not live: can be deleted.
    assert "action-live" not in v2_row and "/versions/2/delete/" in v2_row
    # Version 1: live, so neither offered; it holds the model anyway.
    assert "live-marker" in v1_row and "data-status-url" not in v1_row
    assert "<form" not in v1_row

    _go_live(model, v2, cast.owner)
    html = _html(_login(cast.owner).get(f"/models/{model.hash}/"))
    v1_row = re.search(r'<tr data-version="1".*?</tr>', html, re.S).group(0)
    assert f'action="/models/{model.hash}/versions/1/live/"' in v1_row
    assert 'data-confirm="Make version 1 live?"' in v1_row and 'name="next" value="model"' in v1_row
    assert "/versions/1/delete/" not in v1_row  # version 1 holds the model


def test_the_model_actions_act_on_the_live_version(cast, model, v2):
    _go_live(model, v2, cast.owner)
    client = _login(cast.owner)
    confirm = _html(client.post(f"/models/{model.hash}/disable/"))
    assert "Disable this model?" in confirm and v2.hash in confirm  # the version it acts on
    response = client.post(f"/models/{model.hash}/disable/", {"confirm": "yes"})
    assert response.status_code == 302
    model.refresh_from_db()
    v2.refresh_from_db()
    assert (model.status, v2.status) == ("Deployed", "Disabled")


# --- a version's page ---------------------------------------------------------------------


def test_a_versions_page(cast, model, v2):
    v2.builds.update(status="Running", log="Resolving requirements…\nInstalling pyyaml")
    _set(v2, "Building")
    response = _login(cast.teammate).get(f"/models/{model.hash}/versions/2/")
    html = _html(response)
    assert response.status_code == 200
    assert "<h1>Version 2" in html and re.search(r'id="model-status">Building<', html)
    assert f'id="version-hash">{v2.hash}<' in html
    assert "app_v2.py" in html and "pyyaml==6.0.2" in html and "Python 3.9" in html
    assert "Installing pyyaml" in html and 'id="log-follow-note"' in html  # the build log, followed
    assert "by owner" in html
    run_url = f"http://testserver/api/v1/run/{model.hash}/versions/2"
    assert f'id="version-run-url">{run_url}<' in html
    assert f"curl -sS -X POST {run_url}" in html and 'data-copy="#version-curl"' in html
    config = json.loads(re.search(r'id="model-config"[^>]*>(.*?)</script>', html).group(1))
    assert config["statusUrl"] == f"/api/v1/models/{model.hash}/versions/2/status"
    assert config["runUrl"] == f"/api/v1/run/{model.hash}/versions/2" and "js/model.js" in html
    actions = re.search(r'id="version-actions" data-refresh>(.*?)</div>', html, re.S).group(1)
    assert "/versions/2/delete/" in actions and "/versions/2/live/" not in actions
    assert re.search(r'data-show-when="Deployed Failed Disabled"[^>]*hidden', actions)  # restart, later
    assert "Yes: the model's run URL serves this version." not in html


def test_each_versions_page_shows_code_with_that_versions_example(cast, model, v2):
    _go_live(model, v2, cast.owner)  # v2's example ({"a": 10, "b": 20}) is the live one
    first = _html(_login(cast.owner).get(f"/models/{model.hash}/versions/1/"))
    second = _html(_login(cast.owner).get(f"/models/{model.hash}/versions/2/"))
    assert "&quot;a&quot;: 1," in first and "&quot;a&quot;: 10" not in first
    assert "&quot;a&quot;: 10," in second


def test_the_page_of_the_live_version_offers_no_delete(cast, model, v2):
    _go_live(model, v2, cast.owner)
    html = _html(_login(cast.owner).get(f"/models/{model.hash}/versions/2/"))
    assert "Yes: the model's run URL serves this version." in html
    actions = re.search(r'id="version-actions" data-refresh>(.*?)</div>', html, re.S).group(1)
    assert "/delete/" not in actions and "/live/" not in actions
    v1 = _html(_login(cast.owner).get(f"/models/{model.hash}/versions/1/"))
    v1_actions = re.search(r'id="version-actions" data-refresh>(.*?)</div>', v1, re.S).group(1)
    assert "/versions/1/live/" in v1_actions and "/delete/" not in v1_actions


def test_version_page_checklist(cast, model, v2):
    url = f"/models/{model.hash}/versions/2/"
    assert _login(cast.outsider).get(url).status_code == 404
    assert _login(cast.owner).get(f"/models/{model.hash}/versions/3/").status_code == 404
    assert (
        _login(cast.owner).get(f"/models/{v2.hash}/versions/2/").status_code == 404
    )  # a version is not a model
    assert _login(cast.owner).post(url).status_code == 405
    assert _login(cast.admin).get(url).status_code == 200


# --- actions ---------------------------------------------------------------------------


def test_make_live_asks_first_then_rolls_back(cast, model, v2):
    _go_live(model, v2, cast.owner)
    client = _login(cast.teammate)
    url = f"/models/{model.hash}/versions/1/live/"
    confirm = client.post(url, {"next": "model"})
    html = _html(confirm)
    assert confirm.status_code == 200 and "Make version 1 live?" in html
    assert f'action="{url}"' in html and 'name="next" value="model"' in html
    model.refresh_from_db()
    assert model.live_version == v2  # nothing happened yet
    response = client.post(url, {"confirm": "yes", "next": "model"})
    assert response.status_code == 302 and response["Location"] == f"/models/{model.hash}/#versions"
    model.refresh_from_db()
    assert model.serving == model
    html = _html(client.get(response["Location"]))
    assert "Version 1 is live: the model's run URL serves it." in _messages(html)
    assert "version_live" in list(model.events.values_list("action", flat=True))


def test_make_live_of_a_version_not_deployed_says_why(cast, model, v2):
    client = _login(cast.owner)
    response = client.post(f"/models/{model.hash}/versions/2/live/", {"confirm": "yes"})
    assert response.status_code == 302 and response["Location"] == f"/models/{model.hash}/versions/2/"
    html = _html(client.get(response["Location"]))
    assert "Version 2 is Ready: only a Deployed version can go live." in _messages(html)
    assert 'class="msg msg-error"' in html
    model.refresh_from_db()
    assert model.live_version is None


def test_delete_is_refused_for_the_live_version_and_version_1(cast, model, v2):
    _go_live(model, v2, cast.owner)
    client = _login(cast.owner)
    response = client.post(f"/models/{model.hash}/versions/2/delete/", {"confirm": "yes", "next": "model"})
    assert response["Location"] == f"/models/{model.hash}/#versions"
    html = _html(client.get(response["Location"]))
    assert "Version 2 is live: make another version live before deleting it." in _messages(html)
    response = client.post(f"/models/{model.hash}/versions/1/delete/", {"confirm": "yes"})
    html = _html(client.get(response["Location"]))
    assert "Version 1 holds the model: delete the model to remove it." in _messages(html)
    assert set(model.all_versions().values_list("status", flat=True)) == {"Deployed"}


def test_delete_a_version_that_is_not_live(cast, model, v2):
    client = _login(cast.owner)
    confirm = _html(client.post(f"/models/{model.hash}/versions/2/delete/"))
    assert "Delete version 2 for good?" in confirm and v2.hash in confirm
    response = client.post(f"/models/{model.hash}/versions/2/delete/", {"confirm": "yes"})
    assert response["Location"] == f"/models/{model.hash}/#versions"
    v2.refresh_from_db()
    model.refresh_from_db()
    assert (v2.status, model.status) == ("Deleted", "Deployed")
    assert not v2.folder.exists() and model.folder.exists()
    assert "Version 2 was deleted." in _messages(_html(client.get(response["Location"])))


def test_restart_and_disable_a_version(cast, model, v2):
    _set(v2, "Failed")
    client = _login(cast.owner)
    response = client.post(f"/models/{model.hash}/versions/2/restart/", {"confirm": "yes"})
    assert response["Location"] == f"/models/{model.hash}/versions/2/"
    v2.refresh_from_db()
    assert v2.status == "Ready" and v2.builds.count() == 2
    client.post(f"/models/{model.hash}/versions/2/disable/", {"confirm": "yes"})
    v2.refresh_from_db()
    model.refresh_from_db()
    assert (v2.status, model.status) == ("Disabled", "Deployed")


def test_version_action_checklist(cast, model, v2):
    url = f"/models/{model.hash}/versions/2/disable/"
    assert _login(cast.outsider).post(url, {"confirm": "yes"}).status_code == 404
    assert _login(cast.owner).post(f"/models/{model.hash}/versions/2/explode/").status_code == 404
    assert _login(cast.owner).post(f"/models/{model.hash}/versions/9/disable/").status_code == 404
    reloaded = _login(cast.owner).get(url)  # the confirmation page's language switch: the version's page
    assert reloaded.status_code == 302 and reloaded["Location"] == f"/models/{model.hash}/versions/2/"
    assert _login(cast.owner).delete(url).status_code == 405
    v2.refresh_from_db()
    assert v2.status == "Ready"


# --- the models list ---------------------------------------------------------------------


def test_the_list_shows_each_model_once_with_its_live_versions_status(cast, model, v2):
    client = _login(cast.owner)
    html = _html(client.get("/models/"))
    assert html.count(f'href="/models/{model.hash}/"') == 1 and v2.hash not in html
    assert ">v2<" not in html
    _go_live(model, v2, cast.owner)
    _set(v2, "Failed")
    html = _html(client.get("/models/"))
    row = re.search(
        rf'<tr>\s*<td class="name-cell"><a href="/models/{model.hash}/".*?</tr>', html, re.S
    ).group(0)
    assert ">v2<" in row and "badge-Failed" in row and "badge-Deployed" not in row
    # The status filter reads the live version's status too.
    assert model.hash in _html(client.get("/models/?status=Failed"))
    assert model.hash not in _html(client.get("/models/?status=Deployed"))


def test_the_dashboard_and_group_page_show_the_live_versions_status(cast, model, v2):
    _go_live(model, v2, cast.owner)
    _set(v2, "Failed")
    client = _login(cast.owner)
    response = client.get("/")
    assert (response.context["stats"]["failed"], response.context["stats"]["deployed"]) == (1, 0)
    for url in ("/", f"/groups/{cast.group.name}/"):
        html = _html(client.get(url))
        assert "badge-Failed" in html and "badge-Deployed" not in html, url


# --- promote a training run as a version -------------------------------------------------------


def test_the_promote_form_offers_a_new_model_or_a_version_of_one(cast, model):
    experiment = make_experiment(cast.group, cast.owner, name="Churn")
    finished_run(experiment)
    html = _html(_login(cast.owner).get(f"/training/{experiment.hash}/runs/1/"))
    select = re.search(r'<select name="version_of".*?</select>', html, re.S).group(0)
    assert '<option value="" selected>A new model</option>' in select
    assert '<optgroup label="A new version of">' in select
    assert f'<option value="{model.hash}" data-model-operation="Sync">Teste Sync (Sync)</option>' in select


def test_promoting_as_a_version_opens_the_model_page(cast, model):
    experiment = make_experiment(cast.group, cast.owner, name="Churn")
    finished_run(experiment)
    client = _login(cast.owner)
    response = client.post(
        f"/training/{experiment.hash}/runs/1/promote/",
        {
            "version_of": model.hash,
            "operation": "Sync",
            "model_reference": "score",
            "source": file("app.py", "def score(data, base_path):\n    return {}\n"),
            "schema_text": '{"a": 1}',
        },
    )
    assert response.status_code == 302 and response["Location"] == f"/models/{model.hash}/"
    v2 = model.all_versions().get(version=2)
    assert v2.name == model.name and v2.training_run.experiment == experiment
    run_page = _html(client.get(f"/training/{experiment.hash}/runs/1/"))
    assert f'href="/models/{model.hash}/versions/2/">Teste Sync, version 2</a>' in run_page
