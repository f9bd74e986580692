"""Finding the runner processes a dead worker left behind, so recovery can stop them first."""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

import psutil

from models_app.runtime import sandbox


def kill_oneshots_in(folder: Path) -> int:
    """Kill this node's oneshot runners working in ``folder``; returns a killed pid or 0.

    A job whose worker died is run again only once its old process is gone, so two runs
    never share a folder.
    """
    folder_path = os.path.realpath(folder)
    runners = {str(sandbox.RUNNER_PATH), sandbox.SANDBOX_RUNNER_PATH}
    killed = 0
    for proc in psutil.process_iter(["pid", "cwd", "cmdline"]):
        info = proc.info
        cmdline = info.get("cmdline") or []
        # A sandbox names the folder it binds on its command line; an unsandboxed runner works in it.
        cwd = info.get("cwd") or ""
        in_folder = cwd == folder_path or cwd.startswith(folder_path + os.sep) or folder_path in cmdline
        if not in_folder or runners.isdisjoint(cmdline) or "oneshot" not in cmdline:
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            # The runner leads its own process group: that takes what the user's code started too.
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
            killed = proc.pid
    return killed
