"""The model's run URL: `POST /api/v1/run/<hash>`, authorised by the group token.

Sync models answer the prediction (models_app.serving); Async models start an
execution (executions.api). One URL per model, whatever its operation, as in the
original product.
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from models_app.calls import get_called_model, require_deployed
from portal.authentication import GroupTokenChallenge


class RunView(APIView):
    # Only the group token authorises a call (checked per model): no session, so no CSRF.
    authentication_classes = [GroupTokenChallenge]
    permission_classes = [permissions.AllowAny]
    parser_classes: list = []  # the body is read raw (Sync) or by the executions app (Async)

    @extend_schema(exclude=True)  # described per model, in the model's own OpenAPI document
    def post(self, request: Request, model_hash: str) -> Response:
        model = get_called_model(request, model_hash)
        require_deployed(model)
        if model.is_sync:
            from models_app.serving.views import predict

            return predict(request, model)
        from executions import api as executions_api

        return executions_api.submit(request, model)
