"""File parts of a model upload that Django's parser drops (a file name that is not UTF-8,
"." or "..", a part cut off before its closing boundary) are named in the 400, on the API
and the page alike, instead of "Upload the scoring script" as if nothing had been sent
(groups/uploads.py: lost_parts)."""

from __future__ import annotations

import json

import pytest
from django.conf import settings
from django.test import Client

from models_app.models import MLModel
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.uploads import SYNC_SOURCE

BOUNDARY = b"nEoMaRiL-b0undary"
CONTENT_TYPE = f"multipart/form-data; boundary={BOUNDARY.decode()}"
XHR = {"HTTP_X_REQUESTED_WITH": "XMLHttpRequest"}

FIELDS = {"name": b"Lost", "group": b"datarisk", "model_reference": b"score", "python_version": b"3.9"}
FILES = {
    "source": (b"app.py", SYNC_SOURCE.encode()),
    "model": (b"model.pkl", b"\x80\x04K\x01."),
    "requirements": (b"requirements.txt", b""),
    "schema": (b"schema.json", json.dumps({"a": 1, "b": 2}).encode()),
}


def body(
    *,
    files=FILES,
    extra: tuple[bytes, bytes] | None = None,
    last: tuple[bytes, bytes] | None = None,
    close: bool = True,
) -> bytes:
    """A model upload by hand: the form fields, `files` (field -> (file name, content)), then
    `extra` and `last` as raw (Content-Disposition parameters, content) parts."""
    parts = [(f'name="{k}"'.encode(), v) for k, v in FIELDS.items()]
    parts += [(f'name="{k}"; filename="'.encode() + name + b'"', data) for k, (name, data) in files.items()]
    parts += [part for part in (extra, last) if part is not None]
    out = b""
    for disposition, content in parts:
        out += b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; " + disposition + b"\r\n\r\n"
        out += content + b"\r\n"
    return out + (b"--" + BOUNDARY + b"--\r\n" if close else b"")


def _api(cast, data: bytes):
    return api_client(cast.owner).post("/api/v1/models", data, content_type=CONTENT_TYPE)


def _page(cast, data: bytes):
    client = Client()
    assert client.login(username=cast.owner.username, password=PASSWORD)
    return client.post("/models/new/", data, content_type=CONTENT_TYPE, **XHR)


def _nothing_kept():
    assert not MLModel.objects.exists()
    assert not list(settings.UPLOAD_TMP_DIR.glob("*.upload*"))


def _without(field: str) -> dict:
    return {k: v for k, v in FILES.items() if k != field}


NOT_UTF8 = (
    "The file name of the part 'source' is not valid UTF-8 ('\\xe9t\\xe9.py'), so the file could "
    "not be read: send the name in UTF-8, or rename the file."
)


@pytest.mark.parametrize("send", [_api, _page], ids=["api", "page"])
def test_a_source_whose_name_is_not_utf8_is_named_not_asked_for(cast, send):
    files = {**FILES, "source": (b"\xe9t\xe9.py", SYNC_SOURCE.encode())}
    response = send(cast, body(files=files))
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert errors["source"] == [NOT_UTF8]
    _nothing_kept()


@pytest.mark.parametrize("name", [b".", b".."])
def test_a_model_file_named_dot_is_named(cast, name):
    files = {**FILES, "model": (name, b"\x80\x04K\x01.")}
    response = _api(cast, body(files=files))
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["model"] == [
        f"The file part 'model' has the file name '{name.decode()}', which cannot be used as a file "
        "name, so the file was not read: send it with a plain name such as model.pkl."
    ]
    _nothing_kept()


def test_an_optional_env_that_was_lost_is_refused_not_skipped(cast):
    """A .env dropped by the parser would deploy the model without its secrets."""
    response = _api(cast, body(last=(b'name="env"; filename="\xff.env"', b"API_KEY=x\n")))
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["env"] == [
        "The file name of the part 'env' is not valid UTF-8 ('\\xff.env'), so the file could not be "
        "read: send the name in UTF-8, or rename the file."
    ]
    _nothing_kept()


@pytest.mark.parametrize("send", [_api, _page], ids=["api", "page"])
def test_a_body_cut_off_inside_a_file_is_told_so(cast, send):
    data = body(
        files=_without("schema"), last=(b'name="schema"; filename="schema.json"', b'{"a": 1'), close=False
    )
    response = send(cast, data[:-2])
    assert response.status_code == 400, response.content
    assert response.json()["errors"]["schema"] == [
        "The file part 'schema' ('schema.json') was cut off: the body ended before the part's closing "
        "boundary. Send the file again."
    ]
    _nothing_kept()


def test_a_file_part_without_a_field_name_is_told_so(cast):
    response = _api(cast, body(files=_without("requirements"), last=(b'filename="requirements.txt"', b"")))
    assert response.status_code == 400, response.content
    errors = response.json()["errors"]
    assert errors["non_field_errors"] == [
        "The file part with the file name 'requirements.txt' has no field name, so the file was not "
        "read: send it in the field 'requirements' (Content-Disposition: form-data; "
        'name="requirements"; filename=…).'
    ]
    assert errors["requirements"] == ["Upload requirements.txt."]


def test_a_lost_part_of_a_field_the_form_does_not_have_is_ignored(cast):
    """As any field the upload does not define is."""
    response = _api(cast, body(extra=(b'name="junk"; filename="."', b"x")))
    assert response.status_code == 201, response.content
