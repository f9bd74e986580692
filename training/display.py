"""How the training pages write numbers, durations and values (shared by pages and results)."""

from __future__ import annotations

import json
import math
from typing import Any

from django.utils import formats


def localized(text: str) -> str:
    """A number Python wrote (`,` groups, `.` decimals) in the active language's separators:
    12,345.6 reads 12.345,6 in pt-BR."""
    decimal, thousands = formats.get_format("DECIMAL_SEPARATOR"), formats.get_format("THOUSAND_SEPARATOR")
    if (decimal, thousands) == (".", ","):
        return text
    return "".join(decimal if c == "." else thousands if c == "," else c for c in text)


def number_text(value: float | int | None) -> str:
    """A metric as people read it: 0.9731, 12,345.6, 1.2e-07 (in the page's language);
    None is a dash."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return localized(f"{value:,}")
    if not math.isfinite(value):
        return str(value)
    if value != 0 and (abs(value) >= 1e6 or abs(value) < 1e-4):
        return localized(f"{value:.3e}")
    if abs(value) >= 1000:
        return localized(f"{value:,.1f}")
    return localized(f"{value:.4f}".rstrip("0").rstrip(".") or "0")


def duration_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return localized(f"{seconds:.1f} s")
    minutes, rest = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


def json_text(value: Any) -> str:
    """A hyper-parameter as a short readable value: strings bare, the rest as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, default=str)
