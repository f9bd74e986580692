"""Pytest plugin loaded before Django: points the platform at a throw-away data folder.

Loaded with `-p` so it runs before pytest-django imports the settings.
"""

import os
import shutil
import tempfile

# The data folder this process made (None: NEOMARIL_TEST_KEEP_DATA_DIR names one to keep).
made_data_dir = None
if not os.environ.get("NEOMARIL_TEST_KEEP_DATA_DIR"):
    made_data_dir = os.environ["NEOMARIL_DATA_DIR"] = tempfile.mkdtemp(prefix="neomaril-test-")
    # The node's folders too: `make test` exports `make run`'s (./var), and pytest-xdist's
    # workers sharing its run/ would share one model host socket and delete each other's
    # runner sockets. Each process gets its own node, under its own data folder.
    for inherited in ("NEOMARIL_NODE_DIR", "NEOMARIL_RUN_DIR", "NEOMARIL_SUPERVISOR_DIR"):
        os.environ.pop(inherited, None)
    # Nodes on one machine lease sandbox uids from their own run/ and so need pools that
    # don't overlap (docs/configuration.md): a worker's pool starts past the default one
    # and the nodes tests/deploy starts (200000, 201000). xdist sets the name first.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and worker[2:].isdigit():
        os.environ.setdefault("NEOMARIL_SANDBOX_UID_BASE", str(300_000 + 10_000 * int(worker[2:])))
os.environ.setdefault("DEBUG", "0")


def pytest_unconfigure(config):
    """The data folder goes with the process that made it: its model environments and
    files reach gigabytes a run, and /tmp filled up with them."""
    if made_data_dir:
        shutil.rmtree(made_data_dir, ignore_errors=True)
