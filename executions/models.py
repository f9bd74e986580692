"""Async executions: one run of an Async model's entrypoint on one uploaded input file."""

from __future__ import annotations

import os
import stat
from functools import cached_property
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone

from groups import jobs
from groups.jobs import Job, register_kind
from groups.storage import register_folders
from models_app.models import MLModel


class Execution(Job):
    """One execution: its files live in `folder`, its state and log in this row.

    `number` counts up per model and is what users see ("Execution 5 started"); the
    primary key is never shown. A job (groups.jobs): recovery runs the same row again,
    counting its runs in `attempts`.
    """

    ATTEMPT_FIELD = "attempts"

    class Status(models.TextChoices):
        REQUESTED = "Requested"  # waiting for a concurrency slot, or for a worker
        RUNNING = "Running"
        SUCCEEDED = "Succeeded"
        FAILED = "Failed"

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="executions")
    # The model's version that runs it (the live one when it was submitted, or the one
    # its per-version URL named); `model` stays the model, whose numbering it follows.
    version = models.ForeignKey(
        MLModel,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
        help_text="The model version that runs it (empty: version 1).",
    )
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.REQUESTED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="Empty when submitted with the group token.",
    )

    input_file = models.CharField(max_length=128, help_text="Name of the uploaded input, in the folder.")
    input_size = models.PositiveBigIntegerField()
    output_file = models.CharField(
        max_length=jobs.OUTPUT_PATH_MAX_CHARS,
        blank=True,
        help_text="Path of the result, relative to the folder.",
    )
    output_size = models.PositiveBigIntegerField(null=True, blank=True)
    error_message = models.TextField(blank=True)
    # started_at, finished_at, heartbeat_at and log come from Job.

    requested_at = models.DateTimeField(default=timezone.now)
    # queued_at (from Job) is set when a worker task is enqueued for it: a Requested
    # execution with queued_at holds one of the concurrency slots (executions.services.dispatch).
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Runs started (2 after a recovery).")
    timeout = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds allowed to the last run.")
    host = models.CharField(max_length=255, blank=True, help_text="Node whose worker ran it last.")
    files_removed_at = models.DateTimeField(
        null=True, blank=True, help_text="When retention (or the model's deletion) removed its files."
    )

    @property
    def runs_on(self) -> MLModel:
        """The model row whose code, files and environment run this execution."""
        return self.version if self.version_id else self.model

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["model", "number"], name="unique_execution_number")]
        indexes = [
            models.Index(fields=["model", "status"]),
            models.Index(fields=["status", "queued_at"]),
            models.Index(fields=["finished_at"]),
            # The dashboard's executions of the last 24 hours and a model's latest one,
            # read from the index rather than from every execution of the models.
            models.Index(fields=["model", "requested_at"], name="execution_model_requested"),
            # A model's waiting executions by age: dispatch seeks each model's oldest
            # without passing over the others (a flood of 100,000).
            models.Index(fields=["model", "status", "queued_at", "id"], name="execution_waiting"),
        ]

    def __str__(self) -> str:
        return f"execution {self.number} of {self.model.hash}"

    @property
    def folder(self) -> Path:
        """The execution's `data_path`: its input, whatever the model writes, its result."""
        return Path(self._in_folder())

    def _in_folder(self, *names: str) -> str:
        # A str, not a Path: a listing builds two per row, and Path's joins cost 5x more.
        return os.path.join(settings.EXECUTIONS_DIR, self.model.hash, str(self.number), *names)

    @property
    def input_path(self) -> Path:
        return self.folder / self.input_file

    @property
    def output_path(self) -> Path | None:
        return self.folder / self.output_file if self.output_file else None

    # On disk, not only files_removed_at: an operator may delete an execution's folder by
    # hand. One stat per file (microseconds on a local disk), once per loaded row.
    @cached_property
    def input_on_disk(self) -> bool:
        return self.files_removed_at is None and _is_file(self._in_folder(self.input_file))

    @cached_property
    def result_on_disk(self) -> bool:
        return (
            self.status == self.Status.SUCCEEDED
            and self.files_removed_at is None
            and bool(self.output_file)
            and _is_file(self._in_folder(self.output_file))
        )

    @property
    def files_available(self) -> bool:
        """Its files are still on the server: the input, and the result once Succeeded."""
        if self.status == self.Status.SUCCEEDED and self.output_file:
            return self.input_on_disk and self.result_on_disk
        return self.input_on_disk

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)

    @property
    def attempt(self) -> int:
        return self.attempts


def _is_file(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # gone, or unreadable: nothing to offer for download
        return False


class DispatchLock(models.Model):
    """A single row, locked (SELECT ... FOR UPDATE) while concurrency slots are handed out.

    SQLite serialises writers anyway (IMMEDIATE transactions); on PostgreSQL this row is
    what keeps two dispatchers from both giving away the last free slot.
    """

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)

    def __str__(self) -> str:
        return "execution dispatch lock"


def _execution_folders(group_id: int) -> list[Path]:
    """Each of the group's models' executions: inputs, results, what the model wrote."""
    hashes = MLModel.objects.filter(group_id=group_id, line=None).values_list("hash", flat=True)
    return [settings.EXECUTIONS_DIR / folder_hash for folder_hash in hashes]


register_folders(_execution_folders)
# Counted in its group's share of the workers, never deferred: executions wait for their own slots.
register_kind(Execution, group="model__group_id", waiting=Execution.Status.REQUESTED)
