"""REST endpoints of models: upload, search, describe, logs and lifecycle actions."""

from __future__ import annotations

from django import forms
from django.db import transaction
from django.utils.translation import gettext
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from groups.api import errors
from groups.api.errors import Conflict, checked_files, form_errors
from groups.api.pagination import PAGE_PARAMETERS, PageNumberPagination, paginated
from groups.api.parsers import FormParser, MultiPartParser  # repeated fields: 400
from groups.forms import DefaultBooleanField
from groups.uploads import lost_parts
from models_app import services
from models_app.access import get_model_for_user, get_version, models_for
from models_app.forms import (
    FileOrTextField,
    ModelUploadForm,
    ModelVersionForm,
    MultipleFileField,
)
from models_app.models import MLModel
from models_app.serializers import (
    ASYNC_SETTINGS,
    BUILDS_WITHOUT_LOGS,
    SYNC_SETTINGS,
    ModelBuildLogSerializer,
    ModelDetailSerializer,
    ModelEventSerializer,
    ModelRunnersSerializer,
    ModelSettingsSerializer,
    ModelStatusSerializer,
    ModelStatusWithLogSerializer,
    ModelSummarySerializer,
    ModelVersionSerializer,
    PredictionRecordSerializer,
    RunnerSerializer,
)
from models_app.serving.views import runners_of


def form_request_schema(form_class: type[forms.Form]) -> dict:
    """The OpenAPI body of a multipart form, read off the form's own fields.

    The upload endpoint's docs come from `ModelUploadForm` itself, so a field, a default
    or a required flag cannot be documented one way and validated another.
    """
    properties = {name: _field_schema(field) for name, field in form_class.base_fields.items()}
    required = [name for name, field in form_class.base_fields.items() if field.required]
    return {"type": "object", "properties": properties, "required": required}


def _field_schema(field: forms.Field) -> dict:
    binary = {"type": "string", "format": "binary"}
    if isinstance(field, MultipleFileField):
        schema: dict = {"type": "array", "items": binary}
    elif isinstance(field, forms.FileField):
        schema = dict(binary)
    elif isinstance(field, FileOrTextField):
        schema = {"oneOf": [binary, {"type": "string"}]}
    elif isinstance(field, DefaultBooleanField):
        schema = {"type": "boolean", "default": field.default}
    elif isinstance(field, forms.ModelChoiceField):
        schema = {"type": "string"}
    elif isinstance(field, forms.ChoiceField):
        schema = {"type": "string", "enum": [value for value, _ in field.choices if value != ""]}
    else:
        schema = {"type": "string"}
    if getattr(field, "max_length", None):
        schema["maxLength"] = field.max_length
    if getattr(field, "empty_value", None) not in (None, ""):
        schema["default"] = field.empty_value
    if field.help_text:
        schema["description"] = str(field.help_text)
    return schema


class ModelListView(APIView):
    parser_classes = [MultiPartParser, FormParser]  # uploads stream to disk

    @extend_schema(
        parameters=[
            OpenApiParameter("name", str, description="Part of the name (case-insensitive)."),
            OpenApiParameter("group", str),
            OpenApiParameter("status", str, enum=MLModel.Status.values),
            OpenApiParameter("operation", str, enum=MLModel.Operation.values),
            *PAGE_PARAMETERS,
        ],
        responses=paginated(ModelSummarySerializer),
        operation_id="models_list",
        tags=["models"],
    )
    def get(self, request: Request) -> Response:
        models = models_for(request.user).select_related("group", "live_version")
        params = request.query_params
        if params.get("name"):
            models = models.filter(name__icontains=params["name"])
        if params.get("group"):
            models = models.filter(group__name=params["group"])
        for key, choices in (("status", MLModel.Status.values), ("operation", MLModel.Operation.values)):
            if params.get(key):
                if params[key] not in choices:
                    raise ValidationError(
                        {key: [f"Unknown {key} '{params[key]}'; use one of {', '.join(choices)}."]}
                    )
                if key == "status":  # the model's status is its live version's
                    models = models.serving_status(params[key])
                else:
                    models = models.filter(**{key: params[key]})
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(models.order_by("-created_at"), request, view=self)
        return paginator.get_paginated_response(
            ModelSummarySerializer(page, many=True, context={"request": request}).data
        )

    @extend_schema(
        request={"multipart/form-data": form_request_schema(ModelUploadForm)},
        responses={201: ModelDetailSerializer},
        tags=["models"],
    )
    def post(self, request: Request) -> Response:
        form = ModelUploadForm(
            request.POST, checked_files(request), user=request.user, lost_parts=lost_parts(request._request)
        )
        refuse_unknown_parts(request, form)
        if not form.is_valid():
            raise form_errors(form)
        model = services.create_model(request.user, form.upload)
        return Response(
            ModelDetailSerializer(model, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


SERVING_SETTING_HINTS = {
    name: f"{name} is a serving setting, not part of the upload: once the model is uploaded, "
    f"set it with PATCH /api/v1/models/<hash>."
    for name in (*SYNC_SETTINGS, *ASYNC_SETTINGS)
}


def refuse_unknown_parts(request: Request, form: forms.Form) -> None:
    """errors.refuse_unknown_parts, saying where a serving setting is set (min_replicas sent
    with the upload gave a model with 1)."""
    errors.refuse_unknown_parts(request, form, hints=SERVING_SETTING_HINTS)


class ModelDetailView(APIView):
    @extend_schema(responses=ModelDetailSerializer, tags=["models"])
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        return Response(ModelDetailSerializer(model, context={"request": request}).data)

    @extend_schema(request=ModelSettingsSerializer, responses=ModelDetailSerializer, tags=["models"])
    def patch(self, request: Request, model_hash: str) -> Response:
        """Change settings that need no rebuild: a Sync model's replicas and request timeout (the
        model host applies them within seconds), an Async model's execution timeout (its next
        executions)."""
        model = get_model_for_user(request.user, model_hash)
        if model.status == MLModel.Status.DELETED:
            raise Conflict("This model is deleted.")
        data = ModelSettingsSerializer(model, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        try:
            model = services.change_settings(model, request.user, **data.validated_data)
        except services.ActionRefused as refused:
            raise Conflict(str(refused)) from refused
        return Response(ModelDetailSerializer(model, context={"request": request}).data)

    @extend_schema(responses={200: ModelStatusSerializer}, tags=["models"])
    def delete(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        return _act(services.delete, model, request)


class ModelStatusView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "include",
                str,
                enum=["log"],
                description="`log`: add `build`, the latest build with its log, read together with the status.",
            )
        ],
        responses=ModelStatusWithLogSerializer,
        tags=["models"],
    )
    def get(self, request: Request, model_hash: str, version: int | None = None) -> Response:
        """The model's status is its live version's; with `version`, that version's own."""
        include = request.query_params.get("include")
        if include not in (None, "log"):
            raise ValidationError({"include": [f"Unknown include '{include}'; the one choice is 'log'."]})
        # One answer for the model page's poll, so its badge and its log never disagree. A
        # build writes its last log line before the status that ends it, so the status is
        # read first, in one transaction: a final status always comes with the complete log.
        with transaction.atomic():
            row = _row(request, model_hash, version)
            body = ModelStatusSerializer(row).data
            if version is None:
                body["hash"] = model_hash
            if include == "log":
                build = row.builds.first()
                body["build"] = ModelBuildLogSerializer(build).data if build else None
        return Response(body)


class ModelLogsView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("build", OpenApiTypes.INT, description="Build number (default: the latest).")
        ],
        responses=ModelBuildLogSerializer,
        tags=["models"],
    )
    def get(self, request: Request, model_hash: str, version: int | None = None) -> Response:
        builds = _row(request, model_hash, version).builds.all()
        number = request.query_params.get("build")
        if number is not None:
            if not (number.isascii() and number.isdigit() and len(number) <= 9):
                raise ValidationError({"build": ["build must be a build number, e.g. 1."]})
            builds = builds.filter(number=int(number))
        build = builds.first()
        if build is None:
            raise NotFound("This model has no such build.")
        return Response(ModelBuildLogSerializer(build).data)


class ModelEventsView(APIView):
    @extend_schema(
        responses=paginated(ModelEventSerializer),
        operation_id="models_events_list",
        parameters=PAGE_PARAMETERS,
        tags=["models"],
    )
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(model.events.select_related("actor"), request, view=self)
        return paginator.get_paginated_response(ModelEventSerializer(page, many=True).data)


def _row(request: Request, model_hash: str, version: int | None) -> MLModel:
    """The row a model endpoint acts on: the model's live version, or version `version`."""
    model = get_model_for_user(request.user, model_hash)
    return model.serving if version is None else get_version(model, version)


def _act(action, model: MLModel, request: Request, *, shown_hash: str | None = None) -> Response:
    """Run a lifecycle action on a row; the answer names `shown_hash` (the model's, when the
    action went to its live version) or the row's own hash."""
    try:
        model = action(model, request.user)
    except services.ActionRefused as exc:
        raise Conflict(str(exc)) from None
    body = ModelStatusSerializer(model).data
    if shown_hash is not None:
        body["hash"] = shown_hash
    return Response(body)


class ModelDisableView(APIView):
    @extend_schema(request=None, responses=ModelStatusSerializer, tags=["models"])
    def post(self, request: Request, model_hash: str, version: int | None = None) -> Response:
        """Stop serving: the model's live version, or version `version`."""
        shown = model_hash if version is None else None
        return _act(services.disable, _row(request, model_hash, version), request, shown_hash=shown)


class ModelRestartView(APIView):
    @extend_schema(request=None, responses=ModelStatusSerializer, tags=["models"])
    def post(self, request: Request, model_hash: str, version: int | None = None) -> Response:
        """Rebuild and redeploy: the model's live version, or version `version`."""
        shown = model_hash if version is None else None
        return _act(services.restart, _row(request, model_hash, version), request, shown_hash=shown)


class ModelRunnersView(APIView):
    """The warm runner processes of a Sync model on this node (from the model host)."""

    @extend_schema(responses=ModelRunnersSerializer, tags=["models"])
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        serving = model.serving
        return Response(
            {
                "model": model.hash,
                "version": serving.version,
                "runners": RunnerSerializer(runners_of(serving.hash), many=True).data,
            }
        )


class ModelPredictionsView(APIView):
    """Recorded Sync calls of a model (input, output, status, latency), newest first."""

    @extend_schema(
        parameters=[
            OpenApiParameter("version", OpenApiTypes.INT, description="Only calls this version answered."),
            OpenApiParameter(
                "live",
                OpenApiTypes.BOOL,
                description="true: production calls only; false: trials of other versions.",
            ),
            *PAGE_PARAMETERS,
        ],
        responses=paginated(PredictionRecordSerializer),
        operation_id="models_predictions_list",
        tags=["models"],
    )
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        records = model.predictions.all()
        version = request.query_params.get("version")
        if version is not None:
            if not (version.isascii() and version.isdigit() and len(version) <= 9):
                raise ValidationError({"version": ["version must be a version number, e.g. 1."]})
            records = records.filter(version=int(version))
        live = request.query_params.get("live")
        if live is not None:
            if live not in ("true", "false"):
                raise ValidationError({"live": [f"live must be true or false, not '{live}'."]})
            records = records.filter(live=live == "true")
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(records, request, view=self)
        return paginator.get_paginated_response(PredictionRecordSerializer(page, many=True).data)


class ModelVersionListView(APIView):
    parser_classes = [MultiPartParser, FormParser]  # uploads stream to disk

    @extend_schema(
        responses=paginated(ModelVersionSerializer),
        operation_id="models_versions_list",
        parameters=PAGE_PARAMETERS,
        tags=["models"],
    )
    def get(self, request: Request, model_hash: str) -> Response:
        """Every version of the model, newest first; `live` marks the one its run URL serves."""
        model = get_model_for_user(request.user, model_hash)
        versions = (
            model.all_versions()
            # A promoted version names its run and the run's experiment, not the run's
            # log, environment or results.
            .select_related("created_by", "line", "training_run__experiment")
            .defer(
                "training_run__log",
                "training_run__frozen_requirements",
                "training_run__env_ciphertext",
                "training_run__summary",
            )
            .prefetch_related(BUILDS_WITHOUT_LOGS)
            .order_by("-version")
        )
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(versions, request, view=self)
        context = {"request": request, "model": model}
        return paginator.get_paginated_response(ModelVersionSerializer(page, many=True, context=context).data)

    @extend_schema(
        request={"multipart/form-data": form_request_schema(ModelVersionForm)},
        responses={201: ModelVersionSerializer},
        tags=["models"],
    )
    def post(self, request: Request, model_hash: str) -> Response:
        """Upload the model's next version: the upload's files and fields, without name, group
        and operation (the model's). It goes live once Deployed; until then the live version
        keeps serving, and a version that fails never replaces it."""
        model = get_model_for_user(request.user, model_hash)
        if model.root.status == MLModel.Status.DELETED:
            # A state, not bad input: the same 409 as a model deleted while its version uploads.
            raise Conflict(gettext("This model is deleted: upload a new model instead."))
        form = ModelVersionForm(
            request.POST,
            checked_files(request),
            user=request.user,
            model=model,
            lost_parts=lost_parts(request._request),
        )
        refuse_unknown_parts(request, form)
        if not form.is_valid():
            raise form_errors(form)
        try:
            version = services.add_version(request.user, model, form.upload)
        except services.ActionRefused as exc:  # the model was deleted since the form checked it
            raise Conflict(str(exc)) from None
        context = {"request": request, "model": model}
        return Response(ModelVersionSerializer(version, context=context).data, status=status.HTTP_201_CREATED)


class ModelVersionDetailView(APIView):
    @extend_schema(responses=ModelVersionSerializer, tags=["models"])
    def get(self, request: Request, model_hash: str, version: int) -> Response:
        model = get_model_for_user(request.user, model_hash)
        context = {"request": request, "model": model}
        return Response(ModelVersionSerializer(get_version(model, version), context=context).data)

    @extend_schema(responses={200: ModelStatusSerializer}, tags=["models"])
    def delete(self, request: Request, model_hash: str, version: int) -> Response:
        """Delete one version (its files and environment link); not the live one, and not
        version 1, which holds the model (delete the model instead)."""
        model = get_model_for_user(request.user, model_hash)
        return _act(services.delete_version, get_version(model, version), request)


class ModelVersionLiveView(APIView):
    @extend_schema(request=None, responses=ModelVersionSerializer, tags=["models"])
    def post(self, request: Request, model_hash: str, version: int) -> Response:
        """Make this (Deployed) version the one the model's run URL serves: a rollback in one call."""
        model = get_model_for_user(request.user, model_hash)
        row = get_version(model, version)
        services.warm_quietly(row)  # before it takes calls: no cold first call after a rollback
        try:
            services.make_live(model, row, request.user)
        except services.ActionRefused as exc:
            raise Conflict(str(exc)) from None
        model.refresh_from_db()
        context = {"request": request, "model": model}
        return Response(ModelVersionSerializer(row, context=context).data)
