"""Model versions in a real headless Chromium against Django's live server.

Builds are real (the runner smoke-tests the model in the sandbox) on the host's own
interpreter (`host_env`: no uv), run by the test in a thread instead of a worker, so the
page is watched while they run: a model is uploaded through the form, a new version through
its page; the versions table follows the version's build, and when it goes live the live
marker, the "Version N live" line and the files move to it without a reload; then version
1 is made live again from the table. At 390 px the pages do not scroll sideways. A training
run's promote form, promoting as a version, takes the chosen model's name and operation.
"""

from __future__ import annotations

import json
import sys
import textwrap
import threading

import pytest
from django.db import connection

from models_app import tasks
from models_app.models import MLModel, ModelBuild
from tests.helpers.browser import WatchedPages, screenshot
from tests.helpers.training import finished_run, make_experiment
from tests.models_app.conftest import host_env  # noqa: F401  (a fixture)

pytestmark = [pytest.mark.browser]

PYTHON = f"{sys.version_info.major}.{sys.version_info.minor}"
PHONE = {"width": 390, "height": 844}


def _source(answer: str, pause: float = 0) -> str:
    # A pause at import makes the build (whose smoke test imports it) last long enough
    # to be watched while Building.
    return textwrap.dedent(
        f"""
        import json, time

        time.sleep({pause})


        def score(data, base_path):
            row = json.loads(data)
            return {{"sum": row["a"] + row["b"], "answered_by": {answer!r}}}
        """
    )


@pytest.fixture
def page(browser, live_server, cast):
    """A page logged in as the model's owner; the test fails if the page throws or
    fetches from outside the portal."""
    pages = WatchedPages(browser, live_server)
    yield pages.open(cast.owner)
    pages.check()


def _file(name: str, content: str | bytes) -> dict:
    data = content.encode() if isinstance(content, str) else content
    return {"name": name, "mimeType": "application/octet-stream", "buffer": data}


def _fill_upload(page, source: str) -> None:
    """The fields the model upload form and a version's share."""
    page.select_option("#id_python_version", PYTHON)
    page.set_input_files("#id_source", files=[_file("app.py", source)])
    page.set_input_files("#id_model", files=[_file("model.pkl", b"\x80\x04K\x01.")])
    page.set_input_files("#id_requirements", files=[_file("requirements.txt", "")])
    page.fill("#id_schema_text", json.dumps({"a": 1, "b": 2}))


def _build_in_background(row: MLModel) -> threading.Thread:
    """Run the row's queued build as a worker would, while the test watches the page."""
    build = row.builds.get(status=ModelBuild.Status.QUEUED)

    def work():
        try:
            tasks.build_model(build.pk)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def _no_sideways_scroll(page) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= PHONE["width"], f"{page.url} is {width} px wide at {PHONE['width']} px"


def test_upload_a_version_watch_it_go_live_then_roll_back(page, live_server, cast, host_env):  # noqa: F811
    url = live_server.url
    page.goto(f"{url}/models/new/")
    page.fill("#id_name", "Credit score")
    _fill_upload(page, _source("v1"))
    page.click("#upload-submit")
    page.wait_for_url(f"{url}/models/M*/")
    model = MLModel.objects.get(name="Credit score")
    _build_in_background(model).join(120)
    page.wait_for_selector("#model-status.badge-Deployed", timeout=30_000)
    assert page.is_hidden("#live-version")  # one version: nothing to say yet

    # A new version, from the model page, through the upload form with its progress bar.
    page.click("#new-version-link")
    page.wait_for_url(f"{url}/models/{model.hash}/versions/new/")
    assert page.input_value("#version-name") == "Credit score" and page.is_disabled("#version-operation")
    _fill_upload(page, _source("v2", pause=3))
    page.set_input_files("#id_source", files=[_file("app_v2.py", _source("v2", pause=3))])
    screenshot(page, "model-version-upload")
    page.click("#upload-submit")
    page.wait_for_url(f"{url}/models/{model.hash}/#versions")
    v2 = model.all_versions().get(version=2)
    assert page.get_attribute("#versions tr[data-version='2']", "data-status") == "Ready"
    assert page.inner_text("#versions tr[data-version='2'] .badge") == "Queued"
    assert page.is_visible("#versions tr[data-version='1'] .live-marker")

    # Its build, watched: the row goes Building then Deployed, and version 2 goes live.
    page.evaluate("window.notReloaded = true")
    worker = _build_in_background(v2)
    page.wait_for_selector("#versions tr[data-version='2'][data-status='Building']", timeout=30_000)
    screenshot(page, "model-version-building")
    worker.join(120)
    page.wait_for_selector(
        "#versions tr[data-version='2'][data-status='Deployed'] .live-marker", timeout=30_000
    )
    page.wait_for_function(
        "() => document.getElementById('live-version').textContent.includes('Version 2 live')", timeout=15_000
    )
    page.wait_for_function("() => document.getElementById('files').textContent.includes('app_v2.py')")
    assert page.evaluate("window.notReloaded") is True  # followed live, not by a reload
    assert not page.is_visible("#versions tr[data-version='1'] .live-marker")
    assert page.inner_text("#model-status") == "Deployed"
    model.refresh_from_db()
    assert model.serving == v2
    screenshot(page, "model-versions")

    # Roll back: Make live on version 1, confirmed in the dialog.
    page.click("#versions tr[data-version='1'] button.action-live")
    page.wait_for_selector("dialog[open]")
    assert "Make version 1 live?" in page.inner_text("dialog[open]")
    page.click("dialog[open] .confirm-ok")
    page.wait_for_selector("#versions tr[data-version='1'] .live-marker")
    assert "Version 1 is live" in page.inner_text(".messages")
    assert "Version 1 live" in page.inner_text("#live-version")
    assert page.is_visible("#versions tr[data-version='2'] button.action-live")
    model.refresh_from_db()
    assert model.serving == model

    # The version's own page: its URL, status and build log.
    page.click("#versions tr[data-version='2'] a:has-text('Version 2')")
    page.wait_for_url(f"{url}/models/{model.hash}/versions/2/")
    assert page.inner_text("#version-run-url") == f"{url}/api/v1/run/{model.hash}/versions/2"
    assert "Build succeeded" in page.inner_text("#build-log")
    screenshot(page, "model-version-page")

    page.set_viewport_size(PHONE)
    for path in (
        f"/models/{model.hash}/",
        f"/models/{model.hash}/versions/2/",
        f"/models/{model.hash}/versions/new/",
    ):
        page.goto(f"{url}{path}")
        _no_sideways_scroll(page)
    page.goto(f"{url}/models/{model.hash}/")
    screenshot(page, "model-versions-390px")


def test_promoting_as_a_version_takes_the_models_name_and_operation(page, live_server, cast):
    model = MLModel.objects.create(
        name="Batch scorer", group=cast.group, operation="Async", model_reference="score", python_version=PYTHON,
        input_type="csv", source_file="app.py", model_file="model.pkl", requirements_file="requirements.txt",
        status="Deployed", created_by=cast.owner,
    )  # fmt: skip
    experiment = make_experiment(cast.group, cast.owner, name="Churn")
    finished_run(experiment)
    page.goto(f"{live_server.url}/training/{experiment.hash}/runs/1/")
    assert page.is_visible("#id_name") and page.is_enabled("#id_operation_0")
    page.select_option("#id_version_of", model.hash)
    assert not page.is_visible("#id_name") and page.is_disabled("#id_name")  # the model's name, not sent
    assert page.is_checked("#id_operation_1") and page.is_disabled("#id_operation_0")  # Async only
    page.select_option("#id_version_of", "")
    assert page.is_visible("#id_name") and page.is_enabled("#id_operation_0")
