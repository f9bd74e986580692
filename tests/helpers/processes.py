"""Start the real processes (`make run`) for end-to-end tests and stop them cleanly."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Collection
from pathlib import Path

import psutil
import requests

from tests.backends import portal_env

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ("web", "worker", "modelhost")  # the programs of deploy/supervisord.conf


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RunningPortal:
    """`make run` in its own process group, with its output in a log file."""

    def __init__(
        self,
        data_dir: Path,
        *,
        admin=("admin", "admin-password-123"),
        extra_env: dict | None = None,
        node_dir: Path | None = None,
        port: int | None = None,
        code: Path = ROOT,
        hostname: str | None = None,
    ):
        """`node_dir`: NEOMARIL_NODE_DIR, for one of several nodes sharing `data_dir`
        (its log goes there too); `port`: a given one, e.g. a node started again; `code`:
        another checkout to run (bench/ab.py), with this checkout's virtualenv; `hostname`:
        the node's own host name (a UTS namespace, root only), which is how jobs and
        django-q2's workers name the node they run on."""
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self.log_path = (node_dir or data_dir) / "make-run.log"
        self.admin = admin
        self.survivors: list[psutil.Process] = []  # what was still running after stop()
        data_dir.mkdir(parents=True, exist_ok=True)
        # What `manage.py` needs to reach this portal's data (its database and broker too).
        self.env = {
            k: v for k, v in os.environ.items() if not k.startswith(("NEOMARIL_", "DJANGO_", "PYTEST"))
        }
        self.env.update({"NEOMARIL_DATA_DIR": str(data_dir), **portal_env(data_dir)})
        if node_dir is not None:
            node_dir.mkdir(parents=True, exist_ok=True)
            self.env["NEOMARIL_NODE_DIR"] = str(node_dir)
        env = {
            **self.env,
            "PORT": str(self.port),
            "NEOMARIL_ADMIN_USER": admin[0],
            "NEOMARIL_ADMIN_PASSWORD": admin[1],
            **({} if code == ROOT else {"VENV": str(ROOT / ".venv")}),
            **(extra_env or {}),
        }
        # Append mode: supervisord opens the same file again (its programs' output goes
        # to /dev/stdout), and writes through both must not overwrite each other.
        self._log = open(self.log_path, "ab")  # noqa: SIM115  (closed in stop())
        # Another checkout's requirement files are newer than this virtualenv: make would
        # install into it again, and point its editable SDK at that checkout (gone once
        # bench/ab.py removes its worktree). It runs with this virtualenv as it is.
        keep_venv = [] if code == ROOT else ["--assume-old", str(ROOT / ".venv" / ".installed")]
        command = ["make", "--no-print-directory", *keep_venv, "run"]
        if hostname is not None:
            if os.geteuid() != 0:
                raise RuntimeError(f"a node named {hostname!r} needs a UTS namespace: run the test as root")
            command = ["unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname, *command]
        self.process = subprocess.Popen(
            command,
            cwd=code,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
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
            except requests.RequestException:  # not listening yet, or slow on a busy machine
                pass
            time.sleep(0.3)
        raise TimeoutError(f"/healthz did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-6000:]

    def supervisord(self) -> psutil.Process:
        """The supervisord that `make run` exec'd into (a child of make)."""
        for child in psutil.Process(self.process.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
                if "supervisord" in " ".join(child.cmdline()):
                    return child
        raise LookupError(f"no supervisord under make run:\n{self.log()}")

    def programs(self) -> dict[str, psutil.Process]:
        """The supervised programs, by name: {"web": ..., "worker": ..., "modelhost": ...}."""
        found = {}
        for child in self.supervisord().children():
            with contextlib.suppress(psutil.NoSuchProcess):
                found[program_name(child.cmdline())] = child
        return found

    def wait_programs(self, names=PROGRAMS, timeout: float = 60) -> dict[str, psutil.Process]:
        """Wait until each named program runs (and has been up for a second)."""
        deadline = time.monotonic() + timeout
        while True:
            programs = self.programs()
            up = {n: p for n, p in programs.items() if n in names and time.time() - p.create_time() > 1}
            if len(up) == len(names) or time.monotonic() > deadline:
                return programs
            time.sleep(0.2)

    def tree(self) -> list[psutil.Process]:
        """make, supervisord and every process below them."""
        try:
            top = psutil.Process(self.process.pid)
            return [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def wait_tree(self, at_least: int, timeout: float = 60) -> list[psutil.Process]:
        """Every process below make once there are `at_least` of them: the programs are up
        before their own children (gunicorn's workers, the cluster's processes) are forked,
        later still on a busy machine."""
        deadline = time.monotonic() + timeout
        while True:
            below = self.tree()[1:]
            if len(below) >= at_least or time.monotonic() > deadline:
                return below
            time.sleep(0.2)

    def stop(self, timeout: float = 60) -> int:
        """Ctrl-C, then wait (bounded) for make and every process below it to be gone."""
        tree = self.tree()
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGINT)  # what Ctrl-C sends
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self.survivors = wait_gone(tree[1:], timeout=10)
        for proc in self.survivors:  # don't leak them into the next test; callers assert on the list
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        self._log.close()
        return self.process.returncode


def descendants_running(pid: int, word: str) -> list[psutil.Process]:
    """The processes under `pid` whose command line holds `word`; one that exits while
    the tree is read (a short-lived child, a sandbox's helper) is left out, not an error."""
    found = []
    for child in psutil.Process(pid).children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess, psutil.ZombieProcess):
            if word in " ".join(child.cmdline()):
                found.append(child)
    return found


def program_name(cmdline: list[str]) -> str:
    text = " ".join(cmdline)
    for marker, name in (("gunicorn", "web"), ("qcluster", "worker"), ("modelhost", "modelhost")):
        if marker in text:
            return name
    return text


def wait_gone(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until the processes have exited; return those still running after `timeout`."""
    _, alive = psutil.wait_procs(processes, timeout=timeout)
    return [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


class PortalClient:
    """A logged-in admin talking to a RunningPortal over HTTP."""

    def __init__(self, portal: RunningPortal):
        self.url = portal.url
        login = requests.post(
            f"{self.url}/api/v1/auth/login",
            json={"username": portal.admin[0], "password": portal.admin[1]},
            timeout=10,
        )
        login.raise_for_status()
        self.headers = {"Authorization": f"Token {login.json()['token']}"}

    def get(self, path: str, **kwargs) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers=self.headers, timeout=30, **kwargs)

    def post(self, path: str, **kwargs) -> requests.Response:
        return requests.post(f"{self.url}{path}", headers=self.headers, timeout=30, **kwargs)

    def patch(self, path: str, **kwargs) -> requests.Response:
        return requests.patch(f"{self.url}{path}", headers=self.headers, timeout=30, **kwargs)

    def create_group(self, name: str) -> str:
        response = self.post("/api/v1/groups", json={"name": name})
        assert response.status_code == 201, response.text
        return response.json()["group_token"]

    def deploy(self, *, group: str, files: dict, timeout: float = 600, **form) -> str:
        """Upload a model and wait until it is Deployed; returns its hash."""
        data = {
            "name": "e2e model",
            "operation": "Sync",
            "model_reference": "score",
            "python_version": "3.11",
            **form,
        }
        created = self.post("/api/v1/models", data={"group": group, **data}, files=files)
        assert created.status_code == 201, created.text
        model_hash = created.json()["hash"]
        status = self.wait_status(model_hash, {"Deployed", "Failed"}, timeout)
        if status != "Deployed":
            raise AssertionError(self.get(f"/api/v1/models/{model_hash}/logs").json()["log"])
        return model_hash

    def wait_for(self, path: str, wanted: Collection[str], timeout: float) -> dict:
        """GET `path` until its "status" is one of `wanted` or `timeout` seconds have
        passed; returns the last answer (the caller asserts on its status, with the log)."""
        deadline = time.monotonic() + timeout
        while True:
            body = self.get(path).json()
            if body["status"] in wanted or time.monotonic() > deadline:
                return body
            time.sleep(0.3)

    def wait_status(self, model_hash: str, wanted: Collection[str], timeout: float) -> str:
        """A model's status once it is one of `wanted` (or the last one after `timeout`)."""
        return self.wait_for(f"/api/v1/models/{model_hash}/status", wanted, timeout)["status"]
