"""REST endpoints of executions, under /api/v1/run/<hash>.

`submit` answers `POST /api/v1/run/<hash>` for Async models (called by models_app's
RunView once the group token and the model's state are checked). The other views list,
describe and download executions; all of them authorise with the group token of the
model's group, or a logged-in member of that group (models_app.calls.get_called_model).
"""

from __future__ import annotations

import mimetypes
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.http import FileResponse
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import permissions, status
from rest_framework.exceptions import (
    APIException,
    NotFound,
    ParseError,
    UnsupportedMediaType,
    ValidationError,
)
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import services, uploads
from executions.models import Execution
from executions.serializers import ExecutionLogSerializer, ExecutionSerializer
from groups import storage
from groups.api.errors import InsufficientStorage, PayloadTooLarge
from groups.api.pagination import PAGE_PARAMETERS, PageNumberPagination, paginated
from groups.uploads import UNREADABLE_BODY, lost_part_message, lost_parts, name_as_sent, unreadable_body
from models_app.calls import get_called_model
from models_app.models import MLModel
from models_app.validation import UploadError, sanitize_filename

UPLOAD_FIELD = "file"
# Types that Python's mimetypes table doesn't know.
_EXTRA_TYPES = {".parquet": "application/vnd.apache.parquet", ".jsonl": "application/jsonl"}


class ResultNotReady(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "not_finished"


def _size(size: int) -> str:
    for unit, scale in (("GB", 1024**3), ("MB", 1024**2), ("KB", 1024)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def _input_from_request(request: Request):
    """The uploaded input file and its sanitised name, or the 4xx that says what is wrong."""
    django_request = request._request
    if not uploads.is_multipart(django_request):
        content_type = django_request.META.get("CONTENT_TYPE", "")
        raise UnsupportedMediaType(
            content_type or "(none)",
            detail="Send the input file as multipart/form-data in a field named 'file', "
            "e.g. curl -F file=@input.csv.",
        )
    # ExecutionUploadMiddleware has done this before anything could read the body; a
    # request that did not pass through it is prepared here (a no-op otherwise).
    uploads.prepare(django_request)
    try:
        files = django_request.FILES  # streams the body to a temporary file on disk
    except UNREADABLE_BODY as exc:
        raise ParseError(unreadable_body(exc)) from None
    if getattr(django_request, "upload_out_of_space", None):
        raise InsufficientStorage(django_request.upload_out_of_space)
    limit_errors = getattr(django_request, "upload_limit_errors", {})
    limit = settings.MAX_EXECUTION_UPLOAD_BYTES
    if limit_errors:
        raise PayloadTooLarge(f"The input file is larger than the limit of {_size(limit)}.")
    # Clients that name the field otherwise (e.g. 'input') work when they send one file.
    received = [(field, upload) for field, field_uploads in files.lists() for upload in field_uploads]
    if not received:
        raise ValidationError({UPLOAD_FIELD: _why_no_file(django_request)})
    if len(received) > 1:
        raise ValidationError({UPLOAD_FIELD: [_several_files([field for field, _upload in received])]})
    upload = received[0][1]
    try:
        sent = name_as_sent(django_request, received[0][0], upload.name)
        name = sanitize_filename(sent, field=UPLOAD_FIELD)
    except UploadError as exc:
        raise ValidationError({UPLOAD_FIELD: [exc.message]}) from None
    if upload.size is not None and upload.size > limit:
        raise PayloadTooLarge(
            f"'{name}' is larger than the limit of {_size(limit)} for an execution's input."
        )
    if not upload.size:
        raise ValidationError({UPLOAD_FIELD: [f"'{name}' is empty; send the file to score."]})
    return upload, name


def _why_no_file(request) -> list[str]:
    """The 400's messages when no file arrived: what became of the file parts that were sent."""
    lost = [
        lost_part_message(part, expected=UPLOAD_FIELD, example="input.csv") for part in lost_parts(request)
    ]
    if lost:
        return lost
    if UPLOAD_FIELD in request.POST:
        return [
            "No input file: the field 'file' was sent as text, not as a file; send the file itself "
            "(curl -F file=@input.csv, with the @)."
        ]
    return ["No input file: send it in a multipart field named 'file' (curl -F file=@input.csv)."]


def _several_files(fields: list[str]) -> str:
    named = list(dict.fromkeys(fields))
    listed = ", ".join(repr(field) for field in named)
    others = [field for field in named if field != UPLOAD_FIELD]
    message = f"{len(fields)} files were sent (fields {listed}); an execution takes one input file"
    if UPLOAD_FIELD in named and others:
        return message + f": send only the field 'file' (remove {', '.join(repr(f) for f in others)})."
    return message + ", in the field 'file'."


def submit(request: Request, model: MLModel, version: MLModel | None = None) -> Response:
    """Start an execution of a deployed Async model (run by `version`, default the model's
    first row) on the uploaded file: 202 with its id."""
    storage.refuse_before_the_body(model.group, request._request)
    upload, name = _input_from_request(request)
    execution = services.create_execution(model, upload, name=name, user=request.user, version=version)
    url = request.build_absolute_uri(
        reverse("execution-detail", kwargs={"model_hash": model.hash, "execution_id": execution.number})
    )
    body = {
        "execution_id": execution.number,
        "status": execution.status,
        "url": url,
        "model": model.hash,
        "version": (version or model).version,
        "message": f"Execution {execution.number} started. Use the id to check its status.",
    }
    return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": url})


def _called_execution(request: Request, model_hash: str, execution_id: int) -> Execution:
    model = get_called_model(request, model_hash, allow_member=True)
    return services.get_execution(model, execution_id)


def _content_type(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    return _EXTRA_TYPES.get(suffix) or mimetypes.guess_type(filename)[0] or "application/octet-stream"


DOWNLOAD_BLOCK_BYTES = 512 * 1024


def _files_removed(execution: Execution, what: str) -> NotFound:
    """The 404 of a download whose file is no longer on the server, saying why when we know."""
    if execution.files_removed_at is not None:
        detail = (
            f"The files of execution {execution.number} were removed on "
            f"{execution.files_removed_at:%Y-%m-%d %H:%M} UTC (retention policy), so its {what} "
            "can't be downloaded any more."
        )
    elif execution.finished_at is not None and execution.finished_at < timezone.now() - timedelta(
        days=settings.EXECUTION_RETENTION_DAYS
    ):
        # Past retention, its folder removed, its row not marked yet: the housekeeping
        # (on any node) marks the rows of a batch once their folders are gone.
        detail = (
            f"The files of execution {execution.number} were removed by the retention policy (kept "
            f"{settings.EXECUTION_RETENTION_DAYS} days after an execution ends), so its {what} can't "
            "be downloaded any more."
        )
    else:
        detail = (
            f"The {what} of execution {execution.number} is no longer on the server: its file was "
            "deleted from the execution's folder (not by the retention policy), so it can't be "
            "downloaded any more."
        )
    return NotFound(detail, code="files_removed")


def _download(execution: Execution, path: Path, what: str) -> FileResponse:
    """Stream a file of the execution's folder (never read whole into memory)."""
    if execution.files_removed_at is not None:
        raise _files_removed(execution, what)
    root = execution.folder.resolve()
    resolved = path.resolve()
    if not resolved.is_relative_to(root):
        raise NotFound(f"The {what} of execution {execution.number} is missing from its folder.")
    try:
        handle = open(resolved, "rb")  # noqa: SIM115  (FileResponse closes it)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):  # deleted by hand
        raise _files_removed(execution, what) from None
    response = FileResponse(
        handle, as_attachment=True, filename=resolved.name, content_type=_content_type(resolved.name)
    )
    # Without wsgi.file_wrapper (the ASGI bridge has none) Django iterates the file in
    # block_size pieces; its 4 KB default means one event-loop hop per 4 KB.
    response.block_size = DOWNLOAD_BLOCK_BYTES
    return response


_ID = OpenApiParameter(
    "execution_id", OpenApiTypes.INT, OpenApiParameter.PATH, description="Execution number."
)
_HASH = OpenApiParameter(
    "model_hash", OpenApiTypes.STR, OpenApiParameter.PATH, description="The model's hash."
)
_FILE = OpenApiResponse(
    OpenApiTypes.BINARY, description="The file, as an attachment, with its own type (text/csv, …)."
)
_FILE_TYPE = "*/*"


class ExecutionListView(APIView):
    permission_classes = [permissions.AllowAny]  # the group token (or membership) is checked per model

    @extend_schema(
        parameters=[
            _HASH,
            OpenApiParameter("status", str, enum=Execution.Status.values, description="Only this status."),
            *PAGE_PARAMETERS,
        ],
        responses=paginated(ExecutionSerializer),
        operation_id="run_executions_list",
        tags=["executions"],
    )
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_called_model(request, model_hash, allow_member=True)
        executions = model.executions.select_related("model", "version", "requested_by").order_by("-number")
        wanted = request.query_params.get("status")
        if wanted:
            if wanted not in Execution.Status.values:
                raise ValidationError(
                    {
                        "status": [
                            f"Unknown status '{wanted}'; use one of {', '.join(Execution.Status.values)}."
                        ]
                    }
                )
            executions = executions.filter(status=wanted)
        paginator = PageNumberPagination()
        page = paginator.paginate_queryset(executions, request, view=self)
        return paginator.get_paginated_response(
            ExecutionSerializer(page, many=True, context={"request": request}).data
        )


class ExecutionDetailView(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(parameters=[_HASH, _ID], responses=ExecutionSerializer, tags=["executions"])
    def get(self, request: Request, model_hash: str, execution_id: int) -> Response:
        execution = _called_execution(request, model_hash, execution_id)
        return Response(ExecutionSerializer(execution, context={"request": request}).data)


class ExecutionLogView(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(parameters=[_HASH, _ID], responses=ExecutionLogSerializer, tags=["executions"])
    def get(self, request: Request, model_hash: str, execution_id: int) -> Response:
        return Response(ExecutionLogSerializer(_called_execution(request, model_hash, execution_id)).data)


class ExecutionResultView(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(
        parameters=[_HASH, _ID],
        responses={
            (200, _FILE_TYPE): _FILE,
            404: None,
            409: OpenApiResponse(description="Not Succeeded (yet)."),
        },
        tags=["executions"],
    )
    def get(self, request: Request, model_hash: str, execution_id: int) -> FileResponse:
        execution = _called_execution(request, model_hash, execution_id)
        if execution.status != Execution.Status.SUCCEEDED:
            if execution.status == Execution.Status.FAILED:
                detail = (
                    f"Execution {execution.number} Failed, so it has no result: {execution.error_message}"
                )
            else:
                detail = (
                    f"Execution {execution.number} is {execution.status}; its result can be downloaded "
                    "once it has Succeeded."
                )
            raise ResultNotReady({"detail": detail, "status": execution.status})
        assert execution.output_path is not None
        return _download(execution, execution.output_path, "result")


class ExecutionInputView(APIView):
    permission_classes = [permissions.AllowAny]

    @extend_schema(parameters=[_HASH, _ID], responses={(200, _FILE_TYPE): _FILE}, tags=["executions"])
    def get(self, request: Request, model_hash: str, execution_id: int) -> FileResponse:
        execution = _called_execution(request, model_hash, execution_id)
        return _download(execution, execution.input_path, "input")
