"""What each kind of job may see and use: the ``UserCode`` handed to the launcher.

The build's smoke test, the warm runners of the model host, Async executions, training
runs and monitoring jobs all describe their process here, so the folders, the network switch, the
secrets and the limits of user code are decided in one place (the launcher itself is
``models_app.runtime.sandbox``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal

from django.conf import settings

from models_app.models import MLModel
from models_app.runtime.sandbox import Limits, UserCode
from models_app.services import decrypted_env

Job = Literal["build", "serve", "execution", "training", "monitoring"]

# One BLAS/OpenMP thread per warm runner: concurrency comes from replicas, and a runner
# that spawns a thread per core fights the web process for the CPU.
SINGLE_THREADED = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


# What a job may write when its group's storage quota leaves less than its own limit.
QUOTA_LEFT = "the group's storage quota"


def limits_for(job: Job, storage_room: int | None = None) -> Limits:
    """The configured limits of one kind of job, with the settings that raise them.

    `storage_room`: bytes its group's quota still allows (groups.storage.room); a job
    that writes a folder writes no more than that, or a queue of them took the group far
    past its quota (each up to its own limit) before any upload was refused.
    """
    memory, memory_setting = {
        "build": (settings.BUILD_MEMORY_LIMIT_MB, "NEOMARIL_BUILD_MEMORY_LIMIT_MB"),
        "serve": (settings.RUNNER_MEMORY_LIMIT_MB, "NEOMARIL_RUNNER_MEMORY_LIMIT_MB"),
        "execution": (settings.EXECUTION_MEMORY_LIMIT_MB, "NEOMARIL_EXECUTION_MEMORY_LIMIT_MB"),
        "training": (settings.TRAINING_MEMORY_LIMIT_MB, "NEOMARIL_TRAINING_MEMORY_LIMIT_MB"),
        "monitoring": (settings.MONITORING_MEMORY_LIMIT_MB, "NEOMARIL_MONITORING_MEMORY_LIMIT_MB"),
    }[job]
    disk, disk_setting = {
        "execution": (settings.EXECUTION_DISK_MB, "NEOMARIL_EXECUTION_DISK_MB"),
        "training": (settings.TRAINING_DISK_MB, "NEOMARIL_TRAINING_DISK_MB"),
        "monitoring": (settings.MONITORING_DISK_MB, "NEOMARIL_MONITORING_DISK_MB"),
    }.get(job, (settings.SANDBOX_TMP_MB, "NEOMARIL_SANDBOX_TMP_MB"))
    if storage_room is not None and job in ("execution", "training") and storage_room < disk * 2**20:
        disk, disk_setting = max(1, storage_room // 2**20), QUOTA_LEFT
    return Limits(
        memory_mb=memory,
        processes=settings.SANDBOX_PROCESSES,
        disk_mb=disk,
        cpu_seconds=settings.BUILD_CPU_SECONDS if job == "build" else 0,
        tmp_mb=settings.SANDBOX_TMP_MB,
        names={
            "memory": memory_setting,
            "processes": "NEOMARIL_SANDBOX_PROCESSES",
            "disk": disk_setting,
            "cpu": "NEOMARIL_BUILD_CPU_SECONDS",
            "tmp": "NEOMARIL_SANDBOX_TMP_MB",
        },
    )


def model_code(
    model: MLModel,
    job: Job,
    *,
    python: Path | None = None,
    extra_env: Mapping[str, str] | None = None,
    writable: Path | None = None,
    protected: Sequence[Path] = (),
    runner_args: Sequence[str] = (),
    pass_fds: Sequence[int] = (),
    storage_room: int | None = None,
) -> UserCode:
    """The sandboxed process of ``model`` for ``job``.

    It reads the model's folder, writes only ``writable`` (an execution's folder) less the
    ``protected`` files in it (the execution's input), gets
    the model's decrypted ``.env`` (and ``extra_env``) in its environment and nothing of
    the platform's, and reaches the network only if the model allows it.
    """
    env = {
        **(SINGLE_THREADED if job == "serve" else {}),
        **({"HOME": str(writable)} if writable else {}),  # an Async run's HOME is its data_path
        **decrypted_env(model),
        **(extra_env or {}),
    }
    return UserCode(
        python=python or model.python,
        env=env,
        cwd=writable or model.folder,
        runner_args=tuple(runner_args),
        read_only=(model.folder,),
        writable=writable,
        protected=tuple(protected),
        network=model.allow_network,
        limits=limits_for(job, storage_room),
        pass_fds=tuple(pass_fds),
    )


def training_code(
    *,
    python: Path,
    folder: Path,
    home: Path,
    env: Mapping[str, str],
    network: bool,
    storage_room: int | None = None,
) -> UserCode:
    """The sandboxed process of a training run: it writes ``folder`` (its work and output
    folders) and nothing else, with the run's ``.env`` values in ``env``.

    It starts in ``folder`` itself: bwrap enters the start folder before it becomes the
    job's uid, and only the top of the writable folder is open to that (the harness then
    moves into ``base_path``).
    """
    return UserCode(
        python=python,
        env={"HOME": str(home), **env},
        cwd=folder,
        runner_args=(),
        read_only=(),
        writable=folder,
        network=network,
        limits=limits_for("training", storage_room),
    )


def monitoring_code(
    model: MLModel, *, python: Path, folder: Path, read_only: Sequence[Path] = ()
) -> UserCode:
    """The sandboxed process of a monitoring job (a validation, or one batch of a period).

    It reads the model's folder and ``read_only`` (the reference tables, the preprocess
    file), writes only ``folder``, gets the model's decrypted ``.env``, and reaches the
    network only if the model allows it. It starts in ``folder`` itself: bwrap enters the
    start folder before it becomes the job's uid, and only the top of the writable folder
    is open to that.
    """
    return UserCode(
        python=python,
        env={**SINGLE_THREADED, "HOME": str(folder), **decrypted_env(model)},
        cwd=folder,
        runner_args=(),
        read_only=(model.folder, *read_only),
        writable=folder,
        network=model.allow_network,
        limits=limits_for("monitoring"),
    )
