"""gunicorn settings, from the environment (see docs/configuration.md)."""

import os

bind = f"{os.environ.get('NEOMARIL_BIND', '127.0.0.1')}:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads let one worker stream a large upload while others are answered.
worker_class = "gthread"
threads = int(os.environ.get("NEOMARIL_WEB_THREADS", "4"))
# Large uploads (hundreds of MB) can take minutes on a slow link.
timeout = int(os.environ.get("NEOMARIL_WEB_TIMEOUT", "300"))
graceful_timeout = 30
# Each worker gets its own listening socket: the kernel spreads connections over the
# workers instead of letting one busy worker accept most keep-alive connections.
reuse_port = True
# Off by default: one line per prediction costs CPU in gunicorn and in the Procfile runner.
accesslog = "-" if os.environ.get("NEOMARIL_ACCESS_LOG", "0") == "1" else None
