"""Benchmark: a large async input through the real processes, watching the web process's memory.

Starts `make run` (gunicorn + django-q2) on a throw-away data folder, deploys a trivial
Async model (it adds a column to a CSV, line by line), uploads a CSV of --size-mb with
the group token, waits for the execution, downloads the result, and samples the RSS of
every gunicorn worker (psutil, every 20 ms) during the upload and the download.

    .venv/bin/python bench/async_upload.py              # 200 MB
    .venv/bin/python bench/async_upload.py --size-mb 500 --json

Prints the peak RSS growth over the baseline taken just before each transfer: with the
body streamed to disk (upload) and the file streamed back (download) it stays flat
whatever the size.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.helpers.processes import RunningPortal  # noqa: E402

MB = 1024 * 1024

SOURCE = b"""
import os


def score(data_path, model_path):
    name = os.environ["inputFileName"]
    out = os.path.join(data_path, "scored.csv")
    with open(os.path.join(data_path, name)) as src, open(out, "w") as dst:
        dst.write(next(src).rstrip("\\n") + ",score\\n")
        for line in src:
            dst.write(line.rstrip("\\n") + ",1\\n")
    return out
"""


class RssSampler:
    """Samples the RSS of some processes in a background thread; reports peak minus baseline."""

    def __init__(self, processes: list[psutil.Process], interval: float = 0.02):
        self.processes = processes
        self.interval = interval
        self.baseline = {p.pid: p.memory_info().rss for p in processes}
        self.peak = dict(self.baseline)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for proc in self.processes:
                with contextlib.suppress(psutil.NoSuchProcess):
                    self.peak[proc.pid] = max(self.peak[proc.pid], proc.memory_info().rss)

    def growth_mb(self) -> float:
        return max(self.peak[pid] - self.baseline[pid] for pid in self.baseline) / MB

    def baseline_mb(self) -> float:
        return max(self.baseline.values()) / MB


def gunicorn_workers(portal: RunningPortal) -> list[psutil.Process]:
    # The gunicorn master runs under `python -m portal.procs`; its workers are its children.
    gunicorns = [p for p in psutil.Process(portal.process.pid).children(recursive=True) if _is_gunicorn(p)]
    return [p for p in gunicorns if p.ppid() in {g.pid for g in gunicorns}]


def _is_gunicorn(process: psutil.Process) -> bool:
    try:
        return "gunicorn" in " ".join(process.cmdline()) and process.name() not in ("sh", "bash")
    except psutil.NoSuchProcess:  # gone, or a zombie (an execution's process just ended): not one
        return False


def write_multipart(path: Path, size: int, boundary: str) -> int:
    """Write a multipart body holding one CSV of about `size` bytes; return the CSV's size."""
    row = b"12345,0.123456789,some text in a column,2024-01-31,1\n"
    header = b"id,value,text,date,flag\n"
    with open(path, "wb") as out:
        out.write(
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n".encode()
        )
        out.write(header)
        block = row * (MB // len(row))
        written = len(header)
        while written + len(block) <= size:
            out.write(block)
            written += len(block)
        while written < size:
            out.write(row)
            written += len(row)
        out.write(f"\r\n--{boundary}--\r\n".encode())
    return written


def run(size_mb: int, keep: bool) -> dict:
    work = Path(tempfile.mkdtemp(prefix="neomaril-bench-"))
    portal = RunningPortal(work / "data")
    try:
        portal.wait_healthy()
        url = portal.url
        login = requests.post(
            f"{url}/api/v1/auth/login",
            json={"username": portal.admin[0], "password": portal.admin[1]},
            timeout=10,
        )
        admin = {"Authorization": f"Token {login.json()['token']}"}
        group = requests.post(
            f"{url}/api/v1/groups", json={"name": "bench"}, headers=admin, timeout=10
        ).json()
        caller = {"Authorization": f"Bearer {group['group_token']}"}
        python = f"{sys.version_info.major}.{sys.version_info.minor}"
        created = requests.post(
            f"{url}/api/v1/models",
            data={
                "name": "bench",
                "group": "bench",
                "operation": "Async",
                "model_reference": "score",
                "python_version": python,
            },
            files={
                "source": ("app.py", SOURCE),
                "model": ("model.pkl", b"unused"),
                "requirements": ("requirements.txt", b""),
            },
            headers=admin,
            timeout=30,
        ).json()
        model_hash = created["hash"]
        wait_for(f"{url}/api/v1/models/{model_hash}/status", admin, ("Deployed", "Failed"), 300)

        # Warm-up: the first request imports the views; measure from a warm worker.
        warm = requests.post(
            f"{url}/api/v1/run/{model_hash}",
            files={"file": ("warm.csv", b"a\n1\n")},
            headers=caller,
            timeout=30,
        )
        assert warm.status_code == 202, warm.text

        boundary = uuid.uuid4().hex
        body = work / "body.multipart"
        input_bytes = write_multipart(body, size_mb * MB, boundary)
        workers = gunicorn_workers(portal)
        with RssSampler(workers) as upload_rss, open(body, "rb") as stream:
            started = time.monotonic()
            answer = requests.post(
                f"{url}/api/v1/run/{model_hash}",
                data=stream,
                headers={**caller, "Content-Type": f"multipart/form-data; boundary={boundary}"},
                timeout=600,
            )
            upload_seconds = time.monotonic() - started
        assert answer.status_code == 202, answer.text
        body.unlink()
        number = answer.json()["execution_id"]
        status_url = f"{url}/api/v1/run/{model_hash}/executions/{number}"
        status = wait_for(status_url, caller, ("Succeeded", "Failed"), 600)
        described = requests.get(status_url, headers=caller, timeout=10).json()

        result_bytes = 0
        with RssSampler(workers) as download_rss:
            started = time.monotonic()
            with requests.get(f"{status_url}/result", headers=caller, stream=True, timeout=600) as result:
                for chunk in result.iter_content(MB):
                    result_bytes += len(chunk)
            download_seconds = time.monotonic() - started
        return {
            "status": status,
            "input_bytes": input_bytes,
            "recorded_input_size": described["input_size"],
            "result_bytes": result_bytes,
            "execution_seconds": described["duration"],
            "upload_seconds": round(upload_seconds, 2),
            "download_seconds": round(download_seconds, 2),
            "web_workers": len(workers),
            "web_worker_baseline_rss_mb": round(upload_rss.baseline_mb(), 1),
            "upload_rss_growth_mb": round(upload_rss.growth_mb(), 1),
            "download_rss_growth_mb": round(download_rss.growth_mb(), 1),
        }
    except BaseException:
        print(f"--- end of the portal's log ---\n{portal.log()}", file=sys.stderr)
        raise
    finally:
        portal.stop()
        if not keep:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"data kept in {work}", file=sys.stderr)


def wait_for(url: str, headers: dict, states: tuple[str, ...], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = requests.get(url, headers=headers, timeout=10).json()["status"]
        if status in states:
            return status
        time.sleep(0.5)
    raise TimeoutError(f"{url} not in {states} after {timeout} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mb", type=int, default=200, help="size of the uploaded CSV (default 200)")
    parser.add_argument("--json", action="store_true", help="also print the figures as one JSON line")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    args = parser.parse_args()
    figures = run(args.size_mb, args.keep)
    print(
        f"input:    {figures['input_bytes'] / MB:.0f} MB uploaded in {figures['upload_seconds']} s -> {figures['status']}"
    )
    print(f"result:   {figures['result_bytes'] / MB:.0f} MB downloaded in {figures['download_seconds']} s")
    print(
        f"web RSS:  baseline {figures['web_worker_baseline_rss_mb']} MB ({figures['web_workers']} gunicorn workers)"
    )
    print(f"          peak growth during upload   {figures['upload_rss_growth_mb']} MB")
    print(f"          peak growth during download {figures['download_rss_growth_mb']} MB")
    if args.json:
        print(json.dumps(figures))
    return 0 if figures["status"] == "Succeeded" else 1


if __name__ == "__main__":
    sys.exit(main())
