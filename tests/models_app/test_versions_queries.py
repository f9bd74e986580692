"""The versions list takes a number of queries that does not grow with its versions, also
when they were promoted from training runs (each with its experiment)."""

from __future__ import annotations

from django.db import connection
from django.test.utils import CaptureQueriesContext

from models_app.models import ModelBuild
from tests.helpers.clients import api_client
from tests.helpers.monitors import deployed_model
from tests.helpers.training import make_experiment
from training.models import TrainingRun


def _promoted_version(cast, model, number: int) -> None:
    experiment = make_experiment(cast.group, cast.owner, name=f"experiment {number}")
    run = TrainingRun.objects.create(
        experiment=experiment,
        number=1,
        name="best",
        training_type=TrainingRun.TrainingType.CUSTOM,
        status=TrainingRun.Status.SUCCEEDED,
        log="epoch\n" * 100,
    )
    version = deployed_model(
        cast.group, name=model.name, line=model, version=number, training_run=run, created_by=cast.owner
    )
    ModelBuild.objects.create(model=version, number=1, status=ModelBuild.Status.SUCCEEDED)


def _queries(client, url: str) -> int:
    client.get(url)  # the first call also notes the token's last use
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url).status_code == 200
    return len(captured)


def test_the_versions_list_takes_the_same_queries_for_more_promoted_versions(cast):
    owner = api_client(cast.owner)
    model = deployed_model(cast.group, name="promoted", created_by=cast.owner)
    url = f"/api/v1/models/{model.hash}/versions"
    for number in range(2, 5):
        _promoted_version(cast, model, number)
    few = _queries(owner, url)
    for number in range(5, 14):
        _promoted_version(cast, model, number)
    many = _queries(owner, url)
    assert many == few, f"{few} queries, then {many} for 9 more promoted versions"
    versions = owner.get(url).json()["results"]
    assert [v["version"] for v in versions] == list(range(13, 0, -1))
    assert versions[0]["training_run"]["experiment_name"] == "experiment 13"
    assert versions[0]["training_run"]["number"] == 1 and versions[-1]["training_run"] is None
