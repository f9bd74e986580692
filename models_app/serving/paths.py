"""Where the host and the runners listen on this node."""

from __future__ import annotations

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


def runner_log(model_hash: str) -> Path:
    folder = settings.DATA_DIR / "logs" / "runners"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{model_hash}.log"
