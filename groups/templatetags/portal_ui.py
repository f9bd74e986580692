"""Template filters of the portal's pages."""

from __future__ import annotations

from datetime import datetime

from django import template
from django.utils import timezone
from django.utils.timesince import timesince

register = template.Library()


@register.filter
def ago(value: datetime | None) -> str:
    """'just now', '3 minutes ago', '2 days ago' (one unit: lists stay short)."""
    if value is None:
        return "never"
    if (timezone.now() - value).total_seconds() < 60:
        return "just now"
    return f"{timesince(value, depth=1)} ago"


@register.filter
def is_required(bound_field) -> bool:
    """Required by the form, or marked aria-required (checked by a service instead)."""
    field = bound_field.field
    return bool(field.required or field.widget.attrs.get("aria-required") == "true")
