"""The portal in a real headless Chromium against the real processes (`make run`).

Journeys: log in; an admin creates a group and sees its token once; an analyst uploads a
Sync model through the form and watches it reach Deployed without reloading, then tries
it; an Async input is uploaded and its result downloaded; personal API tokens; model
actions confirmed in a dialog (and on a page without JavaScript); an analyst of another
group cannot see the model. Screenshots of the main pages go to test-artifacts/screenshots/.
"""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest
import requests

from tests.helpers.browser import POLICY_REFUSALS, file_payload, screenshot, submit_broken_upload
from tests.helpers.processes import ROOT, PortalClient, RunningPortal

pytestmark = [pytest.mark.slow, pytest.mark.browser]

PASSWORD = "analyst-password-123"
# Sleeps at import so that its build (whose smoke test imports it) lasts long enough to be
# watched going from Building to Deployed.
SYNC_SOURCE = textwrap.dedent(
    """
    import json, os, time

    time.sleep(3)


    def score(data, base_path):
        row = json.loads(data)
        return {"total": row["a"] + row["b"], "secret_ok": os.environ.get("API_KEY") == "s3cr3t"}
    """
)
ASYNC_SOURCE = textwrap.dedent(
    """
    import os


    def score(data_path, model_path):
        text = open(os.path.join(data_path, os.environ["inputFileName"])).read()
        out = os.path.join(data_path, "scored.csv")
        open(out, "w").write(text.strip() + ",scored\\n")
        return out
    """
)
QUICK_SOURCE = "def score(data, base_path):\n    return {'ok': True}\n"


def manage(portal: RunningPortal, code: str) -> str:
    """Run Python in `manage.py shell` against the portal's data (folder and database)."""
    done = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "python"), "manage.py", "shell", "-c", code],
        cwd=ROOT,
        env=portal.env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    """One portal for the module: users ana (datarisk) and bob (fraud), an Async model."""
    portal = RunningPortal(tmp_path_factory.mktemp("portal-ui"))
    try:
        portal.wait_healthy()
        manage(
            portal,
            "from django.contrib.auth import get_user_model\n"
            "U = get_user_model()\n"
            f"[U.objects.create_user(n, password={PASSWORD!r}) for n in ('ana', 'bob')]\n",
        )
        admin = PortalClient(portal)
        token = admin.create_group("datarisk")
        admin.create_group("fraud")
        for group, user in (("datarisk", "ana"), ("fraud", "bob")):
            added = admin.post(f"/api/v1/groups/{group}/members", json={"username": user, "role": "member"})
            assert added.status_code in (200, 201), added.text
        files = {
            "source": ("app.py", ASYNC_SOURCE.encode()),
            "model": ("model.pkl", b"unused"),
            "requirements": ("requirements.txt", b""),
        }
        async_hash = admin.deploy(group="datarisk", files=files, name="Batch scorer", operation="Async")
        yield {"portal": portal, "admin": admin, "token": token, "async": async_hash}
    finally:
        portal.stop()


@pytest.fixture
def page(page, live):
    """The browser page, failing the test if anything is fetched from outside the portal."""
    offsite = []
    url = live["portal"].url
    page.on(
        "request",
        lambda r: offsite.append(r.url) if not r.url.startswith((url, "data:", "blob:")) else None,
    )
    errors = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    yield page
    assert offsite == [], f"the page fetched from outside the portal: {offsite}"
    assert errors == [], f"JavaScript errors: {errors}"


def login(page, live, username: str, password: str = PASSWORD) -> None:
    url = live["portal"].url
    page.goto(f"{url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{url}/")


def unlabelled_controls(page) -> list[str]:
    """Form controls without a label: every visible one needs one."""
    return page.evaluate(
        """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
            .filter((el) => el.offsetParent !== null)
            .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label'))
            .map((el) => el.id || el.name)"""
    )


def test_login_then_dashboard(page, live):
    url = live["portal"].url
    page.goto(f"{url}/models/")
    assert "/login/" in page.url  # pages need a session
    page.fill("#id_username", "ana")
    page.fill("#id_password", "wrong password")
    page.click("main button[type=submit]")
    assert "Please enter a correct username and password" in page.inner_text("main")
    screenshot(page, "login")
    page.fill("#id_password", PASSWORD)
    page.click("main button[type=submit]")
    page.wait_for_url(f"{url}/models/")  # back where the visitor wanted to go
    page.goto(f"{url}/")
    assert page.inner_text("h1") == "Hello, ana"
    models = page.inner_text("#dashboard-models")
    assert "Batch scorer" in models and "Deployed" in models
    assert "datarisk" in page.inner_text(".group-list")
    assert "fraud" not in page.inner_text("main")
    screenshot(page, "dashboard")
    page.click("header button:has-text('Log out')")
    assert "You are logged out" in page.inner_text("main")


def test_admin_creates_group_and_sees_its_token_once(page, live):
    url = live["portal"].url
    login(page, live, *live["portal"].admin)
    page.goto(f"{url}/groups/")
    page.fill("#id_name", "Bad Name")
    page.click("text=Create group")
    assert "lower-case letters" in page.inner_text("[data-field=name]")
    page.fill("#id_name", "marketing")
    page.fill("#id_description", "Campaign response models")
    page.click("text=Create group")
    assert "Copy this token now" in page.inner_text("main")
    token = page.input_value("#group-token")
    assert token.startswith("nmg_")
    screenshot(page, "group-token-once")
    # The token calls the group's models: the API recognises it (404: no such model).
    probe = requests.post(
        f"{url}/api/v1/run/Mnothing", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    assert probe.status_code == 404
    page.reload()  # resubmits the form: the group exists now, and the token is not shown
    assert token not in page.content()
    page.goto(f"{url}/groups/marketing/")
    assert token not in page.content() and token[:12] in page.content()  # only its prefix
    page.fill("#id_member-username", "ana")
    page.select_option("#id_member-role", "owner")
    page.click("form.inline-form button:has-text('Add')")
    assert "ana is added as owner of marketing" in page.inner_text(".messages")
    assert "ana" in page.inner_text("#members-table")
    assert unlabelled_controls(page) == []
    screenshot(page, "group-detail")
    page.goto(f"{url}/groups/")
    assert "marketing" in page.inner_text("#groups-table")
    screenshot(page, "groups")


def test_upload_sync_model_watch_it_deploy_and_try_it(page, live):
    url = live["portal"].url
    login(page, live, "ana")
    page.goto(f"{url}/models/new/")
    assert unlabelled_controls(page) == []
    # Hints follow the operation: a sample input is for Async models only.
    page.check("#id_operation_1")
    assert page.is_visible("#id_sample")
    page.check("#id_operation_0")
    assert not page.is_visible("#id_sample")
    assert page.is_disabled("#id_input_type option[value=csv]")

    page.fill("#id_name", "Credit score")
    page.select_option("#id_python_version", "3.11")
    page.set_input_files("#id_source", files=[file_payload("app.py", SYNC_SOURCE)])
    page.set_input_files("#id_model", files=[file_payload("model.pkl", b"\x80" * (8 << 20))])  # 8 MB
    page.set_input_files("#id_requirements", files=[file_payload("requirements.txt", "")])
    page.fill("#id_schema_text", json.dumps({"a": 1, "b": 2}))
    page.set_input_files("#id_env", files=[file_payload(".env", "API_KEY=s3cr3t\n")])
    progress = []
    page.on("console", lambda m: progress.append(m.text) if m.text.startswith("progress ") else None)
    page.evaluate(
        """() => { const bar = document.querySelector('#upload-progress .progress-bar');
                   new MutationObserver(() => console.log('progress ' + bar.getAttribute('aria-valuenow')))
                     .observe(bar, {attributes: true}); }"""
    )
    page.click("#upload-submit")
    page.wait_for_url(f"{url}/models/M*/")
    assert "progress 100" in progress, progress  # the upload went through XHR, with a progress bar
    page.evaluate("window.notReloaded = true")
    first = page.inner_text("#model-status")
    assert first in ("Queued", "Building"), first  # the portal's name for Ready
    # Whenever the badge changes, the log shown beside it agrees: never Deployed before its last line.
    page.evaluate(
        """() => { window.badgeSeen = [];
                   const badge = document.getElementById('model-status');
                   new MutationObserver(() => window.badgeSeen.push([badge.textContent,
                       document.getElementById('build-log').textContent.includes('Build succeeded')]))
                     .observe(badge, {childList: true, characterData: true, subtree: true, attributes: true}); }"""
    )
    assert "API_KEY" in page.inner_text("#env-names") and "s3cr3t" not in page.content()
    screenshot(page, "model-sync-building")
    page.wait_for_selector("#model-status.badge-Deployed", timeout=180_000)
    assert page.evaluate("window.notReloaded") is True  # updated live, not by a reload
    assert "Build succeeded" in page.inner_text("#build-log")
    seen = page.evaluate("window.badgeSeen")
    assert seen and all(has_last_line for status, has_last_line in seen if status == "Deployed"), seen
    assert page.is_visible("#try-form")

    assert page.is_visible("#try-session-note")  # the member's session: no token to paste
    page.fill("#try-body", json.dumps({"a": 20, "b": 22}))
    page.click("#try-submit")
    answer = page.wait_for_selector("#try-answer", timeout=60_000)
    assert json.loads(answer.inner_text()) == {"total": 42, "secret_ok": True}
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0  # the token is kept nowhere
    page.wait_for_selector("#runners li")  # the call warmed a runner
    # A model error comes back with its traceback.
    page.fill("#try-body", json.dumps({"a": 1}))
    page.click("#try-submit")
    assert "KeyError" in page.wait_for_selector("#try-traceback").inner_text()
    page.fill("#try-body", json.dumps({"a": 20, "b": 22}))
    page.click("#try-submit")
    page.wait_for_selector("#try-answer")
    # The calls were recorded (for monitoring) and the page's figures follow, without a reload.
    page.wait_for_function(
        "() => document.querySelector('#calls').innerText.includes('3 in all')", timeout=15_000
    )
    assert "1 error" in page.inner_text("#calls")
    # The generated code is in tabs with a copy button.
    page.click("[role=tab]:has-text('Python')")
    assert "NEOMARIL_GROUP_TOKEN" in page.inner_text("#code-python")
    assert not page.is_visible("#code-curl")
    screenshot(page, "model-sync-deployed-try-it")


def test_upload_errors_are_shown_next_to_the_fields(page, live):
    url = live["portal"].url
    login(page, live, "ana")
    page.goto(f"{url}/models/new/")
    submit_broken_upload(page, "Broken")
    assert "two positional arguments" in page.inner_text("[data-field=source]")
    assert "Upload the model file" in page.inner_text("[data-field=model]")
    assert "need a schema" in page.inner_text("[data-field=schema]")
    assert page.get_attribute("#id_source", "aria-invalid") == "true"
    assert page.url == f"{url}/models/new/"  # the files stay selected for the next try
    screenshot(page, "upload-form-errors")


def test_a_full_disk_refusal_is_shown_as_the_server_words_it(page, live):
    """The upload script shows a 507's message (the page answers 507 when the disk has no
    room: tests/groups/test_upload_pages_out_of_space.py), not a bare status number; and
    says the disk is full when the 507 is the HTML page of a view that met a full disk
    (portal.out_of_space). The answers are the server's shapes, given by the browser: the
    live portal's disk has room."""
    url = live["portal"].url
    message = "The server has no disk space left for 2 MB (it keeps NEOMARIL_DISK_RESERVE_MB = 256 MB free)."
    answers = [
        {"status": 507, "json": {"errors": {"__all__": [message]}}},
        {"status": 507, "body": "<h1>The server's disk is full</h1>", "content_type": "text/html"},
    ]
    page.route(
        f"{url}/models/new/",
        lambda route: (
            route.fulfill(**answers.pop(0)) if route.request.method == "POST" else route.continue_()
        ),
    )
    login(page, live, "ana")
    page.goto(f"{url}/models/new/")
    submit_broken_upload(page, "No room")
    assert page.inner_text("#form-errors") == message
    page.click("#upload-submit")
    page.wait_for_function(
        # The script removes the box while the upload is sent: it may not be there yet.
        "() => document.querySelector('#form-errors')?.innerText.includes('nothing was saved')"
    )
    assert page.inner_text("#form-errors") == "The server's disk is full: nothing was saved."
    assert page.url == f"{url}/models/new/" and answers == []


def test_upload_form_works_without_javascript(browser, live):
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1366, "height": 900})
    page = context.new_page()
    try:
        login(page, live, "ana")
        page.goto(f"{live['portal'].url}/models/new/")
        page.fill("#id_name", "No JS")
        page.click("#upload-submit")
        assert "Upload the scoring script" in page.inner_text("[data-field=source]")
        page.set_input_files("#id_source", files=[file_payload("app.py", QUICK_SOURCE)])
        page.set_input_files("#id_model", files=[file_payload("model.pkl", b"x")])
        page.set_input_files("#id_requirements", files=[file_payload("requirements.txt", "")])
        page.fill("#id_schema_text", "{}")
        page.select_option("#id_python_version", "3.11")
        page.click("#upload-submit")
        page.wait_for_url("**/models/M*/")
        assert "No JS was uploaded" in page.inner_text(".messages")
    finally:
        context.close()


def test_async_input_upload_and_result_download(page, live, tmp_path):
    url = live["portal"].url
    login(page, live, "ana")
    page.goto(f"{url}/models/{live['async']}/")
    page.set_input_files("#execution-file", files=[file_payload("entrada.csv", "a,b\n1,2\n")])
    page.click("#execution-submit")
    started = page.wait_for_selector("#execution-started").inner_text()
    assert started.startswith("Execution 1 started")
    row = page.wait_for_selector(
        "#executions-body tr[data-execution='1'][data-status=Succeeded]", timeout=60_000
    )
    assert "entrada.csv" in row.inner_text()
    screenshot(page, "model-async-executions")
    with page.expect_download() as download:
        page.click("#executions-body tr[data-execution='1'] >> text=Download result")
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name == "scored.csv" and saved.read_text() == "a,b\n1,2,scored\n"
    page.click("#executions-body tr[data-execution='1'] >> text=#1")
    assert "Execution 1" in page.inner_text("h1") and "Succeeded" in page.inner_text("h1")
    assert "Execution succeeded" in page.inner_text("#execution-log")


def test_personal_api_tokens(page, live):
    url = live["portal"].url
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    login(page, live, "ana")
    page.goto(f"{url}/account/tokens/")
    page.fill("#id_name", "laptop notebook")
    page.click("text=Create token")
    value = page.input_value("#api-token")
    assert value.startswith("nmu_")
    page.click("button[data-copy='#api-token']")
    assert page.evaluate("navigator.clipboard.readText()") == value
    me = requests.get(f"{url}/api/v1/auth/me", headers={"Authorization": f"Token {value}"}, timeout=10)
    assert me.json()["username"] == "ana"
    screenshot(page, "api-tokens")
    page.goto(f"{url}/account/tokens/")
    assert value not in page.content()
    row = page.locator("#tokens-table tr", has_text="laptop notebook")
    row.locator("button:has-text('Revoke')").click()
    page.click("dialog button[value=cancel]")  # changed their mind: nothing happens
    assert "active" in row.inner_text()
    row.locator("button:has-text('Revoke')").click()
    page.click("dialog button[value=ok]")
    page.wait_for_selector(".messages")
    assert "revoked" in page.locator("#tokens-table tr", has_text="laptop notebook").inner_text()
    gone = requests.get(f"{url}/api/v1/auth/me", headers={"Authorization": f"Token {value}"}, timeout=10)
    assert gone.status_code == 401


def test_model_actions_ask_for_confirmation(page, browser, live):
    url = live["portal"].url
    files = {
        "source": ("app.py", QUICK_SOURCE.encode()),
        "model": ("model.pkl", b"x"),
        "requirements": ("requirements.txt", b""),
        "schema": ("schema.json", b"{}"),
    }
    model_hash = live["admin"].deploy(group="datarisk", files=files, name="Short-lived")
    login(page, live, "ana")
    page.goto(f"{url}/models/{model_hash}/")
    page.click("form[action$='/disable/'] button")
    assert "Disable this model?" in page.inner_text("dialog")
    page.click("dialog button[value=cancel]")
    assert page.inner_text("#model-status") == "Deployed"
    page.click("form[action$='/disable/'] button")
    page.click("dialog button[value=ok]")
    page.wait_for_selector("#model-status.badge-Disabled")
    assert "was disabled" in page.inner_text(".messages")

    # Without JavaScript the confirmation is a page of its own.
    context = browser.new_context(java_script_enabled=False, viewport={"width": 1366, "height": 900})
    plain = context.new_page()
    try:
        login(plain, live, "ana")
        plain.goto(f"{url}/models/{model_hash}/")
        plain.click("form[action$='/delete/'] button")
        assert "Delete this model for good?" in plain.inner_text("h1")
        screenshot(plain, "model-confirm-delete-no-js")
        plain.click("main button:has-text('Delete')")
        plain.wait_for_url(f"{url}/models/")
        assert "was deleted" in plain.inner_text(".messages")
    finally:
        context.close()
    status = live["admin"].get(f"/api/v1/models/{model_hash}/status").json()["status"]
    assert status == "Deleted"


def test_analyst_cannot_see_another_groups_model(page, live):
    url = live["portal"].url
    login(page, live, "bob")
    assert "Batch scorer" not in page.inner_text("main")
    response = page.goto(f"{url}/models/{live['async']}/")
    assert response.status == 404
    assert "Not found" in page.inner_text("h1")
    screenshot(page, "not-found")
    assert page.goto(f"{url}/groups/datarisk/").status == 404
    assert page.goto(f"{url}/models/{live['async']}/executions/1/").status == 404
    # Nor through the API with the session.
    assert page.goto(f"{url}/api/v1/run/{live['async']}/executions").status == 404


def test_an_injected_script_does_not_run(page, live):
    """A name that slipped past escaping would reach the page as markup: the
    Content-Security-Policy keeps its scripts and handlers from running, while the
    portal's own scripts (the confirmation dialogs, the live status) still work."""
    url = live["portal"].url
    login(page, live, "ana")
    page.goto(f"{url}/models/{live['async']}/")
    ran = page.evaluate(
        """async () => {
            window.injected = [];
            const script = document.createElement('script');
            script.textContent = 'window.injected.push("inline script")';
            document.body.appendChild(script);
            const img = document.createElement('div');
            img.innerHTML = '<img src="data:," onload="window.injected.push(\\'handler\\')">';
            document.body.appendChild(img);
            // From a timer: code that Playwright itself evaluates may eval.
            await new Promise((resolve) => setTimeout(() => {
                try { eval('window.injected.push("eval")'); } catch (e) {}
                resolve();
            }, 0));
            await new Promise((resolve) => setTimeout(resolve, 300));
            return window.injected;
        }"""
    )
    assert ran == []
    # The script and the handler are each reported (eval only throws); Chromium's console
    # messages arrive on their own time.
    for _ in range(50):
        if len(POLICY_REFUSALS) >= 2:
            break
        page.wait_for_timeout(100)
    assert len(POLICY_REFUSALS) == 2 and all("/models/" in line for line in POLICY_REFUSALS), POLICY_REFUSALS
    POLICY_REFUSALS.clear()  # caused on purpose
    # The page's own script is untouched: its delete button still asks first.
    page.click("form[action$='/disable/'] button")
    assert "Disable this model?" in page.inner_text("dialog")
    page.click("dialog button[value=cancel]")


def test_a_new_share_link_s_page_logs_out_and_switches_language_after_asking(page, live):
    """Its answer was a POST's with `Referrer-Policy: no-referrer`, so Chromium sent its
    forms with `Origin: null` and the CSRF check refused them (403); and a reload made
    another link. Now a GET shows it once, and the language switch warns first."""
    url, model = live["portal"].url, live["async"]
    login(page, live, *live["portal"].admin)
    page.goto(f"{url}/models/{model}/")
    page.click("#share-form button[type=submit]")
    page.wait_for_url(f"{url}/models/{model}/share-links/")
    first = page.input_value("#share-url")
    page.click("#language-switch button[value=pt-br]")
    page.wait_for_selector("dialog[open]")
    page.click("dialog button[value=cancel]")  # stays, secret still shown
    assert page.input_value("#share-url") == first
    page.click("#language-switch button[value=pt-br]")
    page.click("dialog button[value=ok]")
    # Shown once: the switch reloads the page in Portuguese, back at the model's share card.
    page.wait_for_url(f"{url}/models/{model}/#share")
    assert page.get_attribute("html", "lang") == "pt-br"
    page.click("#share-form button[type=submit]")
    page.wait_for_url(f"{url}/models/{model}/share-links/")
    page.reload()  # no second link
    page.wait_for_url(f"{url}/models/{model}/#share")
    assert len(live["admin"].get(f"/api/v1/models/{model}/share-links").json()) == 2
    page.click("#language-switch button[value=en]")  # no secret on this page: no question
    page.wait_for_function("document.documentElement.lang === 'en'")
    page.click("#share-form button[type=submit]")
    page.wait_for_url(f"{url}/models/{model}/share-links/")
    page.click("form.logout button")
    page.wait_for_url(f"{url}/login/")
    assert "logged out" in page.inner_text(".messages")
