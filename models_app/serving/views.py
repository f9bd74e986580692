"""The predict endpoint (Sync) and the per-model health endpoint."""

from __future__ import annotations

import json
import time

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from models_app.calls import get_called_model
from models_app.models import MLModel
from models_app.run_api import error
from models_app.serving import paths
from models_app.serving.client import ServingError, host_call, pool
from monitoring.recorder import Call, recorder


def predict(request: HttpRequest, model: MLModel) -> JsonResponse:
    """Answer one Sync call. The runner gets the body exactly as sent (a JSON string)."""
    started = time.perf_counter()
    try:
        body = request.body.decode("utf-8")
        payload = json.loads(body)
    except (UnicodeDecodeError, ValueError) as exc:
        return error(400, f"The request body is not valid JSON: {exc}.", "invalid")
    if isinstance(model.schema, dict) and not isinstance(payload, dict):
        return error(
            400,
            f"This model takes a JSON object (like its schema example), not a JSON {type(payload).__name__}.",
            "invalid",
        )
    try:
        answer = pool.predict(model, body)
    except ServingError as exc:
        response = error(
            exc.status, exc.message, {502: "runner_crashed", 503: "unavailable", 504: "timeout"}[exc.status]
        )
        _record(model, body, response, started)
        return response
    frame = answer.frame
    if frame.get("ok"):
        response = JsonResponse(frame["result"], safe=False)
    elif frame.get("phase") == "protocol":
        response = error(500, f"Internal error talking to the model's runner: {frame.get('error')}", "error")
    else:
        # The platform worked; the model's own code failed on this input.
        response = error(
            422,
            f"The model raised an error: {frame.get('error')}",
            "model_error",
            model_error={
                "error": frame.get("error"),
                "phase": frame.get("phase"),
                "traceback": frame.get("traceback"),
            },
        )
    _record(model, body, response, started)
    return response


def _record(model: MLModel, body: str, response: JsonResponse, started: float) -> None:
    if settings.RECORD_PREDICTIONS:
        recorder.record(
            Call(
                model_id=model.pk,
                at=timezone.now(),
                status_code=response.status_code,
                latency_ms=(time.perf_counter() - started) * 1000,
                input=body,
                output=response.content.decode(),
            )
        )


def runners_of(model_hash: str) -> list[dict]:
    try:
        status = host_call({"op": "status"}, timeout=5)
    except ServingError:
        return []
    return [r for r in status.get("runners", []) if r["model"] == model_hash]


class ModelHealthView(APIView):
    """Is the model deployed, and is a runner warm on this node?"""

    permission_classes = [permissions.AllowAny]

    @extend_schema(exclude=True)
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
                    {k: r[k] for k in ("pid", "replica", "requests", "memory_bytes", "last_used")}
                    for r in runners
                ],
                host_running=paths.host_socket().exists(),
            )
        return Response(body, status=200 if body["deployed"] else 503)
