"""Start the real processes (`make run`) for end-to-end tests and stop them cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningPortal:
    """`make run` in its own process group, with its output in a log file."""

    def __init__(self, data_dir: Path, *, admin=("admin", "admin-password-123"), extra_env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = data_dir / "make-run.log"
        self.admin = admin
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEOMARIL_", "DJANGO_", "PYTEST"))}
        env.update(
            {
                "PORT": str(self.port),
                "NEOMARIL_DATA_DIR": str(data_dir),
                "NEOMARIL_ADMIN_USER": admin[0],
                "NEOMARIL_ADMIN_PASSWORD": admin[1],
                **(extra_env or {}),
            }
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            ["make", "--no-print-directory", "run"], cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_healthy(self, timeout: float = 180) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"make run exited with {self.process.returncode}:\n{self.log()}")
            try:
                response = requests.get(f"{self.url}/healthz", timeout=2)
                if response.status_code == 200:
                    return response.json()
            except requests.ConnectionError:
                pass
            time.sleep(0.3)
        raise TimeoutError(f"/healthz did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def stop(self) -> int:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # what Ctrl-C sends
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()
        return self.process.returncode
