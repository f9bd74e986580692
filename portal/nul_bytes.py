"""A NUL character (%00) in a request's path, query string or session cookie, dealt
with before any view.

No name, hash, key or filter of the platform holds a NUL, and PostgreSQL's text cannot
hold one: a lookup with it raised DataError, a 500 (`GET /api/v1/models/<hash>%00`,
`?name=%00`, `/shared/docs/a%00b/`), while SQLite quietly answered as if the filter were
not there. So, for every request, once:

- a NUL in the path is a 404, as for any path that names nothing (the API's JSON
  `not_found`, the pages' "Not found" page);
- a NUL in a query parameter's value, or its name, is a 400 naming the parameter (the
  API's JSON shape under /api/, plain text elsewhere);
- a session cookie with one (`sessionid="…\\000"`: Django's cookie parser decodes the
  octal escape), which no server set, is no session, as an unknown key is: looking it up
  failed the same way on every page.

The run URL's fast path (models_app.serving.front) leaves such a call to Django, so the
same answers hold there.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.urls import Resolver404

from groups.api.errors import error_response
from groups.api.middleware import API_PREFIX

NUL = "\x00"
IN_A_VALUE = "Has a NUL character (%00) in its value, which no query parameter takes; remove it."
IN_A_NAME = "Has a NUL character (%00) in its name, which no query parameter takes; remove it."


def nul_problems(request: HttpRequest) -> dict[str, list[str]]:
    """Each query parameter of `request` with a NUL in its name or value, and why."""
    return {
        name: [IN_A_NAME if NUL in name else IN_A_VALUE]
        for name, values in request.GET.lists()
        if NUL in name or any(NUL in value for value in values)
    }


class NulByteMiddleware:
    """404 for a NUL in the path, 400 for one in the query string, no session for one in
    the session cookie (see module doc)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        session = getattr(request, "session", None)
        if session is not None and NUL in (session.session_key or ""):
            # Not yet read (the user is looked up lazily): an empty session in its place,
            # whose cookie SessionMiddleware then deletes.
            request.session = type(session)()
        if NUL in request.path_info:
            # Django's handler404 words it: for the API "No API endpoint at …", for pages
            # the portal's page, as for any path no route matches.
            raise Resolver404({"path": request.path_info})
        query = request.META.get("QUERY_STRING", "")
        if "%00" in query or NUL in query:  # the only ways to send one; else no need to parse it
            errors = nul_problems(request)
            if errors:
                return self._refused(request, errors)
        return self.get_response(request)

    @staticmethod
    def _refused(request: HttpRequest, errors: dict[str, list[str]]) -> HttpResponse:
        name, messages = next(iter(errors.items()))
        shown = name.replace(NUL, "%00")
        if request.path_info.startswith(API_PREFIX):
            return error_response(400, f"{shown}: {messages[0]}", "invalid", errors=errors)
        return HttpResponse(
            f"Bad request: the query parameter '{shown}': {messages[0]}",
            status=400,
            content_type="text/plain; charset=utf-8",
        )
