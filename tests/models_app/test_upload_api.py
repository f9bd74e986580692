"""Uploading a model through the API: validation (each failure a 400 naming the field) and storage.

The upload page validates through the same form; the tests at the end hold the two
(and the API's OpenAPI document) to one definition.
"""

import json
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import call_command
from django.test import Client

from groups import crypto
from models_app.calls import lookup_model
from models_app.forms import DEFAULT_PYTHON_VERSION, ModelUploadForm
from models_app.models import MLModel, ModelBuild, ModelEvent
from tests.helpers.cast import PASSWORD
from tests.helpers.clients import api_client
from tests.helpers.uploads import file, sync_payload

# Python imports it by its coding line; the string holds latin-1's é (0xE9).
LATIN1_SOURCE = b"# -*- coding: latin-1 -*-\ndef score(data, base_path):\n    return {'label': 'caf\xe9'}\n"


def _post(client, payload):
    return client.post("/api/v1/models", payload, format="multipart")


def _nothing_stored():
    assert not MLModel.objects.exists()
    leftovers = [p.name for p in settings.MODELS_DIR.iterdir()] if settings.MODELS_DIR.exists() else []
    assert leftovers == [] or all(not name.startswith(".incoming") for name in leftovers)


@pytest.fixture(autouse=True)
def _empty_models_dir():
    import shutil

    shutil.rmtree(settings.MODELS_DIR, ignore_errors=True)
    settings.MODELS_DIR.mkdir(parents=True)


def test_sync_upload_is_stored_and_queued(cast):
    response = _post(api_client(cast.owner), sync_payload())
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["hash"].startswith("M") and len(body["hash"]) == 33
    assert body["status"] == "Ready"
    assert body["group"] == "datarisk"
    assert body["schema"] == {"a": 1, "b": 2}
    assert body["files"] == {
        "source": "app.py",
        "model": "model.pkl",
        "requirements": "requirements.txt",
        "schema": "schema.json",
        "sample": None,
        "extra": [],
    }
    assert body["input_type"] == "json" and body["created_by"] == "owner"
    model = MLModel.objects.get(hash=body["hash"])
    assert sorted(p.name for p in model.folder.iterdir()) == [
        "app.py",
        "model.pkl",
        "requirements.txt",
        "schema.json",
    ]
    assert ModelBuild.objects.get(model=model).status == "Queued"
    assert ModelEvent.objects.get(model=model).action == "created"


def test_schema_as_inline_json_and_extra_files(cast):
    payload = sync_payload(
        schema='{"a": 1, "b": [1, 2]}', extra=[file("utils.py", "X = 1\n"), file("lookup.csv", "a,b\n")]
    )
    response = _post(api_client(cast.teammate), payload)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["schema"] == {"a": 1, "b": [1, 2]}
    assert body["files"]["extra"] == ["utils.py", "lookup.csv"]
    model = MLModel.objects.get(hash=body["hash"])
    assert (model.folder / "utils.py").read_text() == "X = 1\n"
    assert (model.folder / "schema.json").exists()


def test_the_schema_keeps_its_keys_in_the_order_written(cast):
    """Its order is the column order of the DataFrame a model builds from it (PostgreSQL's
    jsonb would sort the keys: groups/fields.py)."""
    written = '{"mean_radius": 1.5, "b": 2, "a": {"z": 1, "y": 2}}'
    response = _post(api_client(cast.owner), sync_payload(schema=file("schema.json", written)))
    assert response.status_code == 201, response.json()
    model = MLModel.objects.get(hash=response.json()["hash"])
    assert json.dumps(model.schema) == written
    MLModel.objects.filter(pk=model.pk).update(smoke_result={"pred": 1, "proba": 0.5})
    assert list(MLModel.objects.get(pk=model.pk).smoke_result) == ["pred", "proba"]
    assert lookup_model(model.hash).schema_is_object is True  # the fast path's raw query reads it too


def test_env_is_encrypted_and_only_names_shown(cast):
    env = "# secrets\nAPI_KEY=s3cr3t-value\nexport DB_PASSWORD='hunter2-value'\n"
    client = api_client(cast.owner)
    response = _post(client, sync_payload(env=file(".env", env)))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["env_names"] == ["API_KEY", "DB_PASSWORD"]
    model = MLModel.objects.get(hash=body["hash"])
    assert crypto.decrypt_json(model.env_ciphertext) == {
        "API_KEY": "s3cr3t-value",
        "DB_PASSWORD": "hunter2-value",
    }
    assert not (model.folder / ".env").exists()
    dump = StringIO()
    call_command("dumpdata", "models_app", stdout=dump)
    everything = dump.getvalue() + client.get(f"/api/v1/models/{model.hash}").content.decode()
    assert "s3cr3t-value" not in everything and "hunter2-value" not in everything


@pytest.mark.parametrize(
    "overrides,field,expected",
    [
        ({"source": file("app.py", "def score(data, base_path)\n    return 1\n")}, "source", "line 1"),
        ({"source": file("app.py", "def predict(data, base_path):\n    return 1\n")}, "source", "predict"),
        ({"source": file("app.py", "def score(data):\n    return 1\n")}, "source", "two"),
        ({"source": file("app.txt", "def score(a, b): pass\n")}, "source", ".py"),
        ({"model_reference": "not a name"}, "model_reference", "not a valid Python function name"),
        ({"schema": file("schema.json", "{'a': 1}")}, "schema", "line 1"),
        ({"schema": file("schema.json", "[1, 2]")}, "schema", "object"),
        ({"schema": None}, "schema", "need a schema"),
        ({"schema": "{not json"}, "schema", "not valid JSON"),
        ({"python_version": "3.7"}, "python_version", "Available: 3.8"),
        ({"python_version": "three"}, "python_version", "3.9"),
        ({"requirements": file("requirements.txt", "-e ./mypkg\n")}, "requirements", "line 1"),
        (
            {"requirements": file("requirements.txt", "pandas\n--index-url https://evil.example/simple\n")},
            "requirements",
            "line 2",
        ),
        ({"requirements": file("requirements.txt", "numpy>=>1\n")}, "requirements", "line 1"),
        ({"group": "other-team"}, "group", "not a member"),
        ({"group": "nope"}, "group", "not a member"),
        ({"operation": "Batch"}, "operation", "Sync"),
        ({"name": "x" * 65}, "name", "64"),
        ({"model": None}, "model", "model file"),
        ({"env": file(".env", "1BAD=value\n")}, "env", "line 1"),
        ({"env": file(".env", "PATH=/tmp\n")}, "env", "PATH"),
        ({"input_type": "csv"}, "input_type", "json"),
        ({"extra": [file("app.py", "x=1")]}, "extra", "app.py"),
    ],
)
def test_bad_uploads_are_400_naming_the_field_and_store_nothing(cast, overrides, field, expected):
    response = _post(api_client(cast.owner), sync_payload(**overrides))
    assert response.status_code == 400, response.json()
    body = response.json()
    assert field in body["errors"], body
    assert expected.lower() in " ".join(body["errors"][field]).lower(), body["errors"][field]
    assert body["detail"]
    _nothing_stored()


@pytest.mark.parametrize(
    "overrides,field,expected",
    [
        ({"min_replicas": "3"}, "min_replicas", "a serving setting, not part of the upload"),
        ({"execution_timeout": "60"}, "execution_timeout", "PATCH /api/v1/models/<hash>"),
        ({"bogus": "1"}, "bogus", "Not a field of this upload; the fields are "),
        ({"bogus_file": file("x.txt", "x")}, "bogus_file", "model_reference"),
    ],
)
def test_a_field_the_upload_does_not_take_is_400_not_dropped(cast, overrides, field, expected):
    """Django's form ignores what it has no field for: min_replicas=3 gave a model with 1."""
    response = _post(api_client(cast.owner), sync_payload(**overrides))
    assert response.status_code == 400, response.json()
    assert expected in " ".join(response.json()["errors"][field])
    _nothing_stored()


def test_path_tricks_in_filenames_never_leave_the_model_folder(cast):
    payload = sync_payload(model=file("/etc/passwd", "x"), extra=[file("../../evil.py", "x=1")])
    response = _post(api_client(cast.owner), payload)
    assert response.status_code == 201, response.json()
    model = MLModel.objects.get(hash=response.json()["hash"])
    assert model.model_file == "passwd" and model.extra_files == ["evil.py"]
    assert (model.folder / "evil.py").read_text() == "x=1"
    assert not (settings.MODELS_DIR / "evil.py").exists()


def test_all_problems_are_reported_at_once(cast):
    payload = sync_payload(schema=file("schema.json", "nope"), python_version="2.7", model=None)
    body = _post(api_client(cast.owner), payload).json()
    assert {"schema", "python_version", "model"} <= set(body["errors"])


def test_env_errors_never_echo_the_value(cast):
    body = _post(api_client(cast.owner), sync_payload(env=file(".env", "BAD KEY=topsecretvalue\n"))).json()
    assert "topsecretvalue" not in str(body)
    assert "env" in body["errors"]


def test_outsider_cannot_upload_to_group(cast):
    response = _post(api_client(cast.outsider), sync_payload())
    assert response.status_code == 400
    assert "not a member of a group named 'datarisk'" in response.json()["errors"]["group"][0]


def test_file_over_limit_is_rejected(cast, settings):
    settings.MAX_UPLOAD_FILE_BYTES = 1000
    response = _post(api_client(cast.owner), sync_payload(model=file("model.pkl", b"x" * 5000)))
    assert response.status_code == 400
    assert "per-file limit" in response.json()["errors"]["model"][0]
    _nothing_stored()


def test_upload_over_total_limit_is_413(cast, settings):
    settings.MAX_UPLOAD_TOTAL_BYTES = 2000
    settings.MAX_UPLOAD_FILE_BYTES = 2000
    response = _post(api_client(cast.owner), sync_payload(model=file("model.pkl", b"x" * 5000)))
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    _nothing_stored()


def test_text_file_limit(cast, settings):
    settings.MAX_TEXT_FILE_BYTES = 100
    response = _post(
        api_client(cast.owner), sync_payload(requirements=file("requirements.txt", "# x\n" * 100))
    )
    assert response.status_code == 400
    assert "KB" in response.json()["errors"]["requirements"][0]


def test_async_upload_defaults_to_csv_and_needs_no_schema(cast):
    source = "def score(data_path, model_path):\n    return data_path + '/out.csv'\n"
    payload = sync_payload(
        operation="Async", schema=None, source=file("app.py", source), sample=file("input.csv", "a\n1\n")
    )
    response = _post(api_client(cast.owner), payload)
    assert response.status_code == 201, response.json()
    assert response.json()["input_type"] == "csv"
    assert response.json()["files"]["sample"] == "input.csv"


def test_anonymous_upload_is_401(cast):
    assert _post(api_client(), sync_payload()).status_code == 401


# --- one upload shape: the API, the page and the docs ----------------------------------


def _page_client(user) -> Client:
    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    return client


def _page_post(client, payload):
    return client.post("/models/new/", payload, HTTP_X_REQUESTED_WITH="XMLHttpRequest")


# Each case is a function: a payload's files are read by the first post.
SAME_REJECTIONS = {
    "syntax error": lambda: {"source": file("app.py", "def score(data, base_path)\n    return 1\n")},
    "no entrypoint": lambda: {"model_reference": "predict"},
    "bad entrypoint name": lambda: {"model_reference": "class"},
    "not a .py": lambda: {"source": file("app.txt", "def score(a, b): pass\n")},
    "no schema": lambda: {"schema": None},
    "schema not an object": lambda: {"schema": file("schema.json", "[1, 2]")},
    "missing files and name": lambda: {"name": "", "model": None, "requirements": None},
    "name too long": lambda: {"name": "x" * 65},
    "unknown group": lambda: {"group": "other-team"},
    "absent python": lambda: {"python_version": "3.7"},
    "bad requirements": lambda: {"requirements": file("requirements.txt", "-e ./mypkg\n")},
    "reserved env key": lambda: {"env": file(".env", "PATH=/tmp\n")},
    "bad operation": lambda: {"operation": "Batch"},
    "csv for Sync": lambda: {"input_type": "csv"},
    "sample for Sync": lambda: {"sample": file("in.csv", "a\n1\n")},
    "bad allow_network": lambda: {"allow_network": "maybe"},
    "two files, one name": lambda: {"extra": [file("App.py", "x = 1\n")]},
    "UTF-16 without a BOM": lambda: {
        "requirements": file("requirements.txt", "pandas\n".encode("utf-16-le"))
    },
    "script not UTF-8, no coding line": lambda: {"source": file("app.py", LATIN1_SOURCE.split(b"\n", 1)[1])},
}


@pytest.mark.parametrize("case", SAME_REJECTIONS)
def test_api_and_page_reject_a_bad_upload_with_the_same_messages(cast, case):
    api = _post(api_client(cast.owner), sync_payload(**SAME_REJECTIONS[case]()))
    page = _page_post(_page_client(cast.owner), sync_payload(**SAME_REJECTIONS[case]()))
    assert api.status_code == page.status_code == 400
    assert api.json()["errors"] == page.json()["errors"]
    _nothing_stored()


def test_the_clearer_messages_won(cast):
    errors = _post(api_client(cast.owner), sync_payload(group="nope", python_version="3.7")).json()["errors"]
    assert errors["group"] == [
        "Select a valid choice: you are not a member of a group named 'nope'. Use one of your groups."
    ]
    assert errors["python_version"][0].startswith(
        "Select a valid choice: Python 3.7 is not available on this host. Available: "
    )
    inline = _post(api_client(cast.owner), sync_payload(schema="[1]")).json()["errors"]
    from_file = _post(api_client(cast.owner), sync_payload(schema=file("s.json", "[1]"))).json()["errors"]
    assert (
        inline["schema"]
        == from_file["schema"]
        == [
            'The schema of a Sync model must be a JSON object such as {"feature": 1.5} '
            "(one example input), but it is an array."
        ]
    )


def test_openapi_request_body_of_the_upload_is_the_form(db):
    document = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    body = document["paths"]["/api/v1/models"]["post"]["requestBody"]["content"]["multipart/form-data"]
    schema = body["schema"]
    fields = ModelUploadForm.base_fields
    assert list(schema["properties"]) == list(fields)
    assert schema["required"] == [name for name, field in fields.items() if field.required]
    assert schema["required"] == ["name", "group", "model_reference", "source", "model", "requirements"]
    properties = schema["properties"]
    assert properties["python_version"]["default"] == DEFAULT_PYTHON_VERSION
    assert properties["operation"] == {
        "type": "string",
        "enum": ["Sync", "Async"],
        "default": "Sync",
        "description": str(fields["operation"].help_text),
    }
    assert properties["allow_network"]["type"] == "boolean" and properties["allow_network"]["default"] is True
    assert properties["source"]["format"] == "binary"
    assert properties["extra"]["items"]["format"] == "binary"


def test_defaults_are_the_forms_for_the_api_and_the_page(cast):
    payload = sync_payload()
    del payload["operation"], payload["python_version"]
    body = _post(api_client(cast.owner), payload).json()
    assert body["operation"] == "Sync" and body["python_version"] == DEFAULT_PYTHON_VERSION
    assert body["allow_network"] is True
    page = _page_client(cast.owner).get("/models/new/").content.decode()
    assert f'<option value="{DEFAULT_PYTHON_VERSION}" selected>' in page
    assert 'name="allow_network" value="true"' in page and "checked" in page


@pytest.mark.parametrize(("sent", "stored"), [("false", False), ("true", True), ("0", False), ("1", True)])
def test_allow_network_through_the_api(cast, sent, stored):
    response = _post(api_client(cast.owner), sync_payload(allow_network=sent))
    assert response.status_code == 201, response.json()
    assert response.json()["allow_network"] is stored
    assert MLModel.objects.get().allow_network is stored


@pytest.mark.parametrize(
    ("sent", "stored"),
    [(["false"], False), (["false", "true"], True)],  # the hidden "false", then the checkbox's "true"
)
def test_allow_network_through_the_page(cast, sent, stored):
    response = _page_post(_page_client(cast.owner), sync_payload(allow_network=sent))
    assert response.status_code == 201, response.json()
    assert MLModel.objects.get().allow_network is stored
    body = api_client(cast.owner).get(f"/api/v1/models/{MLModel.objects.get().hash}").json()
    assert body["allow_network"] is stored


def test_inline_schema_and_an_extra_file_may_not_share_schema_json(cast):
    payload = sync_payload(schema='{"a": 1}', extra=[file("schema.json", "{}")])
    response = _post(api_client(cast.owner), payload)
    assert response.status_code == 400
    assert "same name" in response.json()["errors"]["extra"][0]
    _nothing_stored()


def test_a_failure_after_the_files_are_placed_leaves_no_folder(cast, monkeypatch):
    """The row rolls back when queueing its build fails; its folder, already renamed into
    place, used to stay behind with the uploaded files."""
    from models_app import services

    def fail(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(services, "queue_build", fail)
    client = api_client(cast.owner)
    client.raise_request_exception = False
    response = _post(client, sync_payload())
    assert response.status_code == 500
    assert not MLModel.objects.exists()
    assert list(settings.MODELS_DIR.iterdir()) == []


# --- files written on Windows or with a declared encoding --------------------------------


def _windows(text: str, codec: str = "utf-16") -> bytes:
    """What PowerShell 5 writes (`pip freeze > requirements.txt`): UTF-16 LE with its BOM."""
    return text.encode(codec)


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32", "utf-8-sig"])
def test_requirements_env_and_schema_with_a_byte_order_mark_are_read_and_stored_as_utf8(cast, codec):
    bom = {"utf-16-be": "\ufeff"}.get(codec, "")  # utf-16-be writes no BOM of its own
    payload = sync_payload(
        requirements=file("requirements.txt", _windows(bom + "pandas==2.2.3\r\nnumpy\r\n", codec)),
        env=file(".env", _windows(bom + "API_KEY=s3cr3t-value\r\n", codec)),
        schema=file("schema.json", _windows(bom + '{"cidade": "São Paulo"}', codec)),
    )
    response = _post(api_client(cast.owner), payload)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["schema"] == {"cidade": "São Paulo"} and body["env_names"] == ["API_KEY"]
    model = MLModel.objects.get(hash=body["hash"])
    # The same lines as the UTF-8 file: the same environment and fingerprint.
    assert model.requirements == ["pandas==2.2.3", "numpy"]
    assert crypto.decrypt_json(model.env_ciphertext) == {"API_KEY": "s3cr3t-value"}
    # What is stored is the text that was checked, in UTF-8.
    assert (model.folder / "requirements.txt").read_bytes() == b"pandas==2.2.3\r\nnumpy\r\n"
    assert (model.folder / "schema.json").read_bytes() == '{"cidade": "São Paulo"}'.encode()


def test_a_script_with_a_coding_line_is_accepted_and_stored_as_uploaded(cast):
    response = _post(api_client(cast.owner), sync_payload(source=file("app.py", LATIN1_SOURCE)))
    assert response.status_code == 201, response.json()
    model = MLModel.objects.get(hash=response.json()["hash"])
    # Its bytes, not UTF-8: the runner's import reads them by the coding line.
    assert (model.folder / "app.py").read_bytes() == LATIN1_SOURCE


@pytest.mark.parametrize(
    ("overrides", "field", "expected"),
    [
        (
            {"requirements": file("requirements.txt", "pandas==2.2.3\n".encode("utf-16-le"))},
            "requirements",
            "'requirements.txt' contains a NUL byte (line 1) and does not start with a byte-order mark: "
            "it is not text, or it is UTF-16 or UTF-32 text saved without one. Save it as UTF-8 and "
            "upload it again.",
        ),
        (
            {"env": file(".env", b"API_KEY=caf\xe9\n")},
            "env",
            "'.env' is not UTF-8 text (line 1). Save it as UTF-8 and upload it again.",
        ),
        (
            {"source": file("app.py", LATIN1_SOURCE.split(b"\n", 1)[1])},
            "source",
            "'app.py' is not UTF-8 text (line 2) and declares no other encoding, so Python could not "
            "import it. Save it as UTF-8, or declare its encoding on its first or second line, e.g. "
            "# -*- coding: latin-1 -*-",
        ),
        (
            {"source": file("app.py", "def score(data, base_path):\n    return {}\n".encode("utf-16"))},
            "source",
            "'app.py' is UTF-16 LE text, which Python cannot import: it reads a script as UTF-8, or in "
            "the encoding its coding line declares. Save it as UTF-8 and upload it again.",
        ),
    ],
)
def test_text_no_reader_would_decode_is_a_400_saying_how_to_save_it(cast, overrides, field, expected):
    response = _post(api_client(cast.owner), sync_payload(**overrides))
    assert response.status_code == 400, response.json()
    assert response.json()["errors"] == {field: [expected]}
    _nothing_stored()
