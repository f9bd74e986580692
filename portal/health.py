"""`/healthz`: is this node able to serve? For load balancers and `make run`'s banner."""

from __future__ import annotations

import time

from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from django_q.brokers import get_broker

from portal.draining import DRAINING


def _probe(check) -> dict:
    started = time.perf_counter()
    try:
        detail = check()
    except Exception as exc:  # any failure means "not healthy", reported, never raised
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    return {"ok": True, "ms": round((time.perf_counter() - started) * 1000, 2), **(detail or {})}


def _database() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _broker() -> dict:
    broker = get_broker()
    if not broker.ping():
        raise ConnectionError("broker did not answer ping")
    return {"kind": broker.info()}


@never_cache
@require_GET
def healthz(request):
    if DRAINING.is_set():  # still serving, but asking the load balancer for nothing new
        return JsonResponse({"status": "draining", "checks": {}}, status=503)
    checks = {"database": _probe(_database), "broker": _probe(_broker)}
    healthy = all(check["ok"] for check in checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks}, status=200 if healthy else 503
    )
