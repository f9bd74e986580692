"""The monitoring API's answers: a monitor, a period (summary and detail), merged periods.

Uploads and settings are read by monitors.forms, not here. A column's bins, counts and
proportions are shaped once, by monitors.services.result_json, for a period's columns
and for merged ones alike.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from groups.api.serializers import username_of
from monitoring import drift
from monitors.models import ColumnResult, Monitor, Period, PeriodKind
from monitors.services import result_json


def stored_result(column: ColumnResult) -> drift.ColumnResult:
    """A stored column as the drift arithmetic holds it, with the PSI and status it was given."""
    return drift.ColumnResult(
        column=column.column,
        binning=drift.Binning.from_json(column.binning),
        reference_counts=list(column.reference_counts),
        period_counts=list(column.period_counts),
        psi=column.psi,
        status=column.status,
    )


def one_of(values, what: str = "") -> serializers.CharField:
    """A string among `values`, documented in words: these choices' names (role, kind,
    status…) are taken by other components, and enum components would collide in the schema."""
    return serializers.CharField(read_only=True, help_text=f"{what}One of: {', '.join(values)}.".strip())


COLUMN_KINDS = ("numeric", "categorical")
DRIFT_STATUSES = ("stable", "warning", "drift", "insufficient")


class ColumnSummarySerializer(serializers.ModelSerializer):
    role = one_of(ColumnResult.Role.values)
    status = one_of(DRIFT_STATUSES)
    rows = serializers.IntegerField(read_only=True)

    class Meta:
        model = ColumnResult
        fields = ["role", "column", "psi", "status", "rows", "mean_abs_shap"]
        read_only_fields = fields


class ColumnDetailSerializer(ColumnSummarySerializer):
    kind = one_of(COLUMN_KINDS)
    labels = serializers.ListField(child=serializers.CharField(), read_only=True)
    reference_counts = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    period_counts = serializers.ListField(child=serializers.IntegerField(), read_only=True)
    reference_proportions = serializers.ListField(child=serializers.FloatField(), read_only=True)
    period_proportions = serializers.ListField(child=serializers.FloatField(), read_only=True)

    class Meta(ColumnSummarySerializer.Meta):
        fields = [
            *ColumnSummarySerializer.Meta.fields,
            "kind",
            "labels",
            "reference_counts",
            "period_counts",
            "reference_proportions",
            "period_proportions",
        ]
        read_only_fields = fields

    def to_representation(self, column: ColumnResult) -> dict[str, Any]:
        return {**super().to_representation(column), **result_json(stored_result(column))}


class PeriodSummarySerializer(serializers.ModelSerializer):
    kind = one_of(PeriodKind.values)
    status = one_of(Period.Status.values)
    trigger = one_of(Period.Trigger.values)
    drift_status = one_of(DRIFT_STATUSES, "Empty until the period has Succeeded. ")
    columns = ColumnSummarySerializer(many=True, read_only=True)
    current_registration = serializers.BooleanField(
        read_only=True,
        help_text="Counted under the model's current registration. Only these give its verdict "
        "and merge; an earlier registration's periods stay as history (run one again to count it "
        "under the current one).",
    )

    class Meta:
        model = Period
        fields = [
            "id",
            "kind",
            "start",
            "end",
            "status",
            "trigger",
            "registered_at",
            "current_registration",
            "records",
            "rows",
            "skipped",
            "average_psi",
            "drift_status",
            "error_message",
            "requested_at",
            "started_at",
            "finished_at",
            "columns",
        ]
        read_only_fields = fields


class PeriodDetailSerializer(PeriodSummarySerializer):
    columns = ColumnDetailSerializer(many=True, read_only=True)
    shap = serializers.DictField(
        child=serializers.FloatField(), allow_null=True, read_only=True, help_text="{feature: mean |SHAP|}."
    )

    class Meta(PeriodSummarySerializer.Meta):
        fields = [*PeriodSummarySerializer.Meta.fields, "log", "shap", "webhook_status"]
        read_only_fields = fields


class TrainingRunRefSerializer(serializers.Serializer):
    experiment = serializers.CharField(source="experiment.hash", read_only=True)
    number = serializers.IntegerField(read_only=True)
    training_type = serializers.CharField(read_only=True)


class MonitorSerializer(serializers.ModelSerializer):
    model = serializers.CharField(source="model.hash", read_only=True)
    status = serializers.CharField(
        source="get_status_display",
        read_only=True,
        help_text=f"One of: {', '.join(str(label) for _, label in Monitor.Status.choices)}.",
    )
    period = one_of(PeriodKind.values)
    message = serializers.CharField(source="error_message", read_only=True)
    training_run = TrainingRunRefSerializer(read_only=True)
    input_cols = serializers.ListField(child=serializers.CharField(), read_only=True)
    output_cols = serializers.ListField(child=serializers.CharField(), read_only=True)
    requirements = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="The preprocess's extra requirement lines."
    )
    reference_rows = serializers.SerializerMethodField()
    registered_by = username_of(
        "registered_by",
        "Who registered it; null once that account is deleted.",
    )
    last_period = serializers.SerializerMethodField()
    webhook_signed = serializers.BooleanField(
        read_only=True, help_text="Whether notices are signed; the secret itself is never returned."
    )

    class Meta:
        model = Monitor
        fields = [
            "model",
            "status",
            "message",
            "period",
            "training_run",
            "train_date_ref",
            "train_date_col",
            "input_cols",
            "output_cols",
            "preprocess_reference",
            "shap_reference",
            "requirements",
            "webhook_url",
            "webhook_signed",
            "warning_threshold",
            "drift_threshold",
            "minimum_rows",
            "reference_rows",
            "registered_by",
            "registered_at",
            "validated_at",
            "log",
            "last_period",
        ]
        read_only_fields = fields

    def get_reference_rows(self, monitor: Monitor) -> int | None:
        return (monitor.reference or {}).get("rows")

    @extend_schema_field(PeriodSummarySerializer(allow_null=True))
    def get_last_period(self, monitor: Monitor) -> dict | None:
        period = monitor.current_periods().prefetch_related("columns").first()
        return PeriodSummarySerializer(period).data if period else None


class MergedColumnSerializer(serializers.Serializer):
    """Documentation only: a merged column is shaped like a period's (result_json), with the
    periods it adds up instead of a SHAP mean."""

    role = one_of(ColumnResult.Role.values)
    column = serializers.CharField()
    periods = serializers.ListField(child=serializers.IntegerField())
    psi = serializers.FloatField(allow_null=True)
    status = one_of(DRIFT_STATUSES)
    rows = serializers.IntegerField()
    kind = one_of(COLUMN_KINDS)
    labels = serializers.ListField(child=serializers.CharField())
    reference_counts = serializers.ListField(child=serializers.IntegerField())
    period_counts = serializers.ListField(child=serializers.IntegerField())
    reference_proportions = serializers.ListField(child=serializers.FloatField())
    period_proportions = serializers.ListField(child=serializers.FloatField())


class MergedSerializer(serializers.Serializer):
    """Documentation of the merged answer (monitors.services.merged builds it)."""

    start = serializers.DateField()
    end = serializers.DateField()
    periods = serializers.ListField(child=serializers.IntegerField())
    average_psi = serializers.FloatField(allow_null=True)
    drift_status = one_of(DRIFT_STATUSES)
    columns = MergedColumnSerializer(many=True)


class PeriodRequestSerializer(serializers.Serializer):
    """Documentation only: the view parses `date` itself, to name the value in a 400."""

    date = serializers.CharField(
        required=False,
        help_text="YYYY-MM-DD, or an ISO 8601 datetime (e.g. 2026-05-26T14:30:00Z); default now. "
        "The period of the monitor's kind containing it is run.",
    )


class PeriodListSerializer(serializers.Serializer):
    periods = PeriodSummarySerializer(many=True)
