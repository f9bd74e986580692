"""REST endpoints of indirect monitoring (/api/v1/monitoring/): register a model, change
its settings, run and read its periods, merge them.

Each view fetches through monitors.access (outsiders get 404), validates with the forms
the pages use (monitors.forms) and calls one service (monitors.services).
"""

from __future__ import annotations

from datetime import date, datetime

from django import forms
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import ValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from groups.api.errors import (
    Conflict,
    checked_files,
    form_errors,
    form_fields,
    json_object,
    refuse_unknown_fields,
    refuse_unknown_parts,
)
from groups.api.parsers import FormParser, JSONParser, MultiPartParser  # deep nesting, repeated fields: 400
from groups.uploads import lost_parts
from models_app.api import form_request_schema
from monitors import services
from monitors.access import get_model_for_monitoring, get_monitor_for_user, get_period_for_user
from monitors.forms import MonitoringForm, MonitoringSettingsForm
from monitors.models import Period
from monitors.serializers import (
    MergedSerializer,
    MonitorSerializer,
    PeriodDetailSerializer,
    PeriodListSerializer,
    PeriodRequestSerializer,
    PeriodSummarySerializer,
)

TAGS = ["monitoring"]
DATE_FORMATS = "YYYY-MM-DD or an ISO 8601 datetime such as 2026-05-26T14:30:00Z"
NOT_MONITORED = OpenApiResponse(description="No such model among your groups', or it is not monitored.")
# The most periods `?limit=` asks for (a Day monitor has 365 a year).
MAX_PERIOD_LIMIT = 500


def _form_schema(form_class: type[forms.Form], *, partial: bool = False) -> dict:
    """The form's OpenAPI body (models_app.api.form_request_schema) with its numbers typed;
    `partial`: every field optional (PATCH)."""
    schema = form_request_schema(form_class)
    for name, field in form_class.base_fields.items():
        if isinstance(field, forms.FloatField):  # before IntegerField: FloatField is one
            schema["properties"][name]["type"] = "number"
        elif isinstance(field, forms.IntegerField):
            schema["properties"][name]["type"] = "integer"
    if partial:
        del schema["required"]  # OpenAPI 3.0 wants a non-empty list, or none
    return schema


def parse_moment(field: str, value) -> date | datetime:
    """A day (``YYYY-MM-DD``) or an ISO datetime; a naive one is in the project's time zone."""
    text = value.strip() if isinstance(value, str) else None
    if text and len(text) == 10:
        try:
            return date.fromisoformat(text)
        except ValueError:
            pass
    elif text:
        try:
            moment = parse_datetime(text)
        except ValueError:
            moment = None
        if moment is not None:
            return moment if timezone.is_aware(moment) else timezone.make_aware(moment)
    raise ValidationError({field: [f"{value!r} is not a date: use {DATE_FORMATS}."]})


def parse_day(params, field: str) -> date:
    value = params.get(field)
    if not value:
        raise ValidationError({field: [f"Give {field} as YYYY-MM-DD, e.g. {field}=2026-05-01."]})
    if len(value) == 10:  # fromisoformat alone would take 20260501 and 2026-W18 too
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise ValidationError({field: [f"{value!r} is not a date: use YYYY-MM-DD, e.g. {field}=2026-05-01."]})


def parse_statuses(params) -> list[str] | None:
    """`status=Queued,Running`: the period statuses asked for (None when not asked)."""
    value = params.get("status")
    if value is None:
        return None
    wanted = [part.strip() for part in value.split(",")]
    if not all(part in Period.Status.values for part in wanted):
        raise ValidationError(
            {
                "status": [
                    f"{value!r} is not a list of period statuses: use one or more of "
                    f"{', '.join(Period.Status.values)}, separated by commas (e.g. status=Queued,Running)."
                ]
            }
        )
    return wanted


def parse_limit(params) -> int | None:
    """`limit=N`: how many of the newest periods (None when not asked)."""
    value = params.get("limit")
    if value is None:
        return None
    if not (value.isascii() and value.isdigit()) or not 1 <= int(value) <= MAX_PERIOD_LIMIT:
        raise ValidationError(
            {"limit": [f"{value!r} is not a limit: use a whole number from 1 to {MAX_PERIOD_LIMIT}."]}
        )
    return int(value)


class MonitorView(APIView):
    parser_classes = [JSONParser, MultiPartParser, FormParser]  # PATCH: JSON (or a form)

    def initialize_request(self, request, *args, **kwargs):
        """The registration's body carries files: a JSON one is a 415, as on every upload,
        not a 400 asking for the files it could not hold."""
        drf_request = super().initialize_request(request, *args, **kwargs)
        if request.method == "POST":
            drf_request.parsers = [MultiPartParser(), FormParser()]
        return drf_request

    @extend_schema(responses={200: MonitorSerializer, 404: NOT_MONITORED}, tags=TAGS)
    def get(self, request: Request, model_hash: str) -> Response:
        """The model's monitoring: its configuration, validation status and last period."""
        monitor = get_monitor_for_user(request.user, model_hash)
        return Response(MonitorSerializer(monitor).data)

    @extend_schema(
        request={"multipart/form-data": _form_schema(MonitoringForm)},
        responses={202: MonitorSerializer},
        tags=TAGS,
    )
    def post(self, request: Request, model_hash: str) -> Response:
        """Register the model for monitoring (or replace its registration); validation is queued."""
        model = get_model_for_monitoring(request.user, model_hash)
        files = checked_files(request)
        form = MonitoringForm(request.POST, files, model=model, lost_parts=lost_parts(request._request))
        refuse_unknown_parts(request, form)
        if not form.is_valid():
            raise form_errors(form)
        monitor = services.register(model, request.user, form)
        return Response(MonitorSerializer(monitor).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(
        request={"application/json": _form_schema(MonitoringSettingsForm, partial=True)},
        responses={200: MonitorSerializer, 404: NOT_MONITORED},
        tags=TAGS,
    )
    def patch(self, request: Request, model_hash: str) -> Response:
        """Change the webhook, thresholds or minimum rows; fields not sent keep their value."""
        monitor = get_monitor_for_user(request.user, model_hash)
        data = form_fields(request, MonitoringSettingsForm)
        refuse_unknown_fields(
            data, MonitoringSettingsForm.base_fields, "Not a monitoring setting; one of {known}."
        )
        form = MonitoringSettingsForm(data, instance=monitor)
        if not form.is_valid():
            raise form_errors(form)
        monitor = form.save()
        return Response(MonitorSerializer(monitor).data)

    @extend_schema(responses={204: None, 404: NOT_MONITORED}, tags=TAGS)
    def delete(self, request: Request, model_hash: str) -> Response:
        """Stop monitoring the model: its registration, periods and files are removed."""
        services.unregister(get_monitor_for_user(request.user, model_hash))
        return Response(status=status.HTTP_204_NO_CONTENT)


class PeriodListView(APIView):
    parser_classes = [JSONParser, FormParser]

    @extend_schema(
        operation_id="monitoring_periods_list",
        parameters=[
            OpenApiParameter(
                "status",
                str,
                description="Only the periods in these statuses, separated by commas (e.g. `Queued,Running`): "
                + ", ".join(Period.Status.values)
                + ".",
            ),
            OpenApiParameter(
                "limit",
                {"type": "integer", "minimum": 1, "maximum": MAX_PERIOD_LIMIT},
                description=f"Only the newest windows, at most this many (1 to {MAX_PERIOD_LIMIT}). Default: all.",
            ),
        ],
        responses={200: PeriodListSerializer, 404: NOT_MONITORED},
        tags=TAGS,
    )
    def get(self, request: Request, model_hash: str) -> Response:
        """The monitoring's periods, newest first."""
        monitor = get_monitor_for_user(request.user, model_hash)
        statuses = parse_statuses(request.query_params)
        limit = parse_limit(request.query_params)
        periods = services.period_summaries(monitor, statuses=statuses, limit=limit)
        return Response({"periods": PeriodSummarySerializer(periods, many=True).data})

    @extend_schema(
        request=PeriodRequestSerializer,
        responses={
            202: PeriodSummarySerializer,
            404: NOT_MONITORED,
            409: OpenApiResponse(description="The monitoring is not Validated."),
        },
        tags=TAGS,
    )
    def post(self, request: Request, model_hash: str) -> Response:
        """Run the period containing `date` (default now) now; a finished one runs again."""
        monitor = get_monitor_for_user(request.user, model_hash)
        data = json_object(request)
        refuse_unknown_fields(data, ["date"])  # {"start": …} would otherwise run the current period
        value = data.get("date")
        moment = None if value in (None, "") else parse_moment("date", value)
        try:
            period = services.request_period(monitor, moment, request.user)
        except services.NotValidated as exc:
            raise Conflict(str(exc)) from None
        except services.PeriodRefused as exc:
            raise ValidationError({"date": [str(exc)]}) from None
        return Response(PeriodSummarySerializer(period).data, status=status.HTTP_202_ACCEPTED)


class PeriodDetailView(APIView):
    @extend_schema(
        operation_id="monitoring_period_retrieve",
        responses={200: PeriodDetailSerializer, 404: NOT_MONITORED},
        tags=TAGS,
    )
    def get(self, request: Request, model_hash: str, period_id: int) -> Response:
        """A period with its log, SHAP means and every column's bins, counts and proportions."""
        period = get_period_for_user(request.user, model_hash, period_id)
        return Response(PeriodDetailSerializer(period).data)


class MergedView(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter(
                "start", OpenApiTypes.DATE, required=True, description="First day (YYYY-MM-DD)."
            ),
            OpenApiParameter(
                "end", OpenApiTypes.DATE, required=True, description="Day after the last (exclusive)."
            ),
        ],
        responses={200: MergedSerializer, 404: NOT_MONITORED},
        tags=TAGS,
    )
    def get(self, request: Request, model_hash: str) -> Response:
        """The Succeeded periods inside [start, end) as one: their counts added, PSI recomputed."""
        monitor = get_monitor_for_user(request.user, model_hash)
        start = parse_day(request.query_params, "start")
        end = parse_day(request.query_params, "end")
        if end <= start:
            raise ValidationError(
                {"end": [f"end ({end}) must be after start ({start}): the range is [start, end)."]}
            )
        try:
            merged = services.merged(monitor, start, end)
        except ValueError as exc:
            raise ValidationError([str(exc)]) from None
        return Response(merged)
