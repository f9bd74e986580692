"""Language and time zone of the pages (portal/i18n.py), server side.

Pages speak the browser's language (Accept-Language) or the switch's (Django's
set_language and its cookie); the API always answers in English with UTC times. Times
in pages are in the user's zone, named: the account page's choice, else the browser's
(the neomaril_tz cookie from common.js), else UTC.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client

from groups.models import Profile
from models_app.models import MLModel
from tests.helpers.cast import PASSWORD
from tests.helpers.monitors import deployed_model
from tests.helpers.uploads import file, sync_payload

PT = {"HTTP_ACCEPT_LANGUAGE": "pt-BR,pt;q=0.9,en;q=0.5"}
EN = {"HTTP_ACCEPT_LANGUAGE": "en-US,en;q=0.9"}
CREATED = datetime(2026, 12, 2, 17, 5, tzinfo=UTC)


def _login(user, **headers) -> Client:
    client = Client(**headers)
    assert client.login(username=user.username, password=PASSWORD)
    return client


@pytest.fixture
def model(cast) -> MLModel:
    model = deployed_model(cast.group, name="Churn scorer")
    MLModel.objects.filter(pk=model.pk).update(created_at=CREATED)
    return model


def _page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.content.decode()


# --- language ---------------------------------------------------------------------------


PAGES = {
    # url (formatted with the model's hash): (what Portuguese shows, what English shows)
    "/": ("Implantar um modelo", "Deploy a model"),
    "/models/": ("Os modelos dos seus grupos.", "The models of your groups."),
    "/models/{hash}/": ("Chame pelo código", "Call it from code"),
    "/models/new/": ("Arquivo do modelo", "Model file"),
}


@pytest.mark.parametrize("url", PAGES)
def test_pages_speak_the_browsers_language(cast, model, url):
    portuguese, english = PAGES[url]
    url = url.format(hash=model.hash)
    pt = _page(_login(cast.owner, **PT), url)
    assert '<html lang="pt-br"' in pt and portuguese in pt and english not in pt
    assert ">Painel</a>" in pt and ">Sair</button>" in pt  # the navigation too
    en = _page(_login(cast.owner, **EN), url)
    assert '<html lang="en"' in en and english in en and portuguese not in en
    # No Accept-Language at all: NEOMARIL_LANGUAGE's default, English.
    assert english in _page(_login(cast.owner), url)


def test_the_login_page_and_its_errors_in_portuguese(cast):
    page = _page(Client(**PT), "/login/")
    assert (
        '<h1 id="login-title">Entrar</h1>' in page and ">Usuário</label>" in page and ">Senha</label>" in page
    )
    wrong = Client(**PT).post("/login/", {"username": "owner", "password": "wrong"})
    assert "Por favor, entre com um usuário" in wrong.content.decode()  # Django's own catalog


def test_state_names_stay_as_the_api_says_them(cast, model):
    page = _page(_login(cast.owner, **PT), f"/models/{model.hash}/")
    assert 'id="model-status">Deployed</span>' in page
    assert "Implantado em" in page  # the label around it is translated


def test_the_switch_changes_the_language_and_keeps_it(cast):
    client = _login(cast.owner, **EN)
    page = _page(client, "/groups/")
    assert 'id="language-switch"' in page and 'value="pt-br"' in page and 'action="/i18n/setlang/"' in page
    switched = client.post("/i18n/setlang/", {"language": "pt-br", "next": "/groups/"})
    assert switched.status_code == 302 and switched["Location"] == "/groups/"
    assert client.cookies["django_language"].value == "pt-br"
    page = _page(client, "/groups/")  # the browser still asks for English: the switch wins
    assert "<h1>Grupos</h1>" in page and 'value="pt-br" lang="pt-br" title="Português' in page
    assert 'aria-current="true">PT</button>' in page
    client.post("/i18n/setlang/", {"language": "en", "next": "/groups/"})
    assert "<h1>Groups</h1>" in _page(client, "/groups/")


def test_messages_and_form_errors_follow_the_language(cast):
    client = _login(cast.owner, **PT)
    response = client.post("/account/tokens/", {"action": "revoke", "token_id": "not-a-uuid"})
    assert response.status_code == 404
    response = client.post("/logout/", follow=True)
    assert "Você saiu. Seus tokens de API continuam funcionando" in response.content.decode()
    admin = _login(cast.admin, **PT)
    response = admin.post("/people/", {"username": "owner", "email": ""})
    assert response.status_code == 400
    assert "Já existe um usuário chamado &#x27;owner&#x27;" in response.content.decode()


BAD_UPLOAD = {
    # field: (the file, what Portuguese says, what English says)
    "source": (
        file("app.py", "def score(data):\n    return data\n"),
        "score() deve aceitar exatamente dois argumentos posicionais",
        "score() in app.py (line 1) must accept exactly two positional arguments",
    ),
    "requirements": (
        file("requirements.txt", "-e ./mypkg\n"),
        "Linha 1: instalações editáveis (-e) não são suportadas",
        "Line 1: editable installs (-e) are not supported",
    ),
    "env": (
        file(".env", "PYTHONPATH=/tmp\n"),
        "Linha 1: a variável PYTHONPATH não pode ser definida no .env",
        "Line 1: PYTHONPATH cannot be set from .env",
    ),
    "schema": (
        file("schema.json", "[1, 2]"),
        "O schema de um modelo Sync",
        "The schema of a Sync model must be a JSON object",
    ),
}


def test_upload_checks_speak_the_pages_language_and_english_in_the_api(cast):
    """The upload checks build their messages in the request's language: the page's, or
    English for the API, from the same code."""
    payload = sync_payload(**{field: upload for field, (upload, _, _) in BAD_UPLOAD.items()})
    errors = _login(cast.owner, **PT).post("/models/new/", payload, HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    assert errors.status_code == 400
    for field, (_, portuguese, _) in BAD_UPLOAD.items():
        assert portuguese in " ".join(errors.json()["errors"][field]), field
    for upload, _, _ in BAD_UPLOAD.values():
        upload.seek(0)  # sent again, to the API
    api = _login(cast.owner, **PT).post("/api/v1/models", payload, **PT)
    assert api.status_code == 400
    for field, (_, _, english) in BAD_UPLOAD.items():
        assert english in " ".join(api.json()["errors"][field]), field


def test_an_unavailable_python_is_refused_in_the_pages_language(cast):
    payload = sync_payload(python_version="3.7")
    page = _login(cast.owner, **PT).post("/models/new/", payload, HTTP_X_REQUESTED_WITH="XMLHttpRequest")
    assert page.status_code == 400
    (message,) = page.json()["errors"]["python_version"]
    assert message.startswith("Escolha uma opção válida: Python 3.7 não está disponível neste servidor."), (
        message
    )
    assert "Disponíveis: 3." in message
    for upload in payload.values():
        if hasattr(upload, "seek"):
            upload.seek(0)
    api = _login(cast.owner, **PT).post("/api/v1/models", payload, **PT)
    assert (
        "Python 3.7 is not available on this host. Available: 3." in api.json()["errors"]["python_version"][0]
    )


def test_a_refused_action_speaks_the_pages_language(cast, model):
    client = _login(cast.owner, **PT)
    client.post(f"/models/{model.hash}/disable/", {"confirm": "yes"})
    response = client.post(f"/models/{model.hash}/disable/", {"confirm": "yes"}, follow=True)
    assert "Um modelo Disabled não pode ser desativado." in response.content.decode()


def test_the_api_answers_in_english_whatever_the_browser_asks(cast, model):
    client = _login(cast.owner, **PT)
    client.cookies["django_language"] = "pt-br"
    missing = client.get("/api/v1/models/Mnothere", **PT)
    assert missing.status_code == 404 and "Accept-Language" not in missing.get("Vary", "")
    assert missing.json()["code"] == "not_found" and "No " in missing.json()["detail"]
    invalid = _login(cast.admin, **PT).post("/api/v1/groups", {}, content_type="application/json", **PT)
    assert invalid.status_code == 400 and invalid.json()["errors"]["name"] == ["This field is required."]


def test_the_javascript_catalog_follows_the_language():
    pt = Client(**PT).get("/jsi18n/?l=pt-br")
    assert pt.status_code == 200 and "Copiado" in pt.content.decode() and "Enviando" in pt.content.decode()
    en = Client(**EN).get("/jsi18n/?l=en")
    assert "Copiado" not in en.content.decode()


# --- time zone -------------------------------------------------------------------------------


def test_times_are_utc_and_say_so_by_default(cast, model):
    page = _page(_login(cast.owner, **EN), f"/models/{model.hash}/")
    assert f'<time datetime="{CREATED.isoformat()}" title="UTC">2 Dec 2026 17:05 UTC</time>' in page
    assert 'data-time-zone="UTC"' in page


def test_the_browsers_zone_is_used_when_valid(cast, model):
    client = _login(cast.owner, **EN)
    client.cookies["neomaril_tz"] = "Asia/Tokyo"
    page = _page(client, f"/models/{model.hash}/")
    assert 'title="Asia/Tokyo">3 Dec 2026 02:05 JST</time>' in page
    client.cookies["neomaril_tz"] = "Mars/Olympus_Mons"  # not a zone: ignored
    assert "2 Dec 2026 17:05 UTC" in _page(client, f"/models/{model.hash}/")


def test_the_account_page_sets_the_zone_and_it_wins_over_the_browsers(cast, model):
    client = _login(cast.owner, **PT)
    client.cookies["neomaril_tz"] = "Asia/Tokyo"
    page = _page(client, "/account/")
    assert "Fuso horário" in page and "<strong>Asia/Tokyo</strong>" in page and "(o do seu navegador)" in page
    assert '<option value="America/Sao_Paulo">' in page  # the list to choose from
    saved = client.post("/account/", {"time_zone": "America/Sao_Paulo"}, follow=True)
    assert "Os horários agora são exibidos em America/Sao_Paulo." in saved.content.decode()
    assert Profile.objects.get(user=cast.owner).time_zone == "America/Sao_Paulo"
    page = _page(client, f"/models/{model.hash}/")
    assert 'title="America/Sao_Paulo">02/12/2026 14:05 UTC-03</time>' in page
    english = _login(cast.owner, **EN)
    assert 'title="America/Sao_Paulo">2 Dec 2026 14:05 UTC-03</time>' in _page(
        english, f"/models/{model.hash}/"
    )
    # Emptied: the browser's zone again.
    client.post("/account/", {"time_zone": ""})
    assert "3 Dec 2026 02:05 JST" in _page(client, f"/models/{model.hash}/").replace(
        "03/12/2026", "3 Dec 2026"
    )


def test_an_unknown_zone_is_refused_at_its_field(cast):
    response = _login(cast.owner, **EN).post("/account/", {"time_zone": "Mars/Olympus_Mons"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "“Mars/Olympus_Mons” is not a time zone. Choose one from the list" in page
    assert 'id="id_time_zone_error"' in page and 'aria-invalid="true"' in page
    assert not Profile.objects.filter(user=cast.owner).exists()
    pt = _login(cast.owner, **PT).post("/account/", {"time_zone": "Mars/Olympus_Mons"})
    assert "não é um fuso horário" in pt.content.decode()


def test_the_api_keeps_utc_whatever_the_users_zone(cast, model):
    Profile.objects.create(user=cast.owner, time_zone="America/Sao_Paulo")
    client = _login(cast.owner)
    client.cookies["neomaril_tz"] = "Asia/Tokyo"
    answer = client.get(f"/api/v1/models/{model.hash}").json()
    assert answer["created_at"] in ("2026-12-02T17:05:00Z", "2026-12-02T17:05:00+00:00")


def test_monitoring_periods_are_labelled_utc(cast):
    from tests.helpers.monitors import make_monitor, make_period, reference_run

    run = reference_run(cast.group)
    monitored = deployed_model(cast.group, run, name="Monitored")
    make_period(make_monitor(monitored, run), 1, psi=0.02, outputs=False)
    client = _login(cast.owner, **PT)
    client.cookies["neomaril_tz"] = "America/Sao_Paulo"  # the period's days stay UTC days
    page = _page(client, f"/models/{monitored.hash}/monitoring/")
    assert "Período (UTC)" in page and ">UTC</abbr>" in page


def test_the_account_page_needs_a_login_and_get_or_post(cast):
    assert Client().get("/account/").status_code == 302
    assert _login(cast.owner).put("/account/").status_code == 405


def test_the_group_forms_refusals_speak_portuguese(cast):
    """The name rule was a plain string, and a taken name Django's "Group com este Name já
    existe." (the model's and the field's names in English)."""
    client = _login(cast.admin, **PT)
    bad = client.post("/groups/", {"name": "Bad Name!", "description": ""})
    assert bad.status_code == 400
    assert bad.context["form"].errors["name"] == [
        "Nomes de grupo devem ter de 1 a 32 caracteres: letras minúsculas, dígitos, '-' e '_', "
        "começando com letra ou dígito."
    ]
    taken = client.post("/groups/", {"name": cast.group.name, "description": ""})
    assert taken.status_code == 400
    assert taken.context["form"].errors["name"] == ["Já existe um grupo com este nome: escolha outro nome."]


def test_days_are_written_the_languages_way(cast):
    from groups.models import GroupToken

    GroupToken.objects.filter(group=cast.group).update(
        expires_at=datetime(2027, 12, 4, 12, 0, tzinfo=UTC), created_at=CREATED
    )
    portuguese = _page(_login(cast.owner, **PT), "/groups/datarisk/")
    english = _page(_login(cast.owner, **EN), "/groups/datarisk/")
    assert "02/12/2026" in portuguese and "2026-12-02" not in portuguese  # issued
    assert "2 Dec 2026" in english and "2026-12-02" not in english
    listed = _page(_login(cast.owner, **PT), "/groups/")
    assert "04/12/2027" in listed and "2027-12-04" not in listed


def test_a_form_sent_without_its_csrf_token_gets_the_portals_page_in_its_language(cast):
    browser = Client(enforce_csrf_checks=True, **PT)
    assert browser.login(username="owner", password=PASSWORD)
    answer = browser.post("/account/", {"time_zone": "UTC"})
    page = answer.content.decode()
    assert answer.status_code == 403 and '<html lang="pt-br"' in page
    assert "Recarregue a página" in page and "Não permitido" in page


def test_a_share_links_state_is_in_the_pages_language(cast, model):
    from datetime import timedelta

    from models_app import share_links

    share_links.create(model, cast.admin, timedelta(days=1))
    page = _page(_login(cast.owner, **PT), f"/models/{model.hash}/")
    assert 'class="badge badge-active">ativo</span>' in page


def test_the_models_swagger_page_names_its_language(cast, model):
    page = _page(_login(cast.owner, **PT), f"/models/{model.hash}/docs/")
    assert page.count("<html") == 1 and '<html lang="pt-br">' in page


def test_a_log_says_its_times_are_utc_in_the_pages_language(cast, model):
    page = _page(_login(cast.owner, **PT), f"/models/{model.hash}/")
    assert "Os horários do log estão em UTC." in page


def test_counts_are_grouped_the_languages_way():
    from django.utils import translation

    from groups.templatetags.portal_ui import grouped

    with translation.override("pt-br"):
        assert grouped(3438) == "3.438"
    with translation.override("en"):
        assert grouped(1234567) == "1,234,567"
    assert grouped(None) == "—"
