"""The body check every Sync call goes through (models_app.serving.answers.check_input)."""

import gzip
import json

import pytest

from models_app.serving.answers import FORM_BODY, NESTED_TOO_DEEPLY, BadInput, check_input


@pytest.mark.parametrize(
    "payload",
    [
        {"x": float("nan"), "y": float("inf"), "z": float("-inf")},
        {"big": 10**40, "small": -(10**40)},
        [{"a": 1}, {"a": 2}],
        {"emoji": "\U0001f600"},  # a surrogate pair in the escaped text: one character
    ],
    ids=["nan-infinity", "big-integers", "records", "surrogate-pair"],
)
def test_accepts_what_pythons_json_dumps_sends_of_text(payload):
    body = json.dumps(payload).encode()
    assert check_input(body, schema_is_object=True) == body.decode()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"{not json", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (b'{"a": 1} trailing', "Extra data: line 1 column 10 (char 9)"),
        (b'{"a": "\xff"}', "'utf-8' codec can't decode byte 0xff in position 7: invalid start byte"),
    ],
    ids=["not-json", "trailing-data", "not-utf-8"],
)
def test_refusals_are_worded_by_the_standard_library(body, detail):
    with pytest.raises(BadInput) as refused:
        check_input(body, schema_is_object=False)
    assert (refused.value.status, refused.value.code) == (400, "invalid")
    assert refused.value.detail == f"The request body is not valid JSON: {detail}."


@pytest.mark.parametrize("deep", [False, True], ids=["shallow", "deep-enough-for-json-alone"])
def test_a_lone_surrogate_is_refused_naming_where_not_passed_to_the_model(deep):
    """Python's json.dumps writes one ("\\ud800"); the model's code could not encode the
    value it parsed from it, and its failure was a 422 blaming the model."""
    payload = {"rows": [{"text": "\ud800 alone"}]}
    body = json.dumps(payload).encode()
    if deep:
        body = b'{"pad": ' + b"[" * 600 + b"]" * 600 + b", " + body[1:]
    with pytest.raises(BadInput) as refused:
        check_input(body, schema_is_object=True)
    assert (refused.value.status, refused.value.code) == (400, "invalid")
    assert refused.value.detail == (
        "The JSON body has \\ud800 (a lone surrogate, which is not text) in rows[0].text. "
        "Send strings of valid Unicode."
    )


def test_nesting_too_deep_for_both_parsers_is_refused_clearly():
    body = b"[" * 5000 + b"]" * 5000
    with pytest.raises(BadInput) as refused:
        check_input(body, schema_is_object=False)
    assert refused.value.detail == NESTED_TOO_DEEPLY


def test_a_model_that_takes_an_object_refuses_other_json():
    with pytest.raises(BadInput) as refused:
        check_input(b"[1, 2]", schema_is_object=True)
    assert "not a JSON list of number values" in refused.value.detail
    assert check_input(b"[1, 2]", schema_is_object=False) == "[1, 2]"


def test_the_standard_librarys_depth_limit_holds_below_orjsons():
    """orjson parses 1,000 levels; the check refuses them as it always did (json's limit),
    so whether a body passes does not hang on which parser looked at it."""
    body = b"[" * 1000 + b"]" * 1000
    with pytest.raises(BadInput) as refused:
        check_input(body, schema_is_object=False)
    assert refused.value.detail == NESTED_TOO_DEEPLY
    many_records = json.dumps([{"a": n} for n in range(2000)]).encode()
    assert check_input(many_records, schema_is_object=True) == many_records.decode()


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        (b"", "The request body is empty: send one input as JSON, like the model's schema example."),
        (b" \n", "The request body is empty: send one input as JSON, like the model's schema example."),
        (
            gzip.compress(b'{"a": 1}'),
            "The request body is gzip-compressed: send it as plain JSON (Content-Encoding is not supported).",
        ),
    ],
    ids=["empty", "blank", "gzip"],
)
def test_an_empty_or_compressed_body_is_named_as_such(body, detail):
    with pytest.raises(BadInput) as refused:
        check_input(body, schema_is_object=True)
    assert refused.value.detail == detail


@pytest.mark.parametrize(
    ("body", "kind"), [(b"null", "null"), (b"3", "number"), (b'"x"', "string"), (b"true", "boolean")]
)
def test_other_json_is_named_in_json_words(body, kind):
    with pytest.raises(BadInput) as refused:
        check_input(body, schema_is_object=True)
    assert refused.value.detail.endswith(f"not a JSON {kind}.")


def test_a_list_mixing_objects_with_other_values_names_the_first_odd_one():
    with pytest.raises(BadInput) as refused:
        check_input(b'[{"a": 1}, 2, {"a": 3}]', schema_is_object=True)
    assert refused.value.detail == (
        "This model takes a JSON object (like its schema example), or a list of such objects, "
        "not a JSON list with a number among its objects (item 1)."
    )


def test_a_multipart_form_is_told_the_model_takes_a_json_body():
    body = b'--xyz\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--xyz--\r\n'
    with pytest.raises(BadInput) as refused:
        check_input(body, schema_is_object=True)
    assert refused.value.detail == FORM_BODY


def test_a_number_with_too_many_digits_gets_no_advice_meant_for_the_server():
    with pytest.raises(BadInput) as refused:
        check_input(b'{"n": ' + b"7" * 5000 + b"}", schema_is_object=True)
    assert refused.value.status == 400
    assert refused.value.detail == (
        "The request body has a number with more than 4300 digits, more than an integer may "
        "have here: send it as a string."
    )
