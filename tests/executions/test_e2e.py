"""End to end with the real processes (`make run`: gunicorn, django-q2, model host).

Models are deployed through the API and built by the real worker; inputs go through
gunicorn with the group token; the worker runs them in the models' uv environments.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import psutil
import pytest
import requests

from tests.helpers import real_models
from tests.helpers.processes import ROOT, RunningPortal, descendants_running

pytestmark = pytest.mark.slow

E2E_ENV = {
    "NEOMARIL_EXECUTION_TIMEOUT": "20",
    "NEOMARIL_EXECUTION_STALE_SECONDS": "15",
    "NEOMARIL_WORKERS": "4",
}

STDLIB_SOURCE = textwrap.dedent(
    """
    import os
    import time


    def score(data_path, model_path):
        seconds = float(os.environ.get("SLEEP", "0"))
        print("sleeping %s s" % seconds, flush=True)
        time.sleep(seconds)
        out = os.path.join(data_path, "echo.txt")
        with open(os.path.join(data_path, os.environ["inputFileName"]), "rb") as src:
            with open(out, "wb") as dst:
                dst.write(src.read())
        return out


    def explode(data_path, model_path):
        return {}["missing key"]


    def bad_path(data_path, model_path):
        return "/etc/passwd"
    """
)


class Api:
    """The portal's REST API as an admin (personal token) and as a caller (group token)."""

    def __init__(self, portal: RunningPortal, group: str = "e2e"):
        self.url = portal.url
        login = requests.post(
            f"{self.url}/api/v1/auth/login",
            json={"username": portal.admin[0], "password": portal.admin[1]},
            timeout=10,
        )
        assert login.status_code == 201, login.text
        self.admin = {"Authorization": f"Token {login.json()['token']}"}
        self.group = group
        self.caller = {"Authorization": f"Bearer {self.create_group(group)}"}

    def create_group(self, name: str) -> str:
        created = requests.post(
            f"{self.url}/api/v1/groups", json={"name": name}, headers=self.admin, timeout=10
        )
        assert created.status_code == 201, created.text
        return created.json()["group_token"]

    def deploy(self, name: str, files: dict, python: str = "3.11", entrypoint: str = "score") -> str:
        form = {
            "name": name,
            "group": self.group,
            "operation": "Async",
            "model_reference": entrypoint,
            "python_version": python,
        }
        created = requests.post(
            f"{self.url}/api/v1/models", data=form, files=files, headers=self.admin, timeout=60
        )
        assert created.status_code == 201, created.text
        model_hash = created.json()["hash"]
        status = self.wait(f"/api/v1/models/{model_hash}/status", ("Deployed", "Failed"), 300, self.admin)
        log = requests.get(f"{self.url}/api/v1/models/{model_hash}/logs", headers=self.admin, timeout=10)
        assert status == "Deployed", log.json()["log"]
        return model_hash

    def submit(self, model_hash: str, name: str, content, headers=None) -> requests.Response:
        return requests.post(
            f"{self.url}/api/v1/run/{model_hash}",
            files={"file": (name, content)},
            headers=headers or self.caller,
            timeout=120,
        )

    def get(self, path: str, headers=None, **kwargs) -> requests.Response:
        return requests.get(f"{self.url}{path}", headers=headers or self.caller, timeout=60, **kwargs)

    def wait(self, path: str, states, timeout: float, headers=None) -> str:
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = self.get(path, headers).json()["status"]
            if status in states:
                return status
            time.sleep(0.3)
        raise AssertionError(f"{path} still {status} after {timeout} s")

    def execution(self, model_hash: str, number: int) -> dict:
        return self.get(f"/api/v1/run/{model_hash}/executions/{number}").json()

    def finished(self, model_hash: str, number: int, timeout: float = 120) -> dict:
        self.wait(f"/api/v1/run/{model_hash}/executions/{number}", ("Succeeded", "Failed"), timeout)
        return self.execution(model_hash, number)


def stdlib_files(env: str = "") -> dict:
    files = {
        "source": ("app.py", STDLIB_SOURCE.encode()),
        "model": ("model.pkl", b"unused"),
        "requirements": ("requirements.txt", b""),
    }
    if env:
        files["env"] = (".env", env.encode())
    return files


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    running = RunningPortal(tmp_path_factory.mktemp("executions-e2e") / "data", extra_env=E2E_ENV)
    try:
        running.wait_healthy()
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def api(portal) -> Api:
    return Api(portal)


@pytest.fixture(scope="module")
def model_pickle(tmp_path_factory):
    return real_models.train_model_pickle(tmp_path_factory.mktemp("trained")).read_bytes()


def test_csv_in_csv_out_through_the_real_processes(portal, api, model_pickle):
    model_hash = api.deploy(
        "Teste Async",
        {
            "source": ("app.py", real_models.ASYNC_SOURCE.encode()),
            "model": ("model.pkl", model_pickle),
            "requirements": ("requirements.txt", real_models.REQUIREMENTS.encode()),
            "sample": ("sample.csv", real_models.SAMPLE_CSV.encode()),
        },
        python=real_models.PYTHON,
    )
    rows = "radius,texture,smoothness\n" + "".join(
        f"{10 + i % 15},{15 + i % 10},0.{90 + i % 9}\n" for i in range(1000)
    )
    submitted = api.submit(model_hash, "entrada março.csv", rows.encode())
    assert submitted.status_code == 202, submitted.text
    body = submitted.json()
    assert body["execution_id"] == 1 and body["status"] == "Requested" and body["model"] == model_hash
    assert (
        body["url"] == submitted.headers["Location"] == f"{portal.url}/api/v1/run/{model_hash}/executions/1"
    )

    done = api.finished(model_hash, 1)
    assert done["status"] == "Succeeded", api.get(f"/api/v1/run/{model_hash}/executions/1/log").json()["log"]
    assert done["input_file"] == "entrada março.csv" and done["input_size"] == len(rows.encode())
    assert done["output_file"] == "output.csv" and done["duration"] > 0

    result = api.get(f"/api/v1/run/{model_hash}/executions/1/result")
    assert result.status_code == 200
    assert result.headers["Content-Type"] == "text/csv"
    assert result.headers["Content-Disposition"] == 'attachment; filename="output.csv"'
    scored = pd.read_csv(io.BytesIO(result.content))
    assert list(scored.columns) == ["radius", "texture", "smoothness", "proba", "pred"]
    assert len(scored) == 1000 and scored["pred"].isin([0, 1]).all()
    assert api.get(f"/api/v1/run/{model_hash}/executions/1/input").content == rows.encode()
    log = api.get(f"/api/v1/run/{model_hash}/executions/1/log").json()["log"]
    assert "Execution succeeded: output.csv" in log

    # Another group's token: refused, before and after the run.
    other = {"Authorization": f"Bearer {api.create_group('e2e-other')}"}
    refused = api.submit(model_hash, "x.csv", rows.encode(), headers=other)
    assert (
        refused.status_code == 403
        and refused.json()["detail"]
        == "This group token is not valid for this model: use the token of the group that owns it."
    )
    assert api.get(f"/api/v1/run/{model_hash}/executions/1/result", headers=other).status_code == 403

    # Several at once: each gets its own number, all run.
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda i: api.submit(model_hash, f"part{i}.csv", rows.encode()), range(4)))
    assert sorted(a.json()["execution_id"] for a in answers) == [2, 3, 4, 5]
    for number in (2, 3, 4, 5):
        assert api.finished(model_hash, number)["status"] == "Succeeded"
    listing = api.get(f"/api/v1/run/{model_hash}/executions?status=Succeeded&page_size=3").json()
    assert listing["count"] == 5 and [e["execution_id"] for e in listing["results"]] == [5, 4, 3]


def _env_python_with(data_dir: Path, module: str) -> str:
    """The interpreter of one of the portal's model environments that can import `module`."""
    for python in sorted((data_dir / "envs").glob("*/bin/python")):
        if subprocess.run([str(python), "-c", f"import {module}"], capture_output=True).returncode == 0:
            return str(python)
    raise AssertionError(f"no environment with {module}")


def _run_python(python: str, code: str) -> str:
    """`code` in a model environment's interpreter, outside any sandbox: the test's own
    reading and writing of parquet files. pyarrow's system allocator: its bundled
    jemalloc once aborted the process (SIGABRT) on a loaded machine. The process leaves
    with os._exit once the code is done: pyarrow's thread pool has also aborted it at
    interpreter shutdown ("terminate called without an active exception"), after a
    complete answer. (The platform keeps a runner's complete answer whatever its exit.)"""
    env = {**os.environ, "ARROW_DEFAULT_MEMORY_POOL": "system"}
    script = f"{code}\nimport os, sys\nsys.stdout.flush()\nos._exit(0)"
    done = subprocess.run([python, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-3000:]}"
    return done.stdout


def test_parquet_input_env_values_and_input_name_through_the_real_processes(
    portal, api, model_pickle, tmp_path
):
    model_hash = api.deploy(
        "Teste Parquet",
        {
            "source": ("app.py", real_models.PARQUET_SOURCE.encode()),
            "model": ("model.pkl", model_pickle),
            "requirements": ("requirements.txt", real_models.PARQUET_REQUIREMENTS.encode()),
            "env": (".env", b"REGION=sul\n"),
        },
        python=real_models.PYTHON,
    )
    python = _env_python_with(portal.data_dir, "pyarrow")  # the platform itself has no parquet engine
    csv_path, parquet_path = tmp_path / "in.csv", tmp_path / "in.parquet"
    csv_path.write_text(real_models.SAMPLE_CSV)
    convert = f"import pandas as pd; pd.read_csv({str(csv_path)!r}).to_parquet({str(parquet_path)!r})"
    _run_python(python, convert)

    submitted = api.submit(model_hash, "lote 7.parquet", parquet_path.read_bytes())
    assert submitted.status_code == 202, submitted.text
    done = api.finished(model_hash, 1)
    log = api.get(f"/api/v1/run/{model_hash}/executions/1/log").json()["log"]
    assert done["status"] == "Succeeded", log
    assert "[model] read 2 rows from lote 7.parquet" in log
    result = api.get(f"/api/v1/run/{model_hash}/executions/1/result")
    assert result.headers["Content-Type"] == "application/vnd.apache.parquet"
    assert result.headers["Content-Disposition"] == 'attachment; filename="scored.parquet"'
    downloaded = tmp_path / "scored.parquet"
    downloaded.write_bytes(result.content)
    read = f"import pandas as pd; print(pd.read_parquet({str(downloaded)!r}).to_json(orient='records'))"
    records = json.loads(_run_python(python, read))
    assert len(records) == 2 and all(r["pred"] in (0, 1) for r in records)
    assert {r["input_name"] for r in records} == {"lote 7.parquet"}  # inputFileName is the uploaded name
    assert {r["region"] for r in records} == {"sul"}  # the model's .env value reached its code


def test_unfinished_result_is_409_and_failures_say_why(api):
    slow = api.deploy("slow echo", stdlib_files("SLEEP=4\n"))
    submitted = api.submit(slow, "dados.txt", b"hello\n")
    early = api.get(f"/api/v1/run/{slow}/executions/1/result")
    assert early.status_code == 409
    assert early.json()["status"] in ("Requested", "Running")
    assert "its result can be downloaded once it has Succeeded" in early.json()["detail"]
    assert api.finished(slow, submitted.json()["execution_id"])["status"] == "Succeeded"
    assert api.get(f"/api/v1/run/{slow}/executions/1/result").content == b"hello\n"

    raising = api.deploy("raises", stdlib_files(), entrypoint="explode")
    api.submit(raising, "in.txt", b"x")
    failed = api.finished(raising, 1)
    assert (
        failed["status"] == "Failed"
        and failed["error_message"] == "The entrypoint raised KeyError: 'missing key'"
    )
    log = api.get(f"/api/v1/run/{raising}/executions/1/log").json()["log"]
    assert "Traceback (most recent call last)" in log and "in explode" in log

    bad = api.deploy("bad path", stdlib_files(), entrypoint="bad_path")
    api.submit(bad, "in.txt", b"x")
    failed = api.finished(bad, 1)
    assert (
        failed["status"] == "Failed"
        and "returned an absolute path outside data_path." in failed["error_message"]
    )

    forever = api.deploy("sleeps too long", stdlib_files("SLEEP=600\n"))
    api.submit(forever, "in.txt", b"x")
    timed_out = api.finished(forever, 1, timeout=90)
    assert timed_out["status"] == "Failed"
    assert timed_out["error_message"] == "The execution timed out after 20 s and was stopped."
    assert timed_out["timeout"] == 20 and 19 < timed_out["duration"] < 40


def _runners_in(folder: Path) -> list[psutil.Process]:
    found = []
    real = os.path.realpath(folder)
    for proc in psutil.process_iter(["cwd", "cmdline"]):
        cmdline = proc.info["cmdline"] or []
        # A sandbox names the folder it binds on its command line.
        if (proc.info["cwd"] == real or real in cmdline) and "oneshot" in cmdline:
            found.append(proc)
    return found


def test_worker_killed_mid_run_then_restarted(tmp_path):
    data = tmp_path / "data"
    env = {**E2E_ENV, "NEOMARIL_EXECUTION_CONCURRENCY_PER_MODEL": "1"}
    first = RunningPortal(data, extra_env=env)
    try:
        first.wait_healthy()
        api = Api(first)
        model_hash = api.deploy("sleeper", stdlib_files("SLEEP=10\n"))
        assert api.submit(model_hash, "one.txt", b"1").status_code == 202
        assert api.submit(model_hash, "two.txt", b"2").status_code == 202  # waits for the first's slot
        api.wait(f"/api/v1/run/{model_hash}/executions/1", ("Running",), 60)
        folder = data / "executions" / model_hash / "1"
        deadline = time.monotonic() + 20
        while not _runners_in(folder) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _runners_in(folder), "the model process of execution 1 never started"
        assert api.execution(model_hash, 2)["status"] == "Requested"

        workers = descendants_running(first.process.pid, "qcluster")
        assert workers
        for proc in workers:
            proc.kill()
        # The model process dies with the worker that launched it; supervisord restarts the worker.
        deadline = time.monotonic() + 10
        while _runners_in(folder) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _runners_in(folder), "the model process outlived its killed worker"
        recovered = api.finished(model_hash, 1, timeout=240)
        log = api.get(f"/api/v1/run/{model_hash}/executions/1/log").json()["log"]
        assert recovered["status"] in ("Succeeded", "Failed"), log
        assert "The worker running this execution stopped" in log
        # It is re-run once from its input.
        assert recovered["status"] == "Succeeded" and recovered["attempts"] == 2, log
        queued = api.finished(model_hash, 2, timeout=120)  # the one waiting in the queue ran too
        assert queued["status"] == "Succeeded" and queued["attempts"] == 1
        assert api.get(f"/api/v1/run/{model_hash}/executions/2/result").content == b"2"
        assert not _runners_in(folder)
    finally:
        first.stop()


def test_a_200_mb_input_keeps_the_web_process_flat():
    """Runs the benchmark script (it starts its own portal) and checks its figures."""
    out = subprocess.run(
        [sys.executable, "bench/async_upload.py", "--size-mb", "200", "--json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    figures = json.loads(out.stdout.strip().splitlines()[-1])
    assert figures["status"] == "Succeeded"
    assert figures["input_bytes"] >= 200 * 1024 * 1024
    assert figures["recorded_input_size"] == figures["input_bytes"]
    assert figures["result_bytes"] > figures["input_bytes"]  # a column added to every row
    assert figures["upload_rss_growth_mb"] < 40, figures
    assert figures["download_rss_growth_mb"] < 40, figures
