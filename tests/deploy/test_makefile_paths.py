"""`make run`'s folders: a node folder too deep for a Unix socket's path still starts."""

import re
import subprocess

from tests.helpers.processes import ROOT

SOCKET_PATH_MAX = 107  # bytes of a Unix socket's path, with its NUL


def _supervisor_dir(**variables: str) -> str:
    printed = subprocess.run(
        ["make", "-n", "-B", "--no-print-directory", "run", "VENV=/nonexistent/venv"]
        + [f"{name}={value}" for name, value in variables.items()],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return re.search(r"case '([^']*)' in /tmp/neomaril-\*-control", printed).group(1)


def test_a_deep_node_folder_gets_a_short_private_control_folder(tmp_path):
    deep = tmp_path / ("n" * 100)
    folder = _supervisor_dir(NEOMARIL_NODE_DIR=str(deep))
    assert re.fullmatch(r"/tmp/neomaril-[0-9a-f]{12}-control", folder)
    assert len(f"{folder}/supervisor.sock") < SOCKET_PATH_MAX
    assert folder == _supervisor_dir(NEOMARIL_NODE_DIR=str(deep))  # the same node, the same folder


def test_a_node_folder_that_fits_keeps_its_sockets(tmp_path):
    assert _supervisor_dir(NEOMARIL_NODE_DIR=str(tmp_path / "node")) == str(tmp_path / "node")
    assert _supervisor_dir(NEOMARIL_SUPERVISOR_DIR="/run/neomaril") == "/run/neomaril"
