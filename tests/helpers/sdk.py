"""The SDK's environment for a test: no NEOMARIL_* variable from the developer's shell,
and a working directory of the test's choosing (the SDK reads a ``.env`` there).

The SDK's unit tests import this on Python 3.8 too (test_py38.py): stdlib and pytest only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

NEOMARIL_VARS = (
    "NEOMARIL_URL",
    "NEOMARIL_USER",
    "NEOMARIL_PASSWORD",
    "NEOMARIL_TOKEN",
    "NEOMARIL_GROUP",
    "NEOMARIL_GROUP_TOKEN",
)


def sdk_env(
    monkeypatch: pytest.MonkeyPatch, folder: Path, portal: Any = None, **values: str
) -> pytest.MonkeyPatch:
    """Only the NEOMARIL_* variables in `values` set, and `folder` the working directory.

    With a `portal` (tests.helpers.processes.RunningPortal), also the documented setup:
    NEOMARIL_URL, NEOMARIL_USER and NEOMARIL_PASSWORD of its admin.
    """
    for name in NEOMARIL_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(folder)
    if portal is not None:
        values = {
            "NEOMARIL_URL": portal.url,
            "NEOMARIL_USER": portal.admin[0],
            "NEOMARIL_PASSWORD": portal.admin[1],
            **values,
        }
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return monkeypatch
