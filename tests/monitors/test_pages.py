"""The Monitoring tab of a model's page (server side), and the monitoring badges of the
dashboard and the models list.

The tab gets the views' checklist: each state renders, a teammate can, an outsider and
a bad hash get 404, wrong methods 405, a bad form 400 with its errors beside the fields,
and a good one redirects (reloading does not post again). Monitors and periods are
created directly; the services' queueing (django-q2) is patched.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from models_app.models import MLModel
from monitors import display
from monitors.models import Monitor, Period
from tests.helpers.cast import PASSWORD
from tests.helpers.monitors import (
    configuration,
    deployed_model,
    form_data,
    make_monitor,
    make_period,
)


def _login(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def tab_url(model: MLModel, part: str = "") -> str:
    return f"/models/{model.hash}/monitoring/{part}"


def text(response) -> str:
    """The page's visible text, roughly: tags dropped, blanks collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


# --- the tab in each state --------------------------------------------------------------


def test_model_page_links_to_its_monitoring_tab(cast, model):
    page = _login(cast.owner).get(f"/models/{model.hash}/")
    assert f'href="{tab_url(model)}"' in page.content.decode()
    assert 'id="overview-tab-link" aria-current="page"' in page.content.decode()


def test_unmonitored_model_shows_the_registration_form(cast, model):
    page = _login(cast.teammate).get(tab_url(model))
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="monitoring-tab-link" aria-current="page"' in html
    assert "Not monitored" in text(page)
    form = re.search(r'<form[^>]*id="register-form"[^>]*>', html)[0]
    assert 'enctype="multipart/form-data"' in form and f'action="{tab_url(model, "register/")}"' in form
    for field in ("configuration", "preprocess", "preprocess_reference", "webhook_url", "drift_threshold"):
        assert f'id="register_{field}"' in html, field
    # Nothing to run, set or chart yet; the chart library is not even loaded.
    assert 'id="run-period"' not in html and 'id="monitoring-settings"' not in html
    assert "chart.umd.js" not in html


@pytest.mark.parametrize(
    ("status", "shown"),
    [
        (Monitor.Status.UNVALIDATED, "Unvalidated"),
        (Monitor.Status.VALIDATING, "Validating"),
        (Monitor.Status.VALIDATED, "Validated"),
        (Monitor.Status.INVALIDATED, "Invalidated"),
    ],
)
def test_each_status_is_shown_by_its_display_name(cast, model, run, status, shown):
    make_monitor(
        model,
        run,
        status=status,
        log="2026-05-01 10:00:00 reading the reference\n2026-05-01 10:00:01 InputCols: no column 'agee'\n",
        error_message="InputCols: X_train has no column agee (it has: age, city)."
        if shown == "Invalidated"
        else "",
    )
    page = _login(cast.owner).get(tab_url(model))
    assert page.status_code == 200
    badge = re.search(
        r'<span class="badge badge-lg badge-mon-(\w+)" id="monitor-status">(\w+)</span>',
        page.content.decode(),
    )
    assert badge.groups() == (shown, shown)
    assert "Running" not in text(page).replace("Running a", "")  # the stored value never shows
    has_log = 'id="monitor-log"' in page.content.decode()
    assert has_log == (shown in ("Validating", "Invalidated"))
    if has_log:
        assert "InputCols: no column &#x27;agee&#x27;" in page.content.decode()
    if shown == "Invalidated":
        assert "X_train has no column agee (it has: age, city)." in text(page)
    # Periods run only once Validated: the page says so before anyone tries.
    assert ("once the registration is Validated" in text(page)) == (shown != "Validated")


def test_validated_monitor_shows_details_periods_and_loads_the_charts(cast, model, run):
    monitor = make_monitor(model, run, warning_threshold=0.12, drift_threshold=0.3)
    make_period(monitor, 1)
    make_period(monitor, 2, drift_status="drift", psi=0.41)
    make_period(monitor, 3, status=Period.Status.FAILED)
    make_period(monitor, 4, status=Period.Status.QUEUED)
    page = _login(cast.teammate).get(tab_url(model))
    html = page.content.decode()
    assert f"run {run.number} of {run.experiment.name}" in text(page) and "500 rows" in text(page)
    assert "PSI ≥ 0.12 warning, ≥ 0.3 drift" in text(page)
    rows = re.findall(r'<tr data-period="(\d+)" data-status="(\w+)">', html)
    assert [status for _, status in rows] == ["Queued", "Failed", "Succeeded", "Succeeded"]  # newest first
    drift_row = html[html.index(f'data-period="{rows[2][0]}"') :].split("</tr>")[0]
    assert "2 May 2026" in drift_row and "0.410" in drift_row and "badge-drift-drift" in drift_row
    assert "preprocess raised KeyError" in text(page)
    assert "2 periods compared" in text(page)
    for script in (
        "vendor/chartjs/chart.umd.js",
        "vendor/chartjs/chartjs-chart-matrix.min.js",
        "js/monitoring.js",
    ):
        assert f'src="/static/{script}"' in html, script
    config = re.search(r'<script id="monitoring-config" type="application/json">(.*?)</script>', html)[1]
    assert f'"periodsUrl": "/api/v1/monitoring/{model.hash}/periods"' in config
    assert '"warning": 0.12' in config and '"drift": 0.3' in config
    assert '"following": true' in config  # a period is queued: the page follows it


def test_a_deleted_model_cannot_be_registered(cast, model):
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DELETED)
    client = _login(cast.owner)
    page = client.get(tab_url(model))
    assert "cannot be monitored" in text(page) and 'id="register-form"' not in page.content.decode()
    data, files = form_data()
    response = client.post(tab_url(model, "register/"), {**data, **files}, follow=True)
    assert "A deleted model cannot be monitored." in text(response)
    assert not Monitor.objects.exists()


# --- registration -----------------------------------------------------------------------


def test_registration_redirects_and_queues_the_validation(cast, model, run, queued):
    client = _login(cast.teammate)
    data, files = form_data(webhook_url="https://hooks.example/drift", drift_threshold="0.3")
    with mock.patch("django.db.transaction.on_commit", lambda callback, **kw: callback()):
        response = client.post(tab_url(model, "register/"), {**data, **files})
    assert response.status_code == 302 and response["Location"] == tab_url(model)
    monitor = Monitor.objects.get(model=model)
    assert monitor.status == Monitor.Status.UNVALIDATED and monitor.training_run == run
    assert (monitor.period, monitor.input_cols, monitor.drift_threshold) == ("Week", ["a", "b"], 0.3)
    assert monitor.registered_by == cast.teammate
    queued.assert_called_once()
    assert queued.call_args.args == ("monitors.tasks.validate_monitor", monitor.pk)
    page = client.get(response["Location"])
    assert "Monitoring registered" in text(page) and "Unvalidated" in text(page)


def test_invalid_registration_shows_the_errors_beside_their_fields(cast, model, queued):
    config = configuration(InputCols=[], Period="Fortnight")
    data, files = form_data(config, preprocess_reference="not a name")
    response = _login(cast.owner).post(tab_url(model, "register/"), {**data, **files})
    assert response.status_code == 400
    html = response.content.decode()
    config_errors = re.search(
        r'id="register_configuration_error" class="field-errors">(.*?)</div>', html, re.S
    )[1]
    assert "Period must be one of Day, Week, Month, Year" in config_errors
    assert "InputCols is empty" in config_errors
    reference_errors = re.search(
        r'id="register_preprocess_reference_error" class="field-errors">(.*?)</div>', html, re.S
    )[1]
    assert "error" in reference_errors  # the name's problem, at its field
    assert re.search(r"<details open>\s*<summary><h2 id=\"register-title\"", html)  # the form stays open
    assert not Monitor.objects.exists() and not queued.called


def test_registration_answers_the_upload_script_in_json(cast, model, run, queued):
    """The form's script (upload_form.js) keeps the chosen files on the page: it needs the
    errors, or where to go, as JSON."""
    client = _login(cast.owner)
    data, files = form_data(configuration(Period="Fortnight"))
    refused = client.post(
        tab_url(model, "register/"), {**data, **files}, HTTP_X_REQUESTED_WITH="XMLHttpRequest"
    )
    assert refused.status_code == 400 and list(refused.json()["errors"]) == ["configuration"]
    assert "Period must be one of Day, Week, Month, Year" in refused.json()["errors"]["configuration"][0]
    assert not Monitor.objects.exists()
    data, files = form_data()
    with mock.patch("django.db.transaction.on_commit", lambda callback, **kw: callback()):
        created = client.post(
            tab_url(model, "register/"), {**data, **files}, HTTP_X_REQUESTED_WITH="XMLHttpRequest"
        )
    assert created.status_code == 201 and created.json() == {"redirect": tab_url(model)}
    assert Monitor.objects.get(model=model).status == Monitor.Status.UNVALIDATED


def test_registering_a_deleted_model_answers_the_script_409(cast, model):
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DELETED)
    data, files = form_data()
    answer = _login(cast.owner).post(
        tab_url(model, "register/"), {**data, **files}, HTTP_X_REQUESTED_WITH="XMLHttpRequest"
    )
    assert answer.status_code == 409
    assert answer.json() == {"errors": {"__all__": ["A deleted model cannot be monitored."]}}


def test_missing_files_are_reported_at_their_fields(cast, model):
    response = _login(cast.owner).post(tab_url(model, "register/"), {"preprocess_reference": "parse"})
    assert response.status_code == 400
    html = response.content.decode()
    assert "Upload the monitoring configuration (a JSON file)." in html
    assert "Upload the preprocess script (a .py file)." in html


# --- run a period -----------------------------------------------------------------------


def test_run_a_period_queues_the_one_containing_the_day(cast, model, run, queued):
    monitor = make_monitor(model, run)
    response = _login(cast.owner).post(tab_url(model, "periods/"), {"date": "2026-05-20"})
    assert response.status_code == 302 and response["Location"] == tab_url(model) + "#periods"
    period = Period.objects.get(monitor=monitor)
    assert period.start == datetime(2026, 5, 20, tzinfo=UTC) and period.trigger == "demand"
    assert period.requested_by == cast.owner
    page = _login(cast.owner).get(tab_url(model))
    assert f'data-period="{period.pk}" data-status="Queued"' in page.content.decode()


def test_run_a_period_before_validation_says_why_not(cast, model, run, queued):
    make_monitor(model, run, status=Monitor.Status.VALIDATING)
    response = _login(cast.owner).post(tab_url(model, "periods/"), {"date": "2026-05-20"}, follow=True)
    assert response.redirect_chain[-1][0] == tab_url(model)
    assert "is Validating; periods run once it is Validated" in text(response)
    assert not Period.objects.exists() and not queued.called


def test_run_a_period_with_a_bad_date_is_a_400_at_the_field(cast, model, run, queued):
    make_monitor(model, run)
    response = _login(cast.owner).post(tab_url(model, "periods/"), {"date": "20/05/2026"})
    assert response.status_code == 400
    errors = re.search(
        r'id="run_date_error" class="field-errors">(.*?)</div>', response.content.decode(), re.S
    )[1]
    assert "Give a date as YYYY-MM-DD." in errors
    assert not Period.objects.exists()


def test_forms_of_an_unmonitored_model_say_to_register_first(cast, model):
    client = _login(cast.owner)
    for part, data in (("periods/", {"date": "2026-05-20"}), ("settings/", {"minimum_rows": "5"})):
        response = client.post(tab_url(model, part), data, follow=True)
        assert "not monitored yet: register it first" in text(response), part


# --- settings ---------------------------------------------------------------------------


def test_settings_are_saved_and_redirect(cast, model, run):
    monitor = make_monitor(model, run)
    data = {
        "webhook_url": "https://hooks.example/x",
        "warning_threshold": "0.2",
        "drift_threshold": "0.5",
        "minimum_rows": "30",
    }
    response = _login(cast.teammate).post(tab_url(model, "settings/"), data)
    assert response.status_code == 302 and response["Location"] == tab_url(model) + "#monitoring-settings"
    monitor.refresh_from_db()
    assert (
        monitor.webhook_url,
        monitor.warning_threshold,
        monitor.drift_threshold,
        monitor.minimum_rows,
    ) == (
        "https://hooks.example/x",
        0.2,
        0.5,
        30,
    )
    assert monitor.status == Monitor.Status.VALIDATED  # no new validation


def test_bad_settings_are_shown_beside_their_fields(cast, model, run):
    monitor = make_monitor(model, run)
    data = {"webhook_url": "", "warning_threshold": "0.5", "drift_threshold": "0.2", "minimum_rows": "0"}
    response = _login(cast.owner).post(tab_url(model, "settings/"), data)
    assert response.status_code == 400
    html = response.content.decode()
    drift = re.search(r'id="settings_drift_threshold_error" class="field-errors">(.*?)</div>', html, re.S)[1]
    assert "must be above the warning threshold (0.5)" in drift
    rows = re.search(r'id="settings_minimum_rows_error" class="field-errors">(.*?)</div>', html, re.S)[1]
    assert "error" in rows
    monitor.refresh_from_db()
    assert (monitor.warning_threshold, monitor.drift_threshold) == (0.1, 0.25)


# --- access and methods -----------------------------------------------------------------


def test_outsiders_and_bad_hashes_get_404(cast, model, run, queued):
    make_monitor(model, run)
    outsider = _login(cast.outsider)
    for part in ("", "register/", "settings/", "periods/"):
        method = outsider.get if part == "" else outsider.post
        assert method(tab_url(model, part)).status_code == 404, part
    assert _login(cast.owner).get("/models/Mnothing/monitoring/").status_code == 404
    assert Monitor.objects.get(model=model).status == Monitor.Status.VALIDATED and not queued.called


def test_admins_see_any_tab_and_anonymous_visitors_log_in(cast, model):
    assert _login(cast.admin).get(tab_url(model)).status_code == 200
    response = Client().get(tab_url(model))
    assert response.status_code == 302 and response["Location"].startswith("/login/")


def test_wrong_methods_answer_405_and_a_get_of_a_form_target_goes_to_the_tab(cast, model):
    client = _login(cast.owner)
    assert client.post(tab_url(model)).status_code == 405
    for part in ("register/", "settings/", "periods/"):
        reloaded = client.get(tab_url(model, part))  # the language switch reloads the form's answer
        assert (reloaded.status_code, reloaded["Location"]) == (302, tab_url(model)), part
        assert client.put(tab_url(model, part)).status_code == 405, part


# --- dashboard and models list ----------------------------------------------------------


@pytest.fixture
def fleet(cast, run):
    """Five models: drifting, stable (an older period drifted), insufficient, Invalidated, unmonitored."""
    models = {
        name: deployed_model(cast.group, run, name=name)
        for name in ("drifty", "steady", "thin", "broken", "plain")
    }
    drifty = make_monitor(models["drifty"], run)
    make_period(drifty, 1)
    make_period(drifty, 2, drift_status="drift", psi=0.4)
    make_period(drifty, 3, status=Period.Status.FAILED)  # not finished well: not the verdict
    steady = make_monitor(models["steady"], run)
    make_period(steady, 1, drift_status="drift", psi=0.5)
    make_period(steady, 2)
    make_period(make_monitor(models["thin"], run), 2, drift_status="insufficient", psi=None)
    broken = make_monitor(models["broken"], run, status=Monitor.Status.INVALIDATED, error_message="bad")
    make_period(broken, 1, drift_status="drift", psi=0.9)  # from before the re-registration: not shown
    return models


def badges_on(html: str) -> dict[str, str]:
    """{model name: its monitoring badge} of a table of models."""
    found = {}
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        name = re.search(r'<td class="name-cell"><a href="[^"]+">([^<]+)</a>', row)
        badge = re.search(r'data-monitoring="([^"]*)"', row)
        if name and badge:
            found[name[1]] = badge[1]
    return found


def test_dashboard_shows_badges_and_lists_drifting_models_first(cast, fleet):
    page = _login(cast.teammate).get("/")
    html = page.content.decode()
    assert badges_on(html) == {
        "drifty": "drift",
        "steady": "stable",
        "thin": "insufficient",
        "broken": "Invalidated",
        "plain": "",
    }
    alert = re.search(r'<section class="card drift-alert" id="drifted-models".*?</section>', html, re.S)[0]
    assert "Drift detected in 1 model" in alert
    assert re.findall(r'<li data-model="(\w+)">', alert) == [fleet["drifty"].hash]
    assert f'href="/models/{fleet["drifty"].hash}/monitoring/"' in alert
    assert "average PSI 0.400" in alert and "drifted: age" in alert
    assert html.index('id="drifted-models"') < html.index('id="dashboard-models"')  # on top
    # An outsider sees none of it.
    assert "drift-alert" not in _login(cast.outsider).get("/").content.decode()


def test_dashboard_without_drift_has_no_alert(cast, model, run):
    make_period(make_monitor(model, run), 1)
    html = _login(cast.owner).get("/").content.decode()
    assert 'id="drifted-models"' not in html and badges_on(html) == {"monitored": "stable"}


def test_models_list_shows_each_models_badge(cast, fleet):
    page = _login(cast.owner).get("/models/")
    assert page.status_code == 200
    badges = badges_on(page.content.decode())
    assert badges == {
        "drifty": "drift",
        "steady": "stable",
        "thin": "insufficient",
        "broken": "Invalidated",
        "plain": "",
    }
    assert 'class="badge badge-drift-insufficient badge-link"' in page.content.decode()


def test_badges_take_a_constant_number_of_queries(cast, fleet, run):
    with CaptureQueriesContext(connection) as few:
        display.badges(MLModel.objects.filter(name__in=["drifty", "steady"]))
    for index in range(6):
        make_period(make_monitor(deployed_model(cast.group, run, name=f"more {index}"), run), 1)
    with CaptureQueriesContext(connection) as many:
        found = display.badges(MLModel.objects.all())
    assert len(many.captured_queries) == len(few.captured_queries) == 2
    assert len(found) == 10
    with CaptureQueriesContext(connection) as drifting:
        assert [item.model.name for item in display.drifted(MLModel.objects.all())] == ["drifty"]
    assert len(drifting.captured_queries) == 3


def test_latest_periods_leaves_out_an_earlier_registration(cast, fleet):
    drifty = fleet["drifty"].monitor
    Monitor.objects.filter(pk=drifty.pk).update(registered_at=datetime(2026, 5, 10, tzinfo=UTC))
    periods = display.latest_periods(MLModel.objects.all())
    assert fleet["drifty"].pk not in periods and fleet["steady"].pk in periods
    html = _login(cast.owner).get("/models/").content.decode()
    assert badges_on(html)["drifty"] != "drift"


def test_latest_periods_is_the_latest_window_not_the_latest_run(cast, fleet):
    periods = display.latest_periods(MLModel.objects.all())
    assert {fleet[name].pk for name in ("drifty", "steady", "thin", "broken")} == set(periods)
    assert periods[fleet["drifty"].pk].start == datetime(2026, 5, 2, tzinfo=UTC)  # day 3 failed
    assert periods[fleet["steady"].pk].drift_status == "stable"


def test_latest_periods_is_the_current_registrations_even_before_an_earlier_ones_later_windows(
    cast, model, run
):
    """Registered again on May 5th: May 6th and 7th stay the earlier registration's; May 3rd,
    run again since, is the current registration's latest."""
    monitor = make_monitor(model, run)
    for day in range(1, 8):
        make_period(monitor, day, drift_status="drift" if day > 3 else "stable")
    again = datetime(2026, 5, 5, tzinfo=UTC)
    Monitor.objects.filter(pk=monitor.pk).update(registered_at=again)
    Period.objects.filter(monitor=monitor, start__day__in=[2, 3]).update(registered_at=again)
    period = display.latest_periods(MLModel.objects.filter(pk=model.pk))[model.pk]
    assert (period.start, period.drift_status) == (datetime(2026, 5, 3, tzinfo=UTC), "stable")
    assert period.current_registration
    Period.objects.filter(monitor=monitor, start__day=3).update(status=Period.Status.FAILED)
    assert display.latest_periods([model])[model.pk].start == datetime(2026, 5, 2, tzinfo=UTC)


def test_a_period_of_an_earlier_registration_is_marked_and_not_counted(cast, model, run):
    monitor = make_monitor(model, run)
    make_period(monitor, 1)
    make_period(monitor, 2)
    Monitor.objects.filter(pk=monitor.pk).update(registered_at=datetime(2026, 5, 3, tzinfo=UTC))
    make_period(Monitor.objects.get(pk=monitor.pk), 3)
    page = _login(cast.owner).get(tab_url(model)).content.decode()
    rows = re.findall(r'<tr data-period="(\d+)".*?</tr>', page, re.S)
    assert len(rows) == 3
    assert page.count("earlier registration</span>") == 2
    assert "1 period compared" in page
