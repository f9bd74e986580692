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
accesslog = "-"
