"""Serializers of the executions API."""

from __future__ import annotations

from django.urls import reverse
from rest_framework import serializers

from executions.models import Execution
from groups.api.serializers import username_of


class ExecutionSerializer(serializers.ModelSerializer):
    """What the API says about one execution (list and describe)."""

    execution_id = serializers.IntegerField(source="number", read_only=True)
    model = serializers.CharField(source="model.hash", read_only=True)
    version = serializers.IntegerField(
        source="runs_on.version",
        read_only=True,
        help_text="The model's version that runs it: the live one when it was submitted, or the one "
        "its per-version URL named.",
    )
    duration = serializers.SerializerMethodField(help_text="Seconds from start to finish.")
    requested_by = username_of(
        "requested_by",
        "The member who submitted it; null when submitted with the group token.",
    )
    files_available = serializers.SerializerMethodField(
        help_text="Whether its input (and, once Succeeded, its result) is still on the server: false "
        "once retention or the model's deletion removed its files (files_removed_at says when), or "
        "once they were deleted from its folder by hand."
    )
    url = serializers.SerializerMethodField()
    log_url = serializers.SerializerMethodField()
    input_url = serializers.SerializerMethodField(
        help_text="Empty once its input is no longer on the server."
    )
    result_url = serializers.SerializerMethodField(
        help_text="Set once the execution has Succeeded, while its result is on the server."
    )

    class Meta:
        model = Execution
        fields = [
            "execution_id",
            "model",
            "version",
            "status",
            "requested_at",
            "started_at",
            "finished_at",
            "duration",
            "input_file",
            "input_size",
            "output_file",
            "output_size",
            "error_message",
            "attempts",
            "timeout",
            "requested_by",
            "files_available",
            "files_removed_at",
            "url",
            "log_url",
            "input_url",
            "result_url",
        ]
        read_only_fields = fields

    def get_duration(self, execution: Execution) -> float | None:
        duration = execution.duration
        return round(duration.total_seconds(), 3) if duration is not None else None

    def get_files_available(self, execution: Execution) -> bool:
        return execution.files_available

    def _url(self, execution: Execution, name: str) -> str:
        path = reverse(name, kwargs={"model_hash": execution.model.hash, "execution_id": execution.number})
        request = self.context.get("request")
        return request.build_absolute_uri(path) if request else path

    def get_url(self, execution: Execution) -> str:
        return self._url(execution, "execution-detail")

    def get_log_url(self, execution: Execution) -> str:
        return self._url(execution, "execution-log")

    def get_input_url(self, execution: Execution) -> str | None:
        return self._url(execution, "execution-input") if execution.input_on_disk else None

    def get_result_url(self, execution: Execution) -> str | None:
        return self._url(execution, "execution-result") if execution.result_on_disk else None


class ExecutionLogSerializer(serializers.ModelSerializer):
    execution_id = serializers.IntegerField(source="number", read_only=True)

    class Meta:
        model = Execution
        fields = ["execution_id", "status", "log"]
        read_only_fields = fields


class ExecutionSubmittedSerializer(serializers.Serializer):
    """The 202 answer to a submitted input (also in the `Location` header: `url`)."""

    execution_id = serializers.IntegerField()
    status = serializers.CharField()
    url = serializers.URLField()
    model = serializers.CharField()
    message = serializers.CharField()
