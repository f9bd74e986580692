"""`manage.py backup <folder>`: a copy of this installation to restore from
(docs/deployment.md, "Backups and restore").

The database first, as one consistent snapshot taken while the platform runs (SQLite's
online backup; `pg_dump` for PostgreSQL), then the data folder's files. In that order a
row of the snapshot finds its files in the copy, unless they were deleted in between
(a model or execution deleted during the backup); files added meanwhile are only extra.

The copy is made under a hidden name beside the destination and renamed into place at
the end: a backup that fails or is interrupted leaves no folder that looks complete.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection
from django.utils import timezone

# The data folder's own files, kept: what members uploaded and jobs wrote.
FOLDERS = ("models", "executions", "trainings", "monitors")
# Models' environments: rebuilt by a restart of each model, but that needs the package
# index and minutes per model; kept unless left out.
ENVIRONMENTS = "envs"
# Keys that `make run` generated in the data folder (production sets them in the environment).
KEY_FILES = ("secret_key", "encryption.key")
SQLITE_NAME = "db.sqlite3"
POSTGRES_NAME = "database.dump"
MANIFEST = "backup.json"


class Command(BaseCommand):
    help = (
        "Copy the database (a consistent snapshot, while the platform runs), the keys kept in "
        "the data folder and its files into a new folder, to restore from."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("destination", help="a folder that does not exist yet (or is empty)")
        parser.add_argument(
            "--without-environments",
            action="store_true",
            help="leave the models' environments out (each model is rebuilt after a restore)",
        )

    def handle(self, *args, destination: str, without_environments: bool, **options) -> None:
        target = Path(destination).expanduser().resolve()
        data = settings.DATA_DIR.resolve()
        if target == data or data in target.parents:
            raise CommandError(f"{target} is inside the data folder ({data}): back it up elsewhere.")
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise CommandError(f"{target} exists and is not an empty folder: name a new one.")
        if not target.parent.is_dir():
            raise CommandError(f"{target.parent} is not a folder: create it first.")
        draft = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
        draft.mkdir(mode=0o700)
        try:
            database = self._copy_database(draft)
            copied = self._copy_files(draft, without_environments)
            manifest = {
                "created_at": timezone.now().isoformat(),
                "database": database,
                "folders": copied,
                "keys_in_data_folder": [name for name in KEY_FILES if (draft / name).exists()],
                "keys_from_environment": _keys_from_environment(),
            }
            (draft / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
            if target.exists():
                target.rmdir()  # empty, checked above
            draft.rename(target)
        except BaseException:
            shutil.rmtree(draft, ignore_errors=True)
            raise
        self.stdout.write(
            f"Backed up to {target}: the database ({database}), {', '.join(copied) or 'no folders'}."
        )
        for name in manifest["keys_from_environment"]:
            self.stdout.write(
                f"{name} comes from the environment, not the data folder: keep its value with this "
                "backup (the stored secrets and sessions need it)."
            )

    def _copy_database(self, draft: Path) -> str:
        vendor = connection.vendor
        if vendor == "sqlite":
            source = sqlite3.connect(connection.settings_dict["NAME"])
            copy = sqlite3.connect(draft / SQLITE_NAME)
            try:
                with copy:
                    source.backup(copy)  # pages copied under SQLite's own locking: one snapshot
            finally:
                copy.close()
                source.close()
            return "sqlite"
        if vendor == "postgresql":
            self._pg_dump(draft / POSTGRES_NAME)
            return "postgresql"
        raise CommandError(f"No backup for a {vendor} database: use that database's own tools.")

    def _pg_dump(self, path: Path) -> None:
        if shutil.which("pg_dump") is None:
            raise CommandError("pg_dump is not installed (Debian: apt-get install postgresql-client).")
        db = connection.settings_dict
        env = {**os.environ, "PGPASSWORD": str(db.get("PASSWORD") or "")}
        argv = ["pg_dump", "--format=custom", "--no-owner", "--file", str(path), "--dbname", db["NAME"]]
        for flag, key in (("--host", "HOST"), ("--port", "PORT"), ("--username", "USER")):
            if db.get(key):
                argv += [flag, str(db[key])]
        done = subprocess.run(argv, env=env, capture_output=True, text=True)  # noqa: S603
        if done.returncode != 0:
            raise CommandError(f"pg_dump failed: {done.stderr.strip() or done.returncode}")

    def _copy_files(self, draft: Path, without_environments: bool) -> list[str]:
        copied = []
        for name in (*FOLDERS, *(() if without_environments else (ENVIRONMENTS,))):
            source = settings.DATA_DIR / name
            if source.is_dir():
                # Symlinks stay links: an environment's interpreter is one, to the node's Python.
                shutil.copytree(source, draft / name, symlinks=True, copy_function=_copy_unless_gone)
                copied.append(name)
        for name in KEY_FILES:
            source = settings.DATA_DIR / name
            if source.is_file():
                shutil.copy2(source, draft / name)
                os.chmod(draft / name, 0o600)
        return copied


def _copy_unless_gone(source: str, destination: str) -> None:
    """copy2, but a file deleted since the folder was listed (its model or execution
    deleted meanwhile) is left out rather than failing the backup."""
    try:
        shutil.copy2(source, destination)
    except FileNotFoundError:
        if os.path.exists(source):
            raise  # the destination's folder, not the file, is missing


def _keys_from_environment() -> list[str]:
    names = []
    if not settings.SECRET_KEY_FROM_FILE:
        names.append("SECRET_KEY")
    if not settings.ENCRYPTION_KEY_FROM_FILE:
        names.append("NEOMARIL_ENCRYPTION_KEY")
    return names
