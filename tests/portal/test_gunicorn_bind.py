"""NEOMARIL_BIND as gunicorn reads it (portal/gunicorn.conf.py): IPv6 addresses included."""

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
