"""The interpreters the runner tests run under, found the way the platform finds them.

The runner promises CPython 3.8-3.13, so its tests run under each of those versions. They
are looked up exactly as a build looks up a model's Python (`discover_interpreters` over
`PYTHON_SEARCH_PATHS`, then `find_interpreter`), so the tests exercise what production
would pick. A missing version is a failure, not a skip: a suite that silently tested
nothing would hide a broken promise.
"""

from __future__ import annotations

import pytest
from django.conf import settings

from models_app.interpreters import Interpreter, InterpreterNotFound, discover_interpreters, find_interpreter

SUPPORTED_MINORS = tuple(f"3.{minor}" for minor in range(8, 14))


def supported_interpreter(minor: str) -> Interpreter:
    """The platform's interpreter for ``minor`` (e.g. "3.9"); fails the test when there is none."""
    try:
        return find_interpreter(minor, discover_interpreters(settings.PYTHON_SEARCH_PATHS))
    except InterpreterNotFound as exc:
        pytest.fail(
            f"the runner can't be tested on Python {minor}: {exc} Install it (pyenv install {minor}) "
            "or name its folder in NEOMARIL_PYTHON_SEARCH_PATHS.",
            pytrace=False,
        )
