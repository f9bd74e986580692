"""The SDK on the oldest Python it supports: installed with pip semantics (`uv pip install
./sdk`) into a fresh 3.8 environment, its docs rendered, and its unit tests run there."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from models_app import interpreters

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"

SMOKE = """
import pydoc, sys
import neomaril_codex, neomaril_codex.base, neomaril_codex.exceptions, neomaril_codex.model
assert sys.version_info[:2] == (3, 8), sys.version
print(neomaril_codex.__file__)
for obj in (neomaril_codex.model.NeomarilModelClient, neomaril_codex.model.NeomarilModel,
            neomaril_codex.base.NeomarilExecution, neomaril_codex.exceptions):
    print(pydoc.render_doc(obj, renderer=pydoc.plaintext))
"""


def test_sdk_installs_and_passes_its_unit_tests_on_python_38(tmp_path):
    found = interpreters.discover_interpreters(settings.PYTHON_SEARCH_PATHS)
    python38 = interpreters.find_interpreter("3.8", found).path  # fails loudly when 3.8 is missing
    venv = tmp_path / "venv38"
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEOMARIL_", "DJANGO_", "PYTEST", "VIRTUAL_ENV"))
    }

    def run(*command: str | Path, cwd: Path = tmp_path) -> str:
        done = subprocess.run(
            [str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    run(UV, "venv", "--quiet", "--python", python38, venv)
    run(UV, "pip", "install", "--quiet", "--python", venv / "bin" / "python", ROOT / "sdk", "pytest")

    rendered = run(venv / "bin" / "python", "-c", SMOKE)
    assert rendered.startswith(str(venv))  # the installed copy, not the source tree
    for text in ("create_model(self, model_name", "Upload a trained model and deploy it.", "wait_ready",
                 "download_result", "class AuthenticationError"):  # fmt: skip
        assert text in rendered

    # The repository's pytest configuration asks for Django; the SDK's unit tests need none.
    output = run(
        venv / "bin" / "python", "-m", "pytest", "--noconftest", "-p", "no:cacheprovider", "-o", "addopts=",
        "-q", "tests/sdk/test_unit.py", "tests/sdk/test_training_unit.py", "tests/sdk/test_monitoring.py", "tests/sdk/test_versions.py", "tests/sdk/test_http.py", cwd=ROOT,
    )  # fmt: skip
    summary = output.strip().splitlines()[-1]
    assert re.match(r"^\d+ passed", summary) and "failed" not in summary and "error" not in summary, output
