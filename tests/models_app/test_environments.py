"""Real uv builds of content-addressed environments (needs PyPI and a Python 3.9 on the host; a missing 3.9 fails)."""

from __future__ import annotations

import functools
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import psutil
import pytest
from django.utils import translation

from models_app import environments
from models_app.environments import (
    MARKER_NAME,
    EnvironmentBuildError,
    ensure_environment,
    env_python,
    environment_path,
)
from models_app.interpreters import Interpreter
from models_app.validation.requirements import requirements_fingerprint
from tests.helpers.interpreters import supported_interpreter

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def py39() -> Interpreter:
    return supported_interpreter("3.9")


class Log(list):
    """Collects log lines; call it like the `log` callable."""

    def __call__(self, line: str) -> None:
        self.append(line)


def leftovers(envs_dir: Path) -> list[str]:
    return sorted(p.name for p in envs_dir.iterdir()) if envs_dir.exists() else []


def test_build_then_reuse(tmp_path, py39, monkeypatch):
    envs = tmp_path / "envs"
    log = Log()
    env = ensure_environment(
        interpreter=py39, requirements=["six==1.16.0", "packaging==24.0"], envs_dir=envs, log=log, timeout=300
    )

    fingerprint = requirements_fingerprint(py39.version, ["six==1.16.0", "packaging==24.0"])
    assert env == environment_path(envs, fingerprint) == envs / fingerprint
    assert leftovers(envs) == [fingerprint]  # no lock file, no temp folder
    marker = json.loads((env / MARKER_NAME).read_text())
    assert marker["python_version"] == py39.version
    assert marker["requirements"] == ["packaging==24.0", "six==1.16.0"]
    assert marker["fingerprint"] == fingerprint
    assert marker["created"]
    assert any(line.startswith(f"Building environment {fingerprint[:12]}") for line in log)
    assert any("six==1.16.0" in line for line in log)  # uv's output was streamed
    # Bytecode compiled at build time (before anything imported the packages): the
    # sandbox mounts the environment read-only, where an import could not cache it.
    tag = f"cpython-{py39.version.replace('.', '')[:2]}"
    site = next(env.glob("lib/python3.9/site-packages"))
    assert (site / "packaging" / "__pycache__" / f"version.{tag}.pyc").is_file()
    assert (site / "__pycache__" / f"six.{tag}.pyc").is_file()

    out = subprocess.run(
        [
            str(env_python(env)),
            "-c",
            "import sys, six, packaging; print('%d.%d' % sys.version_info[:2], six.__version__)",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.split() == ["3.9", "1.16.0"]

    # Same set in another order: reused without running uv.
    monkeypatch.setattr(environments, "_run_uv", lambda *a, **k: pytest.fail("uv must not run"))
    again = Log()
    assert (
        ensure_environment(
            interpreter=py39,
            requirements=["packaging==24.0", "six==1.16.0"],
            envs_dir=envs,
            log=again,
            timeout=300,
        )
        == env
    )
    assert again == [f"Reusing environment {fingerprint[:12]} (python {py39.version}, 2 requirements)"]


def test_empty_requirements_builds_bare_env(tmp_path, py39):
    env = ensure_environment(interpreter=py39, requirements=[], envs_dir=tmp_path, log=Log(), timeout=120)
    assert env_python(env).exists()
    assert json.loads((env / MARKER_NAME).read_text())["requirements"] == []


def test_missing_package_fails_cleanly(tmp_path, py39):
    envs = tmp_path / "envs"
    log = Log()
    with pytest.raises(EnvironmentBuildError) as info:
        ensure_environment(
            interpreter=py39,
            requirements=["six==1.16.0", "neomaril-no-such-package-xyz==1.0"],
            envs_dir=envs,
            log=log,
            timeout=300,
        )
    message = str(info.value)
    assert message.startswith("Installing the requirements failed (uv exit status")
    assert "neomaril-no-such-package-xyz" in message
    assert leftovers(envs) == []  # neither the final folder, a .tmp-* folder nor the lock
    assert any("neomaril-no-such-package-xyz" in line for line in log)


def test_concurrent_builds_of_the_same_env_build_once(tmp_path, py39):
    envs = tmp_path / "envs"
    logs = [Log(), Log()]
    results: list[Path | BaseException] = [None, None]  # type: ignore[list-item]
    start = threading.Barrier(2)

    def build(n: int) -> None:
        start.wait()
        try:
            results[n] = ensure_environment(
                interpreter=py39, requirements=["six==1.16.0"], envs_dir=envs, log=logs[n], timeout=300
            )
        except BaseException as exc:  # surfaced by the assertions below
            results[n] = exc

    threads = [threading.Thread(target=build, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)

    assert results[0] == results[1]
    assert isinstance(results[0], Path)
    builds = [log for log in logs if any(line.startswith("Building environment") for line in log)]
    reuses = [log for log in logs if any(line.startswith("Reusing environment") for line in log)]
    assert len(builds) == 1
    assert len(reuses) == 1
    assert leftovers(envs) == [results[0].name]


@pytest.fixture
def silent_index():
    """An "index" that accepts connections and never answers, so uv hangs until killed."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/simple"
    server.close()


def test_timeout_kills_the_build_and_cleans_up(tmp_path, py39, silent_index):
    envs = tmp_path / "envs"
    with pytest.raises(EnvironmentBuildError, match="timed out after 1.5 s"):
        ensure_environment(
            interpreter=py39,
            requirements=[f"--index-url {silent_index}", "six==1.16.0"],
            envs_dir=envs,
            log=Log(),
            timeout=1.5,
            uv_cache_dir=tmp_path / "uv-cache",  # a cold cache: uv must ask the index
            allow_options=True,
        )
    assert leftovers(envs) == []


def test_tiny_timeout_with_real_package(tmp_path, py39):
    envs = tmp_path / "envs"
    with pytest.raises(EnvironmentBuildError, match="timed out"):
        ensure_environment(
            interpreter=py39,
            requirements=["six==1.16.0"],
            envs_dir=envs,
            log=Log(),
            timeout=0.05,
            uv_cache_dir=tmp_path / "uv-cache",
        )
    assert leftovers(envs) == []


def test_stale_temp_folders_are_removed_and_incomplete_env_rebuilt(tmp_path, py39):
    envs = tmp_path / "envs"
    fingerprint = requirements_fingerprint(py39.version, [])
    stale = envs / f".tmp-{fingerprint}-dead"
    fresh = envs / ".tmp-otherbuild-alive"
    stale.mkdir(parents=True)
    fresh.mkdir()
    os.utime(stale, (0, 0))
    half_made = envs / fingerprint
    half_made.mkdir()
    (half_made / "junk").write_text("from a crashed build")

    env = ensure_environment(interpreter=py39, requirements=[], envs_dir=envs, log=Log(), timeout=120)
    assert leftovers(envs) == sorted([fingerprint, fresh.name])
    assert not (env / "junk").exists()
    assert (env / MARKER_NAME).is_file()


def test_a_finished_environment_built_with_another_nodes_interpreter_is_left_alone(tmp_path, py39):
    """Environments live in the shared data folder; their bin/python links to the building
    node's interpreter. A node whose Python sits elsewhere must not remove it (the other
    node's runners run from it) and rebuild it for itself (breaking it for that node)."""
    envs = tmp_path / "envs"
    env = ensure_environment(interpreter=py39, requirements=[], envs_dir=envs, log=Log(), timeout=120)
    link = env_python(env)
    link.unlink()
    link.symlink_to("/opt/another-node/python3.9")  # node A's path, which this node lacks
    with pytest.raises(EnvironmentBuildError) as raised:
        ensure_environment(interpreter=py39, requirements=[], envs_dir=envs, log=Log(), timeout=120)
    message = str(raised.value)
    assert (
        "was built with the Python at /opt/another-node/python3.9, which this node does not have" in message
    )
    assert f"its Python {py39.version} is {py39.path}" in message and "docs/deployment.md" in message
    assert os.readlink(link) == "/opt/another-node/python3.9" and (env / MARKER_NAME).is_file()


@pytest.mark.parametrize(
    ("lines", "allow_options"),
    [
        (["--index-url https://mirror.example/simple"], False),
        (["-e ."], True),
        (["six\n-r other.txt"], False),
    ],
)
def test_unvalidated_requirements_are_refused_before_uv_runs(
    tmp_path, py39, monkeypatch, lines, allow_options
):
    monkeypatch.setattr(environments, "_run_uv", lambda *a, **k: pytest.fail("uv must not run"))
    # In English for the build log, whatever language is active (a worker's NEOMARIL_LANGUAGE).
    with (
        translation.override("pt-br"),
        pytest.raises(EnvironmentBuildError, match=r"Refusing to build from these requirements: Line \d"),
    ):
        ensure_environment(
            interpreter=py39,
            requirements=lines,
            envs_dir=tmp_path,
            log=Log(),
            timeout=60,
            allow_options=allow_options,
        )
    assert leftovers(tmp_path) == []


def test_environment_path_refuses_non_fingerprints(tmp_path):
    with pytest.raises(ValueError):
        environment_path(tmp_path, "../etc")


def test_uv_environment_drops_platform_secrets(monkeypatch):
    monkeypatch.setenv("NEOMARIL_ENCRYPTION_KEY", "k")
    monkeypatch.setenv("SECRET_KEY", "s")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@h/db")
    monkeypatch.setenv("REDIS_URL", "redis://h")
    monkeypatch.setenv("UV_INDEX_URL", "https://mirror.example/simple")
    env = environments._uv_environment()
    assert not {"NEOMARIL_ENCRYPTION_KEY", "SECRET_KEY", "DATABASE_URL", "REDIS_URL"} & env.keys()
    assert env["UV_INDEX_URL"] == "https://mirror.example/simple"  # operators' uv settings still apply
    assert env["UV_NO_PROGRESS"] == "1"


def test_uv_dies_with_a_killed_worker(tmp_path):
    """A worker killed with -9 mid-build leaves no uv (or build backend) behind."""
    marker = "61.777"
    script = (
        "import django, time; django.setup(); from pathlib import Path; "
        "from models_app import environments; "
        f"environments._run_uv(['sleep', '{marker}'], step='x', cwd=Path('.'), "
        "deadline=time.monotonic() + 60, timeout=60, log=print)"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script],
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings"},
    )
    try:
        deadline = time.monotonic() + 30
        while not _processes_with(["sleep", marker]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _processes_with(["sleep", marker]), "the fake uv never started"
        worker.kill()
        worker.wait(10)
        deadline = time.monotonic() + 5
        while _processes_with(["sleep", marker]) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _processes_with(["sleep", marker]), "uv outlived its worker"
    finally:
        worker.kill()
        for proc in _processes_with(["sleep", marker]):
            proc.kill()


def _processes_with(cmdline: list[str]) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        if proc.info["cmdline"] == cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(proc)
    return found


def test_a_source_package_is_not_built_unless_an_admin_allows_it(tmp_path, py39):
    """Building runs the package's own setup code in the worker, outside the sandbox."""
    envs = tmp_path / "envs"
    log = Log()
    with pytest.raises(EnvironmentBuildError) as refused:
        ensure_environment(
            interpreter=py39, requirements=["docopt==0.6.2"], envs_dir=envs, log=log, timeout=300
        )  # docopt 0.6.2 is published as a source package only
    assert "Only prebuilt packages (wheels) are installed" in str(refused.value)
    assert "NEOMARIL_ALLOW_SOURCE_BUILDS" in log[-1]
    assert [name for name in leftovers(envs) if not name.endswith(".lock")] == []
    env = ensure_environment(
        interpreter=py39,
        requirements=["docopt==0.6.2"],
        envs_dir=envs,
        log=Log(),
        timeout=300,
        allow_source_builds=True,
    )
    assert json.loads((env / MARKER_NAME).read_text())["allow_source_builds"] is True
    subprocess.run([str(env_python(env)), "-c", "import docopt"], check=True)


# A wheel anyone may publish: its `.pth` start-up hook runs wherever the environment's
# interpreter starts with site on. It records the uid and command line that ran it.
HOOK_WHEEL = "pthhook-0.1-py3-none-any.whl"
HOOK_PTH = (
    "import os, sys; open(os.path.join({folder!r}, 'ran-%d' % os.getpid()), 'w')"
    ".write('uid=%d %r' % (os.getuid(), sys.argv))\n"
)


def _hook_wheel(folder: Path, marks: Path) -> None:
    files = {
        "pthhook/__init__.py": "VALUE = 1\n",
        "pthhook_start.pth": HOOK_PTH.format(folder=str(marks)),
        "pthhook-0.1.dist-info/METADATA": "Metadata-Version: 2.1\nName: PthHook\nVersion: 0.1\n",
        "pthhook-0.1.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: hand\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = "".join(f"{name},,\n" for name in files) + "pthhook-0.1.dist-info/RECORD,,\n"
    with zipfile.ZipFile(folder / HOOK_WHEEL, "w") as wheel:
        for name, text in {**files, "pthhook-0.1.dist-info/RECORD": record}.items():
            wheel.writestr(name, text)


@pytest.fixture
def hook_index(tmp_path):
    """A loopback "find links" page offering the hook's wheel; yields (its URL, the marks' folder)."""
    wheels, marks = tmp_path / "wheels", tmp_path / "marks"
    wheels.mkdir()
    marks.mkdir()
    _hook_wheel(wheels, marks)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(wheels))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/", marks
    server.shutdown()
    server.server_close()


def test_a_packages_start_up_hook_never_runs_outside_the_sandbox(tmp_path, py39, hook_index):
    """uv's --compile-bytecode started the new environment's interpreter, and `uv pip freeze`
    may: both ran the `.pth` files a wheel installed, as the worker (root), with the data
    folder in reach. The build compiles with site off, and freeze reads the metadata."""
    url, marks = hook_index
    env = ensure_environment(
        interpreter=py39,
        requirements=["--no-index", f"--find-links {url}", "pthhook==0.1"],
        envs_dir=tmp_path / "envs",
        log=Log(),
        timeout=300,
        uv_cache_dir=tmp_path / "uv-cache",
        allow_options=True,
    )
    assert environments.freeze(env) == "pthhook==0.1\n"
    assert sorted(marks.iterdir()) == []
    site = next(env.glob("lib/python3.9/site-packages"))
    assert (site / "pthhook" / "__pycache__" / "__init__.cpython-39.pyc").is_file()  # still compiled
    # The hook is live: the environment's interpreter started as usual (in the sandbox) runs it.
    subprocess.run([str(env_python(env)), "-c", "import pthhook"], check=True)
    assert len(list(marks.iterdir())) == 1


def test_freeze_names_direct_references_as_uv_does(tmp_path, py39, hook_index):
    """A wheel installed from its URL (NEOMARIL_ALLOW_REQUIREMENT_OPTIONS) is `name @ url`."""
    url, _ = hook_index
    env = ensure_environment(
        interpreter=py39,
        requirements=[f"pthhook @ {url}{HOOK_WHEEL}"],
        envs_dir=tmp_path / "envs",
        log=Log(),
        timeout=300,
        uv_cache_dir=tmp_path / "uv-cache",
        allow_options=True,
    )
    assert environments.freeze(env) == f"pthhook @ {url}{HOOK_WHEEL}\n"
