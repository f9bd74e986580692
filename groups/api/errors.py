"""One error shape for the whole API.

Every error answer is a JSON object with `detail` (one readable sentence) and
`code`; validation errors add `errors`, mapping each field to its messages. The SDK
reads `detail` for its exception messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, HttpRequest, HttpResponse, QueryDict
from django.urls import Resolver404
from rest_framework import exceptions, status
from rest_framework.views import exception_handler as drf_exception_handler

from groups.api.shape import BEARER_CHALLENGE, JSON, error_body, error_json
from groups.authentication import USER_ENDPOINT_NEEDS_A_LOGIN, presents_group_token

__all__ = ["BEARER_CHALLENGE", "JSON", "error_body", "error_json", "error_response", "exception_handler"]


def error_response(status_code: int, detail: str, code: str, **extra: Any) -> HttpResponse:
    """An error answer outside DRF (the run URL is a plain Django view)."""
    response = HttpResponse(error_json(detail, code, **extra), status=status_code, content_type=JSON)
    if status_code == status.HTTP_401_UNAUTHORIZED:
        response["WWW-Authenticate"] = BEARER_CHALLENGE
    return response


def _first_message(errors: Any) -> str:
    if isinstance(errors, dict):
        for field, value in errors.items():
            message = _first_message(value)
            return message if field == "non_field_errors" else f"{field}: {message}"
    if isinstance(errors, list) and errors:
        return _first_message(errors[0])
    return str(errors)


def exception_handler(exc: Exception, context: dict) -> Any:
    if isinstance(exc, DjangoValidationError):
        # A model's or a service's own check (e.g. a name another request took a moment
        # ago): bad input like any other, not a 500.
        exc = exceptions.ValidationError(exc.message_dict if hasattr(exc, "error_dict") else exc.messages)
    if type(exc) is exceptions.NotAuthenticated and presents_group_token(context["request"]):
        # DRF's "credentials were not provided" would hide that some were, of the wrong kind.
        exc.detail = exceptions.ErrorDetail(USER_ENDPOINT_NEEDS_A_LOGIN, code=exc.default_code)
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.ValidationError):
        errors = response.data if isinstance(response.data, dict) else {"non_field_errors": response.data}
        response.data = error_body(_first_message(errors), "invalid", errors=errors)
        return response
    detail = response.data.get("detail") if isinstance(response.data, dict) else response.data
    code = getattr(detail, "code", None) or _STATUS_CODES.get(response.status_code, "error")
    extra = (
        {k: v for k, v in response.data.items() if k != "detail"} if isinstance(response.data, dict) else {}
    )
    code = extra.pop("code", code)
    response.data = error_body(_first_message(detail), code, **extra)
    return response


_STATUS_CODES = {
    400: "invalid",
    401: "not_authenticated",
    403: "permission_denied",
    404: "not_found",
    405: "method_not_allowed",
}


class Conflict(exceptions.APIException):
    """The object's state does not allow this (409)."""

    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "too_large"


class InsufficientStorage(exceptions.APIException):
    status_code = status.HTTP_507_INSUFFICIENT_STORAGE
    default_code = "insufficient_storage"


def form_errors(form) -> exceptions.ValidationError:
    """A form's errors as the API's 400, field by field."""
    return exceptions.ValidationError(
        {
            # A form's own (non-field) errors under DRF's name for them.
            ("non_field_errors" if field == NON_FIELD_ERRORS else field): list(messages)
            for field, messages in form.errors.items()
        }
    )


def not_found(request: HttpRequest, exception: Http404) -> HttpResponse:
    """The 404 of a path under /api/ that reached Django's handler404: a path that no
    route matches (an unknown endpoint, or an id of the wrong form such as a token id
    that is not a UUID); DRF's views answer their own 404s."""
    if isinstance(exception, Resolver404):
        detail = (
            f"No API endpoint at {request.method} {request.path}. "
            "The endpoints are listed at /api/docs/ (OpenAPI document: /api/schema/)."
        )
    else:
        message = exception.args[0] if exception.args else None
        detail = message if isinstance(message, str) and message else "Not found."
    return error_response(status.HTTP_404_NOT_FOUND, detail, "not_found")


NOT_AN_OBJECT = "Send a JSON object, not {kind}."
# What a JSON value is called in messages (Python's type names mean nothing to a caller).
JSON_KINDS = {
    dict: "object",
    list: "list",
    str: "string",
    int: "number",
    float: "number",
    bool: "boolean",
    type(None): "null",
}


def json_object(request) -> dict:
    """The request's body when it is an object (a JSON object, or form fields); else a
    400 naming what was sent instead, for views that read fields off the body."""
    data = request.data
    if not isinstance(data, dict):  # DRF's QueryDict of form fields is a dict too
        kind = JSON_KINDS.get(type(data), type(data).__name__)
        raise exceptions.ValidationError([NOT_AN_OBJECT.format(kind=kind)])
    return data


NOT_A_FIELD = "Not a field of this request; it takes {known}."


def refuse_unknown_fields(
    data: Any, known: Iterable[str], message: str = NOT_A_FIELD, hints: Mapping[str, str] | None = None
) -> None:
    """A 400 naming each member of the body `data` that is not one of `known`: a misspelt
    or unsupported field would otherwise be dropped without a word and the answer a
    success. `message` may use {known} (the names, comma-separated); `hints` adds a
    sentence for a name callers are known to try (a retired field's successor, say)."""
    if not isinstance(data, Mapping):
        return  # not an object: the caller's own check says so
    known = list(known)
    unknown = sorted(set(data) - set(known))
    if unknown:
        text = message.format(known=", ".join(known) or "no fields")
        hints = hints or {}
        raise exceptions.ValidationError(
            {name: [f"{text} {hints[name]}" if name in hints else text] for name in unknown}
        )


def refuse_unknown_parts(request, form, hints: Mapping[str, str] | None = None) -> None:
    """refuse_unknown_fields for an upload (multipart or form-encoded) handed to a Django
    form: a field or file the form does not take would be dropped without a word.
    The form's `taken_elsewhere` names (models_app.forms) have their own message; `hints`
    replaces the message for names callers are known to send there. The portal's pages
    are not checked: the browser sends what the page has."""
    elsewhere = set(getattr(form, "taken_elsewhere", ((), ""))[0])
    fields = set(form.fields)
    unknown = sorted((set(request.POST) | set(request.FILES)) - fields - elsewhere)
    if unknown:
        text = f"Not a field of this upload; the fields are {', '.join(sorted(fields))}."
        hints = hints or {}
        raise exceptions.ValidationError({name: [hints.get(name, text)] for name in unknown})


def form_fields(request, form_class: type[forms.BaseForm], aliases: Iterable[str] = ()) -> dict:
    """json_object, for views that hand the body to a Django form of `form_class`: each
    member must be one value, and a text field's a JSON string. A form field reads a JSON
    list or object as its Python text ("['a']"), and the number 123 as the text "123",
    which it would then keep as a name, an address or a secret (as StrictInput refuses
    for the serializers). `aliases`: other names the view takes for text fields."""
    data = json_object(request)
    wrong = {
        name: [f"{name} takes one value, not a JSON {JSON_KINDS[type(value)]}."]
        for name, value in data.items()
        if isinstance(value, list | dict)
    }
    if not isinstance(data, QueryDict):  # a form's fields are all text
        text_fields = {
            name
            for name, field in form_class.base_fields.items()
            if isinstance(field, forms.CharField | forms.ChoiceField)  # a group's name too
        } | set(aliases)
        wrong.update(
            {
                name: [f"Send text, not a JSON {JSON_KINDS[type(value)]}."]
                for name, value in data.items()
                if name in text_fields and isinstance(value, int | float)  # bool is an int
            }
        )
    if wrong:
        raise exceptions.ValidationError(wrong)
    return data


def checked_files(request):
    """The request's files, once the upload handler's refusals are answered: 507 when the
    disk is full, 413 for the whole body, 400 naming each file over its limit."""
    files = request.FILES  # reading it parses (and size-checks) the body
    if getattr(request._request, "upload_out_of_space", None):
        raise InsufficientStorage(request._request.upload_out_of_space)
    limits = getattr(request._request, "upload_limit_errors", {})
    if "__all__" in limits:
        raise PayloadTooLarge(limits["__all__"])
    if limits:
        raise exceptions.ValidationError({field: [message] for field, message in limits.items()})
    return files
