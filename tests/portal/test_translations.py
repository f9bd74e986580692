"""The Brazilian Portuguese catalogs (locale/pt_BR/LC_MESSAGES) are complete and compiled.

A developer who marks a new string for translation and forgets the catalog gets a
failing test: makemessages run on a copy of the tree must find no msgid that the
committed .po lacks, every entry must be translated (no fuzzy, no empty msgstr), and the
committed .mo (what the portal reads; msgfmt is not needed at run time) must hold exactly
the .po's translations. `make messages` regenerates and compiles both catalogs.
"""

from __future__ import annotations

import gettext
import shutil
from pathlib import Path

import polib
import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]
LOCALE = ROOT / "locale" / "pt_BR" / "LC_MESSAGES"
DOMAINS = ("django", "djangojs")
# What makemessages must not read (the Makefile's `messages` target ignores the same).
NOT_SOURCES = [".venv", "var", "sdk", "tests", "test-artifacts", "bench", "deploy", "static/vendor", "locale"]


def _key(entry: polib.POEntry) -> str:
    return f"{entry.msgctxt}\x04{entry.msgid}" if entry.msgctxt else entry.msgid


def _catalog(domain: str) -> polib.POFile:
    return polib.pofile(str(LOCALE / f"{domain}.po"))


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_entry_is_translated(domain):
    po = _catalog(domain)
    assert len(po) > (500 if domain == "django" else 50)  # the pages' strings are there
    untranslated = [_key(e) for e in po.untranslated_entries()]
    fuzzy = [_key(e) for e in po.fuzzy_entries()]
    obsolete = [_key(e) for e in po.obsolete_entries()]
    assert untranslated == [], f"untranslated in {domain}.po: {untranslated}"
    assert fuzzy == [], f"fuzzy in {domain}.po (check and unflag them): {fuzzy}"
    assert obsolete == [], f"obsolete in {domain}.po (makemessages --no-obsolete): {obsolete}"
    assert not po.metadata_is_fuzzy  # a fuzzy header is left out of the .mo, and its plural rule with it
    assert po.metadata["Plural-Forms"] == "nplurals=2; plural=(n > 1);"


@pytest.mark.parametrize("domain", DOMAINS)
def test_the_committed_mo_holds_the_po(domain):
    po = _catalog(domain)
    with open(LOCALE / f"{domain}.mo", "rb") as handle:
        mo = gettext.GNUTranslations(handle)
    expected = {}
    for entry in po.translated_entries():
        if entry.msgid_plural:
            for index, text in entry.msgstr_plural.items():
                expected[(_key(entry), int(index))] = text
        else:
            expected[_key(entry)] = entry.msgstr
    compiled = {key: value for key, value in mo._catalog.items() if key != ""}  # "" is the header
    assert compiled == expected, f"locale/pt_BR/LC_MESSAGES/{domain}.mo is stale: run `make messages`"
    assert mo.ngettext("x", "xs", 2) == "xs" and mo.info()["plural-forms"] == "nplurals=2; plural=(n > 1);"


def test_makemessages_finds_nothing_the_catalogs_lack(tmp_path, settings, monkeypatch):
    """Every string marked in the code is in the committed catalogs (run on a copy of the tree)."""
    if shutil.which("xgettext") is None:
        pytest.fail(
            "xgettext is missing: apt-get install gettext (only the tests and `make messages` need it)"
        )
    copy = tmp_path / "tree"
    shutil.copytree(
        ROOT,
        copy,
        ignore=shutil.ignore_patterns(
            ".git", ".venv", "var", "test-artifacts", "tests", "sdk", "docs", "vendor", "__pycache__", "*.mo"
        ),
    )
    # In this process (no second Django start): makemessages reads the working directory
    # and writes to LOCALE_PATHS, both the copy's.
    monkeypatch.chdir(copy)
    settings.LOCALE_PATHS = [copy / "locale"]
    for domain in DOMAINS:
        call_command(
            "makemessages",
            domain=domain,
            locale=["pt_BR"],
            no_obsolete=True,
            ignore_patterns=NOT_SOURCES,
            verbosity=0,
        )
        found = {_key(e) for e in polib.pofile(str(copy / "locale/pt_BR/LC_MESSAGES" / f"{domain}.po"))}
        known = {_key(e) for e in _catalog(domain)}
        assert found - known == set(), f"marked but not in {domain}.po (run `make messages`, then translate)"
        assert known - found == set(), f"in {domain}.po but no longer marked anywhere (run `make messages`)"
