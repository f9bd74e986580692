"""Language and accessibility of what the monitoring and training pages write (server side).

A monitoring badge's tooltip writes its period's day and PSI the page's language's way,
as the dashboard's drift card does; the registration's thresholds count rows with a
plural; the heat map's legend explains its state names in the page's language; the
required fields of the monitoring registration and of a new experiment say so
(aria-required: the pages post with novalidate); an experiment's run counts show the
state names as the API writes them. The state names themselves (stable, drift, Day,
Succeeded…) stay as the API writes them (docs/portal.md).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.test import Client
from django.utils import translation

from monitors import display
from monitors.forms import MonitoringForm
from tests.helpers.cast import PASSWORD
from tests.helpers.monitors import make_monitor, make_period
from tests.helpers.training import finished_run, make_experiment
from training.forms import ExperimentForm

PORTUGUESE = "pt-BR,pt;q=0.9"


def _client(user, language: str = "en") -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _text(response) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", response.content.decode()))


@pytest.fixture
def drifted(cast, model, run):
    """A Validated monitor whose last period (6 Dec 2026) drifted with an average PSI of 5.277."""
    monitor = make_monitor(model, run, minimum_rows=1)
    period = make_period(monitor, 1, drift_status="drift", psi=5.2771)
    start = datetime(2026, 12, 6, tzinfo=UTC)
    type(period).objects.filter(pk=period.pk).update(start=start, end=datetime(2026, 12, 7, tzinfo=UTC))
    return monitor


# --- the badge's tooltip and the dashboard's drift card ------------------------------------


def test_a_badges_tooltip_writes_the_day_and_the_psi_the_page_languages_way(drifted, model):
    with translation.override("pt-br"):
        title = display.badges([model])[model.pk].title
    assert "06/12/2026" in title and "5,277" in title, title
    assert "2026-12-06" not in title and "5.277" not in title, title
    assert title.startswith("Day ") and ": drift" in title  # the state names stay (docs/portal.md)
    with translation.override("en"):
        title = display.badges([model])[model.pk].title
    assert title == "Day from 6 Dec 2026 UTC: drift, average PSI 5.277"


def test_the_dashboards_drift_card_and_the_tooltip_write_the_period_alike(cast, drifted, model):
    html = _client(cast.owner, PORTUGUESE).get("/").content.decode()
    card = re.search(r'id="drifted-models".*?</section>', html, re.S)[0]
    assert "06/12/2026" in card and "5,277" in card
    with translation.override("pt-br"):
        title = display.badges([model])[model.pk].title
    assert f'title="{title}"' in html  # the models table's badge, beside it
    assert "06/12/2026" in title and "5,277" in title


# --- the Monitoring tab ----------------------------------------------------------------------


def test_the_thresholds_count_rows_with_a_plural(cast, drifted, model):
    page = _text(_client(cast.owner).get(f"/models/{model.hash}/monitoring/"))
    assert "at least 1 row" in page and "1 rows" not in page
    page = _text(_client(cast.owner, PORTUGUESE).get(f"/models/{model.hash}/monitoring/"))
    assert "1 linhas" not in page
    type(drifted).objects.filter(pk=drifted.pk).update(minimum_rows=12345)
    page = _text(_client(cast.owner).get(f"/models/{model.hash}/monitoring/"))
    assert "at least 12,345 rows" in page


def test_the_heat_maps_legend_explains_each_state_name_in_the_pages_language(cast, drifted, model):
    html = _client(cast.owner).get(f"/models/{model.hash}/monitoring/").content.decode()
    legend = re.search(r'<ul class="heat-legend".*?</ul>', html, re.S)[0]
    items = [
        re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", item)).strip()
        for item in re.findall(r"<li>.*?</li>", legend)
    ]
    assert [item.split(" ")[0] for item in items] == ["stable", "warning", "drift", "insufficient"]
    assert all(re.fullmatch(r"\w+ \(.+\)", item) for item in items), items  # each one explained
    assert "warning threshold" in items[0] and "drift threshold" in items[2]


def test_the_registration_forms_required_fields_say_so(cast, model):
    form = MonitoringForm(model=model)
    for name in ("configuration", "preprocess", "preprocess_reference"):
        assert 'aria-required="true"' in str(form[name]), name
        assert " required" not in str(form[name])  # the server's messages, not the browser's
    for name in ("shap_reference", "requirements", "webhook_url"):
        assert "aria-required" not in str(form[name]), name
    html = _client(cast.owner).get(f"/models/{model.hash}/monitoring/").content.decode()
    for name in ("configuration", "preprocess", "preprocess_reference"):
        tag = re.search(rf'<input[^>]*name="{name}"[^>]*>', html)[0]
        assert 'aria-required="true"' in tag, tag
        # The label does not call it optional.
        label = re.search(rf'<label for="register_{name}">(.*?)</label>', html, re.S)
        assert label is None or "optional" not in label[1]


def test_an_unanswered_registration_keeps_its_messages(cast, model):
    response = _client(cast.owner).post(f"/models/{model.hash}/monitoring/register/", {})
    page = _text(response)
    assert "Upload the monitoring configuration (a JSON file)." in page
    assert "Upload the preprocess script (a .py file)." in page
    assert "Name the preprocess function, e.g. parse." in page


# --- the training pages ------------------------------------------------------------------------


def test_a_new_experiments_name_is_marked_required(cast):
    form = ExperimentForm(user=cast.owner)
    tag = str(form["experiment_name"])
    assert 'aria-required="true"' in tag and " required" not in tag
    html = _client(cast.owner).get("/training/").content.decode()
    assert re.search(r'<input[^>]*name="experiment_name"[^>]*aria-required="true"', html)
    response = _client(cast.owner).post(
        "/training/", {"model_type": "Classification", "group": cast.group.name}
    )
    assert "Give the experiment a name." in _text(response)


def test_an_experiments_counts_show_the_state_names_as_the_api_writes_them(cast):
    experiment = make_experiment(cast.group, cast.owner)
    finished_run(experiment, number=1)
    finished_run(experiment, number=2)
    finished_run(experiment, number=3, status="Failed", error_message="boom")
    waiting = finished_run(experiment, number=4, status="Requested")
    type(waiting).objects.filter(pk=waiting.pk).update(started_at=None)  # "Requested" where it would start
    for language in ("en", PORTUGUESE):
        page = _text(_client(cast.owner, language).get(f"/training/{experiment.hash}/"))
        assert "· 1 Requested · 2 Succeeded · 1 Failed ·" in page, page[:2000]
        assert not re.search(r"\b(succeeded|failed|requested)\b", page), language
