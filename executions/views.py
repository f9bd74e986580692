"""Browser page of one execution: its state, error, log and downloads."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from executions.models import Execution
from models_app.access import get_model_for_user
from models_app.models import MLModel


@login_required
@require_http_methods(["GET"])
def execution_page(request: HttpRequest, model_hash: str, number: int) -> HttpResponse:
    model = get_model_for_user(request.user, model_hash)
    # As in the API: the executions of a deleted model are gone.
    execution = None
    if model.status != MLModel.Status.DELETED:
        execution = (
            Execution.objects.select_related("requested_by").filter(model=model, number=number).first()
        )
    if execution is None:
        raise Http404(f"Model '{model_hash}' has no execution {number}.")
    execution.model = model
    return render(request, "executions/execution_detail.html", {"model": model, "execution": execution})
