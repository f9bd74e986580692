"""Fixtures for the runner tests: the platform's Python interpreters and tiny user models.

Every runner test runs once per supported version (3.8-3.13); see tests/helpers/interpreters.py
for how they are found and why a missing one fails.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tests.helpers.interpreters import SUPPORTED_MINORS, supported_interpreter

# Serve mode is the same code on every version; the oldest, ours and the newest suffice.
SERVE_MINORS = ("3.8", "3.11", "3.13")


@pytest.fixture(params=SUPPORTED_MINORS)
def runner_python(request: pytest.FixtureRequest) -> Path:
    """Each supported interpreter in turn."""
    return supported_interpreter(request.param).path


@pytest.fixture(params=SERVE_MINORS)
def serve_python(request: pytest.FixtureRequest) -> Path:
    """The interpreters the serve-mode tests run under."""
    return supported_interpreter(request.param).path


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    return folder


@pytest.fixture
def write_user_module(user_dir: Path):
    """Write a user module (dedented) into the model folder and return its path."""

    def write(code: str, name: str = "app.py") -> Path:
        path = user_dir / name
        path.write_text(textwrap.dedent(code))
        return path

    return write
