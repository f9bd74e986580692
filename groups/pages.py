"""What every app's pages share about forms: where a GET of a form's target goes, and a
secret that a POST creates, shown once.

A form's target URL ends up in the address bar when its answer is a page (a form with
errors, a confirmation), so the language switch reloads it, and so do Back and a typed
address: with GET. `post_only_page` sends such a GET to the page the form is on instead of
a blank 405.

A new credential (a group token, an API token, a share link) is kept in the session,
encrypted (the session store is the database), by the POST that makes it, which then
redirects; the next GET of the page takes it out and shows it once, uncached. So a
reload or Back never posts again to make a second live credential.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.shortcuts import redirect, render

from groups.crypto import decrypt_json, encrypt_json


def post_only_page(page_url: Callable[..., str]):
    """``require_POST`` for a form's target: GET and HEAD are redirected to
    ``page_url(**url_arguments)``, the page that shows the form; other methods get 405."""

    def decorator(view):
        @functools.wraps(view)
        def wrapped(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method in ("GET", "HEAD"):
                return redirect(page_url(*args, **kwargs))
            if request.method != "POST":
                return HttpResponseNotAllowed(["POST"])
            return view(request, *args, **kwargs)

        return wrapped

    return decorator


def keep_secret(request: HttpRequest, key: str, owner: str, **secret: object) -> None:
    """Keep ``secret`` for the next GET of ``owner``'s page (a group's name, a model's hash)."""
    request.session[key] = encrypt_json({"owner": owner, **secret}).decode()


def take_secret(request: HttpRequest, key: str, owner: str) -> dict | None:
    """The secret waiting for ``owner``'s page, taken out of the session; None if none waits."""
    stored = request.session.get(key)
    if not stored:
        return None
    waiting = decrypt_json(stored.encode())
    if waiting.pop("owner") != owner:
        return None
    del request.session[key]
    return waiting


def render_secret(request: HttpRequest, template: str, context: dict) -> HttpResponse:
    """A page showing a secret: never stored by the browser or a proxy. The language switch
    asks first (``secret_on_page``): a reload no longer shows the secret."""
    response = render(request, template, {**context, "secret_on_page": True})
    response["Cache-Control"] = "no-store"
    return response
