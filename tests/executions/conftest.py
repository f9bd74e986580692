"""Deployed Async models for the executions tests, without a uv build.

The model's "environment" is a folder whose bin/python is the host's base interpreter,
so the real runner runs the (stdlib-only) user code in a real child process, in
milliseconds. The slow tests use real uv-built environments instead.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from models_app.models import MLModel
from tests.helpers.clients import api_client, token_client
from tests.helpers.executions import BASE_PYTHON, FAKE_FINGERPRINT, SOURCE
from tests.helpers.uploads import file


@pytest.fixture
def fake_env() -> str:
    python = settings.ENVS_DIR / FAKE_FINGERPRINT / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    if not python.exists():
        python.symlink_to(BASE_PYTHON)
    return FAKE_FINGERPRINT


@pytest.fixture
def deploy(cast, fake_env):
    """deploy(entrypoint="score", **fields) -> a Deployed Async model of the cast's group."""

    def make(entrypoint: str = "score", **fields) -> MLModel:
        payload = {
            "name": f"Async {entrypoint}",
            "group": "datarisk",
            "operation": "Async",
            "model_reference": entrypoint,
            "python_version": "3.11",
            "source": file("app.py", SOURCE),
            "model": file("model.pkl", b"\x80\x04K\x01."),
            "requirements": file("requirements.txt", ""),
            "env": file(".env", "API_KEY=s3cr3t-value\n"),
        }
        response = api_client(cast.owner).post("/api/v1/models", payload, format="multipart")
        assert response.status_code == 201, response.json()
        model = MLModel.objects.get(hash=response.json()["hash"])
        MLModel.objects.filter(pk=model.pk).update(
            status=MLModel.Status.DEPLOYED, env_fingerprint=fake_env, **fields
        )
        model.refresh_from_db()
        return model

    return make


@pytest.fixture
def caller(cast) -> APIClient:
    """A client holding the cast group's token (what a model's callers use)."""
    return token_client(cast.group_token)
