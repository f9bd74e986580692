"""portal.procs: every process the platform forks gets the parent-death signal, so none
outlives its parent. Checked in plain forked processes; the real stack under supervisord
(kill -9 of each program) is tests/deploy/test_supervision.py.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import textwrap

import psutil

from portal import procs
from tests.helpers.processes import ROOT, wait_gone

PR_GET_PDEATHSIG = 2

CHILD_REPORT = textwrap.dedent(
    """
    import ctypes, os, sys, threading, time
    sys.path.insert(0, {root!r})
    from portal import procs

    def pdeathsig():
        value = ctypes.c_int()
        ctypes.CDLL(None).prctl(2, ctypes.byref(value), 0, 0, 0)
        return value.value

    procs.children_die_with_parent()
    results = {{}}

    def fork_and_report(key):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.write(w, str(pdeathsig()).encode())
            os._exit(0)
        os.waitpid(pid, 0)
        results[key] = int(os.read(r, 16))

    fork_and_report("main thread")
    thread = threading.Thread(target=fork_and_report, args=("other thread",))
    thread.start()
    thread.join()
    print(results["main thread"], results["other thread"])
    """
)


def test_children_forked_by_the_main_thread_get_the_parent_death_signal():
    out = subprocess.run(
        [sys.executable, "-c", CHILD_REPORT.format(root=str(ROOT))],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    # SIGKILL for the main thread's children; none for a thread's (it would die with the thread).
    assert out.stdout.split() == [str(int(signal.SIGKILL)), "0"]


GRANDCHILD = textwrap.dedent(
    """
    import os, sys, time
    sys.path.insert(0, {root!r})
    from portal import procs

    procs.children_die_with_parent()
    pid = os.fork()
    if pid == 0:
        time.sleep(60)  # the grandchild: must not outlive its parent
        os._exit(0)
    print(pid, flush=True)
    time.sleep(60)
    """
)


def test_a_killed_parent_takes_its_forked_children_along():
    parent = subprocess.Popen(
        [sys.executable, "-c", GRANDCHILD.format(root=str(ROOT))], stdout=subprocess.PIPE, text=True
    )
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        assert child.ppid() == parent.pid
        parent.kill()
        parent.wait(10)
        assert wait_gone([child], timeout=10) == []
    finally:
        parent.kill()
        parent.stdout.close()


def test_die_with_parent_arms_the_signal_and_exits_when_the_parent_is_already_gone():
    def pdeathsig() -> int:
        value = ctypes.c_int()
        ctypes.CDLL(None).prctl(PR_GET_PDEATHSIG, ctypes.byref(value), 0, 0, 0)
        return value.value

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover (child)
        try:
            procs.die_with_parent(os.getppid())
            os.write(w, str(pdeathsig()).encode())
            procs.die_with_parent(parent_pid=os.getppid() + 1)  # "my parent is gone": exits 1
            os._exit(0)
        finally:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert int(os.read(r, 16)) == signal.SIGKILL
    assert os.waitstatus_to_exitcode(status) == 1
    os.close(r)
    os.close(w)
