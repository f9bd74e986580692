"""Recording of Sync calls: batched, bounded, and drops are counted, never silent."""

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from models_app.models import MLModel
from monitoring import tasks
from monitoring.models import DroppedRecords, PredictionRecord
from monitoring.recorder import Call, Recorder
from tests.helpers.clients import api_client
from tests.helpers.uploads import sync_payload


@pytest.fixture
def model(cast):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    return MLModel.objects.get(hash=response.json()["hash"])


def _call(model, n=0, at=None):
    return Call(model.pk, 1, at or timezone.now(), 200, 1.5, f'{{"x": {n}}}', f'{{"y": {n}}}')


def test_flush_writes_buffered_calls_in_batches(model):
    recorder = Recorder(capacity=2000)
    for n in range(1200):
        recorder.buffer.append(_call(model, n))
    assert recorder.flush() == 1200
    assert PredictionRecord.objects.filter(model=model).count() == 1200
    assert PredictionRecord.objects.filter(input='{"x": 7}', output='{"y": 7}').exists()


def test_overflow_is_counted_and_written(model, monkeypatch):
    recorder = Recorder(capacity=3)
    monkeypatch.setattr(recorder, "_ensure_thread", lambda: None)  # flush by hand below
    for n in range(10):
        recorder.record(_call(model, n))
    assert recorder.dropped == 7 and recorder.dropped_total == 7
    assert recorder.flush() == 3
    assert DroppedRecords.objects.get().count == 7
    assert recorder.dropped == 0 and recorder.dropped_total == 7


def test_the_buffer_is_bounded_in_bytes_too(model, monkeypatch):
    """Large inputs fill memory long before 10,000 calls: the byte budget drops (and
    counts) the calls past it, and what the writer takes off makes room again."""
    call = _call(model, 1)
    size = len(call.input) + len(call.output)
    recorder = Recorder(capacity=100, capacity_bytes=2 * size + size // 2, max_call_bytes=1000)
    monkeypatch.setattr(recorder, "_ensure_thread", lambda: None)
    for _ in range(5):
        recorder.record(call)
    assert len(recorder.buffer) == 2 and recorder.buffered_bytes == 2 * size and recorder.dropped == 3
    assert recorder.flush() == 2 and recorder.buffered_bytes == 0
    recorder.record(call)
    assert len(recorder.buffer) == 1 and recorder.buffered_bytes == size
    assert recorder.flush() == 1


def test_a_call_over_the_size_limit_is_recorded_without_its_input_and_answer(model, monkeypatch):
    from groups.metrics import RECORDING_PAYLOADS_DROPPED

    recorder = Recorder(capacity=100, capacity_bytes=10_000, max_call_bytes=1000)
    monkeypatch.setattr(recorder, "_ensure_thread", lambda: None)
    before = RECORDING_PAYLOADS_DROPPED._value.get()
    large = Call(model.pk, 1, timezone.now(), 200, 7.5, '{"x": "' + "a" * 1000 + '"}', '{"y": 1}')
    recorder.record(large)
    recorder.record(_call(model, 2))
    assert recorder.dropped == 0 and len(recorder.buffer) == 2
    assert recorder.buffered_bytes == len('{"x": 2}') + len('{"y": 2}')  # the large one holds nothing
    assert RECORDING_PAYLOADS_DROPPED._value.get() == before + 1
    assert recorder.flush() == 2
    assert not DroppedRecords.objects.exists()
    assert sorted(PredictionRecord.objects.values_list("input", "latency_ms", "payload_kept")) == [
        ("", 7.5, False),
        ('{"x": 2}', 1.5, True),
    ]
    # Its status and latency count where the model's calls are counted.
    from monitoring.stats import call_stats

    stats = call_stats(model.pk)
    assert stats["total"] == 2 and stats["day_latency_samples"] == 2


def test_a_batch_the_database_refused_is_kept_for_the_next_try(model, monkeypatch):
    recorder = Recorder(capacity=100)
    monkeypatch.setattr(recorder, "_ensure_thread", lambda: None)
    for n in range(3):
        recorder.record(_call(model, n))
    monkeypatch.setattr(
        Recorder, "_insert", staticmethod(lambda batch: (_ for _ in ()).throw(RuntimeError("away")))
    )
    with pytest.raises(RuntimeError):
        recorder.flush()
    assert [call.input for call in recorder.buffer] == ['{"x": 0}', '{"x": 1}', '{"x": 2}']
    monkeypatch.undo()
    assert recorder.flush() == 3 and recorder.buffered_bytes == 0
    assert PredictionRecord.objects.count() == 3


def test_record_never_blocks_when_full(model, monkeypatch):
    import time

    recorder = Recorder(capacity=1)
    monkeypatch.setattr(recorder, "_ensure_thread", lambda: None)
    started = time.perf_counter()
    for n in range(1000):
        recorder.record(_call(model, n))
    assert time.perf_counter() - started < 0.5


class _WriterKilled(BaseException):
    """What ends a thread past its `except Exception` (as SystemExit would)."""


def test_a_writer_that_died_is_replaced_on_the_next_call(model, monkeypatch):
    monkeypatch.setattr(threading, "excepthook", lambda args: None)  # the deaths are the point
    recorder = Recorder(capacity=10)
    writers = []

    def die():
        writers.append(threading.current_thread())
        raise _WriterKilled

    monkeypatch.setattr(recorder, "flush", die)
    for n in (1, 2):
        recorder.record(_call(model, n))  # the second call finds the first writer gone
        recorder._wake.set()
        writer = recorder._thread
        writer.join(5)
        assert not writer.is_alive() and recorder._thread is None
    assert len(writers) == 2 and writers[0] is not writers[1]
    monkeypatch.undo()
    assert recorder.flush() == 2  # nothing left for the exit-time flush, after the test database


def test_an_outage_is_logged_once_with_its_traceback_not_every_second(model, monkeypatch, caplog):
    from monitoring import recorder as recorder_module

    monkeypatch.setattr(recorder_module.time, "sleep", lambda seconds: None)
    recorder = Recorder(capacity=10)
    attempts = []

    def refused():
        attempts.append(1)
        if len(attempts) >= 5:
            recorder._stop.set()
        raise RuntimeError("database is away")

    monkeypatch.setattr(recorder, "flush", refused)
    monkeypatch.setattr(recorder_module, "FLUSH_INTERVAL", 0.01)
    recorder.record(_call(model, 1))
    recorder._thread.join(5)
    assert len(attempts) == 5
    failures = [r for r in caplog.records if "writing prediction records" in r.getMessage()]
    assert len(failures) == 1 and failures[0].exc_info is not None
    monkeypatch.undo()
    recorder.stop(discard=True)


def test_stop_ends_the_writer_and_can_forget_the_buffer(model):
    recorder = Recorder(capacity=10)
    recorder.record(_call(model, 1))
    writer = recorder._thread
    recorder.stop(discard=True)
    assert not writer.is_alive() and recorder._thread is None and not recorder.buffer
    recorder.record(_call(model, 2))  # the next call starts another writer
    assert recorder._thread is not None and recorder._thread is not writer
    recorder.stop()
    assert recorder.flush() == 1


def test_retention_purges_old_records(model, settings):
    settings.RECORD_RETENTION_DAYS = 7
    PredictionRecord.objects.create(
        model=model, at=timezone.now() - timedelta(days=8), status_code=200, latency_ms=1, input="{}"
    )
    PredictionRecord.objects.create(model=model, at=timezone.now(), status_code=200, latency_ms=1, input="{}")
    assert tasks.purge_old_records() == 1
    assert PredictionRecord.objects.count() == 1


def test_predictions_endpoint_is_members_only(cast, model):
    PredictionRecord.objects.create(
        model=model, at=timezone.now(), status_code=200, latency_ms=2.5, input='{"a": 1}', output="{}"
    )
    body = api_client(cast.teammate).get(f"/api/v1/models/{model.hash}/predictions").json()
    assert body["count"] == 1 and body["results"][0]["input"] == '{"a": 1}'
    assert api_client(cast.outsider).get(f"/api/v1/models/{model.hash}/predictions").status_code == 404


@pytest.mark.django_db
def test_recorded_calls_carry_no_index_on_the_model_alone():
    # (model, at, …) serves lookups by model, covering the statistics' reads
    # (tests/monitoring/test_call_indexes.py); another index would cost every recorded call.
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, PredictionRecord._meta.db_table)
    indexed = sorted(tuple(c["columns"]) for c in constraints.values() if c["index"] and not c["primary_key"])
    assert indexed == [("at",), ("model_id", "at", "status_code", "latency_ms", "version", "live")]


def test_a_forked_child_starts_its_own_writer_and_leaves_the_parents_calls(model, monkeypatch):
    """gunicorn forks its workers after import: a child must not inherit the parent's
    buffer (written twice) nor believe the parent's writer thread is its own."""
    import os

    def idle_writer(self):  # a writer that never touches the database
        self._stop.wait(30)

    monkeypatch.setattr(Recorder, "_run", idle_writer)
    recorder = Recorder(capacity=10)
    recorder.record(_call(model, 1))
    parents_writer = recorder._thread
    try:
        pid = os.fork()
        if pid == 0:  # the child: report through the exit status only
            problems = 0
            problems |= 1 if recorder._thread is not None else 0
            problems |= 2 if recorder.buffer else 0
            recorder.record(_call(model, 2))
            problems |= 4 if recorder._thread is None or not recorder._thread.is_alive() else 0
            problems |= 8 if [c.input for c in recorder.buffer] != ['{"x": 2}'] else 0
            os._exit(problems)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "child problems (bit field): see the test"
        assert recorder._thread is parents_writer and parents_writer.is_alive()
        assert [c.input for c in recorder.buffer] == ['{"x": 1}']
    finally:
        recorder.stop(discard=True)
