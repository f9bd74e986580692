"""Fetch models *for this user*: members of the model's group (and admins) only."""

from __future__ import annotations

from django.db.models import QuerySet
from django.http import Http404

from groups.access import groups_for
from models_app.models import MLModel


def models_for(user) -> QuerySet[MLModel]:
    """The user's groups' models (a later version is reached through its model)."""
    return MLModel.objects.filter(group__in=groups_for(user), line__isnull=True)


def get_model_for_user(user, model_hash: str) -> MLModel:
    model = (
        models_for(user).select_related("group", "created_by", "live_version").filter(hash=model_hash).first()
    )
    if model is None:
        raise Http404(f"No model '{model_hash}' among your groups' models.")
    return model


def get_version(model: MLModel, number: int) -> MLModel:
    """Version `number` of `model` (already authorised), or 404."""
    version = model.all_versions().select_related("group", "created_by").filter(version=number).first()
    if version is None:
        raise Http404(f"Model '{model.hash}' has no version {number}.")
    return version
