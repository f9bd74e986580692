"""Accessibility in a real headless Chromium against Django's live server, in Portuguese:
what an audit (axe-core and the keyboard) found, checked where a screen reader meets it.

The EN/PT buttons' names hold the text they show; flash messages stay a list inside a
status region; regions a poll replaces (warm runners, the executions table) are not
live regions, and a change worth hearing (an execution's new status, Try it's outcome)
is said in one short line instead; the confirmation dialog reads its body; the tabs
follow Home and End; stored English text (status messages, history, logs, a parser's
error) is marked lang="en" on the Portuguese pages; blocks that scroll are reached with
the keyboard and named; the Swagger pages name their language and label Swagger UI's
servers list; an invalid set-password link's title says so.
"""

from __future__ import annotations

import pytest
from django.utils import timezone

from executions.models import Execution
from models_app.models import MLModel, ModelEvent
from tests.helpers.browser import WatchedPages, give_session
from tests.helpers.cast import PASSWORD
from tests.helpers.monitors import deployed_model

pytestmark = [pytest.mark.browser]


@pytest.fixture
def opened(browser, live_server):
    """A function opening a Portuguese page; each fails the test if it throws or fetches
    from outside the portal."""
    pages = WatchedPages(browser, live_server)
    yield lambda: pages.open(locale="pt-BR", timezone_id="America/Sao_Paulo")
    pages.check()


def announced(page, text: str) -> None:
    """Wait until base.html's polite #announcer says `text`."""
    page.wait_for_function(
        "(text) => document.getElementById('announcer').textContent === text", arg=text, timeout=10_000
    )


def test_the_language_buttons_and_an_invalid_link_say_what_they_show(opened, live_server, cast):
    page = opened()
    page.goto(f"{live_server.url}/account/set-password/MQ/set-password/")
    assert page.get_attribute("html", "lang") == "pt-br"
    # WCAG 2.5.3: the name holds the visible text ("diga PT" works); the full name is a tooltip.
    switch = page.locator("#language-switch")
    assert switch.get_by_role("button", name="PT", exact=True).count() == 1
    assert switch.get_by_role("button", name="EN", exact=True).count() == 1
    assert switch.locator("button[value=pt-br]").get_attribute("title") == "Português Brasileiro"
    # The title says the page's state, as its heading does.
    assert page.inner_text("h1") == "Este link não funciona"
    assert page.title().startswith("Este link não funciona")


def test_a_sync_models_page_for_screen_readers_and_the_keyboard(opened, live_server, cast):
    model = deployed_model(cast.group, name="Churn scorer", status_message="Build finished; serving now.")
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.FAILED)
    ModelEvent.objects.create(model=model, action="build_failed", detail="pip: exit 1")
    page = opened()
    give_session(page, live_server, cast.owner)
    page.goto(f"{live_server.url}/models/{model.hash}/")

    # Stored text stays English, and says so.
    assert page.get_attribute("#status-message", "lang") == "en"
    assert page.locator("#history li span[lang=en]", has_text="pip: exit 1").count() == 1
    # The code blocks scroll: reached with Tab, named by their language.
    for lang, name in (("curl", "curl"), ("python", "Python"), ("javascript", "JavaScript")):
        block = page.locator(f"#code-{lang}-text")
        assert block.get_attribute("tabindex") == "0"
        title = block.get_attribute("aria-labelledby")
        assert title and page.locator(f"#{title}").text_content() == name
    # The tabs: Home and End as the WAI-ARIA pattern has them.
    page.focus("#code-curl-tab")
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.id") == "code-javascript-tab"
    assert page.get_attribute("#code-javascript-tab", "aria-selected") == "true"
    assert page.locator("#code-javascript").is_visible() and not page.locator("#code-curl").is_visible()
    page.keyboard.press("Home")
    assert page.evaluate("document.activeElement.id") == "code-curl-tab"
    assert page.get_attribute("#code-curl-tab", "aria-selected") == "true"

    # Deployed: the runners' box, replaced every 10 s, is not a live region.
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DEPLOYED, status_message="")
    page.reload()
    runners = page.locator("#runners")
    assert runners.get_attribute("aria-live") is None and runners.get_attribute("role") is None
    # Try it: the result (which can be a traceback) is not read whole; one line is.
    result = page.locator("#try-result")
    assert result.get_attribute("aria-live") is None and result.get_attribute("role") is None
    page.fill("#try-body", '{"a": ')
    page.click("#try-submit")
    page.wait_for_selector("#try-result .error")
    # The browser's JSON parser speaks English inside the Portuguese page.
    assert page.get_attribute("#try-result .error", "lang") == "en"
    announced(page, "O corpo da requisição não é um JSON válido")
    page.fill("#try-body", '{"a": ' + "[" * 1100 + "]" * 1100 + "}")  # JSON, but nested too deeply
    page.click("#try-submit")
    page.wait_for_selector("#try-error")
    announced(page, "A entrada foi recusada. (400)")


def test_an_async_models_executions_are_announced_as_they_change(opened, live_server, cast):
    batch = deployed_model(
        cast.group,
        name="Lote",
        operation=MLModel.Operation.ASYNC,
        input_type=MLModel.InputType.CSV,
        schema=None,
    )
    now = timezone.now()
    common = {"model": batch, "input_file": "entrada.csv", "input_size": 10, "requested_by": cast.owner}
    Execution.objects.create(
        number=1,
        status="Failed",
        error_message="ZeroDivisionError: division by zero",
        started_at=now,
        finished_at=now,
        log="12:00:01 Traceback (most recent call last)",
        **common,
    )
    Execution.objects.create(number=2, status="Requested", **common)
    page = opened()
    give_session(page, live_server, cast.owner)
    page.goto(f"{live_server.url}/models/{batch.hash}/")
    assert page.get_attribute("tr[data-execution='1'] .error", "lang") == "en"
    # The table is replaced on every poll: not a live region; the change is said once.
    assert page.locator("#executions [aria-live], #executions [role=status]").count() == 0
    Execution.objects.filter(model=batch, number=2).update(status="Running", started_at=now)
    # "Execução 2: Running" once djangojs.po has it: the state's name stays English.
    page.wait_for_function("() => /^\\S+ 2: Running$/.test(document.getElementById('announcer').textContent)")
    assert page.locator("tr[data-execution='1'] .error[lang=en]").count() == 1  # drawn by model.js

    page.goto(f"{live_server.url}/models/{batch.hash}/executions/1/")
    assert page.get_attribute("#execution-error", "lang") == "en"
    log = page.locator("#execution-log")
    assert log.get_attribute("tabindex") == "0" and log.get_attribute("aria-label") == "Log da execução"
    assert "Traceback" in page.inner_text("#execution-log span[lang=en]")
    # A running execution's log, as execution.js follows it, is marked the same way.
    page.goto(f"{live_server.url}/models/{batch.hash}/executions/2/")
    Execution.objects.filter(model=batch, number=2).update(log="12:00:02 loading the model")
    page.locator("#execution-log span[lang=en]", has_text="loading the model").wait_for()


def test_resetting_a_password_asks_first_and_the_dialog_reads_its_body(opened, live_server, cast):
    page = opened()
    give_session(page, live_server, cast.admin)
    page.goto(f"{live_server.url}/people/teammate/")
    page.click("#reset-form button[type=submit]")
    dialog = page.locator("dialog[open]")
    dialog.wait_for()
    assert dialog.get_attribute("aria-describedby") == "confirm-body"
    assert "teammate é desconectado" in page.inner_text("#confirm-body")  # the consequence
    page.click("dialog[open] button[value=cancel]")
    cast.teammate.refresh_from_db()
    assert cast.teammate.check_password(PASSWORD)  # nothing happened
    # The same dialog for a question without a body describes nothing.
    page.evaluate(
        "() => { const f = document.createElement('form'); f.dataset.confirm = 'Sure?';"
        " f.method = 'post'; document.querySelector('main').append(f); f.requestSubmit(); }"
    )
    page.locator("dialog[open]").wait_for()
    assert page.get_attribute("dialog[open]", "aria-describedby") is None
    page.click("dialog[open] button[value=cancel]")

    page.click("#reset-form button[type=submit]")
    page.click("dialog[open] .confirm-ok")
    page.wait_for_selector("#set-password-link")
    cast.teammate.refresh_from_db()
    assert not cast.teammate.check_password(PASSWORD)
    # The flash message: a list (its items read as such) inside a status region.
    messages = page.locator("[role=status] > ul.messages")
    assert messages.count() == 1 and messages.get_attribute("role") is None
    assert page.get_by_role("listitem").filter(has_text="teammate").count() >= 1


def test_the_swagger_pages_name_their_language_and_the_servers_list(opened, live_server, cast):
    model = deployed_model(cast.group, name="Churn scorer")
    page = opened()
    give_session(page, live_server, cast.owner)
    page.goto(f"{live_server.url}/api/docs/")
    assert page.get_attribute("html", "lang") == "en"  # the API speaks English
    page.goto(f"{live_server.url}/models/{model.hash}/docs/")
    assert page.get_attribute("html", "lang") == "pt-br"  # its bar is Portuguese...
    assert page.get_attribute("#swagger-ui", "lang") == "en"  # ...Swagger UI and the schema English
    page.locator("select#servers").wait_for()
    page.wait_for_function("() => document.querySelector('select#servers').getAttribute('aria-label')")
    assert page.get_by_role("combobox", name="Servers").count() == 1


def test_a_table_that_scrolls_sideways_takes_the_focus_and_is_named(opened, live_server, cast):
    for number in range(3):
        deployed_model(cast.group, name=f"Churn scorer with a rather long name {number}")
    page = opened()
    give_session(page, live_server, cast.owner)
    page.goto(f"{live_server.url}/models/")
    wrap = page.locator(".table-wrap").first
    # At a desktop's width the table fits: no extra tab stop.
    assert wrap.evaluate("w => w.scrollWidth <= w.clientWidth + 1")
    assert wrap.get_attribute("tabindex") is None
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: it scrolls sideways
    page.wait_for_function("() => document.querySelector('.table-wrap').tabIndex === 0")
    assert wrap.get_attribute("role") == "region"
    heading = wrap.get_attribute("aria-labelledby")
    assert page.locator(f"[id='{heading}']").inner_text().strip()
    wrap.focus()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('.table-wrap').scrollLeft > 0")
    page.set_viewport_size({"width": 1366, "height": 900})  # back to fitting: out of the tab order
    page.wait_for_function("() => !document.querySelector('.table-wrap').hasAttribute('tabindex')")
