"""gunicorn's settings as portal/gunicorn.conf.py reads them: NEOMARIL_BIND (IPv6 addresses
included), and the numbers and switches, whose bad values name their variable."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READ_BIND = (
    "import json, runpy; from gunicorn.util import parse_address; "
    "print(json.dumps(parse_address(runpy.run_path('portal/gunicorn.conf.py')['bind'])))"
)


@pytest.mark.parametrize(
    ("bind", "expected"),
    [
        (None, ["127.0.0.1", 18555]),
        ("0.0.0.0", ["0.0.0.0", 18555]),  # noqa: S104  (a value read, nothing bound)
        ("::", ["::", 18555]),  # docs/configuration.md names this one: it was "':::18555'", no port
        ("::1", ["::1", 18555]),
        ("[::]", ["::", 18555]),
    ],
)
def test_the_bind_address_reaches_gunicorn_whole(tmp_path, bind, expected):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEOMARIL_")}
    environ.update({"NEOMARIL_DATA_DIR": str(tmp_path), "PORT": "18555"})
    if bind is not None:
        environ["NEOMARIL_BIND"] = bind
    result = subprocess.run(
        [sys.executable, "-c", READ_BIND], cwd=ROOT, env=environ, capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == expected


READ_SETTINGS = (
    "import json, runpy; c = runpy.run_path('portal/gunicorn.conf.py'); "
    "print(json.dumps([c['workers'], c['timeout'], c['accesslog']]))"
)


def _read_settings(tmp_path, **values):
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith("NEOMARIL_") and k != "WEB_CONCURRENCY"
    }
    environ.update({"NEOMARIL_DATA_DIR": str(tmp_path), **values})
    return subprocess.run(
        [sys.executable, "-c", READ_SETTINGS], cwd=ROOT, env=environ, capture_output=True, text=True
    )


def test_workers_timeout_and_access_log_are_read_as_documented(tmp_path):
    result = _read_settings(
        tmp_path, WEB_CONCURRENCY="3", NEOMARIL_WEB_TIMEOUT="60", NEOMARIL_ACCESS_LOG="true"
    )
    assert json.loads(result.stdout) == [3, 60, "-"]  # "true" was ignored: only "1" turned it on
    assert json.loads(_read_settings(tmp_path, NEOMARIL_ACCESS_LOG="0").stdout)[2] is None


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        # 0 workers: a master that binds nothing and serves nothing, shown RUNNING by supervisord.
        ("WEB_CONCURRENCY", "0", "WEB_CONCURRENCY=0 is below the minimum of 1."),
        ("WEB_CONCURRENCY", "lots", "WEB_CONCURRENCY='lots' is not a whole number."),
        ("NEOMARIL_WEB_TIMEOUT", "5m", "NEOMARIL_WEB_TIMEOUT='5m' is not a whole number."),
        ("NEOMARIL_ACCESS_LOG", "maybe", "NEOMARIL_ACCESS_LOG='maybe' is not a boolean"),
    ],
)
def test_a_bad_value_stops_gunicorn_naming_its_variable(tmp_path, variable, value, message):
    result = _read_settings(tmp_path, **{variable: value})
    assert result.returncode != 0
    assert message in result.stderr
