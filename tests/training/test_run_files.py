"""Deleting a finished run's files frees its group's storage; the run stays (metrics,
params, log, the models promoted from it), and what needs the files says they are gone."""

from __future__ import annotations

import html
import re

import pytest
from django.test import Client

from groups.models import Group
from groups.uploads import folder_bytes
from models_app.models import MLModel
from monitors.models import Monitor
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.monitors import configuration, deployed_model, make_monitor, registration_form
from tests.helpers.training import finished_run, make_experiment
from training.models import TrainingRun

SCORE = "def score(data, base_path):\n    return {'ok': True}\n"


@pytest.fixture
def run(cast) -> TrainingRun:
    run = finished_run(make_experiment(cast.group, cast.owner), model_bytes=b"m" * 100_000)
    (run.work_folder).mkdir(parents=True)
    (run.work_folder / "train.csv").write_bytes(b"a,b\n" * 50_000)
    return run


def _url(run: TrainingRun, tail: str = "") -> str:
    return f"/api/v1/training/experiments/{run.experiment.hash}/runs/{run.number}{tail}"


def test_a_runs_files_are_deleted_and_its_groups_storage_freed(cast, run):
    taken = folder_bytes(run.folder)
    Group.objects.filter(pk=cast.group.pk).update(stored_bytes=taken + 7)
    response = api_client(cast.teammate).delete(_url(run, "/artifacts"))
    assert response.status_code == 204, response.content
    assert not run.folder.exists()
    assert Group.objects.get(pk=cast.group.pk).stored_bytes == 7
    run.refresh_from_db()
    assert run.files_removed_at is not None and run.files_removed_by == cast.teammate
    assert run.metrics == {"auc": 0.9} and run.artifacts  # the row and what it says stay

    detail = api_client(cast.owner).get(_url(run)).json()
    assert detail["files_removed_by"] == "teammate" and detail["files_removed_at"]
    download = api_client(cast.owner).get(_url(run, "/artifacts"))
    assert download.status_code == 404 and download.json()["code"] == "files_removed"
    assert download.json()["detail"].startswith(
        f"The files of run 1 were deleted on {run.files_removed_at:%Y-%m-%d %H:%M} UTC by teammate: its artifacts can't be downloaded"
    )

    again = api_client(cast.owner).delete(_url(run, "/artifacts"))
    assert again.status_code == 409
    assert again.json()["detail"].endswith("by teammate: there is nothing left to delete.")

    promote = api_client(cast.owner).post(
        _url(run, "/promote"), {"name": "m", "model_reference": "score"}, format="multipart"
    )
    assert promote.status_code == 409
    assert promote.json()["detail"].endswith("by teammate: it can't be promoted.")


@pytest.mark.parametrize("status", ["Requested", "Running"])
def test_a_run_that_has_not_finished_keeps_its_files(cast, status):
    run = finished_run(make_experiment(cast.group, cast.owner), status=status)
    run.folder.mkdir(parents=True, exist_ok=True)
    response = api_client(cast.owner).delete(_url(run, "/artifacts"))
    assert response.status_code == 409
    assert response.json()["detail"] == f"Run 1 is {status}: its files can be deleted once it has finished."
    assert run.folder.exists() and TrainingRun.objects.get().files_removed_at is None


def test_a_monitoring_reference_keeps_its_runs_files(cast, run):
    make_monitor(deployed_model(cast.group, run), run, cast.owner)
    response = api_client(cast.owner).delete(_url(run, "/artifacts"))
    assert response.status_code == 409
    assert response.json()["detail"] == (
        "The monitoring of the model 'monitored' takes run 1's data as its reference: register it "
        "with another run, or remove it, before deleting the run's files."
    )
    assert run.folder.exists()


def test_a_run_whose_files_were_deleted_is_refused_as_a_monitoring_reference(cast, run):
    api_client(cast.owner).delete(_url(run, "/artifacts"))
    model = deployed_model(cast.group)
    named = registration_form(
        model,
        configuration(
            TrainData={"NeomarilTrainingExecution": f"{run.experiment.hash}/1", "TrainDateRef": "2026-01-15"}
        ),
    )
    assert not named.is_valid()
    assert "the files of run 1 of" in str(named.errors) and "name another run" in str(named.errors)
    promoted_model = MLModel.objects.get(pk=deployed_model(cast.group, run, name="promoted").pk)
    promoted = registration_form(promoted_model)
    assert not promoted.is_valid()
    assert "which this model was promoted from, were deleted" in str(promoted.errors)
    assert not Monitor.objects.exists()


def test_outsiders_do_not_see_the_run(cast, run):
    assert api_client(cast.outsider).delete(_url(run, "/artifacts")).status_code == 404
    assert run.folder.exists()


def test_the_run_page_deletes_the_files_after_asking(cast, run):
    client = Client()
    assert client.login(username=cast.owner.username, password=PASSWORD)
    page = html.unescape(client.get(f"/training/{run.experiment.hash}/runs/1/").content.decode())
    form = re.search(
        r'<form method="post" action="([^"]+)" id="run-delete-files"\s+data-confirm="([^"]+)"', page
    )
    assert form and form[2] == "Delete the files of run 1?"
    assert 'id="artifacts-zip"' in page

    done = html.unescape(client.post(form[1], follow=True).content.decode())
    assert "The files of run 1 were deleted: " in done and "freed." in done
    assert 'id="run-files-removed"' in done and "were deleted on" in done and "by owner." in done
    assert 'id="run-delete-files"' not in done and 'id="artifacts-zip"' not in done
    assert 'id="promote-form"' not in done and "by owner: it can't be promoted." in done
    assert not run.folder.exists()

    refused = html.unescape(client.post(form[1], follow=True).content.decode())
    assert "there is nothing left to delete." in refused
