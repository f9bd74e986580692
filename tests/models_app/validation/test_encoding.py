"""Uploaded text files are decoded as pip, json.loads and Python decode them, or refused saying how to save them."""

from __future__ import annotations

import codecs
import importlib.util
import json

import pytest

from models_app.validation.encoding import decode_upload
from models_app.validation.errors import UploadError

REQUIREMENTS = "pandas==2.2.3\nscikit-learn>=1.6 ; python_version > '3.8'\n"

# What PowerShell 5 and other Windows tools write: a byte-order mark, then the text.
WITH_BOM = {
    "UTF-8": codecs.BOM_UTF8 + REQUIREMENTS.encode("utf-8"),
    "UTF-16 LE": codecs.BOM_UTF16_LE + REQUIREMENTS.encode("utf-16-le"),
    "UTF-16 BE": codecs.BOM_UTF16_BE + REQUIREMENTS.encode("utf-16-be"),
    "UTF-32 LE": codecs.BOM_UTF32_LE + REQUIREMENTS.encode("utf-32-le"),
    "UTF-32 BE": codecs.BOM_UTF32_BE + REQUIREMENTS.encode("utf-32-be"),
}

LATIN1_SOURCE = b"# -*- coding: latin-1 -*-\ndef score(data, base_path):\n    return {'label': 'caf\xe9'}\n"


def decode(data: bytes, kind: str, name: str = "requirements.txt") -> str:
    return decode_upload(data, kind, field="requirements", name=name)


def refusal(data: bytes, kind: str, name: str = "requirements.txt") -> str:
    with pytest.raises(UploadError) as info:
        decode(data, kind, name)
    assert info.value.field == "requirements"
    return info.value.message


@pytest.mark.parametrize("kind", ["text", "requirements"])
@pytest.mark.parametrize("encoding", WITH_BOM)
def test_a_byte_order_mark_decides_the_encoding_and_is_dropped(kind, encoding):
    assert decode(WITH_BOM[encoding], kind) == REQUIREMENTS


def test_utf32_le_is_not_mistaken_for_utf16_le():
    # Its mark starts with UTF-16 LE's: read as UTF-16 it would hold NUL characters.
    text = decode(WITH_BOM["UTF-32 LE"], "requirements")
    assert "\x00" not in text and text == REQUIREMENTS


def test_plain_utf8_is_read_as_it_is():
    assert decode("numpy  # für Zahlen\n".encode(), "requirements") == "numpy  # für Zahlen\n"


@pytest.mark.parametrize("kind", ["text", "requirements", "python"])
@pytest.mark.parametrize("codec", ["utf-16-le", "utf-16-be", "utf-32-le"])
def test_nul_bytes_without_a_byte_order_mark_are_refused_saying_how_to_save_it(kind, codec):
    message = refusal("x = 1\ny = 2\n".encode(codec), kind, "app.py")
    assert message == (
        "'app.py' contains a NUL byte (line 1) and does not start with a byte-order mark: it is not "
        "text, or it is UTF-16 or UTF-32 text saved without one. Save it as UTF-8 and upload it again."
    )


@pytest.mark.parametrize("kind", ["text", "requirements", "json"])
def test_bytes_that_are_not_utf8_are_refused_naming_the_line(kind):
    assert refusal(b"pandas\n# caf\xe9\n", kind) == (
        "'requirements.txt' is not UTF-8 text (line 2). Save it as UTF-8 and upload it again."
    )


def test_bytes_invalid_in_the_encoding_of_the_byte_order_mark_are_refused():
    broken = codecs.BOM_UTF16_LE + "pandas\n".encode("utf-16-le") + b"\x00\xd8"  # a lone surrogate
    assert refusal(broken, "requirements") == (
        "'requirements.txt' declares the encoding UTF-16 LE (by its byte-order mark or a coding line), "
        "but line 2 is not valid UTF-16 LE. Save it as UTF-8 and upload it again."
    )


# --------------------------------------------------------------------- requirements: pip


def test_requirements_honour_a_coding_comment_as_pip_does():
    data = b"# -*- coding: latin-1 -*-\n# d\xe9pendances\npandas\n"
    assert decode(data, "requirements") == "# -*- coding: latin-1 -*-\n# dépendances\npandas\n"


def test_a_coding_comment_never_refuses_requirements_that_are_utf8():
    assert (
        decode(b"# encoding: see the wiki\npandas\n", "requirements") == "# encoding: see the wiki\npandas\n"
    )


def test_requirements_declaring_an_unknown_encoding_are_refused():
    assert refusal(b"# coding: klingon\n# d\xe9p\npandas\n", "requirements") == (
        "'requirements.txt' has a coding line that cannot be used (unknown encoding: klingon). "
        "Correct it, or remove it and save the file as UTF-8."
    )


def test_a_env_file_has_no_coding_comment():
    assert refusal(b"# coding: latin-1\nKEY=caf\xe9\n", "text", ".env").startswith(
        "'.env' is not UTF-8 text (line 2)."
    )


# ------------------------------------------------------------------------- json: json.loads


@pytest.mark.parametrize("codec", ["utf-8-sig", "utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-be"])
def test_json_is_read_in_every_encoding_json_loads_reads(codec):
    data = json.dumps({"cidade": "São Paulo"}, ensure_ascii=False).encode(codec)
    text = decode(data, "json", "schema.json")
    assert json.loads(text) == json.loads(data) == {"cidade": "São Paulo"}


# --------------------------------------------------------------------------- python: PEP 263


def test_a_script_is_decoded_by_its_coding_line_as_python_imports_it():
    text = decode(LATIN1_SOURCE, "python", "app.py")
    assert text == importlib.util.decode_source(LATIN1_SOURCE)
    assert "'café'" in text


def test_a_script_with_a_utf8_byte_order_mark_is_read_without_it():
    assert decode(codecs.BOM_UTF8 + "x = 'é'\n".encode(), "python", "app.py") == "x = 'é'\n"


@pytest.mark.parametrize("body", [b"x = 'caf\xe9'\n", b"x = 1\ny = 'caf\xe9'\n"])
def test_a_script_that_is_not_utf8_and_declares_nothing_is_refused_like_python_would(body):
    with pytest.raises((SyntaxError, UnicodeDecodeError)):  # the first two lines, or a later one
        importlib.util.decode_source(body)
    line = body.count(b"\n")
    assert refusal(body, "python", "app.py") == (
        f"'app.py' is not UTF-8 text (line {line}) and declares no other encoding, so Python could not "
        "import it. Save it as UTF-8, or declare its encoding on its first or second line, e.g. "
        "# -*- coding: latin-1 -*-"
    )


def test_a_script_whose_bytes_break_its_coding_line_is_refused():
    assert refusal(b"# coding: ascii\nx = 'caf\xe9'\n", "python", "app.py") == (
        "'app.py' declares the encoding ascii (by its byte-order mark or a coding line), but line 2 is "
        "not valid ascii. Save it as UTF-8 and upload it again."
    )


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"# -*- coding: latin-9x -*-\nx = 1\n", "unknown encoding: latin-9x"),
        (codecs.BOM_UTF8 + b"# coding: latin-1\nx = 1\n", "encoding problem: utf-8"),
    ],
)
def test_a_coding_line_python_refuses_is_refused_with_pythons_reason(data, error):
    assert refusal(data, "python", "app.py") == (
        f"'app.py' has a coding line that cannot be used ({error}). Correct it, or remove it and save "
        "the file as UTF-8."
    )


@pytest.mark.parametrize("codec", ["utf-16", "utf-32"])
def test_a_utf16_or_utf32_script_is_refused_as_python_cannot_import_it(codec):
    shown = {"utf-16": "UTF-16 LE", "utf-32": "UTF-32 LE"}[codec]
    assert refusal("def score(a, b):\n    pass\n".encode(codec), "python", "app.py") == (
        f"'app.py' is {shown} text, which Python cannot import: it reads a script as UTF-8, or in the "
        "encoding its coding line declares. Save it as UTF-8 and upload it again."
    )
