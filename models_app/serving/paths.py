"""Where the host and the runners listen on this node."""

from __future__ import annotations

import contextlib
import os
import socket
from pathlib import Path

from django.conf import settings


def host_socket() -> Path:
    return settings.RUN_DIR / "host.sock"


def runner_socket(model_hash: str, build: int, replica: int) -> Path:
    # The build number is part of the name: after a redeploy, callers go straight to the
    # new build's runners while the host retires the old ones.
    return settings.RUN_DIR / f"{model_hash}.{build}.{replica}.sock"


def runner_socket_name(model_hash: str, build: int, replica: int) -> str:
    """runner_socket() as a string, without building Path objects (called per request)."""
    return f"{settings.RUN_DIR}/{model_hash}.{build}.{replica}.sock"


def runner_log_folder() -> Path:
    # The node's own folder: this node's host appends to it and reads its tail back when a
    # runner fails; another node's runners of the same model write their own. What a
    # model prints may be secret: the folder is the platform user's alone.
    folder = settings.NODE_DIR / "logs" / "runners"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)  # also a folder an earlier version made 0755
    return folder


def runner_log(model_hash: str) -> Path:
    return runner_log_folder() / f"{model_hash}.log"


def listen(path: Path) -> socket.socket:
    """The runner's socket, made by the host: the runner gets the file descriptor, never the path.

    Only the web processes and the host can reach the socket's folder; the sandboxed
    runner accepts on the descriptor it inherited.
    """
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old_umask = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(old_umask)
    # A cold start under load queues every waiting call here until the model is loaded.
    listener.listen(256)
    return listener
