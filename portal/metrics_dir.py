"""Where this node's processes write their metrics (prometheus-client's multiprocess mode).

gunicorn's workers and django-q2's each write memory-mapped files of their own, and
`GET /metrics` (portal.metrics) adds them all up. Each program has its own folder
under `<NEOMARIL_RUN_DIR>/metrics/` (`web`, `worker`), emptied when that program starts:
the files of its previous run are gone with its processes (they die with it:
portal.procs), and a program that restarts alone (supervisord restarts a crashed one)
must not delete the files the other's live processes still write to: they would go
on writing into deleted files, and their counts would vanish from /metrics until they
exit. RUN_DIR is local to the node, never shared storage.

prometheus-client decides at its first import whether to write files (it reads
PROMETHEUS_MULTIPROC_DIR then), so `prepare` runs before Django loads the apps:
gunicorn's `on_starting` (portal/gunicorn.conf.py), before it forks a worker, and
`manage.py qcluster`, before django-q2 starts its cluster. Nothing here imports
prometheus-client.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from django.conf import settings

ENV = "PROMETHEUS_MULTIPROC_DIR"
PROGRAMS = ("web", "worker")


def root() -> Path:
    return settings.RUN_DIR / "metrics"


def folder_of(program: str) -> Path:
    if program not in PROGRAMS:
        raise ValueError(f"unknown program {program!r}: one of {', '.join(PROGRAMS)}")
    return root() / program


def prepare(program: str) -> Path:
    """Empty `program`'s folder and point this process (and those it starts) at it."""
    folder = folder_of(program)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, mode=0o700)
    os.environ[ENV] = str(folder)
    return folder


def in_use() -> bool:
    """Whether this process writes its metrics to files (else they stay in memory)."""
    return bool(os.environ.get(ENV))


def files() -> list[str]:
    """Every program's files on this node."""
    return sorted(str(path) for program in PROGRAMS for path in (root() / program).glob("*.db"))
