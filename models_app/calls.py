"""Who may call a model: checks shared by the run endpoints (sync predict, async executions).

A call is authorised by the model group's token (`Authorization: Bearer <group token>`)
or, where `allow_member` is set, by a logged-in member of the group (session or API
token), so the portal's pages can show executions without asking for the token.
"""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.request import Request

from models_app.models import MLModel
from portal.access import groups_for
from portal.authentication import check_group_token


class ModelNotDeployed(exceptions.APIException):
    status_code = 409
    default_code = "not_deployed"


def get_called_model(request: Request, model_hash: str, *, allow_member: bool = False) -> MLModel:
    """The model named in the URL, once the caller is authorised for it.

    404 for an unknown (or deleted) model; 401/403 from the group-token check.
    """
    model = (
        MLModel.objects.select_related("group")
        .filter(hash=model_hash)
        .exclude(status=MLModel.Status.DELETED)
        .first()
    )
    if model is None:
        raise exceptions.NotFound(f"No model '{model_hash}'.")
    header = request.META.get("HTTP_AUTHORIZATION", "")
    is_group_token = header[:7].lower() == "bearer " and header[7:].strip().startswith("nmg_")
    if allow_member and not is_group_token and request.user.is_authenticated:
        if not groups_for(request.user).filter(pk=model.group_id).exists():
            raise exceptions.NotFound(f"No model '{model_hash}'.")
        return model
    check_group_token(request, model.group)
    return model


def require_deployed(model: MLModel) -> None:
    if model.status != MLModel.Status.DEPLOYED:
        hint = {
            MLModel.Status.READY: "its build is queued",
            MLModel.Status.BUILDING: "it is being built; try again when it is Deployed",
            MLModel.Status.FAILED: "its build failed; see its build log and restart it",
            MLModel.Status.DISABLED: "it was disabled; restart it to serve again",
        }.get(model.status, "")
        raise ModelNotDeployed(
            f"Model '{model.hash}' is {model.status}, not Deployed" + (f": {hint}." if hint else ".")
        )
