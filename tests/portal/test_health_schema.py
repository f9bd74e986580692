"""Health endpoint and the platform's OpenAPI document."""

import os
import re
import socket

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

from models_app.serving import paths


def test_healthz_reports_database_broker_and_model_host(db, model_host):
    response = Client().get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["model_host"] == {
        "ok": True,
        "ms": body["checks"]["model_host"]["ms"],
        "pid": os.getpid(),
    }
    assert body["checks"]["database"]["ok"] is True
    # The embedded default, or the PostgreSQL pass's servers (tests/backends.py).
    assert body["checks"]["database"]["vendor"] == connection.vendor
    broker = body["checks"]["broker"]
    if settings.Q_CLUSTER.get("redis"):
        assert broker["ok"] is True and re.fullmatch(r"Redis \d+\.\d+\.\d+", broker["kind"]), broker
    else:
        assert broker == {"ok": True, "ms": broker["ms"], "kind": "ORM default"}


def test_a_broker_that_does_not_answer_is_degraded_not_down_and_answered_in_time(db, model_host, settings):
    """Redis is shared by every node: failing the check took every node out of the
    balancer (503 to every call) while each could still answer Sync calls. Its probe
    waited 5 s, the balancer's whole check timeout."""
    import time

    from portal import health

    stuck = socket.socket()  # accepts connections (the kernel's backlog), never answers
    stuck.bind(("127.0.0.1", 0))
    stuck.listen()
    settings.REDIS_URL = f"redis://127.0.0.1:{stuck.getsockname()[1]}/0"
    health._redis_probe = None
    started = time.monotonic()
    try:
        response = Client().get("/healthz")
    finally:
        stuck.close()
        health._redis_probe = None
    assert time.monotonic() - started < health.BROKER_TIMEOUT + 1.5
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["broker"] == {"ok": False, "error": "TimeoutError: Timeout reading from socket"}
    assert body["checks"]["database"]["ok"] is True and body["checks"]["model_host"]["ok"] is True


def test_healthz_is_503_when_the_model_host_is_not_running(db):
    # The node would answer every Sync call 503: the balancer must send them elsewhere.
    response = Client().get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["model_host"] == {
        "ok": False,
        "error": "ConnectionError: The model host is not running on this node "
        "(start it with `manage.py modelhost`).",
    }
    assert body["checks"]["database"]["ok"] is True and body["checks"]["broker"]["ok"] is True


def test_healthz_is_503_when_the_model_host_does_not_answer(db, settings, monkeypatch):
    from portal import health

    settings.RUN_DIR.mkdir(parents=True, exist_ok=True)
    stuck = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)  # listens, never answers
    stuck.bind(str(paths.host_socket()))
    stuck.listen()
    monkeypatch.setattr(health, "MODEL_HOST_TIMEOUT", 0.2)
    try:
        response = Client().get("/healthz")
    finally:
        stuck.close()
        paths.host_socket().unlink()
    assert response.status_code == 503
    assert response.json()["checks"]["model_host"] == {
        "ok": False,
        "error": "ConnectionError: The model host did not answer within 0.2 s.",
    }


def test_healthz_says_degraded_but_serves_when_the_disk_is_under_its_reserve(db, settings, model_host):
    body = Client().get("/healthz").json()
    assert (
        body["checks"]["disk"]["ok"] is True
        and body["checks"]["disk"]["reserve_mb"] == settings.DISK_RESERVE_MB
    )
    settings.DISK_RESERVE_MB = 10**9  # more than any disk has free
    response = Client().get("/healthz")
    assert response.status_code == 200  # calls are still answered: the balancer keeps the node
    body = response.json()
    assert body["status"] == "degraded"
    assert body["checks"]["disk"]["ok"] is False and body["checks"]["disk"]["free_mb"] < 10**9


def test_healthz_is_503_when_database_is_down(db, monkeypatch):
    from portal import health

    def broken():
        raise ConnectionError("database is down")

    monkeypatch.setattr(health, "_database", broken)
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == {
        "ok": False,
        "error": "ConnectionError: database is down",
    }


def test_schema_lists_every_endpoint(db):
    from openapi_spec_validator import validate

    response = Client().get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    document = response.json()
    validate(document)
    paths = set(document["paths"])
    for expected in [
        "/api/v1/auth/login",
        "/api/v1/auth/tokens",
        "/api/v1/auth/tokens/{token_id}",
        "/api/v1/groups",
        "/api/v1/groups/{name}",
        "/api/v1/groups/{name}/members",
        "/api/v1/groups/{name}/members/{username}",
        "/api/v1/groups/{name}/refresh-token",
        "/api/v1/users",
        "/api/v1/users/{username}",
        "/api/v1/users/{username}/reset",
        "/api/v1/users/{username}/deactivate",
        "/api/v1/users/{username}/activate",
        "/api/v1/models",
        "/api/v1/models/{model_hash}",
        "/api/v1/models/{model_hash}/logs",
        "/api/v1/models/{model_hash}/disable",
        "/api/v1/models/{model_hash}/restart",
    ]:
        assert expected in paths, expected
    assert "ApiToken" in document["components"]["securitySchemes"]


def test_swagger_ui_is_served_offline(db):
    page = Client().get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    # Not a bare "cdn": the page's random CSRF token may contain those letters.
    assert not re.search(r"(src|href)=[\"']?(https?:)?//", html), "an off-site asset"
    assert "cdn." not in html.lower() and "jsdelivr" not in html.lower() and "unpkg" not in html.lower()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in html


def test_schema_generates_without_warnings(db, tmp_path):
    from django.core.management import call_command

    # --fail-on-warn: a view drf-spectacular cannot describe is a bug in our annotations.
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(tmp_path / "schema.yml"))
    assert "/api/v1/groups" in (tmp_path / "schema.yml").read_text()


def test_schema_documents_the_run_url_and_the_health_endpoints(db):
    # Plain Django views (the run URL, /healthz) are invisible to drf-spectacular: portal.api_schema adds them.
    from openapi_spec_validator import validate

    document = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    validate(document)
    run = document["paths"]["/api/v1/run/{model_hash}"]
    assert list(run) == ["post"]
    assert set(run["post"]["requestBody"]["content"]) == {"application/json", "multipart/form-data"}
    assert set(run["post"]["responses"]) == {
        "200", "202", "400", "401", "403", "404", "405", "409", "413", "415", "422", "502", "503", "504", "507",
    }  # fmt: skip
    assert run["post"]["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ModelError"
    }
    assert run["post"]["security"] == [{"GroupToken": []}]
    assert document["components"]["securitySchemes"]["GroupToken"]["scheme"] == "bearer"
    health = document["paths"]["/api/v1/run/{model_hash}/health"]
    # 401/403/404: the group token is checked as on the run URL (portal.api_schema's error answers).
    assert list(health) == ["get"] and set(health["get"]["responses"]) == {"200", "401", "403", "404", "503"}
    healthz = document["paths"]["/healthz"]
    assert list(healthz) == ["get"] and set(healthz["get"]["responses"]) == {"200", "503"}
    schemas = document["components"]["schemas"]
    for name in ("Error", "ModelError", "ExecutionStarted", "ModelHealth"):
        assert name in schemas, name
    # What the document promises is what the views answer.
    assert set(Client().get("/healthz").json()) == set(
        healthz["get"]["responses"]["200"]["content"]["application/json"]["schema"]["required"]
    )


def test_schema_of_the_runners_answer_is_the_object_the_view_returns(db):
    document = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    answer = document["paths"]["/api/v1/models/{model_hash}/runners"]["get"]["responses"]["200"]
    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ModelRunners"}
    runners = document["components"]["schemas"]["ModelRunners"]
    assert set(runners["required"]) == {"model", "version", "runners"}
    assert runners["properties"]["runners"]["items"] == {"$ref": "#/components/schemas/Runner"}


def _routes(patterns, prefix=""):
    from django.urls import URLResolver

    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern.url_patterns, prefix + str(pattern.pattern))
        else:
            yield prefix + str(pattern.pattern)


def test_every_api_route_is_in_the_document(db):
    from django.urls import get_resolver

    document = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    routes = {
        "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route) for route in _routes(get_resolver().url_patterns)
    }
    api_routes = {route for route in routes if route.startswith("/api/v1/")}
    assert len(api_routes) > 50
    assert api_routes - set(document["paths"]) == set()


def test_the_version_and_session_run_urls_are_described_as_the_run_url(db):
    document = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    version = document["paths"]["/api/v1/run/{model_hash}/versions/{version}"]["post"]
    assert [p["name"] for p in version["parameters"]] == ["model_hash", "version"]
    assert (
        version["security"] == [{"GroupToken": []}]
        and "version" in version["responses"]["404"]["description"]
    )
    for path in ("/api/v1/run/{model_hash}/try", "/api/v1/run/{model_hash}/versions/{version}/try"):
        tried = document["paths"][path]["post"]
        assert tried["security"] == [{"cookieAuth": []}]
        assert "X-CSRFToken" in tried["responses"]["403"]["description"]
    assert document["components"]["securitySchemes"]["cookieAuth"]["in"] == "cookie"
    operation_ids = [op["operationId"] for item in document["paths"].values() for op in item.values()]
    assert len(operation_ids) == len(set(operation_ids))


def test_the_views_under_a_run_url_name_the_group_token_first(db):
    # Swagger UI's Try it sends only the schemes an operation names: the executions and the
    # health check took the group token with curl and failed 401 from /api/docs/.
    document = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    under_run = {
        (path, method): operation["security"]
        for path, item in document["paths"].items()
        if path.startswith("/api/v1/run/{model_hash}/") and not path.endswith("/try")
        for method, operation in item.items()
    }
    assert ("/api/v1/run/{model_hash}/executions/{execution_id}/result", "get") in under_run
    for where, security in under_run.items():
        assert security[0] == {"GroupToken": []} and {} not in security, where


PAGINATED = [
    "/api/v1/models",
    "/api/v1/models/{model_hash}/events",
    "/api/v1/models/{model_hash}/predictions",
    "/api/v1/models/{model_hash}/versions",
    "/api/v1/training/experiments",
    "/api/v1/run/{model_hash}/executions",
    "/api/v1/users",
    "/api/v1/auth/tokens",
]


@pytest.mark.parametrize("path", PAGINATED)
def test_every_paginated_list_is_documented_as_a_page(db, path):
    document = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = document["paths"][path]["get"]
    reference = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    page = document["components"]["schemas"][reference.rsplit("/", 1)[1]]
    assert set(page["properties"]) >= {"count", "next", "previous", "results"}
    assert {"page", "page_size"} <= {parameter["name"] for parameter in operation["parameters"]}
    assert operation["operationId"].endswith("_list")


def test_downloads_are_documented_as_files_of_their_own_type(db):
    document = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for name in ("result", "input"):
        operation = document["paths"][f"/api/v1/run/{{model_hash}}/executions/{{execution_id}}/{name}"]["get"]
        assert list(operation["responses"]["200"]["content"]) == ["*/*"]


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_healthz_answers_other_methods_405_not_the_csrf_page(db, method):
    response = getattr(Client(enforce_csrf_checks=True), method)("/healthz")
    assert response.status_code == 405
    assert response["Allow"] == "GET"
