"""The one launcher of user code: every process that runs an uploaded model's code starts here.

Smoke tests, warm runners, Async executions, training runs and monitoring jobs all
describe their process as a ``UserCode`` and hand it to ``launch``, which builds the
command line (``runner.py`` under the model environment's interpreter), its complete
environment, its limits and its sandbox. Nothing else starts user code.

The sandbox is bubblewrap (``bwrap``), chosen over Landlock and nsjail because it is a
small, audited Debian package that sets up namespaces, bind mounts and privileges in one
exec, without a daemon; docs/security.md says why in full. The process sees only:

- the system's read-only library and binary folders (``/usr`` and a few files of ``/etc``),
- the interpreter's installation and the model's environment, read-only,
- the folders the job names (the model's folder read-only; an execution's folder
  read-write), a private size-limited ``/tmp`` and ``/dev/shm``, and a ``/proc`` of its own
  PID namespace.

It never runs as root: when the platform is root, each sandbox gets its own unprivileged
uid from a pool (so one job's process limit never counts another's), with no
capabilities and ``no_new_privs``. Everything it starts dies with it: a PID namespace
whose init is killed when the launching thread or process goes away. Limits are rlimits
set by ``prlimit`` right before the interpreter starts (memory per process, processes,
file size, CPU time); the caller enforces the total written in the job's folder.

A job allowed the network still gets a network namespace of its own: slirp4netns (user-mode
NAT, a small Debian package; podman's rootless network) connects it to the outside, so the
job can reach other machines but cannot listen on the node's ports, see its sockets, or
reach its loopback services (``NEOMARIL_SANDBOX_NETWORK``, docs/security.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import ipaddress
import json
import logging
import os
import random
import select
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from django.conf import settings

logger = logging.getLogger(__name__)

RUNNER_PATH: Path = Path(__file__).resolve().with_name("runner.py")
# Where runner.py appears inside a sandbox (the platform's source tree is not visible).
SANDBOX_RUNNER_PATH = "/opt/neomaril/runner.py"
# The runner loads its harnesses (training, monitoring) from beside itself, in and out of the sandbox.
HARNESS_PATH: Path = RUNNER_PATH.with_name("training_harness.py")
SANDBOX_HARNESS_PATH = "/opt/neomaril/training_harness.py"
MONITORING_HARNESS_PATH: Path = RUNNER_PATH.with_name("monitoring_harness.py")
SANDBOX_MONITORING_HARNESS_PATH = "/opt/neomaril/monitoring_harness.py"
# Inside the sandbox HOME is the private /tmp: libraries that cache in ~ still work.
SANDBOX_HOME = "/tmp"  # noqa: S108  (a private tmpfs inside the sandbox)
SANDBOX_SHM = "/dev/shm"  # noqa: S108  (a private tmpfs inside the sandbox too)

# Files of /etc a Python program legitimately needs: the dynamic loader's cache, name
# resolution, TLS roots, time zone. Not passwd/shadow: a small passwd is written instead.
_ETC_FILES = (
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "resolv.conf",
    "hosts",
    "nsswitch.conf",
    "host.conf",
    "gai.conf",
    "ssl",
    "ca-certificates",
    "ca-certificates.conf",
    "localtime",
    "timezone",
    "mime.types",
    "alternatives",
    "protocols",
    "services",
)
# slirp4netns's fixed addresses: the node's loopback (when allowed), its DNS forwarder.
SLIRP_HOST_ADDRESS = "10.0.2.2"
SLIRP_DNS_ADDRESS = "10.0.2.3"
# systemd-resolved's list of the upstream servers behind its 127.0.0.53.
SYSTEMD_RESOLVED_UPSTREAM = "/run/systemd/resolve/resolv.conf"
NETWORK_SETUP_SECONDS = 10.0
NS_GET_USERNS = 0xB701  # ioctl on a namespace's descriptor: its owning user namespace (linux/nsfs.h)
_SYSTEM_DIRS = ("/usr",)
_MERGED_USR_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")


class SandboxUnavailable(RuntimeError):
    """User code cannot be started safely here; the message says what is missing and the fix."""


@dataclass(frozen=True)
class Limits:
    """What one user-code process may use; 0 means no limit."""

    memory_mb: int = 0  # per process (RLIMIT_AS)
    processes: int = 0  # processes and threads of the sandbox's uid (RLIMIT_NPROC)
    disk_mb: int = 0  # largest file (RLIMIT_FSIZE) and total written in the job's folder
    cpu_seconds: int = 0  # CPU time (RLIMIT_CPU)
    tmp_mb: int = 512  # size of the private /tmp
    # The settings that raise each limit, named in the failure messages.
    names: Mapping[str, str] = field(default_factory=dict)

    def prlimit_args(self) -> list[str]:
        args = ["--core=0"]
        if self.memory_mb:
            args.append(f"--as={self.memory_mb * 1024 * 1024}")
        if self.processes:
            args.append(f"--nproc={self.processes}")
        if self.disk_mb:
            args.append(f"--fsize={self.disk_mb * 1024 * 1024}")
        if self.cpu_seconds:
            args.append(f"--cpu={self.cpu_seconds}")
        return args

    def explain(self, error: str | None, returncode: int | None) -> str | None:
        """The limit that explains a failure, as a sentence for the user, or None."""
        text = error or ""
        if self.cpu_seconds and returncode in (-signal.SIGXCPU, -signal.SIGKILL) and "SIGXCPU" in text:
            return self._sentence("cpu", f"{self.cpu_seconds} s of CPU time")
        if self.memory_mb and ("MemoryError" in text or "Cannot allocate memory" in text):
            return self._sentence("memory", f"{self.memory_mb} MB of memory per process")
        if self.processes and (
            "BlockingIOError" in text
            or "Resource temporarily unavailable" in text
            or "can't start new thread" in text
        ):
            return self._sentence("processes", f"{self.processes} processes and threads")
        shm_mb = shm_bytes(self) // 2**20
        if "File too large" in text or "No space left on device" in text or returncode == -signal.SIGXFSZ:
            what = f"{self.disk_mb} MB per file in its folder, {self.tmp_mb} MB in /tmp and {shm_mb} MB in /dev/shm"
            return self._sentence("disk", what, also=("tmp", "/tmp and /dev/shm"))  # noqa: S108 (a message)
        # A tmpfs page that cannot be had is a SIGBUS, not an error: shared memory
        # (multiprocessing.shared_memory, a joblib memmap) larger than /dev/shm.
        if returncode == -signal.SIGBUS or "SIGBUS" in text:
            return (
                f"The model's code was stopped by SIGBUS, which in the sandbox usually means shared memory "
                f"larger than /dev/shm's {shm_mb} MB"
                + (
                    f" (a quarter of /tmp's: raise {self.names['tmp']} to allow more)."
                    if "tmp" in self.names
                    else "."
                )
            )
        return None

    def disk_exceeded_message(self) -> str:
        return self._sentence("disk", f"{self.disk_mb} MB written in its folder")

    def _sentence(self, which: str, what: str, also: tuple[str, str] | None = None) -> str:
        """`also`: (a second limit's name, what it covers), named when its setting differs."""
        setting = self.names.get(which)
        other = self.names.get(also[0]) if also else None
        if setting and other and other != setting:
            return (
                f"The model's code hit the sandbox limit of {what} "
                f"(raise {setting} for its folder, {other} for {also[1]})."
            )
        return f"The model's code hit the sandbox limit of {what}" + (
            f" (raise {setting} to allow more)." if setting else "."
        )


@dataclass(frozen=True)
class UserCode:
    """One process that runs user code: what it runs, what it sees, what it may use."""

    python: Path  # the model environment's interpreter
    env: Mapping[str, str]  # the job's variables: the model's .env, inputFileName, ...
    cwd: Path
    runner_args: Sequence[str] = ()  # runner.py's arguments ("oneshot", or "serve" and its options)
    read_only: Sequence[Path] = ()  # the model's folder, ...
    writable: Path | None = None  # an execution's own folder
    protected: Sequence[Path] = ()  # files inside `writable` it reads but can't change or remove (the input)
    network: bool = True  # outbound network; False leaves only a private loopback
    limits: Limits = Limits()
    pass_fds: Sequence[int] = ()  # e.g. the listening socket the host made for a runner


class Launched:
    """A started user-code process and the sandbox uid it holds until it is released."""

    def __init__(
        self,
        process: subprocess.Popen,
        uid: int | None,
        lease: int | None,
        sandboxed: bool,
        network_helper: subprocess.Popen | None = None,
    ):
        self.process = process
        self.sandboxed = sandboxed
        self.uid = uid
        self._lease = lease
        # Threads of the model host can release one runner at once (a crash seen while it is
        # being stopped): the lease's fd must be closed once, or the second close could hit
        # the same number reused by another job's lease and free that job's uid.
        self._release_lock = threading.Lock()
        # slirp4netns of a private network: it ends when the sandbox's end of its exit pipe closes.
        self.network_helper = network_helper

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The runner's exit status; a signal that killed it inside the sandbox is negative too.

        bwrap reports its child's death by signal N as exit status 128 + N.
        """
        code = self.process.returncode
        if self.sandboxed and code is not None and 128 < code < 128 + signal.NSIG:
            return -(code - 128)
        return code

    def terminate(self) -> None:
        """Ask the program in the sandbox to stop (SIGTERM), as if it ran unsandboxed.

        bwrap does not forward signals, and a signal to bwrap itself is a kill of all.
        """
        if not self.sandboxed:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            return
        with contextlib.suppress(psutil.Error):
            for proc in psutil.Process(self.process.pid).children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    if proc.name() != "bwrap":
                        proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the sandbox: its init dies, and with it every process of its PID namespace."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def release(self) -> None:
        """Free the sandbox uid for another job (once the process has been reaped)."""
        with self._release_lock:
            lease, self._lease = self._lease, None
        if lease is not None:
            os.close(lease)
        if self.network_helper is not None and self.process.poll() is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.network_helper.wait(2)  # reaped, not left a zombie

    def __del__(self) -> None:
        self.release()


def build_runner_env(extra: Mapping[str, str], *, home: str = SANDBOX_HOME) -> dict[str, str]:
    """The complete environment of a user-code process: a minimal base plus the job's values.

    Nothing is inherited from the platform's environment, so its secrets never reach user
    code. ``extra`` (the model's ``.env``, ``inputFileName``...) wins over the base.
    """
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": home,
        "TMPDIR": SANDBOX_HOME,
        "LANG": "C.UTF-8",  # the runner's output is decoded as UTF-8
        "PYTHONUNBUFFERED": "1",  # log lines reach the user as they are printed
        "PYTHONDONTWRITEBYTECODE": "1",  # model folders are read-only
    }
    for key, value in extra.items():
        # exec would reject these with a less helpful message, at run time.
        if not isinstance(key, str) or not key or "=" in key or "\0" in key:
            raise ValueError(f"invalid environment variable name {key!r}")
        if not isinstance(value, str) or "\0" in value:
            raise ValueError(f"environment variable {key} must be a string without NUL bytes")
        env[key] = value
    return env


def launch(code: UserCode, **popen_kwargs) -> Launched:
    """Start ``code`` in its sandbox. ``popen_kwargs`` are the stdio arguments of Popen.

    The process is the leader of a new session, so ``Launched.kill`` reaches all of it.
    Raises SandboxUnavailable when bubblewrap cannot run here and the operator did not
    opt out; OSError when the interpreter cannot be started.
    """
    python = Path(code.python)
    if not python.exists():
        # Callers of the model read this: no server path in it (the log has it).
        logger.error("cannot launch %s: its interpreter %s does not exist", code.cwd, python)
        raise FileNotFoundError(
            "the model's environment is missing on this node: restart the model to rebuild it"
        )
    sandboxed = not settings.UNSAFE_NO_SANDBOX
    if sandboxed:
        check_available(code.network)
    uid = lease = None
    if sandboxed and os.geteuid() == 0:
        uid, lease = _lease_uid(
            settings.RUN_DIR / "uids", settings.SANDBOX_UID_BASE, settings.SANDBOX_UID_COUNT
        )
    read_fds: list[int] = []
    network = process = helper = None
    try:
        if sandboxed and code.network and settings.SANDBOX_NETWORK == "private":
            network = _PrivateNetwork()
        env = build_runner_env(code.env)
        if sandboxed:
            _open_to_sandbox(code, uid)
            argv = _bwrap_argv(code, python, uid, read_fds, network)
        else:
            argv = [
                "/usr/bin/setpriv",
                "--pdeathsig=SIGKILL",  # dies with the launching thread, as a sandbox does
                "--",
                "/usr/bin/prlimit",
                *code.limits.prlimit_args(),
                "--",
                str(python),
                "-s",
                str(RUNNER_PATH),
                *code.runner_args,
            ]
            env["HOME"] = env["TMPDIR"] = str(code.writable or code.cwd)
        process = subprocess.Popen(  # noqa: S603  (argv is built here, never from user input)
            argv,
            env=env,
            cwd=str(code.cwd) if not sandboxed else "/",
            pass_fds=(*code.pass_fds, *read_fds, *(network.sandbox_fds() if network else ())),
            start_new_session=True,
            close_fds=True,
            **popen_kwargs,
        )
        if network is not None:
            helper = network.connect(process, in_user_namespace=uid is None)
    except BaseException:
        if process is not None:  # started, but its network could not be: nothing of it stays
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            for stream in (process.stdin, process.stdout, process.stderr):  # the caller never sees them
                if stream is not None:
                    stream.close()
        if lease is not None:
            os.close(lease)
        raise
    finally:
        for fd in read_fds:
            os.close(fd)
        if network is not None:
            network.close()
    return Launched(process, uid, lease, sandboxed, helper)


class _PrivateNetwork:
    """The outbound path of one sandbox allowed the network.

    bwrap makes the namespace (``--unshare-net``), reports the namespace's pid
    (``--info-fd``) and holds the program (``--block-fd``) until slirp4netns has connected
    the namespace and the blocked destinations have their unreachable routes. slirp4netns
    ends when every copy of its exit pipe's write end has closed: only bwrap and its sandbox
    hold one, so the helper ends with the sandbox, whoever kills it.
    """

    def __init__(self) -> None:
        self.info_read, self.info_write = os.pipe()
        self.block_read, self.block_write = os.pipe()
        self.exit_read, self.exit_write = os.pipe()
        self._open = [self.info_read, self.info_write, self.block_read, self.block_write]
        self._open += [self.exit_read, self.exit_write]

    def sandbox_fds(self) -> tuple[int, ...]:
        return (self.info_write, self.block_read, self.exit_write)

    def bwrap_args(self) -> list[str]:
        return ["--unshare-net", "--info-fd", str(self.info_write), "--block-fd", str(self.block_read)]

    def connect(self, process: subprocess.Popen, *, in_user_namespace: bool) -> subprocess.Popen:
        """Connect the started sandbox's namespace, then let its program run. Returns slirp4netns."""
        for fd in self.sandbox_fds():  # the sandbox's now: the exit pipe must close with it
            self._close(fd)
        pid = self._namespace_pid(process)
        # The namespaces by descriptor: the pid's own may change (bwrap nests a second user
        # namespace for the sandbox's uid), the network's owner does not.
        net = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        self._open.append(net)
        namespaces = [f"--net=/proc/self/fd/{net}"]
        helper_options = ["--enable-sandbox"]  # its own empty root and no capabilities once connected
        self.namespace_fds: tuple[int, ...] = (net,)
        if in_user_namespace:
            owner = fcntl.ioctl(net, NS_GET_USERNS)  # a new descriptor of the owning user namespace
            self._open.append(owner)
            self.namespace_fds = (net, owner)
            namespaces = [f"--user=/proc/self/fd/{owner}", "--preserve-credentials", *namespaces]
            # Its sandbox needs uid 0 in that namespace, which maps only the platform's uid.
            helper_options = [f"--userns-path=/proc/self/fd/{owner}"]
        # bwrap reports the pid before its child has brought the loopback up over netlink;
        # a second netlink user in the namespace meanwhile (slirp4netns, ip) fails either.
        self._wait_for_loopback(namespaces)
        self._block_destinations(namespaces)
        ready_read, ready_write = os.pipe()
        self._open += [ready_read, ready_write]
        argv = [
            _which("slirp4netns") or "slirp4netns",
            "--configure",
            "--mtu=65520",
            *helper_options,
            "--enable-seccomp",
            f"--ready-fd={ready_write}",
            f"--exit-fd={self.exit_read}",
        ]
        if not settings.SANDBOX_HOST_LOOPBACK:
            argv.append("--disable-host-loopback")
        with tempfile.TemporaryFile() as errors:  # read only when it fails
            helper = subprocess.Popen(  # noqa: S603
                [*argv, "--netns-type=path", f"/proc/self/fd/{net}", "tap0"],
                pass_fds=(ready_write, self.exit_read, *self.namespace_fds),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=errors,
                start_new_session=True,
            )
            try:
                self._close(ready_write)
                self._close(self.exit_read)
                if not _read_within(ready_read, 1, NETWORK_SETUP_SECONDS):
                    errors.seek(0)
                    said = errors.read().decode(errors="replace").strip().splitlines()
                    raise SandboxUnavailable(
                        "slirp4netns could not connect the sandbox's private network"
                        + (f": {said[-1]}" if said else "")
                        + ". Install it (apt-get install slirp4netns), or set NEOMARIL_SANDBOX_NETWORK=host."
                    )
                os.write(self.block_write, b"1")
            except BaseException:
                helper.kill()
                helper.wait()
                raise
        return helper

    def _ip(self, namespaces: list[str], args: list[str], stdin: bytes = b"") -> subprocess.CompletedProcess:
        try:
            return subprocess.run(  # noqa: S603
                [_which("nsenter") or "nsenter", *namespaces, _which("ip") or "ip", *args],
                input=stdin,
                pass_fds=self.namespace_fds,
                capture_output=True,
                timeout=NETWORK_SETUP_SECONDS,
                env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            )
        except subprocess.TimeoutExpired as exc:
            raise SandboxUnavailable(
                f"Setting up the sandbox's private network timed out (ip {args[0]})."
            ) from exc

    def _wait_for_loopback(self, namespaces: list[str]) -> None:
        deadline = time.monotonic() + NETWORK_SETUP_SECONDS
        while True:
            link = self._ip(namespaces, ["-o", "link", "show", "lo"])
            flags = link.stdout.decode(errors="replace").partition("<")[2].partition(">")[0].split(",")
            if "UP" in flags:
                return
            if link.returncode != 0 or time.monotonic() > deadline:
                said = link.stderr.decode(errors="replace").strip() or "its loopback never came up"
                raise SandboxUnavailable(f"The sandbox's private network could not be set up: {said}")
            time.sleep(0.002)

    def _block_destinations(self, namespaces: list[str]) -> None:
        """Unreachable routes, set before any route out exists: the program can't change them
        (no CAP_NET_ADMIN), and a packet to them never leaves the namespace."""
        blocked = blocked_destinations()
        # One ip for them all; it tells IPv4 from IPv6 by the address.
        commands = "".join(f"route add unreachable {network}\n" for network in blocked)
        route = self._ip(namespaces, ["-batch", "-"], commands.encode())
        if route.returncode != 0:
            said = route.stderr.decode(errors="replace").strip()
            raise SandboxUnavailable(
                f"The sandbox's routes blocking {', '.join(blocked)} could not be added: {said}"
            )

    def _namespace_pid(self, process: subprocess.Popen) -> int:
        """The pid bwrap reports on its info pipe: its child, in the new namespaces."""
        text = b""
        deadline = time.monotonic() + NETWORK_SETUP_SECONDS
        while True:
            chunk = _read_within(self.info_read, 4096, deadline - time.monotonic())
            if not chunk:
                code = process.poll()
                raise SandboxUnavailable(
                    "bubblewrap did not start the sandbox's private network"
                    + (f" (exit status {code})" if code is not None else " in time")
                )
            text += chunk
            with contextlib.suppress(ValueError):
                return int(json.loads(text)["child-pid"])

    def _close(self, fd: int) -> None:
        if fd in self._open:
            self._open.remove(fd)
            os.close(fd)

    def close(self) -> None:
        for fd in list(self._open):
            self._close(fd)


# A socket bound to tap0 (SO_BINDTODEVICE, IP_UNICAST_IF, IP_PKTINFO) misses the namespace's
# own `local 127.0.0.0/8 dev lo` route and takes the default one out to slirp4netns, which
# delivers 127.x to the node's loopback, --disable-host-loopback or not (it covers 10.0.2.2
# only). Unreachable in the main table, they still reach the sandbox's own loopback: the
# local table is looked up first.
NODE_LOOPBACK_RANGES = ("127.0.0.0/8", "0.0.0.0/8")


def blocked_destinations() -> list[str]:
    """What a private network's unreachable routes cover: the node's loopback through tap0
    (always: an allowed host loopback is slirp's 10.0.2.2); the admin's list; slirp4netns's
    DNS forwarder (not used: it would relay to the node's loopback resolvers); and, unless
    the node's loopback is allowed, the node's own addresses, whose services would otherwise
    see the sandbox's connections arrive from the node itself. Read at every launch (tens of
    microseconds), like resolv.conf: a node's addresses and resolvers change with DHCP."""
    blocked = [*NODE_LOOPBACK_RANGES, *settings.SANDBOX_BLOCKED_NETWORKS, f"{SLIRP_DNS_ADDRESS}/32"]
    if not settings.SANDBOX_HOST_LOOPBACK:
        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family == socket.AF_INET and not address.address.startswith("127."):
                    blocked.append(f"{address.address}/32")
    return list(dict.fromkeys(blocked))


def _read_within(fd: int, size: int, seconds: float) -> bytes:
    """Up to ``size`` bytes of ``fd``, or b"" at its end or after ``seconds``."""
    poller = select.poll()  # not select(): a busy host's descriptors pass 1024
    poller.register(fd, select.POLLIN)
    return os.read(fd, size) if poller.poll(max(seconds, 0) * 1000) else b""


def _which(tool: str) -> str | None:
    return shutil.which(tool, path="/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")


@functools.cache
def _probe() -> str | None:
    """None when bubblewrap works here, else why not."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return "bubblewrap is not installed (apt-get install bubblewrap)"
    try:
        probe = subprocess.run(  # noqa: S603
            [bwrap, "--ro-bind", "/", "/", "--unshare-pid", "--die-with-parent", "/bin/true"],
            capture_output=True,
            timeout=30,
            env={"PATH": "/usr/bin:/bin"},
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bubblewrap could not be started: {exc}"
    if probe.returncode != 0:
        reason = probe.stderr.decode(errors="replace").strip() or f"exit status {probe.returncode}"
        return f"bubblewrap cannot create namespaces here ({reason}); are user namespaces turned off?"
    return None


def check_available(network: bool = False) -> None:
    """Raise SandboxUnavailable when user code (`network`: allowed the network) could not
    be sandboxed on this machine."""
    problem = _probe()
    if problem is None and network and settings.SANDBOX_NETWORK == "private":
        missing = [tool for tool in ("slirp4netns", "nsenter", "ip") if _which(tool) is None]
        if missing:
            problem = (
                f"the private network of models allowed the network needs {', '.join(missing)} "
                "(apt-get install slirp4netns iproute2 util-linux; or NEOMARIL_SANDBOX_NETWORK=host, "
                "docs/security.md)"
            )
    if problem:
        raise SandboxUnavailable(
            f"User code is not run without its sandbox, and {problem}. Install bubblewrap, or on a "
            "single-user machine only, set NEOMARIL_UNSAFE_NO_SANDBOX=1."
        )


# ---------------------------------------------------------------------- internals


def _lease_uid(folder: Path, base: int, count: int) -> tuple[int, int]:
    """An unused uid of the pool, held by an flock until the lease fd is closed."""
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    start = random.randrange(count)  # noqa: S311  (spreads contention, not a secret)
    for i in range(count):
        n = (start + i) % count
        fd = os.open(folder / f"{n}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        return base + n, fd
    raise SandboxUnavailable(
        f"All {count} sandbox uids are in use; raise NEOMARIL_SANDBOX_UID_COUNT or run fewer jobs at once."
    )


def _open_to_sandbox(code: UserCode, uid: int | None) -> None:
    """Let the sandbox's uid read its folders and write its own (they are root's, 0600/0700).

    Only the sandbox sees them, through its bind mounts: the data folder around them stays
    closed to everyone else.
    """
    for folder in code.read_only:
        _make_readable(Path(folder))
    env_root = Path(code.python).parent.parent
    with contextlib.suppress(OSError):
        if env_root.stat().st_mode & 0o005 != 0o005:
            env_root.chmod(0o755)
    if code.writable is not None and uid is not None:
        # bwrap enters it (--chdir) before it becomes the job's uid, without DAC override.
        os.chmod(code.writable, 0o755)  # noqa: S103  (only its sandbox sees it)
        for root, dirs, files in os.walk(code.writable):
            for name in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
                os.lchown(name, uid, uid)


def _make_readable(folder: Path) -> None:
    """Open ``folder``'s tree to the sandbox's uid, following no link on the way.

    A job may still be writing in a folder another job reads (an Async execution in the
    folder of its model's monitoring): it can swap a file or a folder for a link between
    our look and our chmod. So every folder is walked and changed through its descriptor
    (``os.fwalk``), and every file through one opened without following a link: a chmod
    by path would land on whatever host file the link names (root's 0600 keys, /etc/shadow).
    """
    for _root, _dirs, files, dir_fd in os.fwalk(folder):
        with contextlib.suppress(OSError):
            mode = os.fstat(dir_fd).st_mode
            if mode & 0o005 != 0o005:
                os.fchmod(dir_fd, (mode & 0o7777) | 0o055)
        for name in files:
            with contextlib.suppress(OSError):
                if os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode & 0o004:
                    continue  # readable already, or a link (never changed)
                fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dir_fd)
                try:
                    info = os.fstat(fd)
                    if stat.S_ISREG(info.st_mode) and info.st_mode & 0o004 == 0:
                        os.fchmod(fd, (info.st_mode & 0o7777) | 0o044)
                finally:
                    os.close(fd)


def _read_text(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return ""


def private_network_resolv_conf(node: str, resolved_upstream: str = "") -> str:
    """The resolv.conf of a sandbox with a private network: the node's, less the resolvers
    on the node's loopback, which the sandbox cannot reach. With systemd-resolved
    (127.0.0.53) its upstream servers stand in, as podman does; slirp4netns's own DNS
    forwarder (10.0.2.3) is not used: slirp4netns 1.2.0 cannot read resolv.conf from
    inside its sandbox (rootless-containers/slirp4netns#315)."""

    blocked = [ipaddress.ip_network(network) for network in settings.SANDBOX_BLOCKED_NETWORKS]

    def reachable(line: str) -> bool:
        fields = line.split()
        if len(fields) < 2 or fields[0] != "nameserver":
            return True
        try:
            address = ipaddress.ip_address(fields[1].partition("%")[0])
        except ValueError:
            return False
        # No IPv6 out of the sandbox; the blocked ranges hold some clouds' resolvers (GCP's
        # 169.254.169.254): unreachable, they would only make every lookup wait.
        return address.version == 4 and not address.is_loopback and not any(address in net for net in blocked)

    kept = [line for line in node.splitlines() if reachable(line)]
    if not any(line.split()[:1] == ["nameserver"] for line in kept):
        kept += [
            line
            for line in resolved_upstream.splitlines()
            if line.split()[:1] == ["nameserver"] and reachable(line)
        ]
    return "".join(f"{line}\n" for line in kept)


def _interpreter_roots(python: Path) -> list[Path]:
    """Folders the environment's interpreter needs: its installation (stdlib, libpython)."""
    roots: list[Path] = []
    cfg = python.parent.parent / "pyvenv.cfg"
    with contextlib.suppress(OSError):
        for line in cfg.read_text().splitlines():
            key, _, value = line.partition("=")
            if key.strip() == "home" and value.strip():
                roots.append(Path(value.strip()).resolve().parent)
    roots.append(python.resolve().parent.parent)
    return [r for r in dict.fromkeys(roots) if not _under(r, _SYSTEM_DIRS)]


def _under(path: Path, tops: Sequence[str]) -> bool:
    return any(path == Path(top) or Path(top) in path.parents for top in tops)


def _passwd(uid: int) -> bytes:
    return (
        "root:x:0:0:root:/nonexistent:/usr/sbin/nologin\n"
        f"neomaril:x:{uid}:{uid}:Neomaril model:{SANDBOX_HOME}:/usr/sbin/nologin\n"
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
    ).encode()


def _group(uid: int) -> bytes:
    return f"root:x:0:\nneomaril:x:{uid}:\nnogroup:x:65534:\n".encode()


def _data_fd(data: bytes, read_fds: list[int]) -> str:
    read, write = os.pipe()
    try:
        os.write(write, data)  # a few hundred bytes: fits in the pipe's buffer
    finally:
        os.close(write)
    read_fds.append(read)
    return str(read)


# seccomp_data: nr at 0, arch at 4, args[0] (its low 32 bits, little-endian) at 16.
# arch -> (AUDIT_ARCH_*, clone, unshare, (add_key, request_key, keyctl)); clone3 is 435 everywhere.
_SECCOMP_ARCHES = {
    "x86_64": (0xC000003E, 56, 272, (248, 249, 250)),
    "aarch64": (0xC00000B7, 220, 97, (217, 218, 219)),
}


def _no_userns_seccomp() -> bytes | None:
    """A classic BPF program for ``bwrap --seccomp``: clone/unshare with CLONE_NEWUSER fail (EPERM),
    and so does every call of the kernel's keyrings (add_key, request_key, keyctl).

    A uid's user keyring outlives its processes: it would carry keys from one job to the
    next job that leases the same sandbox uid, another group's. clone3 answers ENOSYS
    (its flags are out of a filter's reach; libc then uses clone), and so does any syscall
    of another ABI (i386 ``int 0x80``, x32), which would bypass the numbers checked here.
    None on an architecture not listed.
    """
    known = _SECCOMP_ARCHES.get(os.uname().machine)
    if known is None:
        return None
    audit_arch, clone, unshare, (add_key, request_key, keyctl) = known
    ld, jeq, jge, jset, ret = 0x20, 0x15, 0x35, 0x45, 0x06
    allow, enosys, eperm = 0x7FFF0000, 0x00050000 | 38, 0x00050000 | 1
    program = [
        (ld, 0, 0, 4),
        (jeq, 1, 0, audit_arch),
        (ret, 0, 0, enosys),  # another ABI
        (ld, 0, 0, 0),
        (jge, 0, 1, 0x40000000),
        (ret, 0, 0, enosys),  # x32
        (jeq, 0, 1, 435),
        (ret, 0, 0, enosys),  # clone3
        (jeq, 6, 0, add_key),  # the keyrings: to the EPERM below
        (jeq, 5, 0, request_key),
        (jeq, 4, 0, keyctl),
        (jeq, 1, 0, unshare),
        (jeq, 0, 3, clone),
        (ld, 0, 0, 16),
        (jset, 0, 1, 0x10000000),  # CLONE_NEWUSER
        (ret, 0, 0, eperm),
        (ret, 0, 0, allow),
    ]
    return b"".join(struct.pack("=HBBI", *op) for op in program)


def shm_bytes(limits: Limits) -> int:
    """The size of a sandbox's private /dev/shm: a quarter of its /tmp's.

    Both are tmpfs, in the node's RAM. /dev/shm holds what a job's processes hand each
    other (semaphores, shared arrays, batches), not its files: joblib memory-maps large
    arrays in /tmp when /dev/shm has under 2 GB. A share, not a second /tmp, keeps what
    one sandbox can pin in RAM near NEOMARIL_SANDBOX_TMP_MB, with no setting of its own.
    """
    return limits.tmp_mb * 1024 * 1024 // 4


def _bwrap_argv(
    code: UserCode, python: Path, uid: int | None, read_fds: list[int], network: _PrivateNetwork | None = None
) -> list[str]:
    limits = code.limits
    inner_uid = uid if uid is not None else os.geteuid()
    argv = [
        shutil.which("bwrap") or "bwrap",
        "--die-with-parent",  # the sandbox dies with the thread/process that launched it
        "--new-session",  # no TIOCSTI into the platform's terminal
        "--unshare-pid",
        "--unshare-ipc",
        "--unshare-uts",
        "--hostname",
        "neomaril-model",
        "--unshare-cgroup-try",
    ]
    if network is not None:
        argv += network.bwrap_args()
    elif not code.network:
        argv.append("--unshare-net")
    if uid is not None:
        # Root: bwrap sets up the sandbox with only the capabilities setpriv needs to
        # become the job's uid, which then drops them all.
        argv += ["--cap-drop", "ALL", "--cap-add", "CAP_SETUID", "--cap-add", "CAP_SETGID"]
        # Without a user namespace of its own, --disable-userns is not available: a
        # seccomp filter refuses new user namespaces (root with every capability in a
        # nested one, the door to most kernel exploits) instead. It also refuses the
        # keyrings: the pool's uids are reused, and a uid's user keyring outlives its job.
        program = _no_userns_seccomp()
        if program is not None:
            argv += ["--seccomp", _data_fd(program, read_fds)]
    else:
        # Not root: a user namespace maps the platform's uid; it cannot nest another.
        argv += ["--unshare-user", "--uid", str(inner_uid), "--gid", str(os.getegid()), "--disable-userns"]

    made: set[str] = {"/"}

    def parents(dest: Path) -> list[str]:
        # bwrap creates missing parents 0700, which the job's uid could not cross.
        out = []
        for parent in reversed(dest.parents):
            p = str(parent)
            if p not in made:
                made.add(p)
                out += ["--perms", "0755", "--dir", p]
        made.add(str(dest))
        return out

    for top in _SYSTEM_DIRS:
        argv += ["--ro-bind", top, top]
        made.add(top)
    for link in _MERGED_USR_LINKS:
        if os.path.islink(link):
            argv += ["--symlink", os.readlink(link), link]
        elif os.path.isdir(link):
            argv += ["--ro-bind", link, link]
        made.add(link)
    argv += ["--perms", "0755", "--dir", "/etc"]
    made.add("/etc")
    for name in _ETC_FILES:
        path = f"/etc/{name}"
        if network is not None and name == "resolv.conf":
            resolv = private_network_resolv_conf(_read_text(path), _read_text(SYSTEMD_RESOLVED_UPSTREAM))
            argv += ["--perms", "0644", "--ro-bind-data", _data_fd(resolv.encode(), read_fds), path]
        elif os.path.exists(path):
            argv += ["--ro-bind", path, path]
    argv += ["--perms", "0644", "--ro-bind-data", _data_fd(_passwd(inner_uid), read_fds), "/etc/passwd"]
    argv += ["--perms", "0644", "--ro-bind-data", _data_fd(_group(inner_uid), read_fds), "/etc/group"]
    argv += ["--proc", "/proc", "--dev", "/dev"]
    argv += ["--perms", "01777", "--size", str(limits.tmp_mb * 1024 * 1024), "--tmpfs", SANDBOX_HOME]
    made.add(SANDBOX_HOME)
    # --dev leaves /dev/shm root's and 0755: multiprocessing's semaphores (Pool, joblib's
    # workers) and shared memory could not be created. A private tmpfs, like a normal Linux's.
    # /dev itself is a tmpfs of no set size, owned by the job's uid in a user namespace: read-only.
    argv += ["--perms", "01777", "--size", str(shm_bytes(limits)), "--tmpfs", SANDBOX_SHM]
    argv += ["--remount-ro", "/dev"]  # not recursive: /dev/shm, /dev/pts and the devices stay writable
    if os.path.isdir("/sys/devices/system/cpu"):  # os.cpu_count() and BLAS read it
        cpu = "/sys/devices/system/cpu"
        argv += [*parents(Path(cpu)), "--ro-bind", cpu, cpu]

    read_only = [*_interpreter_roots(python), python.parent.parent, *map(Path, code.read_only)]
    for path in dict.fromkeys(read_only):
        argv += [*parents(path), "--ro-bind", str(path), str(path)]
    argv += [*parents(Path(SANDBOX_RUNNER_PATH)), "--ro-bind", str(RUNNER_PATH), SANDBOX_RUNNER_PATH]
    argv += ["--ro-bind", str(HARNESS_PATH), SANDBOX_HARNESS_PATH]
    argv += ["--ro-bind", str(MONITORING_HARNESS_PATH), SANDBOX_MONITORING_HARNESS_PATH]
    if code.writable is not None:
        argv += [*parents(Path(code.writable)), "--bind", str(code.writable), str(code.writable)]
        for path in code.protected:  # mounted over themselves: writes fail, and so do unlink and rename
            argv += ["--ro-bind", str(path), str(path)]
    argv += ["--chdir", str(code.cwd)]

    argv += ["--", "/usr/bin/prlimit", *limits.prlimit_args(), "--"]
    if uid is not None:
        argv += [
            "/usr/bin/setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--no-new-privs",
            "--",
        ]
    # -s: no user site-packages from $HOME. Not -I, which would also drop the PYTHON*
    # variables of the base environment and of the model's .env; runner.py removes its
    # own folder from sys.path itself.
    return [*argv, str(python), "-s", SANDBOX_RUNNER_PATH, *code.runner_args]
