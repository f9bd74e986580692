"""The training pages in a real headless Chromium against Django's live server.

No worker runs: runs are put in their states directly in the database. The experiment
page sorts its runs table by the clicked column and charts the chosen metric; the run
form switches between Custom and External, uploads with a progress bar, shows the
server's errors at their fields and lands on the run page, which follows the run's
status until it has finished. A journey with a real training run lives with the
end-to-end tests. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from django.utils import timezone

from tests.helpers.browser import screenshot
from tests.helpers.cast import PASSWORD
from tests.helpers.training import TRAIN_SOURCE, finished_run, make_experiment
from training.models import TrainingRun

pytestmark = [pytest.mark.browser]


@pytest.fixture
def page(browser, live_server):
    """A page of a fresh context; the test fails if the page throws or fetches offsite."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    page = context.new_page()
    page.set_default_timeout(20_000)
    offsite, errors = [], []
    page.on(
        "request",
        lambda r: (
            offsite.append(r.url) if not r.url.startswith((live_server.url, "data:", "blob:")) else None
        ),
    )
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    context.close()
    assert offsite == [], f"the page fetched from outside the portal: {offsite}"
    assert errors == [], f"JavaScript errors: {errors}"


def login(page, live_server, user) -> None:
    """Give the browser the session of `user` (logged in through Django's test client)."""
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )


def rows(page) -> list[int]:
    return [
        int(n)
        for n in page.eval_on_selector_all(
            "#runs-table tbody tr[data-run]", "rs => rs.map(r => r.dataset.run)"
        )
    ]


def sort_state(page) -> dict[str, str]:
    return page.eval_on_selector_all(
        "#runs-table th[aria-sort]",
        "hs => Object.fromEntries(hs.map(h => [h.dataset.column, h.getAttribute('aria-sort')]))",
    )


def test_experiment_page_sorts_runs_and_charts_a_metric(page, live_server, cast):
    experiment = make_experiment(cast.group, cast.owner, name="Churn")
    finished_run(experiment, number=1, name="baseline", metrics={"auc": 0.7, "f1": 0.3})
    finished_run(experiment, number=2, name="tuned", metrics={"auc": 0.95})
    finished_run(experiment, number=3, name="another", metrics={"auc": 0.8, "f1": 0.6})
    finished_run(experiment, number=4, name="broken", status="Failed", metrics={}, error_message="boom")
    login(page, live_server, cast.teammate)
    page.goto(f"{live_server.url}/training/{experiment.hash}/")
    assert rows(page) == [4, 3, 2, 1]
    assert sort_state(page) == {"number": "descending"}

    auc = "#runs-table th[data-column='metric:auc'] button"
    page.click(auc)
    assert rows(page) == [1, 3, 2, 4]  # numerically, the run without the metric last
    assert sort_state(page) == {"metric:auc": "ascending"}
    page.click(auc)
    assert rows(page) == [2, 3, 1, 4]
    assert sort_state(page) == {"metric:auc": "descending"}
    page.click("#runs-table th[data-column='name'] button")
    assert rows(page) == [3, 1, 4, 2]  # another, baseline, broken, tuned
    page.click("#runs-table th[data-column='number'] button")
    assert rows(page) == [1, 2, 3, 4]

    # The chart: one point per run that has the chosen metric, higher values drawn higher.
    assert page.input_value("#metric-select") == "auc"
    points = page.eval_on_selector_all(
        "#metric-chart svg circle.chart-point",
        "cs => cs.map(c => [Number(c.dataset.run), Number(c.dataset.value), Number(c.getAttribute('cy'))])",
    )
    assert [(run, value) for run, value, _ in points] == [(1, 0.7), (2, 0.95), (3, 0.8)]
    heights = {run: cy for run, _, cy in points}
    assert heights[2] < heights[3] < heights[1]  # SVG y grows downwards
    labels = page.eval_on_selector_all(
        "#metric-chart svg text.chart-label", "ts => ts.map(t => t.textContent)"
    )
    assert labels == ["Run number", "auc"]
    assert page.locator("#metric-chart svg polyline.chart-line").count() == 1
    assert "1 without it is left out" in page.inner_text("#metric-chart-caption")
    screenshot(page, "training-experiment")

    page.select_option("#metric-select", "f1")
    runs = page.eval_on_selector_all(
        "#metric-chart svg circle.chart-point", "cs => cs.map(c => Number(c.dataset.run))"
    )
    assert runs == [1, 3]
    assert page.get_attribute("#metric-chart svg", "data-metric") == "f1"
    page.click("#metric-chart svg a[href$='/runs/3/']")
    page.wait_for_url(f"{live_server.url}/training/{experiment.hash}/runs/3/")


def _file(name: str, content: str | bytes, mime: str = "text/plain") -> dict:
    return {
        "name": name,
        "mimeType": mime,
        "buffer": content.encode() if isinstance(content, str) else content,
    }


def test_run_form_uploads_with_progress_and_lands_on_the_run_page(page, live_server, cast):
    experiment = make_experiment(cast.group, cast.owner, name="Churn")
    login(page, live_server, cast.owner)
    page.goto(f"{live_server.url}/training/{experiment.hash}/")
    page.click("#new-run-link")
    page.wait_for_url(f"{live_server.url}/training/{experiment.hash}/runs/new/")
    # Custom fields by default; External ones when that type is chosen.
    assert page.is_visible("#id_source") and not page.is_visible("#id_X_train")
    page.check("#id_training_type_1")
    assert page.is_visible("#id_X_train") and not page.is_visible("#id_source")
    page.check("#id_training_type_0")
    assert page.is_visible("#id_source")

    # Errors from the server, at their fields, without losing the chosen files.
    page.set_input_files("#id_source", files=[_file("train.py", TRAIN_SOURCE, "text/x-python")])
    page.click("#run-submit")
    page.wait_for_selector("#form-errors")
    assert page.inner_text("#id_run_name_error") == "Give the run a name."
    assert page.inner_text("#id_requirements_error") == "Upload requirements.txt (it may be empty)."
    assert page.inner_text("#id_train_data_error") == "Upload the training data (.csv or .parquet)."
    assert page.get_attribute("#id_requirements", "aria-invalid") == "true"
    assert page.eval_on_selector("#id_source", "input => input.files.length") == 1
    screenshot(page, "training-run-form-errors")

    page.fill("#id_run_name", "first try")
    rows_csv = "a,b,target\n" + "1,2,0\n3,4,1\n" * 400_000  # ~4.8 MB: the progress is seen moving
    page.set_input_files("#id_train_data", files=[_file("dados.csv", rows_csv, "text/csv")])
    page.set_input_files("#id_requirements", files=[_file("requirements.txt", "")])
    progress = []
    page.on("console", lambda m: progress.append(m.text) if m.text.startswith("progress ") else None)
    page.evaluate(
        """() => { const box = document.getElementById('run-progress');
                   const bar = box.querySelector('.progress-bar');
                   new MutationObserver(() => console.log('progress ' + (box.hidden ? 'hidden' : 'shown')
                     + ' ' + bar.getAttribute('aria-valuenow'))).observe(box, {attributes: true, subtree: true}); }"""
    )
    page.click("#run-submit")
    page.wait_for_url(f"{live_server.url}/training/{experiment.hash}/runs/1/")
    assert "progress shown 100" in progress, progress  # an XHR upload with its progress bar
    run = TrainingRun.objects.get(experiment=experiment)
    assert (run.name, run.status, run.train_file) == ("first try", "Requested", "dados.csv")
    assert (run.work_folder / "dados.csv").stat().st_size == len(rows_csv)
    assert page.inner_text("#run-status") == "Requested"
    assert "Run 1 is queued" in page.inner_text(".messages")
    screenshot(page, "training-run-requested")


def test_run_page_follows_the_run_until_it_ends(page, live_server, cast):
    experiment = make_experiment(cast.group, cast.owner, name="Churn")
    run = TrainingRun.objects.create(
        experiment=experiment, number=1, name="live", training_type="Custom", python_version="3.9"
    )
    login(page, live_server, cast.owner)
    page.goto(f"{live_server.url}/training/{experiment.hash}/runs/1/")
    assert page.inner_text("#run-status") == "Requested" and not page.is_visible("#promote-form")
    TrainingRun.objects.filter(pk=run.pk).update(
        status="Running", started_at=timezone.now(), attempts=1, log="Building the environment\n"
    )
    page.wait_for_selector("#run-status.badge-Running")
    page.wait_for_function(
        "document.getElementById('run-log').textContent.includes('Building the environment')"
    )
    # What a worker leaves behind: the page reloads once to show it.
    run.delete()
    finished_run(experiment, metrics={"auc": 0.91}, log="Building the environment\nTraining succeeded.\n")
    page.wait_for_selector("#run-status.badge-Succeeded")
    assert page.is_visible("#promote-form") and page.is_visible("#artifacts-zip")
    assert "0.91" in page.inner_text("#run-metrics")
    assert "Training succeeded." in page.inner_text("#run-log")
    # Sync by default: the schema fields show, the sample is for Async models only.
    assert page.is_visible("#id_schema") and not page.is_visible("#id_sample")
    page.check("#id_operation_1")
    assert page.is_visible("#id_sample") and not page.is_visible("#id_schema")
    screenshot(page, "training-run-succeeded")
    assert json.loads(page.text_content("#run-config"))["status"] == "Succeeded"
