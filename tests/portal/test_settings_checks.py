"""System checks and production settings."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.checks import run_checks
from django.db import connection
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]


def _ids(**overrides):
    with override_settings(**overrides):
        return {message.id for message in run_checks()}


def test_timeout_must_be_below_retry():
    assert "neomaril.E001" in _ids(Q_CLUSTER={**settings.Q_CLUSTER, "timeout": 600, "retry": 600})
    assert "neomaril.E001" not in _ids(Q_CLUSTER={**settings.Q_CLUSTER, "timeout": 2000, "retry": 2100})


def test_build_must_fit_in_task_timeout():
    assert "neomaril.E002" in _ids(ENV_BUILD_TIMEOUT=5000)


def test_file_limit_must_fit_in_upload_limit():
    assert "neomaril.E003" in _ids(MAX_UPLOAD_FILE_BYTES=10, MAX_UPLOAD_TOTAL_BYTES=5)


def test_runner_log_cap_must_stay_far_below_a_runners_file_size_limit():
    assert "neomaril.E006" in _ids(RUNNER_LOG_MAX_MB=200, SANDBOX_TMP_MB=512)
    assert "neomaril.E006" not in _ids(RUNNER_LOG_MAX_MB=64, SANDBOX_TMP_MB=512)


def _manage(args, env_overrides, tmp_path):
    """manage.py with the settings of this environment alone (not the suite's PostgreSQL pass's)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("NEOMARIL_", "DJANGO_")) and k not in ("DATABASE_URL", "REDIS_URL")
    }
    env.update({"NEOMARIL_DATA_DIR": str(tmp_path), **env_overrides})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )


PRODUCTION = {
    "DEBUG": "0",
    "SECRET_KEY": "x" * 20 + "production-secret-key-with-enough-entropy-0123456789",
    "ALLOWED_HOSTS": "neomaril.example.com",
    "NEOMARIL_HTTPS": "1",
    "NEOMARIL_HSTS_PRELOAD": "1",
    "NEOMARIL_ENCRYPTION_KEY": Fernet.generate_key().decode(),
}


def test_check_deploy_passes_with_production_environment(tmp_path):
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], PRODUCTION, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_warns_about_generated_secrets(tmp_path):
    env = {k: v for k, v in PRODUCTION.items() if k not in ("SECRET_KEY", "NEOMARIL_ENCRYPTION_KEY")}
    result = _manage(["check", "--deploy", "--fail-level", "WARNING"], env, tmp_path)
    assert result.returncode != 0
    assert "neomaril.W001" in result.stderr and "neomaril.W002" in result.stderr


def test_check_deploy_errors_when_user_code_runs_unsandboxed(tmp_path):
    result = _manage(["check", "--deploy"], {**PRODUCTION, "NEOMARIL_UNSAFE_NO_SANDBOX": "1"}, tmp_path)
    assert result.returncode != 0
    assert "neomaril.E004" in result.stderr and "NEOMARIL_UNSAFE_NO_SANDBOX" in result.stderr


def test_admins_see_a_banner_when_user_code_runs_unsandboxed(admin_client, client, django_user_model):
    with override_settings(UNSAFE_NO_SANDBOX=True):
        assert b'id="unsafe-sandbox-banner"' in admin_client.get("/").content
        member = django_user_model.objects.create_user("member-banner", password="pw-member-banner")
        client.force_login(member)
        assert b'id="unsafe-sandbox-banner"' not in client.get("/").content
    assert b'id="unsafe-sandbox-banner"' not in admin_client.get("/").content


def test_bad_environment_value_fails_loudly(tmp_path):
    result = _manage(["check"], {"NEOMARIL_WORKERS": "lots"}, tmp_path)
    assert result.returncode != 0
    assert "NEOMARIL_WORKERS='lots' is not a whole number" in result.stderr


def test_the_log_level_is_read_in_any_case_and_a_bad_one_is_named(tmp_path):
    result = _manage(["check"], {"NEOMARIL_LOG_LEVEL": "debug"}, tmp_path)
    assert result.returncode == 0, result.stderr  # was "Unknown level: 'debug'", and no process started
    result = _manage(["check"], {"NEOMARIL_LOG_LEVEL": "loud"}, tmp_path)
    assert result.returncode != 0
    assert "NEOMARIL_LOG_LEVEL='loud' is not one of: DEBUG, INFO, WARNING, ERROR, CRITICAL" in result.stderr


def test_the_data_and_node_folders_are_closed_to_other_local_users(tmp_path):
    """They were made with the default umask (0755): any local user could list and read
    every execution's results (an execution's own folder is 0755 for its sandbox)."""
    made, opened, node = tmp_path / "made", tmp_path / "opened", tmp_path / "node"
    opened.mkdir(mode=0o755)
    opened.chmod(0o755)
    for data in (made, opened):
        assert (
            _manage(
                ["check"], {"NEOMARIL_DATA_DIR": str(data), "NEOMARIL_NODE_DIR": str(node)}, data.parent
            ).returncode
            == 0
        )
        assert (data.stat().st_mode & 0o777, node.stat().st_mode & 0o777) == (0o700, 0o700)


def test_redis_url_selects_redis_broker(tmp_path):
    code = "from django.conf import settings; print(settings.Q_CLUSTER.get('redis'), settings.Q_CLUSTER.get('orm'))"
    result = _manage(
        ["shell", "--no-imports", "-c", code], {"REDIS_URL": "redis://127.0.0.1:6390/0"}, tmp_path
    )
    assert result.stdout.split() == ["redis://127.0.0.1:6390/0", "None"], result.stderr
    result = _manage(["shell", "--no-imports", "-c", code], {}, tmp_path)
    assert result.stdout.split() == ["None", "default"], result.stderr


def test_the_orm_broker_is_polled_every_100_ms_unless_told(tmp_path):
    # The poll is the wait between an upload and its build's start (it was 0.5 s).
    code = "from django.conf import settings; print(settings.Q_CLUSTER['poll'])"
    result = _manage(["shell", "--no-imports", "-c", code], {}, tmp_path)
    assert result.stdout.split() == ["0.1"], result.stderr
    result = _manage(["shell", "--no-imports", "-c", code], {"NEOMARIL_QUEUE_POLL_MS": "250"}, tmp_path)
    assert result.stdout.split() == ["0.25"], result.stderr
    result = _manage(["check"], {"NEOMARIL_QUEUE_POLL_MS": "0"}, tmp_path)
    assert "NEOMARIL_QUEUE_POLL_MS=0 is below the minimum of 10" in result.stderr


def test_database_url_selects_postgres(tmp_path):
    code = "from django.conf import settings; d = settings.DATABASES['default']; print(d['ENGINE'], d['NAME'], d['HOST'])"
    result = _manage(
        ["shell", "--no-imports", "-c", code],
        {"DATABASE_URL": "postgres://u:p@db.internal:5432/neomaril"},
        tmp_path,
    )
    assert result.stdout.split() == ["django.db.backends.postgresql", "neomaril", "db.internal"], (
        result.stderr
    )


_OPTIONS = "import json; from django.conf import settings; print(json.dumps(settings.DATABASES['default']['OPTIONS']))"


def test_a_postgres_connection_gives_up_on_a_silent_server(tmp_path):
    result = _manage(
        ["shell", "--no-imports", "-c", _OPTIONS], {"DATABASE_URL": "postgres://u@db.internal/n"}, tmp_path
    )
    options = json.loads(result.stdout)
    assert options == {
        "connect_timeout": 5,
        "keepalives": 1,
        "keepalives_idle": 10,
        "keepalives_interval": 5,
        "keepalives_count": 3,
        "tcp_user_timeout": 30000,
    }, result.stderr


def test_the_tcp_timeout_is_set_by_the_environment_and_the_url_wins(tmp_path):
    url = "postgres://u@db.internal/n?keepalives_idle=60&tcp_user_timeout=5000"
    result = _manage(
        ["shell", "--no-imports", "-c", _OPTIONS],
        {"DATABASE_URL": url, "DATABASE_TCP_TIMEOUT": "45", "DATABASE_CONNECT_TIMEOUT": "7"},
        tmp_path,
    )
    options = json.loads(result.stdout)
    assert options["keepalives_idle"] in (60, "60") and options["tcp_user_timeout"] in (5000, "5000")
    assert options["connect_timeout"] == 7, result.stderr
    result = _manage(
        ["shell", "--no-imports", "-c", _OPTIONS],
        {"DATABASE_URL": "postgres://u@db.internal/n", "DATABASE_TCP_TIMEOUT": "45"},
        tmp_path,
    )
    assert json.loads(result.stdout)["tcp_user_timeout"] == 45000, result.stderr


def test_check_deploy_warns_when_models_share_the_nodes_network(tmp_path):
    result = _manage(
        ["check", "--deploy", "--fail-level", "WARNING"],
        {**PRODUCTION, "NEOMARIL_SANDBOX_NETWORK": "host"},
        tmp_path,
    )
    assert result.returncode != 0
    assert "neomaril.W003" in result.stderr and "NEOMARIL_SANDBOX_NETWORK=host" in result.stderr
    from portal.checks import check_sandbox

    assert check_sandbox(None) == []  # the default: a private network
    with override_settings(SANDBOX_NETWORK="host"):
        assert [message.id for message in check_sandbox(None)] == ["neomaril.W003"]


def test_every_system_check_has_an_id_of_its_own():
    # The docs name checks by id (docs/configuration.md): two messages under one id
    # would send an operator to the wrong setting.
    found: dict[str, list[str]] = {}
    for app in ("portal", "groups", "models_app", "executions", "training", "monitors", "monitoring"):
        for source in (ROOT / app).rglob("*.py"):
            for check_id in re.findall(r'id="(neomaril\.[EW]\d+)"', source.read_text()):
                found.setdefault(check_id, []).append(str(source.relative_to(ROOT)))
    assert len(found) >= 10
    assert {check_id: where for check_id, where in found.items() if len(where) > 1} == {}


def test_sqlite_connections_cap_the_write_ahead_log(db):
    """Without a limit the -wal file keeps its largest size (380 MB after a burst of large
    inputs, in the soak audit) until the last connection closes."""
    if connection.vendor != "sqlite":
        pytest.skip("SQLite only: the default pass runs it")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_size_limit")
        assert cursor.fetchone()[0] == 64 * 1024 * 1024
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
