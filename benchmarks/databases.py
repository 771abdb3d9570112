"""Throw-away databases for benchmarks: fresh ones and identical copies of a template."""

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
SERVER = os.environ.get("BENCHMARK_SERVER", "postgres://postgres@127.0.0.1:5432")


def url(db: str) -> str:
    return f"{SERVER}/{db}"


def env_for(db: str, **extra: str) -> dict[str, str]:
    """As in production, DEBUG is off unless the caller's environment sets it (and so a
    SECRET_KEY is needed: a benchmark's own, unless the caller gives one)."""
    return {
        **os.environ,
        "DATABASE_URL": url(db),
        "DEBUG": os.environ.get("DEBUG", "false"),
        "SECRET_KEY": os.environ.get("SECRET_KEY")
        or "benchmark-only-secret-key-0123456789abcdefghijklmnop",
        **extra,  # may name another server's DATABASE_URL
    }


def _admin(statement: sql.Composed) -> None:
    with psycopg.connect(url("postgres"), autocommit=True) as conn:
        conn.execute(statement)


def recreate(db: str) -> str:
    drop(db)
    _admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    return db


def drop(db: str) -> None:
    _admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


def copy_of(template: str, db: str) -> str:
    """An identical copy, made by PostgreSQL file-level copy (CREATE DATABASE ... TEMPLATE)."""
    drop(db)
    _admin(
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(db), sql.Identifier(template)
        )
    )
    return db


def manage(db: str, *args: str, quiet: bool = False, **extra_env: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env_for(db, **extra_env),
        check=True,
        stdout=subprocess.DEVNULL if quiet else None,
    )


def shell(db: str, code: str, **extra_env: str) -> str:
    """Run Python in `manage.py shell` against `db`; return what it printed."""
    return subprocess.run(
        [sys.executable, "manage.py", "shell", "--no-imports", "-c", code],
        cwd=ROOT,
        env=env_for(db, **extra_env),
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def python_json(db: str, *args: str) -> dict[str, Any]:
    """Run one of the benchmarks' Django-side modules against `db`; return its last line,
    the JSON it reports: the module's own process keeps its memory and timing apart."""
    out = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=ROOT,
        env=env_for(db),
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def vacuum_analyze(db: str) -> None:
    with psycopg.connect(url(db), autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
