"""Pytest plugin loaded before Django: points the platform at a throw-away data folder.

Loaded with `-p` so it runs before pytest-django imports the settings.
"""

import os
import tempfile

if not os.environ.get("NEOMARIL_TEST_KEEP_DATA_DIR"):
    os.environ["NEOMARIL_DATA_DIR"] = tempfile.mkdtemp(prefix="neomaril-test-")
os.environ.setdefault("DEBUG", "0")
