"""Template filters of the portal's pages."""

from __future__ import annotations

from datetime import date, datetime

from django import template
from django.utils import dateformat, formats, timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString
from django.utils.timesince import timesince
from django.utils.translation import gettext as _
from django.utils.translation import pgettext

from groups.timezones import zone_label

register = template.Library()


def local_text(value: datetime, *, seconds: bool = False) -> str:
    """An aware datetime in the page's zone, in the page's language, naming the zone:
    "2 Dec 2026 14:05 UTC", "02/12/2026 14:05 UTC-03"."""
    local = timezone.localtime(value)
    if seconds:
        pattern = pgettext("date and time with seconds (Django's date filter)", "j M Y H:i:s")
    else:
        pattern = pgettext("date and time (Django's date filter)", "j M Y H:i")
    return f"{dateformat.format(local, pattern)} {zone_label(local)}"


def day_text(value: date) -> str:
    """A day in the page's language: "4 Dec 2027", "04/12/2027"."""
    return dateformat.format(value, pgettext("date (Django's date filter)", "j M Y"))


@register.filter(expects_localtime=True)
def day(value: date | None) -> str:
    """The day of a date, or of a moment in the page's zone (like Django's `date`: after
    `|utc`, in UTC), in the page's language."""
    return "—" if value is None else day_text(value)


@register.filter
def grouped(value: int | None) -> str:
    """A count with the language's thousands separator: 3.438 / 3,438."""
    return "—" if value is None else formats.number_format(value, force_grouping=True)


@register.filter
def when(value: datetime | None, precision: str = "") -> SafeString | str:
    """A <time> of the moment, in the page's zone with the zone named ("seconds": with seconds);
    its title is the zone's full name."""
    if value is None:
        return "—"
    return format_html(
        '<time datetime="{}" title="{}">{}</time>',
        value.isoformat(),
        timezone.get_current_timezone_name(),
        local_text(value, seconds=precision == "seconds"),
    )


@register.filter
def ago(value: datetime | None) -> str:
    """'just now', '3 minutes ago', '2 days ago' (one unit: lists stay short)."""
    if value is None:
        return _("never")
    if (timezone.now() - value).total_seconds() < 60:
        return _("just now")
    return _("%(duration)s ago") % {"duration": timesince(value, depth=1)}


@register.filter
def since(value: datetime | None) -> SafeString | str:
    """A <time> saying how long ago (`ago`), with the moment and its zone as its title."""
    if value is None:
        return _("never")
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', value.isoformat(), local_text(value), ago(value)
    )


@register.filter
def is_required(bound_field) -> bool:
    """Required by the form, or marked aria-required (checked by a service instead)."""
    field = bound_field.field
    return bool(field.required or field.widget.attrs.get("aria-required") == "true")
