"""Production inputs recorded for monitoring."""

from __future__ import annotations

from django.db import models


class PredictionRecord(models.Model):
    """One Sync call: what came in, what went out, how it went."""

    # No index of its own: (model, at, …) below serves every lookup by model, and each
    # index is one more B-tree insert on every recorded call.
    model = models.ForeignKey(
        "models_app.MLModel", on_delete=models.CASCADE, related_name="predictions", db_index=False
    )
    version = models.PositiveIntegerField(default=1, help_text="The model version that answered.")
    at = models.DateTimeField(db_index=True)
    status_code = models.PositiveSmallIntegerField()
    latency_ms = models.FloatField()
    input = models.TextField(help_text="The raw JSON request body.")
    output = models.TextField(blank=True, help_text="The JSON answer, or the error.")
    live = models.BooleanField(
        default=True,
        help_text="Answered by the live version (through the run URL, or the live version's own). "
        "Calls to another version's URL, e.g. a candidate's trial, are not production inputs to monitor.",
    )
    payload_kept = models.BooleanField(
        default=True,
        help_text="False: input and answer were over NEOMARIL_RECORD_MAX_KB and not kept "
        "(the call counts in the statistics; monitoring skips it).",
    )

    class Meta:
        ordering = ["-at"]
        # The one index by model, and a covering one: the call statistics (status and latency
        # of a day's calls) and the API's counts by version and live are read from it alone,
        # never from the table's rows (each carries a request and an answer). Wider entries
        # cost less than a second index would on every recorded call (migration 0007).
        indexes = [
            models.Index(
                fields=["model", "at", "status_code", "latency_ms", "version", "live"],
                name="monitoring_calls_by_model",
            )
        ]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M:%S} {self.status_code} {self.model_id}"


class HourlyCalls(models.Model):
    """A model's recorded calls counted by the hour (UTC), written with the calls themselves.

    The call statistics sum these instead of counting rows: a model called 1.6 M times a
    day took 200 ms a page to count its day and its all-time calls from the records. The
    hours are kept after retention deletes their records, so `calls` stay all-time.
    """

    model = models.ForeignKey(
        "models_app.MLModel", on_delete=models.CASCADE, related_name="hourly_calls", db_index=False
    )
    hour = models.DateTimeField(help_text="The start of the hour, UTC.")
    calls = models.PositiveBigIntegerField(default=0)
    errors = models.PositiveBigIntegerField(
        default=0, help_text="Calls answered with a status of 400 or more."
    )

    class Meta:
        ordering = ["-hour"]
        verbose_name_plural = "hourly calls"
        # The recorder's upsert conflicts on it; lookups by model and hour range use it too.
        constraints = [models.UniqueConstraint(fields=["model", "hour"], name="monitoring_hourly_calls_once")]

    def __str__(self) -> str:
        return f"{self.hour:%Y-%m-%d %H:00} {self.model_id}: {self.calls}"


class DroppedRecords(models.Model):
    """Calls that could not be recorded because the buffer was full: counted, never silent."""

    at = models.DateTimeField(auto_now_add=True)
    count = models.PositiveIntegerField()
    process = models.CharField(max_length=64, help_text="host:pid of the web process that dropped them.")

    class Meta:
        ordering = ["-at"]
        verbose_name_plural = "dropped records"

    def __str__(self) -> str:
        return f"{self.count} dropped by {self.process}"
