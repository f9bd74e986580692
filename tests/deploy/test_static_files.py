"""`make run` collects the static files afresh: collectstatic skips a file whose collected
copy is newer than its source, so an upgrade from an unpacked release (whose files keep
their commit dates) went on serving the old release's JavaScript and CSS."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time

from tests.deploy.test_makefile_secrets import _commands_of_make_run
from tests.helpers.processes import ROOT


def test_make_run_replaces_collected_files_newer_than_their_source(tmp_path):
    [command] = [c for c in _commands_of_make_run() if "collectstatic" in c]
    args = shlex.split(command)
    args = [sys.executable, *args[args.index("manage.py") :]]
    env = {
        **os.environ,
        "NEOMARIL_DATA_DIR": str(tmp_path / "data"),
        "NEOMARIL_NODE_DIR": str(tmp_path / "n"),
    }
    subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    collected = tmp_path / "n" / "staticfiles" / "js" / "common.js"
    # The previous release's copy, collected after this release's files were dated.
    collected.write_text("// the previous release's script\n")
    later = time.time() + 3600
    os.utime(collected, (later, later))
    stale_hashed = next(collected.parent.glob("common.*.js"))
    stale_hashed.write_text("// the previous release's script\n")

    subprocess.run(args, cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    source = (ROOT / "static" / "js" / "common.js").read_text()
    assert collected.read_text() == source
    assert [path.read_text() == source for path in collected.parent.glob("common.*.js")] == [True]
