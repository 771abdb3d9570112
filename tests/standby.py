"""A private PostgreSQL primary with a streaming standby, made for one test module.

`initdb` and `pg_basebackup` as the `postgres` user, `pg_ctl` on free ports,
in a temporary folder removed afterwards: the shared server is never touched.
"""

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

SERVER_SETTINGS = """
listen_addresses = '127.0.0.1'
wal_level = replica
max_wal_senders = 4
wal_keep_size = '512MB'
hot_standby = on
shared_buffers = '64MB'
"""
# Tests need no durability; a benchmark measures with it.
NO_FSYNC = "fsync = off\n"


def binaries() -> Path | None:
    """The newest installed PostgreSQL's bin folder (Debian's layout), if any."""
    root = Path("/usr/lib/postgresql")
    versions = sorted(root.glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


def available() -> bool:
    """Root (to act as `postgres`), the server binaries and a `postgres` user."""
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return os.geteuid() == 0 and binaries() is not None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    data: Path
    port: int
    log: Path

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname=database, autocommit=True
        )


class PrimaryAndStandby:
    def __init__(self, durable: bool = False) -> None:
        self.durable = durable
        bin_dir = binaries()
        assert bin_dir is not None
        self.bin = bin_dir
        self.folder = Path(tempfile.mkdtemp(prefix="backfill-standby-"))
        shutil.chown(self.folder, "postgres", "postgres")
        self.primary = Server(self.folder / "primary", free_port(), self.folder / "primary.log")
        self.standby = Server(self.folder / "standby", free_port(), self.folder / "standby.log")

    def as_postgres(self, *args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            timeout=120,
            cwd=self.folder,
        )

    def start(self) -> None:
        self.as_postgres(
            str(self.bin / "initdb"),
            "-D",
            str(self.primary.data),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        )
        self.configure(self.primary)
        self.pg_ctl(self.primary, "start")
        self.as_postgres(
            str(self.bin / "pg_basebackup"),
            "-h", "127.0.0.1", "-p", str(self.primary.port), "-U", "postgres",
            "-D", str(self.standby.data), "-R", "-X", "stream", "--no-sync",
        )  # fmt: skip
        self.configure(self.standby)
        self.pg_ctl(self.standby, "start")
        self.wait_for_streaming()

    def configure(self, server: Server) -> None:
        settings = (
            SERVER_SETTINGS + f"port = {server.port}\nunix_socket_directories = '{self.folder}'\n"
        )
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(settings)

    def pg_ctl(self, server: Server, action: str) -> None:
        self.as_postgres(
            str(self.bin / "pg_ctl"),
            "-D",
            str(server.data),
            "-l",
            str(server.log),
            "-w",
            "-m",
            "fast",
            action,
        )

    def wait_for_streaming(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.primary.connect() as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
                ).fetchone()
            if row and row[0]:
                return
            time.sleep(0.2)
        raise TimeoutError(f"the standby did not stream: {self.standby.log.read_text()[-2000:]}")

    def limit_standby_cpu(self, percent: int) -> bool:
        """Give the standby's processes `percent` of one CPU (a cgroup v1 CPU quota), as
        a standby on a smaller machine has: its replay then falls behind a fast writer.
        False where there is no such cgroup to make."""
        root = Path("/sys/fs/cgroup/cpu")
        if not (root / "cgroup.procs").exists():
            return False
        self.cgroup = root / self.folder.name
        self.cgroup.mkdir(exist_ok=True)
        (self.cgroup / "cpu.cfs_quota_us").write_text(str(percent * 1000))
        postmaster = (self.standby.data / "postmaster.pid").read_text().split()[0]
        children = subprocess.run(
            ["pgrep", "-P", postmaster], capture_output=True, text=True, check=False
        ).stdout.split()
        for pid in (postmaster, *children):
            with contextlib.suppress(OSError):
                (self.cgroup / "cgroup.procs").write_text(pid)
        return True

    def stop(self) -> None:
        for server in (self.standby, self.primary):
            if (server.data / "postmaster.pid").exists():
                with contextlib.suppress(subprocess.CalledProcessError):
                    self.pg_ctl(server, "stop")
        shutil.rmtree(self.folder, ignore_errors=True)
        cgroup = getattr(self, "cgroup", None)
        if cgroup is not None:
            with contextlib.suppress(OSError):
                cgroup.rmdir()
