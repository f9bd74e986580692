"""Time zone names and labels for the pages.

A user's zone is an IANA name (``America/Sao_Paulo``) checked against the zones this
machine's zoneinfo knows; pages name the zone next to every time they show. The API
keeps answering ISO 8601 times in UTC: none of this applies to it.
"""

from __future__ import annotations

import zoneinfo
from datetime import datetime
from functools import cache

from django.core.exceptions import ValidationError
from django.utils.translation import gettext_lazy as _


@cache
def zone_names() -> frozenset[str]:
    """Every IANA zone name available here (read once: it scans the tz database)."""
    return frozenset(zoneinfo.available_timezones())


def is_zone(name: str | None) -> bool:
    return bool(name) and name in zone_names()


def validate_zone(name: str) -> None:
    if not is_zone(name):
        raise ValidationError(
            _("“%(name)s” is not a time zone. Choose one from the list, such as America/Sao_Paulo or UTC."),
            code="invalid_time_zone",
            params={"name": name},
        )


def zone_label(moment: datetime) -> str:
    """The zone of an aware datetime as people read it: "UTC", "CET", or "UTC-03" where the
    tz database has no abbreviation (it writes "-03" for America/Sao_Paulo)."""
    name = moment.tzname() or ""
    if name[:1] not in ("+", "-"):
        return name
    digits = name[1:]
    hours, minutes = digits[:2], digits[2:]
    return f"UTC{name[0]}{hours}" + (f":{minutes}" if minutes.strip("0") else "")
