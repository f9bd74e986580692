"""Retention of executions' files: a batch costs a few queries, not one per execution.

It used to mark each execution with its own UPDATE (501 queries and 116 ms per pass of
500; a 15k backlog took 27 minutes of passes) and loaded every row whole, log included.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from executions import tasks
from executions.models import Execution
from groups.models import Group
from groups.uploads import folder_bytes
from models_app.models import MLModel

pytestmark = pytest.mark.django_db


def _finished(model, count: int, *, days_ago: float, start: int = 1) -> list[Execution]:
    finished_at = timezone.now() - timedelta(days=days_ago)
    executions = []
    for number in range(start, start + count):
        execution = Execution.objects.create(
            model=model,
            number=number,
            status=Execution.Status.SUCCEEDED,
            input_file="input.csv",
            input_size=4,
            output_file="output.csv",
            finished_at=finished_at,
            log="x" * 10_000,
        )
        execution.folder.mkdir(parents=True)
        (execution.folder / "input.csv").write_text("a\n1\n")
        (execution.folder / "output.csv").write_text("a\n1\n")
        executions.append(execution)
    return executions


def _purge_queries(purge) -> tuple[int, list[str]]:
    with CaptureQueriesContext(connection) as captured:
        removed = purge()
    return removed, [query["sql"] for query in captured.captured_queries]


def test_a_pass_costs_the_same_queries_for_3_or_12_executions(deploy, settings):
    settings.EXECUTION_RETENTION_DAYS = 7
    model = deploy()
    few = _finished(model, 3, days_ago=8)
    removed, few_queries = _purge_queries(tasks.purge_expired_files)
    assert removed == 3
    many = _finished(model, 12, days_ago=8, start=4)
    removed, many_queries = _purge_queries(tasks.purge_expired_files)
    assert removed == 12
    # The batch, what its folders took off their group's storage, then one UPDATE.
    assert len(few_queries) == len(many_queries) == 3, many_queries
    select, freed, update = many_queries
    assert '"log"' not in select and "input_size" not in select  # the path's columns only
    assert freed.startswith('UPDATE "portal_group" SET "stored_bytes"')
    assert update.startswith('UPDATE "executions_execution"') and " IN (" in update
    for execution in few + many:
        execution.refresh_from_db()
        assert execution.files_removed_at is not None and not execution.folder.exists()
        assert execution.log  # the row stays
    assert tasks.purge_expired_files() == 0


def test_files_go_before_the_rows_are_marked_and_only_expired_ones(deploy, settings):
    settings.EXECUTION_RETENTION_DAYS = 7
    model = deploy()
    expired = _finished(model, 4, days_ago=8)
    recent = _finished(model, 2, days_ago=6, start=5)
    folders_at_update = []

    def watch(execute, sql, params, many, context):
        if sql.startswith('UPDATE "executions_execution"'):
            folders_at_update.extend(execution.folder.exists() for execution in expired)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        assert tasks.purge_expired_files() == 4
    assert folders_at_update == [False] * 4
    assert Execution.objects.filter(files_removed_at__isnull=False).count() == 4
    assert all(execution.folder.exists() for execution in recent)


def test_the_batch_is_bounded_and_the_next_pass_goes_on(deploy, settings, monkeypatch):
    monkeypatch.setattr(tasks, "PURGE_BATCH", 5)
    model = deploy()
    executions = _finished(model, 7, days_ago=0)
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DELETED)
    removed, queries = _purge_queries(tasks.purge_deleted_models)
    assert (removed, len(queries)) == (5, 3)  # the batch, the group's storage, its UPDATE
    assert tasks.purge_deleted_models() == 2
    assert tasks.purge_deleted_models() == 0
    assert not any(execution.folder.exists() for execution in executions)
    assert not Execution.objects.filter(files_removed_at__isnull=True).exists()


def test_rows_are_marked_a_chunk_per_update(deploy, settings, monkeypatch):
    monkeypatch.setattr(tasks, "MARK_CHUNK", 4, raising=False)
    settings.EXECUTION_RETENTION_DAYS = 7
    model = deploy()
    _finished(model, 10, days_ago=8)
    marked = []

    def watch(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if sql.startswith('UPDATE "executions_execution"'):
            marked.append(context["cursor"].rowcount)
        return result

    with connection.execute_wrapper(watch):
        assert tasks.purge_expired_files() == 10
    assert marked == [4, 4, 2]
    assert not Execution.objects.filter(files_removed_at__isnull=True).exists()


def test_what_retention_removes_is_taken_off_its_groups_storage(deploy, settings, cast):
    settings.EXECUTION_RETENTION_DAYS = 7
    model = deploy()
    executions = _finished(model, 4, days_ago=8)
    taken = sum(folder_bytes(execution.folder) for execution in executions)
    Group.objects.filter(pk=cast.group.pk).update(stored_bytes=taken + 5000)
    assert tasks.purge_expired_files() == 4
    assert Group.objects.get(pk=cast.group.pk).stored_bytes == 5000
