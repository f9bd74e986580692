"""Deployed Async models for the executions tests, without a uv build.

The model's "environment" is a folder whose bin/python is the host's base interpreter,
so the real runner runs the (stdlib-only) user code in a real child process, in
milliseconds. The slow tests use real uv-built environments instead.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from models_app.models import MLModel
from tests.conftest import api_client
from tests.models_app.uploads import file

FAKE_FINGERPRINT = "e" * 64
BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable))

SOURCE = textwrap.dedent(
    """
    import os
    import sys
    import time


    def score(data_path, model_path):
        name = os.environ["inputFileName"]
        with open(os.path.join(data_path, name)) as f:
            lines = f.read().splitlines()
        print("scoring %d rows of %s" % (len(lines) - 1, name))
        print("a warning on stderr", file=sys.stderr)
        checks = [
            name,
            str(os.environ.get("API_KEY") == "s3cr3t-value"),
            str(os.environ["HOME"] == data_path),
            str(os.getcwd() == os.path.realpath(data_path)),
            str(os.path.isfile(os.path.join(model_path, "model.pkl"))),
            str("SECRET_KEY" in os.environ or "NEOMARIL_DATA_DIR" in os.environ),
        ]
        output = os.path.join(data_path, "output.csv")
        with open(output, "w") as f:
            f.write(lines[0] + ",seen_name,api_key_ok,home_ok,cwd_ok,model_path_ok,platform_leak\\n")
            for line in lines[1:]:
                f.write(line + "," + ",".join(checks) + "\\n")
        return output


    def helper(x):
        return 1 / x


    def explode(data_path, model_path):
        print("about to fail")
        return helper(0)


    def returns_none(data_path, model_path):
        return None


    def returns_number(data_path, model_path):
        return 42


    def returns_outside(data_path, model_path):
        return os.path.join(model_path, "app.py")


    def returns_missing(data_path, model_path):
        return os.path.join(data_path, "nothing-here.csv")


    def returns_directory(data_path, model_path):
        os.mkdir(os.path.join(data_path, "sub"))
        return os.path.join(data_path, "sub")


    def returns_input(data_path, model_path):
        return os.path.join(data_path, os.environ["inputFileName"])


    def returns_escaping_symlink(data_path, model_path):
        os.symlink(os.path.join(model_path, "app.py"), os.path.join(data_path, "link.csv"))
        return os.path.join(data_path, "link.csv")


    def returns_relative(data_path, model_path):
        os.makedirs("results")
        with open("results/scores.json", "w") as f:
            f.write('{"ok": true}')
        return "results/scores.json"


    def sleeps(data_path, model_path):
        print("sleeping", flush=True)
        time.sleep(120)
        return os.path.join(data_path, os.environ["inputFileName"])


    def chatty(data_path, model_path):
        for i in range(5000):
            print("line %d %s" % (i, "x" * 100))
        output = os.path.join(data_path, "out.txt")
        with open(output, "w") as f:
            f.write("done")
        return output
    """
)

CSV = "radius,texture\n14.1,19.3\n20.5,25.1\n"


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


def token_client(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


@pytest.fixture
def caller(cast) -> APIClient:
    """A client holding the cast group's token (what a model's callers use)."""
    return token_client(cast.group_token)


def submit(
    client: APIClient, model: MLModel, name: str = "input.csv", content: str | bytes = CSV, field="file"
):
    return client.post(f"/api/v1/run/{model.hash}", {field: file(name, content)}, format="multipart")
