"""Tie processes to their parents, so that killing one process ends everything under it.

Linux sends a process its *parent-death signal* (`prctl(PR_SET_PDEATHSIG)`) when the
**thread** that forked it exits. We set it to SIGKILL:

- `die_with_parent()` in a process: it is killed as soon as its parent is gone.
- `children_die_with_parent()`: every child that this process's **main thread** forks
  from now on calls `die_with_parent()` right after the fork (an `os.register_at_fork`
  hook). Only main-thread forks: a fork made by a short-lived thread would otherwise
  be killed when that thread ends. django-q2 forks its Sentinel from the cluster's main
  thread and its workers, monitor and pusher from the Sentinel's main thread
  (`multiprocessing`, "fork" context); gunicorn forks its workers from the arbiter's
  main loop. `subprocess.Popen` without `preexec_fn` skips these hooks, so commands the
  platform starts (uv, runners) are not affected.

`python -m portal.procs PROGRAM [ARGS...]` runs a Python program (a module such as
`gunicorn`, or a script such as `manage.py`) with both applied: this is how
`deploy/supervisord.conf` starts web, worker and model host, so that a `kill -9` of any
of them (or of supervisord) leaves no orphan behind and the restarted program does not
share the port or the queue with survivors of the previous one.
"""

from __future__ import annotations

import ctypes
import os
import runpy
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1
_libc = None
_fork = threading.local()  # per forking thread: set by the "before" hook, read in the child
_registered = False


def _prctl(option: int, arg: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    if _libc.prctl(option, arg, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl({option}, {arg}) failed: {os.strerror(errno)}")


def die_with_parent(parent_pid: int | None = None, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send `sig` to this process when its parent (thread) exits.

    `parent_pid` is the parent this process expects (known in a forked child): if it is
    already gone, because we were re-parented before the signal was armed, the process
    exits at once.
    """
    _prctl(PR_SET_PDEATHSIG, sig)
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)


def _before_fork() -> None:
    _fork.parent = os.getpid()
    _fork.from_main_thread = threading.current_thread() is threading.main_thread()


def _after_fork_in_child() -> None:
    if getattr(_fork, "from_main_thread", False):
        die_with_parent(_fork.parent)


def children_die_with_parent() -> None:
    """Every child forked from now on by this process's main thread dies with it."""
    global _registered
    if not _registered:
        os.register_at_fork(before=_before_fork, after_in_child=_after_fork_in_child)
        _registered = True


def yield_to_runners() -> None:
    """Schedule this process (its current thread and the threads it starts from now on)
    as SCHED_BATCH: its wake-ups no longer preempt a process running on the core.

    For the web workers, which share the node's cores with the models' runners: a call's
    answer, or a new request, used to interrupt a runner in the middle of a prediction,
    which then went on with cold caches; a batch worker runs at the runner's next pause or
    at the end of its slice, and then handles every call ready by then in one wake-up.
    Under load that cut the web worker's CPU per call by about a third and the runners'
    by a few per cent (bench/README.md, "The web workers yield to the runners"). Fairness
    is unchanged: the worker still gets its share of the CPU.
    """
    os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))


def main(argv: list[str]) -> None:
    """`python -m portal.procs gunicorn ...` or `python -m portal.procs manage.py qcluster`."""
    if not argv or argv[0] in ("-h", "--help"):
        sys.exit("usage: python -m portal.procs MODULE|SCRIPT.py [ARGS...]")
    die_with_parent()
    children_die_with_parent()
    program, sys.argv = argv[0], argv
    if program.endswith(".py"):
        runpy.run_path(program, run_name="__main__")
    else:
        runpy.run_module(program, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
