"""An Async input past its group's storage quota is refused (507 group_storage_full) with
nothing kept; a result is counted as the group's once its execution ends."""

from __future__ import annotations

import pytest
from django.conf import settings

from executions import tasks
from executions.models import Execution
from groups.models import Group
from groups.uploads import folder_bytes
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
        "The group 'datarisk' keeps 1.0 MB of its 1.0 MB storage quota"
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
