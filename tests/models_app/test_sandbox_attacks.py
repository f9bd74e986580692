"""Attack suite: uploaded code that tries every escape issue 12 measured, each asserted to fail.

One stdlib-only model (``ATTACK_SOURCE``) carries every attack; the payload names which
one runs and against which of the platform's paths, sockets and pids. It runs on the
real code paths, in process: the build's smoke test (``tasks.build_model``), Async
executions (``executions.tasks.run_execution``) and warm Sync runners of a real
``ModelHost``. The model's environment is the host's own interpreter (no uv download),
so only the sandbox stands between the model and the platform, as in production.

Every attack reports the exception it met; the tests assert the exact error, then check
on the host side that nothing changed. The legitimate half — ``.env`` values, the result
file, outbound network when allowed — is asserted to keep working.
"""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import textwrap
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from executions import tasks as execution_tasks
from executions.models import Execution
from models_app import services as model_services
from models_app import tasks
from models_app.models import MLModel, ModelBuild
from models_app.runtime import sandbox
from models_app.runtime.protocol import read_frame, write_frame
from models_app.serving import paths
from models_app.serving.host import ModelHost
from tests.helpers.clients import api_client, token_client
from tests.helpers.uploads import file

pytestmark = pytest.mark.django_db(transaction=True)

BASE_PYTHON = Path(getattr(sys, "_base_executable", sys.executable))
HOST_ENV = "a" * 64  # fingerprint of the "environment" that is the host's interpreter
PYTHON_VERSION = f"{sys.version_info.major}.{sys.version_info.minor}"
CANARY = "platform-canary-" + uuid.uuid4().hex  # in the platform's environment only
ENV_SECRET = "model-secret-" + uuid.uuid4().hex  # in the attacker's own .env

ATTACK_SOURCE = textwrap.dedent(
    """
    import json
    import os
    import pickle
    import signal
    import socket
    import subprocess
    import sys
    import sysconfig
    import time
    import urllib.request

    MB = 1024 * 1024


    def _try(func):
        try:
            value = func()
        except BaseException as exc:
            return {"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)}
        return {"ok": True, "value": value}


    def _read(path):
        with open(path, "rb") as f:
            return f.read(200).decode(errors="replace")


    def _open_for_writing(path):
        # Opening is the escape; nothing is written, so a hole would not damage the tree.
        if os.path.exists(path) or os.path.islink(path):
            os.close(os.open(path, os.O_WRONLY))
            return "opened for writing"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        os.unlink(path)
        return "created"


    def _connect(path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(path)
        return "connected"


    def _status():
        keys = ("Uid", "Gid", "CapInh", "CapPrm", "CapEff", "CapAmb", "NoNewPrivs")
        with open("/proc/self/status") as f:
            return {k: v.strip() for k, _, v in (line.partition(":") for line in f) if k in keys}


    def _processes():
        seen = {}
        for name in os.listdir("/proc"):
            if name.isdigit():
                try:
                    with open("/proc/%s/cmdline" % name, "rb") as f:
                        seen[name] = f.read().split(b"\\0")[0].decode(errors="replace")
                except OSError as exc:
                    seen[name] = type(exc).__name__
        return seen


    def _unshare(flags):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(flags) != 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code))
        return "unshared"


    def _thread():
        import threading

        done = []
        worker = threading.Thread(target=done.append, args=[1])
        worker.start()
        worker.join()
        return done


    def _descriptors():
        found = {}
        for fd in os.listdir("/proc/self/fd"):
            try:
                found[fd] = os.readlink("/proc/self/fd/" + fd)
            except OSError:
                pass  # the listing's own descriptor, closed already
        return found


    def probe(targets, model_path):
        platform_pid = int(os.environ["PLATFORM_PID"])
        purelib = sysconfig.get_paths()["purelib"]
        report = {
            "read": {k: _try(lambda p=p: _read(p)) for k, p in targets["read"].items()},
            "list": {k: _try(lambda p=p: sorted(os.listdir(p))) for k, p in targets["list"].items()},
            "connect": {k: _try(lambda p=p: _connect(p)) for k, p in targets["connect"].items()},
            "write": {k: _try(lambda p=p: _open_for_writing(p)) for k, p in targets["write"].items()},
        }
        report["write"]["site_packages"] = _try(lambda: _open_for_writing(os.path.join(purelib, "evil.pth")))
        report["write"]["own_model_source"] = _try(
            lambda: _open_for_writing(os.path.join(model_path, "app.py"))
        )
        report["write"]["own_model_new_file"] = _try(
            lambda: _open_for_writing(os.path.join(model_path, "evil.py"))
        )
        report["write"]["interpreter"] = _try(lambda: _open_for_writing(sys.executable))
        report["platform_environ"] = _try(lambda: _read("/proc/%d/environ" % platform_pid))
        report["init_environ"] = _try(lambda: _read("/proc/1/environ"))
        report["signal_platform"] = _try(lambda: os.kill(platform_pid, 0))
        report["signal_init"] = _try(lambda: os.kill(1, signal.SIGKILL))
        report["processes"] = _processes()
        report["descriptors"] = _descriptors()
        report["new_user_namespace"] = _try(lambda: _unshare(0x10000000))  # CLONE_NEWUSER
        report["new_mount_namespace"] = _try(lambda: _unshare(0x00020000))  # CLONE_NEWNS
        report["thread"] = _try(_thread)
        report["uid"] = os.getuid()
        report["euid"] = os.geteuid()
        report["status"] = _status()
        report["own_env"] = {"API_KEY": os.environ.get("API_KEY"), "keys": sorted(os.environ)}
        report["everything_in_environ"] = "\\n".join("%s=%s" % kv for kv in os.environ.items())
        return report


    def fork(count):
        children = []
        try:
            for _ in range(count):
                pid = os.fork()
                if pid == 0:
                    time.sleep(60)
                    os._exit(0)
                children.append(pid)
        finally:
            for pid in children:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
        return len(children)


    def allocate(mb):
        block = bytearray(mb * MB)
        return len(block)


    def fill(folder, files, mb, then_sleep=0):
        for i in range(files):
            with open(os.path.join(folder, "fill-%d.bin" % i), "wb") as f:
                f.write(b"x" * (mb * MB))
        time.sleep(then_sleep)
        return files * mb


    def daemon(marker):
        # Its own session, SIGTERM ignored: only the end of its sandbox can stop it.
        proc = subprocess.Popen(
            ["/bin/sh", "-c", "trap '' TERM; exec sleep %s" % marker],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.3)
        return proc.pid


    def fetch(url):
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.read().decode()


    def through_tap(udp_port, tcp_port):
        # A socket bound to the way out (tap0) skips the namespace's own loopback route:
        # what each of three ways of binding it gets, sending to the node's 127.0.0.1.
        IP_UNICAST_IF = 50
        tap = socket.if_nametoindex("tap0")
        binds = {
            "SO_BINDTODEVICE": lambda s: s.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, b"tap0"),
            "IP_UNICAST_IF": lambda s: s.setsockopt(socket.IPPROTO_IP, IP_UNICAST_IF, socket.htonl(tap)),
        }
        report = {}
        for name, bind in binds.items():
            for kind in ("udp", "tcp"):
                s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
                s.settimeout(2)
                try:
                    bind(s)
                    if kind == "udp":
                        s.sendto(b"from the sandbox", ("127.0.0.1", udp_port))
                    else:
                        s.connect(("127.0.0.1", tcp_port))
                    report["%s %s" % (name, kind)] = "sent"
                except OSError as e:
                    report["%s %s" % (name, kind)] = e.strerror or type(e).__name__
                finally:
                    s.close()
        return report


    def network(urls, port, tap_ports=None):
        # What a model sees of the network: each URL's answer (or error), whether the
        # node's socket on `port` shows, whether it may listen on that port itself, its
        # resolver and its route to the clouds' metadata address (asked, never sent to).
        report = {"fetched": {}}
        if tap_ports:
            report["through_tap"] = through_tap(*tap_ports)
        for url in urls:
            try:
                report["fetched"][url] = fetch(url)
            except Exception as e:
                report["fetched"][url] = "%s: %s" % (type(e).__name__, getattr(e, "reason", e))
        with open("/proc/net/tcp") as f:
            report["sees_port"] = any(line.split()[1].endswith(":%04X" % port) for line in f.readlines()[1:])
        listener = socket.socket()
        try:
            listener.bind(("127.0.0.1", port))
            listener.listen()
            report["listens"] = True
        except OSError as e:
            report["listens"] = str(e)
        finally:
            listener.close()
        with open("/etc/resolv.conf") as f:
            report["resolv"] = f.read()
        report["routes"] = {}
        for address in ("169.254.169.254", "168.63.129.16", "10.0.2.3"):
            route = subprocess.run(["ip", "route", "get", address], capture_output=True, text=True)
            report["routes"][address] = (route.stdout + route.stderr).strip()
        return report


    def attack(payload, model_path, data_path=None):
        op = payload["op"]
        if op == "network":
            return network(payload["urls"], payload["port"], payload.get("tap_ports"))
        if op == "probe":
            return probe(payload["targets"], model_path)
        if op == "fork":
            return fork(payload["count"])
        if op == "allocate":
            return allocate(payload["mb"])
        if op == "fill":
            folder = data_path if payload.get("folder") == "data_path" else "/tmp"
            return fill(folder, payload["files"], payload["mb"], payload.get("then_sleep", 0))
        if op == "daemon":
            return daemon(payload["marker"])
        if op == "fetch":
            return fetch(payload["url"])
        raise ValueError("unknown op %r" % op)


    def score(data, base_path):
        # Sync (and the build's smoke test): the payload is the request body.
        return {"result": attack(json.loads(data), base_path)}


    def score_async(data_path, model_path):
        with open(os.path.join(data_path, os.environ["inputFileName"])) as f:
            payload = json.load(f)
        result = attack(payload, model_path, data_path)
        output = os.path.join(data_path, "result.json")
        with open(output, "w") as f:
            json.dump({"result": result}, f)
        return output


    def bomb(data, base_path):
        # What a hostile model.pkl does: one small pickle, gigabytes when loaded.
        with open(os.path.join(base_path, "model.pkl"), "rb") as f:
            return {"loaded": len(pickle.load(f))}
    """
)

# A 1 GiB allocation in 27 bytes: bytearray(0x40000000) through GLOBAL + REDUCE.
PICKLE_BOMB = b"cbuiltins\nbytearray\n(J\x00\x00\x00\x40tR."

NOT_FOUND = "FileNotFoundError: [Errno 2] No such file or directory"
PERMISSION = "PermissionError: [Errno 13] Permission denied"
READ_ONLY = "OSError: [Errno 30] Read-only file system"


# ---------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _platform(settings, monkeypatch):
    """The host's interpreter as every model's environment; a canary in the platform's env."""
    python = settings.ENVS_DIR / HOST_ENV / "bin" / "python"
    python.parent.mkdir(parents=True, exist_ok=True)
    if not (python.is_symlink() and python.readlink() == BASE_PYTHON):
        python.unlink(missing_ok=True)  # whatever another test left under this name
        python.symlink_to(BASE_PYTHON)
    monkeypatch.setattr(tasks.environments, "ensure_environment", lambda **kwargs: python.parent.parent)
    monkeypatch.setenv("NEOMARIL_ATTACK_CANARY", CANARY)
    assert not settings.UNSAFE_NO_SANDBOX


def _upload(user, *, group: str, operation: str, entrypoint: str, deployed: bool = True, **extra) -> MLModel:
    payload = {
        "name": f"{operation} {entrypoint} {uuid.uuid4().hex[:6]}",
        "group": group,
        "operation": operation,
        "model_reference": entrypoint,
        "python_version": PYTHON_VERSION,
        "source": file("app.py", ATTACK_SOURCE),
        "model": file("model.pkl", b"\x80\x04K\x01."),
        "requirements": file("requirements.txt", ""),
        "env": file(".env", f"API_KEY={ENV_SECRET}\nPLATFORM_PID={os.getpid()}\n"),
    }
    if operation == "Sync":
        payload["schema"] = file("schema.json", json.dumps({"op": "probe"}))
    payload.update(extra)
    response = api_client(user).post("/api/v1/models", payload, format="multipart")
    assert response.status_code == 201, response.json()
    model = MLModel.objects.get(hash=response.json()["hash"])
    if deployed:
        MLModel.objects.filter(pk=model.pk).update(
            status=MLModel.Status.DEPLOYED, env_fingerprint=HOST_ENV, deployed_build=1
        )
        model.refresh_from_db()
    return model


def _build(model: MLModel) -> MLModel:
    tasks.build_model(model.builds.get(status=ModelBuild.Status.QUEUED).pk)
    model.refresh_from_db()
    return model


def _execute(cast, model: MLModel, payload: dict) -> Execution:
    response = token_client(cast.group_token).post(
        f"/api/v1/run/{model.hash}",
        {"file": file("attack.json", json.dumps(payload))},
        format="multipart",
    )
    assert response.status_code == 202, response.json()
    execution = Execution.objects.get(model=model, number=response.json()["execution_id"])
    execution_tasks.run_execution(execution.pk)
    execution.refresh_from_db()
    return execution


def _result(execution: Execution):
    assert execution.status == "Succeeded", execution.log
    return json.loads((execution.folder / execution.output_file).read_text())["result"]


@pytest.fixture
def victim(cast, host) -> MLModel:
    """Another group's model, its runner up: files and a socket only it and the platform may use."""
    model = _upload(cast.outsider, group="other-team", operation="Sync", entrypoint="score")
    assert (model.folder / "app.py").is_file()
    host.ensure(model.hash)
    return model


@pytest.fixture
def host(model_host):
    return model_host


def _predict(model_host: ModelHost, model: MLModel, payload: dict, timeout: float = 60) -> dict:
    (socket_path,) = model_host.ensure(model.hash)["sockets"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(socket_path)
        write_frame(sock, {"op": "predict", "data": json.dumps(payload), "base_path": str(model.folder)})
        return read_frame(sock)


def _control(request: dict) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(10)
        sock.connect(str(paths.host_socket()))
        write_frame(sock, request)
        return read_frame(sock)


# ------------------------------------------------------------------ the probe and its checks


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Targets:
    """What the attacker aims at, and the state of the platform to compare after."""

    def __init__(self, attacker: MLModel, victim: MLModel, other_execution: Path | None = None):
        self.attacker = attacker
        # SQLite's database is a file of the data folder; PostgreSQL's is a server whose
        # password the job never sees (assert_contained: not in its environment).
        database = settings.DATABASES["default"]
        self.db = Path(database["NAME"]) if database["ENGINE"].endswith("sqlite3") else None
        self.db_password = database.get("PASSWORD") or None
        self.source = Path(settings.BASE_DIR) / "portal" / "settings.py"
        data = Path(settings.DATA_DIR)
        self.read = {
            "secret_key": data / "secret_key",
            "encryption_key": data / "encryption.key",
            "other_model_source": victim.folder / "app.py",
            "other_model_pickle": victim.folder / "model.pkl",
            "source_tree": self.source,
        }
        if self.db is not None:
            self.read["database"] = self.db
        if other_execution is not None:
            self.read["other_execution_input"] = other_execution
        self.runner_socket = paths.runner_socket(victim.hash, 1, 0)
        self.connect = {"other_runner": self.runner_socket, "control": paths.host_socket()}
        for path in self.connect.values():  # both answer the platform itself
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.connect(str(path))
        self.write = {
            "source_tree": self.source,
            "source_tree_new_file": self.source.with_name("neomaril_attack_probe.py"),
            "data_dir_new_file": data / "evil",
            "own_environment": settings.ENVS_DIR / HOST_ENV / "evil",
            "other_model_folder": victim.folder / "evil.py",
        }
        if self.db is not None:
            self.write["database"] = self.db
        self.list = {
            "models": settings.MODELS_DIR,
            "run": settings.RUN_DIR,
            "logs": data / "logs",
            "data": data,
            "executions_of_model": settings.EXECUTIONS_DIR / attacker.hash,
        }
        for path in (*self.read.values(), self.source):
            assert path.is_file(), f"{path} must exist for its attack to mean anything"
        self.before = {path: _digest(path) for path in (*self.read.values(), self.source)}
        self.victim = victim

    def payload(self) -> dict:
        as_str = lambda d: {k: str(v) for k, v in d.items()}  # noqa: E731
        return {
            "op": "probe",
            "targets": {
                "read": as_str(self.read),
                "list": as_str(self.list),
                "connect": as_str(self.connect),
                "write": as_str(self.write),
            },
        }


def assert_contained(
    report: dict, targets: Targets, *, models_visible: list[str], own_execution: Execution | None = None
) -> None:
    """Every escape failed with its concrete error, and nothing changed on the host."""
    for name, outcome in report["read"].items():
        assert outcome == {"ok": False, "error": f"{NOT_FOUND}: '{targets.read[name]}'"}, name
    for name, outcome in report["connect"].items():
        assert outcome == {"ok": False, "error": f"{NOT_FOUND}"}, name
    write = report["write"]
    for name in ("source_tree", "source_tree_new_file", "other_model_folder"):
        assert write[name] == {"ok": False, "error": f"{NOT_FOUND}: '{targets.write[name]}'"}, name
    # The data folder exists only as the path to its own folders, root's and closed.
    for name in {"database", "data_dir_new_file"} & targets.write.keys():
        assert write[name] == {"ok": False, "error": f"{PERMISSION}: '{targets.write[name]}'"}, name
    # Its own folder and environment: read-only mounts; their files are root's besides.
    for name in ("own_environment", "site_packages", "own_model_new_file"):
        assert not write[name]["ok"] and write[name]["error"].startswith(f"{READ_ONLY}: '"), (name, write)
    for name in ("own_model_source", "interpreter"):
        assert not write[name]["ok"] and write[name]["error"].startswith(f"{PERMISSION}: '"), (name, write)
    listed = report["list"]
    for name in ("run", "logs"):
        assert listed[name] == {"ok": False, "error": f"{NOT_FOUND}: '{targets.list[name]}'"}, name
    # The data folder shows only the paths leading to what the job may see.
    assert listed["models"] == {"ok": True, "value": models_visible}
    if own_execution is None:
        folder = targets.list["executions_of_model"]
        assert listed["executions_of_model"] == {"ok": False, "error": f"{NOT_FOUND}: '{folder}'"}
    else:  # its own execution's folder, not the model's other executions
        assert listed["executions_of_model"] == {"ok": True, "value": [str(own_execution.number)]}
    assert listed["data"]["ok"] and set(listed["data"]["value"]) <= {"models", "envs", "executions", "tmp"}

    # Other processes: its own PID namespace, so the platform's pid does not exist.
    platform_pid = os.getpid()
    assert report["signal_platform"] == {
        "ok": False,
        "error": "ProcessLookupError: [Errno 3] No such process",
    }
    assert report["platform_environ"] == {
        "ok": False,
        "error": f"{NOT_FOUND}: '/proc/{platform_pid}/environ'",
    }
    # pid 1 is the sandbox's own init (bwrap), root-owned: unreadable and unkillable.
    assert report["init_environ"] == {"ok": False, "error": f"{PERMISSION}: '/proc/1/environ'"}
    assert report["signal_init"] == {
        "ok": False,
        "error": "PermissionError: [Errno 1] Operation not permitted",
    }
    pids = sorted(int(p) for p in report["processes"])
    assert str(platform_pid) not in report["processes"]
    assert pids and max(pids) < 50, report["processes"]
    assert report["processes"]["1"] == "/usr/bin/bwrap"
    assert set(report["processes"].values()) <= {
        "/usr/bin/bwrap",
        str(settings.ENVS_DIR / HOST_ENV / "bin" / "python"),
    }, report["processes"]

    # Descriptors: its pipes, sockets and epoll, /dev/null, its own log, its own load block
    # (a memfd the host made for it: its counters, nothing else); no platform file.
    own_log = str(paths.runner_log(targets.attacker.hash))
    for fd, target in report["descriptors"].items():
        assert target.startswith(("pipe:[", "socket:[", "anon_inode:[eventpoll]", "/dev/null")) or target in (
            own_log,
            "/memfd:neomaril-load (deleted)",
        ), (fd, target)

    # Never root, no capabilities, no way to gain any: not even in a nested user namespace
    # (root there, with every capability: the door to most kernel exploits).
    assert report["uid"] != 0 and report["euid"] != 0
    status = report["status"]
    assert status["CapEff"] == status["CapPrm"] == status["CapInh"] == status["CapAmb"] == "0" * 16
    assert status["NoNewPrivs"] == "1"
    assert report["new_user_namespace"] == {
        "ok": False,
        "error": "PermissionError: [Errno 1] Operation not permitted",
    }
    assert report["new_mount_namespace"] == {
        "ok": False,
        "error": "PermissionError: [Errno 1] Operation not permitted",
    }
    assert report["thread"] == {"ok": True, "value": [1]}  # the filter leaves threads alone
    assert status["Uid"].split() == [str(report["uid"])] * 4

    # Secrets: its own .env, none of the platform's variables.
    assert report["own_env"]["API_KEY"] == ENV_SECRET
    assert CANARY not in json.dumps(report)
    if targets.db_password is not None:
        assert targets.db_password not in json.dumps(report)
    leaked = {"SECRET_KEY", "NEOMARIL_ADMIN_PASSWORD", "NEOMARIL_DATA_DIR", "DJANGO_SETTINGS_MODULE"}
    assert leaked.isdisjoint(report["own_env"]["keys"])
    assert {"DATABASE_URL", "REDIS_URL"}.isdisjoint(report["own_env"]["keys"])

    # The host side: nothing read was changed, nothing was created.
    for path, digest in targets.before.items():
        assert _digest(path) == digest, path
    for path in targets.write.values():
        if path not in targets.before:
            assert not path.exists(), path
    assert not (targets.attacker.folder / "evil.py").exists()


def _sleepers(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if (proc.info["cmdline"] or [])[-1:] == [marker]:
            found.append(proc)
    return found


def _wait_gone(marker: str, timeout: float = 10) -> list[psutil.Process]:
    deadline = time.monotonic() + timeout
    while (left := _sleepers(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture
def marker():
    """marker() -> a unique `sleep` argument; any sleeper left behind is killed at the end."""
    made: list[str] = []

    def make() -> str:
        made.append(str(900_000 + uuid.uuid4().int % 90_000))  # seconds of sleep: a unique argv
        return made[-1]

    yield make
    for value in made:
        for proc in _sleepers(value):  # only after a failure: a hole must not outlive its test
            proc.kill()


# ------------------------------------------------------------------------- the build


def test_smoke_test_cannot_escape(cast, victim):
    attacker = _upload(cast.owner, group="datarisk", operation="Sync", entrypoint="score", deployed=False)
    targets = Targets(attacker, victim)
    MLModel.objects.filter(pk=attacker.pk).update(schema=targets.payload())  # the smoke test's input
    attacker = _build(attacker)
    assert attacker.status == "Deployed", attacker.status_message
    assert_contained(attacker.smoke_result["result"], targets, models_visible=[attacker.hash])


def test_a_background_process_does_not_outlive_the_smoke_test(cast, marker):
    marker = marker()
    model = _upload(
        cast.owner,
        group="datarisk",
        operation="Sync",
        entrypoint="score",
        deployed=False,
        schema=file("schema.json", json.dumps({"op": "daemon", "marker": marker})),
    )
    model = _build(model)
    assert model.status == "Deployed", model.status_message
    assert isinstance(model.smoke_result["result"], int)  # it did start
    assert _wait_gone(marker) == []


def test_a_pickle_bomb_fails_the_build_naming_the_memory_limit(cast, settings):
    settings.BUILD_MEMORY_LIMIT_MB = 200
    model = _upload(
        cast.owner,
        group="datarisk",
        operation="Sync",
        entrypoint="bomb",
        deployed=False,
        model=file("model.pkl", PICKLE_BOMB),
    )
    model = _build(model)
    assert model.status == "Failed"
    assert model.status_message.startswith("The smoke test failed (call): MemoryError"), model.status_message
    assert model.status_message.endswith(
        "The model's code hit the sandbox limit of 200 MB of memory per process "
        "(raise NEOMARIL_BUILD_MEMORY_LIMIT_MB to allow more)."
    )
    assert model.builds.get().status == "Failed"


def test_forking_past_the_limit_fails_the_build_naming_it(cast, settings):
    settings.SANDBOX_PROCESSES = 16
    model = _upload(
        cast.owner,
        group="datarisk",
        operation="Sync",
        entrypoint="score",
        deployed=False,
        schema=file("schema.json", json.dumps({"op": "fork", "count": 100})),
    )
    model = _build(model)
    assert model.status == "Failed"
    assert "BlockingIOError: [Errno 11] Resource temporarily unavailable" in model.status_message
    assert model.status_message.endswith(
        "The model's code hit the sandbox limit of 16 processes and threads "
        "(raise NEOMARIL_SANDBOX_PROCESSES to allow more)."
    )


# ---------------------------------------------------------------------- Async executions


@pytest.fixture
def async_attacker(cast) -> MLModel:
    return _upload(cast.owner, group="datarisk", operation="Async", entrypoint="score_async")


def test_async_execution_cannot_escape(cast, victim, async_attacker):
    # An earlier execution of the same model: its files belong to that execution only.
    earlier = _execute(cast, async_attacker, {"op": "allocate", "mb": 1})
    assert _result(earlier) == 1024 * 1024
    targets = Targets(async_attacker, victim, other_execution=earlier.input_path)
    execution = _execute(cast, async_attacker, targets.payload())
    report = _result(execution)
    assert earlier.folder.is_dir() and execution.number == earlier.number + 1
    assert_contained(report, targets, models_visible=[async_attacker.hash], own_execution=execution)
    # The legitimate half: the result file is written, the execution sees its own folder.
    assert execution.output_file == "result.json" and execution.output_size > 0
    assert ENV_SECRET not in execution.log


def test_a_background_process_does_not_outlive_an_execution(cast, async_attacker, marker):
    marker = marker()
    execution = _execute(cast, async_attacker, {"op": "daemon", "marker": marker})
    assert isinstance(_result(execution), int)
    assert _wait_gone(marker) == []


def test_forking_past_the_limit_fails_the_execution_naming_it(cast, async_attacker, settings):
    settings.SANDBOX_PROCESSES = 16
    execution = _execute(cast, async_attacker, {"op": "fork", "count": 100})
    assert execution.status == "Failed"
    assert execution.error_message == (
        "The entrypoint raised BlockingIOError: [Errno 11] Resource temporarily unavailable\n"
        "The model's code hit the sandbox limit of 16 processes and threads "
        "(raise NEOMARIL_SANDBOX_PROCESSES to allow more)."
    )


def test_allocating_past_the_limit_fails_the_execution_naming_it(cast, async_attacker, settings):
    settings.EXECUTION_MEMORY_LIMIT_MB = 200
    execution = _execute(cast, async_attacker, {"op": "allocate", "mb": 400})
    assert execution.status == "Failed"
    assert execution.error_message == (
        "The entrypoint raised MemoryError\n"
        "The model's code hit the sandbox limit of 200 MB of memory per process "
        "(raise NEOMARIL_EXECUTION_MEMORY_LIMIT_MB to allow more)."
    )


def test_writing_past_the_disk_limit_fails_the_execution_naming_it(cast, async_attacker, settings):
    settings.EXECUTION_DISK_MB = 4
    # Many small files: the total written in its folder is watched.
    execution = _execute(
        cast, async_attacker, {"op": "fill", "folder": "data_path", "files": 12, "mb": 1, "then_sleep": 30}
    )
    assert execution.status == "Failed"
    assert execution.error_message.endswith(
        "The model's code hit the sandbox limit of 4 MB written in its folder "
        "(raise NEOMARIL_EXECUTION_DISK_MB to allow more)."
    ), execution.error_message
    assert execution.duration.total_seconds() < 20  # stopped, not left to sleep
    # One big file: the file-size limit stops the write itself, unless the watch of the
    # folder (twice a second) sees the 4 MB plus the input first; both name the limit.
    execution = _execute(cast, async_attacker, {"op": "fill", "folder": "data_path", "files": 1, "mb": 8})
    assert execution.status == "Failed"
    per_file = (
        "The entrypoint raised OSError: [Errno 27] File too large",
        "The model's code hit the sandbox limit of 4 MB per file in its folder, "
        f"{settings.SANDBOX_TMP_MB} MB in /tmp and {settings.SANDBOX_TMP_MB // 4} MB in /dev/shm "
        "(raise NEOMARIL_EXECUTION_DISK_MB for its folder, NEOMARIL_SANDBOX_TMP_MB for /tmp and /dev/shm).",
    )
    in_total = "The model's code hit the sandbox limit of 4 MB written in its folder (raise NEOMARIL_EXECUTION_DISK_MB to allow more)."
    message = execution.error_message
    assert (message.startswith(per_file[0]) and message.endswith(per_file[1])) or message == in_total, message


def test_writing_past_the_disk_limit_between_two_checks_still_fails_the_execution(
    cast, async_attacker, settings, monkeypatch
):
    """A fast writer fills its folder and returns before the next look at it (twice a
    second; 361 MB against 50 in the audit): the folder is measured once more at exit."""
    from models_app.runtime import oneshot

    settings.EXECUTION_DISK_MB = 4
    monkeypatch.setattr(oneshot, "_DISK_CHECK_INTERVAL", 3600)  # only the first look, at the start
    execution = _execute(cast, async_attacker, {"op": "fill", "folder": "data_path", "files": 12, "mb": 1})
    assert execution.status == "Failed", execution.log
    assert execution.error_message.endswith(
        "The model's code hit the sandbox limit of 4 MB written in its folder "
        "(raise NEOMARIL_EXECUTION_DISK_MB to allow more)."
    ), execution.error_message


def test_a_job_that_brings_the_data_disk_under_its_reserve_is_stopped_and_its_output_removed(
    cast, async_attacker, settings, monkeypatch
):
    from groups.uploads import folder_bytes
    from models_app.runtime import oneshot

    settings.DISK_RESERVE_MB = 64
    # The disk "fills" once the job has written 3 MB in its folder (the node's real disk
    # is not filled for a test).
    monkeypatch.setattr(
        oneshot,
        "free_bytes",
        lambda folder: 0 if folder_bytes(folder) > 3 * 1024 * 1024 else 10**12,
    )
    execution = _execute(
        cast, async_attacker, {"op": "fill", "folder": "data_path", "files": 8, "mb": 1, "then_sleep": 30}
    )
    assert execution.status == "Failed" and execution.attempts == 1
    assert execution.error_message == (
        "The server's data disk is nearly full (less than NEOMARIL_DISK_RESERVE_MB = 64 MB free): "
        "the model's code was stopped before it filled it."
    )
    assert execution.duration.total_seconds() < 20  # stopped, not left to sleep
    assert [path.name for path in execution.folder.iterdir()] == [execution.input_file]
    assert "What the model wrote was removed (the input is kept)." in execution.log


# -------------------------------------------------------------------------- network


@pytest.fixture
def web_server():
    """A tiny HTTP server on the host's loopback: "the outside" a model may reach."""

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            body = b"hello from outside"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Hello)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def _through_slirp(url: str) -> str:
    """The node's loopback `url` as a sandbox reaches it through slirp4netns, when allowed."""
    return url.replace("127.0.0.1", sandbox.SLIRP_HOST_ADDRESS)


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].strip("/"))


def test_outbound_network_works_when_allowed_and_is_cut_when_not(cast, web_server, settings):
    # The server stands for "the outside": the node's loopback, which a sandbox reaches
    # through slirp4netns's NAT only when an admin allows it (no traffic leaves the node).
    settings.SANDBOX_HOST_LOOPBACK = True
    allowed = _upload(cast.owner, group="datarisk", operation="Async", entrypoint="score_async")
    assert allowed.allow_network is True  # the default: models read databases
    execution = _execute(cast, allowed, {"op": "fetch", "url": _through_slirp(web_server)})
    assert _result(execution) == "hello from outside"

    cut = _upload(
        cast.owner, group="datarisk", operation="Async", entrypoint="score_async", allow_network="false"
    )
    assert cut.allow_network is False
    execution = _execute(cast, cut, {"op": "fetch", "url": _through_slirp(web_server)})
    assert execution.status == "Failed"
    assert execution.error_message == (
        "The entrypoint raised URLError: <urlopen error [Errno 101] Network is unreachable>"
    )


def test_a_networked_model_has_a_network_of_its_own(cast, web_server):
    """It cannot reach the node's loopback services, see the node's sockets, take a port
    the node uses (the web port while it restarts), nor route to the metadata service."""
    model = _upload(cast.owner, group="datarisk", operation="Async", entrypoint="score_async")
    port = _port(web_server)
    # Listeners on the node's loopback that a sandbox's packets must never reach.
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp,
        socket.create_server(("127.0.0.1", 0)) as tcp,
    ):
        udp.bind(("127.0.0.1", 0))
        payload = {
            "op": "network",
            "urls": [web_server, _through_slirp(web_server)],
            "port": port,
            "tap_ports": [udp.getsockname()[1], tcp.getsockname()[1]],
        }
        execution = _execute(cast, model, payload)
        # Bound to its way out (tap0), a socket skips the sandbox's own loopback route;
        # slirp4netns would deliver 127.x to the node's loopback, its web port included.
        arrived, _, _ = select.select([udp, tcp], [], [], 0.5)
        assert arrived == [], f"the node's loopback got the sandbox's packets: {_result(execution)}"
    report = _result(execution)
    assert set(report.pop("through_tap")) == {
        "SO_BINDTODEVICE udp",
        "SO_BINDTODEVICE tcp",
        "IP_UNICAST_IF udp",
        "IP_UNICAST_IF tcp",
    }
    assert report["fetched"] == {
        web_server: "URLError: [Errno 111] Connection refused",  # its own loopback: nobody there
        _through_slirp(web_server): "URLError: [Errno 101] Network is unreachable",
    }
    assert report["sees_port"] is False
    assert report["listens"] is True  # on its own loopback: the node's port stays the node's
    node_resolv = (
        Path("/etc/resolv.conf").read_text(),
        sandbox._read_text(sandbox.SYSTEMD_RESOLVED_UPSTREAM),
    )
    assert report["resolv"] == sandbox.private_network_resolv_conf(*node_resolv)
    # Metadata services and slirp's DNS forwarder (a relay to the node's loopback): blocked, never sent.
    assert report["routes"] == dict.fromkeys(
        ("169.254.169.254", "168.63.129.16", "10.0.2.3"), "RTNETLINK answers: No route to host"
    )
    # The node's server still answers the node.
    with urllib.request.urlopen(web_server, timeout=5) as answer:  # noqa: S310  (our loopback URL)
        assert answer.read() == b"hello from outside"


def _waiting_code(cast) -> sandbox.UserCode:
    """A networked sandbox that stays up until killed: a oneshot runner waiting on stdin."""
    model = _upload(cast.owner, group="datarisk", operation="Async", entrypoint="score_async")
    return sandbox.UserCode(
        python=Path(sys.executable),
        env={},
        cwd=model.folder,
        runner_args=["oneshot"],
        read_only=[model.folder],
    )


def _launch(code: sandbox.UserCode) -> sandbox.Launched:
    return sandbox.launch(code, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _launch_waiting(cast) -> sandbox.Launched:
    return _launch(_waiting_code(cast))


def _end(launched: sandbox.Launched) -> None:
    launched.kill()
    launched.process.wait()
    launched.process.stdin.close()
    launched.network_helper.wait(5)  # the sandbox held the only write end of its exit pipe
    launched.release()


def test_the_network_helper_ends_with_its_sandbox(cast):
    launched = _launch_waiting(cast)
    helper = launched.network_helper
    assert helper is not None
    time.sleep(0.5)
    assert helper.poll() is None and launched.process.poll() is None
    _end(launched)
    assert helper.returncode is not None


def _routes_of(launched: sandbox.Launched) -> list[str]:
    (inner,) = psutil.Process(launched.pid).children()  # bwrap's child: the namespaces' first process
    routes = subprocess.run(
        ["nsenter", f"--net=/proc/{inner.pid}/ns/net", "ip", "route"],
        capture_output=True,
        text=True,
        check=True,
    )
    return [line.strip() for line in routes.stdout.splitlines()]


@pytest.mark.parametrize("platform_uid", [0, 1000], ids=["root-platform", "unprivileged-platform"])
def test_the_private_network_is_routed_out_with_the_metadata_range_blocked(cast, monkeypatch, platform_uid):
    """As root the namespace is the node's user namespace's; unprivileged (here: root made
    to take that path, so bwrap maps a user namespace) slirp4netns and ip join the one
    that owns the network, found through the network's descriptor (bwrap nests another)."""
    if platform_uid:
        monkeypatch.setattr(sandbox.os, "geteuid", lambda: platform_uid)
    launched = _launch_waiting(cast)
    try:
        routes = _routes_of(launched)
    finally:
        _end(launched)
    assert f"default via {sandbox.SLIRP_HOST_ADDRESS} dev tap0" in routes
    assert "unreachable 169.254.0.0/16" in routes


# Run as a platform without privileges: a user namespace of its own, where it is uid 1000
# with no capability over the node's namespaces (it still owns the checkout's files, so
# the platform's interpreter and code under /root stay readable).
UNPRIVILEGED_PLATFORM = textwrap.dedent(
    """
    import dataclasses, json, os, sys
    from pathlib import Path

    import django

    django.setup()
    import psutil

    from models_app.runtime import oneshot, sandbox

    folder = Path(sys.argv[1])
    code = sandbox.UserCode(python=Path(sys.executable), env={}, cwd=folder, read_only=[folder])
    result = oneshot.run_oneshot(
        code, source=str(folder / "probe.py"), entrypoint="probe", kind="sync",
        args=[json.dumps({"port": int(sys.argv[2])})], timeout=60,
    )
    helpers = [p.name() for p in psutil.Process().children(recursive=True)]
    print(json.dumps({"euid": os.geteuid(), "helpers_left": helpers, **dataclasses.asdict(result)}))
    """
)

# What the sandbox sees of its network: its routes (/proc/net/route), the node's loopback
# server (at 127.0.0.1, and at slirp's 10.0.2.2), and whether it may listen on that port.
NETWORK_PROBE = textwrap.dedent(
    """
    import ipaddress, json, socket, struct

    def _routes():
        for line in open("/proc/net/route").read().splitlines()[1:]:
            iface, dest, gateway, flags, *_, mask = line.split()[:8]
            address = ipaddress.ip_address(struct.pack("<I", int(dest, 16)))
            prefix = bin(int(mask, 16)).count("1")
            via = ipaddress.ip_address(struct.pack("<I", int(gateway, 16)))
            yield f"{address}/{prefix} {'unreachable' if int(flags, 16) & 0x200 else iface} via {via}"

    def probe(data):
        port = json.loads(data)["port"]
        report = {"routes": sorted(_routes())}
        for name, address in (("loopback", "127.0.0.1"), ("slirp_host", "10.0.2.2")):
            try:
                with socket.create_connection((address, port), timeout=5) as connection:
                    connection.sendall(b"GET / HTTP/1.0\\r\\n\\r\\n")
                    answer = b"".join(iter(lambda: connection.recv(4096), b""))  # HTTP/1.0: until closed
                    report[name] = answer.decode().rsplit("\\r\\n", 1)[-1]
            except OSError as exc:
                report[name] = type(exc).__name__
        with socket.socket() as listener:
            listener.bind(("127.0.0.1", port))
            report["listens"] = True
        return report
    """
)


@pytest.mark.parametrize("host_loopback", [False, True], ids=["closed", "host-loopback-allowed"])
def test_an_unprivileged_platform_gives_its_sandboxes_the_same_private_network(
    tmp_path, web_server, host_loopback
):
    """Not root made to take the unprivileged path: a platform process that truly has no
    privilege over the node's namespaces, as a platform run by an ordinary user has."""
    if not shutil.which("unshare"):
        pytest.fail("unshare (util-linux) is needed to run the platform without privileges")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "probe.py").write_text(NETWORK_PROBE)
    env = {
        "PATH": os.environ["PATH"],
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "NEOMARIL_DATA_DIR": str(tmp_path / "data"),
        "NEOMARIL_SANDBOX_HOST_LOOPBACK": "1" if host_loopback else "0",
    }
    completed = subprocess.run(
        ["unshare", "--map-user=1000", "--map-group=1000", sys.executable, "-c", UNPRIVILEGED_PLATFORM]
        + [str(folder), str(_port(web_server))],
        cwd=settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    run = json.loads(completed.stdout.strip().splitlines()[-1])
    assert run["euid"] == 1000
    assert run["ok"] is True, run
    report = run["result"]
    assert f"0.0.0.0/0 tap0 via {sandbox.SLIRP_HOST_ADDRESS}" in report["routes"]  # slirp4netns connected it
    assert "169.254.0.0/16 unreachable via 0.0.0.0" in report["routes"]
    assert report["loopback"] == "ConnectionRefusedError"  # its own loopback, not the node's
    assert report["slirp_host"] == ("hello from outside" if host_loopback else "OSError")
    assert report["listens"] is True  # the node's port is free in its own namespace
    assert run["helpers_left"] == []  # slirp4netns ended with the sandbox


def test_a_private_network_that_cannot_be_set_up_leaves_no_sandbox_behind(cast, settings, monkeypatch):
    monkeypatch.setattr(sandbox, "blocked_destinations", lambda: ["not-a-network"])  # what ip refuses
    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def recorded(*args, **kwargs):
        started.append(real_popen(*args, **kwargs))
        return started[-1]

    namespace_pids = []
    real_namespace_pid = sandbox._PrivateNetwork._namespace_pid

    def recorded_pid(self, process):
        namespace_pids.append(real_namespace_pid(self, process))
        return namespace_pids[-1]

    monkeypatch.setattr(sandbox.subprocess, "Popen", recorded)
    monkeypatch.setattr(sandbox._PrivateNetwork, "_namespace_pid", recorded_pid)
    code = _waiting_code(cast)
    fds_before = set(os.listdir("/proc/self/fd"))
    with pytest.raises(
        sandbox.SandboxUnavailable, match="routes blocking not-a-network.* could not be added"
    ):
        _launch(code)
    assert {
        fd: os.readlink(f"/proc/self/fd/{fd}") for fd in set(os.listdir("/proc/self/fd")) - fds_before
    } == {}  # every pipe and namespace closed
    (the_sandbox,) = [process for process in started if "--info-fd" in process.args]
    assert the_sandbox.returncode is not None  # killed and reaped
    # bwrap's child (its own session) dies with bwrap (--die-with-parent).
    assert psutil.wait_procs([psutil.Process(namespace_pids[0])], timeout=5)[1] == []
    # slirp4netns was never started: the routes come before it.
    assert "slirp4netns" not in [Path(process.args[0]).name for process in started]


def test_the_nodes_network_is_shared_only_when_an_admin_says_so(cast, web_server, settings):
    settings.SANDBOX_NETWORK = "host"
    model = _upload(cast.owner, group="datarisk", operation="Async", entrypoint="score_async")
    port = _port(web_server)
    report = _result(_execute(cast, model, {"op": "network", "urls": [web_server], "port": port}))
    assert report["fetched"] == {web_server: "hello from outside"}
    assert report["sees_port"] is True
    assert report["listens"] == "[Errno 98] Address already in use"


# ------------------------------------------------------------------ Sync warm runners


@pytest.mark.slow
def test_sync_runner_cannot_escape(cast, victim, host):
    attacker = _upload(cast.owner, group="datarisk", operation="Sync", entrypoint="score")
    targets = Targets(attacker, victim)
    assert _control({"op": "status"})["ok"] is True  # the control socket serves the platform
    answer = _predict(host, attacker, targets.payload())
    assert answer["ok"] is True, answer
    assert_contained(answer["result"]["result"], targets, models_visible=[attacker.hash])
    # The victim's runner still answers its own callers, untouched.
    assert _predict(host, victim, {"op": "allocate", "mb": 1}) == {"ok": True, "result": {"result": 1048576}}


@pytest.mark.slow
def test_sync_background_process_dies_with_a_disable_and_a_stop(cast, host, marker):
    model = _upload(cast.owner, group="datarisk", operation="Sync", entrypoint="score")
    first = marker()
    answer = _predict(host, model, {"op": "daemon", "marker": first})
    assert answer["ok"] is True, answer
    (sleeper,) = _sleepers(first)  # it runs, on the host, until its sandbox ends
    assert sleeper.uids().real != 0
    model_services.disable(model, cast.owner)
    host._retire_undeployed()  # what the host's supervision loop does with a disabled model
    assert _wait_gone(first) == []

    # A stop (the control socket's "stop", e.g. before a delete) ends it the same way.
    MLModel.objects.filter(pk=model.pk).update(status=MLModel.Status.DEPLOYED)
    second = marker()
    assert _predict(host, model, {"op": "daemon", "marker": second})["ok"] is True
    assert len(_sleepers(second)) == 1
    assert _control({"op": "stop", "model": model.hash}) == {"ok": True, "stopped": 1}
    assert _wait_gone(second) == []


@pytest.mark.slow
def test_sync_runner_limits_fail_the_call(cast, host, settings, web_server):
    settings.SANDBOX_HOST_LOOPBACK = True  # web_server stands for the outside
    settings.SANDBOX_PROCESSES = 16
    settings.RUNNER_MEMORY_LIMIT_MB = 200
    settings.SANDBOX_TMP_MB = 8
    model = _upload(cast.owner, group="datarisk", operation="Sync", entrypoint="score")

    answer = _predict(host, model, {"op": "fork", "count": 100})
    assert answer["ok"] is False and answer["phase"] == "call"
    assert answer["error"] == "BlockingIOError: [Errno 11] Resource temporarily unavailable"

    answer = _predict(host, model, {"op": "allocate", "mb": 400})
    assert answer["ok"] is False and answer["error"] == "MemoryError"

    answer = _predict(host, model, {"op": "fill", "files": 20, "mb": 1})
    assert answer["ok"] is False
    assert answer["error"].startswith("OSError: [Errno 28] No space left on device")

    # The runner survived every one of them and still serves, with the network allowed.
    assert _predict(host, model, {"op": "fetch", "url": _through_slirp(web_server)}) == {
        "ok": True,
        "result": {"result": "hello from outside"},
    }
    cut = _upload(cast.owner, group="datarisk", operation="Sync", entrypoint="score", allow_network="false")
    answer = _predict(host, cut, {"op": "fetch", "url": _through_slirp(web_server)})
    assert answer["ok"] is False
    assert answer["error"] == "URLError: <urlopen error [Errno 101] Network is unreachable>"
