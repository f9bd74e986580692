"""The test plugin gives every pytest process its own data and node folders and, under
pytest-xdist, its own sandbox uid pool: nodes on one machine must share neither."""

import os
import runpy
import shutil
from pathlib import Path

import pytest

PLUGIN = str(Path(__file__).with_name("isolated_env.py"))


@pytest.fixture
def plugin_env(monkeypatch):
    """What `make test` exports (make run's folders), and the folders the plugin made removed after."""
    for name, value in {
        "NEOMARIL_NODE_DIR": "/work/var",
        "NEOMARIL_RUN_DIR": "/work/var/run",
        "NEOMARIL_SUPERVISOR_DIR": "/work/var",
    }.items():
        monkeypatch.setenv(name, value)
    for name in ("NEOMARIL_TEST_KEEP_DATA_DIR", "NEOMARIL_SANDBOX_UID_BASE", "PYTEST_XDIST_WORKER"):
        monkeypatch.setenv(name, "")  # recorded, so what the plugin sets is undone after
        monkeypatch.delenv(name)
    monkeypatch.setenv("NEOMARIL_DATA_DIR", "placeholder")  # restored after: the plugin overwrites it
    yield monkeypatch
    shutil.rmtree(os.environ["NEOMARIL_DATA_DIR"], ignore_errors=True)


def test_the_node_folders_make_exports_are_dropped(plugin_env):
    runpy.run_path(PLUGIN)
    assert Path(os.environ["NEOMARIL_DATA_DIR"]).name.startswith("neomaril-test-")
    assert [
        n for n in ("NEOMARIL_NODE_DIR", "NEOMARIL_RUN_DIR", "NEOMARIL_SUPERVISOR_DIR") if n in os.environ
    ] == []
    assert "NEOMARIL_SANDBOX_UID_BASE" not in os.environ  # one process: the default pool


@pytest.mark.parametrize(("worker", "base"), [("gw0", "300000"), ("gw1", "310000")])
def test_each_xdist_worker_leases_sandbox_uids_from_its_own_pool(plugin_env, worker, base):
    plugin_env.setenv("PYTEST_XDIST_WORKER", worker)
    runpy.run_path(PLUGIN)
    assert os.environ["NEOMARIL_SANDBOX_UID_BASE"] == base


def test_the_data_folder_it_made_is_removed_when_pytest_ends(plugin_env):
    plugin = runpy.run_path(PLUGIN)
    folder = Path(os.environ["NEOMARIL_DATA_DIR"])
    (folder / "envs" / "e1").mkdir(parents=True)
    plugin["pytest_unconfigure"](None)
    assert not folder.exists()


def test_a_data_folder_kept_on_purpose_stays(plugin_env, tmp_path):
    plugin_env.setenv("NEOMARIL_TEST_KEEP_DATA_DIR", "1")
    plugin_env.setenv("NEOMARIL_DATA_DIR", str(tmp_path))
    runpy.run_path(PLUGIN)["pytest_unconfigure"](None)
    assert tmp_path.exists()
