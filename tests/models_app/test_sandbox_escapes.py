"""Escapes found by a second review of the sandbox, each reproduced here and asserted closed.

- the kernel's keyrings: a uid's user keyring outlives its processes, so a job could leave
  keys for (or read keys of) the next job leased the same sandbox uid, another group's;
- the platform's chmod of the folders a job reads: a job still writing in one (an Async
  execution, in the folder its model's monitoring reads) could swap a file for a link to
  a host file between the platform's look and its chmod;
- promote's environment alias: a training environment built from the member's own index
  would have served other groups' models asking for the same pins.

Fast, without a model or the portal: the launcher and ``environments`` are called directly.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from models_app import environments
from models_app.runtime import sandbox
from models_app.runtime.oneshot import run_oneshot
from models_app.validation.requirements import requirements_fingerprint

BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable))

# ---------------------------------------------------------------------------- keyrings

KEYRING_SOURCE = textwrap.dedent(
    """
    import ctypes
    import os

    NR = {"x86_64": (248, 249, 250), "aarch64": (217, 218, 219)}[os.uname().machine]
    KEY_SPEC_USER_KEYRING = -4
    KEYCTL_READ, KEYCTL_INVALIDATE = 11, 21


    def _call(*args):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        result = libc.syscall(*args)
        if result < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        return result


    def leave(data, base_path):
        payload = b"left by group A"
        add_key, _, _ = NR
        try:
            _call(add_key, b"user", data.encode(), payload, len(payload), ctypes.c_int(KEY_SPEC_USER_KEYRING))
        except OSError as exc:
            return {"uid": os.getuid(), "error": exc.strerror}
        return {"uid": os.getuid(), "error": None}


    def take(data, base_path):
        _, request_key, keyctl = NR
        try:
            key = _call(request_key, b"user", data.encode(), None, ctypes.c_int(0))
        except OSError as exc:
            return {"uid": os.getuid(), "error": exc.strerror}
        buffer = ctypes.create_string_buffer(100)
        size = _call(keyctl, KEYCTL_READ, ctypes.c_long(key), buffer, 100)
        _call(keyctl, KEYCTL_INVALIDATE, ctypes.c_long(key))  # leave nothing behind on the host
        return {"uid": os.getuid(), "read": buffer.raw[:size].decode()}
    """
)


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid pool is the root platform's")
@pytest.mark.skipif(
    os.uname().machine not in sandbox._SECCOMP_ARCHES, reason="no filter on this architecture"
)
def test_a_job_cannot_leave_kernel_keys_for_the_next_job_of_its_uid(settings, tmp_path):
    settings.UNSAFE_NO_SANDBOX = False
    settings.RUN_DIR = tmp_path / "run"
    settings.SANDBOX_UID_COUNT = 1  # the next job always gets the uid the last one had
    description = f"neomaril-test-{uuid.uuid4().hex}"
    outcomes = []
    for group, entrypoint in (("a", "leave"), ("b", "take")):
        folder = tmp_path / group
        folder.mkdir()
        (folder / "app.py").write_text(KEYRING_SOURCE)
        code = sandbox.UserCode(
            python=BASE_PYTHON, env={}, cwd=folder, read_only=(folder,), limits=sandbox.Limits(processes=64)
        )
        result = run_oneshot(
            code,
            source=str(folder / "app.py"),
            entrypoint=entrypoint,
            kind="sync",
            args=[description, str(folder)],
            timeout=60,
        )
        assert result.ok, (result.error, result.output)
        outcomes.append(result.result)
    leave, take = outcomes
    assert leave["uid"] == take["uid"] == settings.SANDBOX_UID_BASE
    assert leave == {"uid": settings.SANDBOX_UID_BASE, "error": "Operation not permitted"}
    assert take == {"uid": settings.SANDBOX_UID_BASE, "error": "Operation not permitted"}


def test_the_seccomp_filter_refuses_the_keyrings_on_every_known_architecture():
    for arch, (_audit, _clone, _unshare, keyrings) in sandbox._SECCOMP_ARCHES.items():
        assert len(set(keyrings)) == 3, arch
    program = sandbox._no_userns_seccomp()
    if program is None:
        pytest.skip("no filter on this architecture")
    *_, keyrings = sandbox._SECCOMP_ARCHES[os.uname().machine]
    # struct sock_filter: code (u16), jt, jf (u8), k (u32); each keyring call jumps to EPERM.
    ops = [program[i : i + 8] for i in range(0, len(program), 8)]
    compared = {int.from_bytes(op[4:], sys.byteorder) for op in ops if op[0] == 0x15}
    assert set(keyrings) <= compared
    assert ops[-2][4:] == (0x00050000 | 1).to_bytes(4, sys.byteorder)  # EPERM


# ----------------------------------------------------------- chmod of the folders a job reads

HAMMER = textwrap.dedent(
    """
    import ctypes, os, sys, time

    # What a job still running in a folder the platform walks can do: swap each of its
    # files with a link to a host file, back and forth, as fast as the kernel allows.
    folder, target, pairs, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    RENAMEAT2 = {"x86_64": 316, "aarch64": 276}[os.uname().machine]
    libc = ctypes.CDLL(None, use_errno=True)
    for k in range(pairs):
        if os.fork() == 0:
            a, b = ("%s/f%d" % (folder, k)).encode(), ("%s/s%d" % (folder, k)).encode()
            os.close(os.open(a, os.O_CREAT | os.O_WRONLY, 0o600))
            os.symlink(target, b)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                for _ in range(1000):
                    libc.syscall(RENAMEAT2, -100, a, -100, b, 2)  # RENAME_EXCHANGE
                for path in (a, b):
                    if not os.path.islink(path):
                        os.chmod(path, 0o600)  # unread again: the platform looks at it again
            os._exit(0)
    print("ready", flush=True)
    for _ in range(pairs):
        os.wait()
    """
)


@pytest.mark.skipif(os.uname().machine not in ("x86_64", "aarch64"), reason="renameat2's number")
def test_a_job_cannot_redirect_the_chmod_of_a_folder_it_is_still_writing(tmp_path):
    target = tmp_path / "secret_key"  # e.g. the data folder's keys, root's and 0600
    target.write_text("platform secret")
    target.chmod(0o600)
    executions = tmp_path / "executions" / "model"  # what a monitoring job binds read-only
    running = executions / "7"
    running.mkdir(parents=True)
    (running / "input.csv").write_text("a\n1\n")
    (running / "input.csv").chmod(0o600)
    (executions / "6").mkdir(mode=0o700)

    hammer = subprocess.Popen(
        [sys.executable, "-c", HAMMER, str(running), str(target), "2", "20"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its forks are in its group: killed with it below
    )
    try:
        assert hammer.stdout.readline() == "ready\n"
        end = time.monotonic() + 5
        while time.monotonic() < end and stat.S_IMODE(target.stat().st_mode) == 0o600:
            sandbox._make_readable(executions)  # what each monitoring launch does
    finally:
        os.killpg(hammer.pid, signal.SIGKILL)
        hammer.wait(10)
        hammer.stdout.close()

    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    # What it is for still works: the tree opens to the sandbox's uid, links are left alone.
    assert stat.S_IMODE((running / "input.csv").stat().st_mode) == 0o644
    assert stat.S_IMODE((executions / "6").stat().st_mode) == 0o755
    assert (running / "s0").is_symlink() or (running / "f0").is_symlink()


# ------------------------------------------------------------------ promote's alias


def _environment(envs: Path, python_version: str, requirements: list[str]) -> Path:
    env = envs / requirements_fingerprint(python_version, requirements)
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "python").write_text("")
    (env / environments.MARKER_NAME).write_text(json.dumps({"requirements": requirements}))
    return env


@pytest.mark.parametrize(
    "option",
    [
        "--index-url https://evil.example/simple",
        "--extra-index-url https://evil.example/simple",
        "--find-links https://evil.example/wheels/",
        "--no-index",
    ],
)
def test_an_environment_built_from_another_index_is_not_aliased_to_its_freeze(tmp_path, option):
    envs = tmp_path / "envs"
    # Group A's training run: six "1.16.0" from its own index (NEOMARIL_ALLOW_REQUIREMENT_OPTIONS).
    trained = _environment(envs, "3.11.7", [option, "six==1.16.0"])
    # Its freeze says only six==1.16.0: group B's model asking for that gets its own build.
    assert environments.alias_environment(envs, "3.11.7", ["six==1.16.0"], trained) is None
    alias = environments.environment_path(envs, requirements_fingerprint("3.11.7", ["six==1.16.0"]))
    assert not alias.exists() and not alias.is_symlink()
    assert sorted(p.name for p in envs.iterdir()) == [trained.name]


def test_a_finished_environment_under_the_alias_is_kept_even_if_this_node_cannot_run_it(tmp_path):
    """Its interpreter link names another node's Python: it is that node's, not a leftover."""
    envs = tmp_path / "envs"
    trained = _environment(envs, "3.11.7", ["scikit-learn"])
    frozen = ["numpy==2.0.2", "scikit-learn==1.6.1"]
    other = _environment(envs, "3.11.7", frozen)
    (other / "bin" / "python").unlink()
    (other / "bin" / "python").symlink_to("/opt/another-node/python3.11")
    assert environments.alias_environment(envs, "3.11.7", frozen, trained) == other.name
    assert not other.is_symlink() and (other / environments.MARKER_NAME).is_file()


def test_an_environment_from_the_configured_index_is_still_aliased_to_its_freeze(tmp_path):
    envs = tmp_path / "envs"
    trained = _environment(envs, "3.11.7", ["scikit-learn"])
    frozen = ["numpy==2.0.2", "scikit-learn==1.6.1"]
    fingerprint = environments.alias_environment(envs, "3.11.7", frozen, trained)
    alias = environments.environment_path(envs, fingerprint)
    assert fingerprint == requirements_fingerprint("3.11.7", frozen)
    assert alias.is_symlink() and alias.resolve() == trained.resolve()
    # A marker that can't be read says nothing of where the packages came from: no alias.
    (trained / environments.MARKER_NAME).write_text("not json")
    assert environments.alias_environment(envs, "3.11.7", ["numpy==2.0.2"], trained) is None
