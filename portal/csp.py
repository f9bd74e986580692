"""Content-Security-Policy on everything Django answers but JSON.

The portal's pages load scripts only from its own static files, so an injected
``<script>`` or ``onclick=`` in a page (a name that slipped past escaping) does not run.
The one inline script, Swagger UI's start-up code, carries the request's nonce
(templates/portal/swagger_ui.html). Styles may be inline: pages size bars with
``style="width: …"``, and Swagger UI writes a ``<style>`` block.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

POLICY = (
    "default-src 'self'; "
    "script-src 'self' 'nonce-{nonce}'; "
    "style-src 'self' 'unsafe-inline'; "
    # Swagger UI draws its icons from data: URLs and previews downloaded images from blob: ones.
    "img-src 'self' data: blob:; "
    "font-src 'self' data:; "
    "connect-src 'self'; "
    "object-src 'none'; "
    "base-uri 'none'; "
    "form-action 'self'; "
    "frame-ancestors 'none'"
)


class ContentSecurityPolicyMiddleware:
    """Gives each request a fresh nonce (``request.csp_nonce``) and each answer the policy,
    unless a view set its own, or the answer is JSON: a browser does not run JSON as a
    document (nosniff), and the run URL's JSON must read the same whether the Sync fast
    path (models_app/serving/front.py) or Django answered it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.csp_nonce = nonce = secrets.token_urlsafe(16)
        response = self.get_response(request)
        if not response.get("Content-Type", "").startswith("application/json"):
            response.headers.setdefault("Content-Security-Policy", POLICY.format(nonce=nonce))
        return response
