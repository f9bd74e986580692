"""Share links of a model's Swagger page: the page and document a link opens for anyone
holding it, and the model page's forms that create and revoke links.

The rules (who shares, lifetimes, the signed key, 404 vs 410) are models_app.share_links';
the REST endpoints are models_app.share_api. The shared page is the members' Swagger page
without the session: "Try it out" there asks for the group token (Authorize).
"""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import permissions
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from groups.pages import keep_secret, post_only_page, render_secret, take_secret
from models_app import share_links
from models_app.access import get_model_for_user
from models_app.share_api import shared_docs_url
from portal.model_openapi import model_document

# The key is a credential: no caching by proxies, no search engines, no Referer.
_PRIVATE = {"Cache-Control": "private, no-store", "X-Robots-Tag": "noindex", "Referrer-Policy": "no-referrer"}
# The page showing a new link to its maker: its address holds no key, and its forms (log
# out, the language switch) need their Origin, which Chromium sends as `null` under
# "no-referrer", so the CSRF check refused them. No Referer to other sites still.
_PRIVATE_WITH_FORMS = {**_PRIVATE, "Referrer-Policy": "same-origin"}
SHARE_LINK_SHOWN_ONCE = "share_link_once"


def _private(response: HttpResponse, headers: dict[str, str] = _PRIVATE) -> HttpResponse:
    for name, value in headers.items():
        response[name] = value
    return response


def _refused_page(request: HttpRequest, refused: share_links.ShareRefused) -> HttpResponse:
    return _private(
        render(request, "portal/shared_docs_refused.html", {"refused": refused}, status=refused.status)
    )


class SharedSwaggerView(SpectacularSwaggerView):
    """The model's Swagger page for whoever holds a valid link (no login)."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]
    template_name = "portal/swagger_ui.html"

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        try:
            link = share_links.resolve(kwargs["key"])
        except share_links.ShareRefused as refused:
            return _refused_page(request, refused)
        self.url = reverse("shared-docs-openapi", args=[kwargs["key"]])
        self.title = f"{link.model.name} · Neomaril"
        return _private(super().get(request, *args, **kwargs))


class SharedOpenApiView(APIView):
    """The model's OpenAPI document for whoever holds a valid link."""

    authentication_classes: list = []
    permission_classes = [permissions.AllowAny]

    @extend_schema(exclude=True)
    def get(self, request: Request, key: str) -> Response:
        try:
            link = share_links.resolve(key)
        except share_links.ShareRefused as refused:
            return Response({"detail": refused.message, "code": refused.code}, status=refused.status)
        return Response(model_document(link.model, request.build_absolute_uri("/")), headers=_PRIVATE)


@login_required
@require_http_methods(["GET", "POST"])
def create_link(request: HttpRequest, model_hash: str) -> HttpResponse:
    """POST makes a link and redirects here; the GET shows it once (groups.pages)."""
    model = get_model_for_user(request.user, model_hash)
    model_share_card = reverse("model-detail", args=[model.hash]) + "#share"
    if request.method == "GET":
        waiting = take_secret(request, SHARE_LINK_SHOWN_ONCE, model.hash)
        link = waiting and share_links.links_of(model).filter(public_id=waiting["link"]).first()
        if not link:  # shown already (a reload), or never made
            return redirect(model_share_card)
        context = {"model": model, "link": link, "url": waiting["url"]}
        return _private(
            render_secret(request, "models_app/share_link_once.html", context), _PRIVATE_WITH_FORMS
        )
    try:
        lifetime = timedelta(
            seconds=int(request.POST.get("expires_in", share_links.DEFAULT_LIFETIME.total_seconds()))
        )
    except (ValueError, OverflowError):  # not a number, or more days than a timedelta holds
        lifetime = timedelta(seconds=-1)  # refused below with the allowed range
    try:
        new = share_links.create(model, request.user, lifetime)
    except share_links.ShareRefused as refused:
        messages.error(request, refused.message)
        return redirect(model_share_card)
    url = shared_docs_url(request, new.key)
    keep_secret(request, SHARE_LINK_SHOWN_ONCE, model.hash, link=str(new.link.public_id), url=url)
    return redirect("share-link-create", model_hash=model.hash)


@login_required
@post_only_page(lambda model_hash, **_: reverse("model-detail", args=[model_hash]) + "#share")
def revoke_link(request: HttpRequest, model_hash: str, link_id: str) -> HttpResponse:
    model = get_model_for_user(request.user, model_hash)
    try:
        link = share_links.revoke(share_links.get_link(model, link_id), request.user)
    except share_links.ShareRefused as refused:
        messages.error(request, refused.message)
    else:
        messages.success(
            request,
            _("Share link %(prefix)s… was revoked: it no longer opens the docs.") % {"prefix": link.prefix},
        )
    return redirect(reverse("model-detail", args=[model.hash]) + "#share")
