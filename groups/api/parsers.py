"""The API's JSON parser: DRF's, with two kinds of body answered as bad input.

- Deep nesting: Python's json module parses arrays and objects recursively, so a body
  nested about a thousand levels deep raises RecursionError, which DRF does not catch:
  the client got a 500 for what is only a malformed request, on every JSON endpoint (the
  unauthenticated login included).
- Lone surrogates: json accepts `"\\ud800"` and returns a str that is not text (it cannot
  be encoded as UTF-8). Such a value reached database queries, and messages that repeat
  it, and every one of them answered 500. No field of the API takes one, so the body is
  refused here, once, naming where it is.
"""

from __future__ import annotations

import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser as DRFJSONParser

TOO_DEEP = (
    "The JSON body is nested too deeply to be read (arrays or objects inside each other "
    "about a thousand levels deep). Send a flatter document."
)
# Python's own limit on the digits of an integer it converts (sys.get_int_max_str_digits).
MAX_INTEGER_DIGITS = 4300
TOO_MANY_DIGITS = (
    f"The JSON body has a number with more than {MAX_INTEGER_DIGITS} digits, more than an "
    "integer may have here: send it as a string."
)
LONE_SURROGATE = (
    "The JSON body has {character} (a lone surrogate, which is not text) in {where}. "
    "Send strings of valid Unicode."
)


class JSONParser(DRFJSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        except ParseError as exc:
            if "int_max_str_digits" in str(exc.detail):  # advice meant for the server's code
                raise ParseError(TOO_MANY_DIGITS) from None
            raise
        problem = lone_surrogate_problem(data)
        if problem:
            raise ParseError(problem)
        return data


def lone_surrogate_problem(data: Any) -> str | None:
    """Why `data` (just parsed from JSON) is not text, naming where; None when it is."""
    try:
        # One pass in C over the whole document; the walk runs only to name the place.
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return _lone_surrogate(data)
    return None


def _lone_surrogate(data: Any) -> str:
    """The message naming the first string (value or key) of `data` that is not text."""
    pending: list[tuple[Any, str]] = [(data, "")]
    while pending:
        item, where = pending.pop()
        if isinstance(item, str):
            try:
                item.encode("utf-8")
            except UnicodeEncodeError as exc:
                character = item[exc.start : exc.end].encode("unicode_escape").decode("ascii")
                return LONE_SURROGATE.format(character=character, where=where or "the body")
        elif isinstance(item, dict):
            for key, value in item.items():
                path = f"{where}.{key}" if where else str(key)
                pending.append((value, path))
                pending.append((key, f"a key of {where or 'the body'}"))
        elif isinstance(item, list):
            pending.extend((value, f"{where}[{index}]") for index, value in enumerate(item))
    return LONE_SURROGATE.format(character="a character", where="the body")
