"""Template context shared by every page."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def platform_warnings(request: HttpRequest) -> dict:
    """Warnings that admins must see on every page (e.g. user code running unsandboxed)."""
    user = getattr(request, "user", None)
    unsafe = settings.UNSAFE_NO_SANDBOX and user is not None and user.is_staff
    return {"unsafe_no_sandbox": unsafe}
