"""A multipart body in which its boundary never occurs is unreadable, not an empty form
(groups/uploads.py): `Content-Type: multipart/form-data; boundary=zz` with the body
`garbage` issued an unnamed token, a share link, a password reset."""

from __future__ import annotations

import pytest

from groups.models import ApiToken
from tests.helpers.clients import api_client
from tests.helpers.uploads import sync_payload

GARBAGE = b"garbage"
NO_PARTS = (
    "The multipart body has no parts: its boundary 'zz' (from the Content-Type) does not occur in "
    "it. Send the fields as multipart/form-data parts (curl -F name=value), or a JSON body."
)


def _multipart(client, path: str, body: bytes):
    return client.generic("POST", path, body, content_type="multipart/form-data; boundary=zz")


@pytest.fixture
def model_hash(cast):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    assert response.status_code == 201, response.content
    return response.json()["hash"]


@pytest.mark.parametrize("body", [GARBAGE, b"\r\n", b"--z\r\nname: x\r\n\r\n", b"-- zz\r\n"])
def test_a_multipart_body_without_its_boundary_is_a_parse_error(cast, body):
    client = api_client(cast.owner)
    tokens = ApiToken.objects.count()
    response = _multipart(client, "/api/v1/auth/tokens", body)
    assert response.status_code == 400, response.content
    assert response.json() == {"detail": f"Multipart form parse error - {NO_PARTS}", "code": "parse_error"}
    assert ApiToken.objects.count() == tokens


@pytest.mark.parametrize("path", ["/api/v1/models/{hash}/share-links", "/api/v1/users/owner/reset"])
def test_other_endpoints_that_take_an_empty_body_refuse_it_too(cast, model_hash, path):
    response = _multipart(api_client(cast.admin), path.format(hash=model_hash), GARBAGE)
    assert response.status_code == 400, response.content
    assert response.json()["code"] == "parse_error"
    assert NO_PARTS in response.json()["detail"]


def test_an_upload_whose_body_is_not_multipart_says_so(cast):
    response = _multipart(api_client(cast.owner), "/api/v1/models", GARBAGE)
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"", None),  # no body at all
        (b"{}", "application/json"),
        (b"--zz--\r\n", "multipart/form-data; boundary=zz"),  # a browser's empty FormData
        (b"", "multipart/form-data; boundary=zz"),
    ],
)
def test_an_empty_body_still_issues_an_unnamed_token(cast, body, content_type):
    client = api_client(cast.owner)
    if content_type is None:
        response = client.post("/api/v1/auth/tokens")
    else:
        response = client.generic("POST", "/api/v1/auth/tokens", body, content_type=content_type)
    assert response.status_code == 201, response.content
    assert response.json()["name"] == ""


def test_a_multipart_body_with_its_parts_is_read(cast):
    body = b'--zz\r\nContent-Disposition: form-data; name="name"\r\n\r\nci\r\n--zz--\r\n'
    response = _multipart(api_client(cast.owner), "/api/v1/auth/tokens", body)
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "ci"
