"""The API's content negotiation: DRF's, with an unknown `?format=` or `Accept` named as such.

DRF answers a format no renderer offers with a bare 404, as if the resource were
missing; under a query parameter that only misleads. The client is told which formats
the endpoint has instead (406).
"""

from __future__ import annotations

from django.http import Http404
from django.utils.translation import gettext as _
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation


def _offered(renderers) -> str:
    # dict: once each, in order (the schema view has two renderers per format).
    return ", ".join(dict.fromkeys(renderer.format for renderer in renderers))


def _media_types(renderers) -> str:
    return ", ".join(dict.fromkeys(renderer.media_type for renderer in renderers))


class ContentNegotiation(DefaultContentNegotiation):
    def select_renderer(self, request, renderers, format_suffix=None):
        try:
            return super().select_renderer(request, renderers, format_suffix)
        except Http404:
            asked = format_suffix or request.query_params.get(self.settings.URL_FORMAT_OVERRIDE)
            raise NotAcceptable(
                _("Unknown format '%(asked)s': this endpoint answers %(offered)s.")
                % {"asked": asked, "offered": _offered(renderers)}
            ) from None
        except NotAcceptable:
            # DRF's "Could not satisfy the request Accept header." names nothing to send instead.
            raise NotAcceptable(
                _(
                    "The Accept header asks for %(asked)s, which this endpoint does not answer: "
                    "it answers %(offered)s."
                )
                % {"asked": request.headers.get("Accept", "")[:100], "offered": _media_types(renderers)}
            ) from None
