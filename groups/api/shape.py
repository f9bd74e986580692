"""The API's error shape, `{"detail", "code", ...}`, with no dependency on DRF.

Kept apart from `errors.py` (DRF's exception handler) so that modules DRF itself loads
through its settings, such as the authentication classes, can build error answers too.
"""

from __future__ import annotations

import json
from typing import Any

JSON = "application/json"
# What a 401 answer challenges the caller with (the group token on model calls).
BEARER_CHALLENGE = 'Bearer realm="neomaril"'


def error_body(detail: str, code: str, **extra: Any) -> dict[str, Any]:
    """The API's error shape: `{"detail", "code", ...}`. Every error answer is built here."""
    return {"detail": detail, "code": code, **extra}


def error_json(detail: str, code: str, **extra: Any) -> bytes:
    """error_body as JSON bytes (the Sync fast path answers without Django's response)."""
    return json.dumps(error_body(detail, code, **extra)).encode()
