"""People in a real headless Chromium against Django's live server: an admin logs in,
creates an account, adds it to a group and copies its one-time link; the new user opens
the link in another browser, sets a password and logs in; the link then no longer works.
Screenshots go to test-artifacts/screenshots/."""

from __future__ import annotations

import pytest

from groups.models import Membership
from tests.helpers.browser import screenshot
from tests.helpers.cast import PASSWORD

pytestmark = [pytest.mark.browser]

NEW_PASSWORD = "a-long-and-new-password-42"


@pytest.fixture
def watched(browser, live_server):
    """New pages of fresh contexts; the test fails if one throws or fetches offsite."""
    contexts, offsite, errors = [], [], []

    def new_page():
        context = browser.new_context(viewport={"width": 1366, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(20_000)
        page.on(
            "request",
            lambda r: offsite.append(r.url) if not r.url.startswith((live_server.url, "data:")) else None,
        )
        page.on("pageerror", lambda error: errors.append(str(error)))
        return page

    yield new_page
    for context in contexts:
        context.close()
    assert offsite == [], f"a page fetched from outside the portal: {offsite}"
    assert errors == [], f"JavaScript errors: {errors}"


def _log_in(page, url: str, username: str, password: str) -> None:
    page.goto(f"{url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]:has-text('Log in')")


def test_admin_creates_a_user_who_sets_a_password_and_logs_in(watched, live_server, cast):
    admin = watched()
    _log_in(admin, live_server.url, "admin", PASSWORD)
    admin.click("nav.mainnav >> text=People")
    admin.wait_for_url(f"{live_server.url}/people/")
    admin.fill("#id_username", "ana")
    admin.fill("#id_email", "ana@example.com")
    admin.click("#create-user-form button[type=submit]")
    admin.wait_for_url(f"{live_server.url}/people/ana/")
    link = admin.input_value("#link-value")
    assert link.startswith(f"{live_server.url}/account/set-password/")
    assert admin.locator("#set-password-link").is_visible()
    screenshot(admin, "people-link-once")

    admin.select_option("#id_group-group", "datarisk")
    admin.click("#add-group-form button[type=submit]")
    admin.wait_for_selector("tr[data-group=datarisk]")
    assert Membership.objects.filter(user__username="ana", group=cast.group).exists()
    assert admin.locator("#link-value").count() == 0  # shown once: gone after the next page
    admin.goto(f"{live_server.url}/people/")
    screenshot(admin, "people")

    ana = watched()
    ana.goto(link)
    assert "/set-password/" in ana.url and link != ana.url  # the token left the address bar
    assert ana.locator("text=For the account ana").is_visible()
    ana.fill("#id_new_password1", "12345")
    ana.fill("#id_new_password2", "12345")
    ana.click("#set-password-form button[type=submit]")
    # The form posts to the same address, so wait for the answer rather than the URL.
    ana.wait_for_selector("text=This password is too short")
    screenshot(ana, "set-password-errors")
    ana.fill("#id_new_password1", NEW_PASSWORD)
    ana.fill("#id_new_password2", NEW_PASSWORD)
    ana.click("#set-password-form button[type=submit]")
    ana.wait_for_url(f"{live_server.url}/login/")
    assert ana.locator("text=Your password is set. Log in as 'ana'.").is_visible()
    _log_in(ana, live_server.url, "ana", NEW_PASSWORD)
    ana.wait_for_url(f"{live_server.url}/")
    assert ana.locator(".userbox .who").inner_text().strip().endswith("ana")
    assert ana.locator("nav.mainnav >> text=People").count() == 0

    again = watched()
    again.goto(link)
    assert again.locator("#link-invalid").is_visible()
