"""What a job's request does when the task queue or the database goes away for a moment.

An upload, a restart or an Async submission is committed before its task is sent: a
broker that refuses the task must not turn that into a 500 (the upload's view then
removed the files of the model it had just committed), and the task goes at the next
housekeeping minute instead of one redispatch delay later. A PostgreSQL restart ends
the kept connections: a running job's checks and writes carry on over a new one.
"""

from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, close_old_connections, connection, connections
from redis.exceptions import ConnectionError as RedisConnectionError

from executions import services as execution_services
from executions import tasks as execution_tasks
from executions.models import Execution
from groups import jobs
from models_app import services as model_services
from models_app import tasks as build_tasks
from models_app.models import MLModel, ModelBuild
from tests.helpers.clients import api_client, token_client
from tests.helpers.uploads import file, sync_payload


class Broker:
    """async_task as a broker that is down until `up` is set; what reached it when up."""

    def __init__(self) -> None:
        self.up = False
        self.sent: list[tuple] = []

    def __call__(self, *args, **kwargs) -> None:
        if not self.up:
            raise RedisConnectionError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
        self.sent.append(args)


@pytest.fixture
def broker(monkeypatch) -> Broker:
    down = Broker()
    monkeypatch.setattr(model_services, "async_task", down)
    monkeypatch.setattr(execution_services, "async_task", down)
    return down


def test_an_upload_while_the_task_queue_is_down_is_stored_and_built_at_the_next_minute(
    cast, broker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    assert response.status_code == 201, response.content
    model = MLModel.objects.get(hash=response.json()["hash"])
    assert (model.folder / "app.py").is_file()  # not removed after the commit
    build = model.builds.get()
    assert build.queued_at == jobs.NOT_SENT and broker.sent == []
    assert "Its task could not be enqueued (the task queue did not answer: ConnectionError)" in build.log

    broker.up = True
    with django_capture_on_commit_callbacks(execute=True):
        assert build_tasks.housekeeping()["redispatched_builds"] == 1
    build.refresh_from_db()
    assert broker.sent == [("models_app.tasks.build_model", build.pk)]
    assert build.queued_at != jobs.NOT_SENT and build.log.endswith("Its task is enqueued now.\n")


def test_a_restart_while_the_task_queue_is_down_answers_what_it_did(
    cast, broker, django_capture_on_commit_callbacks
):
    model = MLModel.objects.create(
        name="restarted", group=cast.group, model_reference="score", python_version="3.11", status="Deployed"
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client(cast.owner).post(f"/api/v1/models/{model.hash}/restart")
    assert response.status_code == 200 and response.json()["status"] == "Ready", response.content
    assert ModelBuild.objects.get(model=model).queued_at == jobs.NOT_SENT


def test_an_execution_whose_task_the_queue_refused_keeps_its_slot_and_goes_at_the_next_minute(
    cast, broker, django_capture_on_commit_callbacks
):
    model = MLModel.objects.create(
        name="batch",
        group=cast.group,
        model_reference="score",
        python_version="3.11",
        status="Deployed",
        operation="Async",
        input_type="csv",
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = token_client(cast.group_token).post(
            f"/api/v1/run/{model.hash}", {"file": file("in.csv", "a\n1\n")}, format="multipart"
        )
    assert response.status_code == 202, response.content
    execution = Execution.objects.get(model=model)
    assert execution.queued_at == jobs.NOT_SENT  # holds its slot: no other one takes it meanwhile
    assert execution_services.slots_in_use() == {model.pk: 1}

    broker.up = True
    with django_capture_on_commit_callbacks(execute=True):
        assert execution_tasks.housekeeping()["redispatched"] == 1
    assert broker.sent == [("executions.tasks.run_execution", execution.pk)]


# --- a PostgreSQL restart under a running job ------------------------------------------


def _end_this_connection() -> None:
    """What a PostgreSQL restart does to the connection this thread keeps (ended from
    another thread's connection, as the server would)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]

    def terminate() -> None:
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        finally:
            connections["default"].close()

    thread = threading.Thread(target=terminate)
    thread.start()
    thread.join()


@pytest.fixture
def reconnect_after():
    yield
    connection.close()  # the test may leave it ended: the teardown's flush connects anew


@pytest.mark.django_db(transaction=True)
def test_a_job_s_check_carries_on_over_a_new_connection_after_a_server_restart(cast, reconnect_after):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: NEOMARIL_TEST_BACKENDS=postgres runs it (SQLite has no server)")
    model = MLModel.objects.create(
        name="checked", group=cast.group, model_reference="score", python_version="3.11"
    )
    _end_this_connection()
    with pytest.raises(OperationalError):  # what the check met before
        MLModel.objects.filter(pk=model.pk, status=MLModel.Status.DELETED).exists()
    connection.close()
    _end_this_connection()
    assert execution_tasks._deleted_meanwhile(model) is None
    assert build_tasks._deleted(model) is False


@pytest.mark.django_db(transaction=True)
def test_a_request_or_task_after_a_server_restart_gets_a_new_connection(cast, reconnect_after):
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: NEOMARIL_TEST_BACKENDS=postgres runs it (SQLite has no server)")
    assert MLModel.objects.count() == 0
    _end_this_connection()
    # What Django's request cycle and django-q2's worker do before each request or task (the
    # test client skips it): with CONN_HEALTH_CHECKS the ended connection is replaced.
    close_old_connections()
    assert MLModel.objects.count() == 0


@pytest.mark.django_db
def test_the_live_connections_carry_the_tcp_timeouts():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only: NEOMARIL_TEST_BACKENDS=postgres runs it (SQLite has no server)")
    connection.ensure_connection()
    given = {option.keyword: option.val for option in connection.connection.pgconn.info}
    assert given[b"keepalives_idle"] == b"10" and given[b"tcp_user_timeout"] == b"30000"
    # The fast path's own lookup connection is made from the same parameters.
    assert connection.get_connection_params()["keepalives_count"] == 3
