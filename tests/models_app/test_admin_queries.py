"""The Django admin's model pages take a number of queries that does not grow with the
tables behind them: training runs, models and their versions, users, builds, events."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from models_app.models import MLModel, ModelBuild, ModelEvent
from tests.helpers.monitors import deployed_model
from tests.helpers.training import make_experiment
from training.models import TrainingRun


@pytest.fixture
def admin_browser(cast) -> Client:
    client = Client()
    client.force_login(cast.admin)
    return client


@pytest.fixture
def experiment(cast):
    return make_experiment(cast.group, cast.owner)


def _queries(client: Client, url: str) -> int:
    client.get(url)  # warms what a first request alone loads (the session, content types)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(url)
    assert response.status_code == 200, url
    return len(captured)


def _add_runs(experiment, count: int) -> None:
    first = (experiment.runs.order_by("-number").values_list("number", flat=True).first() or 0) + 1
    TrainingRun.objects.bulk_create(
        TrainingRun(
            experiment=experiment,
            number=number,
            name=f"run {number}",
            training_type=TrainingRun.TrainingType.CUSTOM,
            status=TrainingRun.Status.SUCCEEDED,
            python_version="3.9",
            log="training output\n" * 50,
        )
        for number in range(first, first + count)
    )


def _add_models(cast, count: int) -> None:
    """`count` models, each uploaded by a user of its own, with a build and an event."""
    users = get_user_model().objects
    for _ in range(count):
        number = MLModel.objects.count()
        user = users.create_user(f"uploader-{number}")
        model = deployed_model(cast.group, name=f"extra {number}", created_by=user)
        ModelBuild.objects.create(
            model=model, number=1, status=ModelBuild.Status.SUCCEEDED, requested_by=user
        )
        ModelEvent.objects.create(model=model, actor=user, action="deployed")


def _promoted_model_with_a_version(cast, experiment) -> tuple[MLModel, MLModel]:
    """A model promoted from a run, with a version 2 (from another run) that is live."""
    _add_runs(experiment, 2)
    first, second = experiment.runs.order_by("number")[:2]
    model = deployed_model(cast.group, name="promoted", training_run=first, created_by=cast.owner)
    version = deployed_model(
        cast.group, name="promoted", training_run=second, created_by=cast.owner, line=model, version=2
    )
    model.live_version = version
    model.save(update_fields=["live_version"])
    for number in (1, 2):
        ModelBuild.objects.create(model=model, number=number, status=ModelBuild.Status.SUCCEEDED)
    return model, version


def _grow(cast, experiment, row: MLModel, times: int) -> None:
    """More runs, models and users, and more builds of `row`."""
    _add_runs(experiment, 10 * times)
    _add_models(cast, 3 * times)
    first = row.builds.count() + 1
    ModelBuild.objects.bulk_create(
        ModelBuild(model=row, number=number, status=ModelBuild.Status.FAILED, log="uv output\n" * 50)
        for number in range(first, first + times)
    )


@pytest.mark.parametrize("row", ["model", "version"])
def test_a_models_change_page_takes_the_same_queries_with_more_runs_models_and_users(
    cast, experiment, admin_browser, row
):
    model, version = _promoted_model_with_a_version(cast, experiment)
    shown = model if row == "model" else version
    url = f"/admin/models_app/mlmodel/{shown.pk}/change/"
    _grow(cast, experiment, shown, 1)
    few = _queries(admin_browser, url)
    _grow(cast, experiment, shown, 3)
    many = _queries(admin_browser, url)
    assert many == few, f"{few} queries, then {many} with more runs, models, users and builds"
    page = admin_browser.get(url).content.decode()
    # No drop-down lists every run, model or user: none of the extra ones is on the page.
    assert "extra 3" not in page and "uploader-3" not in page and "run 30 of" not in page


def _change_form_data(response) -> dict:
    """What the browser posts back from a change page it did not touch."""
    data = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        management = inline.formset.management_form
        data.update({management.add_prefix(name): management[name].value() for name in management.fields})
        forms.extend(inline.formset.forms)
    for form in forms:
        for field in form:
            value = field.value()
            if value is False:
                continue  # an unticked box is not sent
            data[field.html_name] = "" if value is None else value
    return data


@pytest.mark.parametrize("row", ["model", "version"])
def test_a_models_change_page_still_saves_with_its_run_line_and_live_version(
    cast, experiment, admin_browser, row
):
    model, version = _promoted_model_with_a_version(cast, experiment)
    edited = model if row == "model" else version
    url = f"/admin/models_app/mlmodel/{edited.pk}/change/"
    page = admin_browser.get(url)
    assert page.status_code == 200
    data = _change_form_data(page)
    data["request_timeout"] = "42"
    answer = admin_browser.post(url, data)
    assert answer.status_code == 302, answer.context["adminform"].form.errors if answer.context else answer
    edited.refresh_from_db()
    assert edited.request_timeout == 42
    first, second = experiment.runs.order_by("number")[:2]
    if row == "model":
        assert (edited.training_run, edited.line, edited.live_version) == (first, None, version)
    else:
        assert (edited.training_run, edited.line, edited.live_version) == (second, model, None)
    assert edited.created_by == cast.owner


def test_a_models_run_line_and_live_version_are_chosen_by_id(cast, experiment, admin_browser):
    model, version = _promoted_model_with_a_version(cast, experiment)
    _add_runs(experiment, 1)
    newest = experiment.runs.order_by("-number").first()
    url = f"/admin/models_app/mlmodel/{model.pk}/change/"
    data = _change_form_data(admin_browser.get(url))
    data["training_run"], data["live_version"] = str(newest.pk), ""
    assert admin_browser.post(url, data).status_code == 302
    model.refresh_from_db()
    assert model.training_run == newest and model.live_version is None


@pytest.mark.parametrize(
    "url",
    [
        "/admin/models_app/mlmodel/",
        "/admin/models_app/modelbuild/",
        "/admin/models_app/modelevent/",
    ],
)
def test_the_model_admin_lists_take_the_same_queries_for_more_rows(cast, experiment, admin_browser, url):
    _add_models(cast, 3)
    few = _queries(admin_browser, url)
    _add_models(cast, 9)
    many = _queries(admin_browser, url)
    assert many == few, f"{few} queries, then {many} for 9 more rows"
    assert "extra 11" in admin_browser.get(url).content.decode()


def test_an_events_change_page_takes_the_same_queries_with_more_models_and_users(cast, admin_browser):
    _add_models(cast, 1)
    url = f"/admin/models_app/modelevent/{ModelEvent.objects.get().pk}/change/"
    few = _queries(admin_browser, url)
    _add_models(cast, 6)
    assert _queries(admin_browser, url) == few
    assert "extra 6" not in admin_browser.get(url).content.decode()


@pytest.mark.parametrize(
    ("field", "term"), [("line", "promoted"), ("live_version", "promoted"), ("created_by", "own")]
)
def test_a_models_pickers_find_models_and_users_by_name(cast, experiment, admin_browser, field, term):
    model, version = _promoted_model_with_a_version(cast, experiment)
    answer = admin_browser.get(
        "/admin/autocomplete/",
        {"app_label": "models_app", "model_name": "mlmodel", "field_name": field, "term": term},
    )
    assert answer.status_code == 200
    found = {result["id"] for result in answer.json()["results"]}
    expected = {str(model.pk), str(version.pk)} if field != "created_by" else {str(cast.owner.pk)}
    assert found == expected
