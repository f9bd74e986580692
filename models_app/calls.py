"""Who may call a model: checks shared by the run endpoints (sync predict, async executions).

A call is authorised by the model group's token (`Authorization: Bearer <group token>`)
or, where `allow_member` is set, by a logged-in member of the group (session or API
token), so the portal's pages can show executions without asking for the token.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from django.conf import settings
from django.db import connection
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from rest_framework import exceptions
from rest_framework.request import Request

from groups import tokens
from groups.access import groups_for
from groups.authentication import (
    USER_TOKEN_KIND,
    TokenFacts,
    bearer_token,
    check_group_token,
    refuse_unusable_token,
)
from groups.models import GroupToken
from models_app.models import MLModel, ServingFacts


def get_called_model(request: Request, model_hash: str, *, allow_member: bool = False) -> MLModel:
    """The model named in the URL, once the caller is authorised for it.

    404 for an unknown (or deleted) model; 401/403 from the group-token check.
    """
    model = (
        MLModel.objects.select_related("group")
        .filter(hash=model_hash, line__isnull=True)
        .exclude(status=MLModel.Status.DELETED)
        .first()
    )
    as_member = allow_member and not _presents_group_token(request) and request.user.is_authenticated
    if model is None:
        if not as_member:
            refuse_unusable_token(request)  # which hashes exist is for token holders to learn
        raise exceptions.NotFound(f"No model '{model_hash}'.")
    if as_member:
        if not groups_for(request.user).filter(pk=model.group_id).exists():
            raise exceptions.NotFound(f"No model '{model_hash}'.")
        return model
    check_group_token(request, model.group)
    return model


def _presents_group_token(request: Request) -> bool:
    """Whether the caller sent `Bearer <token>` with a token that is not a user's API token."""
    try:
        value = bearer_token(request)
    except exceptions.APIException:  # none, or malformed: check_group_token says why if it matters
        return False
    return not value.startswith(USER_TOKEN_KIND)


def not_deployed_message(model: CalledModel) -> str:
    hint = {
        MLModel.Status.READY: "its build is queued",
        MLModel.Status.BUILDING: "it is being built; try again when it is Deployed",
        MLModel.Status.FAILED: "its build failed; see its build log and restart it",
        MLModel.Status.DISABLED: "it was disabled; restart it to serve again",
    }.get(model.status, "")
    name = f"Model '{model.model_hash}'"
    # The version is named when it is not simply "the model": a later one, or version 1
    # called by its own URL while another is live (the model itself may be serving).
    if model.pk != model.model_pk or not model.live:
        name += f" version {model.version}"
    return f"{name} is {model.status}, not Deployed" + (f": {hint}." if hint else ".")


@dataclass(frozen=True, slots=True)
class CalledModel(ServingFacts):
    """What the run URL needs of a model, read by CALL_SQL: the row of the version that
    answers (its hash names its runners and folder), and the model it belongs to.

    A plain object rather than an MLModel: building a model instance costs more than
    the query on the hot path, and callers never save it.
    """

    pk: int
    hash: str
    status: str
    operation: str
    deployed_build: int
    min_replicas: int
    max_replicas: int | None
    request_timeout: int | None
    schema_is_object: bool
    group_id: int
    version: int
    model_pk: int  # the model's own row: calls and executions are recorded against it
    model_hash: str  # the hash in the model's run URL
    # The version answering is the one the run URL serves (a per-version URL's may not be:
    # a candidate tried before it goes live). Only live calls are production inputs to monitor.
    live: bool = True

    @property
    def folder(self) -> str:
        """The version's `base_path` (MLModel.folder, as a string)."""
        return f"{settings.MODELS_DIR}/{self.hash}"


@dataclass(frozen=True, slots=True)
class CallTarget:
    """A model as the predict path needs it, with the presented token's facts."""

    model: CalledModel
    token: TokenFacts | None


def _aware(value) -> datetime:
    if isinstance(value, str):  # SQLite hands back text
        value = parse_datetime(value)
    return value if timezone.is_aware(value) else timezone.make_aware(value, UTC)


# Table names come from our own models, never from input; the values are parameters.
# `m` is the model named in the URL, `v` the version that answers: the live one, or the
# one a per-version URL names (CALL_VERSION_SQL).
_CALL_COLUMNS = (
    "SELECT v.id, v.hash, v.status, v.operation, v.deployed_build, v.min_replicas, v.max_replicas, "
    "v.request_timeout, v.schema, m.group_id, v.version, m.id, t.group_id, t.expires_at, t.revoked_at, "
    "v.id = COALESCE(m.live_version_id, m.id) "
)
CALL_SQL = (
    _CALL_COLUMNS  # noqa: S608
    + f"FROM {MLModel._meta.db_table} m "
    f"JOIN {MLModel._meta.db_table} v ON v.id = COALESCE(m.live_version_id, m.id) "
    f"LEFT JOIN {GroupToken._meta.db_table} t ON t.digest = %s "
    "WHERE m.hash = %s AND m.line_id IS NULL"
)
CALL_VERSION_SQL = (
    _CALL_COLUMNS  # noqa: S608
    + f"FROM {MLModel._meta.db_table} m "
    f"JOIN {MLModel._meta.db_table} v ON (v.id = m.id OR v.line_id = m.id) "
    f"LEFT JOIN {GroupToken._meta.db_table} t ON t.digest = %s "
    "WHERE m.hash = %s AND m.line_id IS NULL AND v.version = %s"
)


MAX_VERSION = 2_147_483_647  # the version column's range


def lookup_call(model_hash: str, token_value: str, version: int | None = None) -> CallTarget | None:
    """One hand-written query for the hot path of Sync calls: the model and the token.

    The ORM version of these two lookups costs ~1 ms of query compilation per call,
    more than everything else the web process does for a prediction. `version` names
    one version (its per-version URL); None: the live one.
    """
    if version is not None and not 0 < version <= MAX_VERSION:
        return None  # no such version (and a number SQLite could not even compare)
    with connection.cursor() as cursor:
        if version is None:
            cursor.execute(CALL_SQL, [tokens.digest(token_value), model_hash])
        else:
            cursor.execute(CALL_VERSION_SQL, [tokens.digest(token_value), model_hash, version])
        row = cursor.fetchone()
    return call_target(model_hash, row)


def lookup_model(model_hash: str, version: int | None = None) -> CalledModel | None:
    """The model as lookup_call reads it, for a caller authorised otherwise (a member's
    session on the try URL): the same query, with a digest no stored token has."""
    target = lookup_call(model_hash, "", version)
    return None if target is None else target.model


def call_target(model_hash: str, row: tuple | None) -> CallTarget | None:
    """The CallTarget for one row of CALL_SQL (None: no such model)."""
    if row is None:
        return None
    (
        pk,
        serving_hash,
        status,
        operation,
        build,
        min_replicas,
        max_replicas,
        timeout,
        schema,
        group_id,
        version,
        model_pk,
        token_group_id,
        expires_at,
        revoked_at,
        live,
    ) = row
    if isinstance(schema, str):  # SQLite: the JSON text; only its kind matters here
        schema_is_object = schema.lstrip().startswith("{")
    else:  # PostgreSQL: the decoded value
        schema_is_object = isinstance(schema, dict)
    model = CalledModel(
        pk,
        serving_hash,
        status,
        operation,
        build,
        min_replicas,
        max_replicas,
        timeout,
        schema_is_object,
        group_id,
        version,
        model_pk,
        model_hash,
        bool(live),  # SQLite answers 1 or 0
    )
    facts = None
    if token_group_id is not None:
        facts = TokenFacts(token_group_id, _aware(expires_at), revoked_at is not None)
    return CallTarget(model, facts)
