"""Interpreter discovery on this host (CI runs on the same kind of machine) and version lookup."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest

from models_app import interpreters
from models_app.interpreters import Interpreter, InterpreterNotFound, discover_interpreters, find_interpreter


@pytest.fixture(autouse=True)
def fresh_cache():
    interpreters.clear_cache()
    yield
    interpreters.clear_cache()


@pytest.fixture(scope="module")
def host_interpreters() -> list[Interpreter]:
    interpreters.clear_cache()
    return discover_interpreters()


def fake_python(folder: Path, name: str, output: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / name
    script.write_text(f"#!/bin/sh\necho '{output}'\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def test_host_excludes_old_pythons_and_shims(host_interpreters):
    for interpreter in host_interpreters:
        assert interpreter.version_tuple >= (3, 8, 0)
        assert "shims" not in interpreter.path.parts
        assert interpreter.path.is_absolute()
        assert interpreter.path == interpreter.path.resolve()
        assert interpreter.path.read_bytes()[:4] == b"\x7fELF"  # a real binary, not a wrapper script


def test_discovery_is_cached_until_cleared(monkeypatch):
    fake = [Interpreter("3.9.18", Path("/x/python3.9"))]
    calls = []
    monkeypatch.setattr(interpreters, "_discover", lambda *args: calls.append(args) or fake)
    assert discover_interpreters() == fake
    assert discover_interpreters() == fake
    assert len(calls) == 1
    discover_interpreters(["/elsewhere"])  # other arguments are another cache entry
    assert len(calls) == 2
    interpreters.clear_cache()
    discover_interpreters()
    assert len(calls) == 3


def test_discovery_cache_expires_after_a_minute(monkeypatch):
    clock = [1000.0]
    calls = []
    monkeypatch.setattr(interpreters, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    monkeypatch.setattr(interpreters, "_discover", lambda *args: calls.append(args) or [])
    discover_interpreters()
    clock[0] += interpreters.CACHE_SECONDS - 1
    discover_interpreters()
    assert len(calls) == 1
    clock[0] += 2
    discover_interpreters()
    assert len(calls) == 2


def test_find_by_minor_and_by_full_version(host_interpreters):
    by_minor = find_interpreter("3.9", host_interpreters)
    assert by_minor.minor == "3.9"
    assert by_minor.version.startswith("3.9.")
    assert find_interpreter(by_minor.version, host_interpreters) == by_minor
    assert find_interpreter(" 3.09 ", host_interpreters) == by_minor


def test_not_found_lists_available_versions(host_interpreters):
    with pytest.raises(InterpreterNotFound) as info:
        find_interpreter("3.7", host_interpreters)
    assert str(info.value) == (
        "Python 3.7 is not available on this host. Available: 3.8, 3.9, 3.10, 3.11, 3.12, 3.13."
    )


def test_wrong_patch_version_points_to_the_minor():
    known = [Interpreter("3.9.18", Path("/x/python3.9")), Interpreter("3.10.13", Path("/x/python3.10"))]
    with pytest.raises(InterpreterNotFound) as info:
        find_interpreter("3.9.1", known)
    assert "Python 3.9.1 is not available" in str(info.value)
    assert "it has 3.9.18; ask for 3.9" in str(info.value)
    assert "Available: 3.9, 3.10." in str(info.value)


@pytest.mark.parametrize("junk", ["3.9.x", "3", "three", "", "3.9.18.1", "python3.9", "3.9-dev"])
def test_junk_version_message(junk):
    known = [Interpreter("3.9.18", Path("/x/python3.9"))]
    with pytest.raises(InterpreterNotFound) as info:
        find_interpreter(junk, known)
    assert str(info.value).startswith("python_version must look like 3.9")
    assert repr(junk) in str(info.value)


def test_no_interpreters_at_all_says_so():
    with pytest.raises(InterpreterNotFound, match="no CPython 3.8\\+ interpreter was found"):
        find_interpreter("3.9", [])


def test_minor_property():
    assert Interpreter("3.10.13", Path("/x")).minor == "3.10"


def test_extra_dirs_fake_interpreters(tmp_path, monkeypatch):
    # Only the fake folder is searched: empty PATH, empty pyenv root, and no uv.
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setattr(interpreters, "_from_uv", lambda uv_bin: [])

    fake_python(tmp_path / "bin", "python3.20", "3.20.1")  # prefix/bin layout
    fake_python(tmp_path / "bin", "python3.21", "3.21.0 PyPy")  # not CPython
    fake_python(tmp_path / "bin", "python3.7", "3.7.16")  # too old
    fake_python(tmp_path / "other", "python3", "3.20.4")  # newer patch of the same minor wins
    fake_python(tmp_path / "other", "python", "not a version")  # garbage output
    fake_python(tmp_path / "other", "python3.19", "3.19.0 CPython")
    broken = fake_python(tmp_path / "other", "python3.18", "3.18.0")
    broken.write_text("#!/bin/sh\nexit 3\n")
    (tmp_path / "other" / "python3.17").write_text("not executable")
    single = fake_python(tmp_path / "single", "mypython", "3.22.0")

    found = discover_interpreters([tmp_path, str(tmp_path / "other"), single])
    assert [(i.version, i.path.name) for i in found] == [
        ("3.19.0", "python3.19"),
        ("3.20.4", "python3"),
        ("3.22.0", "mypython"),
    ]


def test_shim_scripts_are_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", f"{tmp_path / 'shims'}{os.pathsep}{tmp_path / 'bin'}")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setattr(interpreters, "_from_uv", lambda uv_bin: [])
    fake_python(tmp_path / "shims", "python3.9", "3.9.99")  # in a shims folder
    wrapper = fake_python(tmp_path / "bin", "python3.9", "3.9.98")
    wrapper.write_text('#!/usr/bin/env bash\nexec "/root/.pyenv/libexec/pyenv" exec "$0"\necho 3.9.98\n')
    assert discover_interpreters() == []


def test_uv_failure_is_tolerated(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path))
    fake_uv = fake_python(tmp_path, "uv", "this is not json")
    fake_python(tmp_path / "py", "python3.12", "3.12.5")
    found = discover_interpreters([tmp_path / "py"], uv_bin=str(fake_uv))
    assert [i.version for i in found] == ["3.12.5"]
    interpreters.clear_cache()
    found = discover_interpreters([tmp_path / "py"], uv_bin=str(tmp_path / "missing-uv"))
    assert [i.version for i in found] == ["3.12.5"]


def test_uv_is_not_shown_the_shim_folders(tmp_path, monkeypatch):
    # uv runs every python* it finds on PATH: a pyenv shim starts pyenv each time (2 s on
    # a host with one shim per version); the shims' interpreters come from PYENV_ROOT anyway.
    shims, bin_ = tmp_path / "pyenv" / "shims", tmp_path / "bin"
    monkeypatch.setenv("PATH", f"{shims}{os.pathsep}{bin_}")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    fake_uv = fake_python(tmp_path, "uv", "[]")
    fake_uv.write_text(f'#!/bin/sh\necho "$PATH" > {tmp_path / "uv-path"}\necho "[]"\n')
    assert discover_interpreters(uv_bin=str(fake_uv)) == []
    assert (tmp_path / "uv-path").read_text().strip() == str(bin_)


def test_each_interpreter_is_run_once_until_its_file_changes(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setattr(interpreters, "_from_uv", lambda uv_bin: [])
    runs = tmp_path / "runs"
    python = fake_python(tmp_path / "py", "python3.12", "")
    python.write_text(f"#!/bin/sh\necho run >> {runs}\necho 3.12.5\n")
    for _ in range(3):  # three discoveries, as when the one-minute cache expires
        interpreters._cache.clear()
        assert [i.version for i in discover_interpreters([python])] == ["3.12.5"]
    assert runs.read_text().count("run") == 1
    python.write_text(f"#!/bin/sh\necho run >> {runs}\necho 3.12.6 CPython\n")  # upgraded in place
    os.utime(python, ns=(0, python.stat().st_mtime_ns + 1_000_000_000))
    interpreters._cache.clear()
    assert [i.version for i in discover_interpreters([python])] == ["3.12.6"]
    assert runs.read_text().count("run") == 2


def test_a_failed_probe_is_tried_again(tmp_path, monkeypatch):
    # A probe that timed out on a busy machine must not hide the interpreter for good.
    monkeypatch.setenv("PATH", "")
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setattr(interpreters, "_from_uv", lambda uv_bin: [])
    python = fake_python(tmp_path / "py", "python3.12", "3.12.5")
    answers = iter([None, "3.12.5"])
    monkeypatch.setattr(interpreters, "_probe_version", lambda path: next(answers))
    assert discover_interpreters([python]) == []
    interpreters._cache.clear()
    assert [i.version for i in discover_interpreters([python])] == ["3.12.5"]
