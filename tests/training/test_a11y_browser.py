"""Keyboard and screen-reader access to what the scripts draw, in a real headless Chromium.

The training page's metric chart is a group (not an image) whose points are links named
after their run, reached with Tab and ringed while they have the keyboard's focus; its
numbers are written the page's language's way, as the runs table writes them. Code and
text blocks that may scroll (examples, a run's parameters, conf.json, the frozen
requirements) are reachable with the keyboard and named. A model's version whose status
changes is announced in one short line (the versions section, replaced whole, is no live
region). The Monitoring tab's charts write their numbers the page's language's way. No
worker runs: runs, versions and periods are put in their states in the database.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from models_app.models import MLModel
from tests.helpers.browser import ARTIFACTS, WatchedPages
from tests.helpers.monitors import deployed_model, make_monitor, make_period, reference_run
from tests.helpers.training import finished_run, make_experiment
from tests.portal.test_version_pages import model, v2  # noqa: F401  (fixtures)
from tests.training.test_pages import automl_files, automl_run  # noqa: F401  (automl_files: a fixture)

pytestmark = [pytest.mark.browser]


@pytest.fixture
def opened(browser, live_server):
    """A function opening a logged-in page in the given language; each page fails the test
    if it throws or fetches from outside the portal."""
    pages = WatchedPages(browser, live_server)
    yield lambda user, locale="en-US", width=1366: pages.open(
        user, locale=locale, viewport={"width": width, "height": 900}
    )
    pages.check()


def screenshot_path(name: str):
    """Where a screenshot of part of a page goes, for reviewers (test-artifacts/screenshots/)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS / f"{name}.png"


# --- the metric chart -----------------------------------------------------------------------

FOCUSED = """() => {
  const link = document.activeElement;
  if (!link.matches("#metric-chart a.chart-point-link")) return null;
  const ring = link.querySelector(".chart-point-ring");
  const dot = link.querySelector(".chart-point");
  return {
    run: Number(dot.dataset.run),
    ring: ring.getAttribute("visibility"),
    ringRadius: Number(ring.getAttribute("r")),
    ringWidth: Number(ring.getAttribute("stroke-width")),
    dotRadius: Number(getComputedStyle(dot).r.replace("px", "")),
    ringsShown: document.querySelectorAll("#metric-chart .chart-point-ring[visibility=visible]").length,
  };
}"""


def test_the_metric_charts_points_are_named_links_the_keyboard_reaches_and_rings(opened, live_server, cast):
    experiment = make_experiment(cast.group, cast.owner, name="Churn")
    finished_run(experiment, number=1, name="baseline", metrics={"auc": 0.87})
    finished_run(experiment, number=2, name="tuned", metrics={"auc": 0.95})
    finished_run(experiment, number=3, name="broken", status="Failed", metrics={"auc": 0.9125})
    page = opened(cast.owner, "pt-BR")
    page.goto(f"{live_server.url}/training/{experiment.hash}/")
    assert page.get_attribute("html", "lang") == "pt-br"

    # A group (an image's children are presentational: its links could not be reached),
    # named by its title and described by its summary.
    svg = page.locator("#metric-chart svg")
    assert svg.get_attribute("role") == "group"
    assert page.locator("#metric-chart [role=img]").count() == 0
    assert page.get_by_role("group", name=re.compile("auc")).count() == 1
    # Each point is a link named after its run, its state and its value, as the table writes it.
    assert page.locator("#metric-chart a.chart-point-link").count() == 3
    assert page.get_by_role("link", name=re.compile(r"\bbaseline\b.*auc = 0,87$")).count() == 1
    assert page.get_by_role("link", name=re.compile(r"\bbroken, Failed\b.*auc = 0,9125$")).count() == 1
    assert "0,87" in page.inner_text("#runs-table")
    # The axis's numbers and the description too: "0,9", never "0.9".
    ticks = page.eval_on_selector_all("#metric-chart text.chart-tick", "ts => ts.map(t => t.textContent)")
    assert any("," in tick for tick in ticks) and not any("." in tick for tick in ticks), ticks
    desc = page.text_content("#metric-chart-desc")
    assert "0,87" in desc and "0.87" not in desc, desc
    # The drawing (grid, axes, line) is hidden from assistive technology.
    assert page.locator("#metric-chart .chart-grid[aria-hidden=true]").count() == 1

    # The keyboard: from the metric's menu, Tab goes to the first point, whose ring shows.
    page.focus("#metric-select")
    page.keyboard.press("Tab")
    first = page.evaluate(FOCUSED)
    assert first is not None, "Tab did not reach the chart's first point"
    assert first["run"] == 1 and first["ring"] == "visible" and first["ringsShown"] == 1
    assert first["ringRadius"] >= first["dotRadius"] + 3 and first["ringWidth"] >= 2
    page.locator("#chart-card").screenshot(path=str(screenshot_path("training-chart-keyboard-focus-pt")))
    page.keyboard.press("Tab")
    second = page.evaluate(FOCUSED)
    assert second["run"] == 2 and second["ring"] == "visible" and second["ringsShown"] == 1
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.id") == "metric-select"
    assert page.locator("#metric-chart .chart-point-ring[visibility=visible]").count() == 0
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/training/{experiment.hash}/runs/1/")


def test_the_metric_charts_numbers_in_english(opened, live_server, cast):
    experiment = make_experiment(cast.group, cast.owner, name="Churn")
    finished_run(experiment, number=1, name="baseline", metrics={"auc": 0.87, "loss": 12345.678})
    finished_run(experiment, number=2, name="tuned", metrics={"auc": 0.95, "loss": 23456.5})
    page = opened(cast.owner, "en-US")
    page.goto(f"{live_server.url}/training/{experiment.hash}/")
    assert page.get_by_role("link", name=re.compile(r"auc = 0\.87$")).count() == 1
    page.select_option("#metric-select", "loss")
    assert page.get_by_role("link", name=re.compile(r"loss = 12,350$")).count() == 1
    # One caption, a polite live region, says which metric is drawn now.
    assert page.get_attribute("#metric-chart-caption", "aria-live") == "polite"
    assert page.get_attribute("#metric-chart", "aria-live") is None
    assert page.inner_text("#metric-chart-caption").startswith("loss of 2 runs")


# --- blocks that scroll ---------------------------------------------------------------------

BLOCKS = """() => [...document.querySelectorAll("pre")].filter((pre) => !pre.matches(".error-text")).map((pre) => {
  const named = (pre.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean)
    .map((id) => (document.getElementById(id) || {}).textContent || "").join(" ").trim();
  return { id: pre.id || pre.textContent.trim().slice(0, 30), tabIndex: pre.tabIndex, name: (pre.getAttribute("aria-label") || named).trim() };
})"""


def _blocks(page) -> list[dict]:
    blocks = page.evaluate(BLOCKS)
    for block in blocks:
        assert block["tabIndex"] == 0 and block["name"], block
    return blocks


def test_code_and_text_blocks_are_reached_with_the_keyboard_and_named(
    opened,
    live_server,
    cast,
    automl_files,  # noqa: F811
):
    experiment = make_experiment(cast.group, cast.owner)
    page = opened(cast.owner, "en-US", width=390)  # a phone: the examples scroll sideways

    page.goto(f"{live_server.url}/training/{experiment.hash}/runs/new/")
    names = [block["name"] for block in _blocks(page)]
    assert "The training function" in names
    scrolls = page.evaluate(
        "() => { const pre = document.querySelector('[data-training-type=Custom] pre'); return pre.scrollWidth > pre.clientWidth; }"
    )
    assert scrolls  # the reason it must be focusable
    pre = page.locator("[data-training-type=Custom] pre")
    pre.focus()
    assert page.evaluate("document.activeElement.closest('[data-training-type=Custom]') !== null")
    page.keyboard.press("ArrowRight")  # the keyboard scrolls it (smoothly: wait for it)
    for _ in range(40):
        if pre.evaluate("pre => pre.scrollLeft") > 0:
            break
        page.wait_for_timeout(50)
    assert pre.evaluate("pre => pre.scrollLeft") > 0

    page.goto(f"{live_server.url}/models/new/")
    names = [block["name"] for block in _blocks(page)]
    assert "The scoring script (Sync)" in names and "The scoring script (Async)" in names

    run = automl_run(experiment, params={"seed": 42, "notes": "x" * 300})
    page.goto(f"{live_server.url}/training/{experiment.hash}/runs/{run.number}/")
    names = [block["name"] for block in _blocks(page)]
    assert "Other" in names and "As conf.json" in names
    assert any(name.startswith("Installed (frozen)") for name in names), names


# --- a version's status --------------------------------------------------------------------


def test_a_versions_new_status_is_announced_in_one_line(opened, live_server, cast, model, v2):  # noqa: F811
    assert v2.status == MLModel.Status.READY
    page = opened(cast.owner, "en-US")
    page.goto(f"{live_server.url}/models/{model.hash}/")
    assert page.locator("#versions tr[data-version='2'][data-status-url]").count() == 1
    # The section is replaced when a status changes: nothing in it is a live region.
    assert page.locator("#versions [aria-live], #versions[aria-live]").count() == 0
    MLModel.objects.filter(pk=v2.pk).update(status=MLModel.Status.FAILED)
    page.wait_for_selector("#versions tr[data-version='2'][data-status='Failed']")
    expect(page.locator("#announcer")).to_have_text("Version 2: Failed")
    assert page.get_attribute("#announcer", "role") == "status"


# --- the Monitoring tab's charts ------------------------------------------------------------

HEAT_LABEL = """() => {
  const chart = Chart.getChart(document.getElementById("heatmap-chart"));
  return chart.options.plugins.tooltip.callbacks.label({ raw: { v: 0.05, status: "stable", rows: 12345 } });
}"""


def test_the_monitoring_charts_write_numbers_the_pages_languages_way(opened, live_server, cast):
    run = reference_run(cast.group)
    monitored = deployed_model(cast.group, run, name="Churn scorer")
    monitor = make_monitor(monitored, run)
    make_period(monitor, 1, psi=0.0123, age_counts=(5000, 4000, 3345, 0), outputs=False)
    # Portuguese chosen with the EN/PT switch in an English browser: the page's language
    # decides, not the browser's (Chart.js would write the axes the browser's way).
    page = opened(cast.owner, "en-US")
    page.context.add_cookies([{"name": "django_language", "value": "pt-br", "url": live_server.url}])
    page.goto(f"{live_server.url}/models/{monitored.hash}/monitoring/")
    assert page.get_attribute("html", "lang") == "pt-br"
    page.wait_for_selector("#charts[data-ready=true]", state="attached")
    caption = page.inner_text("#histogram-caption")
    # "numeric" is the API's column kind and "stable" a state name: both stay (docs/portal.md).
    assert caption.startswith("age (numeric): PSI 0,012, stable; 12.345 linhas"), caption
    assert page.evaluate(HEAT_LABEL) == "PSI 0,050 · stable · 12.345 linhas"
    ticks = page.evaluate(
        "() => Chart.getChart(document.getElementById('psi-chart')).scales.y.ticks.map((t) => t.label)"
    )
    decimals = [tick for tick in ticks if tick not in ("0", "1")]
    assert decimals and all("," in tick and "." not in tick for tick in decimals), ticks
