"""Platform side of the runner's oneshot mode: one call of a user's entrypoint, in a child process.

Used for async executions, build smoke tests, training runs (kind "train", whose
in-sandbox half is ``training_harness.py``) and monitoring jobs (kind "monitor",
``monitoring_harness.py``). The child is ``runner.py`` started
by the sandbox launcher (``sandbox.launch``) in the model environment's interpreter; a
timeout kills its whole sandbox. The answer comes back as one frame on the child's
stdout; whatever the user's code prints goes to its stderr, which we stream line by line.
"""

from __future__ import annotations

import codecs
import contextlib
import dataclasses
import io
import logging
import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from django.conf import settings

from groups.uploads import folder_bytes, free_bytes
from models_app.runtime import sandbox
from models_app.runtime.protocol import (
    HEADER,
    MAX_FRAME_BYTES,
    ProtocolError,
    encode_frame,
    frame_complete,
    read_frame_from_file,
)

logger = logging.getLogger(__name__)

# The user's output is kept whole up to this size; past it only the tail is kept (the
# end of a log is what explains a failure). Every line still reaches on_output_line.
MAX_OUTPUT_CHARS = 8 * 1024 * 1024
# Lines longer than this (progress bars, binary garbage) are delivered in pieces.
_CHUNK_BYTES = 64 * 1024
# Output read but not yet handled on the caller's thread, at most: past it the reader
# waits, the pipe fills and the model's writes block. Without the bound a model printing
# faster than the caller logs grew the worker's memory without limit (40 MiB of short
# lines took it to 2.8 GB).
_PENDING_OUTPUT_CHARS = 1024 * 1024
# How long to wait for the output pipes to close once the runner itself has exited.
_DRAIN_GRACE = 1.0
# How long the runner may take to exit once it has answered.
_EXIT_GRACE = 5.0
# How long to wait for a killed runner to be reaped.
_KILL_WAIT = 5.0
# How often the bytes written in the job's folder are added up against its disk limit.
_DISK_CHECK_INTERVAL = 0.5
# How often the caller's stop_when is asked (a query, for an execution).
_STOP_CHECK_INTERVAL = 2.0
_CRASH_TAIL_LINES = 20


@dataclass
class RunResult:
    """What one oneshot run produced."""

    ok: bool
    # normalised JSON value (sync), the returned path string (async), the harness's summary (train, monitor)
    result: Any = None
    error: str | None = None  # what went wrong, for the user
    traceback: str | None = None
    # "import" | "data" (train, monitor) | "config" (monitor) | "call" | "result" | "save" (train)
    # | "protocol" | "timeout" | "crash" | "limit" | "sandbox"
    phase: str | None = None
    output: str = ""  # everything the user code printed (stdout+stderr)
    returncode: int | None = None
    timed_out: bool = False
    duration: float = 0.0
    limit: str | None = None  # the sandbox limit that explains the failure, for the user
    # Stopped because the data folder's disk was nearly full: what it wrote should go.
    disk_full: bool = False


def run_oneshot(
    code: sandbox.UserCode,
    *,
    source: str,
    entrypoint: str,
    kind: str,
    args: list[str],
    timeout: float,
    on_output_line: Callable[[str], None] | None = None,
    stop_when: Callable[[], str | None] | None = None,
) -> RunResult:
    """Run ``entrypoint(*args)`` from ``source`` once, in ``code``'s sandbox, and report what happened.

    User failures, timeouts, limits, crashes and a missing sandbox come back as a
    ``RunResult`` with ``ok=False``; only bad arguments from the caller raise.
    ``on_output_line`` is called on the calling thread, once per line of output (without
    its newline) as the child prints it; lines longer than 64 KiB arrive in pieces. A
    runner that answered but won't exit is stopped after a short grace and its answer kept.
    ``stop_when`` is asked every few seconds, on the calling thread, whether the run is
    still wanted: a reason stops it (phase "stopped", the reason as the error).
    """
    if kind not in ("sync", "async", "check", "train", "monitor"):
        raise ValueError(f"kind must be 'sync', 'async', 'check', 'train' or 'monitor', not {kind!r}")
    request = encode_frame(
        {"source": str(source), "entrypoint": entrypoint, "kind": kind, "args": [str(a) for a in args]}
    )
    started = time.monotonic()
    code = dataclasses.replace(code, runner_args=("oneshot",))
    try:
        launched = sandbox.launch(code, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except sandbox.SandboxUnavailable as exc:
        return RunResult(ok=False, phase="sandbox", error=str(exc), duration=time.monotonic() - started)
    except OSError as exc:
        return RunResult(
            ok=False,
            phase="crash",
            error=f"could not start the model's interpreter {code.python}: {exc}",
            duration=time.monotonic() - started,
        )
    try:
        supervisor = _Supervisor(launched, code, request, on_output_line, stop_when)
        result = supervisor.run(started + timeout, timeout, started)
    finally:
        launched.release()
    if not result.ok and result.phase != "limit":
        hint = code.limits.explain(f"{result.error}\n{result.traceback or ''}", result.returncode)
        if hint:
            result.limit = hint
            result.error = f"{result.error}\n{hint}"
    return result


class _Supervisor:
    """Feeds one runner process, collects its frame and output, enforces the deadline."""

    def __init__(
        self,
        launched: sandbox.Launched,
        code: sandbox.UserCode,
        request: bytes,
        on_output_line: Callable[[str], None] | None,
        stop_when: Callable[[], str | None] | None = None,
    ):
        self.proc = launched.process
        self.stop_when = stop_when
        self.stopped_because: str | None = None
        self.next_stop_check = time.monotonic() + _STOP_CHECK_INTERVAL
        self.launched = launched
        self.code = code
        self.request = request
        self.on_output_line = on_output_line
        # Events from the helper threads, handled on the caller's thread (so the callback
        # can use the caller's database connection, for instance).
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.stdout = bytearray()
        self.stdout_refused = False
        # stderr's lines on their way to the caller's thread (see _PENDING_OUTPUT_CHARS).
        self.pending = threading.Condition()
        self.pending_lines: list[str] = []
        self.pending_chars = 0
        self.stopped_reading = False
        self.output: deque[str] = deque()
        self.output_chars = 0
        self.output_truncated = False
        self.callback_failed = False
        self.over_disk = False
        self.disk_full = False
        self.next_disk_check = 0.0

    def _check_disk(self, now: float, *, at_exit: bool = False) -> bool:
        """True when the job wrote more than its disk limit in its folder, or the folder's
        disk has less than NEOMARIL_DISK_RESERVE_MB free (checked twice a second, and
        `at_exit`: a fast writer fills gigabytes between two checks): the platform's
        database shares that disk, and a full one stops the whole platform."""
        if self.code.writable is None or (now < self.next_disk_check and not at_exit):
            return False
        self.next_disk_check = now + _DISK_CHECK_INTERVAL
        if settings.DISK_RESERVE_MB:
            with contextlib.suppress(OSError):  # unknown: the folder's own limit still holds
                if free_bytes(self.code.writable) < settings.DISK_RESERVE_MB * 1024 * 1024:
                    self.disk_full = True
                    return True
        if not self.code.limits.disk_mb:
            return False
        limit = self.code.limits.disk_mb * 1024 * 1024
        return folder_bytes(self.code.writable, stop_above=limit) > limit

    def _check_stop(self, now: float) -> bool:
        """True when the caller no longer wants the run (see run_oneshot's stop_when)."""
        if self.stop_when is None or now < self.next_stop_check:
            return False
        self.next_stop_check = now + _STOP_CHECK_INTERVAL
        self.stopped_because = self.stop_when()
        return self.stopped_because is not None

    def run(self, deadline: float, timeout: float, started: float) -> RunResult:
        assert self.proc.stdin and self.proc.stdout and self.proc.stderr
        threads = [
            threading.Thread(target=self._feed_stdin, args=(self.proc.stdin,), daemon=True),
            threading.Thread(target=self._read_stdout, args=(self.proc.stdout,), daemon=True),
            threading.Thread(target=self._read_stderr, args=(self.proc.stderr,), daemon=True),
            threading.Thread(target=self._wait_exit, daemon=True),
        ]
        for thread in threads:
            thread.start()

        timed_out = killed = exited = stdout_done = stderr_done = False
        drain_until = kill_wait_until = linger_until = 0.0
        while not (exited and stdout_done and stderr_done):
            now = time.monotonic()
            # The answer is one length-prefixed frame; the pipe itself may stay open
            # (the sandbox's own processes hold it until the runner exits).
            answered = linger_until > 0.0
            if exited:
                if now >= drain_until:
                    # Something outside the process group (a setsid'd grandchild) keeps
                    # the pipes open; the daemon reader threads end when it does.
                    break
                limit = drain_until
            elif killed:
                if now >= kill_wait_until:  # unkillable (stuck in the kernel): give up on it
                    break
                limit = kill_wait_until
            elif answered and now >= linger_until:
                # The answer is in but the interpreter won't exit (a non-daemon thread,
                # a hanging atexit hook): the answer stands, the process goes.
                self._add_output(
                    f"[neomaril: the model process did not exit within {_EXIT_GRACE:g} s "
                    "of answering and was stopped]\n"
                )
                killed = True
                self._kill_group()
                kill_wait_until = now + _KILL_WAIT
                continue
            elif now >= deadline and not answered:
                timed_out = killed = True
                self._kill_group()
                kill_wait_until = now + _KILL_WAIT
                continue
            elif self._check_disk(now) or (not answered and self._check_stop(now)):
                self.over_disk = self.stopped_because is None
                killed = True
                self._kill_group()
                kill_wait_until = now + _KILL_WAIT
                continue
            else:
                limit = min(deadline, linger_until) if answered else deadline
                if self.code.writable is not None:
                    limit = min(limit, self.next_disk_check)
                if self.stop_when is not None and not answered:  # answered: no more asking
                    limit = min(limit, self.next_stop_check)
            try:
                event, value = self.events.get(timeout=max(0.0, limit - now))
            except queue.Empty:
                continue
            if event == "stderr_eof":
                stderr_done = True
            elif event == "stdout_eof":
                stdout_done = True
            elif event == "lines":
                self._take_lines()
            elif event == "stdout":
                if not linger_until and frame_complete(self.stdout):
                    linger_until = min(deadline, time.monotonic() + _EXIT_GRACE)
            elif event == "stdout_refused" and not killed:
                # An answer announced over the frame limit: invalid whatever follows
                # (_result says so), and not worth reading.
                killed = True
                self._kill_group()
                kill_wait_until = now + _KILL_WAIT
            elif event == "exited":
                exited = True
                # Leftover children would keep running and keep the pipes open.
                self._kill_group()
                self.proc.wait()
                drain_until = time.monotonic() + _DRAIN_GRACE
        if not killed and not timed_out and self._check_disk(time.monotonic(), at_exit=True):
            self.over_disk = True  # its answer does not stand: it wrote past the limit
        # Output that arrived after a cut-off still counts; a reader still waiting for room
        # is let go (what it reads from now on is dropped).
        self._take_lines()
        with self.pending:
            self.stopped_reading = True
            self.pending.notify_all()

        result = self._result(timed_out, timeout)
        result.returncode = self.launched.returncode
        result.duration = time.monotonic() - started
        result.output = self._output_text()
        return result

    # ------------------------------------------------------------------ helper threads

    def _feed_stdin(self, stdin: IO[bytes]) -> None:
        # OSError: the runner died before reading; its exit says why.
        with contextlib.suppress(OSError):
            stdin.write(self.request)
            stdin.close()

    def _read_stdout(self, stdout: IO[bytes]) -> None:
        """Keep the answer frame and nothing more: the model's code can write to the
        answer's pipe too, and whatever it wrote was held in the worker's memory."""
        try:
            while chunk := stdout.read1(_CHUNK_BYTES):  # type: ignore[attr-defined]
                if self.stdout_refused:
                    continue  # drained, so the writer does not block; dropped
                before = len(self.stdout)
                self.stdout += chunk
                if len(self.stdout) >= HEADER.size:
                    (length,) = HEADER.unpack_from(self.stdout)
                    if length > MAX_FRAME_BYTES:
                        # The header alone is kept: reading it says what was wrong.
                        del self.stdout[HEADER.size :]
                        self.stdout_refused = True
                        self.events.put(("stdout_refused", None))
                        continue
                    # Bytes after the one frame are not part of any answer.
                    del self.stdout[HEADER.size + length :]
                if len(self.stdout) > before:
                    self.events.put(("stdout", None))
        finally:
            self.events.put(("stdout_eof", None))

    def _read_stderr(self, stderr: IO[bytes]) -> None:
        # Incremental: a UTF-8 character split across two reads must survive.
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        partial = ""
        try:
            while raw := stderr.read1(_CHUNK_BYTES):  # type: ignore[attr-defined]
                *lines, partial = (partial + decoder.decode(raw)).split("\n")
                lines = [line + "\n" for line in lines]
                if len(partial) >= _CHUNK_BYTES:
                    lines.append(partial)
                    partial = ""
                self._queue_lines(lines)
            self._queue_lines([partial + decoder.decode(b"", final=True)])
        finally:
            self.events.put(("stderr_eof", None))

    def _queue_lines(self, lines: list[str]) -> None:
        """Hand lines to the caller's thread, waiting while too much is still unhandled."""
        lines = [line for line in lines if line]
        if not lines:
            return
        with self.pending:
            while self.pending_chars > _PENDING_OUTPUT_CHARS and not self.stopped_reading:
                self.pending.wait()
            if self.stopped_reading:
                return
            wake = not self.pending_lines
            self.pending_lines.extend(lines)
            self.pending_chars += sum(map(len, lines))
        if wake:  # one event per batch, however many lines it gathers
            self.events.put(("lines", None))

    def _wait_exit(self) -> None:
        # Wait without reaping: while the runner is a zombie its pid, and so its process
        # group id, can't be reused, so _kill_group can't hit an unrelated process.
        try:
            os.waitid(os.P_PID, self.proc.pid, os.WEXITED | os.WNOWAIT)
        except (AttributeError, ChildProcessError, InterruptedError):
            self.proc.wait()
        self.events.put(("exited", None))

    # ------------------------------------------------------------------ main thread

    def _kill_group(self) -> None:
        self.launched.kill()

    def _take_lines(self) -> None:
        with self.pending:
            lines, self.pending_lines, self.pending_chars = self.pending_lines, [], 0
            self.pending.notify_all()
        if not lines:
            return
        for line in lines:
            self._pass_on(line)
        # Kept as one string per batch: a str per line of a model printing short lines cost
        # about 25 times the characters kept (8 M of them: some 400 MB).
        self._keep("".join(lines))

    def _add_output(self, text: str) -> None:
        self._pass_on(text)
        self._keep(text)

    def _keep(self, text: str) -> None:
        self.output.append(text)
        self.output_chars += len(text)
        while self.output_chars > MAX_OUTPUT_CHARS and len(self.output) > 1:
            self.output_chars -= len(self.output.popleft())
            self.output_truncated = True

    def _pass_on(self, text: str) -> None:
        if self.on_output_line is not None and not self.callback_failed:
            try:
                self.on_output_line(text.removesuffix("\n").removesuffix("\r"))
            except Exception:
                # Stop calling it, but keep reading: a full pipe would block the runner.
                self.callback_failed = True
                logger.exception("on_output_line failed; the rest of the output is only in RunResult.output")

    def _output_text(self) -> str:
        text = "".join(self.output)
        return "[... earlier output truncated ...]\n" + text if self.output_truncated else text

    def _result(self, timed_out: bool, timeout: float) -> RunResult:
        if self.stopped_because is not None:
            return RunResult(ok=False, phase="stopped", error=self.stopped_because)
        if self.disk_full:
            message = (
                "The server's data disk is nearly full (less than NEOMARIL_DISK_RESERVE_MB = "
                f"{settings.DISK_RESERVE_MB} MB free): the model's code was stopped before it filled it."
            )
            return RunResult(ok=False, phase="limit", error=message, limit=message, disk_full=True)
        if self.over_disk:
            message = self.code.limits.disk_exceeded_message()
            return RunResult(ok=False, phase="limit", error=message, limit=message)
        if timed_out:
            return RunResult(
                ok=False, phase="timeout", timed_out=True, error=f"timed out after {timeout:g} s"
            )
        if not self.stdout:
            return RunResult(ok=False, phase="crash", error=self._crash_message("before returning a result"))
        try:
            frame = read_frame_from_file(io.BytesIO(bytes(self.stdout)))
        except ProtocolError as exc:
            return RunResult(
                ok=False, phase="crash", error=self._crash_message(f"with an invalid answer ({exc})")
            )
        if not isinstance(frame, dict) or not isinstance(frame.get("ok"), bool):
            return RunResult(
                ok=False, phase="crash", error=self._crash_message("with an answer of unknown shape")
            )
        if frame["ok"]:
            return RunResult(ok=True, result=frame.get("result"))
        return RunResult(
            ok=False,
            error=str(frame.get("error") or "unknown error"),
            traceback=frame.get("traceback"),
            phase=frame.get("phase"),
        )

    def _crash_message(self, what: str) -> str:
        code = self.launched.returncode
        if code is not None and code < 0:
            try:
                how = f"was killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f"was killed by signal {-code}"
            if code == -signal.SIGKILL:
                how += " (out of memory?)"
            elif code == -signal.SIGSEGV:
                how += " (a crash in native code)"
        else:
            how = f"exited with code {code}"
        message = f"the model process {how} {what}"
        lines = "".join(self.output).splitlines()[-_CRASH_TAIL_LINES:]
        if lines:
            message += "\nlast output:\n" + "\n".join(lines)
        return message
