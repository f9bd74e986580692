"""The schema: one example input, as JSON. It smoke-tests a Sync model and fills its docs."""

from __future__ import annotations

import json
from typing import Any

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from groups.storable_json import storable_problem

from .errors import UploadError

# Lazy: translated into the active language when a message is built.
_JSON_TYPE_NAMES = {
    dict: gettext_lazy("an object"),
    list: gettext_lazy("an array"),
    str: gettext_lazy("a string"),
    int: gettext_lazy("a number"),
    float: gettext_lazy("a number"),
    bool: gettext_lazy("a boolean"),
    type(None): gettext_lazy("null"),
}


def parse_schema(text: str, *, require_object: bool, field: str = "schema") -> Any:
    """Parse the JSON example input; with `require_object` (Sync models), it must be an object.

    The one parser of an example, whether it came as a file or as text.
    """

    def reject_constant(name: str) -> Any:
        # json.loads accepts NaN/Infinity, which are not JSON and break other clients.
        # Translators: %(constant)s is NaN, Infinity or -Infinity.
        raise ValueError(_("%(constant)s is not valid JSON") % {"constant": name})

    try:
        value = json.loads(text.removeprefix("\ufeff"), parse_constant=reject_constant)
    except json.JSONDecodeError as exc:
        raise UploadError(
            field,
            _(
                # Translators: %(error)s is the JSON parser's own (English) description, e.g.
                # "Expecting value".
                "The schema is not valid JSON: %(error)s at line %(line)s, column %(column)s. "
                "Give one example input as a JSON document."
            )
            % {"error": exc.msg, "line": exc.lineno, "column": exc.colno},
        ) from None
    except ValueError as exc:
        if "int_max_str_digits" in str(exc):  # Python's advice to the server's own code
            raise UploadError(
                field, _("The schema has a number with more than 4300 digits: give it as a string.")
            ) from None
        raise UploadError(
            field,
            _("The schema is not valid JSON: %(error)s; use null or a number instead.") % {"error": exc},
        ) from None
    except RecursionError:
        raise UploadError(field, _("The schema is nested too deeply to be an example input.")) from None
    problem = storable_problem(value)
    if problem is not None:
        # Translators: %(problem)s starts with "it", e.g. "it contains a number too large for JSON".
        raise UploadError(field, _("The schema cannot be used: %(problem)s") % {"problem": problem})
    if require_object and not isinstance(value, dict):
        type_name = _JSON_TYPE_NAMES.get(type(value))
        raise UploadError(
            field,
            _(
                # Translators: %(type)s is "an array", "a string", "a number", "a boolean" or "null".
                'The schema of a Sync model must be a JSON object such as {"feature": 1.5} '
                "(one example input), but it is %(type)s."
            )
            % {"type": type_name if type_name is not None else type(value).__name__},
        )
    return value
