"""Model uploads whose file names fit the 128-character limit but not a filesystem's
255 bytes (models_app/validation/filenames.py, groups/uploads.py): a 400 naming the
field and the byte limit, never a 500, and nothing left on disk."""

from __future__ import annotations

import pytest
from django.conf import settings

from models_app.models import MLModel
from tests.helpers.clients import api_client
from tests.helpers.uploads import file, sync_payload

LONG_IN_BYTES = "€" * 100 + ".pkl"  # 104 characters, 304 bytes
LONG_EXTENSION = "a." + "😀" * 70  # 72 characters, 282 bytes: too long for Django's temporary file


def _message(size: int) -> str:
    return (
        f"The file name is {size} bytes long in UTF-8; shorten it to at most 255 bytes "
        "(accented letters and symbols take 2 to 4 bytes each)."
    )


@pytest.mark.parametrize(
    ("field", "name", "size"),
    [("model", LONG_IN_BYTES, 304), ("source", LONG_EXTENSION, 282)],
    ids=["304-bytes", "long-extension"],
)
def test_a_model_file_name_too_long_in_bytes_is_a_400(cast, field, name, size):
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(**{field: file(name, b"\x80\x04K\x01.")}), format="multipart"
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {field: [_message(size)]}
    assert not MLModel.objects.exists()
    assert not list(settings.UPLOAD_TMP_DIR.glob("*.upload*"))


def test_an_extra_file_name_too_long_in_bytes_is_a_400(cast):
    payload = sync_payload(extra=[file("utils.py", "x = 1\n"), file(LONG_EXTENSION, "x")])
    response = api_client(cast.owner).post("/api/v1/models", payload, format="multipart")
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"extra": [_message(282)]}


def test_a_model_file_name_of_255_bytes_is_stored_as_given(cast):
    name = "€" * 83 + "ab.pkl"  # 89 characters, 255 bytes
    assert len(name.encode()) == 255
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(model=file(name, b"\x80\x04K\x01.")), format="multipart"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["files"]["model"] == name
    model = MLModel.objects.get(hash=response.json()["hash"])
    assert (model.folder / name).read_bytes() == b"\x80\x04K\x01."
