"""The schema: one example input, as JSON. It smoke-tests a Sync model and fills its docs."""

from __future__ import annotations

import json
from typing import Any

from .errors import UploadError

_JSON_TYPE_NAMES = {
    dict: "an object",
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


def parse_schema(text: str, *, require_object: bool, field: str = "schema") -> Any:
    """Parse the JSON example input; with `require_object` (Sync models), it must be an object.

    The one parser of an example, whether it came as a file or as text.
    """

    def reject_constant(name: str) -> Any:
        # json.loads accepts NaN/Infinity, which are not JSON and break other clients.
        raise ValueError(f"{name} is not valid JSON")

    try:
        value = json.loads(text.removeprefix("\ufeff"), parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise UploadError(
            field,
            f"The schema is not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}. "
            "Give one example input as a JSON document.",
        ) from None
    except ValueError as exc:
        raise UploadError(
            field, f"The schema is not valid JSON: {exc}; use null or a number instead."
        ) from None
    except RecursionError:
        raise UploadError(field, "The schema is nested too deeply to be an example input.") from None
    if require_object and not isinstance(value, dict):
        got = _JSON_TYPE_NAMES.get(type(value), type(value).__name__)
        raise UploadError(
            field,
            f'The schema of a Sync model must be a JSON object such as {{"feature": 1.5}} '
            f"(one example input), but it is {got}.",
        )
    return value
