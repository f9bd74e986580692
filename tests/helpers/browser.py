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


# What Chromium refused under the pages' Content-Security-Policy (portal/csp.py), in any
# context made from the `browser` fixture (tests/conftest.py): a browser test fails on one,
# unless it takes out the refusals it caused on purpose.
POLICY_REFUSALS: list[str] = []


def note_policy_refusal(message) -> None:
    if "Content Security Policy" in message.text:
        POLICY_REFUSALS.append(f"{message.page.url if message.page else '?'}: {message.text}")


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


def file_payload(name: str, content: str | bytes) -> dict:
    """A file for Playwright's set_input_files, from memory."""
    data = content.encode() if isinstance(content, str) else content
    return {"name": name, "mimeType": "application/octet-stream", "buffer": data}


def submit_broken_upload(page, name: str) -> None:
    """On the upload page: a score() taking one argument, an editable requirement and no
    model file, submitted; returns once the form shows its errors."""
    page.fill("#id_name", name)
    page.set_input_files("#id_source", files=[file_payload("app.py", "def score(data):\n    return 1\n")])
    page.set_input_files("#id_requirements", files=[file_payload("requirements.txt", "-e ./local\n")])
    page.click("#upload-submit")
    page.wait_for_selector("#form-errors")


class WatchedPages:
    """Pages of fresh browser contexts that note their script errors and any request
    leaving the portal; `check()` closes them and fails on either."""

    def __init__(self, browser, live_server) -> None:
        self.browser, self.live_server = browser, live_server
        self._opened: list[tuple] = []

    def open(self, user=None, **context_options):
        """A new page (`context_options` as Playwright's new_context takes them, a desktop's
        viewport by default), logged in as `user` when given."""
        context = self.browser.new_context(**{"viewport": {"width": 1366, "height": 900}, **context_options})
        page = context.new_page()
        page.set_default_timeout(20_000)
        if user is not None:
            give_session(page, self.live_server, user)
        offsite, errors = [], []
        allowed = (self.live_server.url, "data:", "blob:")
        page.on("request", lambda r: None if r.url.startswith(allowed) else offsite.append(r.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        self._opened.append((context, offsite, errors))
        return page

    def check(self) -> None:
        for context, offsite, errors in self._opened:
            context.close()
            assert offsite == [], f"the page fetched from outside the portal: {offsite}"
            assert errors == [], f"JavaScript errors: {errors}"


def give_session(page, live_server, user) -> None:
    """Give the browser the session of `user` (logged in through Django's test client)."""
    from django.test import Client

    from tests.helpers.cast import PASSWORD

    client = Client()
    assert client.login(username=user.username, password=PASSWORD)
    page.context.add_cookies(
        [{"name": "sessionid", "value": client.cookies["sessionid"].value, "url": live_server.url}]
    )
