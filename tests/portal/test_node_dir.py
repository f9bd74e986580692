"""Several nodes on one data folder: what each node keeps to itself (NEOMARIL_NODE_DIR)
and what starting them together must not break (generated secrets, migrations, admin).

The two nodes end to end: tests/deploy/test_nodes.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

import portal.settings as portal_settings
from groups.management.commands.migrate import LOCK_KEY

ROOT = Path(__file__).resolve().parents[2]

PATHS = """
import json
from django.conf import settings
from models_app.serving import paths
print(json.dumps({
    "node": str(settings.NODE_DIR), "run": str(settings.RUN_DIR),
    "static": str(settings.STATIC_ROOT), "runner_log": str(paths.runner_log("Mabc")),
    "models": str(settings.MODELS_DIR), "uploads": str(settings.UPLOAD_TMP_DIR),
}))
"""


def _paths(tmp_path: Path, **env: str) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NEOMARIL_", "DJANGO_"))}
    environ.update({"DJANGO_SETTINGS_MODULE": "portal.settings", **env})
    code = "import django; django.setup()\n" + PATHS
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, check=True
    )
    return json.loads(result.stdout)


@pytest.fixture
def short(tmp_path):
    """A folder short enough for RUN_DIR to stay in it (long ones fall back to /tmp)."""
    folder = Path(tempfile.mkdtemp(prefix="nd-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_one_node_keeps_todays_layout_in_the_data_folder(short):
    data = short / "d"
    found = _paths(short, NEOMARIL_DATA_DIR=str(data))
    assert found == {
        "node": str(data),
        "run": str(data / "run"),
        "static": str(data / "staticfiles"),
        "runner_log": str(data / "logs" / "runners" / "Mabc.log"),
        "models": str(data / "models"),
        "uploads": str(data / "tmp"),
    }


def test_a_node_folder_takes_the_nodes_own_state_off_the_shared_folder(short):
    data, node = short / "shared", short / "n"
    found = _paths(short, NEOMARIL_DATA_DIR=str(data), NEOMARIL_NODE_DIR=str(node))
    assert found["node"] == str(node) and found["run"] == str(node / "run")
    assert found["static"] == str(node / "staticfiles")
    assert found["runner_log"] == str(node / "logs" / "runners" / "Mabc.log")
    # Shared: the data itself, and the upload folder (an upload is renamed into the models).
    assert found["models"] == str(data / "models") and found["uploads"] == str(data / "tmp")


def test_two_nodes_with_long_folders_get_socket_folders_of_their_own(tmp_path):
    data = tmp_path / ("shared-" + "x" * 60)
    first = _paths(tmp_path, NEOMARIL_DATA_DIR=str(data), NEOMARIL_NODE_DIR=str(tmp_path / ("a" * 60)))
    second = _paths(tmp_path, NEOMARIL_DATA_DIR=str(data), NEOMARIL_NODE_DIR=str(tmp_path / ("b" * 60)))
    assert len(first["run"]) <= 48 and len(second["run"]) <= 48
    assert first["run"] != second["run"]


def test_gunicorns_control_socket_is_in_the_node_folder(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEOMARIL_")}
    environ.update({"NEOMARIL_DATA_DIR": str(tmp_path / "shared"), "NEOMARIL_NODE_DIR": str(tmp_path / "n")})
    code = "import runpy; print(runpy.run_path('portal/gunicorn.conf.py')['control_socket'])"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=environ, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == str(tmp_path / "n" / "gunicorn.ctl")


def test_a_generated_secret_is_never_seen_half_made_nor_replaced(tmp_path, monkeypatch):
    """Two nodes starting on a new data folder: the second one's key must not replace the
    first one's (sessions, tokens and encrypted secrets would not read across them)."""
    monkeypatch.setattr(portal_settings, "DATA_DIR", tmp_path)
    path = tmp_path / "encryption.key"

    def make_while_another_node_wins() -> str:
        assert not path.exists()  # nobody can read it before it is whole
        path.write_text("theirs\n")  # the other node, faster
        return "mine"

    assert portal_settings._generated_secret("encryption.key", make_while_another_node_wins) == "theirs"
    assert path.read_text() == "theirs\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["encryption.key"]  # no draft left


def test_processes_starting_together_share_one_generated_key(tmp_path):
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NEOMARIL_", "DJANGO_"))}
    environ.update({"NEOMARIL_DATA_DIR": str(tmp_path), "SECRET_KEY": ""})
    code = "from portal import settings; print(settings.NEOMARIL_ENCRYPTION_KEYS[0])"
    starts = [
        subprocess.Popen(
            [sys.executable, "-c", code], cwd=ROOT, env=environ, stdout=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    keys = {process.communicate(timeout=60)[0].strip() for process in starts}
    assert keys == {(tmp_path / "encryption.key").read_text().strip()}


@pytest.mark.django_db(transaction=True)
def test_migrate_waits_for_another_nodes_migrate():
    """On PostgreSQL `migrate` holds an advisory lock: two nodes starting together don't
    apply the same migration twice. SQLite (one node) has nothing to wait for."""
    if connection.vendor != "postgresql":
        call_command("migrate", verbosity=0)  # still the plain command
        pytest.skip("the lock is PostgreSQL's (the postgres pass runs this test)")
    from django.db import connections

    other = connections.create_connection("default")  # another node's session
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
        outcome: list[object] = []

        def migrate():
            try:
                call_command("migrate", verbosity=0)
                outcome.append("done")
            except Exception as exc:  # reported below
                outcome.append(exc)
            finally:
                connections.close_all()

        thread = threading.Thread(target=migrate)
        thread.start()
        time.sleep(1.5)
        assert thread.is_alive() and outcome == []  # waiting for the other node
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
        thread.join(60)
        assert outcome == ["done"]
        with other.cursor() as cursor:  # and it let go of the lock
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
            assert cursor.fetchone()[0] is True
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])
    finally:
        other.close()


def _start_error(tmp_path: Path, **env: str) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("NEOMARIL_", "DJANGO_"))}
    environ.update({"DJANGO_SETTINGS_MODULE": "portal.settings", **env})
    result = subprocess.run(
        [sys.executable, "-c", "import django; django.setup()"],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    return result.stderr.strip().splitlines()[-1]


def test_a_run_folder_set_too_long_for_sockets_stops_the_start_instead_of_being_replaced(short):
    long_run = short / ("r" * 60)
    error = _start_error(short, NEOMARIL_DATA_DIR=str(short / "d"), NEOMARIL_RUN_DIR=str(long_run))
    assert f"NEOMARIL_RUN_DIR={str(long_run)!r} is {len(str(long_run))} characters long" in error
    assert "at most 48" in error


def test_a_deep_node_folder_falls_back_to_a_short_run_folder(short):
    deep = short / ("d" * 60)
    found = _paths(short, NEOMARIL_DATA_DIR=str(deep))
    assert found["node"] == str(deep) and Path(found["run"]).name.startswith("neomaril-")
    assert len(found["run"]) <= 48


def test_a_metrics_token_no_header_can_carry_stops_the_start(short):
    error = _start_error(short, NEOMARIL_DATA_DIR=str(short / "d"), NEOMARIL_METRICS_TOKEN="tok en")
    assert "NEOMARIL_METRICS_TOKEN must be printable ASCII without spaces" in error
