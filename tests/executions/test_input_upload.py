"""The input file of an Async model on the run URL (executions/uploads.py, executions/api.py):
names that fit on disk, one file only, media types in any case, and the file parts
Django's parser drops said out loud instead of "send a file"."""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import TemporaryUploadedFile

from executions import services
from executions.models import Execution
from tests.helpers.executions import CSV, submit
from tests.helpers.uploads import file

BOUNDARY = b"nEoMaRiL-b0undary"


@pytest.fixture
def model(deploy):
    return deploy()


def _url(model) -> str:
    return f"/api/v1/run/{model.hash}"


def multipart(*parts: tuple[bytes, bytes], close: bool = True) -> bytes:
    """A multipart body by hand: each part is (its Content-Disposition parameters, content)."""
    body = b""
    for disposition, content in parts:
        body += b"--" + BOUNDARY + b"\r\nContent-Disposition: form-data; " + disposition + b"\r\n"
        body += b"Content-Type: text/csv\r\n\r\n" + content + b"\r\n"
    return body + (b"--" + BOUNDARY + b"--\r\n" if close else b"")


def post_raw(
    client, model, body: bytes, content_type: str = f"multipart/form-data; boundary={BOUNDARY.decode()}"
):
    return client.post(_url(model), body, content_type=content_type)


def _nothing_kept():
    assert not Execution.objects.exists()
    assert not list(settings.UPLOAD_TMP_DIR.glob("*.upload*"))


# ------------------------------------------------------------------ file names in bytes


@pytest.mark.parametrize(
    ("name", "size"),
    [
        ("€" * 100 + ".csv", 304),  # 104 characters: within the 128-character limit
        ("a." + "😀" * 70, 282),  # an extension too long for Django's temporary file name
    ],
    ids=["304-bytes", "long-extension"],
)
def test_a_name_too_long_in_bytes_is_a_400_naming_the_byte_limit(caller, model, name, size):
    response = submit(caller, model, name=name)
    assert response.status_code == 400, response.content
    assert response.json()["errors"] == {
        "file": [
            f"The file name is {size} bytes long in UTF-8; shorten it to at most 255 bytes "
            "(accented letters and symbols take 2 to 4 bytes each)."
        ]
    }
    _nothing_kept()


def test_a_name_of_255_bytes_is_kept_as_given(caller, model):
    name = "€" * 83 + "ab.csv"
    assert len(name.encode()) == 255
    response = submit(caller, model, name=name)
    assert response.status_code == 202, response.json()
    execution = Execution.objects.get()
    assert execution.input_file == name
    assert (execution.folder / name).read_text() == CSV


def test_a_long_extension_that_fits_is_kept(caller, model):
    """The temporary file leaves a long extension off; the input keeps it."""
    name = "scores." + "é" * 60  # a 120-byte extension
    response = submit(caller, model, name=name)
    assert response.status_code == 202, response.json()
    assert (Execution.objects.get().folder / name).read_text() == CSV
    assert not list(settings.UPLOAD_TMP_DIR.glob("*.upload*"))


# ------------------------------------------------------------------ one file, one field


def test_a_second_file_field_beside_file_is_a_400_naming_it(caller, model):
    response = caller.post(
        _url(model), {"file": file("input.csv", CSV), "extra": file("other.csv", CSV)}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["errors"] == {
        "file": [
            "2 files were sent (fields 'file', 'extra'); an execution takes one input file: "
            "send only the field 'file' (remove 'extra')."
        ]
    }
    _nothing_kept()


def test_two_files_in_the_field_file_are_a_400(caller, model):
    response = caller.post(
        _url(model), {"file": [file("a.csv", CSV), file("b.csv", CSV)]}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["file"] == [
        "2 files were sent (fields 'file'); an execution takes one input file, in the field 'file'."
    ]
    _nothing_kept()


def test_form_fields_beside_the_file_are_ignored(caller, model):
    response = caller.post(_url(model), {"file": file("input.csv", CSV), "note": "hello"}, format="multipart")
    assert response.status_code == 202, response.json()


def test_the_field_file_sent_as_text_is_told_so(caller, model):
    response = caller.post(_url(model), {"file": "input.csv"}, format="multipart")
    assert response.status_code == 400
    assert response.json()["errors"]["file"] == [
        "No input file: the field 'file' was sent as text, not as a file; send the file itself "
        "(curl -F file=@input.csv, with the @)."
    ]


# ------------------------------------------------------------------ media type


@pytest.mark.parametrize("media_type", ["Multipart/Form-Data", "MULTIPART/FORM-DATA"])
def test_the_media_type_is_case_insensitive(caller, model, media_type):
    body = multipart((b'name="file"; filename="input.csv"', CSV.encode()))
    response = post_raw(caller, model, body, f"{media_type}; boundary={BOUNDARY.decode()}")
    assert response.status_code == 202, response.json()
    assert (Execution.objects.get().folder / "input.csv").read_text() == CSV


def test_multipart_without_a_boundary_is_a_400_in_json(caller, model):
    body = multipart((b'name="file"; filename="input.csv"', CSV.encode()))
    response = post_raw(caller, model, body, "multipart/form-data")
    assert response.status_code == 400
    assert response.json() == {
        "detail": "The request body could not be read: Invalid boundary in multipart: None",
        "code": "parse_error",
    }


# ------------------------------------------------------------------ names Django would change


@pytest.mark.parametrize(
    ("sent", "message"),
    [
        (b"../evil.csv", "The file name '../evil.csv' is a path"),
        (b"..\\\\evil.csv", "The file name '..\\\\evil.csv' is a path"),
        (b"/etc/passwd", "The file name '/etc/passwd' is a path"),
        (b"a&#47;b.csv", "The file name 'a/b.csv' is a path"),  # an HTML entity, decoded as Django does
        (b"in\x07put.csv", "control character"),
    ],
    ids=["dot-dot", "backslash", "absolute", "entity-slash", "control"],
)
def test_a_name_the_parser_would_shorten_or_clean_is_refused_not_renamed(caller, model, sent, message):
    response = post_raw(caller, model, multipart((b'name="file"; filename="' + sent + b'"', CSV.encode())))
    assert response.status_code == 400, response.json()
    assert message in response.json()["errors"]["file"][0]
    _nothing_kept()


def test_an_html_entity_for_a_letter_is_decoded_as_django_does(caller, model):
    response = post_raw(
        caller, model, multipart((b'name="file"; filename="r&#233;sum&#233;.csv"', CSV.encode()))
    )
    assert response.status_code == 202, response.json()
    assert Execution.objects.get().input_file == "résumé.csv"


# ------------------------------------------------------------------ parts Django drops


def test_a_file_name_that_is_not_utf8_is_told_so(caller, model):
    body = multipart((b'name="file"; filename="\xe9t\xe9.csv"', CSV.encode()))
    response = post_raw(caller, model, body)
    assert response.status_code == 400
    assert response.json()["errors"]["file"] == [
        "The file name of the part 'file' is not valid UTF-8 ('\\xe9t\\xe9.csv'), so the file could "
        "not be read: send the name in UTF-8, or rename the file."
    ]
    _nothing_kept()


@pytest.mark.parametrize("name", [b".", b".."])
def test_a_file_name_the_parser_cannot_use_is_told_so(caller, model, name):
    body = multipart((b'name="file"; filename="' + name + b'"', CSV.encode()))
    response = post_raw(caller, model, body)
    assert response.status_code == 400
    assert response.json()["errors"]["file"] == [
        f"The file part 'file' has the file name '{name.decode()}', which cannot be used as a file "
        "name, so the file was not read: send it with a plain name such as input.csv."
    ]
    _nothing_kept()


def test_a_file_part_without_a_field_name_is_told_so(caller, model):
    body = multipart((b'filename="input.csv"', CSV.encode()))
    response = post_raw(caller, model, body)
    assert response.status_code == 400
    assert response.json()["errors"]["file"] == [
        "The file part with the file name 'input.csv' has no field name, so the file was not read: "
        "send it in the field 'file' (Content-Disposition: form-data; name=\"file\"; filename=…)."
    ]


def test_a_header_the_parser_cannot_read_is_told_so(caller, model):
    body = multipart((b"name=\"file\"; filename*=klingon''input.csv", CSV.encode()))
    response = post_raw(caller, model, body)
    assert response.status_code == 400
    assert response.json()["errors"]["file"] == [
        'A file part\'s header could not be read (Content-Disposition: form-data; name="file"; '
        "filename*=klingon''input.csv), so the file was not read: send the file with curl -F "
        "file=@input.csv or an HTTP library's multipart upload."
    ]


def test_a_body_cut_off_inside_the_file_is_told_so(caller, model):
    body = multipart((b'name="file"; filename="input.csv"', CSV.encode()), close=False)[:-2]
    response = post_raw(caller, model, body)
    assert response.status_code == 400
    assert response.json()["errors"]["file"] == [
        "The file part 'file' ('input.csv') was cut off: the body ended before the part's closing "
        "boundary. Send the file again."
    ]
    _nothing_kept()


def test_a_dropped_part_beside_a_good_file_is_left_alone(caller, model):
    """Only a request that brought no file is told about dropped parts; here the file came."""
    body = multipart(
        (b'name="junk"; filename="."', b"x"),
        (b'name="file"; filename="input.csv"', CSV.encode()),
    )
    response = post_raw(caller, model, body)
    assert response.status_code == 202, response.json()
    assert Execution.objects.get().input_file == "input.csv"


def test_an_input_placed_from_its_temporary_file_leaves_that_file_able_to_delete_itself(
    model, monkeypatch, settings
):
    """Renamed away, a temporary upload file that was collected without being closed failed
    to delete its name (FileNotFoundError in __del__, an "Exception ignored" in the log)."""
    upload = TemporaryUploadedFile("input.csv", "text/csv", len(CSV), "utf-8")
    upload.write(CSV.encode())
    upload.flush()
    temporary = Path(upload.temporary_file_path())
    execution = services.create_execution(model, upload, name="input.csv")
    assert execution.input_path.read_text() == CSV
    ignored = []
    monkeypatch.setattr(sys, "unraisablehook", ignored.append)
    del upload  # never closed: collected
    gc.collect()
    assert [hook.exc_value for hook in ignored] == []
    assert not temporary.exists() and execution.input_path.read_text() == CSV
