import pytest
from django.core.exceptions import ImproperlyConfigured

from groups.envconf import envbool, envchoice, envint, envlist, envnetworks, envpath, envstr, private_folder


@pytest.mark.parametrize(
    "raw,expected",
    [("1", True), ("true", True), ("YES", True), ("on", True), ("0", False), ("false", False), ("", False)],
)
def test_envbool_reads_common_spellings(monkeypatch, raw, expected):
    monkeypatch.setenv("X_FLAG", raw)
    assert envbool("X_FLAG", default=not expected) is expected


def test_envbool_rejects_junk_naming_the_variable(monkeypatch):
    monkeypatch.setenv("X_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="X_FLAG='maybe' is not a boolean"):
        envbool("X_FLAG")


def test_envbool_default_when_unset(monkeypatch):
    monkeypatch.delenv("X_FLAG", raising=False)
    assert envbool("X_FLAG", True) is True


def test_envint_parses_and_bounds(monkeypatch):
    monkeypatch.setenv("X_NUM", "1_000")
    assert envint("X_NUM", 5) == 1000
    monkeypatch.setenv("X_NUM", "ten")
    with pytest.raises(ImproperlyConfigured, match="X_NUM='ten' is not a whole number"):
        envint("X_NUM", 5)
    monkeypatch.setenv("X_NUM", "0")
    with pytest.raises(ImproperlyConfigured, match="below the minimum of 1"):
        envint("X_NUM", 5, minimum=1)
    monkeypatch.setenv("X_NUM", "70000")
    with pytest.raises(ImproperlyConfigured, match="above the maximum of 65535"):
        envint("X_NUM", 5, maximum=65535)
    monkeypatch.delenv("X_NUM")
    assert envint("X_NUM", 5) == 5


def test_envlist_splits_and_strips(monkeypatch):
    monkeypatch.setenv("X_LIST", " a.example , b.example,, ")
    assert envlist("X_LIST") == ["a.example", "b.example"]
    monkeypatch.delenv("X_LIST")
    assert envlist("X_LIST", ["localhost"]) == ["localhost"]


def test_envstr_treats_empty_as_unset(monkeypatch):
    monkeypatch.setenv("X_STR", "  ")
    assert envstr("X_STR", "d") == "d"


def test_envchoice_answers_the_choice_as_written_and_refuses_others(monkeypatch):
    assert envchoice("X_LANG", "en", ["en", "pt-br"]) == "en"
    monkeypatch.setenv("X_LANG", "PT-BR")
    assert envchoice("X_LANG", "en", ["en", "pt-br"]) == "pt-br"
    monkeypatch.setenv("X_LANG", "fr")
    with pytest.raises(ImproperlyConfigured, match="X_LANG='fr' is not one of: en, pt-br"):
        envchoice("X_LANG", "en", ["en", "pt-br"])


def test_envpath_resolves_and_rejects_files(monkeypatch, tmp_path):
    monkeypatch.setenv("X_PATH", str(tmp_path / "data"))
    assert envpath("X_PATH", tmp_path) == (tmp_path / "data").resolve()
    file = tmp_path / "file"
    file.write_text("x")
    monkeypatch.setenv("X_PATH", str(file))
    with pytest.raises(ImproperlyConfigured, match="is not a directory"):
        envpath("X_PATH", tmp_path)


def test_envnetworks_normalises_addresses_and_networks(monkeypatch):
    monkeypatch.setenv("NETS", "127.0.0.1, 10.1.2.3/8 ,::1")
    assert envnetworks("NETS") == ["127.0.0.1/32", "10.0.0.0/8", "::1/128"]
    monkeypatch.delenv("NETS")
    assert envnetworks("NETS") == []


def test_envnetworks_fails_loudly_on_a_bad_value(monkeypatch):
    monkeypatch.setenv("NETS", "127.0.0.1,my-proxy")
    with pytest.raises(ImproperlyConfigured, match="NETS: 'my-proxy' is not an IP address or network"):
        envnetworks("NETS")


def test_envnetworks_default_and_none(monkeypatch):
    monkeypatch.delenv("NETS", raising=False)
    assert envnetworks("NETS", ["127.0.0.0/8", "::1"]) == ["127.0.0.0/8", "::1/128"]
    monkeypatch.setenv("NETS", "")
    assert envnetworks("NETS", ["127.0.0.0/8"]) == ["127.0.0.0/8"]
    monkeypatch.setenv("NETS", "None")
    assert envnetworks("NETS", ["127.0.0.0/8"]) == []


def test_a_private_folder_is_made_this_users_own(tmp_path):
    folder = private_folder(tmp_path / "run", "a test")
    assert folder.is_dir() and folder.stat().st_mode & 0o777 == 0o700
    assert private_folder(folder, "a test") == folder  # already there, and ours: fine


@pytest.mark.parametrize("made_by_someone_else", ["open", "link"])
def test_a_folder_someone_else_could_have_made_is_refused(tmp_path, made_by_someone_else):
    folder = tmp_path / "run"
    if made_by_someone_else == "open":
        folder.mkdir(mode=0o777)
        folder.chmod(0o777)  # what another user's folder would let them do: replace our sockets
    else:
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        folder.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ImproperlyConfigured, match="is not this user's private folder"):
        private_folder(folder, "a test")
