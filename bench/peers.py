"""Sync serving against its peers: this project with default settings, MLflow's
`mlflow models serve -w 2` and BentoML 1.4's `bentoml serve`, on the same pipeline,
side by side in one run.

    .venv/bin/python bench/peers.py [--duration 10] [--rounds 3]

Trains sync_bench's pipeline once (one pickle), installs each peer from PyPI into a
throw-away venv of the same Python with the same scikit-learn and pandas, starts the
three servers on loopback and measures them with wrk in interleaved rounds (ours,
MLflow, BentoML, ours, ...) so the machine's noise hits all three alike. Every server
does the same work per call: one `predict` of the pipeline on a one-row DataFrame built
from the JSON row. Prints the medians, each server's own CPU per call (its process
tree's user + system time from /proc over the measured windows), and the targets of
issue 18 as PASS/FAIL. Everything it writes lives in one temporary folder.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.sync_bench import (  # noqa: E402
    PYTHON,
    REQUIREMENTS,
    children_cpu,
    cpu_split,
    deploy,
    ensure_wrk,
    in_process,
    make_venv,
    train,
    wrk,
)
from tests.helpers.processes import PortalClient, RunningPortal, free_port, wait_gone  # noqa: E402

# The newest of each that installs on Python 3.11 next to sync_bench's scikit-learn and
# pandas pins (mlflow 3.18.0 was on PyPI without its mlflow-skinny 3.18.0).
MLFLOW = "mlflow==3.17.2"
BENTOML = "bentoml==1.4.40"
MLFLOW_WORKERS = 2  # the issue's `-w 2`

# Ours: what a user uploads. json.loads of the raw row, a one-row DataFrame, predict.
OURS_SOURCE = textwrap.dedent(
    """
    import json
    import os
    import pickle

    import pandas as pd

    with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.pkl"), "rb") as f:
        MODEL = pickle.load(f)


    def score(data, base_path):
        df = pd.DataFrame(data=json.loads(data), index=[0])
        return {"pred": int(MODEL.predict(df)[0])}
    """
)

# MLflow: the same pickle saved as an sklearn-flavour model (pickle format), with the
# signature inferred from the training data as MLflow's documentation does; its pyfunc
# calls `predict`. Requirements given so save_model does not probe for them.
MLFLOW_SAVE = textwrap.dedent(
    """
    import pickle, sys
    import mlflow.sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_breast_cancer
    model = pickle.load(open(sys.argv[1], "rb"))
    X, _ = load_breast_cancer(return_X_y=True, as_frame=True)
    mlflow.sklearn.save_model(
        model, sys.argv[2], serialization_format="pickle",
        signature=infer_signature(X, model.predict(X)), pip_requirements=sys.argv[3:],
    )
    """
)

# BentoML 1.4: a service of `workers` processes loading the same pickle, one API taking
# the row as a JSON object and doing what ours does with it.
BENTOML_SERVICE = textwrap.dedent(
    """
    import os
    import pickle

    import bentoml
    import pandas as pd


    @bentoml.service(workers={workers})
    class Pipeline:
        def __init__(self) -> None:
            with open(os.environ["BENCH_MODEL_PICKLE"], "rb") as f:
                self.model = pickle.load(f)

        @bentoml.api
        def predict(self, row: dict[str, float]) -> dict:
            df = pd.DataFrame(data=row, index=[0])
            return {{"pred": int(self.model.predict(df)[0])}}
    """
)


class PeerProcess:
    """A peer's server in its own session (so one signal reaches all its processes),
    its output in a log file of the temporary folder."""

    def __init__(self, name: str, command: list[str], *, cwd: Path, env: dict, log: Path, health_url: str):
        self.name, self.health_url, self.log_path = name, health_url, log
        self._log = open(log, "ab")  # noqa: SIM115  (closed in stop())
        self.process = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"{self.name} exited with {self.process.returncode} while starting:\n{self.log()}"
                )
            with contextlib.suppress(requests.RequestException):
                if requests.get(self.health_url, timeout=2).status_code == 200:
                    return
            time.sleep(0.3)
        raise SystemExit(
            f"{self.name} did not answer {self.health_url} within {timeout:.0f} s:\n{self.log()}"
        )

    def cpu(self) -> dict[str, float]:
        return {"server": tree_cpu(self.process.pid)}

    def stop(self) -> None:
        """SIGINT to the session (Ctrl-C), SIGKILL after a bounded wait; then make sure
        every process of the tree is gone."""
        try:
            tree = [
                psutil.Process(self.process.pid),
                *psutil.Process(self.process.pid).children(recursive=True),
            ]
        except psutil.NoSuchProcess:
            tree = []
        for sig, wait in ((signal.SIGINT, 20), (signal.SIGKILL, 10)):
            if self.process.poll() is not None:
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)
        for proc in wait_gone(tree[1:], timeout=10):
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self._log.close()


def tree_cpu(pid: int) -> float:
    """User + system CPU seconds of a process and every live descendant (/proc/<pid>/stat)."""
    total = 0.0
    try:
        top = psutil.Process(pid)
        procs = [top, *top.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def machine_busy() -> float:
    """CPU seconds the whole machine has been busy (every core, /proc/stat), steal included."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


@dataclass
class Server:
    name: str
    url: str
    token: str | None
    body: str  # exactly what wrk posts
    cpu: Callable[[], dict[str, float]]  # CPU seconds so far, by part
    runs: dict[int, list[dict]] = field(default_factory=lambda: {1: [], 8: []})
    head_body: tuple[float, float] = (0.0, 0.0)  # ms to the head, to the last byte (c=1)


def install_peer(folder: Path, name: str, pin: str) -> Path:
    try:
        return make_venv(folder / f"{name}-venv", [pin, *REQUIREMENTS.split()])
    except subprocess.CalledProcessError as error:
        raise SystemExit(
            f"Could not install {pin} with {' '.join(REQUIREMENTS.split())} from PyPI into a Python {PYTHON} "
            f"venv (uv exited with {error.returncode}; its message is above). Set the pin in bench/peers.py "
            "to a version that installs."
        ) from error


def peer_env(work: Path) -> dict[str, str]:
    """The peers' environment: HOME and BentoML's home in the temporary folder (nothing
    written elsewhere), no usage tracking."""
    home = work / "home"
    home.mkdir(exist_ok=True)
    return {
        **os.environ,
        "HOME": str(home),
        "BENTOML_HOME": str(work / "bentoml-home"),
        "BENTOML_DO_NOT_TRACK": "True",
        "MLFLOW_TRACKING_URI": (work / "mlruns").as_uri(),
        "BENCH_MODEL_PICKLE": str(work / "model.pkl"),
    }


def activated(env: dict, python: Path) -> dict:
    """`env` as after `source <venv>/bin/activate` (mlflow runs `uvicorn` from PATH)."""
    return {**env, "VIRTUAL_ENV": str(python.parent.parent), "PATH": f"{python.parent}:{env['PATH']}"}


def start_mlflow(work: Path, env: dict) -> tuple[PeerProcess, str]:
    python = install_peer(work, "mlflow", MLFLOW)
    env = activated(env, python)
    model_dir = work / "mlflow-model"
    saved = subprocess.run(
        [str(python), "-c", MLFLOW_SAVE, str(work / "model.pkl"), str(model_dir), *REQUIREMENTS.split()],
        env=env,
        capture_output=True,
        text=True,
    )
    if saved.returncode != 0:
        raise SystemExit(f"mlflow.sklearn.save_model failed:\n{saved.stdout}{saved.stderr}")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    options = f"-w {MLFLOW_WORKERS} --env-manager local -p {port} -h 127.0.0.1".split()
    command = [str(python.parent / "mlflow"), "models", "serve", "-m", str(model_dir), *options]
    server = PeerProcess(
        "MLflow", command, cwd=work, env=env, log=work / "mlflow.log", health_url=f"{url}/ping"
    )
    return server, f"{url}/invocations"


def start_bentoml(work: Path, env: dict, workers: int) -> tuple[PeerProcess, str]:
    python = install_peer(work, "bentoml", BENTOML)
    env = activated(env, python)
    folder = work / "bento"
    folder.mkdir()
    (folder / "service.py").write_text(BENTOML_SERVICE.format(workers=workers))
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    command = [
        str(python.parent / "bentoml"),
        *f"serve service:Pipeline --host 127.0.0.1 --port {port}".split(),
    ]
    server = PeerProcess(
        "BentoML", command, cwd=folder, env=env, log=work / "bentoml.log", health_url=f"{url}/readyz"
    )
    return server, f"{url}/predict"


def check_answers(servers: list[Server]) -> None:
    """One call each: print what each receives and answers; all must predict the same."""
    predictions = {}
    for server in servers:
        headers = {"Content-Type": "application/json"}
        if server.token:
            headers["Authorization"] = f"Bearer {server.token}"
        answer = requests.post(server.url, data=server.body, headers=headers, timeout=30)
        if answer.status_code != 200:
            raise SystemExit(f"{server.name} answered {answer.status_code}: {answer.text[:500]}")
        shown = server.body if len(server.body) < 90 else server.body[:60] + " ... " + server.body[-20:]
        print(
            f"  {server.name:8} POST {server.url.split('/', 3)[3][:40]:40} {shown}\n{'':11}→ {answer.text.strip()}"
        )
        found = answer.json()
        predictions[server.name] = found["predictions"][0] if "predictions" in found else found["pred"]
    if len(set(predictions.values())) != 1:
        raise SystemExit(f"The servers disagree on the prediction: {predictions}")


def head_and_body(server: Server, calls: int = 20) -> tuple[float, float]:
    """Median ms to the answer's head and to its last byte, on one keep-alive connection
    (TCP_NODELAY on our side, as wrk). A gap between the two is the server writing head
    and body in two segments with Nagle's algorithm on: the body waits for the client's
    delayed ACK (≈ 40 ms on Linux)."""
    url = urlsplit(server.url)
    headers = f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
    if server.token:
        headers += f"Authorization: Bearer {server.token}\r\n"
    body = server.body.encode()
    request = f"{headers}Content-Length: {len(body)}\r\n\r\n".encode() + body
    heads, fulls = [], []
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(calls):
            started, data = time.perf_counter(), b""
            sock.sendall(request)
            while b"\r\n\r\n" not in data:
                data += receive(sock)
            heads.append(time.perf_counter() - started)
            head, rest = data.split(b"\r\n\r\n", 1)
            length = int(re.search(rb"(?im)^content-length:\s*(\d+)", head).group(1))
            while len(rest) < length:
                rest += receive(sock)
            fulls.append(time.perf_counter() - started)
    return statistics.median(heads) * 1000, statistics.median(fulls) * 1000


def receive(sock: socket.socket) -> bytes:
    chunk = sock.recv(65536)
    if not chunk:
        raise SystemExit("The server closed the keep-alive connection in the middle of an answer")
    return chunk


def measure(server: Server, connections: int, duration: int, folder: Path) -> None:
    before, wrk_before, busy_before = server.cpu(), children_cpu(), machine_busy()
    result = wrk(
        server.url, server.token, server.body, connections=connections, duration=duration, folder=folder
    )
    after, wrk_cpu, busy = server.cpu(), children_cpu() - wrk_before, machine_busy() - busy_before
    cpu = {part: after[part] - before[part] for part in after}
    result["cpu_ms"] = {part: seconds / result["requests"] * 1000 for part, seconds in cpu.items()}
    result["cpu_ms"]["total"] = sum(cpu.values()) / result["requests"] * 1000
    # Busy CPU of everything else on the machine: other sessions' work, the idle peers.
    result["others_cores"] = max(0.0, busy - sum(cpu.values()) - wrk_cpu) / duration
    server.runs[connections].append(result)


def median(runs: list[dict], key: Callable[[dict], float]) -> float:
    return statistics.median(key(r) for r in runs)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def report(servers: dict[str, Server], local: tuple[dict, dict], args, cores: int, load: tuple) -> None:
    ours, mlflow, bento = servers["ours"], servers["MLflow"], servers["BentoML"]
    in_process_ms = (local[0]["median_ms"] + local[1]["median_ms"]) / 2
    in_process_cpu = (local[0]["cpu_ms"] + local[1]["cpu_ms"]) / 2

    def p50(s):
        return median(s.runs[1], lambda r: r["p50_ms"])

    def rps(s):
        return median(s.runs[8], lambda r: r["rps"])

    print()
    print(
        f"Machine: {cores} cores, load average {load[0]:.1f} before and {load[1]:.1f} after; "
        f"wrk {args.duration} s per run, {args.rounds} interleaved rounds, medians shown"
    )
    print(
        f"In-process predict (json.loads + DataFrame + predict, one BLAS thread): median "
        f"{in_process_ms:.3f} ms, CPU {in_process_cpu:.3f} ms/call (before {local[0]['median_ms']:.3f} / "
        f"{local[0]['cpu_ms']:.3f}, after {local[1]['median_ms']:.3f} / {local[1]['cpu_ms']:.3f})"
    )
    print()
    header = (
        f"{'server':9} {'c=1 p50':>9} {'c=1 p99':>9} {'c=8 req/s':>10} {'c=8 p50':>9} "
        f"{'CPU/call c=1':>13} {'CPU/call c=8':>13} {'others c=8':>11}  c=8 req/s per round"
    )
    print(header)
    print("-" * len(header))
    for s in servers.values():
        print(
            f"{s.name:9} {p50(s):7.2f}ms {median(s.runs[1], lambda r: r['p99_ms']):7.2f}ms "
            f"{rps(s):10.0f} {median(s.runs[8], lambda r: r['p50_ms']):7.2f}ms "
            f"{median(s.runs[1], lambda r: r['cpu_ms']['total']):11.3f}ms "
            f"{median(s.runs[8], lambda r: r['cpu_ms']['total']):11.3f}ms "
            f"{median(s.runs[8], lambda r: r['others_cores']):7.2f} cores  "
            f"{[round(r['rps']) for r in s.runs[8]]}"
        )
    print("(CPU/call: the server's whole process tree, user + system, from /proc, over the measured windows;")
    print(" others: CPU busy on the machine besides that server and wrk during its c=8 windows)")
    ours_cpu = median(ours.runs[8], lambda r: r["cpu_ms"]["total"])
    print(
        "CPU per call at c=8 against ours (where throughput ratios tend once every server is CPU-bound "
        "on all cores): "
        + ", ".join(
            f"{s.name} {median(s.runs[8], lambda r: r['cpu_ms']['total']) / ours_cpu:.2f}×"
            for s in (mlflow, bento)
        )
    )
    print("One keep-alive connection, median of 20 calls after the warm-up, head of the answer / last byte:")
    for s in servers.values():
        head, full = s.head_body
        nagle = "  <- body held back by Nagle's algorithm until the delayed ACK" if full - head > 20 else ""
        print(f"  {s.name:9} {head:7.2f} ms / {full:7.2f} ms{nagle}")

    parts = {"runners": "model runners", "web": "web workers", "host": "model host", "worker": "task worker"}
    parts["other"] = "supervisord etc."
    split = {
        c: {part: median(ours.runs[c], lambda r, p=part: r["cpu_ms"][p]) for part in parts} for c in (1, 8)
    }
    share = {c: median(ours.runs[c], lambda r: r["cpu_ms"]["runners"] / r["cpu_ms"]["total"]) for c in (1, 8)}
    print()
    for c in (1, 8):
        print(
            f"Ours, CPU per call at c={c} (ms): "
            + ", ".join(f"{label} {split[c][part]:.3f}" for part, label in parts.items())
            + f"; model share {share[c]:.2f}"
        )
    print(
        f"  (the runner's CPU per call at c=8 against the same call in-process: "
        f"{split[8]['runners']:.3f} - {in_process_cpu:.3f} = {split[8]['runners'] - in_process_cpu:+.3f} ms)"
    )

    targets = [
        ("c=8 throughput ≥ 1.4× BentoML's", rps(ours) / rps(bento), ">=", 1.4, "×"),
        ("c=8 throughput ≥ 5× MLflow's", rps(ours) / rps(mlflow), ">=", 5.0, "×"),
        ("c=1 p50 ≤ 0.75× BentoML's", p50(ours) / p50(bento), "<=", 0.75, "×"),
        ("c=1 p50 within 2 ms of the in-process call", p50(ours) - in_process_ms, "<=", 2.0, " ms"),
        ("model CPU ÷ server CPU per call (c=8) ≥ 0.85", share[8], ">=", 0.85, ""),
    ]
    # A throughput ratio compares servers only while each keeps the cores busy: a peer that
    # stalls (one run had MLflow on one core of two for two rounds) makes ours look better.
    busy = {
        name: median(s.runs[8], lambda r: r["rps"] * r["cpu_ms"]["total"] / 1000)
        for name, s in servers.items()
    }
    stalled = sorted(name for name, cores_used in busy.items() if cores_used < 0.8 * max(busy.values()))
    print()
    print(
        "Cores each server kept busy at c=8 (req/s × CPU per call): "
        + ", ".join(f"{name} {cores_used:.2f}" for name, cores_used in busy.items())
    )
    print()
    print("Targets (ours with default settings):")
    for label, value, op, limit, unit in targets:
        ok = value >= limit if op == ">=" else value <= limit
        peer = "MLflow" if "MLflow" in label else "BentoML" if "throughput" in label else None
        outcome = "UNSURE" if peer in stalled else verdict(ok)
        print(f"  {outcome:6}  {label:48} {value:6.2f}{unit}")
    if stalled:
        print(
            f"  UNSURE: {', '.join(stalled)} kept fewer cores busy than the others (under 80 %): its "
            "throughput ratio does not count; the CPU-per-call ratio above is where it tends."
        )


def start_all(work: Path, cores: int, running: contextlib.ExitStack) -> dict[str, Server]:
    """Start the three servers (each stopped when `running` closes), deploy ours, check
    that all three answer alike, warm them up."""
    env = peer_env(work)
    print(f"Installing {MLFLOW} and {BENTOML} into throw-away venvs...", flush=True)
    mlflow, mlflow_url = start_mlflow(work, env)
    running.callback(mlflow.stop)
    bento, bento_url = start_bentoml(work, env, workers=cores)
    running.callback(bento.stop)
    portal = RunningPortal(work / "portal")  # default settings: nothing in extra_env
    running.callback(portal.stop)
    portal.wait_healthy()
    mlflow.wait_ready()
    bento.wait_ready()

    print("Deploying ours through the API (default settings)...", flush=True)
    client = PortalClient(portal)
    token = client.create_group("bench")
    model_hash = deploy(client, work, OURS_SOURCE, "breast cancer", replicas=None)
    described = client.get(f"/api/v1/models/{model_hash}").json()
    replicas = f"{described['min_replicas']} to {described['max_replicas'] or f'{cores} (the cores)'}"

    row = json.loads((work / "schema.json").read_text())
    servers = {
        "ours": Server(
            "ours", f"{portal.url}/api/v1/run/{model_hash}", token, json.dumps(row), lambda: cpu_split(portal)
        ),
        "MLflow": Server("MLflow", mlflow_url, None, json.dumps({"dataframe_records": [row]}), mlflow.cpu),
        "BentoML": Server("BentoML", bento_url, None, json.dumps({"row": row}), bento.cpu),
    }
    print(
        f"Servers: ours ({replicas} runner replicas as the load asks, the default; gunicorn "
        f"{len(portal.programs()['web'].children())} web workers), MLflow -w {MLFLOW_WORKERS}, "
        f"BentoML workers={cores}. What each receives and answers:"
    )
    check_answers(list(servers.values()))
    for server in servers.values():  # warm-up: every worker and replica started and used
        wrk(server.url, server.token, server.body, connections=8, duration=3, folder=work, warm_up=True)
        server.head_body = head_and_body(server)
    return servers


def stop_on_sigterm(*_) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C, through the callbacks that stop the servers


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of c=1 and c=8 runs")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    ensure_wrk()
    cores = os.cpu_count() or 1
    load_before = os.getloadavg()[0]
    work = Path(tempfile.mkdtemp(prefix="neomaril-peers-"))
    try:
        print(
            f"Training the pipeline once (Python {PYTHON}, {', '.join(REQUIREMENTS.split())})...", flush=True
        )
        python = train(work)
        before = in_process(python, work, OURS_SOURCE)
        with contextlib.ExitStack() as running:
            servers = start_all(work, cores, running)
            for number in range(1, args.rounds + 1):
                print(f"Round {number} of {args.rounds}...", flush=True)
                for connections in (1, 8):
                    for server in servers.values():
                        measure(server, connections, args.duration, work)
        # Once more with the servers stopped: the machine's speed drifts.
        after = in_process(python, work, OURS_SOURCE)
        report(servers, (before, after), args, cores, (load_before, os.getloadavg()[0]))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
