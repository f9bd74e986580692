"""The training pages in a real headless Chromium against Django's live server.

No worker runs: runs are put in their states directly in the database. The experiment
page sorts its runs table by the clicked column and charts the chosen metric; the run
form switches between Custom, External and AutoML (whose options show per split type,
with the chosen CSV's columns offered), uploads with a progress bar, shows the server's
errors at their fields and lands on the run page, which follows the run's status until
it has finished; an AutoML run's page draws its ROC and KS curves and importances. A journey with a real training run lives with the
end-to-end tests. Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import re

import pytest
from django.utils import timezone

from models_app.models import MLModel
from tests.helpers.browser import WatchedPages, file_payload, give_session, screenshot
from tests.helpers.training import TRAIN_SOURCE, finished_run, make_experiment
from tests.training.test_pages import automl_files, automl_run  # noqa: F401  (automl_files: a fixture)
from training.models import TrainingRun

pytestmark = [pytest.mark.browser]


@pytest.fixture
def page(browser, live_server):
    """A page of a fresh context; the test fails if the page throws or fetches offsite."""
    pages = WatchedPages(browser, live_server)
    yield pages.open()
    pages.check()


def login(page, live_server, user) -> None:
    give_session(page, live_server, user)


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
    # A Failed External run keeps the metrics it was uploaded with: after every Succeeded run.
    finished_run(experiment, number=5, name="unloadable", status="Failed", metrics={"auc": 0.99})
    login(page, live_server, cast.teammate)
    page.goto(f"{live_server.url}/training/{experiment.hash}/")
    assert rows(page) == [5, 4, 3, 2, 1]
    assert sort_state(page) == {"number": "descending"}

    auc = "#runs-table th[data-column='metric:auc'] button"
    page.click(auc)
    assert rows(page) == [1, 3, 2, 5, 4]  # numerically, the run without the metric last
    assert sort_state(page) == {"metric:auc": "ascending"}
    page.click(auc)
    assert rows(page) == [2, 3, 1, 5, 4]
    assert sort_state(page) == {"metric:auc": "descending"}
    page.click("#runs-table th[data-column='name'] button")
    assert rows(page) == [3, 1, 4, 2, 5]  # another, baseline, broken, tuned, unloadable
    page.click("#runs-table th[data-column='number'] button")
    assert rows(page) == [1, 2, 3, 4, 5]

    # The chart: one point per run that has the chosen metric, higher values drawn higher.
    assert page.input_value("#metric-select") == "auc"
    points = page.eval_on_selector_all(
        "#metric-chart svg circle.chart-point",
        "cs => cs.map(c => [Number(c.dataset.run), Number(c.dataset.value), Number(c.getAttribute('cy'))])",
    )
    assert [(run, value) for run, value, _ in points] == [(1, 0.7), (2, 0.95), (3, 0.8), (5, 0.99)]
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
        "() => document.getElementById('run-log').textContent.includes('Building the environment')"
    )
    # What a worker leaves behind: the page reloads once to show it.
    run.delete()
    finished_run(experiment, metrics={"auc": 0.91}, log="Building the environment\nTraining succeeded.\n")
    page.wait_for_selector("#run-status.badge-Succeeded")
    # The badge changes in place first; the promote form comes with the reload after it.
    page.wait_for_selector("#promote-form")
    assert page.is_visible("#promote-form") and page.is_visible("#artifacts-zip")
    assert "0.91" in page.inner_text("#run-metrics")
    assert "Training succeeded." in page.inner_text("#run-log")
    # Sync by default: the schema fields show, the sample is for Async models only (once
    # the reloaded page's scripts have run: the form comes before them).
    page.wait_for_selector("#id_sample", state="hidden")
    assert page.is_visible("#id_schema")
    page.check("#id_operation_1")
    assert page.is_visible("#id_sample") and not page.is_visible("#id_schema")
    screenshot(page, "training-run-succeeded")
    assert json.loads(page.text_content("#run-config"))["status"] == "Succeeded"


def test_a_refused_promotion_keeps_the_chosen_files(page, live_server, cast):
    """The promote form sends with upload_form.js: the server's errors come back to their
    fields and the files stay chosen."""
    experiment = make_experiment(cast.group, cast.owner, name="Churn")
    finished_run(experiment)
    login(page, live_server, cast.owner)
    page.goto(f"{live_server.url}/training/{experiment.hash}/runs/1/")
    page.fill("#id_name", "")
    page.set_input_files(
        "#id_source", files=[file_payload("app.py", "def score(data, base_path):\n    return {'ok': True}\n")]
    )
    page.fill("#id_schema_text", '{"a": 1}')
    page.click("#promote-submit")
    page.wait_for_selector("#id_name_error p.error")
    assert page.inner_text("#id_name_error") == "Give the model a name."
    assert "Please correct the field marked below." in page.inner_text("#form-summary")
    assert page.evaluate("() => document.getElementById('id_source').files.length") == 1
    assert not MLModel.objects.exists()
    page.fill("#id_name", "Churn scorer")
    page.click("#promote-submit")
    page.wait_for_selector(".messages:has-text('Churn scorer was created from run 1')")
    assert page.url == f"{live_server.url}/models/{MLModel.objects.get().hash}/"


# --- AutoML ---------------------------------------------------------------------------------


def visible(page, *selectors: str) -> list[bool]:
    return [page.is_visible(selector) for selector in selectors]


@pytest.mark.usefixtures("automl_files")
def test_automl_form_shows_each_split_types_options_and_offers_the_csvs_columns(page, live_server, cast):
    experiment = make_experiment(cast.group, cast.owner, name="Cancer")
    login(page, live_server, cast.owner)
    page.goto(f"{live_server.url}/training/{experiment.hash}/")
    page.click("#new-automl-run-link")
    page.wait_for_url(f"{live_server.url}/training/{experiment.hash}/runs/new/?type=AutoML")
    assert page.is_checked("#id_training_type_2")
    # The training data and the search's options; no script, requirements or .env.
    assert visible(page, "#id_train_data", "#id_automl-target", "#id_automl-models_0") == [True] * 3
    assert visible(page, "#id_source", "#id_requirements", "#id_env", "#id_X_train") == [False] * 4
    assert page.is_visible("#automl-environment")
    sections = page.eval_on_selector_all(".form-section:not([hidden])", "ss => ss.map(s => s.id)")
    assert sections == [
        "run-section",
        "environment-section",
        "data-fields",
        "automl-fields",
    ]  # steps are numbered by CSS counters

    options = [
        "#id_automl-val_size",
        "#id_automl-holdout_size",
        "#id_automl-stratify_col",
        "#id_automl-date_col",
    ]
    oot = ["#id_automl-oot_split_size", "#id_automl-split_date"]
    assert visible(page, *options, *oot) == [True, True, False, False, False, False]  # random
    page.check("#id_automl-split_type_1")  # stratified
    assert visible(page, *options, *oot) == [True, True, True, False, False, False]
    page.check("#id_automl-split_type_2")  # out of time
    assert visible(page, *options, *oot) == [True, False, False, True, True, False]
    page.check("#id_automl-oot_by_1")  # from a date
    assert visible(page, *oot) == [False, True]
    page.check("#id_automl-split_type_0")
    # An uploaded conf.json instead of the fields.
    page.check("#id_automl-conf_source_1")
    assert page.is_visible("#id_conf_dict") and not page.is_visible("#id_automl-target")
    page.check("#id_automl-conf_source_0")
    assert not page.is_visible("#id_conf_dict") and page.is_visible("#id_automl-target")

    # The chosen CSV's columns, read in the browser from its first line.
    header = '\ufeffmean_radius,"texture",city,target\r\n'
    rows = "".join(f"{10 + i % 7}.5,{i % 5},{'SP' if i % 2 else 'RJ'},{i % 2}\n" for i in range(60))
    page.set_input_files("#id_train_data", files=[_file("cancer.csv", header + rows, "text/csv")])
    page.wait_for_function("() => document.querySelectorAll('#automl-columns option').length === 4")
    columns = page.eval_on_selector_all("#automl-columns option", "os => os.map(o => o.value)")
    assert columns == ["mean_radius", "texture", "city", "target"]
    assert page.inner_text("#automl-columns-note").startswith("4 columns read from cancer.csv")
    assert page.get_attribute("#id_automl-target", "list") == "automl-columns"
    page.select_option("#id_automl-sep", ";")
    assert (
        page.inner_text("#automl-columns-note")
        == "Only one column found in cancer.csv: is the separator right?"
    )
    page.select_option("#id_automl-sep", ",")
    page.check("#automl-cat-cols-picker input[value=city]")
    assert page.input_value("#id_automl-cat_cols") == "city"
    page.fill("#id_automl-target", "target")

    # The server's problems, all at once, at the top of the configuration.
    page.fill("#id_run_name", "First search")
    page.fill("#id_automl-iterations", "0")
    for box in page.query_selector_all("#automl-stage-models input"):
        box.uncheck()
    page.click("#run-submit")
    page.wait_for_selector("#form-errors")
    problems = page.eval_on_selector_all("#id_conf_dict_error p", "ps => ps.map(p => p.textContent)")
    assert problems == [
        "iterations must be a whole number from 1 to 500, not 0.",
        "stages.models must be a non-empty list of logreg, rf, dt, lightgbm, xgboost, catboost.",
    ]
    assert page.is_visible("#id_conf_dict_error")
    screenshot(page, "training-automl-form-errors")

    page.fill("#id_automl-iterations", "4")
    page.check("#automl-stage-models input[value=lightgbm]")
    page.check("#automl-stage-models input[value=logreg]")
    page.check("#id_automl-split_type_1")
    page.fill("#id_automl-stratify_col", "city")
    page.click("#run-submit")
    page.wait_for_url(f"{live_server.url}/training/{experiment.hash}/runs/1/")
    run = TrainingRun.objects.get(experiment=experiment)
    conf = json.loads((run.work_folder / "automl_conf.json").read_text())
    assert (run.training_type, conf["target"], conf["cat_cols"], conf["iterations"]) == (
        "AutoML",
        "target",
        ["city"],
        4,
    )
    assert (conf["split_type"], conf["stratify_col"]) == ("stratified", "city")
    assert conf["stages"]["models"] == ["logreg", "lightgbm"]
    assert "<dt>Target</dt>" in page.inner_html("#automl-config-props")

    # A parquet file has no separator and its columns are not read here.
    page.goto(f"{live_server.url}/training/{experiment.hash}/runs/new/?type=AutoML")
    page.set_input_files(
        "#id_train_data", files=[_file("cancer.parquet", b"PAR1", "application/octet-stream")]
    )
    assert not page.is_visible("#id_automl-sep")
    assert "is parquet" in page.inner_text("#automl-columns-note")


def test_automl_run_page_draws_the_roc_curve_the_ks_chart_and_the_importance_bars(page, live_server, cast):
    experiment = make_experiment(cast.group, cast.owner, name="Cancer")
    automl_run(experiment)
    login(page, live_server, cast.teammate)
    page.goto(f"{live_server.url}/training/{experiment.hash}/runs/1/")

    roc = page.wait_for_selector("#roc-chart svg path.roc-curve")
    assert roc.get_attribute("data-points") == "4"
    commands = re.findall(r"([ML])([\d.]+),([\d.]+)", roc.get_attribute("d"))
    assert [c for c, _x, _y in commands] == ["M", "L", "L", "L"]
    xs, ys = [float(x) for _c, x, _y in commands], [float(y) for _c, _x, y in commands]
    assert xs == sorted(xs) and ys == sorted(ys, reverse=True)  # up and to the right (SVG y grows down)
    diagonal = page.query_selector("#roc-chart svg line.chart-diagonal")
    assert (float(diagonal.get_attribute("x1")), float(diagonal.get_attribute("y2"))) == (xs[0], ys[-1])
    assert page.inner_text("#roc-caption").startswith("ROC curve on the holdout: AUC 0.98.")

    tpr = page.get_attribute("#ks-chart svg path.ks-tpr", "d")
    fpr = page.get_attribute("#ks-chart svg path.ks-fpr", "d")
    assert len(re.findall(r"[ML]", tpr)) == 3 and len(re.findall(r"[ML]", fpr)) == 3
    gap = page.query_selector("#ks-chart svg line.ks-gap")
    assert gap.get_attribute("data-threshold") == "0.42"
    assert float(gap.get_attribute("y1")) > float(gap.get_attribute("y2"))  # from the FPR up to the TPR
    assert page.text_content("#ks-chart .ks-gap-label") == "KS 0.85"
    assert page.inner_text("#ks-caption").startswith("KS 0.85 at threshold 0.42")

    widths = page.eval_on_selector_all(
        "#importances-table .importance-bar", "bs => bs.map(b => b.getBoundingClientRect().width)"
    )
    assert len(widths) == 20 and widths == sorted(widths, reverse=True) and widths[-1] > 0
    assert widths[0] / widths[19] == pytest.approx(25 / 6, rel=0.02)
    assert page.is_visible("#leaderboard-table tr.trial-error")
    page.click("#leaderboard-table tr[data-trial='3'] summary")
    assert page.is_visible("#leaderboard-table tr[data-trial='3'] dd code")
    # The promote form: a name and the operation; the input type for Async only.
    assert page.is_visible("#id_name") and not page.is_visible("#id_input_type")
    page.check("#id_operation_1")
    assert page.is_visible("#id_input_type")
    screenshot(page, "training-automl-run")
