"""Recorded Sync calls go with their model: deleted with it, stragglers purged."""

from django.utils import timezone

from models_app import tasks
from models_app.models import MLModel
from monitoring.models import PredictionRecord
from monitoring.recorder import Call, Recorder
from tests.helpers.clients import api_client
from tests.helpers.uploads import sync_payload


def _model(client, name):
    response = client.post("/api/v1/models", sync_payload(name=name), format="multipart")
    assert response.status_code == 201, response.json()
    return MLModel.objects.get(hash=response.json()["hash"])


def _record(*models, calls=3):
    recorder = Recorder(capacity=100)
    for model in models:
        for n in range(calls):
            recorder.buffer.append(Call(model.pk, 1, timezone.now(), 200, 1.0, f'{{"x": {n}}}', "{}"))
    recorder.flush()


def test_deleting_a_model_deletes_its_recorded_calls(cast):
    client = api_client(cast.owner)
    doomed, kept = _model(client, "doomed"), _model(client, "kept")
    _record(doomed, kept)

    response = client.delete(f"/api/v1/models/{doomed.hash}")

    assert response.status_code == 200, response.content
    assert response.json()["status"] == "Deleted"
    doomed.refresh_from_db()
    assert doomed.status == MLModel.Status.DELETED
    assert not PredictionRecord.objects.filter(model=doomed).exists()
    assert PredictionRecord.objects.filter(model=kept).count() == 3


def test_calls_written_after_the_deletion_are_purged(cast):
    client = api_client(cast.owner)
    doomed, kept = _model(client, "doomed"), _model(client, "kept")
    assert client.delete(f"/api/v1/models/{doomed.hash}").status_code == 200
    _record(doomed, kept, calls=2)  # a web process's buffer, flushed just after the delete

    assert tasks.purge_predictions() == 2

    assert not PredictionRecord.objects.filter(model=doomed).exists()
    assert PredictionRecord.objects.filter(model=kept).count() == 2


def test_deleting_a_model_removes_its_calls_in_bounded_batches(cast, monkeypatch):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from monitoring import tasks as retention

    monkeypatch.setattr(retention, "PURGE_BATCH", 2)
    client = api_client(cast.owner)
    doomed, kept = _model(client, "doomed"), _model(client, "kept")
    _record(doomed, calls=5)
    _record(kept, calls=1)

    with CaptureQueriesContext(connection) as queries:
        assert client.delete(f"/api/v1/models/{doomed.hash}").status_code == 200

    deletes = [q["sql"] for q in queries if q["sql"].startswith('DELETE FROM "monitoring_predictionrecord"')]
    assert len(deletes) == 3  # 2 + 2 + 1, not one statement for all of them
    assert not PredictionRecord.objects.filter(model=doomed).exists()
    assert PredictionRecord.objects.filter(model=kept).count() == 1
