"""The model's run URL: `POST /api/v1/run/<hash>`, authorised by the group token.

Sync models answer the prediction (models_app.serving); Async models start an
execution (executions.api). One URL per model, whatever its operation, as in the
original product.

This is the hot path of the product, so it is a plain Django view with one
hand-written query (see calls.lookup_call) rather than a DRF view; the answers keep
the API's error shape (groups.api.errors).
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import api as executions_api
from groups.api.errors import error_response
from groups.authentication import GroupTokenChallenge, bearer_token, group_token_problem
from models_app.calls import lookup_call, not_deployed_message
from models_app.models import MLModel
from models_app.serving.views import predict


@csrf_exempt  # no cookies are used: the group token in the header authorises the call
def run_model(request: HttpRequest, model_hash: str) -> HttpResponse:
    if request.method != "POST":
        response = error_response(
            405,
            f'Method "{request.method}" not allowed: POST the input to run the model.',
            "method_not_allowed",
        )
        response["Allow"] = "POST"
        return response
    try:
        token = bearer_token(request)
    except exceptions.APIException as exc:
        return error_response(exc.status_code, str(exc.detail), exc.default_code)
    target = lookup_call(model_hash, token)
    if target is None or target.model.status == MLModel.Status.DELETED:
        return error_response(404, f"No model '{model_hash}'.", "not_found")
    problem = group_token_problem(target.token, target.model.group_id)
    if problem is not None:
        return error_response(problem.status_code, str(problem.detail), problem.default_code)
    if target.model.status != MLModel.Status.DEPLOYED:
        return error_response(409, not_deployed_message(target.model), "not_deployed")
    if target.model.is_sync:
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
        return executions_api.submit(request, model)
