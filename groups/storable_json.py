"""What a JSON document a user uploads must be before it is stored and shown again.

Python's parser accepts more than the database and the pages can take back: a lone
surrogate (`"\\ud800"`) parses into a str that cannot be encoded as UTF-8, so every page
and document showing it answers 500 from then on; a number like `1e999` parses into
infinity, which no JSON column accepts. Checked once here, the upload is refused with
its reason instead.
"""

from __future__ import annotations

import json
from typing import Any

from django.utils.translation import gettext

# Our own limit, well below Python's recursion limit: deeper documents are refused
# before they reach code that walks them recursively (schema inference, the pages).
MAX_DEPTH = 64


def storable_problem(value: Any, *, allow_nan: bool = False) -> str | None:
    """Why `value` (just parsed from JSON) cannot be stored and shown, translated; or None.

    `allow_nan`: the caller replaces non-finite numbers itself (a run's metrics: null).
    """
    deepest, has_nul = _walk(value)
    if deepest > MAX_DEPTH:
        return gettext("it nests arrays or objects more than %(limit)s levels deep.") % {"limit": MAX_DEPTH}
    if has_nul:  # PostgreSQL's text and jsonb cannot hold it
        return gettext("it contains \\u0000 (a NUL character), which the database cannot store.")
    try:
        json.dumps(value, ensure_ascii=False, allow_nan=allow_nan).encode("utf-8")
    except UnicodeEncodeError as exc:
        character = exc.object[exc.start : exc.end].encode("unicode_escape").decode("ascii")
        return gettext("it contains %(character)s, a lone surrogate, which is not text.") % {
            "character": character
        }
    except ValueError:  # an infinite number: 1e999 parses to inf
        return gettext("it contains a number too large for JSON (like 1e999), NaN or Infinity.")
    return None


def _walk(value: Any) -> tuple[int, bool]:
    """How many arrays and objects are nested in `value`, and whether a string (or key)
    holds a NUL; without recursion, and no deeper than the limit."""
    deepest, has_nul = 0, False
    pending = [(value, 1)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, str):
            has_nul = has_nul or "\x00" in item
            continue
        if isinstance(item, dict):
            children = [*item.keys(), *item.values()]
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        if level <= MAX_DEPTH:  # past the limit the answer is known
            pending.extend((child, level + 1) for child in children)
    return deepest, has_nul
