"""Fixtures for the runner tests: the host's Python interpreters and tiny user models.

The runner promises to work on CPython 3.8-3.13, so its tests run under every such
interpreter found in pyenv. Finding none is a failure, not a skip: a suite that silently
tested nothing would hide a broken promise.
"""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

SUPPORTED_MINORS = [(3, minor) for minor in range(8, 14)]
PYENV_ROOT = Path(os.environ.get("PYENV_ROOT", "/root/.pyenv"))


def discover_pythons() -> dict[str, Path]:
    """Newest pyenv interpreter of each supported minor version, keyed by ``3.X.Y``."""
    found: dict[tuple[int, int], tuple[tuple[int, ...], Path]] = {}
    for folder in sorted((PYENV_ROOT / "versions").glob("3.*")):
        match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)", folder.name)
        exe = folder / "bin" / "python"
        if not match or not os.access(exe, os.X_OK):
            continue
        version = tuple(int(part) for part in match.groups())
        minor = version[:2]
        if minor in SUPPORTED_MINORS and (minor not in found or version > found[minor][0]):
            found[minor] = (version, exe)
    return {".".join(map(str, version)): exe for version, exe in sorted(found.values())}


PYTHONS = discover_pythons()


def _serve_subset() -> dict[str, Path]:
    # Serve mode is the same code on every version; the oldest, ours and the newest suffice.
    wanted = {"3.8", "3.11", "3.13"}
    subset = {v: p for v, p in PYTHONS.items() if v.rsplit(".", 1)[0] in wanted}
    return subset or PYTHONS


def _parametrize_pythons(metafunc: pytest.Metafunc, name: str, pythons: dict[str, Path]) -> None:
    if name in metafunc.fixturenames:
        # None stands for "nothing found" so the test fails instead of being skipped.
        params = list(pythons.values()) or [None]
        ids = list(pythons) or ["no-python-found"]
        metafunc.parametrize(name, params, ids=ids, indirect=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    _parametrize_pythons(metafunc, "runner_python", PYTHONS)
    _parametrize_pythons(metafunc, "serve_python", _serve_subset())


def _interpreter(request: pytest.FixtureRequest) -> Path:
    if request.param is None:
        pytest.fail(
            f"no CPython 3.8-3.13 interpreter found under {PYENV_ROOT}/versions; the runner can't be tested"
        )
    return request.param


@pytest.fixture
def runner_python(request: pytest.FixtureRequest) -> Path:
    """Each supported interpreter in turn."""
    return _interpreter(request)


@pytest.fixture
def serve_python(request: pytest.FixtureRequest) -> Path:
    """The interpreters the serve-mode tests run under."""
    return _interpreter(request)


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
