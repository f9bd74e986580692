"""The platform's OpenAPI document (/api/docs/): the routes drf-spectacular can't see.

The run URLs, `POST /api/v1/run/<hash>` with its `/versions/<n>` and their session
twins `/try` (portal.run_api, answered first by the ASGI fast path), and `/healthz`
(portal.health) are plain Django views, kept off DRF on purpose (the hot path
and a probe that must answer without DRF's machinery), so drf-spectacular does not list
them. This postprocessing hook (SPECTACULAR_SETTINGS' POSTPROCESSING_HOOKS) describes them
from the same status codes those views answer; it changes nothing they do.
"""

from __future__ import annotations

from django.conf import settings

from models_app.serving.answers import SERVING_ERROR_CODES

ERROR = {"$ref": "#/components/schemas/Error"}
ERROR_SCHEMA = {
    "type": "object",
    "description": "Every error answer of the API: a readable message and a stable code (docs/api.md).",
    "properties": {
        "detail": {"type": "string", "description": "What went wrong, for a person."},
        "code": {"type": "string", "description": "What went wrong, for a program (docs/api.md lists them)."},
        "errors": {
            "type": "object",
            "additionalProperties": {},
            "description": "Validation errors (400 `invalid`) only: each field with its messages.",
        },
    },
    "required": ["detail", "code"],
}
MODEL_ERROR_SCHEMA = {
    "type": "object",
    "description": "The model's own code raised: its error and traceback (paths relative to the model's folder).",
    "properties": {
        "detail": {"type": "string"},
        "code": {"type": "string", "enum": ["model_error"]},
        "model_error": {
            "type": "object",
            "properties": {
                "error": {"type": "string", "example": "ValueError: bad input"},
                "phase": {"type": "string", "enum": ["import", "call", "result"]},
                "traceback": {"type": "string", "nullable": True},
                "limit": {"type": "string", "nullable": True},
            },
        },
    },
    "required": ["detail", "code", "model_error"],
}
EXECUTION_STARTED = {
    "type": "object",
    "properties": {
        "execution_id": {"type": "integer"},
        "status": {"type": "string", "example": "Requested"},
        "url": {"type": "string", "format": "uri"},
        "model": {"type": "string"},
        "message": {"type": "string"},
    },
    "required": ["execution_id", "status", "url", "model", "message"],
}
GROUP_TOKEN = {
    "type": "http",
    "scheme": "bearer",
    "description": "The model's group token: `Authorization: Bearer nmg_…` (shown once to the group's owners).",
}


def _error(description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": ERROR}}}


RUN_RESPONSES = {
    "200": {
        "description": "Sync: the model's answer, as its code returned it (any JSON value).",
        "content": {"application/json": {"schema": {}}},
    },
    "202": {
        "description": "Async: the execution was started; follow it at `url` (also the Location header).",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ExecutionStarted"}}},
    },
    "400": _error("The body is not valid JSON or not the model's kind of input (Sync), or no file (Async)."),
    "401": _error("No group token, or an unknown, replaced or expired one."),
    "403": _error("The token belongs to another group."),
    "404": _error("No such model."),
    "405": _error("Only POST runs a model."),
    "409": _error("The model is not deployed (yet): its status says why."),
    "413": _error("The body is over the size limit."),
    "415": _error(
        "Async: the body is not multipart/form-data with the input file as `file`. (A Sync model "
        "reads any body as JSON, whatever its Content-Type: a body that is not JSON is a 400.)"
    ),
    "422": {
        "description": "The model's code raised on this input.",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ModelError"}}},
    },
    **{
        str(status): _error(f"`{code}`: the model's runner could not answer.")
        for status, code in SERVING_ERROR_CODES.items()
    },
    "503": _error(
        "`unavailable`: the model's runner could not answer, or the database did not answer "
        "(with `Retry-After: 5`); worth retrying."
    ),
    "507": _error(
        "Async: `insufficient_storage`: the server's disk has no room for the input file "
        "(it keeps NEOMARIL_DISK_RESERVE_MB free); `group_storage_full`: the input would take "
        "the model's group past its storage quota. Nothing was stored."
    ),
}

RUN_OPERATION = {
    "operationId": "run_model",
    "summary": "Call the model",
    "description": (
        "The run URL of a model, authorised by its group token. A **Sync** model takes a JSON "
        "body (an object like its schema's example, or a list of them) and answers its result. "
        "An **Async** model takes the input file as multipart `file` and answers 202 with the "
        "execution's id; its status, log and result are under `/api/v1/run/{model_hash}/executions`."
    ),
    "tags": ["run"],
    "parameters": [
        {"name": "model_hash", "in": "path", "required": True, "schema": {"type": "string"}},
    ],
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {}, "example": {"feature_a": 1.5, "feature_b": "x"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    },
    "security": [{"GroupToken": []}],
    "responses": RUN_RESPONSES,
}

VERSION_PARAMETER = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "integer"},
    "description": "The version's number: called whether or not it is the live one.",
}
RUN_VERSION_OPERATION = {
    **RUN_OPERATION,
    "operationId": "run_model_version",
    "summary": "Call one version of the model",
    "description": (
        "The run URL of one version, live or not (e.g. to test a new version before it goes "
        "live); otherwise as the model's run URL."
    ),
    "parameters": [*RUN_OPERATION["parameters"], VERSION_PARAMETER],
    "responses": {
        **RUN_RESPONSES,
        "404": _error("No such model, or no such version of it."),
        "409": _error("That version is not deployed (yet): its status says why."),
    },
}
TRY_RESPONSES = {
    **RUN_RESPONSES,
    "302": {"description": "Not logged in (a session-less request that passed the CSRF check): to /login/."},
    "403": _error(
        "The CSRF check failed: send the session's token as `X-CSRFToken` (a group token does not open `/try`)."
    ),
    "404": _error("No such model among the caller's groups'."),
}
TRY_DESCRIPTION = (
    " For people logged in to the portal: a member of the model's group (or an admin) sends the "
    "same body with the session cookie and the `X-CSRFToken` header, and gets exactly what the "
    "run URL answers (the portal's Try it)."
)
TRY_OPERATION = {
    **RUN_OPERATION,
    "operationId": "try_model",
    "summary": "Call the model with a portal session",
    "description": "The model's run URL, with a session instead of the group token." + TRY_DESCRIPTION,
    "security": [{"cookieAuth": []}],
    "responses": TRY_RESPONSES,
}
TRY_VERSION_OPERATION = {
    **RUN_VERSION_OPERATION,
    "operationId": "try_model_version",
    "summary": "Call one version of the model with a portal session",
    "description": "One version's run URL, with a session instead of the group token." + TRY_DESCRIPTION,
    "security": [{"cookieAuth": []}],
    "responses": {**TRY_RESPONSES, "404": RUN_VERSION_OPERATION["responses"]["404"]},
}
SESSION = {"type": "apiKey", "in": "cookie", "name": "sessionid"}

HEALTHZ_CHECK = {
    "type": "object",
    "properties": {
        "ok": {"type": "boolean"},
        "ms": {"type": "number"},
        "error": {"type": "string"},
    },
    "required": ["ok"],
    "additionalProperties": True,
}
HEALTHZ_BODY = {
    "type": "object",
    "properties": {
        "status": {"type": "string", "enum": ["ok", "degraded", "unavailable", "draining"]},
        "checks": {
            "type": "object",
            "properties": {
                "database": HEALTHZ_CHECK,
                "broker": HEALTHZ_CHECK,
                "model_host": HEALTHZ_CHECK,
                "disk": HEALTHZ_CHECK,
            },
        },
    },
    "required": ["status", "checks"],
}
HEALTHZ_OPERATION = {
    "operationId": "healthz",
    "summary": "Is this node able to serve?",
    "description": "For load balancers: the database, the task broker and this node's model host "
    "(which starts the runners that answer Sync calls), each probed, and the data folder's free space. No authentication. `degraded` (200): the disk has less than "
    "NEOMARIL_DISK_RESERVE_MB free, so uploads and jobs are refused, while calls are still answered.",
    "tags": ["health"],
    "security": [{}],
    "responses": {
        "200": {
            "description": "Serving (`ok`, or `degraded`: the disk is nearly full).",
            "content": {"application/json": {"schema": HEALTHZ_BODY}},
        },
        "503": {
            "description": "The database, the broker or the model host failed (`checks` says which and "
            "why), or the node is stopping (`draining`).",
            "content": {"application/json": {"schema": HEALTHZ_BODY}},
        },
    },
}


def document_run_and_health(result: dict, generator, request, public: bool) -> dict:
    """Add the run URL and /healthz, with the components they use, to the generated document."""
    if generator.patterns is not None:  # a model's own document (portal.model_openapi): its own run URL
        return result
    components = result.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    schemas["ModelError"] = MODEL_ERROR_SCHEMA
    schemas["ExecutionStarted"] = EXECUTION_STARTED
    components.setdefault("securitySchemes", {})["GroupToken"] = GROUP_TOKEN
    components["securitySchemes"].setdefault("cookieAuth", SESSION)
    # The views under the run URL (an Async model's executions, a model's health) take the
    # group token as well as a member's credentials: DRF's authentication classes name only
    # the latter, and "anonymous" where the view checks the token itself.
    for path, item in result["paths"].items():
        if path.startswith("/api/v1/run/{model_hash}/"):
            for operation in item.values():
                security = [entry for entry in operation.get("security", []) if entry]
                operation["security"] = [{"GroupToken": []}, *security]
    for path, operation in (
        ("/api/v1/run/{model_hash}", RUN_OPERATION),
        ("/api/v1/run/{model_hash}/versions/{version}", RUN_VERSION_OPERATION),
        ("/api/v1/run/{model_hash}/try", TRY_OPERATION),
        ("/api/v1/run/{model_hash}/versions/{version}/try", TRY_VERSION_OPERATION),
    ):
        result["paths"].setdefault(path, {})["post"] = operation
    result["paths"]["/healthz"] = {"get": HEALTHZ_OPERATION}
    return result


# --- The error answers every operation can give (groups.api.errors' shape) --------------
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
LOGIN_PATH = "/api/v1/auth/login"
HEALTHZ_PATH = "/healthz"
BODY_INVALID = (
    "Bad input: `invalid` (`errors` names each field and how to fix it) or `parse_error` "
    "(the body is not readable JSON)."
)
QUERY_INVALID = "A query parameter is not valid: `invalid` (`errors` names it and its choices)."
NOT_AUTHENTICATED = (
    "`not_authenticated` or `authentication_failed`: no credentials, or an unknown, revoked or "
    "expired token (the message says which)."
)
LOGIN_REFUSED = "`authentication_failed`: wrong username or password, or a deactivated account."
PERMISSION_DENIED = (
    "`permission_denied`: authenticated but not allowed (e.g. an admin-only action, a group token "
    "of another group, or a session request without its CSRF token)."
)
NOT_FOUND = "`not_found`: no such object, or one of a group the caller is not in (the same answer)."
LOCKED_OUT = "`locked_out`: too many failed logins from this address; try again later."
CONFLICT = (
    "`conflict`: the object's state does not allow this now (a Deleted model cannot be restarted, "
    "the live version cannot be deleted); the message says why."
)
NOT_ACCEPTABLE = (
    "`not_acceptable`: the `format` asked for, or the `Accept` header, is not one this endpoint "
    "answers in; the message names those it has."
)
PAST_THE_LAST_PAGE = "`page` is past the last page (the message says how many there are)"
UNSUPPORTED_MEDIA_TYPE = (
    "`unsupported_media_type`: the body's `Content-Type` is not one this operation reads ({types}), "
    "or the body is sent with a `Content-Encoding` (gzip, …): send it uncompressed."
)
# groups.api.middleware.ApiRequestSizeMiddleware refuses a body from its declared length,
# before reading it; portal.wsgi_bridge one sent without a length (chunked) past 1 MiB.
CHUNKED_LIMIT = " A body sent without `Content-Length` (chunked) may be up to 1 MiB."
BODY_TOO_LARGE = (
    "`too_large`: the body is over DATA_UPLOAD_MAX_MEMORY_SIZE ({fields}): refused from its declared "
    "`Content-Length` before it is read{multipart}." + CHUNKED_LIMIT
)
MULTIPART_TOO_LARGE = (
    " (a multipart body may declare NEOMARIL_MAX_UPLOAD_TOTAL_MB more, but its form fields are held "
    "to the same limit once read)"
)
UPLOAD_TOO_LARGE = (
    "`too_large`: the upload is over NEOMARIL_MAX_UPLOAD_TOTAL_MB in all (its declared `Content-Length` "
    "may add DATA_UPLOAD_MAX_MEMORY_SIZE, {fields}, for the form fields and the multipart framing): "
    "refused from that length before it is read, or as its files stream to disk; or its form fields "
    "are over DATA_UPLOAD_MAX_MEMORY_SIZE. One file over NEOMARIL_MAX_UPLOAD_FILE_MB is a 400 at its "
    "field." + CHUNKED_LIMIT
)
UPLOAD_OUT_OF_SPACE = (
    "`insufficient_storage`: the server's disk has no room for the upload: it keeps "
    "NEOMARIL_DISK_RESERVE_MB free, or it filled up while the files were written. "
    "`group_storage_full`: the upload would take its group past its storage quota (the group's "
    "own, else NEOMARIL_GROUP_STORAGE_MB). Nothing was stored; retry once space is freed."
)
DATABASE_UNAVAILABLE = (
    "`unavailable`: the database did not answer (stopped, restarting, failing over, or too busy); "
    "nothing is wrong with the request: retry it after `Retry-After` (5) seconds."
)


def _size(size: int) -> str:
    return f"{size / 1024**2:g} MB" if size >= 1024**2 else f"{size:,} bytes"


def _body_schemas(operation: dict, schemas: dict) -> dict[str, dict]:
    """Each media type of the operation's body, with its schema (a component's, if named)."""
    content = operation.get("requestBody", {}).get("content", {})
    found = {}
    for media_type, media in content.items():
        schema = media.get("schema", {})
        if "$ref" in schema:
            schema = schemas.get(schema["$ref"].rsplit("/", 1)[1], {})
        found[media_type] = schema
    return found


def _takes_files(bodies: dict[str, dict]) -> bool:
    """An upload: its multipart body has a file part (the views that read one answer 507
    when the disk has no room for it, groups.api.errors.checked_files)."""
    properties = bodies.get("multipart/form-data", {}).get("properties", {})
    return any(
        "binary" in (part.get("format"), part.get("items", {}).get("format")) for part in properties.values()
    )


def _standard_errors(path: str, method: str, operation: dict, schemas: dict) -> dict[str, str]:
    """The error answers this operation can give, each with its description."""
    parameters = operation.get("parameters", [])
    # The run URL's views check the group token themselves (DRF sees them as open to anyone),
    # and read their body themselves: they declare their own 413 and 415 (RUN_RESPONSES).
    run_url = path.startswith("/api/v1/run/")
    authenticated = run_url or {} not in operation.get("security", [{}])
    bodies = _body_schemas(operation, schemas)
    paginated = any(
        parameter.get("in") == "query" and parameter.get("name") == "page" for parameter in parameters
    )
    errors: dict[str, str] = {}
    if "requestBody" in operation:
        errors["400"] = BODY_INVALID
    elif any(parameter.get("in") == "query" for parameter in parameters):
        errors["400"] = QUERY_INVALID
    if authenticated:
        errors["401"] = NOT_AUTHENTICATED
        errors["403"] = PERMISSION_DENIED
    if "{" in path:
        errors["404"] = NOT_FOUND + (f" Also when {PAST_THE_LAST_PAGE}." if paginated else "")
        # A change to an existing object can meet a state that refuses it (views raise Conflict).
        if method != "get" and not run_url:
            errors["409"] = CONFLICT
    elif paginated:
        errors["404"] = f"`not_found`: {PAST_THE_LAST_PAGE}."
    if any(parameter.get("in") == "query" and parameter.get("name") == "format" for parameter in parameters):
        errors["406"] = NOT_ACCEPTABLE
    if bodies and not run_url:
        fields = _size(settings.DATA_UPLOAD_MAX_MEMORY_SIZE)
        if _takes_files(bodies):
            errors["413"] = UPLOAD_TOO_LARGE.format(fields=fields)
        else:
            multipart = MULTIPART_TOO_LARGE if "multipart/form-data" in bodies else ""
            errors["413"] = BODY_TOO_LARGE.format(fields=fields, multipart=multipart)
        errors["415"] = UNSUPPORTED_MEDIA_TYPE.format(types=", ".join(bodies))
    if path == LOGIN_PATH:  # no credentials to check, but a password; django-axes counts failures
        errors["401"] = LOGIN_REFUSED
        errors["429"] = LOCKED_OUT
    if path != HEALTHZ_PATH:  # portal.database_outage: every API URL (the probe words its own)
        errors["503"] = DATABASE_UNAVAILABLE
    if _takes_files(bodies):
        errors["507"] = UPLOAD_OUT_OF_SPACE
    return errors


def document_error_answers(result: dict, generator, request, public: bool) -> dict:
    """Add the standard error answers (400, 401, 403, 404, 406, 409, 413, 415, 429, 503, 507:
    see _standard_errors) to every operation, each with the Error shape; an answer an
    operation declares itself is kept.

    Runs on the platform's document and each model's own (portal.model_openapi)."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas.setdefault("Error", ERROR_SCHEMA)
    for path, item in result.get("paths", {}).items():
        for method, operation in item.items():
            if method not in HTTP_METHODS:
                continue
            responses = operation.setdefault("responses", {})
            for status, description in _standard_errors(path, method, operation, schemas).items():
                if status not in responses:
                    responses[status] = _error(description)
                elif status == "503" and "database" not in responses[status].get("description", ""):
                    responses[status] = _with_database_outage(responses[status])
    return result


def _with_database_outage(declared: dict) -> dict:
    """An operation's own 503 (a model that is not deployed) that is also what a database
    outage answers, in the Error shape: the description says both, and the body is either.
    A copy: the declared answer may be a module's constant, shared by every document."""
    answer = {
        **declared,
        "description": f"{declared.get('description', '')} Or {DATABASE_UNAVAILABLE}".strip(),
    }
    media = declared.get("content", {}).get("application/json")
    if media is not None and media.get("schema") != ERROR:
        oneof = {"oneOf": [media.get("schema", {}), ERROR]}
        answer["content"] = {**declared["content"], "application/json": {**media, "schema": oneof}}
    return answer


def declare_closed_request_bodies(result: dict, generator, request, public: bool) -> dict:
    """Every request body of the API says it takes only the members it lists: the views
    refuse any other with a 400 naming it (groups.api.errors.refuse_unknown_fields and
    refuse_unknown_parts). The run URLs are left open: their body is the model's input."""
    if generator.patterns is not None:  # a model's own document: only its run URL
        return result
    schemas = result.get("components", {}).get("schemas", {})
    for path, item in result.get("paths", {}).items():
        if path.startswith("/api/v1/run/"):
            continue
        for method, operation in item.items():
            if method not in HTTP_METHODS or "requestBody" not in operation:
                continue
            for media in operation["requestBody"]["content"].values():
                schema = media.get("schema", {})
                if "$ref" in schema:
                    schema = schemas[schema["$ref"].rsplit("/", 1)[1]]
                if schema.get("type") == "object":
                    schema["additionalProperties"] = False
    return result


# What a null is in OpenAPI 3.0.3, beside a reference: `nullable` counts only where `type`
# is given in the same schema, so drf-spectacular's `allOf: [$ref], nullable: true` (a
# nested serializer with allow_null) does not let a validator or a generated client take
# the null the API sends (a monitor before its first period, a model before its build).
NULL = {"type": "object", "nullable": True, "enum": [None]}


def nullable_references_as_one_of(result: dict, generator, request, public: bool) -> dict:
    """Rewrite every `allOf: [X], nullable: true` as `oneOf: [X, null]`, its other keys kept."""

    def rewrite(node):
        if isinstance(node, list):
            return [rewrite(value) for value in node]
        if not isinstance(node, dict):
            return node
        node = {key: rewrite(value) for key, value in node.items()}
        if node.get("nullable") and "type" not in node and len(node.get("allOf", ())) == 1:
            (referenced,) = node.pop("allOf")
            del node["nullable"]
            node = {"oneOf": [referenced, NULL], **node}
        return node

    return rewrite(result)
