"""Serializers of the training API (uploads are read by training.forms, not here)."""

from __future__ import annotations

from django.db.models import QuerySet
from django.urls import reverse
from rest_framework import serializers

from groups.api.serializers import username_of
from training.models import Experiment, TrainingRun


def _absolute(context: dict, path: str) -> str:
    request = context.get("request")
    return request.build_absolute_uri(path) if request else path


class ExperimentSerializer(serializers.ModelSerializer):
    group = serializers.CharField(source="group.name", read_only=True)
    created_by = username_of(
        "created_by",
        "Who created it; null once that account is deleted.",
    )
    runs_count = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = Experiment
        fields = ["hash", "name", "group", "model_type", "created_by", "created_at", "runs_count", "url"]
        read_only_fields = fields

    def get_runs_count(self, experiment: Experiment) -> int:
        count = getattr(experiment, "runs_count", None)
        return count if count is not None else experiment.runs.count()

    def get_url(self, experiment: Experiment) -> str:
        return _absolute(self.context, reverse("api-training-experiment", args=[experiment.hash]))


# Runs listed by a comparison (GET …/runs): every run is ranked, the first ones are listed.
MAX_COMPARED_RUNS = 1000
# The columns RunSummarySerializer reads: a run's row also holds its log, params, summary
# and frozen requirements, which made an experiment of 1,101 runs 270 ms to load.
SUMMARY_COLUMNS = (
    "experiment_id",
    "number",
    "name",
    "training_type",
    "status",
    "error_message",
    "metrics",
    "requested_at",
    "started_at",
    "finished_at",
)


def summary_runs(runs: QuerySet[TrainingRun]) -> QuerySet[TrainingRun]:
    """`runs` loading only what RunSummarySerializer shows."""
    return runs.only(*SUMMARY_COLUMNS)


class RunSummarySerializer(serializers.ModelSerializer):
    run_name = serializers.CharField(source="name", read_only=True)
    experiment = serializers.CharField(source="experiment.hash", read_only=True)
    duration_seconds = serializers.SerializerMethodField()
    url = serializers.SerializerMethodField()

    class Meta:
        model = TrainingRun
        fields = [
            "experiment",
            "number",
            "run_name",
            "training_type",
            "status",
            "error_message",
            "metrics",
            "requested_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "url",
        ]
        read_only_fields = fields

    def get_duration_seconds(self, run: TrainingRun) -> float | None:
        return round(run.duration.total_seconds(), 3) if run.duration else None

    def get_url(self, run: TrainingRun) -> str:
        # The runs' URL resolved (and made absolute) once per experiment, not once per run:
        # an experiment's 1,101 runs spent over half their 212 ms there. …/runs/<number>
        # is that URL and the number.
        bases = self.__dict__.setdefault("_runs_urls", {})
        base = bases.get(run.experiment.hash)
        if base is None:
            base = _absolute(self.context, reverse("api-training-runs", args=[run.experiment.hash]))
            bases[run.experiment.hash] = base
        return f"{base}/{run.number}"


class RunComparisonSerializer(serializers.Serializer):
    """The runs of an experiment side by side (GET .../runs): the answer's shape, for the schema."""

    experiment = serializers.CharField(help_text="The experiment's hash.")
    sort = serializers.CharField(help_text="What the runs are sorted by: a run field or a metric's name.")
    order = serializers.ChoiceField(choices=["asc", "desc"])
    metrics = serializers.ListField(
        child=serializers.CharField(), help_text="Every metric's name any of the runs has, sorted."
    )
    count = serializers.IntegerField(
        help_text="How many runs were compared: all the experiment's (those of `status`, when given)."
    )
    truncated = serializers.BooleanField(
        help_text=f"True when `runs` holds only the first {MAX_COMPARED_RUNS:,} of the `count` runs "
        "in the sorted order."
    )
    runs = RunSummarySerializer(
        many=True,
        help_text="Sorted by a metric: the Succeeded runs that have it, then the other runs that have it, "
        f"then the runs without it. Every run is ranked; at most the first {MAX_COMPARED_RUNS:,} are listed.",
    )


class ExperimentDetailSerializer(ExperimentSerializer):
    runs = serializers.SerializerMethodField()

    class Meta(ExperimentSerializer.Meta):
        fields = [*ExperimentSerializer.Meta.fields, "runs"]
        read_only_fields = fields

    def get_runs(self, experiment: Experiment) -> list[dict]:
        runs = summary_runs(experiment.runs.all())
        for run in runs:
            run.experiment = experiment
        return RunSummarySerializer(runs, many=True, context=self.context).data


class RunDetailSerializer(RunSummarySerializer):
    experiment_name = serializers.CharField(source="experiment.name", read_only=True)
    group = serializers.CharField(source="experiment.group.name", read_only=True)
    model_type = serializers.CharField(source="experiment.model_type", read_only=True)
    requested_by = username_of(
        "requested_by",
        "Who started it; null when no account is on record (one deleted since, say).",
    )
    files = serializers.SerializerMethodField()
    promoted_models = serializers.SerializerMethodField()
    artifacts_url = serializers.SerializerMethodField()
    files_removed_at = serializers.DateTimeField(
        read_only=True,
        allow_null=True,
        help_text="When a member deleted the run's files (DELETE …/artifacts); null while they are kept.",
    )
    files_removed_by = username_of(
        "files_removed_by", "Who deleted the run's files; null while they are kept."
    )

    class Meta(RunSummarySerializer.Meta):
        fields = [
            *RunSummarySerializer.Meta.fields,
            "experiment_name",
            "group",
            "model_type",
            "description",
            "requested_by",
            "python_version",
            "python_full_version",
            "training_reference",
            "allow_network",
            "files",
            "requirements",
            "frozen_requirements",
            "env_names",
            "params",
            "summary",
            "artifacts",
            "attempts",
            "timeout",
            "promoted_models",
            "artifacts_url",
            "files_removed_at",
            "files_removed_by",
        ]
        read_only_fields = fields

    def get_files(self, run: TrainingRun) -> dict:
        return {
            "train_data": run.train_file or None,
            "source": run.source_file or None,
            "requirements": run.requirements_file,
            "extra": run.extra_files,
            **{role: name for role, name in run.inputs.items()},
        }

    def get_promoted_models(self, run: TrainingRun) -> list[dict]:
        """Each model made from the run, by the model's hash: a run promoted as a version
        is listed under its model, with the version's number and own hash (the API
        addresses a version through its model)."""
        return [
            self._promoted(model)
            for model in run.promoted_models.select_related("line").order_by("created_at")
        ]

    def _promoted(self, model) -> dict:
        root = model.line or model
        if model.line is None:
            url = reverse("api-model-detail", args=[model.hash])
        else:
            url = reverse("api-model-version", args=[root.hash, model.version])
        return {
            "hash": root.hash,
            "version": model.version,
            "version_hash": model.hash,
            "name": model.name,
            "status": model.status,
            "url": _absolute(self.context, url),
        }

    def get_artifacts_url(self, run: TrainingRun) -> str:
        return _absolute(
            self.context, reverse("api-training-run-artifacts", args=[run.experiment.hash, run.number])
        )


class RunStatusSerializer(serializers.ModelSerializer):
    """The original SDK's status shape: trainingExecutionId, Status, Message."""

    trainingExecutionId = serializers.IntegerField(source="number", read_only=True)  # noqa: N815
    Status = serializers.CharField(source="status", read_only=True)  # noqa: N815
    Message = serializers.SerializerMethodField()  # noqa: N815

    class Meta:
        model = TrainingRun
        fields = ["trainingExecutionId", "Status", "Message"]
        read_only_fields = fields

    def get_Message(self, run: TrainingRun) -> str | None:  # noqa: N802
        return run.error_message or None


class RunLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrainingRun
        fields = ["number", "status", "log"]
        read_only_fields = fields
