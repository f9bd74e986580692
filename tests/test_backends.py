"""tests/backends.py: the suite's passes, its PostgreSQL and Redis servers, and what each
`make run` of the end-to-end tests gets of them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import dj_database_url
import psutil
import pytest
from django.db import connection

from tests import backends

SHOW_ENV = [
    sys.executable,
    "-c",
    "import os; print(os.environ.get('DATABASE_URL'), os.environ.get('REDIS_URL'))",
]


def test_the_sqlite_pass_runs_without_server_urls(monkeypatch, capfd):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db.internal/x")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal/0")
    assert backends.main(["sqlite", "--", *SHOW_ENV]) == 0
    out, err = capfd.readouterr()
    assert out.split() == ["None", "None"]
    assert "pass 1/1: sqlite" in err and "sqlite: passed in" in err


def test_a_failing_pass_fails_the_run_and_bad_usage_says_how(capfd):
    assert backends.main(["sqlite", "--", sys.executable, "-c", "raise SystemExit(3)"]) == 3
    assert "sqlite: FAILED (exit 3)" in capfd.readouterr().err
    for wrong in (
        ["mysql", "--", "true"],
        ["sqlite", "true"],
        ["sqlite", "--"],
        ["sqlite", "-x", "--", "true"],
    ):
        assert backends.main(wrong) == 2
        assert (
            "usage: python -m tests.backends sqlite|postgres|both [--postgres-args=" in capfd.readouterr().err
        )


def test_postgres_args_go_to_the_postgres_pass_only(monkeypatch, capfd):
    ran = []
    monkeypatch.setattr(backends, "run_pass", lambda backend, command: ran.append((backend, command)) or 0)
    assert backends.main(["both", "--postgres-args=-n 2 --e2e-serial", "--", "pytest", "-q"]) == 0
    assert ran == [
        ("sqlite", ["pytest", "-q"]),
        ("postgres", ["pytest", "-q", "-n", "2", "--e2e-serial"]),
    ]


@pytest.mark.parametrize(
    "database",
    [
        {"ENGINE": "django.db.backends.sqlite3", "NAME": "/tmp/x/test-db.sqlite3"},
        {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "test_neomaril_gw0",
            "USER": "postgres",
            "PASSWORD": "p@ss:word/1",
            "HOST": "127.0.0.1",
            "PORT": 5433,
        },
    ],
)
def test_database_url_names_the_same_database(database):
    parsed = dj_database_url.parse(backends.database_url(database))
    assert {k: parsed[k] for k in database} == database


def test_on_sqlite_a_portal_needs_nothing_but_its_folder(tmp_path):
    assert backends.portal_env(tmp_path, {}) == {}


def test_each_portal_folder_has_its_own_databases(db, tmp_path):
    """On the PostgreSQL pass: a database and a Redis database per data folder, the same
    ones for a portal started again on its folder."""
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL + Redis only: NEOMARIL_TEST_BACKENDS=postgres runs it")
    import psycopg
    import redis

    first, again, other = (backends.portal_env(p) for p in (tmp_path / "a", tmp_path / "a", tmp_path / "b"))
    assert first == again and first["DATABASE_URL"] != other["DATABASE_URL"]
    assert first["REDIS_URL"] != other["REDIS_URL"] != os.environ["REDIS_URL"]
    for env in (first, other):
        psycopg.connect(env["DATABASE_URL"]).close()  # it exists
        assert redis.from_url(env["REDIS_URL"]).ping()


@pytest.mark.slow
def test_the_servers_run_as_an_unprivileged_user_and_leave_nothing_behind(capfd):
    script = (
        "import os, psycopg, redis, psutil\n"
        "with psycopg.connect(os.environ['DATABASE_URL']) as db:\n"
        "    print(db.execute('SELECT version()').fetchone()[0].split()[1])\n"
        "print(redis.from_url(os.environ['REDIS_URL']).ping())\n"
        "servers = [p for p in psutil.process_iter(['name', 'username', 'ppid', 'cwd'])\n"
        "           if p.info['ppid'] == os.getppid() and p.info['name'] in ('postgres', 'redis-server')]\n"
        "print(sorted((p.info['name'], p.info['username']) for p in servers))\n"
        "print(os.path.dirname(next(p.info['cwd'] for p in servers if p.info['name'] == 'redis-server')))\n"
    )
    assert backends.main(["postgres", "--", sys.executable, "-c", script]) == 0
    out = capfd.readouterr().out.splitlines()
    assert out[0].startswith("15.") and out[1] == "True"
    postgres_user = "postgres" if os.geteuid() == 0 else psutil.Process().username()
    assert out[2] == str(sorted([("postgres", postgres_user), ("redis-server", psutil.Process().username())]))
    assert not Path(out[3]).exists()  # the throw-away folder is gone
    assert not [
        p for p in psutil.process_iter(["cmdline"]) if out[3] in " ".join(p.info["cmdline"] or [])
    ]  # and so are the servers
