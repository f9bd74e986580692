"""Indirect monitoring: a model's registration (``Monitor``) and its periods.

A ``Monitor`` says how a model's production data becomes features (the user's
preprocess), which training run is the reference and which columns to compare. Checking
that registration is a job: Unvalidated → Validating → Validated | Invalidated. Each
``Period`` is a job too: one time window of the model's recorded calls (or Async
executions), preprocessed in the sandbox and compared with the reference column by
column. What a period keeps is per-bin counts (``ColumnResult``), so results outlive
the raw records and periods merge (monitoring/drift.py).
"""

from __future__ import annotations

from datetime import UTC
from pathlib import Path

from django.conf import settings
from django.db import models
from django.utils import timezone

from groups import crypto
from groups.jobs import Job, register_kind
from groups.storage import register_folders
from models_app.environments import env_python, environment_path
from models_app.models import MLModel
from training.models import TrainingRun

CONFIGURATION_FILE = "configuration.json"


class PeriodKind(models.TextChoices):
    DAY = "Day"
    WEEK = "Week"
    MONTH = "Month"
    YEAR = "Year"


class Monitor(Job):
    """A model's monitoring registration; validating it is the job."""

    ATTEMPT_FIELD = "attempts"
    FAILED_STATUS = "Invalidated"

    class Status(models.TextChoices):
        UNVALIDATED = "Unvalidated"
        VALIDATING = "Running", "Validating"  # the job mechanism's RUNNING; shown as Validating
        VALIDATED = "Validated"
        INVALIDATED = "Invalidated"

    model = models.OneToOneField(MLModel, on_delete=models.CASCADE, related_name="monitor")
    training_run = models.ForeignKey(TrainingRun, on_delete=models.PROTECT, related_name="monitors")
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.UNVALIDATED)
    error_message = models.TextField(blank=True, help_text="Why it is Invalidated.")

    period = models.CharField(max_length=8, choices=PeriodKind.choices)
    train_date_ref = models.DateField(null=True, blank=True)
    train_date_col = models.CharField(max_length=200, blank=True)
    input_cols = models.JSONField(default=list)
    output_cols = models.JSONField(default=list)
    configuration = models.JSONField(default=dict, help_text="As uploaded.")

    preprocess_reference = models.CharField(max_length=100)
    shap_reference = models.CharField(max_length=100, blank=True)
    preprocess_file = models.CharField(max_length=128)
    requirements_file = models.CharField(max_length=128, blank=True)
    requirements = models.JSONField(default=list, blank=True, help_text="Normalised extra requirement lines.")
    env_fingerprint = models.CharField(max_length=64, blank=True)

    webhook_url = models.URLField(max_length=500, blank=True)
    # The notices' signing secret (groups.crypto; never shown again, see groups.webhooks).
    webhook_secret_ciphertext = models.BinaryField(null=True, blank=True, editable=False)
    warning_threshold = models.FloatField(default=0.1)
    drift_threshold = models.FloatField(default=0.25)
    minimum_rows = models.PositiveIntegerField(default=100)

    # {"inputs": {col: {"binning": {...}, "counts": [...]}}, "outputs": {...}, "rows": n,
    #  "date_range": [first, last] | None}: decided once, at validation.
    reference = models.JSONField(null=True, blank=True)

    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    registered_at = models.DateTimeField(default=timezone.now)
    validated_at = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveSmallIntegerField(
        default=0, help_text="Validations started (2 after a recovery)."
    )
    host = models.CharField(max_length=255, blank=True, help_text="Node whose worker validated it last.")

    class Meta:
        indexes = [models.Index(fields=["status", "heartbeat_at"])]

    def __str__(self) -> str:
        return f"monitoring of {self.model.hash}"

    @property
    def webhook_signed(self) -> bool:
        return bool(self.webhook_secret_ciphertext)

    def set_webhook_secret(self, secret: str | None) -> None:
        """Store a new signing secret, encrypted; None or "" stops signing."""
        self.webhook_secret_ciphertext = crypto.encrypt_json(secret) if secret else None

    def webhook_secret(self) -> str | None:
        """The signing secret, for the worker that signs a notice. Never log or return it."""
        return crypto.decrypt_json(self.webhook_secret_ciphertext) if self.webhook_secret_ciphertext else None

    @property
    def attempt(self) -> int:
        return self.attempts

    def this_run(self) -> models.QuerySet:
        """This validation's row while this run still owns it: Running, the same attempt, and
        the same registration. A registration made while a validation runs starts counting
        attempts again, so the attempt alone would let the replaced validation's log and
        outcome land on the new one's run."""
        return super().this_run().filter(registered_at=self.registered_at)

    def current_periods(self) -> models.QuerySet:
        """The periods counted under this registration; earlier ones stay as history."""
        return self.periods.filter(registered_at=self.registered_at)

    @property
    def folder(self) -> Path:
        return settings.MONITORS_DIR / self.model.hash

    @property
    def code_folder(self) -> Path:
        """The uploaded preprocess, requirements and configuration (read-only to the sandbox)."""
        return self.folder / "code"

    @property
    def sandbox_folder(self) -> Path:
        """The one folder this run of the validation may write: one per registration and
        attempt, so a validation replaced by a new registration (which runs until its
        process ends) or re-run by recovery never shares it with the run after it."""
        registration = self.registered_at.astimezone(UTC).strftime("%Y%m%dT%H%M%S%fZ")
        return self.folder / "validation" / f"{registration}-{self.attempts}"

    @property
    def python(self) -> Path:
        return env_python(environment_path(settings.ENVS_DIR, self.env_fingerprint))

    @property
    def thresholds(self):
        from monitoring.drift import Thresholds

        return Thresholds(warning=self.warning_threshold, drift=self.drift_threshold)


class Period(Job):
    """One window of production data compared with the reference."""

    ATTEMPT_FIELD = "attempts"

    class Status(models.TextChoices):
        QUEUED = "Queued"
        RUNNING = "Running"
        SUCCEEDED = "Succeeded"
        FAILED = "Failed"

    class Trigger(models.TextChoices):
        SCHEDULE = "schedule"
        DEMAND = "demand"

    monitor = models.ForeignKey(Monitor, on_delete=models.CASCADE, related_name="periods")
    kind = models.CharField(max_length=8, choices=PeriodKind.choices)
    start = models.DateTimeField()
    end = models.DateTimeField(help_text="Exclusive.")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    trigger = models.CharField(max_length=8, choices=Trigger.choices, default=Trigger.SCHEDULE)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(default=timezone.now)
    # The registration (its registered_at) this period is counted under. A re-registration
    # may change the period kind, the reference and the bins: only the current
    # registration's periods give the model's verdict and merge with each other.
    registered_at = models.DateTimeField(null=True, blank=True)

    records = models.PositiveIntegerField(
        null=True, blank=True, help_text="Calls or executions in the window."
    )
    rows = models.PositiveIntegerField(null=True, blank=True, help_text="Feature rows after the preprocess.")
    skipped = models.PositiveIntegerField(default=0, help_text="Records the preprocess failed on.")
    average_psi = models.FloatField(null=True, blank=True, help_text="Mean PSI over the input columns.")
    # Worst column status: drift > warning > stable; insufficient below the minimum rows.
    drift_status = models.CharField(max_length=12, blank=True)
    shap = models.JSONField(null=True, blank=True, help_text="{feature: mean |SHAP|} when configured.")
    error_message = models.TextField(blank=True)
    webhook_status = models.CharField(max_length=300, blank=True)
    # What the batches done so far added up to, and where the next one starts: a period
    # longer than one task goes on in the next, and a recovered one from its last batch.
    progress = models.JSONField(null=True, blank=True, editable=False)
    # Whether its queued task goes on from that progress as the same attempt (rather than
    # a first run or a recovery's re-run): what a lost task is sent again with.
    continuation = models.BooleanField(default=False, editable=False)

    attempts = models.PositiveSmallIntegerField(default=0)
    host = models.CharField(max_length=255, blank=True)

    class Meta:
        ordering = ["-start", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["monitor", "kind", "start"], name="unique_monitoring_period")
        ]
        indexes = [
            models.Index(fields=["status", "heartbeat_at"]),
            # A monitor's last Succeeded period of its current registration (monitors.display):
            # one seek for the latest start, however many periods the monitor has.
            models.Index(
                fields=["monitor", "registered_at", "status", "start"], name="monitoring_period_latest"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} from {self.start:%Y-%m-%d} of {self.monitor.model.hash}"

    @property
    def attempt(self) -> int:
        return self.attempts

    def save(self, *args, **kwargs) -> None:
        if self._state.adding and self.registered_at is None:
            self.registered_at = self.monitor.registered_at  # a new period counts under the current one
        super().save(*args, **kwargs)

    @property
    def current_registration(self) -> bool:
        """Counted under its monitor's current registration (Monitor.current_periods)."""
        return self.registered_at is not None and self.registered_at == self.monitor.registered_at

    @property
    def sandbox_folder(self) -> Path:
        return self.monitor.folder / "periods" / str(self.pk)


class ColumnResult(models.Model):
    """One column of one period: its bins and counts on both sides, and what they say."""

    class Role(models.TextChoices):
        INPUT = "input"
        OUTPUT = "output"

    period = models.ForeignKey(Period, on_delete=models.CASCADE, related_name="columns")
    role = models.CharField(max_length=6, choices=Role.choices)
    column = models.CharField(max_length=200)
    binning = models.JSONField()
    reference_counts = models.JSONField()
    period_counts = models.JSONField()
    psi = models.FloatField(null=True, blank=True)
    status = models.CharField(max_length=12)
    mean_abs_shap = models.FloatField(null=True, blank=True)

    class Meta:
        ordering = ["role", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["period", "role", "column"], name="unique_period_column")
        ]

    def __str__(self) -> str:
        return f"{self.role} {self.column} of {self.period}"

    @property
    def rows(self) -> int:
        return sum(self.period_counts)


def _monitor_folders(group_id: int) -> list[Path]:
    """The group's monitors: uploaded preprocess code, validation and period scratch folders."""
    hashes = MLModel.objects.filter(group_id=group_id, line=None).values_list("hash", flat=True)
    return [settings.MONITORS_DIR / folder_hash for folder_hash in hashes]


register_folders(_monitor_folders)
register_kind(
    Monitor,
    group="model__group_id",
    waiting=Monitor.Status.UNVALIDATED,
    send="monitors.services.send_validation",
)
register_kind(
    Period,
    group="monitor__model__group_id",
    waiting=Period.Status.QUEUED,
    send="monitors.services.send_period",
)
