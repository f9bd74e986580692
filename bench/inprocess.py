"""The start of the benchmarks that run the platform's code in their own process: this
project importable and Django set up, on a throw-away data folder (removed at exit)
unless NEOMARIL_DATA_DIR names one.

    from inprocess import ROOT, setup_django  # bench/ is the script's own folder

    setup_django()
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup_django() -> None:
    sys.path.insert(0, str(ROOT))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    if "NEOMARIL_DATA_DIR" not in os.environ:
        os.environ["NEOMARIL_DATA_DIR"] = tempfile.mkdtemp(prefix="neomaril-bench-")
        atexit.register(shutil.rmtree, os.environ["NEOMARIL_DATA_DIR"], ignore_errors=True)
    import django

    django.setup()
