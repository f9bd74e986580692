"""What a logged-in user is shown is theirs alone: no cache keeps it by default."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers
from django.utils.functional import SimpleLazyObject


class PrivateByDefaultMiddleware:
    """Marks a logged-in session's answers never to be cached (as `never_cache` does),
    unless the view chose its own Cache-Control: a shared proxy, or the browser's cache
    on a shared computer, would otherwise keep a group's models, logs and people."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not response.has_header("Cache-Control") and _logged_in(request):
            add_never_cache_headers(response)
        return response


def _logged_in(request: HttpRequest) -> bool:
    """Whether a user was authenticated, without reading the session when nothing did:
    reading it adds `Vary: Cookie` to answers that are nobody's session's (a run call's)."""
    user = request.user
    if type(user) is SimpleLazyObject and not request.session.accessed:  # type(): no evaluation
        return False
    return user.is_authenticated
