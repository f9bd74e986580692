"""The model's run URL: `POST /api/v1/run/<hash>`, authorised by the group token.

Sync models answer the prediction (models_app.serving); Async models start an
execution (executions.api). One URL per model, whatever its operation, as in the
original product.

This is the hot path of the product, so it is a plain Django view with one
hand-written query (see calls.lookup_call) rather than a DRF view; the answers keep
the API's error shape (groups.api.errors).

`POST /api/v1/run/<hash>/try` is the same call for members of the model's group (and
admins) logged in to the portal: their session and a CSRF token instead of the group
token, which stays what programs use. Once the caller is authorised, both URLs answer
through one function (answer_call), so the answers, limits and recording are the run
URL's own.
"""

from __future__ import annotations

import threading

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, permissions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from executions import api as executions_api
from groups.api.errors import error_response
from groups.authentication import (
    GroupTokenChallenge,
    bearer_token,
    group_token_problem,
    refuse_unusable_token,
)
from groups.metrics import RUN_CALLS_REFUSED
from models_app.access import models_for
from models_app.calls import CalledModel, lookup_call, lookup_model, not_deployed_message
from models_app.models import MLModel
from models_app.serving.views import predict


def _refused(response: HttpResponse) -> HttpResponse:
    """A run call refused before any model: counted (not logged: portal.logs)."""
    RUN_CALLS_REFUSED.labels(str(response.status_code)).inc()
    return response


def _method_not_allowed(request: HttpRequest) -> HttpResponse:
    response = error_response(
        405,
        f'Method "{request.method}" not allowed: POST the input to run the model.',
        "method_not_allowed",
    )
    response["Allow"] = "POST"
    return response


def _no_model(model_hash: str) -> HttpResponse:
    return error_response(404, f"No model '{model_hash}'.", "not_found")


def _no_version(model_hash: str, version: int) -> HttpResponse:
    return error_response(404, f"Model '{model_hash}' has no version {version}.", "not_found")


@csrf_exempt  # no cookies are used: the group token in the header authorises the call
def run_model(request: HttpRequest, model_hash: str, version: int | None = None) -> HttpResponse:
    """The model's run URL (its live version), or with `version` its per-version URL."""
    if request.method != "POST":
        return _method_not_allowed(request)
    try:
        token = bearer_token(request)
    except exceptions.APIException as exc:
        return _refused(error_response(exc.status_code, str(exc.detail), exc.default_code))
    target = lookup_call(model_hash, token, version)
    if target is None or target.model.status == MLModel.Status.DELETED:
        try:
            refuse_unusable_token(request)  # which hashes exist is for token holders to learn
        except exceptions.APIException as exc:
            return _refused(error_response(exc.status_code, str(exc.detail), exc.default_code))
        if version is not None and lookup_call(model_hash, token) is not None:
            return _refused(_no_version(model_hash, version))
        return _refused(_no_model(model_hash))
    problem = group_token_problem(target.token, target.model.group_id)
    if problem is not None:
        return _refused(error_response(problem.status_code, str(problem.detail), problem.default_code))
    return answer_call(request, target.model, AsyncRunView)


class _TrySlots:
    """How many Try it calls to Sync models this web process answers at once: half of its
    page threads (NEOMARIL_WEB_THREADS). Each holds a thread for the whole model call (up
    to its request timeout), where the run URL's calls are answered on the event loop;
    twelve calls of a 10 s model had taken every thread, and the node's API and pages."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.taken = 0

    @property
    def limit(self) -> int:
        return max(1, settings.WEB_THREADS // 2)

    def take(self) -> bool:
        with self._lock:
            if self.taken >= self.limit:
                return False
            self.taken += 1
            return True

    def give_back(self) -> None:
        with self._lock:
            self.taken -= 1


TRY_SLOTS = _TrySlots()
TRY_BUSY_RETRY_SECONDS = 5


def try_model(request: HttpRequest, model_hash: str, version: int | None = None) -> HttpResponse:
    """The run URL for a member's session (CSRF-checked by Django's middleware)."""
    if request.method != "POST":  # before the login, as on the run URL: 405 whoever asks
        return _method_not_allowed(request)
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    if not models_for(request.user).filter(hash=model_hash, line__isnull=True).exists():
        return _refused(_no_model(model_hash))  # the run URL's answer for a model that isn't there
    model = lookup_model(model_hash, version)
    if model is None:
        return _refused(_no_version(model_hash, version) if version is not None else _no_model(model_hash))
    if not model.is_sync:
        return answer_call(request, model, SessionAsyncRunView)  # an upload: no model call waited for
    if not TRY_SLOTS.take():
        response = error_response(
            429,
            f"This server is answering {TRY_SLOTS.limit} Try it calls already; try again in a few seconds "
            "(calls to the run URL with the group token are not limited this way).",
            "busy",
        )
        response["Retry-After"] = str(TRY_BUSY_RETRY_SECONDS)
        return _refused(response)
    try:
        return answer_call(request, model, SessionAsyncRunView)
    finally:
        TRY_SLOTS.give_back()


def answer_call(request: HttpRequest, model: CalledModel, async_view: type[AsyncRunView]) -> HttpResponse:
    """What the run URL answers once the caller may call `model` (the version that
    answers): one path for both URLs."""
    if model.status == MLModel.Status.DELETED:
        return _refused(_no_model(model.model_hash))
    if model.status != MLModel.Status.DEPLOYED:
        return _refused(error_response(409, not_deployed_message(model), "not_deployed"))
    if model.is_sync:
        return predict(request, model)
    return async_view.as_view()(request, model_id=model.pk)


class AsyncRunView(APIView):
    """Starts an execution of an Async model (the executions app does the work).

    Not routed: run_model has already checked the group token and the model's status,
    so this only gives the upload DRF's request handling and answers.
    """

    authentication_classes = [GroupTokenChallenge]
    permission_classes = [permissions.AllowAny]
    parser_classes: list = []  # the executions app reads the upload itself

    def post(self, request: Request, model_id: int) -> Response:
        version = MLModel.objects.select_related("group", "line__group").get(pk=model_id)
        return executions_api.submit(request, version.root, version)


class SessionAsyncRunView(AsyncRunView):
    """The same submit for try_model: the member's session, so the execution records who."""

    authentication_classes = [SessionAuthentication]
