"""Language and time in a real headless Chromium against Django's live server.

A Brazilian analyst's browser (pt-BR, America/Sao_Paulo) gets the portal in Portuguese
from the first page on, and the times in São Paulo's zone, named: the login page's script
tells the server the browser's zone. The EN/PT switch in the top bar changes the language
of every page after it; the scripts' strings (the JavaScript catalog) follow. An English
browser in Tokyo gets English and JST. Nothing is fetched from outside the portal, no
script fails, and the switch fits a 390 px phone. Screenshots: test-artifacts/screenshots/.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from models_app.models import MLModel
from tests.helpers.browser import file_payload, screenshot, submit_broken_upload
from tests.helpers.cast import PASSWORD
from tests.helpers.monitors import deployed_model

pytestmark = [pytest.mark.browser]

CREATED = datetime(2026, 12, 2, 17, 5, tzinfo=UTC)


@pytest.fixture
def model(cast) -> MLModel:
    model = deployed_model(cast.group, name="Churn scorer")
    MLModel.objects.filter(pk=model.pk).update(created_at=CREATED)
    return model


@pytest.fixture
def opened(browser, live_server):
    """A function opening a page in a browser of the given locale, zone and width; each page
    is checked for offsite requests and script errors at the end."""
    contexts = []

    def open_page(locale: str, timezone_id: str, width: int = 1366):
        context = browser.new_context(
            locale=locale, timezone_id=timezone_id, viewport={"width": width, "height": 900}
        )
        page = context.new_page()
        page.set_default_timeout(20_000)
        requests, errors = [], []
        page.on("request", lambda request: requests.append(request.url))
        page.on("pageerror", lambda error: errors.append(str(error)))
        contexts.append((context, requests, errors))
        return page

    yield open_page
    for context, requests, errors in contexts:
        context.close()
        offsite = [url for url in requests if not url.startswith((live_server.url, "data:", "blob:"))]
        assert offsite == [], f"the page fetched from outside the portal: {offsite}"
        assert errors == [], f"JavaScript errors: {errors}"


def log_in(page, live_server, username: str) -> None:
    page.goto(f"{live_server.url}/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", PASSWORD)
    page.click("form[action='/login/'] button[type=submit]")
    page.wait_for_url(f"{live_server.url}/")


def test_a_brazilian_browser_gets_portuguese_and_sao_paulo_time(opened, live_server, cast, model):
    page = opened("pt-BR", "America/Sao_Paulo")
    page.goto(f"{live_server.url}/login/")
    assert page.inner_text("#login-title") == "Entrar"
    assert page.get_attribute("html", "lang") == "pt-br"
    log_in(page, live_server, "owner")
    assert page.inner_text("h1") == "Olá, owner"
    assert page.inner_text(".mainnav a[aria-current=page]") == "Painel"
    assert page.locator("#language-switch button[aria-current=true]").inner_text() == "PT"
    screenshot(page, "i18n-dashboard-pt")

    # The upload page: its labels, and what its script writes, in Portuguese.
    page.goto(f"{live_server.url}/models/new/")
    assert page.inner_text("label[for=id_model]").startswith("Arquivo do modelo")
    assert page.inner_text("label[for=id_python_version]").startswith("Versão do Python")
    assert page.inner_text("#upload-submit") == "Enviar e construir"
    assert page.inner_text("#id_input_type option[value='']") == "Padrão: json"  # upload.js, via /jsi18n/
    page.check("#id_operation_1")  # Async
    assert page.inner_text("#id_input_type option[value='']") == "Padrão: csv"
    # The checks' messages too, next to their fields.
    page.check("#id_operation_0")  # Sync
    submit_broken_upload(page, "Quebrado")
    assert "deve aceitar exatamente dois argumentos posicionais" in page.inner_text("[data-field=source]")
    assert "instalações editáveis (-e) não são suportadas" in page.inner_text("[data-field=requirements]")
    assert "Envie o arquivo do modelo" in page.inner_text("[data-field=model]")
    screenshot(page, "i18n-upload-pt")

    # Times in the browser's zone, the zone named; the state's name as the API says it.
    page.goto(f"{live_server.url}/models/{model.hash}/")
    created = page.locator("#details time").first
    assert created.inner_text() == "02/12/2026 14:05 UTC-03"
    assert created.get_attribute("title") == "America/Sao_Paulo"
    assert page.inner_text("#model-status") == "Deployed"
    assert page.evaluate("formatTime('2026-12-02T17:05:00Z')") == "02/12/2026 14:05 UTC-03"  # common.js

    # The switch: English from now on, the page it was on.
    page.click("#language-switch button[value=en]")
    page.wait_for_load_state()
    assert page.url == f"{live_server.url}/models/{model.hash}/"
    assert page.get_attribute("html", "lang") == "en"
    assert page.inner_text("#details time >> nth=0") == "2 Dec 2026 14:05 UTC-03"
    page.goto(f"{live_server.url}/")
    assert page.inner_text(".mainnav a[aria-current=page]") == "Dashboard"
    assert page.evaluate("gettext('Copied')") == "Copied"
    page.click("#language-switch button[value=pt-br]")
    page.wait_for_load_state()
    assert page.inner_text(".mainnav a[aria-current=page]") == "Painel"
    assert page.evaluate("gettext('Copied')") == "Copiado"


def test_an_english_browser_in_tokyo_and_a_chosen_zone(opened, live_server, cast, model):
    page = opened("en-US", "Asia/Tokyo")
    log_in(page, live_server, "owner")
    assert page.inner_text(".mainnav a[aria-current=page]") == "Dashboard"
    page.goto(f"{live_server.url}/models/")
    assert "3 Dec 2026 02:05 JST" in page.inner_text("table")

    # The account page: a zone chosen there wins over the browser's.
    page.click(".userbox .who")
    page.wait_for_url(f"{live_server.url}/account/")
    assert "Asia/Tokyo" in page.inner_text("#zone-now") and "(your browser's)" in page.inner_text("#zone-now")
    page.fill("#id_time_zone", "Mars/Olympus_Mons")
    page.click("#time-zone-form button[type=submit]")
    assert "is not a time zone" in page.inner_text("#id_time_zone_error")
    page.fill("#id_time_zone", "America/Sao_Paulo")
    page.click("#time-zone-form button[type=submit]")
    page.wait_for_selector(".messages")
    assert "America/Sao_Paulo" in page.inner_text("#zone-now") and "(your choice)" in page.inner_text(
        "#zone-now"
    )
    page.goto(f"{live_server.url}/models/{model.hash}/")
    assert page.inner_text("#details time >> nth=0") == "2 Dec 2026 14:05 UTC-03"
    screenshot(page, "i18n-model-en-sao-paulo")


def test_the_switch_fits_a_phone(opened, live_server, cast):
    cast.owner.is_staff = True  # the longest navigation
    cast.owner.save()
    page = opened("pt-BR", "America/Sao_Paulo", width=390)
    log_in(page, live_server, "owner")
    switch = page.locator("#language-switch").bounding_box()
    assert switch["x"] + switch["width"] <= 390 and switch["height"] < 44
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, width  # nothing in the top bar pushes the page sideways
    bar = page.locator(".topbar").bounding_box()
    assert bar["height"] < 140, bar  # brand + account + switch on one line, the navigation on the next
    screenshot(page, "i18n-topbar-390px")


def test_the_scripts_write_numbers_the_pages_way(opened, live_server, cast):
    # formatNumber (common.js) writes what model.js, upload_form.js and monitoring.js show.
    for locale, expected in (("pt-BR", ["16,7", "1.234", "0,012"]), ("en-US", ["16.7", "1,234", "0.012"])):
        page = opened(locale, "UTC")
        log_in(page, live_server, "owner")
        if locale == "en-US":
            page.click("#language-switch button:has-text('EN')")
            page.wait_for_load_state()
        shown = page.evaluate("[formatNumber(16.73, 1), formatNumber(1234), formatNumber(0.0123, 3)]")
        assert shown == expected, locale


def test_the_apis_problems_are_named_in_the_pages_language(opened, live_server, cast, model):
    """The API answers in English; Try it and the execution form name the problem from its
    `code` in the page's language (common.js apiProblem) and show the API's own message,
    marked as English."""
    page = opened("pt-BR", "America/Sao_Paulo")
    log_in(page, live_server, "owner")
    page.goto(f"{live_server.url}/models/{model.hash}/")
    page.fill("#try-body", '{"a": ' + "[" * 1100 + "]" * 1100 + "}")  # JSON, but nested too deeply
    page.click("#try-submit")
    page.wait_for_selector("#try-error")
    assert page.inner_text("#try-problem") == "A entrada foi recusada."
    assert "nested too deeply" in page.inner_text("#try-error")
    assert page.get_attribute("#try-error", "lang") == "en"

    batch = deployed_model(
        cast.group,
        name="Lote",
        operation=MLModel.Operation.ASYNC,
        input_type=MLModel.InputType.CSV,
        schema=None,
    )
    page.goto(f"{live_server.url}/models/{batch.hash}/")
    page.set_input_files("#execution-file", files=[file_payload("entrada.csv", "a,b\n1,2\n")])
    MLModel.objects.filter(pk=batch.pk).update(
        status=MLModel.Status.DISABLED
    )  # after the page showed the form
    page.click("#execution-submit")
    page.wait_for_selector("#execution-problem")
    assert page.inner_text("#execution-problem") == "O modelo não está implantado neste momento."
    assert "Disabled" in page.inner_text("#run-execution .msg-error [lang=en]")
