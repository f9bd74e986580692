"""An Async input past its group's storage quota is refused (507 group_storage_full) with
nothing kept; a result is counted as the group's once its execution ends."""

from __future__ import annotations

import pytest
from django.conf import settings

from executions import tasks
from executions.models import Execution
from groups.models import Group
from groups.uploads import LimitedTemporaryFileUploadHandler, folder_bytes
from tests.helpers.executions import submit

pytestmark = pytest.mark.django_db(transaction=True)
MB = 1024 * 1024


def _used(group: Group) -> int:
    return Group.objects.get(pk=group.pk).stored_bytes


def test_an_input_past_the_quota_is_507_and_nothing_is_kept(cast, caller, deploy):
    model = deploy()
    Group.objects.filter(pk=cast.group.pk).update(storage_quota_mb=1, stored_bytes=MB - 8192)
    used = _used(cast.group)

    response = submit(caller, model, content="x" * (64 * 1024))
    assert response.status_code == 507, response.content
    assert response.json()["code"] == "group_storage_full"
    assert response.json()["detail"].startswith(
        "The group 'datarisk' keeps 1016.0 KB of its 1.0 MB storage quota, and this needs 64.0 KB more"
    )
    assert not Execution.objects.exists() and _used(cast.group) == used
    assert not (settings.EXECUTIONS_DIR / model.hash / "1").exists()

    small = submit(caller, model)  # one block: it still fits
    assert small.status_code == 202, small.content
    assert _used(cast.group) == used + 4096


def test_an_executions_input_and_result_count_as_its_groups(cast, caller, deploy):
    model = deploy()
    response = submit(caller, model)
    assert response.status_code == 202, response.content
    execution = Execution.objects.get(model=model)
    taken = _used(cast.group) - folder_bytes(model.folder)  # the upload counted too
    assert taken == folder_bytes(execution.folder)

    tasks.run_execution(execution.pk)
    execution.refresh_from_db()
    assert execution.status == "Succeeded", execution.log
    assert _used(cast.group) == folder_bytes(model.folder) + taken + execution.output_size


def test_an_execution_of_a_group_past_its_quota_does_not_run(cast, caller, deploy):
    """Inputs of 4 KiB got under the quota, and their queued executions each wrote up to
    NEOMARIL_EXECUTION_DISK_MB: 30 of them took a group 48 times past its quota."""
    model = deploy("writes_megabytes")
    assert submit(caller, model, content="1\n").status_code == 202
    execution = Execution.objects.get(model=model)
    Group.objects.filter(pk=cast.group.pk).update(storage_quota_mb=1, stored_bytes=MB)
    tasks.run_execution(execution.pk)
    execution.refresh_from_db()
    assert execution.status == "Failed"
    assert execution.error_message == (
        "The group 'datarisk' keeps 1.0 MB of its 1.0 MB storage quota: this execution was not run; submit "
        "it again once space is freed. Delete the models, versions or training runs' files the group no "
        "longer needs (their space is free again at once; executions' files go by retention), or ask an "
        "admin to raise the group's quota."
    )
    assert "The model process ended" not in execution.log  # never started
    assert [path.name for path in execution.folder.iterdir()] == [execution.input_file]


def test_an_execution_writes_at_most_what_its_groups_quota_leaves(cast, caller, deploy):
    model = deploy("writes_megabytes")
    assert submit(caller, model, content="3\n").status_code == 202
    execution = Execution.objects.get(model=model)
    Group.objects.filter(pk=cast.group.pk).update(storage_quota_mb=10, stored_bytes=8 * MB)
    tasks.run_execution(execution.pk)
    execution.refresh_from_db()
    assert execution.status == "Failed", execution.log
    assert execution.error_message.startswith(
        "The model's code hit the sandbox limit of 2 MB written in its folder "
        "(raise the group's storage quota to allow more)."
    ), execution.error_message
    assert Group.objects.get(pk=cast.group.pk).stored_bytes == 8 * MB  # nothing of it kept

    Group.objects.filter(pk=cast.group.pk).update(storage_quota_mb=20)
    assert submit(caller, model, content="3\n").status_code == 202
    second = Execution.objects.get(model=model, number=2)
    tasks.run_execution(second.pk)
    second.refresh_from_db()
    assert second.status == "Succeeded", second.log
    assert Group.objects.get(pk=cast.group.pk).stored_bytes > 11 * MB


def test_an_input_larger_than_the_quota_leaves_is_refused_before_its_body_is_read(
    cast, caller, deploy, monkeypatch
):
    """A group at its quota made the node write each refused input whole to disk first."""
    model = deploy()
    Group.objects.filter(pk=cast.group.pk).update(storage_quota_mb=1, stored_bytes=MB - 200 * 1024)
    read = []
    receive = LimitedTemporaryFileUploadHandler.receive_data_chunk
    monkeypatch.setattr(
        LimitedTemporaryFileUploadHandler,
        "receive_data_chunk",
        lambda self, raw, start: read.append(len(raw)) or receive(self, raw, start),
    )
    response = submit(caller, model, content="x" * (600 * 1024))
    assert response.status_code == 507, response.content
    assert response.json()["code"] == "group_storage_full"
    assert response.json()["detail"].startswith(
        "The group 'datarisk' keeps 824.0 KB of its 1.0 MB storage quota, and this needs "
    )
    assert read == [] and not Execution.objects.exists()

    fits = submit(caller, model, content="x" * (150 * 1024))  # its multipart overhead is no reason
    assert fits.status_code == 202, fits.content
