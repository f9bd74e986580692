"""Absolute links to a model's run URL and docs page, as the API and the pages show them."""

from __future__ import annotations

from django.urls import reverse

from models_app.models import MLModel


def run_url(request, model: MLModel) -> str:
    return request.build_absolute_uri(reverse("run-model", args=[model.hash]))


def docs_url(request, model: MLModel) -> str:
    return request.build_absolute_uri(reverse("model-docs", args=[model.hash]))


def version_run_url(request, version: MLModel) -> str:
    """The per-version URL: one version, whichever is live (for tests before a rollout)."""
    path = reverse("run-model-version", args=[version.root.hash, version.version])
    return request.build_absolute_uri(path)
