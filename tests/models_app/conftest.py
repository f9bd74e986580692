"""Fixtures of the models tests: a model environment that needs no uv."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from models_app import tasks


@pytest.fixture
def host_env(settings, monkeypatch) -> Path:
    """A model environment whose interpreter is the host's: no uv, the real runner."""
    env = settings.ENVS_DIR / ("f" * 64)
    python = env / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        python.symlink_to(Path(getattr(sys, "_base_executable", sys.executable)))
    monkeypatch.setattr(tasks.environments, "ensure_environment", lambda **kwargs: env)
    return env
