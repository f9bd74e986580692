"""Language and time zone of each request.

Pages speak the browser's language (Accept-Language) or the one picked with the switch
in the top bar, and show times in the user's zone: the one chosen on the account page,
else the browser's (a cookie set by static/js/common.js), else settings.TIME_ZONE. The
API is for programs: it always answers in English, with times in UTC, whatever the
request says, so its messages and the SDK's exceptions stay the same everywhere (its
errors also carry a stable `code`, docs/api.md).
"""

from __future__ import annotations

import zoneinfo
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.middleware.locale import LocaleMiddleware
from django.utils import timezone, translation

from groups.models import Profile
from groups.timezones import is_zone

API_PREFIXES = ("/api/", "/healthz")
API_LANGUAGE = "en"


def is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIXES)


class PortalLocaleMiddleware(LocaleMiddleware):
    """Django's LocaleMiddleware for the pages; English, always, for the API."""

    def process_request(self, request: HttpRequest) -> None:
        if is_api(request):
            translation.activate(API_LANGUAGE)
            request.LANGUAGE_CODE = API_LANGUAGE
            return
        super().process_request(request)

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        # An API answer does not vary by language (and has no Content-Language: the Sync
        # fast path, models_app/serving/front.py, answers the same bytes without Django).
        if is_api(request):
            return response
        return super().process_response(request, response)


def page_time_zone(request: HttpRequest) -> tuple[str, str]:
    """(zone name, where it comes from: "profile", "browser" or "default") for a page."""
    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        chosen = Profile.objects.filter(user=user).values_list("time_zone", flat=True).first()
        if is_zone(chosen):
            return chosen, "profile"
    browser = request.COOKIES.get(settings.BROWSER_TIME_ZONE_COOKIE)
    if is_zone(browser):
        return browser, "browser"
    return settings.TIME_ZONE, "default"


class UserTimezoneMiddleware:
    """Activates the page's time zone (after AuthenticationMiddleware: it reads the user)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if is_api(request):
            timezone.deactivate()  # UTC (TIME_ZONE): DRF writes times in the current zone
            return self.get_response(request)
        name, source = page_time_zone(request)
        request.time_zone, request.time_zone_source = name, source
        timezone.activate(zoneinfo.ZoneInfo(name))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
