"""A full disk is answered 507 saying so, and what was being written is let go at once."""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadhandler import TemporaryFileUploadHandler
from django.db import OperationalError
from django.test import Client

from executions.models import Execution
from groups import services as group_services
from models_app.models import MLModel
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.executions import submit
from tests.helpers.uploads import sync_payload


@pytest.fixture
def model(deploy):
    return deploy()


def _leftovers() -> list[Path]:
    return list(Path(settings.FILE_UPLOAD_TEMP_DIR).glob("tmp*.upload*"))


def _full_disk_on_write(monkeypatch, after_bytes: int = 0):
    """The disk fills once `after_bytes` of a file are written."""
    real = TemporaryFileUploadHandler.receive_data_chunk
    written = {"bytes": 0}

    def receive(self, raw_data, start):
        written["bytes"] += len(raw_data)
        if written["bytes"] > after_bytes:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, raw_data, start)

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", receive)


def test_an_upload_that_would_leave_less_than_the_reserve_is_507_before_it_is_written(cast, settings):
    settings.DISK_RESERVE_MB = 10**9  # more than any disk has free
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    assert response.status_code == 507, response.content
    body = response.json()
    assert body["code"] == "insufficient_storage"
    assert body["detail"].startswith("The server has no disk space left for ")
    assert "NEOMARIL_DISK_RESERVE_MB = 1000000000 MB" in body["detail"]
    assert not MLModel.objects.exists() and _leftovers() == []


def test_a_disk_that_fills_during_an_async_input_is_507_and_the_partial_file_goes_at_once(
    caller, model, monkeypatch
):
    _full_disk_on_write(monkeypatch, after_bytes=64 * 1024)
    response = submit(caller, model, content="a,b\n" + "1,2\n" * 200_000)
    assert response.status_code == 507, response.content
    assert response.json()["code"] == "insufficient_storage"
    assert "nothing was stored" in response.json()["detail"]
    # Closed (so deleted) by the handler, not left open until the garbage collector runs.
    assert _leftovers() == []
    assert not Execution.objects.exists()


def test_another_write_error_is_not_taken_for_a_full_disk(caller, model, monkeypatch):
    real = TemporaryFileUploadHandler.receive_data_chunk

    def broken(self, raw_data, start):
        # Closed first, so it deletes its own name: the test unlinked it by hand instead,
        # and its collection during a later test failed (FileNotFoundError in __del__),
        # once inside CPython 3.11's ast.parse, which then raised a SystemError.
        self.file.close()
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", broken)
    with pytest.raises(OSError, match="Input/output error"):
        submit(caller, model)
    assert _leftovers() == []
    monkeypatch.setattr(TemporaryFileUploadHandler, "receive_data_chunk", real)


def test_a_view_that_meets_a_full_disk_answers_507_not_a_500(cast, monkeypatch):
    def full(*args, **kwargs):
        raise OperationalError("database or disk is full")

    monkeypatch.setattr(group_services, "create_group", full)
    api = api_client(cast.admin).post("/api/v1/groups", {"name": "new-team"}, format="json")
    assert api.status_code == 507, api.content
    assert api.json()["code"] == "insufficient_storage"
    page_client = Client()
    page_client.login(username=cast.admin.username, password=PASSWORD)
    monkeypatch.setattr(
        group_services, "create_group", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.ENOSPC, "full"))
    )
    page = page_client.post("/groups/", {"name": "new-team", "description": ""})
    assert page.status_code == 507
    assert "The server's disk is full" in page.content.decode()
