"""REST endpoints of training: experiments, runs, artifacts and promotion (/api/v1/training/)."""

from __future__ import annotations

import tempfile
import zipfile
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Count
from django.http import FileResponse, QueryDict
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, PolymorphicProxySerializer, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from groups.api.errors import (
    Conflict,
    checked_files,
    form_errors,
    form_fields,
    refuse_unknown_fields,
    refuse_unknown_parts,
)
from groups.api.pagination import PAGE_PARAMETERS, PageNumberPagination, paginated
from groups.api.parsers import FormParser, JSONParser, MultiPartParser  # deep nesting, repeated fields: 400
from groups.uploads import lost_parts
from models_app import services as model_services
from models_app.access import models_for
from models_app.api import SERVING_SETTING_HINTS, form_request_schema
from models_app.models import MLModel
from models_app.serializers import ModelDetailSerializer, ModelVersionSerializer
from training import services
from training.access import experiments_for, get_experiment_for_user, get_run_for_user
from training.forms import ExperimentForm, PromoteForm, TrainingRunForm
from training.models import Experiment, TrainingRun
from training.serializers import (
    MAX_COMPARED_RUNS,
    ExperimentDetailSerializer,
    ExperimentSerializer,
    RunComparisonSerializer,
    RunDetailSerializer,
    RunLogSerializer,
    RunStatusSerializer,
    RunSummarySerializer,
    summary_runs,
)

# Fields of a run a comparison may be sorted by, besides any metric.
RUN_SORT_FIELDS = ("number", "status", "run_name", "requested_at", "duration_seconds")


@dataclass(frozen=True)
class RankedRun:
    """What ranking a run in a comparison reads of it: no log, params or summary."""

    COLUMNS = ("pk", "number", "status", "name", "requested_at", "started_at", "finished_at", "metrics")

    pk: int
    number: int
    status: str
    name: str
    requested_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    metrics: dict | None

    def field(self, sort: str):
        """The value of a RUN_SORT_FIELDS field, as RunSummarySerializer shows it."""
        if sort == "run_name":
            return self.name
        if sort == "duration_seconds":
            if self.started_at and self.finished_at:
                return round((self.finished_at - self.started_at).total_seconds(), 3)
            return None
        return getattr(self, sort)


def _fields(request: Request, form_class, aliases=()) -> dict | QueryDict:
    """The request's fields for `form_class`, a copy the view may change: a JSON object's
    members (form_fields checks them), or a form's text fields. A file part is no field of
    these requests and is left out (copying an upload's open file fails)."""
    if isinstance(request.data, QueryDict):
        return request.POST.copy()
    return dict(form_fields(request, form_class, aliases))


class ExperimentListView(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]

    @extend_schema(
        parameters=[
            OpenApiParameter("name", str, description="Part of the name (case-insensitive)."),
            OpenApiParameter("group", str),
            OpenApiParameter("model_type", str, enum=Experiment.ModelType.values),
            *PAGE_PARAMETERS,
        ],
        responses=paginated(ExperimentSerializer),
        operation_id="training_experiments_list",
        tags=["training"],
    )
    def get(self, request: Request) -> Response:
        experiments = experiments_for(request.user).select_related("group", "created_by")
        params = request.query_params
        if params.get("name"):
            experiments = experiments.filter(name__icontains=params["name"])
        if params.get("group"):
            experiments = experiments.filter(group__name=params["group"])
        if params.get("model_type"):
            if params["model_type"] not in Experiment.ModelType.values:
                raise ValidationError(
                    {
                        "model_type": [
                            f"Unknown model_type '{params['model_type']}'; use one of "
                            f"{', '.join(Experiment.ModelType.values)}."
                        ]
                    }
                )
            experiments = experiments.filter(model_type=params["model_type"])
        experiments = experiments.annotate(runs_count=Count("runs")).order_by("-created_at", "-pk")
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(experiments, request, view=self)
        return paginator.get_paginated_response(
            ExperimentSerializer(page, many=True, context={"request": request}).data
        )

    @extend_schema(
        request={"application/json": form_request_schema(ExperimentForm)},
        responses={201: ExperimentDetailSerializer, 200: ExperimentDetailSerializer},
        tags=["training"],
        description="Returns the group's experiment with this name and model type (200) unless "
        "`force`, or creates one (201).",
    )
    def post(self, request: Request) -> Response:
        data = _fields(request, ExperimentForm, aliases=["name"])
        refuse_unknown_fields(data, [*ExperimentForm.base_fields, "name"])  # name: experiment_name's alias
        if "experiment_name" not in data and "name" in data:
            data["experiment_name"] = data["name"]
        form = ExperimentForm(data, user=request.user)
        if not form.is_valid():
            raise form_errors(form)
        experiment, created = services.get_or_create_experiment(
            request.user,
            name=form.cleaned_data["experiment_name"],
            model_type=form.cleaned_data["model_type"],
            group=form.cleaned_data["group"],
            force=form.cleaned_data["force"],
        )
        return Response(
            ExperimentDetailSerializer(experiment, context={"request": request}).data,
            status=status.HTTP_201_CREATED if created else status.HTTP_200_OK,
        )


class ExperimentDetailView(APIView):
    @extend_schema(responses=ExperimentDetailSerializer, tags=["training"])
    def get(self, request: Request, experiment_hash: str) -> Response:
        experiment = get_experiment_for_user(request.user, experiment_hash)
        return Response(ExperimentDetailSerializer(experiment, context={"request": request}).data)


class RunListView(APIView):
    parser_classes = [MultiPartParser, FormParser]  # uploads stream to disk

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "sort",
                str,
                description="A metric's name, or one of " + ", ".join(RUN_SORT_FIELDS) + " (default number).",
            ),
            OpenApiParameter("order", str, enum=["asc", "desc"], description="Default desc."),
            OpenApiParameter("status", str, enum=TrainingRun.Status.values),
        ],
        operation_id="training_runs_compare",
        responses=OpenApiResponse(
            RunComparisonSerializer,
            description="The experiment's runs side by side: `metrics` names every metric any run has. "
            "Sorted by a metric, runs that did not succeed come after the Succeeded ones, and runs "
            "without the metric last.",
        ),
        tags=["training"],
    )
    def get(self, request: Request, experiment_hash: str) -> Response:
        """Compare the experiment's runs: one row per run with its metrics, sortable."""
        experiment = get_experiment_for_user(request.user, experiment_hash)
        runs = experiment.runs.all()
        wanted_status = request.query_params.get("status")
        if wanted_status:
            if wanted_status not in TrainingRun.Status.values:
                raise ValidationError(
                    {
                        "status": [
                            f"Unknown status '{wanted_status}'; use one of {', '.join(TrainingRun.Status.values)}."
                        ]
                    }
                )
            runs = runs.filter(status=wanted_status)
        # Every run is ranked (the best by a metric may be the oldest), from the few columns
        # ranking needs; only the MAX_COMPARED_RUNS first of the order are then loaded whole.
        ranked = [RankedRun(**values) for values in runs.order_by("-number").values(*RankedRun.COLUMNS)]
        metric_names = sorted({name for run in ranked for name in (run.metrics or {})})
        sort = request.query_params.get("sort") or "number"
        order = request.query_params.get("order") or "desc"
        if order not in ("asc", "desc"):
            raise ValidationError({"order": [f"order must be asc or desc, not '{order}'."]})
        if sort not in RUN_SORT_FIELDS and sort not in metric_names:
            choices = ", ".join([*RUN_SORT_FIELDS, *metric_names])
            raise ValidationError({"sort": [f"Can't sort by '{sort}': use one of {choices}."]})

        by_metric = sort in metric_names and sort not in RUN_SORT_FIELDS

        def value(run: RankedRun):
            return (run.metrics or {}).get(sort) if by_metric else run.field(sort)

        present = [run for run in ranked if value(run) is not None]
        missing = [run for run in ranked if value(run) is None]
        present.sort(key=value, reverse=order == "desc")
        if by_metric:
            # A run that did not succeed is no candidate, whatever its metrics (a Failed
            # External run keeps those it was uploaded with): after every Succeeded one.
            succeeded = [run for run in present if run.status == TrainingRun.Status.SUCCEEDED]
            present = succeeded + [run for run in present if run.status != TrainingRun.Status.SUCCEEDED]
        shown = (present + missing)[:MAX_COMPARED_RUNS]
        loaded = summary_runs(experiment.runs.all()).in_bulk([run.pk for run in shown])
        rows = [loaded[run.pk] for run in shown if run.pk in loaded]
        for row in rows:
            row.experiment = experiment
        return Response(
            {
                "experiment": experiment.hash,
                "sort": sort,
                "order": order,
                "metrics": metric_names,
                "count": len(ranked),
                "truncated": len(ranked) > len(shown),
                "runs": RunSummarySerializer(rows, many=True, context={"request": request}).data,
            }
        )

    @extend_schema(
        request={"multipart/form-data": form_request_schema(TrainingRunForm)},
        responses={201: RunDetailSerializer},
        tags=["training"],
    )
    def post(self, request: Request, experiment_hash: str) -> Response:
        """Start a run: Custom (training data + script) or External (a model trained elsewhere)."""
        experiment = get_experiment_for_user(request.user, experiment_hash)
        files = checked_files(request)
        form = TrainingRunForm(
            request.POST, files, experiment=experiment, lost_parts=lost_parts(request._request)
        )
        refuse_unknown_parts(request, form)
        if not form.is_valid():
            raise form_errors(form)
        run = services.create_run(request.user, form.upload)
        return Response(
            RunDetailSerializer(run, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class RunDetailView(APIView):
    @extend_schema(operation_id="training_run_retrieve", responses=RunDetailSerializer, tags=["training"])
    def get(self, request: Request, experiment_hash: str, number: int) -> Response:
        run = get_run_for_user(request.user, experiment_hash, number)
        return Response(RunDetailSerializer(run, context={"request": request}).data)


class RunStatusView(APIView):
    @extend_schema(responses=RunStatusSerializer, tags=["training"])
    def get(self, request: Request, experiment_hash: str, number: int) -> Response:
        return Response(RunStatusSerializer(get_run_for_user(request.user, experiment_hash, number)).data)


class RunLogView(APIView):
    @extend_schema(responses=RunLogSerializer, tags=["training"])
    def get(self, request: Request, experiment_hash: str, number: int) -> Response:
        return Response(RunLogSerializer(get_run_for_user(request.user, experiment_hash, number)).data)


class RunArtifactsView(APIView):
    @extend_schema(
        responses={
            (200, "application/zip"): OpenApiTypes.BINARY,
            409: OpenApiResponse(description="Not finished."),
        },
        tags=["training"],
    )
    def get(self, request: Request, experiment_hash: str, number: int) -> FileResponse:
        """Everything the run kept, as one zip: model, tables, metrics, params, extras, freeze, log."""
        run = get_run_for_user(request.user, experiment_hash, number)
        if not run.is_finished:
            raise Conflict(f"Run {run.number} is {run.status}; its artifacts are ready once it has finished.")
        if run.files_removed_at is not None:
            raise NotFound(
                services.files_removed_message(
                    run, "its artifacts can't be downloaded (its log can: …/logs)"
                ),
                code="files_removed",
            )
        archive = tempfile.TemporaryFile()  # noqa: SIM115  (FileResponse closes it)
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
            for entry in run.artifacts:
                path = run.artifacts_folder / entry["name"]
                if path.is_file():
                    bundle.write(path, entry["name"])
            bundle.writestr("training.log", run.log)
        archive.seek(0)
        name = f"training-{run.experiment.hash}-{run.number}.zip"
        return FileResponse(archive, as_attachment=True, filename=name, content_type="application/zip")

    @extend_schema(
        request=None,
        responses={
            204: OpenApiResponse(description="The run's files are deleted; the run stays."),
            409: OpenApiResponse(
                description="`conflict`: the run has not finished, its files are already deleted, or a "
                "model's monitoring takes its data as its reference."
            ),
        },
        tags=["training"],
    )
    def delete(self, request: Request, experiment_hash: str, number: int) -> Response:
        """Delete the run's files (its uploads and artifacts) to free the group's storage. The
        run stays with its metrics, params and log; models promoted from it keep their own
        files. It can no longer be promoted, downloaded, or be a monitoring reference."""
        run = get_run_for_user(request.user, experiment_hash, number)
        try:
            services.remove_run_files(run, request.user)
        except services.RunFilesKept as exc:
            raise Conflict(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)


class RunPromoteView(APIView):
    parser_classes = [MultiPartParser, FormParser]

    @extend_schema(
        request={"multipart/form-data": form_request_schema(PromoteForm)},
        responses={
            201: PolymorphicProxySerializer(
                "PromotedModel",
                serializers=[ModelDetailSerializer, ModelVersionSerializer],
                resource_type_field_name=None,
            ),
            409: OpenApiResponse(description="The run is not Succeeded."),
        },
        tags=["training"],
    )
    def post(self, request: Request, experiment_hash: str, number: int) -> Response:
        """Deploy a Succeeded run as a model (or with `version_of` as a model's next version):
        its model file, Python and environment are reused."""
        run = get_run_for_user(request.user, experiment_hash, number)
        try:
            services.check_promotable(run)
        except services.NotPromotable as exc:
            raise Conflict(str(exc)) from None
        target = str(request.POST.get("version_of") or "").strip()
        if target and models_for(request.user).filter(hash=target, status=MLModel.Status.DELETED).exists():
            # A state, not bad input: the 409 that POST /models/<hash>/versions answers.
            raise Conflict(gettext("This model is deleted: promote the run as a new model instead."))
        files = checked_files(request)
        form = PromoteForm(
            request.POST, files, user=request.user, run=run, lost_parts=lost_parts(request._request)
        )
        refuse_unknown_parts(request, form, hints=SERVING_SETTING_HINTS)
        if not form.is_valid():
            raise form_errors(form)
        try:
            model = services.promote(
                request.user, run, form.upload, version_of=form.cleaned_data.get("version_of")
            )
        except (services.NotPromotable, model_services.ActionRefused) as exc:  # or deleted meanwhile
            raise Conflict(str(exc)) from None
        if model.line_id is not None:  # a new version of an existing model
            body = ModelVersionSerializer(model, context={"request": request}).data
        else:
            body = ModelDetailSerializer(model, context={"request": request}).data
        return Response(body, status=status.HTTP_201_CREATED)
