"""The Monitoring tab in a real headless Chromium against Django's live server.

No worker runs: the monitor and its periods are rows put in the database. The charts
are drawn by the vendored Chart.js (static/vendor/chartjs/) from the monitoring API with
the session: PSI lines with the thresholds, the columns × periods heat map (insufficient
cells apart), and the reference-vs-period histogram that follows the chosen column and
period. Nothing is fetched from outside the portal, and the page fits a 390 px phone.
Screenshots go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from monitoring.drift import Binning
from monitors.models import ColumnResult, Monitor, Period
from tests.helpers.browser import file_payload, give_session, screenshot
from tests.helpers.monitors import (
    CATEGORICAL,
    NUMERIC,
    PREPROCESS,
    configuration,
    deployed_model,
    make_monitor,
    make_period,
    reference_run,
)

pytestmark = [pytest.mark.browser]


def open_page(browser, live_server, width: int, height: int):
    context = browser.new_context(viewport={"width": width, "height": height})
    page = context.new_page()
    page.set_default_timeout(20_000)
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    return context, page, requests, errors


@pytest.fixture
def opened(browser, live_server):
    """(page, requests, errors) of a desktop-sized page; checked for offsite requests and errors."""
    context, page, requests, errors = open_page(browser, live_server, 1366, 900)
    yield page, requests
    context.close()
    offsite = [url for url in requests if not url.startswith((live_server.url, "data:", "blob:"))]
    assert offsite == [], f"the page fetched from outside the portal: {offsite}"
    assert errors == [], f"JavaScript errors: {errors}"


def login(page, live_server, user) -> None:
    give_session(page, live_server, user)


@pytest.fixture
def monitored(cast):
    """A Validated monitor with three compared periods (stable, drift, insufficient) and a failed one."""
    run = reference_run(cast.group)
    model = deployed_model(cast.group, run, name="Churn scorer")
    monitor = make_monitor(model, run, warning_threshold=0.1, drift_threshold=0.25)
    make_period(monitor, 1, psi=0.02, outputs=False)
    drifted = make_period(monitor, 2, drift_status="drift", psi=0.42, outputs=False)
    make_period(monitor, 3, drift_status="insufficient", psi=None, outputs=False)
    make_period(monitor, 4, status=Period.Status.FAILED)
    ColumnResult.objects.create(
        period=drifted,
        role="output",
        column="pred",
        binning=NUMERIC,
        reference_counts=[250, 150, 100, 0],
        period_counts=[5, 15, 40, 0],
        psi=0.6,
        status="drift",
    )
    return model


def wait_charts(page) -> None:
    page.wait_for_selector("#charts[data-ready=true]", state="attached")


def chart(page, selector: str) -> dict:
    """What a canvas's Chart instance holds: type, labels, datasets' labels and data."""
    return page.evaluate(
        """(selector) => {
            const chart = Chart.getChart(document.querySelector(selector));
            if (!chart) return null;
            return {
                type: chart.config.type,
                labels: chart.data.labels,
                datasets: chart.data.datasets.map((d) => ({label: d.label, data: d.data})),
            };
        }""",
        selector,
    )


def test_charts_are_drawn_from_the_vendored_library_and_the_api(opened, live_server, cast, monitored):
    page, requests = opened
    login(page, live_server, cast.teammate)
    page.goto(f"{live_server.url}/models/{monitored.hash}/monitoring/")
    wait_charts(page)
    assert page.evaluate("typeof window.Chart") == "function"
    assert page.evaluate("Chart.version") == "4.6.1"
    assert page.evaluate("Chart.registry.getController('matrix') !== undefined")
    static = [url for url in requests if "/static/vendor/chartjs/" in url]
    assert any(url.endswith("chart.umd.js") for url in static)
    assert any(url.endswith("chartjs-chart-matrix.min.js") for url in static)
    assert f"{live_server.url}/api/v1/monitoring/{monitored.hash}/periods" in requests

    # (a) PSI per input column, oldest period first; the thresholds are flat lines.
    psi = chart(page, "#psi-chart")
    assert psi["type"] == "line"
    assert psi["labels"] == ["2026-05-01", "2026-05-02", "2026-05-03"]
    assert [d["label"] for d in psi["datasets"]] == ["age", "city", "Warning threshold", "Drift threshold"]
    assert psi["datasets"][0]["data"] == [0.02, 0.42, None]  # no PSI where the rows were too few
    assert psi["datasets"][2]["data"] == [0.1, 0.1, 0.1] and psi["datasets"][3]["data"] == [0.25] * 3

    # (b) The heat map: a cell per column and period, insufficient ones drawn apart.
    heat = page.evaluate(
        """() => {
            const chart = Chart.getChart(document.querySelector('#heatmap-chart'));
            const meta = chart.getDatasetMeta(0);
            return {
                type: chart.config.type,
                y: chart.scales.y.getLabels(),
                cells: chart.data.datasets[0].data.map((c, i) => ({
                    x: c.x, y: c.y, status: c.status,
                    color: meta.data[i].options.backgroundColor,
                    border: meta.data[i].options.borderWidth,
                })),
            };
        }"""
    )
    assert heat["type"] == "matrix"
    assert heat["y"] == ["age", "city", "pred (output)"]
    assert len(heat["cells"]) == 7  # 2 columns × 3 periods, and the drifted period's output
    by_place = {(c["x"], c["y"]): c for c in heat["cells"]}
    stable, drift, thin = (by_place[(f"2026-05-0{d}", "age")] for d in (1, 2, 3))
    assert (stable["status"], drift["status"], thin["status"]) == ("stable", "drift", "insufficient")
    assert len({stable["color"], drift["color"], thin["color"]}) == 3
    assert thin["border"] > stable["border"]

    # (c) The histogram opens on the newest period and its most drifting column.
    assert page.input_value("#histogram-period") == str(Period.objects.get(start__day=3).pk)
    histogram = chart(page, "#histogram-chart")
    assert histogram["type"] == "bar"
    assert histogram["labels"] == Binning.from_json(NUMERIC).labels()
    assert [d["label"] for d in histogram["datasets"]] == ["Reference", "Period 2026-05-03"]
    assert histogram["datasets"][0]["data"] == [0.2, 0.4, 0.4, 0.0]
    assert histogram["datasets"][1]["data"] == pytest.approx([10 / 60, 20 / 60, 30 / 60, 0.0])
    screenshot(page, "model-monitoring")


def test_histogram_follows_the_chosen_column_and_period(opened, live_server, cast, monitored):
    page, requests = opened
    login(page, live_server, cast.owner)
    page.goto(f"{live_server.url}/models/{monitored.hash}/monitoring/")
    wait_charts(page)
    options = page.eval_on_selector_all(
        "#histogram-column option", "os => os.map(o => [o.value, o.textContent])"
    )
    assert options == [["input:age", "age"], ["input:city", "city"], ["output:pred", "pred (output)"]]

    page.select_option("#histogram-column", "input:city")
    page.wait_for_function("() => document.querySelector('#histogram-chart').dataset.column === 'input:city'")
    city = chart(page, "#histogram-chart")
    assert city["labels"] == Binning.from_json(CATEGORICAL).labels()
    assert city["datasets"][0]["data"] == [0.5, 0.5, 0.0, 0.0]
    assert "city (categorical)" in page.inner_text("#histogram-caption")

    drifted = Period.objects.get(start__day=2)
    page.select_option("#histogram-period", str(drifted.pk))
    page.select_option("#histogram-column", "output:pred")
    page.wait_for_function(
        f"() => document.querySelector('#histogram-chart').dataset.period === '{drifted.pk}' && "
        "document.querySelector('#histogram-chart').dataset.column === 'output:pred'"
    )
    pred = chart(page, "#histogram-chart")
    assert [d["label"] for d in pred["datasets"]] == ["Reference", "Period 2026-05-02"]
    assert pred["datasets"][1]["data"] == pytest.approx([5 / 60, 15 / 60, 40 / 60, 0.0])
    assert "PSI 0.600, drift" in page.inner_text("#histogram-caption")
    # A period's bins are fetched once, however often it is chosen.
    page.select_option("#histogram-column", "input:age")
    page.wait_for_function("() => document.querySelector('#histogram-chart').dataset.column === 'input:age'")
    assert requests.count(f"{live_server.url}/api/v1/monitoring/{monitored.hash}/periods/{drifted.pk}") == 1


def test_the_tab_fits_a_390_px_phone(browser, live_server, cast, monitored):
    context, page, requests, errors = open_page(browser, live_server, 390, 844)
    try:
        login(page, live_server, cast.owner)
        page.goto(f"{live_server.url}/models/{monitored.hash}/monitoring/")
        wait_charts(page)
        sizes = page.evaluate(
            """() => ({
                page: document.documentElement.scrollWidth,
                viewport: document.documentElement.clientWidth,
                canvases: [...document.querySelectorAll('canvas')].map((c) => {
                    const box = c.getBoundingClientRect();
                    return [c.id, Math.round(box.left), Math.round(box.right), Math.round(box.height)];
                }),
            })"""
        )
        assert sizes["page"] <= sizes["viewport"] <= 390, sizes
        for name, left, right, height in sizes["canvases"]:
            assert left >= 0 and right <= sizes["viewport"] and height > 100, (name, sizes)
        # Still drawn with data at that width, and the histogram still answers.
        assert len(chart(page, "#psi-chart")["datasets"]) == 4
        page.select_option("#histogram-column", "input:city")
        page.wait_for_function(
            "() => document.querySelector('#histogram-chart').dataset.column === 'input:city'"
        )
        screenshot(page, "model-monitoring-390px")
        # The model page and its tab bar fit too.
        page.goto(f"{live_server.url}/models/{monitored.hash}/")
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth")
        assert page.is_visible("#monitoring-tab-link")
    finally:
        context.close()
    assert [url for url in requests if not url.startswith((live_server.url, "data:", "blob:"))] == []
    assert errors == []


def test_a_validation_is_followed_until_it_ends(opened, live_server, cast):
    page, _ = opened
    run = reference_run(cast.group)
    model = deployed_model(cast.group, run)
    monitor = make_monitor(model, run, status=Monitor.Status.VALIDATING, log="10:00:00 reading X_train\n")
    login(page, live_server, cast.owner)
    page.goto(f"{live_server.url}/models/{model.hash}/monitoring/")
    assert page.inner_text("#monitor-status") == "Validating"
    Monitor.objects.filter(pk=monitor.pk).update(log="10:00:00 reading X_train\n10:00:02 preprocess ok\n")
    page.wait_for_function(
        "() => document.querySelector('#monitor-log').textContent.includes('preprocess ok')"
    )
    assert page.inner_text("#monitor-status") == "Validating"  # the log follows in place
    Monitor.objects.filter(pk=monitor.pk).update(status=Monitor.Status.VALIDATED)
    page.wait_for_function("() => document.querySelector('#monitor-status').textContent === 'Validated'")
    assert "Compare this day" in page.inner_text("#run-period")  # the page came back whole


def test_a_signing_secret_is_typed_hidden_saved_and_never_shown_again(opened, live_server, cast, monitored):
    page, _requests = opened
    monitor = Monitor.objects.get(model=monitored)
    monitor.webhook_url = "https://hooks.example/drift"
    monitor.save()
    login(page, live_server, cast.owner)
    page.goto(f"{live_server.url}/models/{monitored.hash}/monitoring/")
    assert "not signed" in page.inner_text("#webhook-signing")
    secret_box = page.locator("#monitoring-settings input[name=webhook_secret]")
    assert secret_box.get_attribute("type") == "password"
    secret_box.fill("short")
    page.click("#monitoring-settings button[type=submit]")
    assert "at least 16 characters" in page.inner_text("#monitoring-settings")
    page.locator("#monitoring-settings input[name=webhook_secret]").fill("a-long-enough-signing-secret")
    page.click("#monitoring-settings button[type=submit]")
    page.wait_for_url("**/monitoring/#monitoring-settings")
    assert "are signed" in page.inner_text("#webhook-signing")
    assert page.locator("#monitoring-settings input[name=webhook_secret]").input_value() == ""
    assert "a-long-enough-signing-secret" not in page.content()
    screenshot(page, "model-monitoring-webhook-signed")
    monitor.refresh_from_db()
    assert monitor.webhook_secret() == "a-long-enough-signing-secret"


def test_a_refused_registration_keeps_the_chosen_files(opened, live_server, cast):
    """The form sends with upload_form.js: the server's errors come back to their fields
    and the files stay chosen, so fixing one field does not mean choosing them again."""
    page, _ = opened
    run = reference_run(cast.group)
    model = deployed_model(cast.group, run)
    login(page, live_server, cast.owner)
    page.goto(f"{live_server.url}/models/{model.hash}/monitoring/")
    page.set_input_files(
        "#register_configuration",
        files=[file_payload("config.json", json.dumps(configuration(Period="Fortnight")))],
    )
    page.set_input_files("#register_preprocess", files=[file_payload("preprocess.py", PREPROCESS)])
    page.fill("#register_preprocess_reference", "parse")
    page.click("#register-submit")
    page.wait_for_selector("#register_configuration_error p.error")
    assert "Period must be one of Day, Week, Month, Year" in page.inner_text("#register_configuration_error")
    assert page.get_attribute("#register_configuration", "aria-invalid") == "true"
    chosen = "(selector) => document.querySelector(selector).files.length"
    assert (
        page.evaluate(chosen, "#register_preprocess") == 1
        and page.evaluate(chosen, "#register_configuration") == 1
    )
    assert not Monitor.objects.exists()
    page.set_input_files(
        "#register_configuration", files=[file_payload("config.json", json.dumps(configuration()))]
    )
    page.click("#register-submit")
    page.wait_for_selector(".messages:has-text('Monitoring registered')")
    assert page.inner_text("#monitor-status") == "Unvalidated"
    assert Monitor.objects.get(model=model).preprocess_reference == "parse"


def test_an_earlier_registrations_periods_are_not_charted(opened, live_server, cast, monitored):
    """Registered again on May 2nd: May 1st was counted against the earlier reference."""
    again = datetime(2026, 5, 2, tzinfo=UTC)
    Monitor.objects.filter(model=monitored).update(registered_at=again)
    Period.objects.filter(monitor__model=monitored, start__gte=again).update(registered_at=again)
    page, _requests = opened
    login(page, live_server, cast.teammate)
    page.goto(f"{live_server.url}/models/{monitored.hash}/monitoring/")
    wait_charts(page)
    assert chart(page, "#psi-chart")["labels"] == ["2026-05-02", "2026-05-03"]


def test_running_periods_are_followed_without_fetching_every_period(opened, live_server, cast, monitored):
    """While a period runs, each tick asks for the monitor and the unfinished periods only:
    the whole list (every period, 365 a year for a Day monitor) is read once per page
    load, for the charts. A new period, and one that finishes, reload the page."""
    page, requests = opened
    monitor = Monitor.objects.get(model=monitored)
    running = make_period(monitor, 5, status=Period.Status.RUNNING)
    login(page, live_server, cast.owner)
    tab = f"{live_server.url}/models/{monitored.hash}/monitoring/"
    listed = f"{live_server.url}/api/v1/monitoring/{monitored.hash}/periods"
    unfinished = f"{listed}?status=Queued,Running"
    page.goto(tab)
    wait_charts(page)
    with page.expect_request(lambda request: request.url == unfinished):
        pass  # a tick has asked
    scheduled = make_period(monitor, 6, status=Period.Status.QUEUED)
    page.wait_for_selector(f'#periods-table tr[data-period="{scheduled.pk}"][data-status="Queued"]')
    Period.objects.filter(pk__in=[running.pk, scheduled.pk]).update(status=Period.Status.SUCCEEDED)
    page.wait_for_selector(f'#periods-table tr[data-period="{running.pk}"][data-status="Succeeded"]')
    wait_charts(page)
    loads = requests.count(tab)
    assert loads == 3  # the first, the new period, the finished ones
    assert requests.count(listed) == loads  # the charts' list, once per load
    assert requests.count(unfinished) >= 2
    details = {
        f"{listed}/{period.pk}" for period in Period.objects.filter(monitor=monitor)
    }  # the histogram's
    monitor_url = f"{live_server.url}/api/v1/monitoring/{monitored.hash}"
    assert {url for url in requests if "/api/v1/" in url} <= {listed, unfinished, monitor_url, *details}
