"""The API's content negotiation: DRF's, with an unknown `?format=` named as such.

DRF answers a format no renderer offers with a bare 404, as if the resource were
missing; under a query parameter that only misleads. The client is told which formats
the endpoint has instead (406).
"""

from __future__ import annotations

from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation


class ContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            asked = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
            offered = ", ".join(renderer.format for renderer in renderers)
            raise NotAcceptable(
                _("Unknown format '%(asked)s': this endpoint answers %(offered)s.")
                % {"asked": asked, "offered": offered}
            ) from None
