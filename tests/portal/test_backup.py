"""`manage.py backup`: a copy to restore from, whole or not at all (docs/deployment.md)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import connection

from groups import crypto
from models_app.models import MLModel
from portal.management.commands import backup
from tests.backends import portal_env
from tests.helpers.monitors import deployed_model

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)  # the copy reads what is committed


@pytest.fixture
def stored(cast):
    """A model with its files, an environment (its interpreter a symlink) and a secret."""
    model = deployed_model(cast.group, name="kept", env_ciphertext=crypto.encrypt_env({"API_KEY": "s3cret"}))
    model.folder.mkdir(parents=True, exist_ok=True)
    (model.folder / "app.py").write_text("def score(data, base_path):\n    return data\n")
    environment = settings.ENVS_DIR / "f00d"
    (environment / "bin").mkdir(parents=True, exist_ok=True)
    link = environment / "bin" / "python"
    if not link.is_symlink():
        link.symlink_to(sys.executable)
    yield model
    shutil.rmtree(model.folder, ignore_errors=True)
    shutil.rmtree(environment, ignore_errors=True)


def test_backup_holds_the_database_keys_and_files(stored, tmp_path):
    target = tmp_path / "nightly"
    call_command("backup", str(target))
    manifest = json.loads((target / "backup.json").read_text())
    assert manifest["database"] == connection.vendor
    assert {"models", "envs"} <= set(manifest["folders"])
    assert (
        (target / "models" / stored.folder.relative_to(settings.MODELS_DIR) / "app.py")
        .read_text()
        .startswith("def score")
    )
    assert (target / "envs" / "f00d" / "bin" / "python").is_symlink()  # a link still, not a copy
    for name in manifest["keys_in_data_folder"]:
        assert (target / name).read_text() == (settings.DATA_DIR / name).read_text()
        assert (target / name).stat().st_mode & 0o777 == 0o600
    assert "encryption.key" in manifest["keys_in_data_folder"]
    if connection.vendor == "sqlite":
        import sqlite3

        with sqlite3.connect(target / "db.sqlite3") as copy:
            query = f"SELECT name FROM {MLModel._meta.db_table}"  # noqa: S608  (a table name)
            names = {row[0] for row in copy.execute(query)}
        assert "kept" in names
    else:
        listing = subprocess.run(
            ["pg_restore", "--list", str(target / "database.dump")],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        assert MLModel._meta.db_table in listing
    assert not list(tmp_path.glob(".nightly.partial-*"))


def test_without_environments_leaves_them_out(stored, tmp_path):
    call_command("backup", str(tmp_path / "small"), "--without-environments")
    assert not (tmp_path / "small" / "envs").exists()
    assert "envs" not in json.loads((tmp_path / "small" / "backup.json").read_text())["folders"]


def test_backup_refuses_a_destination_it_would_overwrite_or_copy_into_itself(stored, tmp_path):
    used = tmp_path / "used"
    used.mkdir()
    (used / "old.txt").write_text("keep me")
    with pytest.raises(CommandError, match="exists and is not an empty folder: name a new one"):
        call_command("backup", str(used))
    assert (used / "old.txt").read_text() == "keep me"
    with pytest.raises(CommandError, match="is inside the data folder"):
        call_command("backup", str(settings.DATA_DIR / "backups" / "b1"))
    with pytest.raises(CommandError, match="is not a folder: create it first"):
        call_command("backup", str(tmp_path / "missing" / "b1"))
    empty = tmp_path / "empty"
    empty.mkdir()
    call_command("backup", str(empty))  # an empty folder made for it is fine
    assert (empty / "backup.json").exists()


def test_a_failed_backup_leaves_nothing_that_looks_complete(stored, tmp_path, monkeypatch):
    def disk_full(self, draft, without_environments):
        (draft / "models").mkdir()
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(backup.Command, "_copy_files", disk_full)
    with pytest.raises(OSError, match="No space left"):
        call_command("backup", str(tmp_path / "nightly"))
    assert list(tmp_path.iterdir()) == []


def test_a_file_deleted_while_the_folder_is_copied_is_left_out(tmp_path):
    (tmp_path / "gone.csv").write_text("x")
    source = tmp_path / "gone.csv"
    source.unlink()  # listed by copytree before, deleted (with its execution) since
    backup._copy_unless_gone(str(source), str(tmp_path / "copy.csv"))
    assert not (tmp_path / "copy.csv").exists()
    with pytest.raises(FileNotFoundError):  # a missing destination folder is still an error
        (tmp_path / "there.csv").write_text("y")
        backup._copy_unless_gone(str(tmp_path / "there.csv"), str(tmp_path / "no" / "copy.csv"))


def test_a_restored_data_folder_serves_its_secrets_and_files(stored, tmp_path):
    call_command("backup", str(tmp_path / "nightly"))
    restored = tmp_path / "restored"
    shutil.copytree(tmp_path / "nightly", restored, symlinks=True)  # the documented restore: copy back
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("NEOMARIL_", "DJANGO_", "DATABASE_URL", "SECRET_KEY"))
    }
    env.update(NEOMARIL_DATA_DIR=str(restored), DJANGO_SETTINGS_MODULE="portal.settings")
    env.update(portal_env(restored))  # on PostgreSQL, an empty database of its own
    if connection.vendor == "postgresql":
        subprocess.run(
            ["pg_restore", "--no-owner", "--dbname", env["DATABASE_URL"], str(restored / "database.dump")],
            check=True,
            capture_output=True,
        )
    script = (
        "from models_app.models import MLModel; from models_app.services import decrypted_env;"
        f"m = MLModel.objects.get(hash={stored.hash!r}); print(decrypted_env(m)['API_KEY'],"
        " (m.folder / 'app.py').exists())"
    )
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[-2:] == ["s3cret", "True"]
