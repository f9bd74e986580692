"""Run the suite on each backend: the embedded default, and PostgreSQL + Redis.

The platform runs on SQLite with django-q2's ORM broker (one node) or on PostgreSQL with
Redis as django-q2's broker (any number of nodes). `make test` runs the suite once per
backend named by NEOMARIL_TEST_BACKENDS (docs/configuration.md, "Tests"):

    python -m tests.backends sqlite|postgres|both [--postgres-args='ARGS'] -- COMMAND [ARGS...]

- `sqlite`: the command with neither DATABASE_URL nor REDIS_URL;
- `postgres`: PostgreSQL 15 and redis-server from Debian's packages, started for this
  pass in a throw-away folder, the command run with their DATABASE_URL and REDIS_URL,
  the servers stopped and the folder removed after (on failure and Ctrl-C too);
- `both`: the first, then the second; the exit status is non-zero if either failed.

`--postgres-args` are appended to the command in the postgres pass only (`make test`
gives it `-n 2 --e2e-serial`: see the Makefile).

The servers are for tests only: loopback, free ports, a random password each, no
durability (fsync off, no Redis snapshots), and they die with this process (parent-death
signal) if it is killed. PostgreSQL refuses to run as root: as root it runs as Debian's
`postgres` user. A missing package is installed with apt-get when we are root; otherwise
the pass fails, naming the package: a backend is never skipped silently.

End-to-end tests start `make run` many times; `portal_env` gives each data folder a
database and a Redis database of its own, as SQLite gives each data folder its own file.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pwd
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

PG_BIN = Path("/usr/lib/postgresql/15/bin")
PASSES = {"sqlite": ["sqlite"], "postgres": ["postgres"], "both": ["sqlite", "postgres"]}
DESCRIPTIONS = {
    "sqlite": "SQLite, django-q2's ORM broker",
    "postgres": "PostgreSQL 15 (DATABASE_URL), Redis as django-q2's broker (REDIS_URL)",
}
SERVER_VARIABLES = ("DATABASE_URL", "REDIS_URL")
# Redis bookkeeping of portal_env, in database 0 (which no portal gets).
REDIS_DATABASES = 1024
REDIS_COUNTER, REDIS_INDEX = "neomaril-test:next-database", "neomaril-test:databases"


class BackendError(RuntimeError):
    """A server could not be installed or started; the message says what to do."""


def say(message: str) -> None:
    print(f"[tests.backends] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_package(executable: Path | str, package: str) -> None:
    """Install Debian's `package` when `executable` is missing (root only), else fail."""
    if shutil.which(str(executable)):
        return
    if os.geteuid() != 0:
        raise BackendError(
            f"{executable} is missing: install Debian's {package} (apt-get install {package})."
        )
    say(f"{executable} is missing: installing Debian's {package}...")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", package]
    if subprocess.run(install, env=env, stdout=subprocess.DEVNULL).returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], env=env, check=False)
        subprocess.run(install, env=env, stdout=subprocess.DEVNULL, check=False)
    if not shutil.which(str(executable)):
        raise BackendError(f"apt-get could not install {package}.")


def _dies_with_us(sig: int):
    """preexec_fn: the server gets `sig` if this process dies, even by SIGKILL."""
    from portal.procs import die_with_parent

    parent = os.getpid()
    return lambda: die_with_parent(parent, sig)


def _wait_until(ready, process: subprocess.Popen, what: str, log: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise BackendError(f"{what} did not start (exit {process.poll()}):\n{tail}")
        time.sleep(0.1)


def _stop(process: subprocess.Popen, sig: int, timeout: float = 30) -> None:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def postgres(folder: Path) -> Iterator[str]:
    """PostgreSQL 15 on 127.0.0.1 with data in `folder`; yields the URL of database `neomaril`."""
    ensure_package(PG_BIN / "postgres", "postgresql-15")
    user = pwd.getpwnam("postgres") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    as_user = {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []} if os.geteuid() == 0 else {}
    folder.mkdir(mode=0o700)
    os.chown(folder, user.pw_uid, user.pw_gid)
    password = secrets.token_urlsafe(24)
    password_file = folder / "password"
    password_file.write_text(password)
    os.chown(password_file, user.pw_uid, user.pw_gid)
    initdb = subprocess.run(
        [PG_BIN / "initdb", "--pgdata", folder / "data", "--username", "postgres", "--pwfile", password_file]
        + ["--auth", "scram-sha-256", "--encoding", "UTF8", "--no-locale", "--no-sync"],
        cwd=folder,
        capture_output=True,
        text=True,
        **as_user,
    )
    password_file.unlink()
    if initdb.returncode != 0:
        raise BackendError(f"initdb failed:\n{initdb.stdout}{initdb.stderr}")
    port = free_port()
    log = folder / "postgres.log"
    settings = {
        "listen_addresses": "127.0.0.1",
        "port": port,
        "unix_socket_directories": folder,
        # Every `make run` of the end-to-end tests opens a few dozen connections.
        "max_connections": 300,
        # A throw-away server: nothing is worth waiting for the disk.
        "fsync": "off",
        "synchronous_commit": "off",
        "full_page_writes": "off",
    }
    with open(log, "ab") as out:
        server = subprocess.Popen(
            [PG_BIN / "postgres", "-D", folder / "data"] + [f"-c{k}={v}" for k, v in settings.items()],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_dies_with_us(signal.SIGQUIT),  # SIGQUIT: immediate shutdown
            **as_user,
        )
    try:
        url = f"postgres://postgres:{password}@127.0.0.1:{port}"

        def accepts() -> bool:
            import psycopg

            try:
                psycopg.connect(f"{url}/postgres", connect_timeout=2).close()
            except psycopg.OperationalError:
                return False
            return True

        _wait_until(accepts, server, "PostgreSQL", log)
        _create_database(f"{url}/postgres", "neomaril")
        say(f"PostgreSQL 15 listening on 127.0.0.1:{port} (data in {folder})")
        yield f"{url}/neomaril"
    finally:
        _stop(server, signal.SIGINT)  # SIGINT: fast shutdown


@contextlib.contextmanager
def redis(folder: Path) -> Iterator[str]:
    """redis-server on 127.0.0.1, in memory only; yields the URL of its database 0."""
    ensure_package("redis-server", "redis-server")
    folder.mkdir(mode=0o700)
    password = secrets.token_urlsafe(24)
    port = free_port()
    config = folder / "redis.conf"
    config.write_text(
        f"bind 127.0.0.1\nport {port}\nrequirepass {password}\ndir {folder}\n"
        f'save ""\nappendonly no\ndaemonize no\ndatabases {REDIS_DATABASES}\n'
    )
    config.chmod(0o600)
    log = folder / "redis.log"
    url = f"redis://:{password}@127.0.0.1:{port}/0"
    with open(log, "ab") as out:
        server = subprocess.Popen(
            ["redis-server", config],
            cwd=folder,
            stdout=out,
            stderr=subprocess.STDOUT,
            preexec_fn=_dies_with_us(signal.SIGTERM),
        )
    try:

        def answers() -> bool:
            import redis as client

            try:
                return client.from_url(url, socket_timeout=2).ping()
            except client.RedisError:
                return False

        _wait_until(answers, server, "redis-server", log)
        say(f"Redis listening on 127.0.0.1:{port}")
        yield url
    finally:
        _stop(server, signal.SIGTERM)


@contextlib.contextmanager
def servers() -> Iterator[dict[str, str]]:
    """PostgreSQL and Redis for one pass: their DATABASE_URL and REDIS_URL."""
    folder = Path(tempfile.mkdtemp(prefix="neomaril-backends-"))
    folder.chmod(0o755)  # PostgreSQL's user must reach its own folder inside
    try:
        with postgres(folder / "postgresql") as database_url, redis(folder / "redis") as redis_url:
            yield {"DATABASE_URL": database_url, "REDIS_URL": redis_url}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _create_database(url: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(url, autocommit=True) as connection:
        exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone()
        if not exists:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def database_url(database: dict) -> str:
    """The DATABASE_URL of a Django connection's settings (e.g. the test database's), for
    a child process that must work on the same database as the test."""
    if database["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{database['NAME']}"
    credentials = quote(database["USER"], safe="") + ":" + quote(database["PASSWORD"], safe="")
    return f"postgres://{credentials}@{database['HOST']}:{database['PORT']}/{quote(database['NAME'])}"


def portal_env(data_dir: Path, environ: dict[str, str] | None = None) -> dict[str, str]:
    """DATABASE_URL and REDIS_URL for a `make run` on `data_dir`, its own like its folder.

    On PostgreSQL a database named after the folder (created if needed: a portal started
    again on the same folder finds its data); on Redis a database number kept per folder.
    Nothing on SQLite: the database is a file in the data folder already.
    """
    environ = os.environ if environ is None else environ
    key = str(Path(data_dir).resolve())
    found: dict[str, str] = {}
    database_url = environ.get("DATABASE_URL", "")
    if database_url.startswith(("postgres://", "postgresql://")):
        name = "neomaril_" + hashlib.sha256(key.encode()).hexdigest()[:16]
        parts = urlsplit(database_url)
        _create_database(urlunsplit(parts._replace(path="/postgres")), name)
        found["DATABASE_URL"] = urlunsplit(parts._replace(path=f"/{name}"))
    redis_url = environ.get("REDIS_URL", "")
    if redis_url:
        import redis as client

        parts = urlsplit(redis_url)
        connection = client.from_url(urlunsplit(parts._replace(path="/0")))
        connection.hsetnx(REDIS_INDEX, key, connection.incr(REDIS_COUNTER))
        number = int(connection.hget(REDIS_INDEX, key))
        available = int(connection.config_get("databases")["databases"])
        if number >= available:
            raise BackendError(f"Redis has {available} databases; the end-to-end tests need one per portal.")
        found["REDIS_URL"] = urlunsplit(parts._replace(path=f"/{number}"))
    return found


def run_pass(backend: str, command: list[str]) -> int:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_VARIABLES}
    if backend == "sqlite":
        return _run(command, env)
    with servers() as urls:
        return _run(command, {**env, **urls})


_interrupted: list[int] = []  # signals received: no further pass after one


def _run(command: list[str], env: dict[str, str]) -> int:
    """The command's exit status. SIGTERM and SIGHUP are passed on to it; Ctrl-C reaches
    it from the terminal. Either way we wait for it, then stop the servers."""
    child = subprocess.Popen(command, env=env)

    def pass_on(sig, _frame):
        _interrupted.append(sig)
        if sig != signal.SIGINT:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(sig)

    signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, pass_on) for sig in signals}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


USAGE = f"usage: python -m tests.backends {'|'.join(PASSES)} [--postgres-args='ARGS'] -- COMMAND [ARGS...]"


def main(argv: list[str]) -> int:
    options, command = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else ([], [])
    if not command or not options or options[0] not in PASSES:
        say(USAGE)
        return 2
    extra: dict[str, list[str]] = {}
    for option in options[1:]:
        name, _, value = option.partition("=")
        if name != "--postgres-args":
            say(USAGE)
            return 2
        extra["postgres"] = shlex.split(value)
    backends = PASSES[options[0]]
    results = []
    for number, backend in enumerate(backends, 1):
        more = extra.get(backend, [])
        say(f"pass {number}/{len(backends)}: {backend} ({DESCRIPTIONS[backend]}) {shlex.join(more)}".rstrip())
        started = time.monotonic()
        try:
            status = run_pass(backend, command + more)
        except BackendError as problem:
            say(f"the {backend} pass could not start: {problem}")
            status = 3
        minutes, seconds = divmod(round(time.monotonic() - started), 60)
        results.append((backend, status, f"{minutes}m{seconds:02d}s"))
        if _interrupted:
            break
    for backend, status, took in results:
        say(f"{backend}: {'passed' if status == 0 else f'FAILED (exit {status})'} in {took}")
    return next((status for _, status, _ in results if status != 0), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
