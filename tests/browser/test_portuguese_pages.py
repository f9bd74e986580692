"""A Brazilian user sees no English on the portal's pages, in any state they can reach.

Each page is rendered twice, for an English browser and for a pt-BR one, and the
Portuguese rendering is compared with the English one: a piece of visible text (a text
node, or a title, aria-label, placeholder, alt, button value or confirmation dialog
text) that reads the same in both and holds an *English-only word* was left untranslated
(a template string outside {% translate %}, a Python message outside gettext, a script
string outside gettext(), a label Django derived from a field's name...). An English-only
word is one the English msgids of the catalogs (locale/pt_BR/LC_MESSAGES) use and their
Portuguese msgstrs never do ("added", "refused", "request"; not "Status", "Token" or
"Deployed", which the Portuguese pages use too).

What stays English by design is left out: the state names and enumerations (Deployed,
Queued, Sync, owner, stable, AutoML's option names...), user data and the stored text
(names, descriptions, status messages, logs, event details, error messages: written
once, in English, for every reader), code and technical identifiers (`max_replicas=2`,
`validation_auc`), and text marked as another language (the EN/PT switch). The Swagger
page (Swagger UI's own chrome, and the model's OpenAPI document, the API's) is not
checked. See docs/portal.md, "Language and time".

The GET pages are opened in a real Chromium (the scripts' strings included), as an
admin and as a group member; pages that answer a form (errors at their fields, refused
actions, flash messages, 400/403/404, the login lockout) through Django's test client,
each language's run rolled back before the other's.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import polib
import pytest
from django.db import transaction
from django.test import Client
from django.utils import timezone

from executions.models import Execution
from groups.models import Group, Membership
from models_app.models import MLModel, ModelBuild, ModelEvent
from monitors.display import DRIFT_STATUSES
from monitors.models import Monitor, Period, PeriodKind
from tests.helpers.cast import PASSWORD
from tests.helpers.monitors import deployed_model, form_data, make_monitor, make_period, reference_run
from tests.helpers.training import finished_run, make_experiment
from tests.helpers.uploads import file, sync_payload
from tests.training.test_pages import automl_files, automl_run  # noqa: F401  (automl_files: a fixture)
from training.automl import config as automl_config
from training.models import Experiment, TrainingRun

pytestmark = [pytest.mark.browser]

ROOT = Path(__file__).resolve().parents[2]
CATALOGS = [ROOT / "locale" / "pt_BR" / "LC_MESSAGES" / f"{domain}.po" for domain in ("django", "djangojs")]
ENGLISH, PORTUGUESE = "en-US", "pt-BR"


# --- what counts as English --------------------------------------------------------------


def _words(text: str) -> set[str]:
    return {word.lower() for word in re.findall(r"[A-Za-zÀ-ÿ]{3,}", text)}


def _english_only_words() -> set[str]:
    """Words of the English msgids that no Portuguese msgstr uses (placeholders, markup and
    code taken out of the msgids first)."""
    english, portuguese = set(), set()
    for path in CATALOGS:
        for entry in polib.pofile(str(path)):
            for msgid in (entry.msgid, entry.msgid_plural):
                english |= _words(re.sub(r"<code>.*?</code>|<[^>]+>|%\(\w+\)[sdfr]|%[sd]", " ", msgid or ""))
            for msgstr in (entry.msgstr, *entry.msgstr_plural.values()):
                portuguese |= _words(msgstr)
    return english - portuguese - _names_kept_in_english()


def _names_kept_in_english() -> set[str]:
    """State names and enumerations, as the API, the SDK and the docs write them."""
    choices = [
        MLModel.Status,
        MLModel.Operation,
        MLModel.InputType,
        ModelBuild.Status,
        Execution.Status,
        Monitor.Status,
        Period.Status,
        PeriodKind,
        TrainingRun.Status,
        TrainingRun.TrainingType,
        Experiment.ModelType,
        Membership.Role,
    ]
    names = {"queued", "active", "expired", "revoked", *DRIFT_STATUSES}  # Ready shows as Queued; share links
    for enumeration in choices:
        for value, label in enumeration.choices:
            names |= _words(f"{value} {label}")
    for stage, options in automl_config.STAGES.items():  # AutoML's conf.json vocabulary
        names |= _words(" ".join([stage, *options]))
    names |= _words(" ".join([*automl_config.METRICS, *automl_config.SPLIT_TYPES, *automl_config.FILE_TYPES]))
    return names


ENGLISH_ONLY = _english_only_words()
# A token holding one of these is an identifier, a path, a number or code: not prose.
TECHNICAL = re.compile(r"[_=/\\<>@#{}\[\]\d]|\w\.\w|\(\)")


def _stored_text() -> list[str]:
    """User data and stored text (English for every reader), longest first."""
    texts = [
        *MLModel.objects.values_list("name", flat=True),
        *MLModel.objects.values_list("status_message", flat=True),
        *ModelEvent.objects.values_list("detail", flat=True),
        *Execution.objects.values_list("error_message", flat=True),
        *Monitor.objects.values_list("error_message", flat=True),
        *Period.objects.values_list("error_message", flat=True),
        *TrainingRun.objects.values_list("name", flat=True),
        *TrainingRun.objects.values_list("error_message", flat=True),
        *Experiment.objects.values_list("name", flat=True),
        *Group.objects.values_list("name", flat=True),
        *Group.objects.values_list("description", flat=True),
    ]
    return sorted({text.strip() for text in texts if text and text.strip()}, key=len, reverse=True)


def english_left(portuguese: list[str], english: list[str], stored: list[str]) -> list[str]:
    """The pieces of the Portuguese rendering that read as in the English one and hold an
    English-only word once stored text and technical tokens are set aside."""
    same = set(english)
    left = []
    for piece in portuguese:
        if piece not in same:
            continue
        prose = piece
        for text in stored:
            prose = prose.replace(text, " ")
        tokens = [token.strip(".,;:!?…()\"'“”‘’«»·–—") for token in prose.split()]
        words = set().union(*(_words(token) for token in tokens if token and not TECHNICAL.search(token)))
        if words & ENGLISH_ONLY:
            left.append(piece)
    return left


# --- what a page shows ---------------------------------------------------------------------

SKIPPED = ("script", "style", "pre", "code", "textarea", "template")
ATTRIBUTES = (
    "title",
    "aria-label",
    "placeholder",
    "alt",
    "data-confirm",
    "data-confirm-body",
    "data-confirm-button",
)

# Visible text and the attributes people read, in the browser (scripts' text included).
COLLECT = """([skipped, attributes]) => {
  const pageLang = document.documentElement.lang;
  const ignored = (element) => {
    for (let e = element; e; e = e.parentElement) {
      if (skipped.includes(e.tagName.toLowerCase())) return true;
      if (e !== document.documentElement && e.lang && e.lang !== pageLang) return true;
    }
    return false;
  };
  const out = [];
  const walker = document.createTreeWalker(document.documentElement, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    const text = node.textContent.replace(/\\s+/g, " ").trim();
    if (text && !ignored(node.parentElement)) out.push(text);
  }
  for (const element of document.querySelectorAll("*")) {
    if (ignored(element)) continue;
    const names = [...attributes];
    if (element.matches("input[type=submit], input[type=button]")) names.push("value");
    for (const name of names) {
      const value = (element.getAttribute(name) || "").replace(/\\s+/g, " ").trim();
      if (value) out.push(value);
    }
  }
  return out;
}"""


class _Visible(HTMLParser):
    """The same pieces from an HTML answer (no scripts run)."""

    VOID = {
        "area",
        "base",
        "br",
        "col",
        "embed",
        "hr",
        "img",
        "input",
        "link",
        "meta",
        "source",
        "track",
        "wbr",
    }

    def __init__(self):
        super().__init__()
        self.pieces: list[str] = []
        self.open: list[tuple[str, bool]] = []  # (tag, ignored)
        self.page_lang = ""

    def handle_starttag(self, tag, attrs):
        values = dict(attrs)
        if tag == "html":
            self.page_lang = values.get("lang") or ""
        lang = values.get("lang")
        ignored = (
            (bool(self.open) and self.open[-1][1])
            or tag in SKIPPED
            or (tag != "html" and lang is not None and lang != self.page_lang)
        )
        if not ignored:
            names = [
                *ATTRIBUTES,
                *(["value"] if tag == "input" and values.get("type") in ("submit", "button") else []),
            ]
            self.pieces += [re.sub(r"\s+", " ", values[name]).strip() for name in names if values.get(name)]
        if tag not in self.VOID:
            self.open.append((tag, ignored))

    def handle_endtag(self, tag):
        while self.open:
            if self.open.pop()[0] == tag:
                break

    def handle_data(self, data):
        text = re.sub(r"\s+", " ", data).strip()
        if text and not (self.open and self.open[-1][1]):
            self.pieces.append(text)


def visible(html: str) -> list[str]:
    parser = _Visible()
    parser.feed(html)
    return [piece for piece in parser.pieces if piece]


# --- the portal in every state --------------------------------------------------------------


def _client(user=None, language: str = PORTUGUESE) -> Client:
    client = Client(HTTP_ACCEPT_LANGUAGE=language)
    if user is not None:
        assert client.login(username=user.username, password=PASSWORD)
    return client


def _upload(client: Client, **overrides) -> MLModel:
    response = client.post("/models/new/", sync_payload(**overrides))
    assert response.status_code == 302, response.content[:2000]
    return MLModel.objects.get(hash=response["Location"].split("/")[2])


def _version_payload(source: str) -> dict:
    payload = sync_payload(source=file("app_v2.py", source))
    for inherited in ("name", "group", "operation"):
        payload.pop(inherited)
    return payload


@pytest.fixture
def portal(cast, automl_files):  # noqa: F811  (the fixture imported above)
    """Models, executions, monitoring and training runs in their end states, failures included."""
    owner = _client(cast.owner, ENGLISH)
    now = timezone.now()
    live = _upload(owner, name="Modelo de churn")
    MLModel.objects.filter(pk=live.pk).update(status=MLModel.Status.DEPLOYED, deployed_at=now)
    response = owner.post(
        f"/models/{live.hash}/versions/new/", _version_payload("def score(data, base_path):\n    return 2\n")
    )
    assert response.status_code == 302, response.content[:2000]
    MLModel.objects.filter(line=live, version=2).update(
        status=MLModel.Status.FAILED, status_message="pip: exit 1"
    )
    broken = _upload(owner, name="Modelo quebrado")
    MLModel.objects.filter(pk=broken.pk).update(
        status=MLModel.Status.FAILED, status_message="ZeroDivisionError"
    )
    ModelBuild.objects.filter(model=broken).update(
        status=ModelBuild.Status.FAILED, log="12:00:01 uv\n12:00:05 erro"
    )
    batch = _upload(
        owner,
        name="Modelo em lote",
        operation="Async",
        schema=None,
        source=file("app.py", "def score(data_path, model_path):\n    return data_path\n"),
    )
    MLModel.objects.filter(pk=batch.pk).update(status=MLModel.Status.DEPLOYED)
    common = {"model": batch, "input_file": "entrada.csv", "input_size": 10, "requested_by": cast.owner}
    Execution.objects.create(
        number=1,
        status="Failed",
        error_message="ZeroDivisionError",
        started_at=now,
        finished_at=now,
        **common,
    )
    Execution.objects.create(
        number=2,
        status="Succeeded",
        output_file="saida.csv",
        output_size=20,
        started_at=now,
        finished_at=now,
        **common,
    )
    Execution.objects.create(number=3, status="Requested", **common)
    run = reference_run(cast.group)
    monitor = make_monitor(live, run, cast.owner)
    make_period(monitor, 1, psi=0.02, outputs=False)
    make_period(monitor, 2, drift_status="drift", psi=0.42, outputs=False)
    make_period(monitor, 3, drift_status="insufficient", psi=None, outputs=False)
    make_period(monitor, 4, status=Period.Status.FAILED, error_message="KeyError: 'idade'")
    invalid = deployed_model(cast.group, name="Monitor inválido")
    make_monitor(
        invalid, run, cast.owner, status=Monitor.Status.INVALIDATED, error_message="ValueError: 'idade'"
    )
    experiment = make_experiment(cast.group, cast.owner, name="Churn")
    finished_run(experiment, number=1)
    finished_run(experiment, number=2, status="Failed", metrics={}, error_message="KeyError: 'alvo'")
    finished_run(experiment, number=3, status="Requested", metrics={})
    automl_run(experiment, number=4)
    finished_run(experiment, number=5, training_type="External", metrics={"auc": 0.91})
    return {"live": live, "broken": broken, "batch": batch, "invalid": invalid, "experiment": experiment}


def _pages(portal) -> tuple[list[str], list[str]]:
    """(every page an admin opens, the ones a member opens)."""
    live, broken, batch, invalid = (portal[key].hash for key in ("live", "broken", "batch", "invalid"))
    experiment = portal["experiment"].hash
    member = [
        "/",
        "/models/",
        "/models/?status=Failed",
        "/models/new/",
        f"/models/{live}/",
        f"/models/{broken}/",
        f"/models/{batch}/",
        f"/models/{invalid}/",
        f"/models/{live}/versions/new/",
        f"/models/{live}/versions/1/",
        f"/models/{live}/versions/2/",
        f"/models/{batch}/executions/1/",
        f"/models/{batch}/executions/2/",
        f"/models/{batch}/executions/3/",
        f"/models/{live}/monitoring/",
        f"/models/{invalid}/monitoring/",
        f"/models/{batch}/monitoring/",
        "/training/",
        f"/training/{experiment}/",
        f"/training/{experiment}/runs/new/",
        *[f"/training/{experiment}/runs/{number}/" for number in range(1, 6)],
        "/groups/",
        "/groups/datarisk/",
        "/account/",
        "/account/tokens/",
        "/people/",  # 403 for a member
        "/nowhere/",
    ]
    admin = [*member, "/people/teammate/", f"/models/{live}/versions/99/"]
    return admin, member


def test_no_english_on_the_pages_in_the_browser(browser, live_server, cast, portal):
    admin_pages, member_pages = _pages(portal)
    found: dict[str, list[str]] = {}
    for user, pages in ((cast.admin, admin_pages), (cast.teammate, member_pages)):
        session = _client(user).cookies["sessionid"].value
        seen = {}
        for language in (ENGLISH, PORTUGUESE):
            context = browser.new_context(locale=language, timezone_id="America/Sao_Paulo")
            context.add_cookies([{"name": "sessionid", "value": session, "url": live_server.url}])
            page = context.new_page()
            page.set_default_timeout(20_000)
            errors = []
            page.on("pageerror", lambda error, errors=errors: errors.append(str(error)))
            for path in ["/login/", *pages] if user == cast.admin else pages:
                if path == "/login/":
                    anonymous = browser.new_context(locale=language)
                    login = anonymous.new_page()
                    login.goto(f"{live_server.url}/login/")
                    seen[(language, path)] = login.evaluate(COLLECT, [list(SKIPPED), list(ATTRIBUTES)])
                    anonymous.close()
                    continue
                page.goto(f"{live_server.url}{path}")
                page.wait_for_timeout(400)  # the scripts' first fetches (statuses, executions, charts)
                seen[(language, path)] = page.evaluate(COLLECT, [list(SKIPPED), list(ATTRIBUTES)])
            assert (
                page.evaluate("document.documentElement.lang")
                == {ENGLISH: "en", PORTUGUESE: "pt-br"}[language]
            )
            context.close()
            assert errors == [], f"JavaScript errors: {errors}"
        stored = _stored_text()
        for path in ["/login/", *pages] if user == cast.admin else pages:
            left = english_left(seen[(PORTUGUESE, path)], seen[(ENGLISH, path)], stored)
            if left:
                found[f"{user.username} {path}"] = left
    assert found == {}, f"English on Portuguese pages: {found}"


def _answers(cast, live: MLModel, language: str) -> tuple[dict[str, list[str]], set[str]]:
    """What the forms, the refused actions and the error pages answer, in one language, and
    the stored text they could show (a status message is replaced by the next action)."""
    anonymous, owner = _client(None, language), _client(cast.owner, language)
    admin, member = _client(cast.admin, language), _client(cast.teammate, language)
    answers, stored = {}, set()

    def record(name: str, response) -> None:
        answers[name] = visible(response.content.decode())
        stored.update(_stored_text())

    record("login refused", anonymous.post("/login/", {"username": "owner", "password": "wrong"}))
    record("400", anonymous.post("/login/", {f"field{i}": "x" for i in range(1200)}))
    record("403", member.get("/people/"))
    record("404", owner.get("/models/Mnothing/"))
    record("shared docs, unknown key", anonymous.get("/shared/docs/nothing-here/"))
    broken = sync_payload(
        source=file("app.py", "def score(x):\n  pass\n"),
        requirements=file("requirements.txt", "-e ./x\n"),
        model=None,
    )
    record("upload errors", owner.post("/models/new/", broken))
    record(
        "version upload errors",
        owner.post(f"/models/{live.hash}/versions/new/", _version_payload("def score(x):\n  pass\n")),
    )
    record(
        "serving settings errors",
        owner.post(f"/models/{live.hash}/settings/", {"min_replicas": "-1", "max_replicas": "x"}),
    )
    record("disable, asked", owner.post(f"/models/{live.hash}/disable/"))
    record("disable, done", owner.post(f"/models/{live.hash}/disable/", {"confirm": "yes"}, follow=True))
    record("disable, refused", owner.post(f"/models/{live.hash}/disable/", {"confirm": "yes"}, follow=True))
    record("restart, done", owner.post(f"/models/{live.hash}/restart/", {"confirm": "yes"}, follow=True))
    record("share link", owner.post(f"/models/{live.hash}/share-links/", {"expires_in": "3600"}, follow=True))
    record(
        "share link refused",
        member.post(f"/models/{live.hash}/share-links/", {"expires_in": "3600"}, follow=True),
    )
    response = owner.post(
        f"/models/{live.hash}/versions/new/", _version_payload("def score(data, base_path):\n    return 2\n")
    )
    MLModel.objects.filter(line=live, version=2).update(status=MLModel.Status.DEPLOYED)
    record("version, asked", owner.post(f"/models/{live.hash}/versions/2/live/"))
    record(
        "version live", owner.post(f"/models/{live.hash}/versions/2/live/", {"confirm": "yes"}, follow=True)
    )
    record("model history", owner.get(f"/models/{live.hash}/"))
    unmonitored = deployed_model(cast.group, name="Sem monitor")
    data, files = form_data("{not json")
    record(
        "monitoring errors", owner.post(f"/models/{unmonitored.hash}/monitoring/register/", {**data, **files})
    )
    record(
        "monitoring not registered",
        owner.post(f"/models/{unmonitored.hash}/monitoring/settings/", {}, follow=True),
    )
    make_monitor(
        unmonitored,
        reference_run(cast.group),
        cast.owner,
        status=Monitor.Status.INVALIDATED,
        error_message="x",
    )
    record(
        "period of an invalidated monitoring",
        owner.post(f"/models/{unmonitored.hash}/monitoring/periods/", {"date": "2026-05-01"}, follow=True),
    )
    record(
        "monitoring settings errors",
        owner.post(
            f"/models/{unmonitored.hash}/monitoring/settings/",
            {"warning_threshold": "x", "minimum_rows": "y"},
        ),
    )
    record("experiment errors", owner.post("/training/", {}))
    experiment = make_experiment(cast.group, cast.owner, name="Experimento")
    record(
        "run errors",
        owner.post(f"/training/{experiment.hash}/runs/new/", {"run_name": "", "training_type": "External"}),
    )
    finished_run(experiment, number=1)
    record("promotion errors", owner.post(f"/training/{experiment.hash}/runs/1/promote/", {}))
    record("group errors", admin.post("/groups/", {"name": "datarisk"}))
    record(
        "member errors",
        owner.post("/groups/datarisk/", {"action": "add-member", "member-username": "ninguem"}),
    )
    record(
        "last owner",
        owner.post("/groups/datarisk/", {"action": "remove-member", "username": "owner"}, follow=True),
    )
    record("token kept", owner.post("/groups/datarisk/", {"action": "refresh-token"}, follow=True))
    record("time zone errors", owner.post("/account/", {"time_zone": "Mars/Olympus_Mons"}))
    record("API token", owner.post("/account/tokens/", {"name": "notebook"}, follow=True))
    record("person errors", admin.post("/people/", {"username": "owner", "email": "x"}))
    record("person reset", admin.post("/people/teammate/", {"action": "reset"}, follow=True))
    record("set-password link, invalid", anonymous.get("/account/set-password/MQ/bad-token/", follow=True))
    record("logged out", owner.post("/logout/", follow=True))
    locked = _client(None, language)
    for _attempt in range(12):
        response = locked.post("/login/", {"username": "owner", "password": "wrong"})
    record("locked out", response)
    return answers, stored


def test_no_english_in_what_the_forms_and_error_pages_answer(cast, settings):
    live = _upload(_client(cast.owner, ENGLISH), name="Modelo de churn")
    MLModel.objects.filter(pk=live.pk).update(status=MLModel.Status.DEPLOYED)
    answers, stored = {}, {}
    for language in (ENGLISH, PORTUGUESE):
        with transaction.atomic():  # each language from the same start
            answers[language], stored[language] = _answers(cast, live, language)
            transaction.set_rollback(True)
    assert answers[PORTUGUESE]["logged out"] != answers[ENGLISH]["logged out"]  # the languages did differ
    found, stored_text = {}, sorted(stored[PORTUGUESE] | stored[ENGLISH], key=len, reverse=True)
    for name, portuguese in answers[PORTUGUESE].items():
        left = english_left(portuguese, answers[ENGLISH][name], stored_text)
        if left:
            found[name] = left
    assert found == {}, f"English on Portuguese pages: {found}"


@pytest.mark.parametrize(
    ("portuguese", "english", "left"),
    [
        (["Enviar", "Version added:"], ["Upload", "Version added:"], ["Version added:"]),
        (["Bad Request (400)"], ["Bad Request (400)"], ["Bad Request (400)"]),
        (["Status", "Deployed", "Token"], ["Status", "Deployed", "Token"], []),  # the same in Portuguese
        (["max_replicas=2", "validation_auc"], ["max_replicas=2", "validation_auc"], []),  # identifiers
        (["Modelo quebrado", "stable"], ["Modelo quebrado", "stable"], []),  # user data, a drift status
    ],
)
def test_the_comparison_tells_english_left_behind(portuguese, english, left):
    assert english_left(portuguese, english, ["Modelo quebrado"]) == left
