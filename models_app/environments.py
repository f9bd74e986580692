"""Content-addressed virtualenvs for models, built with uv.

An environment is identified by the fingerprint of (full Python version, requirement
set), so every model with the same pair shares one folder `envs_dir/<fingerprint>`.
Builds happen in a temporary folder and are renamed into place only once complete
(the marker file is written last), so a crashed or failed build never leaves a
half-made environment where another model could pick it up. A per-fingerprint file
lock makes concurrent builds of the same environment wait for each other instead of
racing, across processes and across hosts sharing the disk (where flock works).
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import fcntl
import importlib.metadata
import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

from django.utils import translation

from .interpreters import Interpreter
from .validation.requirements import UploadError, parse_requirements, requirements_fingerprint

MARKER_NAME = ".neomaril-env-complete"
REQUIREMENTS_NAME = "neomaril-requirements.txt"
_FINGERPRINT_RE = re.compile(r"^[0-9a-f]{64}$")
# Platform secrets that package build scripts (setup.py runs arbitrary code) must not see.
_SCRUBBED_PREFIXES = ("NEOMARIL_", "SECRET_KEY", "DATABASE_URL", "REDIS_URL")
_ERROR_LINES = 20


class EnvironmentBuildError(Exception):
    """Building an environment failed; the message says why (uv's key lines, timeout, ...)."""


def environment_path(envs_dir: Path, fingerprint: str) -> Path:
    """The folder of the environment with this fingerprint (it may not exist yet)."""
    # The fingerprint becomes a path component: insist on our own sha256 hex format.
    if not _FINGERPRINT_RE.match(fingerprint):
        raise ValueError(f"not an environment fingerprint: {fingerprint!r}")
    return Path(envs_dir) / fingerprint


def env_python(env_path: Path) -> Path:
    """The interpreter to run inside an environment."""
    return Path(env_path) / "bin" / "python"


def is_complete(env_path: Path) -> bool:
    """True when the environment finished building and its interpreter is still there."""
    # exists() follows the venv's symlink to the base interpreter, so an environment
    # whose base Python was removed from the host counts as incomplete.
    return (env_path / MARKER_NAME).is_file() and env_python(env_path).exists()


def _missing_interpreter(final: Path, interpreter: Interpreter) -> str:
    try:
        built_with = os.readlink(env_python(final))
    except OSError:
        built_with = "an interpreter that is gone"
    return (
        f"Environment {final.name[:12]} was built with the Python at {built_with}, which this node "
        f"does not have (its Python {interpreter.version} is {interpreter.path}). Every node that "
        "shares the data folder needs each model interpreter at the same path (docs/deployment.md). "
        f"If no node uses that path any more, remove {final} and build again."
    )


def ensure_environment(
    *,
    interpreter: Interpreter,
    requirements: list[str],
    envs_dir: Path,
    log: Callable[[str], None],
    timeout: float,
    uv_cache_dir: Path | None = None,
    allow_options: bool = False,
    allow_source_builds: bool = False,
) -> Path:
    """Return the folder of a complete environment for this interpreter and requirements.

    Reuses an existing one, waits for a concurrent build of the same one, or builds it
    with uv, streaming every line of uv's output to `log`. `timeout` bounds the build
    (and, separately, the wait for another process's build). `requirements` must come
    from `validation.parse_requirements` (with the same `allow_options`), which is what
    makes them safe to hand to uv; they are re-checked here. Raises EnvironmentBuildError,
    leaving nothing behind.

    Without `allow_source_builds` only wheels are installed: building a source package
    runs its own setup code, here in the worker, outside the sandbox, with the worker's
    access to the data folder (NEOMARIL_ALLOW_SOURCE_BUILDS is an admin's choice).
    """
    envs_dir = Path(envs_dir)
    # Defence in depth: these lines go to uv verbatim, so re-check them even though the
    # caller should have produced them with parse_requirements (they may come from the DB).
    try:
        with translation.override("en"):  # for the build log, which every reader shares
            parse_requirements("\n".join(requirements), allow_options=allow_options)
    except UploadError as exc:
        raise EnvironmentBuildError(f"Refusing to build from these requirements: {exc.message}") from exc
    fingerprint = requirements_fingerprint(interpreter.version, requirements)
    final = environment_path(envs_dir, fingerprint)
    summary = f"{fingerprint[:12]} (python {interpreter.version}, {_count(len(set(requirements)))})"

    if is_complete(final):
        log(f"Reusing environment {summary}")
        return final

    try:
        envs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EnvironmentBuildError(f"Cannot create the environments folder {envs_dir}: {exc}") from exc

    with _exclusive_lock(envs_dir / f"{fingerprint}.lock", timeout=timeout, log=log):
        # Someone else may have finished this environment while we waited for the lock.
        if is_complete(final):
            log(f"Reusing environment {summary}")
            return final
        if (final / MARKER_NAME).is_file():
            # Finished, but its interpreter is not here: nodes sharing the data folder run it
            # from there, so it is not this node's to remove (docs/deployment.md).
            raise EnvironmentBuildError(_missing_interpreter(final, interpreter))
        if final.exists():
            # Never finished (no marker): a crashed build's remains. Rebuild it.
            log(f"Removing incomplete environment {fingerprint[:12]}")
            shutil.rmtree(final, ignore_errors=True)
        _remove_stale_temp_folders(envs_dir, older_than=timeout + 60)
        log(f"Building environment {summary}")
        _build(
            interpreter=interpreter,
            requirements=requirements,
            envs_dir=envs_dir,
            fingerprint=fingerprint,
            final=final,
            log=log,
            timeout=timeout,
            uv_cache_dir=uv_cache_dir,
            allow_options=allow_options,
            allow_source_builds=allow_source_builds,
        )
    log(f"Environment {fingerprint[:12]} is ready")
    return final


def _count(n: int) -> str:
    return f"{n} requirement" + ("" if n == 1 else "s")


def _build(
    *,
    interpreter: Interpreter,
    requirements: list[str],
    envs_dir: Path,
    fingerprint: str,
    final: Path,
    log: Callable[[str], None],
    timeout: float,
    uv_cache_dir: Path | None,
    allow_options: bool,
    allow_source_builds: bool,
) -> None:
    deadline = time.monotonic() + timeout
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{fingerprint}-", dir=envs_dir))
    tmp.chmod(0o755)  # read (never written) by the sandboxed model processes' own uids
    try:
        uv = _uv_bin()
        common = ["--no-config", "--no-progress"]
        if uv_cache_dir is not None:
            common += ["--cache-dir", str(uv_cache_dir)]
        # --relocatable: the venv is created in the temp folder and then renamed.
        # --no-python-downloads: use exactly the interpreter we were given, never fetch one.
        # --no-project: whatever pyproject.toml surrounds the worker's cwd is not ours to obey.
        venv_cmd = [uv, "venv", *common, "--no-project", "--relocatable", "--no-python-downloads"]
        _run_uv(
            [*venv_cmd, "--python", str(interpreter.path), str(tmp)],
            step="Creating the virtualenv",
            cwd=tmp,
            deadline=deadline,
            timeout=timeout,
            log=log,
        )
        if requirements:
            requirements_file = tmp / REQUIREMENTS_NAME
            requirements_file.write_text("\n".join(requirements) + "\n", encoding="utf-8")
            _run_uv(
                [
                    uv,
                    "pip",
                    "install",
                    *common,
                    # Not --compile-bytecode: uv compiles with the new environment's own
                    # interpreter, whose start-up runs the `.pth` files the wheels installed,
                    # as the worker, outside the sandbox (_compile_bytecode below).
                    *([] if allow_source_builds else ["--no-build"]),
                    "--python",
                    str(env_python(tmp)),
                    "-r",
                    str(requirements_file),
                ],
                step="Installing the requirements",
                hint=None if allow_source_builds else _wheels_only_hint(interpreter),
                cwd=tmp,
                deadline=deadline,
                timeout=timeout,
                log=log,
            )
            _compile_bytecode(interpreter, tmp, deadline=deadline, timeout=timeout, log=log)
        marker = {
            "fingerprint": fingerprint,
            "python_version": interpreter.version,
            "python_path": str(interpreter.path),
            "requirements": sorted(set(requirements)),
            "allow_options": allow_options,
            "allow_source_builds": allow_source_builds,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        # Written last: its presence is what makes the environment usable.
        (tmp / MARKER_NAME).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        try:
            os.rename(tmp, final)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and is_complete(final):
                # Built meanwhile by a host that did not share our lock: use theirs.
                shutil.rmtree(tmp, ignore_errors=True)
                return
            raise
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, EnvironmentBuildError) or not isinstance(exc, Exception):
            raise
        raise EnvironmentBuildError(f"Building the environment failed: {exc}") from exc


# The base interpreter (trusted: the platform's) compiles the environment's packages with
# site and PYTHON* variables off (-S -I), so nothing they installed runs: `.pth` files are
# read by site, and compileall never executes what it compiles. Files that do not compile
# (a package's Python 2 test data) are left to compile at import, as uv leaves them.
_COMPILE_BYTECODE = "import compileall, sys; compileall.compile_dir(sys.argv[1], quiet=2, workers=0)"


def _compile_bytecode(
    interpreter: Interpreter, env_path: Path, *, deadline: float, timeout: float, log: Callable[[str], None]
) -> None:
    """Compile the installed packages once here: environments are read-only in the sandbox,
    where no .pyc could be cached, so every cold start would compile every import again."""
    _run_uv(
        [str(interpreter.path), "-I", "-S", "-B", "-c", _COMPILE_BYTECODE, str(env_path / "lib")],
        step="Compiling the packages' bytecode",
        program="python",
        cwd=env_path,
        deadline=deadline,
        timeout=timeout,
        log=log,
    )


def _uv_bin() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError) as exc:
        raise EnvironmentBuildError(f"uv is not installed in the platform's environment: {exc}") from exc


def _uv_environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUBBED_PREFIXES)}
    # Logs end up in the UI: no progress bars, no colour escapes.
    env.update({"UV_NO_PROGRESS": "1", "NO_COLOR": "1"})
    env.pop("FORCE_COLOR", None)
    env.pop("CLICOLOR_FORCE", None)
    return env


# uv's words when --no-build stops it at a package that has no wheel for this interpreter.
_NO_WHEEL_SIGNS = ("building source distributions is disabled", "--no-build", "no-build")


def _wheels_only_hint(interpreter: Interpreter) -> Callable[[list[str]], str | None]:
    def hint(output: list[str]) -> str | None:
        if not any(sign in line.lower() for line in output for sign in _NO_WHEEL_SIGNS):
            return None
        return (
            f"Only prebuilt packages (wheels) are installed, and a requirement has none for Python "
            f"{interpreter.version} on this platform: pin a version that publishes a wheel for it, or "
            "ask an administrator to allow source builds (NEOMARIL_ALLOW_SOURCE_BUILDS; a source "
            "package runs its build script outside the sandbox)."
        )

    return hint


def _run_uv(
    cmd: list[str],
    *,
    step: str,
    cwd: Path,
    deadline: float,
    timeout: float,
    log: Callable[[str], None],
    hint: Callable[[list[str]], str | None] | None = None,
    program: str = "uv",
) -> None:
    """Run uv (or `program`) in `cwd`, streaming its merged output to `log` line by line,
    killed at `deadline`."""
    output: list[str] = []

    def emit(line: str) -> None:
        output.append(line)
        log(line)

    proc = subprocess.Popen(
        # uv and the build backends it starts die with the worker thread that ran them,
        # even when the worker is killed with -9 (no orphan build keeps the lock).
        ["/usr/bin/setpriv", "--pdeathsig=SIGKILL", "--", *cmd],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_uv_environment(),
        cwd=cwd,
        # Own process group, so a timeout also kills build backends uv started.
        start_new_session=True,
    )
    timed_out = False
    try:
        timed_out = not _pump_output(proc, deadline, emit)
        if not timed_out:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        # Always: on timeout this is the kill; otherwise it reaps stragglers uv left behind.
        _kill_group(proc)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()

    if timed_out:
        raise EnvironmentBuildError(f"{step} timed out after {timeout:g} s; the build was stopped.")
    if proc.returncode != 0:
        advice = hint(output) if hint is not None else None
        if advice:
            log(advice)
        message = f"{step} failed ({program} exit status {proc.returncode}): {_key_lines(output)}"
        raise EnvironmentBuildError(f"{message} {advice}" if advice else message)


def _pump_output(proc: subprocess.Popen[bytes], deadline: float, emit: Callable[[str], None]) -> bool:
    """Forward output until EOF; False when the deadline passed first.

    Reading happens on the calling thread so `log` is never called from another thread
    (it may write to the database).
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    os.set_blocking(fd, False)
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    exited_at: float | None = None
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while True:
            now = time.monotonic()
            if now >= deadline:
                return False
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            # uv has exited but a child it spawned still holds the pipe: stop waiting soon.
            if exited_at is not None and now - exited_at > 2.0:
                break
            if not selector.select(timeout=min(0.2, deadline - now)):
                continue
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                continue
            if not chunk:
                break
            pending += decoder.decode(chunk)
            *lines, pending = re.split(r"\r\n|\r|\n", pending)
            for line in lines:
                emit(line)
    pending += decoder.decode(b"", final=True)
    if pending:
        emit(pending)
    return True


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _key_lines(output: list[str]) -> str:
    """uv's error explanation: from its first `error:` line on (it names the package)."""
    lines = [line.rstrip() for line in output if line.strip()]
    start = next(
        (i for i, line in enumerate(lines) if line.lstrip().startswith(("error:", "×"))),
        max(0, len(lines) - _ERROR_LINES),
    )
    key = lines[start : start + _ERROR_LINES]
    return " ".join(line.strip() for line in key) or "uv printed no explanation."


@contextlib.contextmanager
def _exclusive_lock(path: Path, *, timeout: float, log: Callable[[str], None]) -> Iterator[None]:
    """Hold an exclusive flock on `path`, waiting at most `timeout` seconds for it.

    The lock file is removed on release so envs_dir holds only environments; to make that
    safe, a waiter that wins the lock checks that it locked the file currently at `path`
    and not one already unlinked by the previous holder.
    """
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise EnvironmentBuildError(f"Cannot create the build lock {path}: {exc}") from exc
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise EnvironmentBuildError(
                            f"Timed out after {timeout:g} s waiting for another build of the same "
                            "environment to finish."
                        ) from None
                    if not announced:
                        log("Waiting for another build of this environment to finish")
                        announced = True
                    time.sleep(0.1)
            try:
                same_file = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same_file = False
        except BaseException:
            os.close(fd)
            raise
        if same_file:
            break
        os.close(fd)  # locked a file the previous holder had already unlinked; retry

    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _remove_stale_temp_folders(envs_dir: Path, *, older_than: float) -> None:
    """Delete `.tmp-*` folders left by builds that died (a live build is bounded by the timeout)."""
    cutoff = time.time() - older_than
    for candidate in envs_dir.glob(".tmp-*"):
        try:
            if candidate.is_dir() and candidate.stat().st_mtime < cutoff:
                shutil.rmtree(candidate, ignore_errors=True)
        except OSError:
            continue


def freeze(env_path: Path) -> str:
    """The exact packages installed in an environment, one per line, as ``uv pip freeze``
    writes them (``name==version``, ``name @ url`` for a direct reference), sorted by name.

    Read from the packages' metadata by this process, never by starting the environment's
    interpreter (as ``uv pip freeze --python`` does when it has not cached it): its start-up
    would run the `.pth` files the packages installed, here, outside the sandbox."""
    lines = []
    try:
        for site_packages in sorted((env_path / "lib").glob("python*/site-packages")):
            for distribution in importlib.metadata.distributions(path=[str(site_packages)]):
                name = distribution.metadata["Name"]
                if name:  # a dist-info folder without its METADATA: nothing to pin
                    lines.append(_frozen_line(re.sub(r"[-_.]+", "-", name).lower(), distribution))
    except OSError as exc:
        raise EnvironmentBuildError(f"Listing the installed packages failed: {exc}") from exc
    return "".join(f"{line}\n" for line in sorted(lines))


def _frozen_line(name: str, distribution: importlib.metadata.Distribution) -> str:
    try:
        direct = json.loads(distribution.read_text("direct_url.json") or "null")  # PEP 610
    except ValueError:
        direct = None
    if not isinstance(direct, dict) or not isinstance(direct.get("url"), str):
        return f"{name}=={distribution.version}"
    url, vcs = direct["url"], direct.get("vcs_info")
    if isinstance(vcs, dict) and vcs.get("vcs") and vcs.get("commit_id"):
        url = f"{vcs['vcs']}+{url}@{vcs['commit_id']}"
    return f"{name} @ {url}"


def alias_environment(
    envs_dir: Path, python_version: str, requirements: list[str], env_path: Path
) -> str | None:
    """Let ``env_path`` also serve the requirement set ``requirements``; returns its fingerprint.

    A training environment is built from the user's requirements, and the model promoted
    from it declares what that environment turned out to contain (its freeze). Both name
    the same packages, so the second fingerprint becomes a symlink to the first folder
    instead of a second build. An existing environment of that fingerprint is kept.

    Not when ``env_path`` was built with index options (``--index-url``, ``--find-links``...,
    NEOMARIL_ALLOW_REQUIREMENT_OPTIONS): its freeze pins names and versions, not where
    they came from, so the alias would hand a wheel of the member's own index to every
    group whose model asks for the same pins from the configured one. Returns None then:
    a model of those pins gets its own build.
    """
    fingerprint = requirements_fingerprint(python_version, requirements)
    alias = environment_path(envs_dir, fingerprint)
    if alias == env_path:
        return fingerprint
    if not _from_configured_index(env_path):
        return None
    if is_complete(alias):
        return fingerprint
    if not alias.is_symlink() and (alias / MARKER_NAME).is_file():
        return fingerprint  # finished, with another node's interpreter: not this node's to replace
    if alias.is_symlink() or alias.exists():  # an incomplete leftover: replace it
        with contextlib.suppress(OSError):
            alias.unlink() if alias.is_symlink() else shutil.rmtree(alias)
    # Unique across nodes too (pids repeat between machines sharing the folder).
    temp = envs_dir / f".alias-{fingerprint}-{uuid.uuid4().hex}"
    with contextlib.suppress(FileNotFoundError):
        temp.unlink()
    os.symlink(env_path.name, temp)  # relative: the data folder may be moved or mounted elsewhere
    try:
        os.rename(temp, alias)
    except OSError:
        temp.unlink(missing_ok=True)
        if not is_complete(alias):
            raise
    return fingerprint


def _from_configured_index(env_path: Path) -> bool:
    """True when the environment's marker lists no option line (every package came from
    the platform's configured index); False when it does, or cannot be read."""
    try:
        marker = json.loads((env_path / MARKER_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    requirements = marker.get("requirements", []) if isinstance(marker, dict) else None
    return isinstance(requirements, list) and not any(
        str(line).lstrip().startswith("-") for line in requirements
    )
