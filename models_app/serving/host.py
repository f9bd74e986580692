"""The model host: owns the warm runner processes of Sync models on this node.

One per node (`manage.py modelhost`). Web processes talk to runners directly over
their Unix sockets; they ask the host, over its control socket, only to start runners
(`ensure`), to kill a runner stuck past the request timeout (`kill`), and for what is
running (`status`). A build asks it to `warm` the build about to go live: its runners
start and answer the schema example before the model is announced Deployed. A supervisor thread restarts crashed runners, retires runners of
models that are no longer deployed (or were rebuilt), starts the new live build of a
model this node was serving when another node built it (a rebuild, a new version, a
rollback), and evicts the least recently used runners when the count or memory budget
is exceeded.

A scaler thread makes the replicas follow the load: every second it reads each runner's
load counters (a shared-memory block the runner keeps, protocol.LoadBlock: readable
while it answers a call, which a ping is not) for how long it spent answering since the
last time (`busy`, the call in progress included), and whether calls waited for it
meanwhile (`waited`). A model whose runners are busy most of the
time while calls queue gets one more (one caller's calls one after another keep a runner
busy too, and another replica would only sit beside it), up to its max_replicas (default: this
node's cores) and within the budgets (a refusal is counted, and warned once while it
lasts; `status` reports the counts, and the evictions', for /metrics); one that could
do with a runner fewer for REPLICA_IDLE_SECONDS loses its highest replica, down to
min_replicas. A replica leaves by draining: its socket goes first, so web processes
stop choosing it (they look for the sockets that exist: aio.ReplicaBalancer), and the
process is stopped a moment later.

What runners print goes to one log per model on this node (paths.runner_log), which the
supervisor keeps under RUNNER_LOG_MAX_MB (cap_runner_log): a runner may write no file
larger than its sandbox's file-size limit, and a log grown to it would fail every print.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import logging
import os
import select
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from django.conf import settings
from django.db import close_old_connections, connection

from groups.outages import RepeatedFailure
from models_app import sandboxes
from models_app.environments import environment_path
from models_app.models import MLModel
from models_app.runtime import sandbox
from models_app.runtime.protocol import (
    MAX_CONTROL_FRAME_BYTES,
    LoadBlock,
    ProtocolError,
    predict_frame,
    read_frame,
    write_frame,
)
from models_app.serving import paths

logger = logging.getLogger(__name__)

SUPERVISE_INTERVAL = 1.0
# A caller's timer starts when it sends; the runner's when it takes the call, a little
# later: a call this close to the timeout on the runner's clock is the one that timed out.
STUCK_SLACK_SECONDS = 0.5
STATS_INTERVAL = 2.0
LOG_SWEEP_INTERVAL = 60.0  # seconds between sweeps of deleted models' runner logs
# A model whose runners crash this often is not restarted until someone calls it again.
CRASH_LIMIT, CRASH_WINDOW = 5, 60.0
# What a warm-up hands back of the runners' output (the build log shows it).
WARM_OUTPUT_BYTES = 64 * 1024
# How much of the end of a runner log is read for the lines shown with a load failure.
LOG_TAIL_BYTES = 64 * 1024
# Replicas follow the load: sampled this often; one more replica when the model's
# runners were busy this share of the last interval on average; one fewer when the rest
# would have been busy less than SCALE_DOWN_BELOW (for REPLICA_IDLE_SECONDS).
SCALE_INTERVAL = 1.0
SCALE_UP_AT = 0.75
SCALE_DOWN_BELOW = 0.5
# A draining replica keeps answering for this long after its socket is gone: web
# processes re-read which sockets exist every ReplicaBalancer.REFRESH seconds.
DRAIN_SECONDS = 2.0
# A runner whose connection broke while it loaded is given this long to be seen exited,
# so the caller is told its log (the import's error) rather than the broken connection.
EXIT_GRACE_SECONDS = 2.0


class HostError(Exception):
    """A runner could not be started; the message is for the caller.

    `code` names a cause the caller acts on (the control answer's `code`); `output` is
    what the model printed meanwhile, for a build's log.
    """

    code: str | None = None
    output: str = ""


class NotDeployed(HostError):
    """The model is not Deployed (any more): nothing to start. The caller answers what the
    run URL now does (`model_status`: None when there is no such Sync model)."""

    code = "not_deployed"

    def __init__(self, message: str, model_status: str | None):
        super().__init__(message)
        self.model_status = model_status


class LoadTimeout(HostError):
    """The model did not load within the cold-start timeout: no call could ever reach it."""

    code = "load_timeout"


def _draining_path(socket_path: Path) -> Path:
    """Where a leaving replica's socket waits, out of the web processes' sight."""
    return socket_path.with_name(f".{socket_path.name}.draining")


@dataclass
class Runner:
    model_hash: str
    model_id: int
    build: int
    replica: int
    socket_path: Path
    launched: sandbox.Launched
    loading_path: Path | None = None  # where the socket listens until the model is loaded
    load: LoadBlock | None = None  # the counters it keeps for the scaler
    log_start: int = 0  # where its output begins in the model's runner log
    started_at: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.time)
    requests: int = 0
    rss: int = 0
    expected_exit: bool = False
    # Load, from the runner's `busy` seconds (sampled by the scaler).
    busy: float = 0.0
    sampled_at: float = field(default_factory=time.monotonic)
    utilization: float = 0.0
    # Its count of predictions that ended with another call waiting, and whether that grew
    # since the last sample: calls queue, which another replica would have answered.
    waited: int = 0
    queued: bool = False
    # Calls waiting for it now, as near as its counters tell (/metrics' queue depth).
    calls_queued: int = 0
    warming_up: bool = False  # answering the schema example: not load, the scaler skips it
    draining_until: float | None = None  # leaving: its socket is gone, the process soon

    @property
    def process(self) -> subprocess.Popen:
        return self.launched.process

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def describe(self) -> dict:
        if self.alive:
            self.rss = _sandbox_rss(self.process.pid)
        return {
            "model": self.model_hash,
            "build": self.build,
            "replica": self.replica,
            "pid": self.process.pid,
            "alive": self.alive,
            "memory_bytes": self.rss,
            "requests": self.requests,
            "utilization": round(self.utilization, 3),
            "calls_queued": self.calls_queued,
            "draining": self.draining_until is not None,
            "started_at": self.started_at,
            "last_used": self.last_used,
            "socket": str(self.socket_path),
        }


def _read_from(path: Path, offset: int, limit: int) -> str:
    """What was appended to a runner log since `offset`: at most `limit` bytes, whole lines,
    and a last line saying where the rest is when there was more."""
    try:
        with open(path, "rb") as f:
            if offset > os.fstat(f.fileno()).st_size:
                offset = 0  # capped since (cap_runner_log): what is there came after
            f.seek(offset)
            data = f.read(limit + 1)
    except OSError:
        return ""
    if len(data) <= limit:
        return data.decode(errors="replace")
    kept = data[:limit]
    kept = kept[: kept.rfind(b"\n") + 1] or kept  # not a line cut in two
    return kept.decode(errors="replace") + (
        f"[... the model's output past {limit // 1024} KB is not in this log: see the runner's log, "
        f"{path.name}, on the node ...]\n"
    )


def previous_log(path: Path) -> Path:
    """Where a runner log's earlier part goes when it is capped (one generation)."""
    return path.with_name(f"{path.name}.1")


def cap_runner_log(path: Path, max_bytes: int, *, held: bool) -> bool:
    """Past `max_bytes`, move a runner log's content to `<name>.1` (replacing the one
    before) and start it empty; True when it did.

    A runner may write no file larger than its sandbox's file-size limit: a log that
    reached it would fail every print() of the model, for good. `held`: runners have it
    open (their stdout and stderr), so it is copied, then truncated through the
    descriptor it was copied from, not renamed (they would go on writing into `.1`); they opened it
    O_APPEND, so their next write lands at the new end, not at their old offset past it.
    What they write between the copy's last read and the truncation is lost (a moment's
    output). Not held (no runner of the model is up): renamed, nothing lost.
    """
    try:
        if path.stat().st_size <= max_bytes:
            return False
        if not held:
            os.replace(path, previous_log(path))
            return True
        partial = path.with_name(f"{path.name}.1.partial")
        with open(path, "r+b") as log, open(partial, "wb") as copy:
            shutil.copyfileobj(log, copy, 1024 * 1024)
            copy.write(log.read())  # what came meanwhile
            log.truncate(0)
        os.replace(partial, previous_log(path))
        return True
    except FileNotFoundError:
        return False


def _tail_lines(path: Path, lines: int, start: int = 0) -> list[str]:
    """The last `lines` lines of a file written from offset `start` on, reading only its end."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            offset = max(start, size - LOG_TAIL_BYTES)
            f.seek(offset)
            data = f.read(LOG_TAIL_BYTES)
    except OSError:
        return []
    text = data.decode(errors="replace").splitlines()
    if offset > start:
        text = text[1:]  # a line cut by where the read started
    return text[-lines:] if lines else []


def _answering(runner: Runner) -> bool:
    """Whether the runner is in a call now, by its load block (read at any time)."""
    load = runner.load.read() if runner.load is not None else None
    return bool(load and load.started)


def _sandbox_rss(pid: int) -> int:
    """Resident memory of a sandbox: bwrap's own few MB plus the runner under it."""
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
    except psutil.Error:
        return 0


class HostAlreadyRunning(RuntimeError):
    pass


def _live_pks(rows) -> set[int]:
    """Which of these model rows their model's run URL serves (its live version)."""
    roots = {row.line_id or row.pk for row in rows}
    if not roots:
        return set()
    live = {
        live_id or root
        for root, live_id in MLModel.objects.filter(pk__in=roots).values_list("pk", "live_version_id")
    }
    return {row.pk for row in rows if row.pk in live}


def _remove_socket_files(runner: Runner) -> None:
    for path in (runner.socket_path, runner.loading_path, _draining_path(runner.socket_path)):
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _refuse_a_second_host(control_path: Path) -> None:
    """Two hosts on one node folder would delete each other's runner sockets and take
    over each other's control socket: calls would reach the wrong host's runners."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.settimeout(2)
        try:
            probe.connect(str(control_path))
        except (FileNotFoundError, ConnectionRefusedError):
            return  # none, or the socket a stopped host left behind
        except OSError:
            return  # not ours to judge (e.g. the path is not a socket): binding will say
    raise HostAlreadyRunning(
        f"Another model host is running on {control_path}. Each node needs its own folder "
        "(NEOMARIL_NODE_DIR, or NEOMARIL_RUN_DIR for the sockets alone): stop that host, "
        "or give this one another folder."
    )


def remove_logs_of_deleted_models() -> int:
    """Remove this node's runner logs of deleted models: what the model printed (a secret
    at import, the inputs it logged) goes with the model, on every node that ran it."""
    folder = paths.runner_log_folder()
    # <hash>.log, its earlier part <hash>.log.1 (cap_runner_log) and a copy cut short.
    logs: dict[str, list[Path]] = {}
    for path in folder.glob("M*.log*"):
        logs.setdefault(path.name.split(".", 1)[0], []).append(path)
    if not logs:
        return 0
    live = set(
        MLModel.objects.filter(hash__in=logs)
        .exclude(status=MLModel.Status.DELETED)
        .values_list("hash", flat=True)
    )
    removed = 0
    for model_hash, files in logs.items():
        if model_hash not in live:
            for path in files:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
    return removed


class ModelHost:
    def __init__(self) -> None:
        self.runners: dict[tuple[str, int], Runner] = {}
        self._model_locks: dict[str, threading.Lock] = {}
        self._lock = threading.RLock()
        self._crashes: dict[str, deque[float]] = {}
        # Model hash -> the build whose runners were warmed while the model is still
        # Building: the supervisor keeps them until the build settles.
        self._warming: dict[str, int] = {}
        # Model hash -> since when its runners could do with one fewer (the scaler's).
        self._quiet_since: dict[str, float] = {}
        # Since this host started, per model hash (under self._lock; status() reports them):
        # the replicas its load asked for that a budget refused, by budget ("runners",
        # "memory"), and its runners evicted to make room for another model's.
        self._refused_scale_ups: dict[str, dict[str, int]] = {}
        self._evictions: dict[str, int] = {}
        # Models whose scale-up a budget refuses now: warned once per episode, not each
        # second the scaler asks again. It ends with a replica added or the load easing.
        self._refusing: set[str] = set()
        # A model's line (the pk of its first row) -> the live (row pk, build) this node
        # last had runners of: the supervisor's, to follow the line's switches (_follow_live).
        self._followed: dict[int, tuple[int, int]] = {}
        self._stopping = threading.Event()
        # Held while a runner log is capped or opened for a runner: a start renaming a log
        # must not meet the supervisor copying it.
        self._logs_lock = threading.RLock()
        # Monotonic times of the supervisor's last slower steps.
        self._last_stats = self._last_log_sweep = 0.0
        # Each loop's failures, logged once per outage (the database away fails every pass).
        self._step_failures: dict[str, RepeatedFailure] = {}
        self._scale_failures = RepeatedFailure(logger, "scaling pass")
        self.run_dir = settings.RUN_DIR
        self.run_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        _refuse_a_second_host(paths.host_socket())
        # Runners are launched from this one long-lived thread: a sandbox dies with the
        # thread that started it, and the control connections' threads come and go.
        self._spawner = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="spawner")
        self._remove_stale_sockets()

    def _remove_stale_sockets(self) -> None:
        """Sockets of a previous host's runners (they died with it): no caller may queue on them.
        Only runners' names (<model>.<build>.<replica>.sock): the folder may hold supervisord's."""
        stale = [
            *self.run_dir.glob("*.*.*.sock"),
            *self.run_dir.glob(".*.sock.loading"),
            *self.run_dir.glob(".*.sock.draining"),
        ]
        for path in stale:
            if path.name != paths.host_socket().name:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()

    # ---------------------------------------------------------------- operations

    def ensure(self, model_hash: str) -> dict:
        """Make sure the model's current build has its min_replicas up and answering."""
        close_old_connections()
        model = MLModel.objects.filter(hash=model_hash).first()
        if model is None or not model.is_sync:
            raise NotDeployed(f"No Sync model '{model_hash}'.", None)
        if model.status != MLModel.Status.DEPLOYED:
            raise NotDeployed(f"Model '{model_hash}' is {model.status}, not Deployed.", model.status)
        floor = model.min_replicas if _live_pks([model]) else 1
        with self._model_lock(model_hash):
            # Concurrent first calls wait here and find the runners the first one started.
            self._crashes.pop(model_hash, None)
            missing = [replica for replica in range(floor) if not self._is_up(model, replica)]
            if missing:  # room first: a node at its runner budget never runs one more, even briefly
                self._enforce_budget(protect=model_hash, adding=len(missing))
            started = [self._start(model, replica) for replica in missing]
            for runner in started:
                self._wait_ready(runner)
            self._retire(
                model_hash, keep_build=model.deployed_build, keep_replicas=model.effective_max_replicas
            )
        self._enforce_budget(protect=model_hash)
        with self._lock:
            up = sorted(r.replica for r in self.runners.values() if r.model_hash == model_hash)
        return {"sockets": [str(paths.runner_socket(model.hash, model.deployed_build, r)) for r in up]}

    def warm(self, model_hash: str, build: int, env_fingerprint: str) -> dict:
        """Start the runners of a build about to go live and call each with the schema example.

        The build (``models_app.tasks``) asks for this before it settles Deployed, so the
        first call finds loaded, already-called runners. The model is still Building: its
        row names this build and environment only once Deployed, so they come with the
        request. The warm-up answer is the build's smoke test.
        """
        close_old_connections()
        model = MLModel.objects.filter(hash=model_hash).first()
        if model is None or not model.is_sync:
            raise HostError(f"No Sync model '{model_hash}'.")
        if model.status != MLModel.Status.BUILDING:
            raise HostError(f"Model '{model_hash}' is {model.status}, not Building.")
        try:
            environment_path(settings.ENVS_DIR, env_fingerprint)
        except ValueError as exc:
            raise HostError(str(exc)) from None
        model.deployed_build, model.env_fingerprint = int(build), env_fingerprint  # in memory only
        log_path = paths.runner_log(model.hash)
        with self._model_lock(model_hash):
            self._cap_log(model.hash)  # now, not in _start: the output is read from here
            log_start = log_path.stat().st_size if log_path.exists() else 0
            self._warming[model_hash] = model.deployed_build
            started: list[Runner] = []
            clock = time.monotonic()
            try:
                self._enforce_budget(protect=model_hash, adding=model.min_replicas)
                started = [self._start(model, replica) for replica in range(model.min_replicas)]
                launched = time.monotonic()
                for runner in started:
                    self._wait_ready(runner)
                loaded = time.monotonic()
                answers = [self._warm_up(runner, model) for runner in started]
                called = time.monotonic()
            except BaseException as exc:
                for runner in started:
                    self._stop_runner(runner)
                self._warming.pop(model_hash, None)
                if isinstance(exc, HostError):  # what the model printed tells the build why
                    exc.output = _read_from(log_path, log_start, WARM_OUTPUT_BYTES)
                raise
        self._enforce_budget(protect=model_hash)
        return {
            "result": answers[0],
            "pids": [runner.process.pid for runner in started],
            "output": _read_from(log_path, log_start, WARM_OUTPUT_BYTES),
            # Seconds, for the build log's timings: sandboxes launched, model loaded (the
            # interpreter's start and the import of the user's module), warm-up answered.
            "timings": {
                "sandbox start": launched - clock,
                "model load": loaded - launched,
                "first call": called - loaded,
            },
        }

    def _warm_up(self, runner: Runner, model: MLModel):
        """One call with the schema example: the first predict pays for lazy imports, not a caller.

        Not load: the scaler skips the runner meanwhile, and its busy seconds are counted
        from the end of it.
        """
        runner.warming_up = True
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(settings.SMOKE_TEST_TIMEOUT)
                sock.connect(str(runner.socket_path))
                sock.sendall(predict_frame(json.dumps(model.schema), str(model.folder)))
                answer = read_frame(sock)
            # The runner counted the call before it answered.
            load = runner.load.read() if runner.load is not None else None
            if load is not None:
                runner.busy, runner.sampled_at = load.busy, time.monotonic()
                runner.waited = load.waited
        except (OSError, ProtocolError) as exc:
            raise HostError(f"The warm-up call got no answer: {exc}") from None
        finally:
            runner.warming_up = False
        if not isinstance(answer, dict) or not answer.get("ok"):
            error = answer.get("error") if isinstance(answer, dict) else answer
            raise HostError(f"The warm-up call with the schema example failed: {error}")
        return answer["result"]

    def kill(self, socket_path: str, reason: str, stuck_after: float | None = None) -> dict:
        """Kill the runner on this socket (e.g. stuck past the request timeout); the supervisor restarts it.

        With `stuck_after` (a caller's timeout), only a runner whose call in progress has
        run about that long: a call that timed out waiting behind others' calls (more
        calls than the runners answer in time) finds a runner that is working, not stuck.
        Killing it lost the call it was answering and cost a cold start, under the load
        least able to afford one. `{"killed": False, "busy": True}` says it was spared.
        """
        with self._lock:
            runner = next((r for r in self.runners.values() if str(r.socket_path) == socket_path), None)
        if runner is None:
            return {"killed": False}
        running = self._running_call_seconds(runner)
        if stuck_after is not None and running is not None and running < stuck_after - STUCK_SLACK_SECONDS:
            return {"killed": False, "busy": True}
        logger.warning("killing runner %s of %s: %s", runner.process.pid, runner.model_hash, reason)
        runner.launched.kill()
        return {"killed": True, "pid": runner.process.pid}

    @staticmethod
    def _running_call_seconds(runner: Runner) -> float | None:
        """How long its call in progress has run; None when that is not known: between
        calls, or no readable load block (those are killed as before: a runner wedged
        outside a call answers nothing either)."""
        load = runner.load.read() if runner.load is not None else None
        if load is None or not load.started:
            return None
        running = time.monotonic() - load.started
        # Written by the process the model's code runs in: a start in the future is no alibi.
        return running if running >= 0 else None

    def stop_model(self, model_hash: str) -> int:
        with self._model_lock(model_hash):
            return self._retire(model_hash, keep_build=None, keep_replicas=0)

    def status(self) -> dict:
        with self._lock:
            runners = [r.describe() for r in self.runners.values()]
            refused = {model_hash: dict(counts) for model_hash, counts in self._refused_scale_ups.items()}
            evictions = dict(self._evictions)
        return {
            "pid": os.getpid(),
            "runners": runners,
            "budget": self._budget(),
            "refused_scale_ups": refused,
            "evictions": evictions,
        }

    # ----------------------------------------------------------------- runners

    def _model_lock(self, model_hash: str) -> threading.Lock:
        with self._lock:
            return self._model_locks.setdefault(model_hash, threading.Lock())

    def _is_up(self, model: MLModel, replica: int) -> bool:
        runner = self.runners.get((model.hash, replica))
        return bool(
            runner
            and runner.alive
            and runner.build == model.deployed_build
            and runner.socket_path.exists()
            and not self._refuses(runner)
        )

    @staticmethod
    def _refuses(runner: Runner) -> bool:
        """Whether the runner's socket refuses a connection: its process is on its way out
        (a crash), though not yet seen exited. Asked on a cold start only: a caller sent
        back here by that refusal would otherwise be told the runner is up, and refused again."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.setblocking(False)
            try:
                probe.connect(str(runner.socket_path))
            except (ConnectionRefusedError, FileNotFoundError):
                return True
            except OSError:  # EAGAIN: a full backlog, it is there and busy
                return False
        return False

    def _start(self, model: MLModel, replica: int) -> Runner:
        old = self.runners.get((model.hash, replica))
        if old is not None:
            self._stop_runner(old)
        socket_path = paths.runner_socket(model.hash, model.deployed_build, replica)
        # Listen under a loading name: callers find the socket only once the model is
        # loaded (_wait_ready renames it), so none waits for a load inside its request timeout.
        loading_path = socket_path.with_name(f".{socket_path.name}.loading")
        listener = paths.listen(loading_path)
        load = LoadBlock()
        try:
            code = sandboxes.model_code(
                model,
                "serve",
                runner_args=[
                    "serve",
                    "--listen-fd",
                    str(listener.fileno()),
                    "--load-fd",
                    str(load.fd),
                    "--entrypoint",
                    model.model_reference,
                    "--source",
                    str(model.folder / model.source_file),
                ],
                pass_fds=[listener.fileno(), load.fd],
            )
            with self._open_log(model.hash) as log:
                log_start = log.tell()  # opened for appending: its end
                # From the spawner thread: a sandbox dies with the thread that launched it.
                try:
                    launched = self._spawner.submit(
                        sandbox.launch, code, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                    ).result()
                except (sandbox.SandboxUnavailable, OSError) as exc:
                    raise HostError(f"The model's runner could not be started: {exc}") from None
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                loading_path.unlink()
            load.close()
            raise
        finally:
            listener.close()  # the runner holds its own copies
            load.close_fd()
        runner = Runner(
            model.hash, model.pk, model.deployed_build, replica, socket_path, launched, loading_path, load,
            log_start=log_start,
        )  # fmt: skip
        with self._lock:
            self.runners[(model.hash, replica)] = runner
        logger.info(
            "started runner %s for %s (build %s, replica %s)",
            launched.pid,
            model.hash,
            model.deployed_build,
            replica,
        )
        return runner

    def _wait_ready(self, runner: Runner) -> None:
        """Wait until the runner has loaded the model and answers a ping on its socket."""
        deadline = time.monotonic() + settings.COLD_START_TIMEOUT
        assert runner.loading_path is not None
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                # Queued on the host-made listener at once, while the runner holds it.
                sock.connect(str(runner.loading_path))
                write_frame(sock, {"op": "ping"})
                sock.settimeout(5)
                while time.monotonic() < deadline:
                    if not runner.alive:
                        self._stop_runner(runner)  # forgets it and removes its socket
                        raise HostError(
                            f"The model's runner exited while loading the model:\n{self._log_tail(runner)}"
                        )
                    # Wait for the answer to start in short slices (to notice a runner that
                    # died while loading), then read the whole frame at once.
                    if not select.select([sock], [], [], 0.1)[0]:
                        continue
                    answer = read_frame(sock, MAX_CONTROL_FRAME_BYTES)
                    if isinstance(answer, dict) and "pid" in answer:
                        os.rename(runner.loading_path, runner.socket_path)  # same inode: now callers find it
                        runner.loading_path = None
                        return
        except (OSError, ProtocolError) as exc:
            # Typically the runner exiting (its import raised): before we connected (the
            # socket refuses, as no process holds it any more) or with our connection
            # still queued (a reset). Neither is the reason; that is in its log.
            with contextlib.suppress(subprocess.TimeoutExpired):
                runner.process.wait(timeout=EXIT_GRACE_SECONDS)
            exited = not runner.alive
            self._stop_runner(runner)
            if exited:
                raise HostError(
                    f"The model's runner exited while loading the model:\n{self._log_tail(runner)}"
                ) from None
            raise HostError(
                f"The model's runner failed while loading the model ({exc}):\n{self._log_tail(runner)}"
            ) from None
        self._stop_runner(runner)
        raise LoadTimeout(
            f"The model did not load within {settings.COLD_START_TIMEOUT} s (cold-start timeout)."
        )

    @staticmethod
    def _ping(runner: Runner, timeout: float) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(runner.socket_path))
            write_frame(sock, {"op": "ping"})
            return read_frame(sock, MAX_CONTROL_FRAME_BYTES)

    @staticmethod
    def _log_tail(runner: Runner, lines: int = 30) -> str:
        """The end of what was written to the model's runner log since this runner started
        (its load error), read from the end of the file.

        Not before: the caller of the run URL (any holder of the group token) would read
        what earlier runners printed, the inputs of earlier calls among it.
        """
        log = paths.runner_log(runner.model_hash)
        try:
            capped = runner.log_start > log.stat().st_size
        except OSError:
            capped = False
        if not capped:
            return "\n".join(_tail_lines(log, lines, runner.log_start))
        # Capped since it started: its first lines are in the part before, from the same offset.
        tail = _tail_lines(log, lines)
        if len(tail) < lines:
            tail = _tail_lines(previous_log(log), lines - len(tail), runner.log_start) + tail
        return "\n".join(tail)

    def _open_log(self, model_hash: str):
        """The model's runner log, opened for a runner to append to, under the cap first:
        a fresh start must not inherit a log the runners could soon write no more to."""
        with self._logs_lock:
            self._cap_log(model_hash)
            # O_APPEND: after a cap truncates it, the runner's writes go on at the new end.
            return open(paths.runner_log(model_hash), "ab")

    def _cap_log(self, model_hash: str) -> None:
        with self._logs_lock:
            with self._lock:
                held = any(r.alive for r in self.runners.values() if r.model_hash == model_hash)
            path = paths.runner_log(model_hash)
            if cap_runner_log(path, settings.RUNNER_LOG_MAX_MB * 1024 * 1024, held=held):
                logger.info(
                    "%s: runner log past %s MB, its earlier part is now %s",
                    model_hash,
                    settings.RUNNER_LOG_MAX_MB,
                    previous_log(path).name,
                )

    def _cap_logs(self) -> None:
        """Keep the logs of the models running here under the cap (every supervision pass:
        what a model prints in a second stays far below its sandbox's file-size limit)."""
        with self._lock:
            hashes = {r.model_hash for r in self.runners.values()}
        for model_hash in hashes:
            self._cap_log(model_hash)

    def _stop_runner(self, runner: Runner) -> None:
        runner.expected_exit = True
        if runner.alive:
            runner.launched.terminate()  # the runner answers the call in flight, then exits
            try:
                runner.process.wait(5)
            except subprocess.TimeoutExpired:
                runner.launched.kill()
                runner.process.wait(5)
        runner.launched.release()
        _remove_socket_files(runner)
        with self._lock:
            if self.runners.get((runner.model_hash, runner.replica)) is runner:
                del self.runners[(runner.model_hash, runner.replica)]

    def _forget_crashed(self, runner: Runner) -> None:
        """Drop a runner that exited on its own, and its socket: a socket file left behind
        (a model past its crash limit, or no longer Deployed) is a replica web processes
        would keep choosing and failing to reach."""
        key = (runner.model_hash, runner.replica)
        with self._model_lock(runner.model_hash):
            with self._lock:
                if self.runners.get(key) is runner:
                    del self.runners[key]
                elif key in self.runners:
                    return  # started again meanwhile: the files are the new runner's
            _remove_socket_files(runner)

    def _retire(self, model_hash: str, *, keep_build: int | None, keep_replicas: int) -> int:
        with self._lock:
            doomed = [
                r
                for r in self.runners.values()
                if r.model_hash == model_hash and (r.build != keep_build or r.replica >= keep_replicas)
            ]
        for runner in doomed:
            self._stop_runner(runner)
        return len(doomed)

    # -------------------------------------------------------------- supervision

    def supervise_forever(self) -> None:
        while not self._stopping.wait(SUPERVISE_INTERVAL):
            self.supervise_once()

    def supervise_once(self) -> None:
        """One supervision pass. Each step runs even when another fails: a restart that
        fails must not skip the drains, the retirements or the budget."""
        steps = [self._restart_crashed, self._stop_drained, self._cap_logs]
        if time.monotonic() - self._last_stats > STATS_INTERVAL:
            self._last_stats = time.monotonic()
            # _follow_live first: it reads the runners a switch leaves to retire.
            steps += [self._follow_live, self._retire_undeployed]
            if time.monotonic() - self._last_log_sweep > LOG_SWEEP_INTERVAL:
                self._last_log_sweep = time.monotonic()
                steps.append(remove_logs_of_deleted_models)
            steps += [self._refresh_stats, self._enforce_budget]
        for step in steps:
            failures = self._step_failures.get(step.__name__)
            if failures is None:
                failures = self._step_failures[step.__name__] = RepeatedFailure(
                    logger, f"supervisor step {step.__name__}"
                )
            try:
                step()
                failures.worked()
            except Exception as exc:  # the database away, say: once per outage in the log
                failures.failed(exc, "it runs again at the next pass")
            finally:
                close_old_connections()

    def _restart_crashed(self) -> None:
        with self._lock:
            crashed = [
                r
                for r in self.runners.values()
                if not r.alive and not r.expected_exit and r.draining_until is None
            ]
        for runner in crashed:
            history = self._crashes.setdefault(runner.model_hash, deque(maxlen=CRASH_LIMIT))
            history.append(time.monotonic())
            code = runner.process.returncode
            logger.warning("runner %s of %s exited (%s)", runner.process.pid, runner.model_hash, code)
            runner.launched.release()
            self._forget_crashed(runner)
            if len(history) == CRASH_LIMIT and history[-1] - history[0] < CRASH_WINDOW:
                logger.error(
                    "%s crashed %d times in %.0f s; not restarting until called again",
                    runner.model_hash,
                    CRASH_LIMIT,
                    CRASH_WINDOW,
                )
                continue
            model = MLModel.objects.filter(hash=runner.model_hash, status=MLModel.Status.DEPLOYED).first()
            if model is None:
                continue
            try:
                with self._model_lock(model.hash):
                    if not self._is_up(model, runner.replica):
                        self._wait_ready(self._start(model, runner.replica))
            except HostError as exc:
                logger.error("could not restart %s: %s", model.hash, exc)
            except Exception:  # the other runners' restarts still happen
                logger.exception("could not restart %s", model.hash)

    def _retire_undeployed(self) -> None:
        with self._lock:
            hashes = {r.model_hash for r in self.runners.values()}
        if not hashes:
            return
        current = {
            m.hash: m
            for m in MLModel.objects.filter(hash__in=hashes).only(
                "hash", "status", "deployed_build", "min_replicas", "max_replicas", "operation"
            )
        }
        for model_hash in hashes:
            model = current.get(model_hash)
            with self._model_lock(model_hash):
                warming = self._warming.get(model_hash)
                if model is not None and model.status != MLModel.Status.BUILDING:
                    self._warming.pop(model_hash, None)
                if model is not None and model.status == MLModel.Status.BUILDING and warming is not None:
                    # Warmed for the build about to settle: it goes live with them.
                    self._retire(model_hash, keep_build=warming, keep_replicas=model.min_replicas)
                elif model is None or model.status != MLModel.Status.DEPLOYED:
                    self._retire(model_hash, keep_build=None, keep_replicas=0)
                else:
                    self._retire(
                        model_hash,
                        keep_build=model.deployed_build,
                        keep_replicas=model.effective_max_replicas,
                    )

    def _follow_live(self) -> list[threading.Thread]:
        """Start the new live build of each model this node was serving, in the background.

        A rebuild, a new version going live or a rollback warms the node that ran the
        build (or took the rollback call); without this every other node would cold-start
        the new build on its first call there. Only a line whose live build had runners
        here is followed: a model never called here, or evicted, stays cold as before.
        Returns the threads started (the tests wait for them).
        """
        with self._lock:
            held = {
                (r.model_id, r.build) for r in self.runners.values() if r.alive and r.draining_until is None
            }
        first_rows = MLModel.objects.filter(pk__in={pk for pk, _ in held}).values_list("pk", "line_id")
        lines = {line_id or pk for pk, line_id in first_rows} | set(self._followed)
        live_of = {
            line: live_id or line
            for line, live_id in MLModel.objects.filter(pk__in=lines).values_list("pk", "live_version_id")
        }
        live_rows = MLModel.objects.only("hash", "status", "operation", "deployed_build").in_bulk(
            set(live_of.values())
        )
        started = []
        for line in lines:
            live = live_rows.get(live_of.get(line))
            if live is None or not live.is_sync:
                self._followed.pop(line, None)
                continue
            current = (live.pk, live.deployed_build)
            # Runners of an older build of the live row count too: a rebuild can start and
            # settle between two passes, before the supervisor retires them.
            held_builds = [build for pk, build in held if pk == live.pk]
            if held_builds and (current not in held or live.status != MLModel.Status.DEPLOYED):
                # Also while it is rebuilt: its runners here go before it settles, and a
                # first pass over them may come only then (a call just before the rebuild).
                self._followed[line] = (live.pk, max(held_builds))
            if live.status == MLModel.Status.DEPLOYED and current in held:
                self._followed[line] = current
            elif live.status in (MLModel.Status.READY, MLModel.Status.BUILDING):
                continue  # being rebuilt: follow once it settles Deployed
            elif live.status == MLModel.Status.DEPLOYED and self._followed.get(line, current) != current:
                self._followed[line] = current  # tried once: a failure is not retried every pass
                thread = threading.Thread(
                    target=self._warm_switched, args=(live.hash,), name=f"follow-{live.hash}", daemon=True
                )
                thread.start()
                started.append(thread)
            else:
                # Its runners went (evicted, crashed, stopped) or it left service: not followed.
                self._followed.pop(line, None)
        return started

    def _warm_switched(self, model_hash: str) -> None:
        try:
            self.ensure(model_hash)
            model = MLModel.objects.get(hash=model_hash)
            with self._lock:
                runners = [
                    r
                    for r in self.runners.values()
                    if r.model_hash == model_hash
                    and r.build == model.deployed_build
                    and r.loading_path is None
                ]
            for runner in runners:
                self._warm_up(runner, model)
            logger.info("%s: build %s warmed here after its switch", model_hash, model.deployed_build)
        except (HostError, MLModel.DoesNotExist) as exc:
            logger.warning(
                "%s not warmed here after its switch (its first call here starts it): %s", model_hash, exc
            )
        except Exception:
            logger.exception("warming %s after its switch failed", model_hash)
        finally:
            connection.close()  # this thread's own connection

    def _refresh_stats(self) -> None:
        with self._lock:
            runners = list(self.runners.values())
        for runner in runners:
            if runner.alive:
                runner.rss = _sandbox_rss(runner.process.pid)

    # ------------------------------------------------------------------ scaling

    def scale_forever(self) -> None:
        while not self._stopping.wait(SCALE_INTERVAL):
            try:
                self._sample_load()
                self._scale()
                self._scale_failures.worked()
            except Exception as exc:
                self._scale_failures.failed(exc, "it runs again at the next pass")
            finally:
                close_old_connections()

    def _serving(self) -> list[Runner]:
        """Runners taking calls: loaded, alive, not draining."""
        with self._lock:
            return [
                r
                for r in self.runners.values()
                if r.alive and r.loading_path is None and r.draining_until is None
            ]

    def _sample_load(self) -> None:
        """How busy each runner was since the last sample, and whether calls waited for it,
        from the counters it keeps in its load block.

        Read from shared memory, not asked with a ping: a ping waits behind the call in
        progress, and counting that wait as a queue made one caller's slow calls one after
        another add a replica that served nothing.
        """
        for runner in self._serving():
            if runner.warming_up or runner.load is None:
                continue
            load = runner.load.read()
            now = time.monotonic()
            if load is None:
                continue  # being written at length (preempted): the next sample will do
            busy = load.busy
            if load.started:  # the call in progress, so far (the runner's clock is this one)
                busy += max(0.0, now - load.started)
            runner.queued, runner.waited = load.waited > runner.waited, load.waited
            # The calls that were waiting when its last call ended, less the one it took
            # next; none when it is idle (it would be answering them).
            runner.calls_queued = max(0, load.queued - 1) if load.started else 0
            elapsed = now - runner.sampled_at
            if elapsed > 0:
                runner.utilization = min(1.0, max(0.0, (busy - runner.busy) / elapsed))
            runner.busy, runner.sampled_at = busy, now
            if load.requests != runner.requests or load.started:
                runner.requests = load.requests
                runner.last_used = time.time()

    def _scale(self) -> None:
        """One replica more or fewer for each model whose load asks for it (see the module doc)."""
        by_model: dict[str, list[Runner]] = {}
        for runner in self._serving():
            by_model.setdefault(runner.model_hash, []).append(runner)
        # A model whose runners have all gone starts its quiet time afresh when it has some
        # again: an old "since" would drain a replica the moment its load next eases.
        for model_hash in self._quiet_since.keys() - by_model.keys():
            del self._quiet_since[model_hash]
        asking: set[str] = set()  # the models whose load asks for one more replica now
        models = {  # (no query when nothing runs: Django answers an empty `__in` itself)
            m.hash: m
            for m in MLModel.objects.filter(hash__in=by_model, status=MLModel.Status.DEPLOYED).only(
                "hash", "deployed_build", "min_replicas", "max_replicas", "line_id"
            )
        }
        live = _live_pks(models.values())
        for model_hash, runners in by_model.items():
            model = models.get(model_hash)
            if model is None:
                continue  # not Deployed (yet, or any more): the supervisor's business
            current = [r for r in runners if r.build == model.deployed_build]
            count = len(current)
            load = sum(r.utilization for r in current)
            # Busy, and calls queued: one caller's calls one after another keep a runner
            # busy too, and a second replica would only sit beside it.
            queued = any(r.queued for r in current)
            # A version its model's run URL does not serve (the one a switch left, one
            # called by its own URL) keeps no minimum: its last runner leaves once idle.
            floor = model.min_replicas if model.pk in live else 0
            quiet = load < SCALE_DOWN_BELOW * (count - 1) if count > 1 else load == 0
            if count < floor or (
                count < model.effective_max_replicas and load >= SCALE_UP_AT * count and queued
            ):
                self._quiet_since.pop(model_hash, None)
                asking.add(model_hash)
                self._add_replica(model_hash, current)
            elif count > floor and quiet:
                since = self._quiet_since.setdefault(model_hash, time.monotonic())
                if time.monotonic() - since >= settings.REPLICA_IDLE_SECONDS:
                    self._quiet_since[model_hash] = time.monotonic()
                    self._drain(max(current, key=lambda r: r.replica))
            else:
                self._quiet_since.pop(model_hash, None)
        with self._lock:  # a model that stopped asking: its next refusal is a new episode
            self._refusing &= asking

    def _add_replica(self, model_hash: str, current: list[Runner]) -> None:
        """Bring back a leaving replica, else start the model's lowest free replica if the
        node's budgets allow one more runner (a leaving one already counts in them)."""
        model = MLModel.objects.filter(hash=model_hash, status=MLModel.Status.DEPLOYED).first()
        if model is None:
            return
        if self._keep_draining(model):
            self._scaled_up(model_hash)
            return
        with self._lock:
            live = [r for r in self.runners.values() if r.alive]
        if len(live) >= settings.HOST_MAX_RUNNERS:
            self._refuse_scale_up(
                model_hash,
                "runners",
                f"the node runs {len(live)} runners (NEOMARIL_HOST_MAX_RUNNERS={settings.HOST_MAX_RUNNERS})",
            )
            return
        if settings.HOST_MEMORY_BUDGET_MB and current:
            self._refresh_stats()  # a runner started since the supervisor's last pass weighs 0 until measured
            expected = max(r.rss for r in current)  # the next one will weigh about as much
            used = sum(r.rss for r in live)
            if used + expected > settings.HOST_MEMORY_BUDGET_MB * 1024 * 1024:
                self._refuse_scale_up(
                    model_hash,
                    "memory",
                    f"the node's runners use {used / 2**20:.0f} MB and one more would need about "
                    f"{expected / 2**20:.0f} MB (NEOMARIL_HOST_MEMORY_BUDGET_MB={settings.HOST_MEMORY_BUDGET_MB})",
                )
                return
        taken = {r.replica for r in current}
        replica = next(i for i in range(model.effective_max_replicas + 1) if i not in taken)
        if replica >= model.effective_max_replicas:
            return
        try:
            with self._model_lock(model_hash):
                if not self._is_up(model, replica):
                    self._wait_ready(self._start(model, replica))
                    logger.info("%s: replica %s added for the load", model_hash, replica)
            self._scaled_up(model_hash)
        except HostError as exc:
            logger.error("could not add a replica to %s: %s", model_hash, exc)

    def _refuse_scale_up(self, model_hash: str, budget: str, why: str) -> None:
        """Count a replica the load asked for and `budget` refused; warn at the first of an episode."""
        with self._lock:
            counts = self._refused_scale_ups.setdefault(model_hash, {"runners": 0, "memory": 0})
            counts[budget] += 1
            first = model_hash not in self._refusing
            self._refusing.add(model_hash)
        if first:
            logger.warning("%s: no replica added for the load: %s", model_hash, why)

    def _scaled_up(self, model_hash: str) -> None:
        with self._lock:  # a later refusal is a new episode, warned again
            self._refusing.discard(model_hash)

    def _drain(self, runner: Runner) -> None:
        """Take the replica out of the web processes' choice now, stop it once they have seen that.

        Its socket moves to a hidden name rather than going: should the load come back
        before it stops, `_keep_draining` puts it back instead of a cold start.
        """
        logger.info("%s: replica %s leaves (light load)", runner.model_hash, runner.replica)
        runner.draining_until = time.monotonic() + DRAIN_SECONDS
        with contextlib.suppress(FileNotFoundError):
            os.rename(runner.socket_path, _draining_path(runner.socket_path))

    def _keep_draining(self, model: MLModel) -> bool:
        """Bring back a replica of `model`'s live build that is leaving; False when none is."""
        with self._model_lock(model.hash):
            with self._lock:
                leaving = sorted(
                    (
                        r
                        for r in self.runners.values()
                        if r.model_hash == model.hash
                        and r.build == model.deployed_build
                        and r.draining_until is not None
                        and r.alive
                    ),
                    key=lambda r: r.replica,
                )
            for runner in leaving:
                try:
                    os.rename(_draining_path(runner.socket_path), runner.socket_path)
                except FileNotFoundError:
                    continue
                runner.draining_until = None
                logger.info("%s: replica %s stays (the load came back)", model.hash, runner.replica)
                return True
        return False

    def _stop_drained(self) -> None:
        with self._lock:
            done = [
                r
                for r in self.runners.values()
                if r.draining_until is not None and time.monotonic() >= r.draining_until
            ]
        for runner in done:
            # Under the model's lock: a replica started again meanwhile has this one's socket path.
            try:
                with self._model_lock(runner.model_hash):
                    if self.runners.get((runner.model_hash, runner.replica)) is runner:
                        self._stop_runner(runner)
            except Exception:  # the other drained runners still stop
                logger.exception(
                    "could not stop drained runner %s of %s", runner.process.pid, runner.model_hash
                )

    def _budget(self) -> dict:
        return {"max_runners": settings.HOST_MAX_RUNNERS, "memory_budget_mb": settings.HOST_MEMORY_BUDGET_MB}

    def _enforce_budget(self, protect: str | None = None, adding: int = 0) -> None:
        """Evict least recently used runners (never those of `protect`) until within budget,
        with room for `adding` runners about to start. Memory is checked only once they run:
        a model's size is known once it has loaded.

        Idle runners go before any answering a call, whatever their last use (sampled once
        a second, so a busy runner can look the least recently used): stopping one cuts
        its call, which the web process then sends again, and another group's cold starts
        made a call run twice that way. Only when every other runner is busy does one go.
        Among those alike, a replica the load added goes before a model's first runner:
        its model stays warm, where evicting the least recently used alone made one group's
        busy models, grown to two replicas each, turn another group's models cold.
        """
        while True:
            with self._lock:
                # A runner already being stopped (by another thread) is on its way out: it
                # counts no more, and is no one's victim again.
                live = [r for r in self.runners.values() if r.alive and not r.expected_exit]
                over_count = len(live) + adding > settings.HOST_MAX_RUNNERS
                memory = sum(r.rss for r in live)
                over_memory = (
                    bool(settings.HOST_MEMORY_BUDGET_MB)
                    and memory > settings.HOST_MEMORY_BUDGET_MB * 1024 * 1024
                )
                candidates = sorted(
                    (r for r in live if r.model_hash != protect),
                    key=lambda r: (_answering(r), r.replica == 0, r.last_used),
                )
                if not (over_count or over_memory) or not candidates:
                    return
                victim = candidates[0]
                victim.expected_exit = True  # claimed under the lock
                self._evictions[victim.model_hash] = self._evictions.get(victim.model_hash, 0) + 1
            logger.info(
                "evicting runner %s of %s (least recently used)", victim.process.pid, victim.model_hash
            )
            self._stop_runner(victim)

    def shutdown(self) -> None:
        self._stopping.set()
        with self._lock:
            runners = list(self.runners.values())
        for runner in runners:
            self._stop_runner(runner)
        self._spawner.shutdown(wait=False)


def _seconds_or_none(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


class _ControlHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        host: ModelHost = self.server.host  # type: ignore[attr-defined]
        sock: socket.socket = self.request
        while True:
            try:
                request = read_frame(sock)
            except ProtocolError:
                return
            op = request.get("op") if isinstance(request, dict) else None
            try:
                if op == "ensure":
                    answer = {"ok": True, **host.ensure(str(request.get("model")))}
                elif op == "warm":
                    answer = {
                        "ok": True,
                        **host.warm(
                            str(request.get("model")), int(request["build"]), str(request.get("env"))
                        ),
                    }
                elif op == "kill":
                    answer = {
                        "ok": True,
                        **host.kill(
                            str(request.get("socket")),
                            str(request.get("reason", "")),
                            _seconds_or_none(request.get("stuck_after")),
                        ),
                    }
                elif op == "stop":
                    answer = {"ok": True, "stopped": host.stop_model(str(request.get("model")))}
                elif op == "status":
                    answer = {"ok": True, **host.status()}
                elif op == "ping":  # /healthz: is this node's host answering? (no lock taken)
                    answer = {"ok": True, "pid": os.getpid()}
                else:
                    answer = {"ok": False, "error": f"unknown op {op!r}"}
            except HostError as exc:
                answer = {"ok": False, "error": str(exc)}
                if exc.code:
                    answer["code"] = exc.code
                if exc.output:
                    answer["output"] = exc.output
                if isinstance(exc, NotDeployed):
                    answer["model_status"] = exc.model_status
            except Exception as exc:  # report, keep serving other callers
                logger.exception("host operation %s failed", op)
                answer = {"ok": False, "error": f"model host error: {type(exc).__name__}: {exc}"}
            finally:
                # This thread ends with the request: a connection kept for reuse
                # (CONN_MAX_AGE) would stay open on PostgreSQL with nobody to reuse it.
                connection.close()
            try:
                write_frame(sock, answer)
            except OSError:
                return


class ControlServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    # A cold start under load brings every waiting call's "ensure" at once; with the
    # default backlog of 5 the rest were refused (EAGAIN) before a thread took them.
    request_queue_size = 256

    def __init__(self, path: Path, host: ModelHost):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        old_umask = os.umask(0o177)
        try:
            super().__init__(str(path), _ControlHandler)
        finally:
            os.umask(old_umask)
        self.host = host
