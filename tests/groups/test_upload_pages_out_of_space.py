"""Every upload page refuses an upload the disk has no room for as the API does: 507
saying so (not 400, which would tell the user their files were wrong), on the page and to
the upload script, with nothing stored."""

from __future__ import annotations

import pytest
from django.test import Client

from models_app.models import MLModel
from monitors.models import Monitor
from tests.helpers.cast import PASSWORD
from tests.helpers.monitors import deployed_model, reference_run
from tests.helpers.training import finished_run, make_experiment
from tests.helpers.uploads import file
from training.models import TrainingRun

SCORE = "def score(data, base_path):\n    return {'ok': True}\n"
XHR = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}
NO_SPACE = "The server has no disk space left for "


def _model_upload(cast):
    return "/models/new/", {"group": cast.group.name, "name": "m", "source": file("app.py", SCORE)}


def _version_upload(cast):
    model = deployed_model(cast.group)
    return f"/models/{model.hash}/versions/new/", {"source": file("app.py", SCORE)}


def _training_run(cast):
    experiment = make_experiment(cast.group, cast.owner)
    return f"/training/{experiment.hash}/runs/new/", {
        "training_type": "Custom",
        "train_data": file("train.csv", "a,b\n1,2\n"),
    }


def _promotion(cast):
    run = finished_run(make_experiment(cast.group, cast.owner))
    return f"/training/{run.experiment.hash}/runs/1/promote/", {"name": "m", "source": file("app.py", SCORE)}


def _monitoring(cast):
    model = deployed_model(cast.group, reference_run(cast.group))
    return f"/models/{model.hash}/monitoring/register/", {
        "preprocess": file("pre.py", "def parse(i, o): ...\n")
    }


PAGES = {
    "model": _model_upload,
    "version": _version_upload,
    "training-run": _training_run,
    "promotion": _promotion,
    "monitoring": _monitoring,
}


def _stored() -> tuple[int, int, int]:
    return MLModel.objects.count(), TrainingRun.objects.count(), Monitor.objects.count()


@pytest.mark.parametrize("script", [False, True], ids=["page", "upload-script"])
@pytest.mark.parametrize("form", PAGES)
def test_an_upload_the_disk_has_no_room_for_is_507_on_every_page(cast, settings, form, script):
    url, data = PAGES[form](cast)
    before = _stored()
    settings.DISK_RESERVE_MB = 10**9  # more than any disk has free
    client = Client()
    assert client.login(username=cast.owner.username, password=PASSWORD)
    response = client.post(url, data, **(XHR if script else {}))
    assert response.status_code == 507, response.content[:2000]
    if script:
        assert response.json()["errors"]["__all__"][0].startswith(NO_SPACE)
    else:
        assert NO_SPACE in response.content.decode()
    assert _stored() == before


def test_a_page_form_with_wrong_files_is_still_400(cast):
    client = Client()
    assert client.login(username=cast.owner.username, password=PASSWORD)
    url, data = _model_upload(cast)
    response = client.post(url, data, **XHR)
    assert response.status_code == 400, response.content
    assert "model" in response.json()["errors"]
