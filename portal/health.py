"""`/healthz`: is this node able to serve? For load balancers and `make run`'s banner."""

from __future__ import annotations

import time

import redis
from django.conf import settings
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET
from django_q.brokers import get_broker

from groups.uploads import free_bytes
from models_app.serving.aio import ServingError, host_call
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


# Well under the balancer's check timeout (deploy/haproxy.cfg: 5 s): a Redis that does
# not answer (stopped, frozen) must not make the whole answer late.
BROKER_TIMEOUT = 1.0
_redis_probe = None


def _broker() -> dict:
    if settings.REDIS_URL:
        global _redis_probe
        if _redis_probe is None:  # a client of its own, with short timeouts (django-q2's waits)
            _redis_probe = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=BROKER_TIMEOUT, socket_connect_timeout=BROKER_TIMEOUT
            )
        return {"kind": f"Redis {_redis_probe.info('server')['redis_version']}"}
    broker = get_broker()
    if not broker.ping():
        raise ConnectionError("broker did not answer ping")
    return {"kind": broker.info()}


# Short: a probe is retried every couple of seconds, and a host that cannot answer a ping
# this fast cannot start runners either.
MODEL_HOST_TIMEOUT = 2.0


def _model_host() -> dict:
    """This node's model host answers. Without it the node serves no Sync call (the runners
    die with their host and none can start), so the balancer should send them elsewhere."""
    try:
        answer = host_call({"op": "ping"}, timeout=MODEL_HOST_TIMEOUT)
    except ServingError as exc:
        raise ConnectionError(exc.message) from None
    if not answer.get("ok"):
        raise ConnectionError(f"The model host answered: {answer.get('error')}")
    return {"pid": answer["pid"]}


def _disk() -> dict:
    """Free space on the data folder's disk against NEOMARIL_DISK_RESERVE_MB."""
    free = free_bytes(settings.DATA_DIR)
    reserve = settings.DISK_RESERVE_MB * 1024 * 1024
    return {"ok": free >= reserve, "free_mb": free // 2**20, "reserve_mb": settings.DISK_RESERVE_MB}


# csrf_exempt: it changes nothing, and without it the CSRF check answered any other
# method with its 403 page before require_GET could answer 405.
@csrf_exempt
@never_cache
@require_GET
def healthz(request):
    if DRAINING.is_set():  # still serving, but asking the load balancer for nothing new
        return JsonResponse({"status": "draining", "checks": {}}, status=503)
    checks = {"database": _probe(_database), "model_host": _probe(_model_host)}
    healthy = all(check["ok"] for check in checks.values())
    # A nearly full disk refuses uploads and stops jobs, and a broker away delays their
    # tasks (housekeeping sends them once it is back), but Sync calls are still answered,
    # and both are shared by every node: "degraded" with a 200 keeps the node in the
    # balancer, where taking every node out would stop the calls too.
    checks["broker"] = _probe(_broker)
    checks["disk"] = _probe(_disk)
    shared_ok = checks["broker"]["ok"] and checks["disk"]["ok"]
    status = "unavailable" if not healthy else "ok" if shared_ok else "degraded"
    return JsonResponse({"status": status, "checks": checks}, status=200 if healthy else 503)
