"""A username read through a relation that may be empty (the account was deleted, or
the platform acted itself) is null in the answer, and the OpenAPI document says so.

`CharField(source="created_by.username", default=None)` answers null for a missing user,
but drf-spectacular documents the field nullable only with `allow_null=True`: the
document said "always a string" while events, models, versions, experiments, runs and
monitors answered null. The answers themselves are checked against the document in each
app's tests/<app>/test_api_schema_answers.py.
"""

from __future__ import annotations

from django.core.exceptions import FieldDoesNotExist
from django.urls import get_resolver
from rest_framework import serializers

from tests.helpers.openapi import platform_document

# The apps whose serializers answer the API.
APPS = ("executions", "groups", "models_app", "monitors", "portal", "training")


def _subclasses(cls: type) -> set[type]:
    found = set()
    for subclass in cls.__subclasses__():
        found |= {subclass, *_subclasses(subclass)}
    return found


def _through_a_nullable_relation(model, source: str) -> bool:
    """Whether `source` (e.g. "created_by.username") crosses a relation that may be empty."""
    for part in source.split("."):
        try:
            field = model._meta.get_field(part)
        except FieldDoesNotExist:
            return False  # a property or a method: not a column that may be NULL
        if not (field.is_relation and field.concrete):
            return False  # a value, or a reverse relation (a list, not a NULL)
        if field.null:
            return True
        model = field.related_model
    return False


def test_every_field_read_through_a_nullable_relation_allows_null():
    assert get_resolver().url_patterns  # imports every view, and so every serializer of the API
    checked = []
    for cls in _subclasses(serializers.ModelSerializer):
        if cls.__module__.split(".")[0] not in APPS or not hasattr(getattr(cls, "Meta", None), "model"):
            continue
        for name, field in cls().fields.items():
            if (
                field.source
                and field.source != "*"
                and _through_a_nullable_relation(cls.Meta.model, field.source)
            ):
                assert field.allow_null, f"{cls.__module__}.{cls.__name__}.{name} (source={field.source!r})"
                checked.append(f"{cls.__name__}.{name}")
    assert {
        "ModelEventSerializer.actor",
        "ModelDetailSerializer.created_by",
        "ModelVersionSerializer.created_by",
        "ExperimentSerializer.created_by",
        "RunDetailSerializer.requested_by",
        "MonitorSerializer.registered_by",
        "ExecutionSerializer.requested_by",
        "ShareLinkSerializer.revoked_by",
    } <= set(checked), checked


def test_the_document_marks_those_usernames_nullable(db):
    schemas = platform_document()["components"]["schemas"]
    for component, field in [
        ("ModelEvent", "actor"),
        ("ModelDetail", "created_by"),
        ("ModelVersion", "created_by"),
        ("Experiment", "created_by"),
        ("ExperimentDetail", "created_by"),
        ("RunDetail", "requested_by"),
        ("Monitor", "registered_by"),
        ("Execution", "requested_by"),
    ]:
        documented = schemas[component]["properties"][field]
        assert documented.get("nullable") is True, (component, field, documented)
        assert "null" in documented["description"], (component, field)
