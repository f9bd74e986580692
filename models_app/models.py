"""Deployed models, their builds and their audit trail."""

from __future__ import annotations

import uuid
from pathlib import Path

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from groups.fields import OrderedJSONField
from groups.jobs import Job, register_kind
from groups.models import Group
from groups.storage import register_folders
from models_app.environments import env_python, environment_path

# Runner processes of one model on one node, at most (a runner is one core's worth).
MAX_REPLICAS = 16


def new_model_hash() -> str:
    return "M" + uuid.uuid4().hex


class ServingFacts:
    """What serving derives from a model's row; shared by MLModel and calls.CalledModel
    (the hot path's lightweight copy of the row)."""

    __slots__ = ()

    @property
    def is_sync(self) -> bool:
        return self.operation == MLModel.Operation.SYNC

    @property
    def effective_request_timeout(self) -> int:
        return self.request_timeout or settings.PREDICT_TIMEOUT

    @property
    def effective_max_replicas(self) -> int:
        """Runners this node may give the model under load: its max_replicas, else the
        node's cores; never fewer than it keeps up anyway."""
        return max(self.min_replicas, self.max_replicas or min(settings.HOST_CORES, MAX_REPLICAS))


# Kept free of the django-q2 task timeout for the work around an Async execution itself
# (reading the model, validating and recording the result): a run never outlives its task.
EXECUTION_TASK_MARGIN = 30


def max_execution_timeout() -> int:
    """The longest execution timeout the worker's task timeout leaves room for."""
    return settings.Q_CLUSTER["timeout"] - EXECUTION_TASK_MARGIN


class MLModelQuerySet(models.QuerySet):
    def serving_status(self, *statuses: str) -> MLModelQuerySet:
        """Models whose live version (for a version row: itself) is in one of `statuses`."""
        return self.filter(
            models.Q(live_version__isnull=True, status__in=statuses)
            | models.Q(live_version__status__in=statuses)
        )


class MLModel(ServingFacts, models.Model):
    """A user's model: uploaded files, its environment and its lifecycle state."""

    class Operation(models.TextChoices):
        SYNC = "Sync"
        ASYNC = "Async"

    class Status(models.TextChoices):
        READY = "Ready"  # uploaded and validated, build queued
        BUILDING = "Building"
        DEPLOYED = "Deployed"
        FAILED = "Failed"
        DISABLED = "Disabled"
        DELETED = "Deleted"

    class InputType(models.TextChoices):
        JSON = "json"
        CSV = "csv"
        PARQUET = "parquet"

    hash = models.CharField(max_length=33, unique=True, default=new_model_hash, editable=False)
    name = models.CharField(max_length=64)
    group = models.ForeignKey(Group, on_delete=models.PROTECT, related_name="models")
    operation = models.CharField(max_length=8, choices=Operation.choices)
    model_reference = models.CharField(max_length=100, help_text="Name of the entrypoint function.")
    python_version = models.CharField(max_length=16, help_text="As requested, e.g. 3.9.")
    python_full_version = models.CharField(
        max_length=16, blank=True, help_text="Interpreter used by the last build."
    )
    input_type = models.CharField(max_length=8, choices=InputType.choices)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.READY, db_index=True)
    status_message = models.TextField(blank=True)

    # Its keys' order is the user's (groups/fields.py: PostgreSQL's jsonb would sort them).
    schema = OrderedJSONField(null=True, blank=True, help_text="Example of one input.")
    source_file = models.CharField(max_length=128)
    model_file = models.CharField(max_length=128)
    requirements_file = models.CharField(max_length=128)
    schema_file = models.CharField(max_length=128, blank=True)
    sample_file = models.CharField(max_length=128, blank=True)
    extra_files = models.JSONField(default=list, blank=True)
    requirements = models.JSONField(default=list, blank=True, help_text="Normalised requirement lines.")
    # Read by the sandbox when it starts the model's processes.
    allow_network = models.BooleanField(
        default=True, help_text="Let the model's code open outbound network connections."
    )

    # Secrets: only names in clear; values encrypted with MultiFernet (groups.crypto).
    env_names = models.JSONField(default=list, blank=True)
    env_ciphertext = models.BinaryField(null=True, blank=True, editable=False)

    env_fingerprint = models.CharField(
        max_length=64, blank=True, help_text="Content address of the environment."
    )
    smoke_result = OrderedJSONField(null=True, blank=True, help_text="Answer of the build's smoke test.")
    # --- executions app (issue 5): per-model limit of one async execution, in seconds.
    execution_timeout = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1)],
        help_text="Async only: seconds one execution may run before it is stopped. "
        "Empty: NEOMARIL_EXECUTION_TIMEOUT. Capped below the worker's task timeout.",
    )
    # --- end executions app

    # Sync serving: warm runner processes per node, between these two as the load asks
    # (the model host's scaler), and the build they run (runners of an older build are
    # recycled after a restart).
    min_replicas = models.PositiveSmallIntegerField(
        default=1,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_REPLICAS)],
        help_text="Warm runner processes per node (Sync) kept up while the model is in use.",
    )
    max_replicas = models.PositiveSmallIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_REPLICAS)],
        help_text="Runner processes per node the model may grow to under load (empty: the node's cores).",
    )
    request_timeout = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Seconds a Sync request may take (default: NEOMARIL_PREDICT_TIMEOUT).",
    )
    deployed_build = models.PositiveIntegerField(default=0, editable=False)

    # Set when the model was promoted from a training run (training.services.promote);
    # named by string so this app does not import the one above it.
    training_run = models.ForeignKey(
        "training.TrainingRun",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="promoted_models",
        help_text="The training run this model was promoted from.",
    )

    # Versions. A model's first upload is its row and version 1; each later upload is a
    # row of its own (own hash, files, environment, builds) pointing at the first through
    # `line`. The first row's hash is the model's stable run URL, which serves
    # `live_version` (None: the first row itself).
    line = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="later_versions",
        help_text="The model this row is a later version of (empty: the model itself, version 1).",
    )
    version = models.PositiveIntegerField(default=1, editable=False)
    live_version = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text="The version the model's run URL serves (empty: version 1).",
    )
    # When a person last chose the live version (a rollback, a roll forward): a version
    # made before that does not take the run URL over when its first build succeeds.
    live_chosen_at = models.DateTimeField(null=True, blank=True, editable=False)

    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="created_models"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deployed_at = models.DateTimeField(null=True, blank=True)

    objects = MLModelQuerySet.as_manager()

    class Meta:
        verbose_name = "model"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["group", "status"])]
        constraints = [
            models.UniqueConstraint(
                fields=["line", "version"],
                condition=models.Q(line__isnull=False),
                name="unique_model_version",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.hash})"

    @property
    def is_model(self) -> bool:
        """Whether this row is a model (and its version 1), not a later version."""
        return self.line_id is None

    @property
    def root(self) -> MLModel:
        """The model this row is a version of (itself for version 1)."""
        return self if self.line_id is None else self.line

    @property
    def serving(self) -> MLModel:
        """The row that answers the model's run URL: its live version (a version: itself)."""
        if self.line_id is None and self.live_version_id is not None:
            return self.live_version
        return self

    @property
    def live_number(self) -> int:
        """The number of the version the model's run URL serves."""
        root = self.root
        return root.live_version.version if root.live_version_id else 1

    def all_versions(self) -> models.QuerySet[MLModel]:
        """Every version of this row's model, version 1 first."""
        root_id = self.line_id or self.pk
        return MLModel.objects.filter(models.Q(pk=root_id) | models.Q(line_id=root_id)).order_by("version")

    @property
    def folder(self) -> Path:
        """The model's `base_path`: the uploaded files, and the Async smoke test's result (`smoke/`)."""
        return settings.MODELS_DIR / self.hash

    @property
    def python(self) -> Path:
        """The interpreter of the model's built environment (valid once deployed)."""
        return env_python(environment_path(settings.ENVS_DIR, self.env_fingerprint))

    @property
    def uploaded_files(self) -> list[str]:
        names = [
            self.source_file,
            self.model_file,
            self.requirements_file,
            self.schema_file,
            self.sample_file,
        ]
        return [name for name in [*names, *self.extra_files] if name]


class ModelBuild(Job):
    """One attempt at building and smoke-testing a model, with its log.

    A job (groups.jobs): a build recovered after its worker stopped is not run again
    but replaced by a new build, marked `recovered`.
    """

    ERROR_FIELD = None  # its log says what went wrong

    class Status(models.TextChoices):
        QUEUED = "Queued"
        RUNNING = "Running"
        SUCCEEDED = "Succeeded"
        FAILED = "Failed"
        CANCELLED = "Cancelled"

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="builds")
    number = models.PositiveIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # started_at, finished_at, heartbeat_at and log come from Job.
    recovered = models.BooleanField(default=False, help_text="Re-queued after its worker stopped.")

    class Meta:
        ordering = ["-number"]
        constraints = [models.UniqueConstraint(fields=["model", "number"], name="unique_build_number")]
        # /metrics counts builds by status, and recovery looks for Queued and Running ones:
        # from this index, not by reading every build with its log.
        indexes = [models.Index(fields=["status"], name="modelbuild_status")]

    def __str__(self) -> str:
        return f"build {self.number} of {self.model.hash}"

    @property
    def attempt(self) -> int:
        return 2 if self.recovered else 1


class ModelEvent(models.Model):
    """Audit trail: who did what to a model, and when."""

    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    action = models.CharField(max_length=32)
    detail = models.TextField(blank=True)
    at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.action} {self.model.hash}"


class DocsShareLink(models.Model):
    """A link that shows one model's Swagger page to whoever holds it, without logging in.

    Only the SHA-256 of its secret is stored (models_app.share_links makes and checks the
    signed key); it expires, and an owner can revoke it before then.
    """

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    model = models.ForeignKey(MLModel, on_delete=models.CASCADE, related_name="share_links")
    digest = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="The secret's first characters, to tell links apart.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"docs link {self.prefix}… of {self.model.hash}"

    @property
    def state(self) -> str:
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expires_at <= timezone.now() else "active"


def _model_folders(group_id: int) -> list[Path]:
    """The group's models' and versions' folders: their uploads, and smoke test results."""
    hashes = MLModel.objects.filter(group_id=group_id).values_list("hash", flat=True)
    return [settings.MODELS_DIR / model_hash for model_hash in hashes]


register_folders(_model_folders)
register_kind(
    ModelBuild,
    group="model__group_id",
    waiting=ModelBuild.Status.QUEUED,
    send="models_app.services.send_build",
)
