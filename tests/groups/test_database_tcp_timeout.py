"""A kept PostgreSQL connection whose server goes silent mid-query (a network partition)
fails after DATABASE_TCP_TIMEOUT (portal/settings.py: TCP keepalives and tcp_user_timeout),
where libpq's defaults waited for hours.

The partition is made in a network namespace of the test's own (`unshare -rn`): a fake
server there completes libpq's start-up and takes the query without answering, then a
`blackhole` queueing discipline on the namespace's loopback drops every packet. The same
connection without the platform's options is the control: still waiting.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.portal.test_drain import _env

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow

PROBE = r"""
import os, socket, struct, subprocess, sys, threading, time

import django
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
django.setup()
from django.conf import settings
import psycopg

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
listener = socket.create_server(("127.0.0.1", 0))
port = listener.getsockname()[1]
queried = threading.Event()

def fake_postgres():
    conn, _ = listener.accept()
    while True:  # SSL / GSS encryption requests: refused, then the startup message
        length, code = struct.unpack("!ii", conn.recv(8))
        if code in (80877103, 80877104):
            conn.sendall(b"N")
            continue
        conn.recv(length - 8)
        break
    conn.sendall(b"R" + struct.pack("!ii", 8, 0) + b"K" + struct.pack("!iii", 12, 1, 2) + b"Z" + struct.pack("!i", 5) + b"I")
    conn.recv(1024)  # the query: never answered
    queried.set()
    time.sleep(3600)

threading.Thread(target=fake_postgres, daemon=True).start()
options = settings.DATABASES["default"]["OPTIONS"] if sys.argv[2] == "settings" else {}
db = psycopg.connect(host="127.0.0.1", port=port, user="u", dbname="n", sslmode="disable", **options)
outcome = {}

def query():
    started = time.monotonic()
    try:
        db.execute("SELECT 1")
        outcome["answer"] = "answered"
    except psycopg.OperationalError as exc:
        outcome["answer"] = f"failed: {exc}"
    outcome["seconds"] = time.monotonic() - started

worker = threading.Thread(target=query, daemon=True)
worker.start()
queried.wait(5)
time.sleep(0.2)  # the query's segment acknowledged
subprocess.run(["tc", "qdisc", "add", "dev", "lo", "root", "blackhole"], check=True)  # the partition
worker.join(float(sys.argv[1]))
print(outcome or "still waiting", flush=True)
os._exit(0)
"""


def _probe(tmp_path: Path, options: str, wait: float) -> subprocess.Popen:
    env = _env(  # this environment alone, not the suite's PostgreSQL pass's
        tmp_path,
        DATABASE_URL="postgres://u@127.0.0.1:1/n",  # only read for its options: never reached
        DATABASE_TCP_TIMEOUT="10",
    )
    return subprocess.Popen(
        ["unshare", "-rn", sys.executable, "-c", PROBE, str(wait), options],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_a_query_to_a_server_gone_silent_fails_after_the_tcp_timeout(tmp_path):
    missing = [tool for tool in ("unshare", "ip", "tc") if not shutil.which(tool)]
    assert not missing, f"this test needs {missing} (util-linux, iproute2) to make a network namespace"
    ours = _probe(tmp_path / "ours", "settings", wait=25)
    control = _probe(tmp_path / "control", "libpq-defaults", wait=20)
    ours_out, ours_err = ours.communicate(timeout=60)
    control_out, control_err = control.communicate(timeout=60)
    assert "failed:" in ours_out and "timed out" in ours_out, ours_out + ours_err
    seconds = float(ours_out.split("'seconds': ")[1].split("}")[0])
    assert 9 < seconds < 25  # DATABASE_TCP_TIMEOUT=10: probes from 10 s, given up by ~15 s
    assert "still waiting" in control_out, control_out + control_err  # the partition is real
