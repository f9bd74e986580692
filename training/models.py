"""Training experiments and their runs.

An experiment groups the runs of one modelling question (a name, a group, a model
type); a run is one training: Custom (the user's ``train_model`` in its own environment),
External (a model trained elsewhere, registered with its artifacts) or AutoML (the
platform's own search). A Succeeded run keeps its artifacts and can be promoted to a
model (``training.services.promote``).
"""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone

from groups.jobs import Job, register_kind
from groups.models import Group
from groups.storage import register_folders
from models_app.environments import env_python, environment_path

# The files a Succeeded run keeps in its artifacts folder, in the order the zip lists them.
MODEL_ARTIFACT = "model.pkl"
TABLE_ARTIFACTS = ("X_train.parquet", "y_train.parquet", "model_output.parquet")
JSON_ARTIFACTS = ("metrics.json", "params.json")
FROZEN_REQUIREMENTS = "requirements.frozen.txt"
EXTRAS_FOLDER = "extras"


def new_experiment_hash() -> str:
    return "T" + uuid.uuid4().hex


class Experiment(models.Model):
    """A named set of training runs of one group, for one type of model."""

    class ModelType(models.TextChoices):
        CLASSIFICATION = "Classification"
        REGRESSION = "Regression"
        UNSUPERVISED = "Unsupervised"

    hash = models.CharField(max_length=33, unique=True, default=new_experiment_hash, editable=False)
    name = models.CharField(max_length=64)
    group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="experiments")
    model_type = models.CharField(max_length=16, choices=ModelType.choices)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["group", "name", "model_type"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.hash})"

    @property
    def folder(self) -> Path:
        return settings.TRAININGS_DIR / self.hash


class TrainingRun(Job):
    """One training execution: its uploads and artifacts live in `folder`, its state here.

    `number` counts up per experiment and is what users see; the primary key is never
    shown. A job (groups.jobs): recovery runs the same row again, counting in `attempts`.

    The folder has two parts. ``sandbox/`` is all the user's code may write: ``work/``
    (its ``base_path``: the training data, the source, the extra files, whatever it
    writes) and ``out/`` (where the harness saves the artifacts). ``artifacts/`` is the
    platform's copy of what the run produced, checked and taken out of the sandbox's
    reach once the run has ended.
    """

    ATTEMPT_FIELD = "attempts"

    class Status(models.TextChoices):
        REQUESTED = "Requested"
        RUNNING = "Running"
        SUCCEEDED = "Succeeded"
        FAILED = "Failed"

    class TrainingType(models.TextChoices):
        CUSTOM = "Custom"
        EXTERNAL = "External"
        AUTOML = "AutoML"

    experiment = models.ForeignKey(Experiment, on_delete=models.CASCADE, related_name="runs")
    number = models.PositiveIntegerField()
    name = models.CharField(max_length=128)
    description = models.TextField(blank=True)
    training_type = models.CharField(max_length=8, choices=TrainingType.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.REQUESTED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    python_version = models.CharField(max_length=16, help_text="As requested, e.g. 3.9.")
    python_full_version = models.CharField(max_length=16, blank=True, help_text="Interpreter used.")
    training_reference = models.CharField(
        max_length=100, blank=True, help_text="Custom: the training function's name."
    )
    # Names of the uploads inside sandbox/work (the run's base_path).
    train_file = models.CharField(max_length=128, blank=True)
    source_file = models.CharField(max_length=128, blank=True)
    requirements_file = models.CharField(max_length=128, blank=True)
    extra_files = models.JSONField(default=list, blank=True)
    # External: the uploaded artifacts, by role (X_train, y_train, model_output, model).
    inputs = models.JSONField(default=dict, blank=True)
    requirements = models.JSONField(
        default=list, blank=True, help_text="Normalised requirement lines the environment is built from."
    )
    frozen_requirements = models.TextField(
        blank=True, help_text="What the environment contains (uv pip freeze)."
    )
    env_fingerprint = models.CharField(max_length=64, blank=True)
    env_names = models.JSONField(default=list, blank=True)
    env_ciphertext = models.BinaryField(null=True, blank=True, editable=False)
    allow_network = models.BooleanField(default=True)

    metrics = models.JSONField(null=True, blank=True)
    params = models.JSONField(null=True, blank=True)
    # Whatever else the run produced, for the page and the API: shapes, extras, how the
    # model was saved, the contract used, warnings.
    summary = models.JSONField(null=True, blank=True)
    artifacts = models.JSONField(default=list, blank=True, help_text="[{name, size}] of the kept files.")
    error_message = models.TextField(blank=True)
    # A member deleted the run's files (uploads, artifacts) to free the group's storage;
    # the row stays: its metrics, params and log, and the models promoted from it.
    files_removed_at = models.DateTimeField(null=True, blank=True)
    files_removed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    requested_at = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Runs started (2 after a recovery).")
    timeout = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds allowed to the function.")
    host = models.CharField(max_length=255, blank=True, help_text="Node whose worker ran it last.")

    class Meta:
        ordering = ["-number"]
        constraints = [
            models.UniqueConstraint(fields=["experiment", "number"], name="unique_training_run_number")
        ]
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"run {self.number} of {self.experiment.hash}"

    @property
    def attempt(self) -> int:
        return self.attempts

    @property
    def folder(self) -> Path:
        return self.experiment.folder / str(self.number)

    @property
    def sandbox_folder(self) -> Path:
        """The one folder the run's code may write."""
        return self.folder / "sandbox"

    @property
    def work_folder(self) -> Path:
        """The user's ``base_path``."""
        return self.sandbox_folder / "work"

    @property
    def out_folder(self) -> Path:
        return self.sandbox_folder / "out"

    @property
    def artifacts_folder(self) -> Path:
        return self.folder / "artifacts"

    @property
    def python(self) -> Path:
        return env_python(environment_path(settings.ENVS_DIR, self.env_fingerprint))

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)


def _experiment_folders(group_id: int) -> list[Path]:
    """The group's experiments: their runs' uploads, datasets and artifacts."""
    hashes = Experiment.objects.filter(group_id=group_id).values_list("hash", flat=True)
    return [settings.TRAININGS_DIR / folder_hash for folder_hash in hashes]


register_folders(_experiment_folders)
register_kind(
    TrainingRun,
    group="experiment__group_id",
    waiting=TrainingRun.Status.REQUESTED,
    send="training.services.send_run",
)
