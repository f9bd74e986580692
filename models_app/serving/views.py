"""The predict endpoint (Sync) and the per-model health endpoint."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, RawPostDataException
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import permissions, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from groups.api.errors import JSON, error_response
from models_app.calls import CalledModel, get_called_model
from models_app.models import MLModel
from models_app.serving import paths
from models_app.serving.aio import ServingError, blocking_pool, host_call
from models_app.serving.answers import (
    DATABASE_RETRY_AFTER,
    FORM_BODY,
    BadInput,
    answer_for_payload,
    answer_for_serving_error,
    check_input,
    count,
    record,
    too_large,
)


def _body(request: HttpRequest) -> bytes:
    try:
        return request.body
    except RawPostDataException:
        # A multipart body to /try: the CSRF check has parsed it as a form (request.POST),
        # and Django keeps no copy of what it streamed. The run URL's answer to such a body.
        raise BadInput(400, FORM_BODY, "invalid") from None


def predict(request: HttpRequest, model: CalledModel) -> HttpResponse:
    """Answer one Sync call. The runner gets the body exactly as sent (a JSON string).

    Under gunicorn's uvicorn workers the ASGI fast path (serving.front) answers these
    calls before Django sees them; this view serves plain WSGI deployments and the
    in-process test client, with the same answers (serving.answers) and the same runner
    client (serving.aio, on its event-loop thread).
    """
    started = time.perf_counter()
    try:
        body = check_input(_body(request), model.schema_is_object)
    except RequestDataTooBig:
        problem = too_large(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        count(model, problem.status, started)
        return error_response(problem.status, problem.detail, problem.code)
    except BadInput as problem:
        count(model, problem.status, started)
        return error_response(problem.status, problem.detail, problem.code)
    try:
        status, content = answer_for_payload(blocking_pool.predict(model, body))
    except ServingError as exc:
        status, content = answer_for_serving_error(exc.status, exc.message, exc.code)
    record(model, body, status, content, started)
    response = HttpResponse(content, status=status, content_type=JSON)
    if status == 503:  # the model host or a runner restarting: as the fast path says (front.RETRY_LATER)
        response["Retry-After"] = str(DATABASE_RETRY_AFTER)
    return response


def runners_of(model_hash: str) -> list[dict]:
    try:
        status = host_call({"op": "status"}, timeout=5)
    except ServingError:
        return []
    return [r for r in status.get("runners", []) if r["model"] == model_hash]


MODEL_HEALTH = inline_serializer(
    "ModelHealth",
    {
        "model": serializers.CharField(),
        "status": serializers.CharField(),
        "deployed": serializers.BooleanField(),
        "warm": serializers.BooleanField(
            required=False, help_text="Sync only: a runner is warm on this node."
        ),
        "runners": serializers.ListField(
            child=serializers.DictField(), required=False, help_text="Sync only."
        ),
        "host_running": serializers.BooleanField(required=False, help_text="Sync only."),
    },
)


class ModelHealthView(APIView):
    """Is the model deployed, and is a runner warm on this node?"""

    permission_classes = [permissions.AllowAny]

    @extend_schema(
        summary="Is the model deployed, and warm on this node?",
        description="With the group token (or a member's session or API token). Sync models add their warm runners.",
        responses={
            200: OpenApiResponse(MODEL_HEALTH, "Deployed."),
            503: OpenApiResponse(MODEL_HEALTH, "Not deployed: `status` says where it is."),
        },
        tags=["run"],
    )
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_called_model(request, model_hash, allow_member=True)
        body = {
            "model": model.hash,
            "status": model.status,
            "deployed": model.status == MLModel.Status.DEPLOYED,
        }
        if model.is_sync:
            runners = [r for r in runners_of(model.hash) if r["alive"]]
            body.update(
                warm=bool(runners),
                runners=[
                    {
                        k: r[k]
                        for k in ("pid", "replica", "requests", "utilization", "memory_bytes", "last_used")
                    }
                    for r in runners
                ],
                host_running=paths.host_socket().exists(),
            )
        return Response(body, status=200 if body["deployed"] else 503)
