"""The sandbox launcher's own rules (models_app/runtime/sandbox.py), without a model.

Fast: limits and their messages, the user code's environment, the refusal to run
unsandboxed, the opt-out, the uid pool. The attacks themselves are in
test_sandbox_attacks.py.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from types import SimpleNamespace

import pytest

from models_app import sandboxes
from models_app.runtime import oneshot, sandbox
from models_app.runtime.oneshot import run_oneshot
from models_app.serving.answers import answer_for_frame

BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable))
MB = 1024 * 1024

NAMED = sandbox.Limits(
    memory_mb=512,
    processes=64,
    disk_mb=100,
    cpu_seconds=30,
    tmp_mb=32,
    names={
        "memory": "NEOMARIL_EXECUTION_MEMORY_LIMIT_MB",
        "processes": "NEOMARIL_SANDBOX_PROCESSES",
        "disk": "NEOMARIL_EXECUTION_DISK_MB",
        "cpu": "NEOMARIL_BUILD_CPU_SECONDS",
        "tmp": "NEOMARIL_SANDBOX_TMP_MB",
    },
)


# ------------------------------------------------------------------------------ limits


def test_prlimit_args_set_only_the_limits_given():
    assert sandbox.Limits().prlimit_args() == ["--core=0"]
    assert NAMED.prlimit_args() == [
        "--core=0",
        f"--as={512 * MB}",
        "--nproc=64",
        f"--fsize={100 * MB}",
        "--cpu=30",
    ]
    assert sandbox.Limits(processes=8).prlimit_args() == ["--core=0", "--nproc=8"]


@pytest.mark.parametrize(
    "error,returncode,expected",
    [
        (
            "MemoryError",
            1,
            "The model's code hit the sandbox limit of 512 MB of memory per process "
            "(raise NEOMARIL_EXECUTION_MEMORY_LIMIT_MB to allow more).",
        ),
        (
            "OSError: [Errno 12] Cannot allocate memory",
            1,
            "The model's code hit the sandbox limit of 512 MB of memory per process "
            "(raise NEOMARIL_EXECUTION_MEMORY_LIMIT_MB to allow more).",
        ),
        (
            "BlockingIOError: [Errno 11] Resource temporarily unavailable",
            1,
            "The model's code hit the sandbox limit of 64 processes and threads "
            "(raise NEOMARIL_SANDBOX_PROCESSES to allow more).",
        ),
        (
            "RuntimeError: can't start new thread",
            1,
            "The model's code hit the sandbox limit of 64 processes and threads "
            "(raise NEOMARIL_SANDBOX_PROCESSES to allow more).",
        ),
        (
            "OSError: [Errno 27] File too large",
            1,
            "The model's code hit the sandbox limit of 100 MB per file in its folder, 32 MB in /tmp and "
            "8 MB in /dev/shm (raise NEOMARIL_EXECUTION_DISK_MB for its folder, NEOMARIL_SANDBOX_TMP_MB "
            "for /tmp and /dev/shm).",
        ),
        (
            "OSError: [Errno 28] No space left on device",
            1,
            "The model's code hit the sandbox limit of 100 MB per file in its folder, 32 MB in /tmp and "
            "8 MB in /dev/shm (raise NEOMARIL_EXECUTION_DISK_MB for its folder, NEOMARIL_SANDBOX_TMP_MB "
            "for /tmp and /dev/shm).",
        ),
        (
            "the model process was killed by SIGXFSZ",
            -signal.SIGXFSZ,
            "The model's code hit the sandbox limit of 100 MB per file in its folder, 32 MB in /tmp and "
            "8 MB in /dev/shm (raise NEOMARIL_EXECUTION_DISK_MB for its folder, NEOMARIL_SANDBOX_TMP_MB "
            "for /tmp and /dev/shm).",
        ),
        (
            "the model process was killed by SIGXCPU before returning a result",
            -signal.SIGXCPU,
            "The model's code hit the sandbox limit of 30 s of CPU time "
            "(raise NEOMARIL_BUILD_CPU_SECONDS to allow more).",
        ),
        (
            "the model process was killed by SIGBUS",
            -signal.SIGBUS,
            "The model's code was stopped by SIGBUS, which in the sandbox usually means shared memory "
            "larger than /dev/shm's 8 MB (a quarter of /tmp's: raise NEOMARIL_SANDBOX_TMP_MB to allow more).",
        ),
        ("ZeroDivisionError: division by zero", 1, None),
        (None, -signal.SIGKILL, None),
    ],
)
def test_explain_names_the_limit_and_the_setting_that_raises_it(error, returncode, expected):
    assert NAMED.explain(error, returncode) == expected


def test_explain_ignores_limits_that_are_not_set():
    unlimited = sandbox.Limits()
    assert unlimited.explain("MemoryError", 1) is None
    assert unlimited.explain("BlockingIOError: [Errno 11] Resource temporarily unavailable", 1) is None
    assert unlimited.explain("killed by SIGXCPU", -signal.SIGXCPU) is None
    # Without a setting to name, the sentence still says which limit.
    assert sandbox.Limits(memory_mb=64).explain("MemoryError", 1) == (
        "The model's code hit the sandbox limit of 64 MB of memory per process."
    )


def test_a_full_tmp_names_one_setting_when_it_is_also_the_folder_limit():
    # A runner's and a build's only disk is /tmp: one setting raises both.
    serve = sandbox.Limits(
        disk_mb=32, tmp_mb=32, names={"disk": "NEOMARIL_SANDBOX_TMP_MB", "tmp": "NEOMARIL_SANDBOX_TMP_MB"}
    )
    assert serve.explain("OSError: [Errno 28] No space left on device", 1) == (
        "The model's code hit the sandbox limit of 32 MB per file in its folder, 32 MB in /tmp and "
        "8 MB in /dev/shm (raise NEOMARIL_SANDBOX_TMP_MB to allow more)."
    )


def test_disk_exceeded_message_names_the_folder_limit():
    assert NAMED.disk_exceeded_message() == (
        "The model's code hit the sandbox limit of 100 MB written in its folder "
        "(raise NEOMARIL_EXECUTION_DISK_MB to allow more)."
    )


def test_limits_for_each_job_come_from_settings(settings):
    settings.BUILD_MEMORY_LIMIT_MB = 111
    settings.RUNNER_MEMORY_LIMIT_MB = 222
    settings.EXECUTION_MEMORY_LIMIT_MB = 333
    settings.EXECUTION_DISK_MB = 44
    settings.SANDBOX_TMP_MB = 55
    settings.SANDBOX_PROCESSES = 66
    settings.BUILD_CPU_SECONDS = 77
    build, serve, execution = (sandboxes.limits_for(job) for job in ("build", "serve", "execution"))
    assert (build.memory_mb, build.cpu_seconds, build.disk_mb) == (111, 77, 55)
    assert (serve.memory_mb, serve.cpu_seconds, serve.disk_mb) == (222, 0, 55)
    assert (execution.memory_mb, execution.cpu_seconds, execution.disk_mb) == (333, 0, 44)
    assert {build.processes, serve.processes, execution.processes} == {66}
    assert {build.tmp_mb, serve.tmp_mb, execution.tmp_mb} == {55}
    assert build.names["memory"] == "NEOMARIL_BUILD_MEMORY_LIMIT_MB"
    assert serve.names["memory"] == "NEOMARIL_RUNNER_MEMORY_LIMIT_MB"
    assert execution.names["disk"] == "NEOMARIL_EXECUTION_DISK_MB"
    assert serve.names["disk"] == "NEOMARIL_SANDBOX_TMP_MB"


def test_a_job_writes_no_more_than_its_groups_storage_quota_leaves(settings):
    settings.EXECUTION_DISK_MB = 44
    settings.TRAINING_DISK_MB = 44
    for job in ("execution", "training"):
        limited = sandboxes.limits_for(job, storage_room=3 * 2**20 + 5)
        assert limited.disk_mb == 3 and limited.names["disk"] == sandboxes.QUOTA_LEFT
        assert limited.disk_exceeded_message() == (
            "The model's code hit the sandbox limit of 3 MB written in its folder "
            "(raise the group's storage quota to allow more)."
        )
        assert sandboxes.limits_for(job, storage_room=100).disk_mb == 1  # never 0: that is no limit
        roomy = sandboxes.limits_for(job, storage_room=50 * 2**20)
        assert roomy.disk_mb == 44 and roomy.names["disk"] != sandboxes.QUOTA_LEFT
        assert sandboxes.limits_for(job, storage_room=None).disk_mb == 44
    assert sandboxes.limits_for("serve", storage_room=1).disk_mb == settings.SANDBOX_TMP_MB  # /tmp only


def test_monitoring_limits_come_from_the_monitoring_settings(settings):
    settings.MONITORING_MEMORY_LIMIT_MB = 444
    settings.MONITORING_DISK_MB = 88
    settings.SANDBOX_PROCESSES = 66
    settings.SANDBOX_TMP_MB = 55
    limits = sandboxes.limits_for("monitoring")
    assert (limits.memory_mb, limits.disk_mb, limits.cpu_seconds) == (444, 88, 0)
    assert (limits.processes, limits.tmp_mb) == (66, 55)
    assert limits.names["memory"] == "NEOMARIL_MONITORING_MEMORY_LIMIT_MB"
    assert limits.names["disk"] == "NEOMARIL_MONITORING_DISK_MB"
    assert "raise NEOMARIL_MONITORING_DISK_MB" in limits.disk_exceeded_message()


def test_monitoring_code_reads_the_model_and_writes_only_its_folder(settings, monkeypatch, tmp_path):
    settings.MONITORING_MEMORY_LIMIT_MB = 444
    monkeypatch.setattr(sandboxes, "decrypted_env", lambda model: {"API_KEY": "k", "OMP_NUM_THREADS": "4"})
    model = SimpleNamespace(folder=tmp_path / "model", allow_network=False)
    folder, reference = tmp_path / "work", tmp_path / "run"
    code = sandboxes.monitoring_code(model, python=BASE_PYTHON, folder=folder, read_only=[reference])
    assert code.python == BASE_PYTHON
    # bwrap enters cwd before it becomes the job's uid: only the writable root is open then.
    assert code.cwd == code.writable == folder
    assert tuple(code.read_only) == (model.folder, reference)
    assert code.network is False
    assert code.limits.memory_mb == 444
    # One thread per BLAS, unless the model's .env says otherwise.
    assert code.env == {
        "OMP_NUM_THREADS": "4",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "HOME": str(folder),
        "API_KEY": "k",
    }
    assert sandboxes.monitoring_code(
        SimpleNamespace(folder=model.folder, allow_network=True), python=BASE_PYTHON, folder=folder
    ).network


# ------------------------------------------------------------------------- environment


def test_runner_env_is_a_minimal_base_plus_the_jobs_values(monkeypatch):
    monkeypatch.setenv("NEOMARIL_ADMIN_PASSWORD", "never-passed-down")
    monkeypatch.setenv("SECRET_KEY", "never-passed-down")
    env = sandbox.build_runner_env({"API_KEY": "s3cr3t", "inputFileName": "in.csv", "LANG": "pt_BR.UTF-8"})
    assert env == {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "pt_BR.UTF-8",  # the job's value wins over the base
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "API_KEY": "s3cr3t",
        "inputFileName": "in.csv",
    }
    assert sandbox.build_runner_env({}, home="/data/exec/1")["HOME"] == "/data/exec/1"


@pytest.mark.parametrize(
    "extra,message",
    [
        ({"": "x"}, "invalid environment variable name ''"),
        ({"A=B": "x"}, "invalid environment variable name 'A=B'"),
        ({"A\0B": "x"}, "invalid environment variable name 'A\\x00B'"),
        ({"TOKEN": "a\0b"}, "environment variable TOKEN must be a string without NUL bytes"),
        ({"PORT": 5432}, "environment variable PORT must be a string without NUL bytes"),
    ],
)
def test_runner_env_refuses_what_exec_would_reject(extra, message):
    with pytest.raises(ValueError) as caught:
        sandbox.build_runner_env(extra)
    assert str(caught.value) == message


# -------------------------------------------------------- no bubblewrap: refuse, or opt out


@pytest.fixture
def probe_again():
    """The bwrap probe is cached per process: clear it before and after faking its answer."""
    sandbox._probe.cache_clear()
    yield
    sandbox._probe.cache_clear()


def _code(tmp_path: Path, **fields) -> sandbox.UserCode:
    return sandbox.UserCode(python=BASE_PYTHON, env={}, cwd=tmp_path, read_only=(tmp_path,), **fields)


def test_launch_refuses_without_bubblewrap_naming_the_opt_out(settings, monkeypatch, probe_again, tmp_path):
    settings.UNSAFE_NO_SANDBOX = False
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    with pytest.raises(sandbox.SandboxUnavailable) as caught:
        sandbox.launch(_code(tmp_path), stdout=subprocess.DEVNULL)
    assert str(caught.value) == (
        "User code is not run without its sandbox, and bubblewrap is not installed "
        "(apt-get install bubblewrap). Install bubblewrap, or on a single-user machine only, "
        "set NEOMARIL_UNSAFE_NO_SANDBOX=1."
    )


def test_launch_refuses_when_bubblewrap_cannot_make_namespaces(settings, monkeypatch, probe_again, tmp_path):
    settings.UNSAFE_NO_SANDBOX = False
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: "/bin/false")
    with pytest.raises(sandbox.SandboxUnavailable) as caught:
        sandbox.launch(_code(tmp_path), stdout=subprocess.DEVNULL)
    assert "bubblewrap cannot create namespaces here (exit status 1)" in str(caught.value)
    assert "are user namespaces turned off?" in str(caught.value)
    assert "NEOMARIL_UNSAFE_NO_SANDBOX=1" in str(caught.value)


def test_a_networked_job_needs_slirp4netns_unless_the_node_network_is_chosen(
    settings, monkeypatch, probe_again, tmp_path
):
    settings.UNSAFE_NO_SANDBOX = False
    real_which = shutil.which
    monkeypatch.setattr(
        shutil,
        "which",
        lambda name, *args, **kwargs: None if name == "slirp4netns" else real_which(name, *args, **kwargs),
    )
    with pytest.raises(sandbox.SandboxUnavailable) as caught:
        sandbox.launch(_code(tmp_path, network=True), stdout=subprocess.DEVNULL)
    assert "the private network of models allowed the network needs slirp4netns" in str(caught.value)
    assert "NEOMARIL_SANDBOX_NETWORK=host" in str(caught.value)
    sandbox.check_available(network=False)  # a job without network does not need it
    settings.SANDBOX_NETWORK = "host"
    sandbox.check_available(network=True)


def test_a_oneshot_run_without_its_sandbox_fails_with_that_message(
    settings, monkeypatch, probe_again, tmp_path
):
    settings.UNSAFE_NO_SANDBOX = False
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    source = tmp_path / "app.py"
    source.write_text("def score(data, base_path):\n    return {}\n")
    result = run_oneshot(
        _code(tmp_path), source=str(source), entrypoint="score", kind="sync", args=["{}", "."], timeout=10
    )
    assert not result.ok and result.phase == "sandbox"
    assert result.error.startswith(
        "User code is not run without its sandbox, and bubblewrap is not installed"
    )


def test_launch_refuses_a_missing_interpreter_before_anything_else(settings, tmp_path):
    code = sandbox.UserCode(python=tmp_path / "gone" / "bin" / "python", env={}, cwd=tmp_path)
    with pytest.raises(FileNotFoundError) as caught:
        sandbox.launch(code)
    # The model's callers read it (a 503): it names no server folder.
    assert (
        str(caught.value)
        == "the model's environment is missing on this node: restart the model to rebuild it"
    )


def test_unsafe_mode_runs_user_code_without_bubblewrap(settings, monkeypatch, probe_again, tmp_path):
    settings.UNSAFE_NO_SANDBOX = True
    monkeypatch.setattr(shutil, "which", lambda name, *args, **kwargs: None)
    source = tmp_path / "app.py"
    source.write_text(
        "import os\n\ndef score(data, base_path):\n"
        "    return {'pid': os.getpid(), 'uid': os.getuid(), 'key': os.environ['API_KEY'],"
        " 'home': os.environ['HOME']}\n"
    )
    code = sandbox.UserCode(
        python=BASE_PYTHON, env={"API_KEY": "k"}, cwd=tmp_path, limits=sandbox.Limits(processes=64)
    )
    result = oneshot.run_oneshot(
        code, source=str(source), entrypoint="score", kind="sync", args=["{}", str(tmp_path)], timeout=30
    )
    assert result.ok, result.error
    # No PID namespace and the platform's own uid: exactly what "unsafe" means.
    assert result.result["pid"] > 2 and result.result["uid"] == os.getuid()
    assert result.result["key"] == "k" and result.result["home"] == str(tmp_path)

    launched = sandbox.launch(code, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    try:
        assert launched.sandboxed is False and launched.uid is None
        assert launched.process.args[:4] == [
            "/usr/bin/setpriv",
            "--pdeathsig=SIGKILL",
            "--",
            "/usr/bin/prlimit",
        ]
        assert "--nproc=64" in launched.process.args
    finally:
        launched.kill()
        launched.process.wait(10)


# ------------------------------------------------------------------------------ uid pool


def test_two_leases_get_different_uids_and_a_released_uid_is_leased_again(tmp_path):
    first_uid, first_fd = sandbox._lease_uid(tmp_path, 300_000, 2)
    second_uid, second_fd = sandbox._lease_uid(tmp_path, 300_000, 2)
    try:
        assert {first_uid, second_uid} == {300_000, 300_001}
        with pytest.raises(sandbox.SandboxUnavailable) as caught:
            sandbox._lease_uid(tmp_path, 300_000, 2)
        assert "All 2 sandbox uids are in use; raise NEOMARIL_SANDBOX_UID_COUNT" in str(caught.value)
        os.close(first_fd)
        again_uid, again_fd = sandbox._lease_uid(tmp_path, 300_000, 2)
        assert again_uid == first_uid
        os.close(again_fd)
    finally:
        os.close(second_fd)


def test_a_launched_sandbox_releases_its_uid_once(tmp_path):
    uid, fd = sandbox._lease_uid(tmp_path, 300_000, 1)
    launched = sandbox.Launched(SimpleNamespace(pid=0, returncode=None), uid, fd, True)
    launched.release()
    launched.release()  # idempotent: the fd is not closed twice
    again_uid, again_fd = sandbox._lease_uid(tmp_path, 300_000, 1)
    assert again_uid == uid
    os.close(again_fd)


@pytest.mark.parametrize(
    "sandboxed,raw,reported",
    [(True, 128 + signal.SIGKILL, -signal.SIGKILL), (True, 1, 1), (False, 137, 137), (True, None, None)],
)
def test_returncode_reports_a_signal_inside_the_sandbox_as_negative(sandboxed, raw, reported):
    launched = sandbox.Launched(SimpleNamespace(pid=0, returncode=raw), None, None, sandboxed)
    assert launched.returncode == reported


def test_the_seccomp_filter_is_one_bpf_program_per_known_architecture(monkeypatch):
    program = sandbox._no_userns_seccomp()
    if os.uname().machine in sandbox._SECCOMP_ARCHES:
        assert program is not None and len(program) == 17 * 8  # struct sock_filter: 8 bytes each
    monkeypatch.setattr(sandbox.os, "uname", lambda: SimpleNamespace(machine="riscv64"))
    assert sandbox._no_userns_seccomp() is None  # no filter rather than a wrong one


def test_a_sync_call_that_hits_a_limit_names_it_and_its_setting(settings):
    settings.RUNNER_MEMORY_LIMIT_MB = 321
    status, body = answer_for_frame(
        {"ok": False, "phase": "call", "error": "MemoryError", "traceback": "..."}
    )
    detail = json.loads(body)
    assert status == 422
    assert detail["detail"] == (
        "The model raised an error: MemoryError. The model's code hit the sandbox limit of 321 MB of memory "
        "per process (raise NEOMARIL_RUNNER_MEMORY_LIMIT_MB to allow more)."
    )
    assert detail["model_error"]["limit"].startswith("The model's code hit the sandbox limit")
    # An error that ends its own sentence is not given a second full stop.
    status, body = answer_for_frame(
        {"ok": False, "phase": "call", "error": "MemoryError: Unable to allocate 8.00 GiB.", "traceback": ""}
    )
    assert json.loads(body)["detail"].startswith(
        "The model raised an error: MemoryError: Unable to allocate 8.00 GiB. The model's code hit"
    )
    status, body = answer_for_frame(
        {"ok": False, "phase": "call", "error": "ValueError: bad x", "traceback": ""}
    )
    assert json.loads(body)["model_error"]["limit"] is None


@pytest.mark.parametrize(
    ("node", "upstream", "sandbox_sees"),
    [
        (
            "search corp\nnameserver 10.1.2.3\noptions edns0\n",
            "",
            "search corp\nnameserver 10.1.2.3\noptions edns0\n",
        ),
        # systemd-resolved's stub on the node's loopback: its upstream servers instead
        (
            "nameserver 127.0.0.53\noptions edns0 trust-ad\n",
            "nameserver 9.9.9.9\nnameserver 2620:fe::fe\n",
            "options edns0 trust-ad\nnameserver 9.9.9.9\n",  # no IPv6 out of the sandbox
        ),
        # GCP's resolver is its metadata server, in a blocked range: an unreachable resolver
        ("nameserver 169.254.169.254\nsearch c.project.internal\n", "", "search c.project.internal\n"),
        # a loopback resolver beside a reachable one: only the reachable one
        ("nameserver ::1\nnameserver 192.0.2.53\n", "nameserver 9.9.9.9\n", "nameserver 192.0.2.53\n"),
        ("nameserver 127.0.0.1\n", "", ""),  # nothing reachable: names don't resolve, said in security.md
    ],
)
def test_a_private_network_resolves_through_the_nodes_reachable_resolvers(node, upstream, sandbox_sees):
    assert sandbox.private_network_resolv_conf(node, upstream) == sandbox_sees


def test_a_private_network_blocks_the_dns_forwarder_and_the_nodes_own_addresses(settings, monkeypatch):
    """slirp4netns's forwarder relays to the node's loopback resolvers; the node's own
    addresses would take the sandbox's connections as the node's own."""
    settings.SANDBOX_BLOCKED_NETWORKS = ["169.254.0.0/16"]
    nic = SimpleNamespace
    monkeypatch.setattr(
        sandbox.psutil,
        "net_if_addrs",
        lambda: {
            "lo": [nic(family=sandbox.socket.AF_INET, address="127.0.0.1")],
            "eth0": [
                nic(family=sandbox.socket.AF_INET, address="10.20.0.5"),
                nic(family=10, address="fe80::1"),
            ],
        },
    )
    loopback = ["127.0.0.0/8", "0.0.0.0/8"]  # through tap0, always (test_sandbox_attacks)
    assert sandbox.blocked_destinations() == [*loopback, "169.254.0.0/16", "10.0.2.3/32", "10.20.0.5/32"]
    settings.SANDBOX_HOST_LOOPBACK = True  # the admin lets models reach the node
    assert sandbox.blocked_destinations() == [*loopback, "169.254.0.0/16", "10.0.2.3/32"]


# ------------------------------------------------------------------------------ /dev/shm

SHM_SOURCE = textwrap.dedent(
    """
    import concurrent.futures
    import multiprocessing
    import multiprocessing.synchronize
    import os
    import stat
    import time
    from _multiprocessing import SemLock


    def _size(path):
        info = os.statvfs(path)
        return info.f_blocks * info.f_frsize


    def processes(data, base_path):
        # joblib's test at import: a named semaphore, else "joblib will operate in serial mode".
        SemLock(0, 0, 1, name=f"/joblib-{os.getpid()}-probe", unlink=True)
        multiprocessing.synchronize.Semaphore(2, ctx=multiprocessing.get_context())
        with multiprocessing.Pool(2) as pool:
            pooled = pool.map(abs, [-1, -2, -3])
        with concurrent.futures.ProcessPoolExecutor(2) as executor:
            executed = list(executor.map(abs, [-4, -5]))
        mode = stat.S_IMODE(os.stat("/dev/shm").st_mode)
        return {"pool": pooled, "executor": executed, "mode": oct(mode), "bytes": _size("/dev/shm")}


    def leave(name, folder):
        with open(f"/dev/shm/{name}", "wb") as f:
            f.write(b"left by group A")
        open(f"{folder}/ready", "w").close()
        end = time.monotonic() + 60
        while not os.path.exists(f"{folder}/go") and time.monotonic() < end:
            time.sleep(0.05)
        return {"still_there": os.path.exists(f"/dev/shm/{name}")}


    def look(name, folder):
        return {"listing": os.listdir("/dev/shm"), "exists": os.path.exists(f"/dev/shm/{name}")}


    def fill(megabytes, folder):
        written, error = 0, None
        try:
            with open("/dev/shm/fill", "wb") as f:
                for _ in range(int(megabytes)):
                    f.write(bytes(1024 * 1024))
                    f.flush()
                    written += 1024 * 1024
        except OSError as exc:
            error = exc.errno
        try:  # /dev itself: a tmpfs with no size set
            open("/dev/fill", "wb").close()
            dev = None
        except OSError as exc:
            dev = exc.errno
        return {"errno": error, "written": written, "shm": _size("/dev/shm"), "tmp": _size("/tmp"), "dev": dev}


    def share(megabytes, folder):
        from multiprocessing import shared_memory

        # ftruncate does not reserve the pages: touching one past the tmpfs's size is a SIGBUS.
        block = shared_memory.SharedMemory(create=True, size=int(megabytes) * 1024 * 1024)
        block.buf[:] = bytes(block.size)
        return {"touched": block.size}
    """
)


def _shm_run(tmp_path: Path, entrypoint: str, args: list[str], limits: sandbox.Limits, **fields):
    folder = tmp_path / entrypoint
    folder.mkdir()
    (folder / "app.py").write_text(SHM_SOURCE)
    code = sandbox.UserCode(
        python=BASE_PYTHON, env={}, cwd=folder, read_only=(folder,), network=False, limits=limits, **fields
    )
    return run_oneshot(
        code, source=str(folder / "app.py"), entrypoint=entrypoint, kind="sync", args=args, timeout=60
    )


@pytest.mark.parametrize("platform_uid", [0, 1000], ids=["root-platform", "unprivileged-platform"])
def test_model_code_can_start_a_process_pool_and_joblibs_semaphores(
    settings, monkeypatch, tmp_path, platform_uid
):
    """bwrap's --dev left /dev/shm root's and 0755: Pool(2) failed with PermissionError and
    joblib (scikit-learn's n_jobs) fell back to serial mode. The build's own limits."""
    settings.UNSAFE_NO_SANDBOX = False
    if platform_uid:  # bwrap maps a user namespace, as for a platform run by an ordinary user
        monkeypatch.setattr(sandbox.os, "geteuid", lambda: platform_uid)
    limits = sandboxes.limits_for("build")
    result = _shm_run(tmp_path, "processes", ["{}", str(tmp_path)], limits)
    assert result.ok, (result.error, result.output)
    assert result.result == {
        "pool": [1, 2, 3],
        "executor": [4, 5],
        "mode": "0o1777",
        "bytes": sandbox.shm_bytes(limits),
    }
    assert sandbox.shm_bytes(limits) == settings.SANDBOX_TMP_MB * MB // 4


def test_a_sandboxs_dev_shm_is_its_own(settings, tmp_path):
    """Not the node's /dev/shm, and not another sandbox's, even while both run."""
    settings.UNSAFE_NO_SANDBOX = False
    name = f"neomaril-test-{uuid.uuid4().hex}"
    shared = tmp_path / "shared"
    shared.mkdir()
    limits = sandbox.Limits(processes=64, tmp_mb=8)
    left = {}
    leaving = threading.Thread(
        target=lambda: left.update(
            run=_shm_run(tmp_path, "leave", [name, str(shared)], limits, writable=shared)
        )
    )
    leaving.start()
    try:
        end = time.monotonic() + 30
        while not (shared / "ready").exists() and leaving.is_alive() and time.monotonic() < end:
            time.sleep(0.05)
        assert (shared / "ready").exists(), left
        assert not (Path("/dev/shm") / name).exists()
        looked = _shm_run(tmp_path, "look", [name, str(tmp_path)], limits)
    finally:
        (shared / "go").touch()
        leaving.join(60)
    assert looked.ok, (looked.error, looked.output)
    assert name not in looked.result["listing"] and looked.result["exists"] is False
    assert left["run"].ok, (left["run"].error, left["run"].output)
    assert left["run"].result == {"still_there": True}  # it was there all along, in its own sandbox
    assert not (Path("/dev/shm") / name).exists()


@pytest.mark.parametrize("platform_uid", [0, 1000], ids=["root-platform", "unprivileged-platform"])
def test_writing_past_dev_shms_size_fails_with_no_space_left(settings, monkeypatch, tmp_path, platform_uid):
    """/dev/shm is the node's RAM: a quarter of the /tmp's size, then ENOSPC. In a user
    namespace /dev (and its /dev/shm) was the job's own, a tmpfs of half the node's RAM."""
    settings.UNSAFE_NO_SANDBOX = False
    if platform_uid:
        monkeypatch.setattr(sandbox.os, "geteuid", lambda: platform_uid)
    limits = sandbox.Limits(processes=64, tmp_mb=8)
    result = _shm_run(tmp_path, "fill", ["16", str(tmp_path)], limits)
    assert result.ok, (result.error, result.output)
    assert result.result["errno"] == errno.ENOSPC
    assert result.result["shm"] == sandbox.shm_bytes(limits) == 2 * MB
    assert result.result["written"] <= 2 * MB
    assert result.result["tmp"] == 8 * MB  # the /tmp keeps its own size
    assert result.result["dev"] == errno.EROFS


def test_shared_memory_past_dev_shms_size_is_explained(settings, tmp_path):
    """A SharedMemory larger than /dev/shm is created, then its pages kill the job with
    SIGBUS (no error to catch): the failure says what it usually means and what raises it."""
    settings.UNSAFE_NO_SANDBOX = False
    limits = sandboxes.limits_for("execution")
    result = _shm_run(tmp_path, "share", [str(settings.SANDBOX_TMP_MB), str(tmp_path)], limits)
    assert not result.ok
    assert result.returncode == -signal.SIGBUS, (result.error, result.output)
    assert result.limit == (
        "The model's code was stopped by SIGBUS, which in the sandbox usually means shared memory larger "
        f"than /dev/shm's {settings.SANDBOX_TMP_MB // 4} MB (a quarter of /tmp's: raise "
        "NEOMARIL_SANDBOX_TMP_MB to allow more)."
    )
    assert result.error.endswith(result.limit)
