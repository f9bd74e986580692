"""Every API operation on one group's object refuses a member of another group, and
answers them exactly as it answers an object that does not exist: no write happens, and
no status tells them which hashes, runs or links exist. Driven by the OpenAPI document,
so an operation added later is swept too."""

from __future__ import annotations

import re
from datetime import timedelta

from django.test import Client

from executions.models import Execution
from groups import services
from models_app import share_links
from models_app.models import MLModel, ModelBuild
from tests.helpers.clients import api_client, token_client
from tests.helpers.monitors import deployed_model, make_monitor, make_period, reference_run
from tests.helpers.openapi import operations, platform_document

MISSING = {
    "model_hash": "M" + "0" * 32,
    "experiment_hash": "T" + "0" * 32,
    "number": 999,
    "version": 999,
    "execution_id": 999,
    "period_id": 999_999,
    "link_id": "00000000-0000-0000-0000-000000000000",
}
# Paths about accounts: admins' (users) or the caller's own (tokens), and a group's name is
# shown to whoever is given it (they are not secret, as hashes are): swept for "refused",
# not for "same as missing".
ACCOUNT_PATHS = ("/api/v1/users/", "/api/v1/groups/", "/api/v1/auth/tokens/")


def _objects(cast) -> dict:
    run = reference_run(cast.group)
    model = deployed_model(cast.group, run=run)
    ModelBuild.objects.create(model=model, number=1, status="Succeeded", log="built\n")
    monitor = make_monitor(model, run, cast.owner)
    period = make_period(monitor, 1)
    batch = deployed_model(cast.group, name="batch", operation="Async", input_type="csv")
    execution = Execution.objects.create(
        model=batch,
        version=batch,
        number=1,
        status="Succeeded",
        input_file="in.csv",
        input_size=4,
        output_file="out.csv",
        output_size=4,
    )
    token, _ = services.issue_api_token(cast.owner, "owner's")
    link = share_links.create(model, cast.owner, timedelta(days=1)).link
    return {
        "model_hash": model.hash,
        "experiment_hash": run.experiment.hash,
        "number": run.number,
        "version": 1,
        "execution_id": execution.number,
        "period_id": period.pk,
        "link_id": str(link.pk),
        "name": cast.group.name,
        "username": cast.teammate.username,
        "token_id": str(token.pk),
        "batch_hash": batch.hash,
    }


def _call(cast, method: str, path: str, values: dict):
    url = path.format(**values)
    if "/executions" in path:  # an Async model's executions
        url = url.replace(values["model_hash"], values.get("batch_hash", values["model_hash"]))
    if path.startswith("/api/v1/run/") and path.endswith("/try"):
        client = Client()
        client.force_login(cast.outsider)  # the outsider's own session
        return getattr(client, method)(url, {}, content_type="application/json")
    # On a run URL, the outsider's group's token; elsewhere their own API token.
    client = token_client(cast.other_token) if path.startswith("/api/v1/run/") else api_client(cast.outsider)
    return getattr(client, method)(url, {}, format="json")


def test_an_outsider_is_refused_every_operation_on_another_group_s_objects(cast):
    document = platform_document()
    values = _objects(cast)
    before = {
        "models": list(MLModel.objects.values_list("hash", "status", "min_replicas").order_by("pk")),
        "links": share_links.DocsShareLink.objects.filter(revoked_at__isnull=True).count(),
        "executions": Execution.objects.count(),
    }
    refused = []
    for path, method, _operation in operations(document):
        names = set(re.findall(r"\{(\w+)\}", path))
        if not names:
            continue
        answer = _call(cast, method, path, values)
        where = f"{method.upper()} {path}"
        assert answer.status_code in (403, 404), (where, answer.status_code, answer.content[:300])
        # Another group's token on a run URL is told the token is not this model's (403):
        # it holds a valid token, and a hash (128 random bits) is not found by trying.
        token_call = path.startswith("/api/v1/run/") and not path.endswith("/try")
        if not path.startswith(ACCOUNT_PATHS) and not token_call:
            missing = _call(
                cast,
                method,
                path,
                {
                    **values,
                    **{n: MISSING[n] for n in names if n in MISSING},
                    "batch_hash": MISSING["model_hash"],
                },
            )
            assert missing.status_code == answer.status_code, (
                where,
                answer.content[:200],
                missing.content[:200],
            )
        refused.append(where)
    assert len(refused) > 50, refused
    # The objects are there: their own group finds every one (so the refusals above are not
    # an object the sweep failed to make).
    for path, method, _operation in operations(document):
        if method != "get" or "{" not in path or path.startswith(ACCOUNT_PATHS):
            continue
        url = path.format(**values)
        if "/executions" in path:
            url = url.replace(values["model_hash"], values["batch_hash"])
        client = token_client(cast.group_token) if path.startswith("/api/v1/run/") else api_client(cast.owner)
        found = client.get(url)
        # A 404 of its own kind (an execution's files not on disk here) still found the object.
        assert found.status_code != 404 or found.json()["code"] != "not_found", (path, found.content[:300])
    after = {
        "models": list(MLModel.objects.values_list("hash", "status", "min_replicas").order_by("pk")),
        "links": share_links.DocsShareLink.objects.filter(revoked_at__isnull=True).count(),
        "executions": Execution.objects.count(),
    }
    assert after == before  # nothing was changed, deleted, revoked or started
