"""Bad input to the API: deep JSON, oversized bodies (groups/api/parsers.py, middleware.py)."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from groups.api.middleware import body_limit
from groups.api.parsers import TOO_DEEP, TOO_MANY_DIGITS
from tests.helpers.clients import api_client

DEEP = "[" * 5000 + "]" * 5000


def test_deep_json_on_the_unauthenticated_login_is_400(db):
    response = Client().post("/api/v1/auth/login", DEEP, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": TOO_DEEP, "code": "parse_error"}


@pytest.mark.parametrize("path", ["/api/v1/groups", "/api/v1/auth/tokens"])
def test_deep_json_on_other_endpoints_is_400(cast, path):
    client = api_client(cast.admin)
    response = client.generic("POST", path, DEEP, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": TOO_DEEP, "code": "parse_error"}


def test_deep_object_is_400_too(cast):
    body = '{"a":' * 5000 + "1" + "}" * 5000
    response = api_client(cast.owner).post("/api/v1/auth/tokens", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json()["detail"] == TOO_DEEP


def test_ordinary_bad_json_keeps_its_message(db):
    response = Client().post("/api/v1/auth/login", "{nope", content_type="application/json")
    assert response.status_code == 400
    assert response.json()["code"] == "parse_error"
    assert response.json()["detail"].startswith("JSON parse error")


def _declared(client: Client, path: str, length: int, content_type: str = "application/json"):
    """A POST that declares `length` bytes but sends few: the answer must not need the body."""
    return client.generic("POST", path, b"{}", content_type=content_type, CONTENT_LENGTH=str(length))


def test_json_body_of_100_mb_is_413_json_without_reading_it(db):
    response = _declared(Client(), "/api/v1/auth/login", 100 * 1024 * 1024)
    assert response.status_code == 413
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "The request body (100 MB) is larger than the limit of 2.5 MB for this request "
        "(DATA_UPLOAD_MAX_MEMORY_SIZE).",
        "code": "too_large",
    }


def test_a_real_body_over_the_json_limit_is_413(cast, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    body = '{"name": "' + "x" * 5000 + '"}'
    response = api_client(cast.admin).post("/api/v1/groups", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert "limit of 1000 bytes" in response.json()["detail"]


def test_form_body_over_the_limit_is_413_not_django_html_400(db):
    response = _declared(
        Client(), "/api/v1/auth/login", 100 * 1024 * 1024, "application/x-www-form-urlencoded"
    )
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"


def test_declared_upload_over_the_upload_limit_is_413(cast, settings):
    settings.MAX_UPLOAD_TOTAL_BYTES = 10 * 1024 * 1024
    limit = settings.MAX_UPLOAD_TOTAL_BYTES + settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    client = api_client(cast.owner)
    response = _declared(client, "/api/v1/models", limit + 1, "multipart/form-data; boundary=x")
    assert response.status_code == 413
    assert response.json() == {
        # One byte over: rounded, both sizes would read "12.5 MB".
        "detail": "The request body (13,107,201 bytes) is larger than the limit of 13,107,200 bytes "
        "for this request (NEOMARIL_MAX_UPLOAD_TOTAL_MB).",
        "code": "too_large",
    }


def test_upload_within_the_limit_reaches_the_view(cast, settings):
    settings.MAX_UPLOAD_TOTAL_BYTES = settings.MAX_UPLOAD_FILE_BYTES = 10_000
    model = SimpleUploadedFile("model.pkl", b"x" * 5_000)
    response = api_client(cast.owner).post("/api/v1/models", {"model": model}, format="multipart")
    assert response.status_code == 400, response.json()
    assert response.json()["code"] == "invalid"
    assert "model" not in response.json()["errors"]  # the file arrived whole; other fields are missing


def test_the_upload_limit_leaves_room_for_form_fields_and_framing(rf, settings):
    settings.MAX_UPLOAD_TOTAL_BYTES = 10_000
    request = rf.post("/api/v1/models", content_type="multipart/form-data; boundary=x")
    assert body_limit(request) == (
        10_000 + settings.DATA_UPLOAD_MAX_MEMORY_SIZE,
        "NEOMARIL_MAX_UPLOAD_TOTAL_MB",
    )


def test_the_run_url_uses_the_execution_limit_for_uploads(db, settings):
    settings.MAX_EXECUTION_UPLOAD_BYTES = 1024 * 1024
    settings.MAX_UPLOAD_TOTAL_BYTES = 100 * 1024 * 1024
    response = _declared(Client(), "/api/v1/run/Mxyz", 50 * 1024 * 1024, "multipart/form-data; boundary=x")
    assert response.status_code == 413
    assert "(NEOMARIL_MAX_EXECUTION_UPLOAD_MB)" in response.json()["detail"]


def test_pages_outside_the_api_are_left_alone(db):
    # The browser's login form is not the API: Django's own limits and pages apply.
    response = _declared(Client(), "/login/", 100 * 1024 * 1024, "application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "json" not in response["Content-Type"]


def test_too_large_form_fields_inside_a_multipart_body_are_413_json(cast, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    response = api_client(cast.owner).post(
        "/api/v1/models", {"name": "x" * 5000, "group": "datarisk"}, format="multipart"
    )
    assert response.status_code == 413
    assert response.json()["code"] == "too_large"
    assert "form fields" in response.json()["detail"]


# A lone surrogate ("\ud800" in JSON) parses into a str that is not text: every endpoint
# that queried with it or repeated it in a message answered 500.
LONE_SURROGATE_BODIES = [
    (
        "/api/v1/training/experiments",
        {"experiment_name": "\ud800", "model_type": "Classification"},
        "experiment_name",
    ),
    ("/api/v1/users", {"username": "s\ud800"}, "username"),
    ("/api/v1/groups/datarisk/members", {"username": "teammate", "role": "\ud800"}, "role"),
    ("/api/v1/groups", {"name": "ok", "tags": [{"\ud800x": 1}]}, "a key of tags[0]"),
]


@pytest.mark.parametrize(("path", "body", "where"), LONE_SURROGATE_BODIES)
def test_a_lone_surrogate_anywhere_in_a_json_body_is_400_naming_where(cast, path, body, where):
    text = json.dumps(body)  # Python writes the surrogate as the escape "\ud800"
    response = api_client(cast.admin).generic("POST", path, text, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json() == {
        "detail": f"The JSON body has \\ud800 (a lone surrogate, which is not text) in {where}. "
        "Send strings of valid Unicode.",
        "code": "parse_error",
    }


def test_a_surrogate_pair_is_ordinary_text(cast):
    body = json.dumps({"name": "emoji-team", "description": "\U0001f600"})  # escaped as a pair
    response = api_client(cast.admin).generic("POST", "/api/v1/groups", body, content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["description"] == "\U0001f600"


def test_an_unexpected_error_under_the_api_is_the_json_error_shape_not_a_page(cast, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr("groups.services.create_group", broken)
    client = Client(raise_request_exception=False)
    client.force_login(cast.admin)
    response = client.post("/api/v1/groups", {"name": "doomed"}, content_type="application/json")
    assert response.status_code == 500
    assert response["Content-Type"] == "application/json"
    assert response.json() == {
        "detail": "Internal error: the server failed to answer this request. It is logged; retry later.",
        "code": "error",
    }
    page = client.get("/models/Mnothere/")  # outside /api/ the page stays a page
    assert "text/html" in page["Content-Type"]


def test_a_number_with_too_many_digits_in_a_json_body_gets_advice_for_the_caller(cast):
    body = '{"name": "digits", "description": ' + "7" * 5000 + "}"
    response = api_client(cast.admin).generic("POST", "/api/v1/groups", body, content_type="application/json")
    assert response.status_code == 400
    assert response.json() == {"detail": TOO_MANY_DIGITS, "code": "parse_error"}


@pytest.mark.parametrize("page", ["abc", "0", "-1", "1.5"])
def test_a_page_that_is_not_a_page_number_is_400_naming_page(cast, page):
    response = api_client(cast.admin).get("/api/v1/models", {"page": page})
    assert response.status_code == 400
    assert response.json()["errors"] == {"page": [f"{page!r} is not a page number: use 1, 2, …"]}


def test_a_page_past_the_last_is_404_saying_how_many_there_are(cast):
    client = api_client(cast.admin)
    assert client.get("/api/v1/models", {"page": "last"}).status_code == 200
    response = client.get("/api/v1/models", {"page": "999", "page_size": "10"})
    assert response.status_code == 404
    assert response.json() == {
        "detail": "There is no page 999: the list has 1 page of 10.",
        "code": "not_found",
    }


@pytest.mark.parametrize("page", ["١", "+1", " 1", "1e0"])
def test_a_page_number_is_ascii_digits_only(cast, page):
    # int() reads these as numbers; no client means them as one.
    response = api_client(cast.admin).get("/api/v1/models", {"page": page})
    assert response.status_code == 400
    assert response.json()["errors"] == {"page": [f"{page!r} is not a page number: use 1, 2, …"]}


@pytest.mark.parametrize("size", ["abc", "true", "null", "0.85", "0", "-5", "١٠", "501", "100000"])
def test_a_bad_page_size_is_400_naming_the_allowed_range(cast, size):
    response = api_client(cast.admin).get("/api/v1/models", {"page_size": size})
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "page_size": [f"{size!r} is not a page size: use a whole number from 1 to 500."]
    }


@pytest.mark.parametrize(("size", "expected"), [("1", 1), ("500", 500), (None, 50)])
def test_a_good_page_size_is_used(cast, size, expected):
    query = {} if size is None else {"page_size": size}  # empty: tests/groups/test_empty_page_parameters.py
    response = api_client(cast.admin).get("/api/v1/users", query)
    assert response.status_code == 200
    page = response.json()
    assert page["count"] > 1
    assert len(page["results"]) == min(expected, page["count"])
    assert (page["next"] is None) == (expected >= page["count"])


def test_a_compressed_body_is_415_saying_to_send_it_uncompressed(cast):
    import gzip

    response = api_client(cast.admin).generic(
        "POST",
        "/api/v1/groups",
        gzip.compress(b'{"name": "zipped"}'),
        content_type="application/json",
        HTTP_CONTENT_ENCODING="gzip",
    )
    assert response.status_code == 415
    assert response.json() == {
        "detail": "The request body is sent with Content-Encoding: gzip, which this API does not accept: "
        "send it uncompressed, without that header.",
        "code": "unsupported_media_type",
    }


def test_too_many_form_fields_names_the_limit(cast, settings):
    settings.DATA_UPLOAD_MAX_NUMBER_FIELDS = 5
    body = "&".join(f"f{i}=1" for i in range(10))
    response = api_client(cast.admin).generic(
        "POST", "/api/v1/groups", body, content_type="application/x-www-form-urlencoded"
    )
    assert response.status_code == 400
    assert response.json()["detail"] == (
        "The request has more than 5 fields, the limit (DATA_UPLOAD_MAX_NUMBER_FIELDS): send fewer."
    )


def test_a_query_parameter_given_twice_is_400_not_the_last_one_silently(cast):
    response = api_client(cast.admin).get("/api/v1/models?page_size=10&page_size=20&name=a&name=b&name=c")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "name: Given 3 times in the query string; send it once.",
        "code": "invalid",
        "errors": {
            "name": ["Given 3 times in the query string; send it once."],
            "page_size": ["Given 2 times in the query string; send it once."],
        },
    }
    assert api_client(cast.admin).get("/api/v1/models?page_size=10&name=a").status_code == 200


def test_a_run_url_s_query_string_is_not_read(cast):
    """It takes no query parameter, and the fast path that serves warm calls never reads
    the query string: Django's path answers such a call as the fast path would (here the
    401 of a call without a token), not a 400 for a repeated parameter."""
    response = api_client(None).post("/api/v1/run/Mnothing?a=1&a=2", {"x": 1}, format="json")
    assert response.status_code == 401
