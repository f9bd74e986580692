"""Actions on a model that overlap: every writer takes the model's row first
(services.lock_line), so the second acts on what the first committed.

SQLite runs one write transaction at a time (IMMEDIATE), which hides most of these; the
PostgreSQL pass of `make test` is where the threaded ones bite.
"""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from models_app import services
from models_app.models import MLModel
from tests.helpers.clients import api_client
from tests.models_app.test_versions import _add_version, _build, _create, _first_deploy, _source

WAIT = 10  # seconds a thread may take: a hung race fails the test instead of the suite


def _in_thread(target, *args):
    """Run `target` on a connection of its own; its outcome (or exception) in the list."""
    outcome = []

    def run():
        try:
            outcome.append(target(*args))
        except Exception as exc:  # noqa: BLE001 (handed to the test to judge)
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_version_that_deploys_while_the_model_is_disabled_does_not_turn_it_on(cast, host_env, model_host):
    client = api_client(cast.owner)
    model = _build(_create(client))
    v2 = MLModel.objects.get(hash=_add_version(client, model, _source("v2")).json()["hash"])
    assert client.post(f"/api/v1/models/{model.hash}/disable").status_code == 200

    assert _first_deploy(v2) is False

    model.refresh_from_db()
    assert model.live_version_id is None and model.status == MLModel.Status.DISABLED
    # Making it live by hand is still the way to serve it.
    assert client.post(f"/api/v1/models/{model.hash}/versions/2/live").status_code == 200


def test_a_version_takes_the_serving_settings_changed_while_it_uploaded(cast, monkeypatch):
    client = api_client(cast.owner)
    model = _create(client)
    original = services._write_files

    def settings_changed_meanwhile(upload, folder):
        original(upload, folder)
        services.change_settings(model, cast.teammate, request_timeout=2, max_replicas=1)

    monkeypatch.setattr(services, "_write_files", settings_changed_meanwhile)
    response = _add_version(client, model, _source("v2"))

    assert response.status_code == 201, response.json()
    v2 = MLModel.objects.get(hash=response.json()["hash"])
    assert (v2.request_timeout, v2.max_replicas) == (2, 1)


@pytest.mark.django_db(transaction=True)
def test_a_version_uploaded_while_the_model_is_deleted_goes_with_it(cast, monkeypatch):
    """The upload holds the model's row when the deletion starts: the deletion waits for it
    and takes the new version too (it read the versions before the lock, and left it)."""
    client = api_client(cast.owner)
    model = _create(client)
    original = services.queue_build
    deletion = []

    def delete_while_uploading(row, actor, **kwargs):
        if row.line_id is not None and not deletion:  # inside the version's transaction
            thread, outcome = _in_thread(services.delete, model, cast.teammate)
            thread.join(1)  # it waits for this transaction (PostgreSQL: the row lock)
            deletion.append((thread, outcome))
        return original(row, actor, **kwargs)

    monkeypatch.setattr(services, "queue_build", delete_while_uploading)
    response = _add_version(client, model, _source("v2"))
    thread, outcome = deletion[0]
    thread.join(WAIT)

    assert response.status_code == 201, response.json()
    assert not thread.is_alive() and isinstance(outcome[0], MLModel), outcome
    assert list(model.all_versions().values_list("version", "status")) == [(1, "Deleted"), (2, "Deleted")]


@pytest.mark.django_db(transaction=True)
def test_deleting_a_version_while_another_goes_live_is_no_deadlock(cast):
    """make_live and delete lock the model's row first: no deadlock (on PostgreSQL it was
    answered 503, 'database unreachable'), and one of the two wins cleanly."""
    client = api_client(cast.owner)
    model = _create(client)
    for answer in ("v2", "v3"):
        _add_version(client, model, _source(answer))
    v2, v3 = (model.all_versions().get(version=n) for n in (2, 3))
    MLModel.objects.filter(pk__in=[model.pk, v2.pk, v3.pk]).update(status=MLModel.Status.DEPLOYED)

    for _round in range(6):
        MLModel.objects.filter(pk=v3.pk).update(status=MLModel.Status.DEPLOYED)
        MLModel.objects.filter(pk=model.pk).update(live_version=v2)
        start = threading.Barrier(2)

        def go_live(start=start):
            start.wait(WAIT)
            return services.make_live(model, v3, cast.owner)

        def delete(start=start):
            start.wait(WAIT)
            return services.delete(v3, cast.teammate)

        (live_thread, live), (delete_thread, deleted) = _in_thread(go_live), _in_thread(delete)
        live_thread.join(WAIT)
        delete_thread.join(WAIT)

        outcomes = live + deleted
        assert len(outcomes) == 2 and not [
            o for o in outcomes if isinstance(o, Exception) and not isinstance(o, services.ActionRefused)
        ], outcomes
        model.refresh_from_db()
        v3.refresh_from_db()
        # Either v3 went live first (and its deletion was refused) or it went first.
        assert (model.live_version_id == v3.pk) != (v3.status == MLModel.Status.DELETED), outcomes
