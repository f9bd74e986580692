"""The model's run URL: `POST /api/v1/run/<hash>`, authorised by the group token.

Sync models answer the prediction (models_app.serving); Async models start an
execution (executions.api). One URL per model, whatever its operation, as in the
original product.

This is the hot path of the product, so it is a plain Django view with one
hand-written query (see calls.lookup_call) rather than a DRF view; the answers keep
the API's error shape (`{"detail", "code"}`).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from models_app.calls import lookup_call, not_deployed_message
from models_app.models import MLModel
from models_app.serving.answers import JSON, error_content
from portal.authentication import GroupTokenChallenge, bearer_token, group_token_problem


def error(status: int, detail: str, code: str, **extra) -> HttpResponse:
    response = HttpResponse(error_content(detail, code, **extra), status=status, content_type=JSON)
    if status == 401:
        response["WWW-Authenticate"] = 'Bearer realm="neomaril"'
    return response


@csrf_exempt  # no cookies are used: the group token in the header authorises the call
def run_model(request: HttpRequest, model_hash: str):
    if request.method != "POST":
        response = error(
            405,
            f'Method "{request.method}" not allowed: POST the input to run the model.',
            "method_not_allowed",
        )
        response["Allow"] = "POST"
        return response
    try:
        token = bearer_token(request)
    except exceptions.APIException as exc:
        return error(exc.status_code, str(exc.detail), exc.default_code)
    target = lookup_call(model_hash, token)
    if target is None or target.model.status == MLModel.Status.DELETED:
        return error(404, f"No model '{model_hash}'.", "not_found")
    problem = group_token_problem(target.token, target.model.group_id, target.group_name)
    if problem is not None:
        return error(problem.status_code, str(problem.detail), problem.default_code)
    if target.model.status != MLModel.Status.DEPLOYED:
        return error(409, not_deployed_message(target.model), "not_deployed")
    if target.model.is_sync:
        from models_app.serving.views import predict

        return predict(request, target.model)
    return AsyncRunView.as_view()(request, model_id=target.model.pk)


class AsyncRunView(APIView):
    """Starts an execution of an Async model (the executions app does the work).

    Not routed: run_model has already checked the group token and the model's status,
    so this only gives the upload DRF's request handling and answers.
    """

    authentication_classes = [GroupTokenChallenge]
    permission_classes = [permissions.AllowAny]
    parser_classes: list = []  # the executions app reads the upload itself

    def post(self, request: Request, model_id: int) -> Response:
        model = MLModel.objects.select_related("group").get(pk=model_id)
        from executions import api as executions_api

        return executions_api.submit(request, model)
