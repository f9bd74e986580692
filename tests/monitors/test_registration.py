"""The registration form: what the request alone can show wrong is a 400 at its field."""

from __future__ import annotations

import pytest

from monitors import services
from monitors.models import Monitor
from tests.helpers.monitors import configuration, deployed_model, reference_run, registration_form, upload

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(cast):
    return reference_run(cast.group)


@pytest.fixture
def promoted(cast, run):
    return deployed_model(cast.group, run)


def errors(form) -> list[str]:
    assert not form.is_valid()
    return [message for messages in form.errors.values() for message in messages]


def test_promoted_model_gets_its_run_and_snake_case_keys_are_read(promoted, run):
    config = {
        "period": "month",
        "train_data": {"train_date_col": "when"},
        "input_cols": ["a"],
        "output_cols": ["pred"],
    }
    form = registration_form(promoted, config)
    assert form.is_valid(), form.errors
    parsed = form.cleaned_data["configuration"]
    assert (parsed.period, parsed.training_run, parsed.train_date_col) == ("Month", run, "when")
    assert parsed.train_date_ref is None


def test_a_model_whose_live_version_was_promoted_from_another_run_gets_that_run(cast, promoted, run):
    retrained = reference_run(cast.group, number=2)
    v2 = deployed_model(cast.group, retrained, line=promoted, version=2)
    promoted.live_version = v2
    promoted.save()
    form = registration_form(promoted)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["configuration"].training_run == retrained  # what serves, not version 1's


def test_direct_model_names_its_reference_run(cast, run):
    model = deployed_model(cast.group)
    config = configuration(
        TrainData={"NeomarilTrainingExecution": f"{run.experiment.hash}/1", "TrainDateRef": "2026-01-01"}
    )
    form = registration_form(model, config)
    assert form.is_valid(), form.errors
    assert form.cleaned_data["configuration"].training_run == run


def test_direct_model_without_a_run_is_told_what_to_name(cast):
    model = deployed_model(cast.group)
    (message,) = errors(registration_form(model))
    assert "NeomarilTrainingExecution is missing" in message and "<experiment hash>/<run number>" in message


def test_a_bare_run_number_needs_its_experiment(cast, run):
    model = deployed_model(cast.group)
    config = configuration(TrainData={"NeomarilTrainingExecution": "1", "TrainDateRef": "2026-01-01"})
    assert "name its experiment too" in errors(registration_form(model, config))[0]
    config["TrainData"]["NeomarilTrainingExperiment"] = run.experiment.hash
    assert registration_form(model, config).is_valid()


def test_run_of_another_group_or_unfinished_is_refused(cast, run):
    other = reference_run(cast.other_group, number=1)
    model = deployed_model(cast.group)
    config = configuration(
        TrainData={"NeomarilTrainingExecution": f"{other.experiment.hash}/1", "TrainDateRef": "2026-01-01"}
    )
    assert f"no experiment {other.experiment.hash} in group" in errors(registration_form(model, config))[0]
    failed = reference_run(cast.group, number=2, status="Failed")
    config["TrainData"]["NeomarilTrainingExecution"] = f"{failed.experiment.hash}/2"
    assert "is Failed; only a Succeeded run" in errors(registration_form(model, config))[0]
    config["TrainData"]["NeomarilTrainingExecution"] = f"{failed.experiment.hash}/9"
    assert "there is no run 9" in errors(registration_form(model, config))[0]


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (configuration(Period="Hourly"), 'Period must be one of Day, Week, Month, Year, not "Hourly"'),
        (configuration(Period=None), "Period is missing"),
        (configuration(InputCols=None), "InputCols is missing"),
        (configuration(InputCols=[]), "InputCols is empty"),
        (configuration(InputCols="a"), "InputCols must be a list of column names"),
        (configuration(InputCols=["a", "a"]), "InputCols names a more than once"),
        (configuration(OutputCols=[1]), "OutputCols must be a list of column names"),
        (configuration(TrainData={}), "exactly one of TrainDateRef"),
        (
            configuration(TrainData={"TrainDateRef": "2026-01-01", "TrainDateCol": "d"}),
            "exactly one of TrainDateRef",
        ),
        (
            configuration(TrainData={"TrainDateRef": "01/02/2026"}),
            "TrainDateRef must be a date written YYYY-MM-DD",
        ),
        (
            configuration(TrainData={"TrainDateRef": "2026-02-30"}),
            "TrainDateRef must be a date written YYYY-MM-DD",
        ),
        (configuration(TrainData="run 1"), "TrainData must be an object"),
        (configuration(Inputcols=["a"]), "Unknown key 'Inputcols' in the configuration"),
        ({**configuration(), "period": "Day"}, "Give Period once"),
    ],
)
def test_each_bad_configuration_is_named(promoted, config, expected):
    assert any(expected in message for message in errors(registration_form(promoted, config))), expected


def test_every_configuration_problem_is_reported_at_once(promoted):
    messages = errors(registration_form(promoted, configuration(Period="x", InputCols=[], TrainData={})))
    assert len(messages) == 3


def test_preprocess_source_is_checked(promoted):
    assert "no top-level function named 'prep'" in " ".join(
        errors(registration_form(promoted, preprocess_reference="prep"))
    )
    assert "set preprocess_reference to the right name" in " ".join(
        errors(registration_form(promoted, preprocess_reference="prep"))
    )
    bad = upload("preprocess.py", "def parse(input):\n    pass\n")
    assert "must accept exactly two positional arguments" in " ".join(
        errors(registration_form(promoted, preprocess=bad))
    )
    assert "must be a .py file" in " ".join(
        errors(registration_form(promoted, preprocess=upload("p.txt", "x")))
    )
    assert "no top-level function named 'shap'" in " ".join(
        errors(registration_form(promoted, shap_reference="shap"))
    )


def test_thresholds_must_be_ordered(promoted):
    messages = errors(registration_form(promoted, warning_threshold="0.3", drift_threshold="0.2"))
    assert "must be above the warning threshold" in messages[0]


def test_bad_requirements_are_refused(promoted):
    messages = errors(registration_form(promoted, requirements=upload("requirements.txt", "-e ./local\n")))
    assert messages


def test_register_saves_the_files_and_queues_validation(
    promoted, cast, django_capture_on_commit_callbacks, monkeypatch
):
    queued = []
    monkeypatch.setattr(services, "async_task", lambda *args, **kwargs: queued.append(args))
    form = registration_form(
        promoted,
        requirements=upload("requirements.txt", "scipy>=1.10\n"),
        webhook_url="https://hooks.example/drift",
    )
    assert form.is_valid(), form.errors
    with django_capture_on_commit_callbacks(execute=True):
        monitor = services.register(promoted, cast.owner, form)
    assert monitor.status == Monitor.Status.UNVALIDATED
    assert monitor.get_status_display() == "Unvalidated"
    assert (monitor.input_cols, monitor.output_cols, monitor.period) == (["a", "b"], ["pred"], "Week")
    assert monitor.requirements == ["scipy>=1.10"]
    assert "def parse" in (monitor.code_folder / "preprocess.py").read_text()
    assert (monitor.code_folder / "requirements.txt").read_text() == "scipy>=1.10\n"
    assert monitor.minimum_rows == 100 and monitor.webhook_url == "https://hooks.example/drift"
    assert queued == [("monitors.tasks.validate_monitor", monitor.pk)]
    assert services.environment_requirements(monitor)[-3:] == ["scipy>=1.10", "pandas", "pyarrow"]


def test_registering_again_replaces_and_revalidates(
    promoted, cast, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(services, "async_task", lambda *args, **kwargs: None)
    form = registration_form(promoted, minimum_rows="5")
    assert form.is_valid()
    first = services.register(promoted, cast.owner, form)
    Monitor.objects.filter(pk=first.pk).update(status=Monitor.Status.VALIDATED, reference={"rows": 3})
    form = registration_form(promoted, configuration(InputCols=["a"]), shap_reference="")
    assert form.is_valid()
    second = services.register(promoted, cast.owner, form)
    assert second.pk == first.pk and Monitor.objects.count() == 1
    assert (second.status, second.reference, second.input_cols, second.shap_reference) == (
        "Unvalidated",
        None,
        ["a"],
        "",
    )
    assert second.minimum_rows == 5  # settings survive a re-registration


def test_unregister_and_model_deletion_remove_the_files(
    promoted, cast, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(services, "async_task", lambda *args, **kwargs: None)
    form = registration_form(promoted)
    assert form.is_valid()
    with django_capture_on_commit_callbacks(execute=True):
        monitor = services.register(promoted, cast.owner, form)
    folder = monitor.folder
    assert folder.is_dir()
    with django_capture_on_commit_callbacks(execute=True):
        promoted.delete()
    assert not folder.exists() and not Monitor.objects.exists()


def test_a_deleted_model_cannot_be_registered(promoted):
    promoted.status = "Deleted"
    assert "is deleted; it can't be monitored" in " ".join(errors(registration_form(promoted)))


def test_an_empty_requirements_file_means_nothing_extra(promoted):
    form = registration_form(promoted, requirements=upload("requirements.txt", ""))
    assert form.is_valid(), form.errors
    assert form.cleaned_data["requirement_lines"] == []
