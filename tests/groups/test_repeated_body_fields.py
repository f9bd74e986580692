"""A field sent twice in a request body is a 400 naming it, not the last value taken
silently (groups/api/parsers.py): a JSON key twice in any object is a parse error, a form
or multipart field twice (or both as a field and as a file) a 400 at its name. Files may
repeat where a field takes several (`extra`). The run URL's body is the model's input,
left as sent."""

from __future__ import annotations

import inspect
import tempfile
from pathlib import Path

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.views import APIView

from groups.api import parsers
from groups.models import ApiToken, Membership
from models_app.models import MLModel
from tests.helpers.clients import api_client, token_client
from tests.helpers.training import custom_payload, make_experiment
from tests.helpers.uploads import file, sync_payload

TWICE = ["Given 2 times in the body; send it once."]


def test_a_form_field_twice_is_400_naming_it(cast):
    response = api_client(cast.admin).generic(
        "POST",
        "/api/v1/groups/datarisk/members",
        "username=outsider&role=owner&role=member",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 400, response.content
    assert response.json() == {"detail": f"role: {TWICE[0]}", "code": "invalid", "errors": {"role": TWICE}}
    assert not Membership.objects.filter(group=cast.group, user=cast.outsider).exists()


def test_a_form_field_once_still_works(cast):
    response = api_client(cast.admin).generic(
        "POST",
        "/api/v1/groups/datarisk/members",
        "username=outsider&role=member",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 201, response.content
    assert Membership.objects.get(group=cast.group, user=cast.outsider).role == "member"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            '{"name": "first", "name": "second"}',
            'The JSON body gives the key "name" 2 times in its top-level object; send each key once.',
        ),
        (
            '{"name": "a", "x": [1, {"k": 1, "j": 2, "k": 3, "k": 4}], "y": {"z": 1, "z": 2}}',
            'The JSON body gives the key "k" 3 times in the object at x[1]; send each key once.',
        ),
        (
            '{"na\\u0000me": 1, "na\\u0000me": 2}',
            'The JSON body gives the key "na\\u0000me" 2 times in its top-level object; send each key once.',
        ),
    ],
    ids=["top-level", "nested", "escaped"],
)
def test_a_json_key_twice_in_an_object_is_a_parse_error_naming_it(cast, body, message):
    client = api_client(cast.owner)
    tokens = ApiToken.objects.count()
    response = client.post("/api/v1/auth/tokens", body, content_type="application/json")
    assert response.status_code == 400, response.content
    assert response.json() == {"detail": message, "code": "parse_error"}
    assert ApiToken.objects.count() == tokens


def test_a_json_body_without_repeats_is_read_as_before(cast):
    # The same key in different objects is no repeat.
    body = '{"name": "g3", "description": "x", "nested": [{"name": 1}, {"name": 2}]}'
    response = api_client(cast.admin).post("/api/v1/groups", body, content_type="application/json")
    assert response.status_code == 400  # the parser read it: `nested` is not a field of a group
    assert response.json()["errors"] == {
        "nested": ["Not a field of this request; it takes name, description, storage_quota_mb."]
    }
    body = '{"name": "g3", "description": "x"}'
    response = api_client(cast.admin).post("/api/v1/groups", body, content_type="application/json")
    assert (response.status_code, response.json()["name"]) == (201, "g3")


def test_a_multipart_field_twice_on_an_upload_is_400_naming_it(cast):
    response = api_client(cast.owner).post(
        "/api/v1/models", sync_payload(name=["first", "second"]), format="multipart"
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"name": TWICE}
    assert not MLModel.objects.exists()


def test_a_field_sent_as_text_and_as_a_file_is_400_naming_it(cast):
    payload = sync_payload()
    payload["schema"] = [file("schema.json", '{"a": 1}'), '{"b": 2}']
    response = api_client(cast.owner).post("/api/v1/models", payload, format="multipart")
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"schema": TWICE}


def test_a_run_name_twice_on_a_training_run_is_400_naming_it(cast):
    experiment = make_experiment(cast.group, cast.owner)
    response = api_client(cast.owner).post(
        f"/api/v1/training/experiments/{experiment.hash}/runs",
        custom_payload(run_name=["first", "second"]),
        format="multipart",
    )
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {"run_name": TWICE}
    assert not experiment.runs.exists()


def test_several_extra_files_still_arrive(cast):
    extra = [file("utils.py", "X = 1\n"), file("lookup.csv", "a,b\n")]
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(extra=extra), format="multipart")
    assert response.status_code == 201, response.content
    assert response.json()["files"]["extra"] == ["utils.py", "lookup.csv"]


def test_a_file_field_that_takes_one_file_keeps_its_own_message(cast):
    source = [file("app.py", "x = 1\n"), file("app2.py", "x = 2\n")]
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(source=source), format="multipart")
    assert response.status_code == 400
    assert response.json()["errors"]["source"] == ["2 files were sent in this field, which takes one."]


def test_the_run_url_takes_its_payload_as_sent(cast, settings):
    response = api_client(cast.owner).post("/api/v1/models", sync_payload(), format="multipart")
    MLModel.objects.filter(hash=response.json()["hash"]).update(status=MLModel.Status.DEPLOYED)
    with tempfile.TemporaryDirectory(prefix="nm-") as run_dir:  # short: Unix socket paths
        settings.RUN_DIR = Path(run_dir)  # no model host: the call reaches it, and gets its 503
        answer = token_client(cast.group_token).post(
            f"/api/v1/run/{response.json()['hash']}", '{"a": 1, "a": 2}', content_type="application/json"
        )
    assert answer.status_code == 503, answer.content
    assert answer.json()["code"] == "unavailable"


def _api_views(patterns, prefix=""):
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _api_views(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            view = getattr(pattern.callback, "cls", None)
            if prefix.startswith("api/") and inspect.isclass(view) and issubclass(view, APIView):
                yield prefix + str(pattern.pattern), view


def test_every_api_view_parses_with_the_apis_parsers():
    views = list(_api_views(get_resolver().url_patterns))
    assert len(views) > 30
    ours = {parsers.JSONParser, parsers.FormParser, parsers.MultiPartParser}
    strays = {path: view.parser_classes for path, view in views if not set(view.parser_classes) <= ours}
    assert not strays, "parse with groups.api.parsers' classes, which refuse a field sent twice"
