"""A model's own OpenAPI document, its Swagger page and its generated request code.

Readable by members of the model's group (and admins) only: an outsider gets 404 and
never learns a model's name or schema.
"""

from __future__ import annotations

from django.contrib.auth.views import redirect_to_login
from django.urls import reverse
from django.utils.translation import gettext as _
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from drf_spectacular.views import SpectacularSwaggerView
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from models_app import codegen
from models_app.access import get_model_for_user
from models_app.links import run_url
from portal.model_openapi import model_document


class ModelOpenApiView(APIView):
    """The model's OpenAPI 3 document (what its Swagger page shows)."""

    @extend_schema(responses={200: {"type": "object"}}, tags=["models"])
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        return Response(model_document(model, request.build_absolute_uri("/")))


class CodeTextRenderer(BaseRenderer):
    """One language's code as raw text (`?format=text` or `Accept: text/plain`), so
    `curl ... > call.py` saves a runnable file."""

    media_type = "text/plain"
    format = "text"
    charset = "utf-8"

    def render(self, data: str, accepted_media_type=None, renderer_context=None) -> bytes:
        return data.encode("utf-8")


class ModelCodeView(APIView):
    """Request code for the model in curl, Python (requests) and JavaScript (fetch)."""

    renderer_classes = [JSONRenderer, CodeTextRenderer]

    def handle_exception(self, exc: Exception) -> Response:
        response = super().handle_exception(exc)
        # An error keeps the API's JSON shape, whatever format was asked for.
        self.request.accepted_renderer, self.request.accepted_media_type = (
            JSONRenderer(),
            JSONRenderer.media_type,
        )
        return response

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "language",
                str,
                enum=list(codegen.LANGUAGES),
                description="Default: all of them (JSON only; the text format needs one).",
            ),
            OpenApiParameter(
                "format",
                str,
                enum=["json", "text"],
                description="`text`: the one language's code as raw text/plain (also `Accept: text/plain`).",
            ),
        ],
        responses={
            (200, "application/json"): inline_serializer(
                "ModelCode", {lang: serializers.CharField(required=False) for lang in codegen.LANGUAGES}
            ),
            (200, "text/plain"): {"type": "string"},
        },
        tags=["models"],
    )
    def get(self, request: Request, model_hash: str) -> Response:
        model = get_model_for_user(request.user, model_hash)
        language = request.query_params.get("language")
        if language is not None and language not in codegen.LANGUAGES:
            raise ValidationError(
                {"language": [f"Unknown language '{language}'; use one of {', '.join(codegen.LANGUAGES)}."]}
            )
        url = run_url(request, model)
        if isinstance(request.accepted_renderer, CodeTextRenderer):
            if language is None:
                names = ", ".join(codegen.LANGUAGES)
                raise ValidationError(
                    {"language": [f"The text format is one file: add language= ({names})."]}
                )
            return Response(codegen.generate(model.serving, url, language))
        languages = [language] if language else codegen.LANGUAGES
        return Response({lang: codegen.generate(model.serving, url, lang) for lang in languages})


# Swagger UI's settings, as JavaScript (drf-spectacular inserts a string as it is): a
# "Try it out" without a group token goes to the run URL's session twin (static/js/model_docs.js).
SESSION_TRY_SETTINGS = "{requestInterceptor: (request) => requestInterceptor(neomarilSessionTry(request))}"


class ModelSwaggerView(SpectacularSwaggerView):
    """Swagger UI for one model, with the vendored (sidecar) assets: no CDN needed.

    Members are logged in, so "Try it out" works without the token (portal.run_api.try_model);
    with a token given under Authorize it calls the run URL, as programs do.
    """

    template_name = "portal/model_swagger.html"

    @extend_schema(exclude=True)
    def get(self, request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        model = get_model_for_user(request.user, kwargs["model_hash"])
        self.url = reverse("api-model-openapi", args=[model.hash])
        # Not the model page's title: both open in tabs side by side.
        self.title = f"{_('Swagger page')} · {model.name} · Neomaril"
        response = super().get(request, *args, **kwargs)
        response.data["model_page"] = reverse("model-detail", args=[model.hash])
        response.data["settings"] = SESSION_TRY_SETTINGS
        response.data["session_try"] = {
            "run": reverse("run-model", args=[model.hash]),
            "try": reverse("run-model-try", args=[model.hash]),
        }
        return response
