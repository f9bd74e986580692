"""The API's parsers: DRF's, with these kinds of body answered as bad input.

- Deep nesting: Python's json module parses arrays and objects recursively, so a body
  nested about a thousand levels deep raises RecursionError, which DRF does not catch:
  the client got a 500 for what is only a malformed request, on every JSON endpoint (the
  unauthenticated login included).
- Lone surrogates: json accepts `"\\ud800"` and returns a str that is not text (it cannot
  be encoded as UTF-8). Such a value reached database queries, and messages that repeat
  it, and every one of them answered 500. No field of the API takes one, so the body is
  refused here, once, naming where it is.
- A key or field sent twice: json keeps the last of `{"name": "first", "name": "second"}`,
  and Django's form parsers hand a form the last of `role=owner&role=member`, so the
  request succeeded with a value the caller may not have meant. No field of the API takes
  several values (only files do: a model's `extra` files, which the forms count), so a
  JSON key twice in one object is a parse error naming it, and a form field twice (or
  both as a field and as a file) a 400 at its name, as a query parameter sent twice is
  (groups.api.middleware). The run URL's body is the model's input: its own parsing
  (models_app.serving) leaves it as sent.
- A revoked API token: DRF checks it before the body, and an upload takes minutes. A
  multipart body is followed by a second look at the token, so one revoked (or its
  account disabled) meanwhile stores nothing.

Every API view takes these, not DRF's own (tests/groups/test_repeated_body_fields.py
checks the routes).
"""

from __future__ import annotations

import codecs
import json
from typing import Any

from django.http import QueryDict
from django.utils.datastructures import MultiValueDict
from rest_framework import parsers
from rest_framework.exceptions import AuthenticationFailed, ParseError, ValidationError
from rest_framework.parsers import JSONParser as DRFJSONParser
from rest_framework.utils.json import strict_constant

from groups.models import ApiToken

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


REPEATED_KEY = "The JSON body gives the key {key} {count} times in {where}; send each key once."
REPEATED_FIELD = "Given {count} times in the body; send it once."


class _RepeatedKeys(dict):
    """An object of a JSON body in which `key` came `count` times (json kept the last)."""

    key: str
    count: int


def _marked(pairs: list[tuple[str, Any]], made: dict) -> _RepeatedKeys:
    """The object `made` of `pairs`, marked with its first repeated key."""
    seen: set[str] = set()
    for repeated, _value in pairs:
        if repeated in seen:
            break
        seen.add(repeated)
    marked = _RepeatedKeys(made)
    marked.key = repeated
    marked.count = sum(key == repeated for key, _value in pairs)
    return marked


class JSONParser(DRFJSONParser):
    def parse(self, stream, media_type=None, parser_context=None):
        encoding = parsers.get_encoding(parser_context or {})
        repeats = False

        def object_pairs(pairs: list[tuple[str, Any]]) -> dict:
            nonlocal repeats
            made = dict(pairs)
            if len(made) == len(pairs):
                return made
            repeats = True
            return _marked(pairs, made)

        try:
            # DRF's parse, with the hook that notes repeated keys.
            data = json.load(
                codecs.getreader(encoding)(stream),
                parse_constant=strict_constant if self.strict else None,
                object_pairs_hook=object_pairs,
            )
        except RecursionError:
            raise ParseError(TOO_DEEP) from None
        except ValueError as exc:
            if "int_max_str_digits" in str(exc):  # advice meant for the server's code
                raise ParseError(TOO_MANY_DIGITS) from None
            raise ParseError(f"JSON parse error - {exc}") from None
        # Walked only when a repeat was seen, to say where: most bodies never pay for it.
        problem = (repeats and repeated_key_problem(data)) or lone_surrogate_problem(data)
        if problem:
            raise ParseError(problem)
        return data


def repeated_key_problem(data: Any) -> str | None:
    """The message naming the first object of `data` (parsed by JSONParser) that had a key
    more than once, and the key; None when none had."""
    pending: list[tuple[Any, str]] = [(data, "")]
    while pending:
        item, where = pending.pop()
        if isinstance(item, _RepeatedKeys):
            place = f"the object at {where}" if where else "its top-level object"
            key = json.dumps(item.key)  # quoted, and any character that is not plain text escaped
            return REPEATED_KEY.format(key=key, count=item.count, where=place)
        if isinstance(item, dict):
            members = [(value, f"{where}.{key}" if where else str(key)) for key, value in item.items()]
        elif isinstance(item, list):
            members = [(value, f"{where}[{index}]") for index, value in enumerate(item)]
        else:
            continue
        pending.extend(reversed(members))  # in the body's order
    return None


def refuse_repeated_fields(data: QueryDict, files: MultiValueDict | None = None) -> None:
    """A 400 naming each form field of `data` (a QueryDict) sent more than once, counting
    a file part of the same name (`files`). Files alone may repeat: a field taking several
    (`extra`) is a list, and one taking a single file says so itself (models_app.forms)."""
    counts = {
        name: len(values) + (len(files.getlist(name)) if files is not None else 0)
        for name, values in data.lists()
    }
    errors = {name: [REPEATED_FIELD.format(count=count)] for name, count in counts.items() if count > 1}
    if errors:
        if files is not None:
            for _name, uploads in files.lists():
                for upload in uploads:
                    upload.close()  # a temporary file is deleted on close, not left to the collector
        raise ValidationError(errors)


class FormParser(parsers.FormParser):
    def parse(self, stream, media_type=None, parser_context=None):
        data = super().parse(stream, media_type, parser_context)
        refuse_repeated_fields(data)
        return data


class MultiPartParser(parsers.MultiPartParser):
    def parse(self, stream, media_type=None, parser_context=None):
        parsed = super().parse(stream, media_type, parser_context)
        try:
            refuse_repeated_fields(parsed.data, parsed.files)
            _token_still_valid((parser_context or {}).get("request"))
        except Exception:
            for _name, uploads in parsed.files.lists():
                for upload in uploads:
                    upload.close()  # a temporary file is deleted on close
            raise
        return parsed


REVOKED_DURING_UPLOAD = (
    "This API token was revoked, or its account disabled, while the request body was being "
    "sent: nothing was stored. Log in again to get a new one."
)


def _token_still_valid(request) -> None:
    """The API token was checked before the body; an upload takes minutes, and a token
    revoked (or an account disabled) meanwhile must not store what it sent."""
    token = getattr(request, "auth", None)
    if (
        isinstance(token, ApiToken)
        and not ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True, user__is_active=True).exists()
    ):
        raise AuthenticationFailed(REVOKED_DURING_UPLOAD)


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
