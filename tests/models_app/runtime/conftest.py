"""Fixtures for the runner tests: the platform's Python interpreters, tiny user models, and
one real environment with pandas and pyarrow for the harnesses (training, monitoring).

Every runner test runs once per supported version (3.8-3.13); see tests/helpers/interpreters.py
for how they are found and why a missing one fails.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from django.conf import settings

from models_app import environments
from tests.helpers.interpreters import SUPPORTED_MINORS, supported_interpreter

# Serve mode is the same code on every version; the oldest, ours and the newest suffice.
SERVE_MINORS = ("3.8", "3.11", "3.13")
# The harnesses' environment: what a training run gets, plus the libraries its tests train with.
HARNESS_REQUIREMENTS = [
    "cloudpickle==3.1.1",
    "lightgbm==4.6.0",
    "pandas==2.2.3",
    "pyarrow==17.0.0",
    "scikit-learn==1.6.1",
]


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


@pytest.fixture(scope="session")
def training_python(tmp_path_factory) -> Path:
    """The interpreter of a training environment built by the platform's own code (uv's cache
    makes it quick after the first time); the monitoring harness's tests use it too."""
    env = environments.ensure_environment(
        interpreter=supported_interpreter("3.9"),
        requirements=HARNESS_REQUIREMENTS,
        envs_dir=tmp_path_factory.mktemp("harness-envs"),
        log=lambda line: None,
        timeout=900,
        uv_cache_dir=Path(settings.UV_CACHE_DIR) if settings.UV_CACHE_DIR else None,
    )
    return environments.env_python(env)
