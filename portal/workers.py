"""gunicorn's worker class for the web process (see portal/gunicorn.conf.py)."""

import os

from uvicorn_worker import UvicornWorker


class WebWorker(UvicornWorker):
    # Named explicitly rather than "auto": without uvloop and httptools uvicorn would
    # quietly fall back to its pure-Python loop and parser, several times slower.
    CONFIG_KWARGS = {
        "loop": "uvloop",
        "http": "httptools",
        # One log line per prediction costs CPU on the hot path; on when asked.
        "access_log": os.environ.get("NEOMARIL_ACCESS_LOG", "0") == "1",
    }
