"""The interpreters the runner tests run under, found the way the platform finds them.

The runner promises CPython 3.8-3.13, so its tests run under each of those versions. They
are looked up exactly as a build looks up a model's Python (`discover_interpreters` over
`PYTHON_SEARCH_PATHS`, then `find_interpreter`), so the tests exercise what production
would pick. A missing version is a failure, not a skip: a suite that silently tested
nothing would hide a broken promise.
"""

from __future__ import annotations

import subprocess
import textwrap
from pathlib import Path

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


# Code run with an environment's interpreter leaves without the interpreter's exit
# handlers: native threads (pyarrow's, LightGBM's) sometimes abort a process as it exits
# ("terminate called without an active exception", SIGABRT) after it has printed its
# answer. The platform, too, takes a runner's complete answer whatever its exit
# (models_app.runtime.oneshot).
LEAVE = "\nimport os, sys\nsys.stdout.flush()\nsys.stderr.flush()\nos._exit(0)\n"


def run_with(python: Path, code: str, *args: object, timeout: float = 600) -> str:
    """Run `code` (dedented) with `python` and `args`: its standard output. Any other exit
    than 0 fails the test with the end of its standard error."""
    done = subprocess.run(
        [str(python), "-c", textwrap.dedent(code) + LEAVE, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-5000:]
    return done.stdout
