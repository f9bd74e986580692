"""gunicorn settings, from the environment (see docs/configuration.md)."""

import os

from groups.addresses import bind_address, with_ipv4_mapped
from groups.envconf import envbool, envint
from portal import metrics_dir, procs

bind = bind_address(os.environ.get("NEOMARIL_BIND") or "127.0.0.1", os.environ.get("PORT", "8000"))
# One worker per two cores the node may use (at least one). A worker answers Sync calls on
# its event loop for a fraction of a millisecond of CPU each; the cores are the models'
# runners'. A second worker on a 2-core node cost 25-35 % more web CPU per call under load
# (each worker woke for fewer calls) and took runners' time: bench/README.md, "Web workers
# and the replica a call goes to".
workers = envint("WEB_CONCURRENCY", max(1, len(os.sched_getaffinity(0)) // 2), minimum=1)
# uvicorn workers: Sync calls are answered on the event loop (models_app.serving.front),
# the rest of Django runs in each worker's thread pool (NEOMARIL_WEB_THREADS, settings).
worker_class = "portal.workers.WebWorker"
# A worker whose event loop stops answering gunicorn's heartbeat for this long is
# restarted. Uploads stream on the loop, so a slow upload keeps it beating.
timeout = envint("NEOMARIL_WEB_TIMEOUT", 300, minimum=1)
# On SIGTERM a worker drains (NEOMARIL_WEB_DRAIN_SECONDS: still serving while the balancer
# takes the node out), then has NEOMARIL_WEB_GRACEFUL_SECONDS to finish the requests it has;
# what is still running then is cut. A model's request timeout may be longer (up to
# 3600 s): raise this to its longest, or such a call is cut by a stop (and HAProxy sends a
# cut Sync call again, so the model runs it twice).
graceful_timeout = envint("NEOMARIL_WEB_DRAIN_SECONDS", 0, minimum=0, maximum=20) + envint(
    "NEOMARIL_WEB_GRACEFUL_SECONDS", 30, minimum=1, maximum=3600
)
# Seconds an idle keep-alive connection stays open (uvicorn's timeout_keep_alive). gunicorn's
# default of 2 s closed it while a client paused as long: a request sent in that instant
# found the connection dropped before any answer (the SDK's POST, in CI). Longer than a
# balancer's or a script's usual pause; idle connections cost the event loop nothing.
keepalive = 75
reuse_port = True
# Off by default: one line per prediction costs CPU in gunicorn and in the Procfile runner.
accesslog = "-" if envbool("NEOMARIL_ACCESS_LOG") else None
# uvicorn rewrites the client address from X-Forwarded-For only for these peers; gunicorn's
# default (loopback) would let any local client choose its address for login throttling.
# Bound to "::", an IPv4 balancer arrives as ::ffff:a.b.c.d: its mapped form is trusted too.
forwarded_allow_ips = with_ipv4_mapped(os.environ.get("NEOMARIL_TRUSTED_PROXIES", ""))
# gunicorn's control socket (gunicornc, since 25.1) defaults to one path per user
# ($XDG_RUNTIME_DIR or ~/.gunicorn), so a second instance replaced the first one's. It
# lives beside supervisord's socket instead: this node's folder (NEOMARIL_SUPERVISOR_DIR,
# else NEOMARIL_NODE_DIR, both defaulting to the data folder), never the shared one.
control_socket = os.path.join(
    os.environ.get("NEOMARIL_SUPERVISOR_DIR")
    or os.environ.get("NEOMARIL_NODE_DIR")
    or os.environ.get("NEOMARIL_DATA_DIR")
    or os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "var"),
    "gunicorn.ctl",
)


# Metrics (docs/observability.md): the workers write their files to the web's own folder,
# emptied before the first worker is forked; a worker that exits leaves its counts but
# takes its live gauges (calls in flight) with it.
def on_starting(server):
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    metrics_dir.prepare("web")


# The node's cores are mostly the runners': each worker yields to them (portal.procs).
# Read here, so that a value that is not a boolean stops gunicorn before any worker.
_yield_to_runners = envbool("NEOMARIL_WEB_YIELD_TO_RUNNERS", True)


def post_fork(server, worker):
    if _yield_to_runners:
        try:
            procs.yield_to_runners()
        except OSError as exc:  # a seccomp profile that forbids sched_setscheduler
            server.log.warning("web worker %s keeps the default scheduling: %s", worker.pid, exc)


def child_exit(server, worker):
    # Imported here, not above: prometheus-client picks its file-backed mode at its first
    # import, which must come after on_starting has named the folder.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid, str(metrics_dir.folder_of("web")))
