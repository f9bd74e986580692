"""Period windows: Day, Week (ISO, from Monday), Month and Year, in the project's time
zone (settings.TIME_ZONE), start inclusive and end exclusive."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, time, timedelta

from django.utils import timezone
from django.utils.translation import gettext

KINDS = ("Day", "Week", "Month", "Year")


class OutOfRange(ValueError):
    """A window that would start or end outside the dates Python can hold (years 1–9999)."""


def _first_day(kind: str, day: date) -> date:
    if kind == "Day":
        return day
    if kind == "Week":
        return day - timedelta(days=day.weekday())
    if kind == "Month":
        return day.replace(day=1)
    if kind == "Year":
        return day.replace(month=1, day=1)
    raise ValueError(f"unknown period {kind!r}: one of {', '.join(KINDS)}")


def _next_first_day(kind: str, first: date) -> date:
    if kind == "Day":
        return first + timedelta(days=1)
    if kind == "Week":
        return first + timedelta(days=7)
    if kind == "Month":
        return (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return first.replace(year=first.year + 1)


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_default_timezone())


def bounds(kind: str, moment: datetime | date) -> tuple[datetime, datetime]:
    """The window of ``kind`` that contains ``moment`` (a date means its midnight)."""
    if kind not in KINDS:
        raise ValueError(f"unknown period {kind!r}: one of {', '.join(KINDS)}")
    try:
        if isinstance(moment, datetime):
            day = (
                timezone.localtime(moment, timezone.get_default_timezone()).date()
                if timezone.is_aware(moment)
                else moment.date()
            )
        else:
            day = moment
        first = _first_day(kind, day)
        return _midnight(first), _midnight(_next_first_day(kind, first))
    except (OverflowError, ValueError):  # past year 9999 or before year 1 ("year 10000 is out of range")
        raise OutOfRange(
            gettext("The %(kind)s period of %(moment)s falls outside the dates that can be stored.")
            % {"kind": kind, "moment": moment}
        ) from None


def closed_since(kind: str, since: datetime, now: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Every window of ``kind`` from the one containing ``since`` that has ended by ``now``."""
    start, end = bounds(kind, since)
    while end <= now:
        yield start, end
        start, end = bounds(kind, end)
