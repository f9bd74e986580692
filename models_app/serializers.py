"""Serializers of the models API (an upload is read by forms.ModelUploadForm, not here)."""

from __future__ import annotations

from django.db.models import Prefetch
from django.urls import reverse
from rest_framework import serializers

from groups.api.serializers import username_of
from models_app.links import docs_url, run_url, version_run_url
from models_app.models import EXECUTION_TASK_MARGIN, MLModel, ModelBuild, ModelEvent, max_execution_timeout
from models_app.services import min_replicas_refusal
from monitoring.models import PredictionRecord
from monitoring.stats import call_stats


class ModelBuildSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelBuild
        fields = ["number", "status", "created_at", "started_at", "finished_at", "recovered"]
        read_only_fields = fields


# A list's builds, fetched in one query without their logs (up to 2 MB each).
BUILDS_WITHOUT_LOGS = Prefetch("builds", queryset=ModelBuild.objects.defer("log"))


class ModelBuildLogSerializer(ModelBuildSerializer):
    class Meta(ModelBuildSerializer.Meta):
        fields = [*ModelBuildSerializer.Meta.fields, "log"]
        read_only_fields = fields


class ModelEventSerializer(serializers.ModelSerializer):
    actor = username_of(
        "actor",
        "Who did it; null for what the platform did itself (a build, a version going live) "
        "or once that account is deleted.",
    )

    class Meta:
        model = ModelEvent
        fields = ["at", "action", "actor", "detail"]
        read_only_fields = fields


class ModelSummarySerializer(serializers.ModelSerializer):
    """A model as lists show it: its status (and build facts) are its live version's."""

    group = serializers.CharField(source="group.name", read_only=True)
    url = serializers.SerializerMethodField()
    status = serializers.CharField(source="serving.status", read_only=True)
    python_version = serializers.CharField(source="serving.python_version", read_only=True)
    version = serializers.IntegerField(
        source="serving.version", read_only=True, help_text="The live version: the one the run URL serves."
    )

    class Meta:
        model = MLModel
        fields = [
            "hash",
            "name",
            "group",
            "operation",
            "status",
            "version",
            "python_version",
            "created_at",
            "updated_at",
            "url",
        ]
        read_only_fields = fields

    def get_url(self, model: MLModel) -> str:
        request = self.context.get("request")
        path = reverse("api-model-detail", args=[model.hash])
        return request.build_absolute_uri(path) if request else path


class ModelDetailSerializer(ModelSummarySerializer):
    created_by = username_of(
        "created_by",
        "Who uploaded it; null once that account is deleted.",
    )
    files = serializers.SerializerMethodField()
    run_url = serializers.SerializerMethodField(help_text="POST here with the group token to call the model.")
    docs_url = serializers.SerializerMethodField(help_text="The model's Swagger page.")
    last_build = serializers.SerializerMethodField()
    training_run = serializers.SerializerMethodField(help_text="The training run it was promoted from.")
    calls = serializers.SerializerMethodField(
        help_text="Recorded calls: all-time count; the last 24 hours' calls, errors and latency "
        "percentiles in ms (p50, p95, p99 over its newest 10,000 calls; null without calls)."
    )

    # What describes the build that serves: read from the live version.
    SERVING_FIELDS = (
        "status_message",
        "model_reference",
        "python_full_version",
        "input_type",
        "allow_network",
        "schema",
        "files",
        "requirements",
        "env_names",
        "deployed_at",
        "last_build",
        "training_run",
    )

    class Meta(ModelSummarySerializer.Meta):
        fields = [
            *ModelSummarySerializer.Meta.fields,
            "status_message",
            "model_reference",
            "python_full_version",
            "input_type",
            "allow_network",
            "schema",
            "files",
            "requirements",
            "env_names",
            "created_by",
            "deployed_at",
            "last_build",
            "min_replicas",
            "max_replicas",
            "request_timeout",
            "execution_timeout",
            "run_url",
            "docs_url",
            "training_run",
            "calls",
        ]
        read_only_fields = fields

    def to_representation(self, model: MLModel) -> dict:
        data = super().to_representation(model)
        serving = model.serving
        if serving.pk != model.pk:  # only these fields again, for the live version's row
            for name in self.SERVING_FIELDS:
                field = self.fields[name]
                attribute = field.get_attribute(serving)
                data[name] = None if attribute is None else field.to_representation(attribute)
        return data

    def get_training_run(self, model: MLModel) -> dict | None:
        run = model.training_run
        if run is None:
            return None
        # By route name: the training app sits above this one.
        path = reverse("api-training-run", args=[run.experiment.hash, run.number])
        request = self.context.get("request")
        return {
            "experiment": run.experiment.hash,
            "experiment_name": run.experiment.name,
            "number": run.number,
            "url": request.build_absolute_uri(path) if request else path,
        }

    def get_run_url(self, model: MLModel) -> str | None:
        request = self.context.get("request")
        return run_url(request, model) if request else None

    def get_docs_url(self, model: MLModel) -> str | None:
        request = self.context.get("request")
        return docs_url(request, model) if request else None

    def get_calls(self, model: MLModel) -> dict:
        stats = call_stats(model.pk)
        return {
            "total": stats["total"],
            "last_24h": stats["day"],
            "errors_last_24h": stats["day_errors"],
            "latency_ms_last_24h": stats["day_latency"],
        }

    def get_files(self, model: MLModel) -> dict:
        return {
            "source": model.source_file,
            "model": model.model_file,
            "requirements": model.requirements_file,
            "schema": model.schema_file or None,
            "sample": model.sample_file or None,
            "extra": model.extra_files,
        }

    def get_last_build(self, model: MLModel) -> dict | None:
        prefetched = getattr(model, "_prefetched_objects_cache", {}).get("builds")
        # A page of versions has them prefetched (BUILDS_WITHOUT_LOGS).
        build = model.builds.first() if prefetched is None else next(iter(prefetched), None)
        return ModelBuildSerializer(build).data if build else None


SYNC_SETTINGS = ("min_replicas", "max_replicas", "request_timeout")
ASYNC_SETTINGS = ("execution_timeout",)


class ModelSettingsSerializer(serializers.ModelSerializer):
    """What can change on a model without a rebuild: a Sync model's replicas
    (`max_replicas` null: the node's cores) and request timeout, an Async model's
    execution timeout (null: NEOMARIL_EXECUTION_TIMEOUT)."""

    class Meta:
        model = MLModel
        fields = [*SYNC_SETTINGS, *ASYNC_SETTINGS]
        extra_kwargs = {"request_timeout": {"min_value": 1, "max_value": 3600}}

    def get_fields(self) -> dict:
        fields = super().get_fields()
        # Its cap comes from the settings (the worker's task timeout), read per request.
        cap = max_execution_timeout()
        fields["execution_timeout"] = serializers.IntegerField(
            min_value=1,
            max_value=cap,
            allow_null=True,
            required=False,
            help_text="Async: seconds one execution may run (null: NEOMARIL_EXECUTION_TIMEOUT).",
            error_messages={
                "max_value": f"At most {cap} s: an execution must end within the worker's task "
                f"timeout (NEOMARIL_TASK_TIMEOUT) less {EXECUTION_TASK_MARGIN} s."
            },
        )
        return fields

    def validate(self, attrs: dict) -> dict:
        # A misspelt or retired setting would otherwise be dropped without a word.
        unknown = sorted(set(self.initial_data) - set(self.fields))
        if unknown:
            hint = " (`replicas` is now `min_replicas` and `max_replicas`)" if "replicas" in unknown else ""
            raise serializers.ValidationError(
                {name: f"Not a serving setting; one of {', '.join(self.fields)}{hint}." for name in unknown}
            )
        # Each kind's own: an Async model has no warm runners (each execution is a process
        # of its own), and a Sync call has no execution timeout.
        sync = self.instance.operation == MLModel.Operation.SYNC
        other = sorted(set(self.initial_data) & set(ASYNC_SETTINGS if sync else SYNC_SETTINGS))
        if other:
            kind, own = ("a Sync", SYNC_SETTINGS) if sync else ("an Async", ASYNC_SETTINGS)
            raise serializers.ValidationError(
                {name: f"Not a setting of {kind} model; its settings: {', '.join(own)}." for name in other}
            )
        low = attrs.get("min_replicas", self.instance.min_replicas)
        high = attrs.get("max_replicas", self.instance.max_replicas)
        refusal = min_replicas_refusal(self.instance, low) if "min_replicas" in attrs else None
        if refusal:
            raise serializers.ValidationError({"min_replicas": refusal})
        if high is not None and high < low:
            raise serializers.ValidationError(
                {"max_replicas": f"max_replicas ({high}) must be at least min_replicas ({low})."}
            )
        return attrs


class ModelStatusSerializer(serializers.ModelSerializer):
    class Meta:
        model = MLModel
        fields = ["hash", "version", "status", "status_message", "deployed_at"]
        read_only_fields = fields


class ModelVersionSerializer(ModelDetailSerializer):
    """One version: its own hash, files, packages, build and who uploaded it when.

    `context["model"]` is the model it belongs to (its live version is marked `live`).
    """

    model = serializers.CharField(source="root.hash", read_only=True, help_text="The model's hash.")
    live = serializers.SerializerMethodField(help_text="Whether the model's run URL serves this version.")
    status = serializers.CharField(read_only=True)
    python_version = serializers.CharField(read_only=True)
    version = serializers.IntegerField(read_only=True)

    class Meta(ModelDetailSerializer.Meta):
        fields = [
            "model",
            "version",
            "live",
            "hash",
            "status",
            "status_message",
            "operation",
            "model_reference",
            "python_version",
            "python_full_version",
            "input_type",
            "allow_network",
            "schema",
            "files",
            "requirements",
            "env_names",
            "created_by",
            "created_at",
            "deployed_at",
            "last_build",
            "training_run",
            "run_url",
            "url",
        ]
        read_only_fields = fields

    def to_representation(self, version: MLModel) -> dict:
        return serializers.ModelSerializer.to_representation(self, version)

    def get_live(self, version: MLModel) -> bool:
        model = self.context.get("model") or version.root
        return model.serving.pk == version.pk

    def get_run_url(self, version: MLModel) -> str | None:
        request = self.context.get("request")
        return version_run_url(request, version) if request else None

    def get_url(self, version: MLModel) -> str:
        request = self.context.get("request")
        path = reverse("api-model-version", args=[version.root.hash, version.version])
        return request.build_absolute_uri(path) if request else path


class ModelStatusWithLogSerializer(ModelStatusSerializer):
    """The status, and with `?include=log` the latest build and its log (what the model page polls)."""

    # Not read-only: drf-spectacular marks every read-only field required, and `build` is
    # only in the answer with ?include=log (the view adds it; nothing reads it from a body).
    build = ModelBuildLogSerializer(
        required=False,
        allow_null=True,
        help_text="Only with `?include=log`: the latest build and its log (null before the first build).",
    )

    class Meta(ModelStatusSerializer.Meta):
        fields = [*ModelStatusSerializer.Meta.fields, "build"]
        read_only_fields = fields


class RunnerSerializer(serializers.Serializer):
    pid = serializers.IntegerField()
    replica = serializers.IntegerField()
    build = serializers.IntegerField()
    alive = serializers.BooleanField()
    memory_bytes = serializers.IntegerField(help_text="Resident memory.")
    requests = serializers.IntegerField(help_text="Requests served since it started.")
    utilization = serializers.FloatField(
        help_text="Share of the host's last load sample (about a second) it spent answering, 0 to 1."
    )
    draining = serializers.BooleanField(
        help_text="Leaving: an extra replica the load no longer needs, finishing its calls."
    )
    started_at = serializers.FloatField(help_text="Unix time.")
    last_used = serializers.FloatField(help_text="Unix time.")


class ModelRunnersSerializer(serializers.Serializer):
    model = serializers.CharField(help_text="The model's hash.")
    version = serializers.IntegerField(help_text="The version its run URL serves, whose runners these are.")
    runners = RunnerSerializer(many=True, help_text="On the node that answered.")


class PredictionRecordSerializer(serializers.ModelSerializer):
    class Meta:
        model = PredictionRecord
        fields = ["at", "version", "live", "status_code", "latency_ms", "payload_kept", "input", "output"]
        read_only_fields = fields
