"""Two nodes behind HAProxy on one machine (docs/deployment.md, "Production layout").

Two `make run`s share one data folder, one PostgreSQL and one Redis, each with its own
port and node folder (NEOMARIL_NODE_DIR), behind deploy/haproxy.cfg as it is (its
"production only" lines left out, this machine's addresses in place of the example
ones). Both nodes start at the same time, as a fleet restarted at once would (the
migrations, the generated secrets and the admin are created once between them).

A model deployed through node A answers through A, B and the balancer; an Async
execution submitted on A is downloaded from B; the model rebuilt through A is warm on
both nodes before either takes a call. Then, while callers keep calling through
the balancer and executions are submitted, node A is stopped the way a service manager
stops it (SIGTERM to its supervisord; NEOMARIL_WEB_DRAIN_SECONDS lets HAProxy take it out
first): no call fails, uploads included, and every execution finishes. Node A started
again takes calls from the balancer again. Last, node B is killed outright (every
process of it, as in a power cut) while it runs executions: calls still do not fail
(the balancer retries them on A), and A's worker runs B's executions again.

PostgreSQL and Redis are the pass's (postgres pass) or started here (sqlite pass: the
layout needs them); HAProxy and the servers are Debian's packages, installed when root.
Anything missing fails the test, saying what.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests import backends
from tests.helpers.processes import ROOT, PortalClient, RunningPortal, free_port, wait_gone

pytestmark = pytest.mark.slow

SYNC_FILES = {
    "source": (
        "app.py",
        b"import json\n\ndef score(data, base_path):\n    return {'y': json.loads(data)['x'] * 2}\n",
    ),
    "model": ("model.pkl", b"unused"),
    "requirements": ("requirements.txt", b""),
    "schema": ("schema.json", b'{"x": 1}'),
}
ASYNC_SOURCE = b"""import os
import time


def score(data_path, model_path):
    with open(os.path.join(data_path, os.environ["inputFileName"])) as f:
        text = f.read()
    if text.startswith("slow"):  # still running when its node is killed
        time.sleep(8)
    output = os.path.join(data_path, "output.csv")
    with open(output, "w") as f:
        f.write(text.upper())
    return output
"""
ASYNC_FILES = {
    "source": ("app.py", ASYNC_SOURCE),
    "model": ("model.pkl", b"unused"),
    "requirements": ("requirements.txt", b""),
}
# Calls through the balancer while node A stops: bounded in time and in number.
LOAD_LIMIT_S, LOAD_MAX_CALLS = 300, 20_000


def _fail(message: str):
    pytest.fail(message, pytrace=False)


@contextlib.contextmanager
def database_and_broker(data_dir: Path):
    """DATABASE_URL and REDIS_URL for the nodes: the pass's servers, else our own."""
    if os.environ.get("DATABASE_URL", "").startswith(("postgres://", "postgresql://")) and os.environ.get(
        "REDIS_URL"
    ):
        yield backends.portal_env(data_dir)
        return
    try:
        with backends.servers() as urls:
            yield backends.portal_env(data_dir, environ=urls)
    except backends.BackendError as exc:
        _fail(f"Several nodes need PostgreSQL and Redis: {exc}")


def haproxy_config(*, bind: int, stats: int, nodes: dict[str, int]) -> str:
    """deploy/haproxy.cfg without its production-only lines, on this machine's ports."""
    text = (ROOT / "deploy" / "haproxy.cfg").read_text()
    lines = [line for line in text.splitlines() if "production only" not in line]
    text = "\n".join(lines) + "\n"
    text = text.replace("    bind :80\n", f"    bind 127.0.0.1:{bind}\n")
    text = text.replace("bind 127.0.0.1:8404", f"bind 127.0.0.1:{stats}")
    text = text.replace("neomaril.example.com", "127.0.0.1")
    servers = [line for line in text.splitlines() if re.match(r"\s+server node\d ", line)]
    assert len(servers) == len(nodes), servers
    for line, (name, port) in zip(servers, nodes.items(), strict=True):
        text = text.replace(line, re.sub(r"server node\d \S+", f"server {name} 127.0.0.1:{port}", line))
    # Its request log on standard output (the test's log file) instead of syslog.
    return text.replace("global\n", "global\n    log stdout format raw local0\n", 1)


@contextlib.contextmanager
def running_haproxy(folder: Path, config: str):
    try:
        backends.ensure_package("/usr/sbin/haproxy", "haproxy")
    except backends.BackendError as exc:
        _fail(f"The several-nodes test runs Debian's HAProxy: {exc}")
    path = folder / "haproxy.cfg"
    path.write_text(config)
    check = subprocess.run(["/usr/sbin/haproxy", "-c", "-q", "-f", path], capture_output=True, text=True)
    assert check.returncode == 0, f"deploy/haproxy.cfg does not load:\n{check.stdout}{check.stderr}"
    log = open(folder / "haproxy.log", "ab")  # noqa: SIM115  (closed below)
    process = subprocess.Popen(
        ["/usr/sbin/haproxy", "-db", "-f", path],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def stats(url: str) -> dict[str, dict]:
    """HAProxy's rows of the neomaril backend's servers: status, answers by class..."""
    text = requests.get(f"{url}/stats;csv", timeout=5).text.lstrip("# ")
    rows = csv.DictReader(io.StringIO(text))
    return {
        row["svname"]: row
        for row in rows
        if row["pxname"] == "neomaril" and row["svname"] not in ("FRONTEND", "BACKEND")
    }


def wait_until(condition, what: str, timeout: float, pause: float = 0.3, last_seen=None):
    """`last_seen()`, when given, says in the failure what was seen last (CI shows only the message)."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            seen = f"; last seen: {last_seen()}" if last_seen else ""
            raise AssertionError(f"{what}: not within {timeout} s{seen}")
        time.sleep(pause)


class Caller(threading.Thread):
    """Sync calls through the balancer, one after another, until stopped (bounded)."""

    def __init__(self, url: str, model_hash: str, token: str):
        super().__init__(daemon=True)
        self.url, self.model_hash, self.token = url, model_hash, token
        self.outcomes: list[tuple[float, int | str]] = []  # (when, status or error)
        self.halt = threading.Event()

    def run(self) -> None:
        deadline = time.monotonic() + LOAD_LIMIT_S
        while not self.halt.is_set() and time.monotonic() < deadline and len(self.outcomes) < LOAD_MAX_CALLS:
            x = len(self.outcomes)
            try:
                response = requests.post(
                    f"{self.url}/api/v1/run/{self.model_hash}",
                    json={"x": x},
                    headers={"Authorization": f"Bearer {self.token}"},
                    timeout=30,
                )
                ok = response.status_code == 200 and response.json() == {"y": 2 * x}
                outcome = 200 if ok else f"{response.status_code} {response.text[:200]}"
            except requests.RequestException as exc:
                outcome = f"{type(exc).__name__}: {exc}"
            self.outcomes.append((time.monotonic(), outcome))


def sync_call(url: str, model_hash: str, token: str, x: int) -> dict:
    response = requests.post(
        f"{url}/api/v1/run/{model_hash}",
        json={"x": x},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return response.json()


def submit(url: str, model_hash: str, token: str, text: str) -> int:
    response = requests.post(
        f"{url}/api/v1/run/{model_hash}",
        files={"file": ("input.csv", text.encode())},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )
    assert response.status_code == 202, response.text
    return response.json()["execution_id"]


def execution(url: str, model_hash: str, token: str, number: int) -> dict:
    return requests.get(
        f"{url}/api/v1/run/{model_hash}/executions/{number}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()


def execution_log(url: str, model_hash: str, token: str, number: int) -> str:
    return requests.get(
        f"{url}/api/v1/run/{model_hash}/executions/{number}/log",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ).json()["log"]


def succeeded(
    url: str, model_hash: str, token: str, expected: dict[int, str], what: str, timeout: float
) -> dict:
    """Wait (bounded) until every execution has finished; each must have Succeeded with its
    expected result. Returns their details."""

    seen: dict[int, dict] = {}

    def all_finished():
        seen.update({n: execution(url, model_hash, token, n) for n in expected})
        return all(s["status"] in ("Succeeded", "Failed") for s in seen.values()) and dict(seen)

    def last_seen() -> dict:  # what a CI failure needs to tell a lost task from a stuck run
        return {
            n: (s["status"], s.get("attempts"), execution_log(url, model_hash, token, n)[-600:])
            for n, s in seen.items()
        }

    states = wait_until(all_finished, what, timeout, pause=1, last_seen=last_seen)
    assert {n: s["status"] for n, s in states.items()} == dict.fromkeys(expected, "Succeeded"), states
    for n, text in expected.items():
        result = requests.get(
            f"{url}/api/v1/run/{model_hash}/executions/{n}/result",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        assert result.content == text.encode()
    return states


def supervisorctl(node_dir: Path, *args: str) -> str:
    """The node's supervisord, through its control socket (as an operator would)."""
    completed = subprocess.run(
        [
            str(Path(sys.executable).parent / "supervisorctl"),
            "-s",
            f"unix://{node_dir}/supervisor.sock",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return completed.stdout


def test_two_nodes_behind_haproxy(tmp_path):
    data_dir, node_a, node_b = tmp_path / "shared", tmp_path / "node-a", tmp_path / "node-b"
    ports = {"node_a": free_port(), "node_b": free_port()}
    lb_port, stats_port = free_port(), free_port()
    lb, stats_url = f"http://127.0.0.1:{lb_port}", f"http://127.0.0.1:{stats_port}"
    started: list[RunningPortal] = []
    callers: list[Caller] = []

    def start(name: str, node_dir: Path, **env) -> RunningPortal:
        node = RunningPortal(
            data_dir,
            node_dir=node_dir,
            port=ports[name],
            # Machines of their own by name: a stale job of the other node goes through
            # the cross-node recovery (is its node's worker alive?), not the same-host one.
            hostname=name.replace("_", "-"),
            extra_env={
                **shared_env,
                # A node whose worker died mid-run is noticed sooner than the default 90 s.
                "NEOMARIL_EXECUTION_STALE_SECONDS": "15",
                # A stopping node serves on until HAProxy has taken it out (2 failed
                # checks, 2 s apart), as docs/deployment.md has it.
                "NEOMARIL_WEB_DRAIN_SECONDS": "8",
                # The balancer's address, as docs/deployment.md has every node say.
                "NEOMARIL_TRUSTED_PROXIES": "127.0.0.1",
                **env,
            },
        )
        started.append(node)
        return node

    with (
        database_and_broker(data_dir) as shared_env,
        running_haproxy(tmp_path, haproxy_config(bind=lb_port, stats=stats_port, nodes=ports)) as haproxy,
    ):
        try:
            # Both at once. Node B's sandboxes take other uids than A's: the uid pool's
            # leases are kept in each node's own folder (docs/deployment.md).
            a = start("node_a", node_a)
            b = start("node_b", node_b, NEOMARIL_SANDBOX_UID_BASE="201000")
            for node in (a, b):
                node.wait_healthy(timeout=240)
            # One database, one set of keys and one admin for both (started together).
            assert (data_dir / "secret_key").is_file() and not (node_a / "secret_key").exists()
            assert (node_a / "staticfiles" / "staticfiles.json").is_file()
            assert (node_b / "staticfiles" / "staticfiles.json").is_file()
            assert not (data_dir / "staticfiles").exists()
            assert (node_a / "supervisor.sock").exists() and (node_b / "supervisor.sock").exists()
            wait_until(lambda: all(s["status"] == "UP" for s in stats(stats_url).values()), "both UP", 30)

            # Deploy through node A, call through A, B and the balancer.
            client_a = PortalClient(a)
            token = client_a.create_group("nodes")
            sync_hash = client_a.deploy(group="nodes", files=SYNC_FILES, name="sync on nodes")
            for url in (a.url, b.url, lb, lb):
                assert sync_call(url, sync_hash, token, 21) == {"y": 42}
            # A session made on A is good on B (sessions and tokens live in the database).
            assert requests.get(f"{b.url}/api/v1/models/{sync_hash}", headers=client_a.headers, timeout=30).ok
            # The scheme is the balancer's to say (the nodes trust its X-Forwarded-Proto),
            # never the client's: a forged "https" made every absolute URL https.
            forged = {**client_a.headers, "X-Forwarded-Proto": "https"}
            detail = requests.get(f"{lb}/api/v1/models/{sync_hash}", headers=forged, timeout=30).json()
            assert detail["run_url"].startswith("http://"), detail["run_url"]

            # An Async execution submitted on A, downloaded from B.
            async_hash = client_a.deploy(
                group="nodes", files=ASYNC_FILES, name="async on nodes", operation="Async"
            )
            number = submit(a.url, async_hash, token, "x,y\n1,2\n")
            done = wait_until(
                lambda: (
                    (e := execution(b.url, async_hash, token, number))["status"] in ("Succeeded", "Failed")
                    and e
                ),
                "the execution submitted on A",
                120,
            )
            assert done["status"] == "Succeeded", done
            result = requests.get(
                f"{b.url}/api/v1/run/{async_hash}/executions/{number}/result",
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            )
            assert result.status_code == 200 and result.content == b"X,Y\n1,2\n"

            # A rebuild through A, built by either node's worker, is warm on both nodes
            # before either takes a call: the other node's model host follows the switch.
            restarted = client_a.post(f"/api/v1/models/{sync_hash}/restart")
            assert restarted.status_code == 200, restarted.text
            assert client_a.wait_status(sync_hash, {"Deployed", "Failed"}, 180) == "Deployed"

            runners_seen: dict[str, list] = {}

            def new_build_warm(node: RunningPortal) -> bool:
                runners = requests.get(
                    f"{node.url}/api/v1/models/{sync_hash}/runners", headers=client_a.headers, timeout=30
                ).json()["runners"]
                runners_seen[node.url] = [(r["build"], r["replica"], r["alive"]) for r in runners]
                return [(r["build"], r["alive"]) for r in runners] == [(2, True)]

            wait_until(
                lambda: new_build_warm(a) & new_build_warm(b),  # both asked, for the failure's message
                "build 2 warm on both nodes",
                60,
                last_seen=lambda: runners_seen,
            )
            for url in (a.url, b.url):
                assert sync_call(url, sync_hash, token, 4) == {"y": 8}

            # Node A stops under load: calls go on through B, no execution is lost.
            callers += [Caller(lb, sync_hash, token) for _ in range(2)]
            for caller in callers:
                caller.start()

            def calls() -> list[tuple[float, int | str]]:
                return sorted(o for caller in callers for o in caller.outcomes)

            def failures() -> list[tuple[float, int | str]]:
                return [o for o in calls() if o[1] != 200]

            wait_until(lambda: len(calls()) >= 20, "calls through the balancer", 60)
            before = stats(stats_url)
            assert int(before["node_a"]["hrsp_2xx"]) > 0 and int(before["node_b"]["hrsp_2xx"]) > 0
            submitted = {submit(lb, async_hash, token, f"n\n{i}\n"): f"N\n{i}\n" for i in range(4)}
            stopping = time.monotonic()
            a.supervisord().send_signal(signal.SIGTERM)  # what systemctl stop sends
            submitted.update({submit(lb, async_hash, token, f"n\n{i}\n"): f"N\n{i}\n" for i in range(4, 8)})
            try:
                a.process.wait(90)  # supervisord stopped its programs and exited
            except subprocess.TimeoutExpired:
                raise AssertionError(f"node A did not stop within 90 s:\n{a.log()}") from None
            stopped = time.monotonic()
            a.stop()
            assert not a.survivors, a.survivors
            wait_until(lambda: stats(stats_url)["node_a"]["status"].startswith("DOWN"), "A marked DOWN", 30)
            # Taken out by its draining /healthz while it still served, not by refusing.
            taken_out = "node_a is DOWN, reason: Layer7 wrong status, code: 503"
            assert taken_out in (tmp_path / "haproxy.log").read_text()
            calls_while_a_stopped = len(calls())
            wait_until(lambda: len(calls()) >= calls_while_a_stopped + 20, "calls through B alone", 60)
            during = [o for o in calls() if stopping <= o[0] <= stopped]
            assert during, "no call was made while node A was stopping"
            assert failures() == [], (failures()[:10], f"node A stopped in {stopped - stopping:.1f} s")

            # Every execution finishes (run by A before it stopped, or by B), none lost or stuck.
            succeeded(lb, async_hash, token, submitted, "the executions submitted around the stop", 150)

            # Node A started again: the balancer sends calls to it again.
            a = start("node_a", node_a)
            a.wait_healthy(timeout=240)
            answered_by_a = int(stats(stats_url)["node_a"]["hrsp_2xx"])
            wait_until(lambda: stats(stats_url)["node_a"]["status"] == "UP", "A back UP", 60)
            wait_until(
                lambda: int(stats(stats_url)["node_a"]["hrsp_2xx"]) >= answered_by_a + 10,
                "calls answered by A again",
                60,
            )
            for caller in callers:
                caller.halt.set()
            for caller in callers:
                caller.join(40)
            assert failures() == [], failures()[:10]

            # Node B lost (every process of it killed, as in a power cut) while it runs
            # executions: the balancer retries the calls it had on A, and A's worker runs
            # B's executions again once their heartbeat is stale. A's worker is stopped
            # meanwhile so that B's takes them.
            supervisorctl(node_a, "stop", "worker")
            callers[:] = [Caller(lb, sync_hash, token) for _ in range(2)]
            for caller in callers:
                caller.start()
            slow = {submit(lb, async_hash, token, f"slow\n{i}\n"): f"SLOW\n{i}\n" for i in range(2)}
            wait_until(
                lambda: any(execution(lb, async_hash, token, n)["status"] == "Running" for n in slow),
                "an execution running on B",
                60,
            )
            node_b_processes = b.tree()
            for process in node_b_processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
            assert wait_gone(node_b_processes, timeout=15) == []
            supervisorctl(node_a, "start", "worker")
            calls_at_kill = len(calls())
            wait_until(lambda: len(calls()) >= calls_at_kill + 20, "calls after B was killed", 60)

            # Stale after 15 s, recovered by the housekeeping A's worker runs every minute.
            states = succeeded(lb, async_hash, token, slow, "the executions of the killed node", 240)
            assert max(s["attempts"] for s in states.values()) == 2, states  # run again, not just queued
            rerun = [n for n, state in states.items() if state["attempts"] == 2]
            logs = [execution_log(lb, async_hash, token, n) for n in rerun]
            # Run again by node A. (Attempt 1 was node B's, A's worker being stopped; it may have
            # died between its claim and its first log line, so only its absence on A is checked.)
            assert all("attempt 2 on node-a" in log for log in logs), logs
            assert not any("attempt 1 on node-a" in log for log in logs), logs
            for caller in callers:
                caller.halt.set()
            for caller in callers:
                caller.join(40)
            assert failures() == [], failures()[:10]
            assert haproxy.poll() is None
        except BaseException:
            # Shown by pytest with the failure: the nodes' own logs first, HAProxy's without
            # its stats page's requests (the test reads it every 0.3 s).
            for log in sorted(tmp_path.glob("**/*.log"), key=lambda path: path.name == "haproxy.log"):
                lines = log.read_text(errors="replace").splitlines()
                kept = "\n".join(line for line in lines if "stats/<STATS>" not in line)
                print(f"----- {log}\n{kept[-4000:]}")
            raise
        finally:
            for caller in callers:
                caller.halt.set()
            stops = [threading.Thread(target=node.stop) for node in started]  # at once: faster
            for stop in stops:
                stop.start()
            for stop in stops:
                stop.join(120)
