"""REST endpoints of models: upload, search, describe, logs and lifecycle actions."""

from __future__ import annotations

from django import forms
from django.db import transaction
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from groups.api.errors import Conflict, checked_files, form_errors
from groups.api.pagination import PageNumberPagination
from models_app import services
from models_app.access import get_model_for_user, models_for
from models_app.forms import DefaultBooleanField, FileOrTextField, ModelUploadForm, MultipleFileField
from models_app.models import MLModel
from models_app.serializers import (
    ModelBuildLogSerializer,
    ModelDetailSerializer,
    ModelEventSerializer,
    ModelSettingsSerializer,
    ModelStatusSerializer,
    ModelStatusWithLogSerializer,
    ModelSummarySerializer,
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
        ],
        responses=ModelSummarySerializer(many=True),
        tags=["models"],
    )
    def get(self, request: Request) -> Response:
        models = models_for(request.user).select_related("group")
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
        form = ModelUploadForm(request.POST, checked_files(request), user=request.user)
        if not form.is_valid():
            raise form_errors(form)
        model = services.create_model(request.user, form.upload)
        return Response(
            ModelDetailSerializer(model, context={"request": request}).data, status=status.HTTP_201_CREATED
        )


class ModelDetailView(APIView):
    @extend_schema(responses=ModelDetailSerializer, tags=["models"])
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        return Response(ModelDetailSerializer(model, context={"request": request}).data)

    @extend_schema(request=ModelSettingsSerializer, responses=ModelDetailSerializer, tags=["models"])
    def patch(self, request: Request, model_hash: str) -> Response:
        """Change serving settings (replicas, request timeout); they apply within seconds."""
        model = get_model_for_user(request.user, model_hash)
        if model.status == MLModel.Status.DELETED:
            raise Conflict("This model is deleted.")
        data = ModelSettingsSerializer(model, data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        model = services.change_settings(model, request.user, **data.validated_data)
        return Response(ModelDetailSerializer(model, context={"request": request}).data)

    @extend_schema(responses=ModelStatusSerializer, tags=["models"])
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
    def get(self, request: Request, model_hash: str) -> Response:
        include = request.query_params.get("include")
        if include not in (None, "log"):
            raise ValidationError({"include": [f"Unknown include '{include}'; the one choice is 'log'."]})
        if include is None:
            return Response(ModelStatusSerializer(get_model_for_user(request.user, model_hash)).data)
        # One answer for the model page's poll, so its badge and its log never disagree. A
        # build writes its last log line before the status that ends it, so the status is
        # read first, in one transaction: a final status always comes with the complete log.
        with transaction.atomic():
            model = get_model_for_user(request.user, model_hash)
            body = ModelStatusSerializer(model).data
            build = model.builds.first()
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
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        builds = model.builds.all()
        number = request.query_params.get("build")
        if number is not None:
            if not number.isdigit():
                raise ValidationError({"build": ["build must be a build number, e.g. 1."]})
            builds = builds.filter(number=int(number))
        build = builds.first()
        if build is None:
            raise NotFound("This model has no such build.")
        return Response(ModelBuildLogSerializer(build).data)


class ModelEventsView(APIView):
    @extend_schema(responses=ModelEventSerializer(many=True), tags=["models"])
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(model.events.select_related("actor"), request, view=self)
        return paginator.get_paginated_response(ModelEventSerializer(page, many=True).data)


def _act(action, model: MLModel, request: Request) -> Response:
    try:
        model = action(model, request.user)
    except services.ActionRefused as exc:
        raise Conflict(str(exc)) from None
    return Response(ModelStatusSerializer(model).data)


class ModelDisableView(APIView):
    @extend_schema(request=None, responses=ModelStatusSerializer, tags=["models"])
    def post(self, request: Request, model_hash: str) -> Response:
        return _act(services.disable, get_model_for_user(request.user, model_hash), request)


class ModelRestartView(APIView):
    @extend_schema(request=None, responses=ModelStatusSerializer, tags=["models"])
    def post(self, request: Request, model_hash: str) -> Response:
        return _act(services.restart, get_model_for_user(request.user, model_hash), request)


class ModelRunnersView(APIView):
    """The warm runner processes of a Sync model on this node (from the model host)."""

    @extend_schema(responses=RunnerSerializer(many=True), tags=["models"])
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        return Response(
            {"model": model.hash, "runners": RunnerSerializer(runners_of(model.hash), many=True).data}
        )


class ModelPredictionsView(APIView):
    """Recorded Sync calls of a model (input, output, status, latency), newest first."""

    @extend_schema(responses=PredictionRecordSerializer(many=True), tags=["models"])
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(model.predictions.all(), request, view=self)
        return paginator.get_paginated_response(PredictionRecordSerializer(page, many=True).data)
