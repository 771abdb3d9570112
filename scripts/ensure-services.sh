#!/usr/bin/env bash
# Start local PostgreSQL and Redis when they are down. Does nothing for
# services that answer, or that live on another host (DATABASE_URL/REDIS_URL
# name them; 127.0.0.1:5432 and :6379 otherwise).
# PostgreSQL: a Debian cluster (pg_lsclusters) on that port that is down is
# started; otherwise, if nothing listens there, the embedded PostgreSQL 18 from
# the venv (scripts/local_postgres.py, data in .postgres/18; user postgres,
# trust auth, so DATABASE_URL may name no other user and no password).
# Redis stays a real server: Debian's, installed when root.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
PY="$VENV/bin/python"

read -r pg_host pg_port pg_credentials < <("$PY" - <<'EOF'
import os
from urllib.parse import urlsplit
url = urlsplit(os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/backfill")
own = url.username not in (None, "postgres") or url.password is not None
print(url.hostname or "127.0.0.1", url.port or 5432, "own" if own else "postgres")
EOF
)
read -r redis_host redis_port < <("$PY" - <<'EOF'
import os
from urllib.parse import urlsplit
url = urlsplit(os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0")
print(url.hostname or "127.0.0.1", url.port or 6379)
EOF
)
is_local() { [ "$1" = 127.0.0.1 ] || [ "$1" = localhost ]; }

pg_answers() { "$PY" -c "import socket,sys; socket.create_connection(('$pg_host', $pg_port), 1)" 2>/dev/null; }
pg_ready() { pg_answers && { ! command -v pg_isready >/dev/null 2>&1 || pg_isready -q -h "$pg_host" -p "$pg_port" -U postgres; }; }

# Debian's cluster that listens on this port, if one is installed and down.
debian_cluster() {
  command -v pg_lsclusters >/dev/null 2>&1 || return 0
  pg_lsclusters -h 2>/dev/null | awk -v port="$pg_port" '$3 == port && $4 == "down" {print $1 " " $2; exit}'
}

if ! pg_ready && is_local "$pg_host"; then
  cluster=$(debian_cluster)
  if [ -n "$cluster" ]; then
    echo "Starting PostgreSQL $cluster..."
    # shellcheck disable=SC2086
    pg_ctlcluster --skip-systemctl-redirect $cluster start
  elif ! pg_answers; then
    if [ "$pg_credentials" = own ]; then
      echo "No PostgreSQL on $pg_host:$pg_port, and the embedded one has only the postgres role with trust auth: use a DATABASE_URL with user postgres and no password, or start your own server." >&2
      exit 1
    fi
    # Two runs at once must not both initialise it: one waits, then finds it running.
    mkdir -p .postgres
    exec 9>.postgres/18.lock
    flock 9
    if ! pg_answers; then
      echo "No PostgreSQL on $pg_host:$pg_port: starting the embedded PostgreSQL 18 (data in .postgres/18)."
      "$PY" scripts/local_postgres.py start --port "$pg_port" --data .postgres/18 >/dev/null
    fi
    exec 9>&-
  fi
fi
for _ in $(seq 1 30); do
  pg_ready && break
  sleep 1
done
pg_ready || { echo "PostgreSQL is not reachable on $pg_host:$pg_port" >&2; exit 1; }

redis_ready() { redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1; }
if ! redis_ready && is_local "$redis_host"; then
  if ! command -v redis-server >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Installing Debian's redis-server..."
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q redis-server >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q redis-server >/dev/null 2>&1; } || true
  fi
  if command -v redis-server >/dev/null 2>&1; then
    echo "Starting Redis..."
    redis-server --daemonize yes --bind "$redis_host" --port "$redis_port" --save "" --appendonly no
  else
    echo "Redis is not running on $redis_host:$redis_port and not installed: install redis-server (apt-get install redis-server) or set REDIS_URL." >&2
    exit 1
  fi
fi
for _ in $(seq 1 30); do
  redis_ready && break
  sleep 1
done
redis_ready || { echo "Redis is not reachable on $redis_host:$redis_port" >&2; exit 1; }
