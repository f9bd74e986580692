"""Playwright driving Debian's Chromium (no browser downloads on these machines).

`make test` installs Chromium when it is missing; if it is still missing the tests fail
with a clear message instead of skipping. The `browser` and `page` fixtures built on
these live in tests/portal/conftest.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    path = os.environ.get("NEOMARIL_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        pytest.fail(
            "Chromium is not installed: run `make browser-deps` (apt-get install chromium).", pytrace=False
        )
    return path


def screenshot(page, name: str) -> Path:
    """Save a screenshot for reviewers (test-artifacts/screenshots/)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    target = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(target), full_page=True)
    return target
