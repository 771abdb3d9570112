#!/usr/bin/env bash
# Start local PostgreSQL and Redis when they are down. Does nothing for
# services that answer, or that live on another host (DATABASE_URL/REDIS_URL).
set -euo pipefail

pg_host=127.0.0.1
pg_port=5432
redis_host=127.0.0.1
redis_port=6379

if ! pg_isready -q -h "$pg_host" -p "$pg_port" 2>/dev/null; then
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    echo "Starting PostgreSQL..."
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
  fi
  for _ in $(seq 1 30); do
    pg_isready -q -h "$pg_host" -p "$pg_port" && break
    sleep 1
  done
  pg_isready -q -h "$pg_host" -p "$pg_port" || { echo "PostgreSQL is not reachable on $pg_host:$pg_port" >&2; exit 1; }
fi

if ! redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1; then
  if command -v redis-server >/dev/null 2>&1; then
    echo "Starting Redis..."
    redis-server --daemonize yes --bind "$redis_host" --port "$redis_port" --save "" --appendonly no
  fi
  for _ in $(seq 1 30); do
    redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1 && break
    sleep 1
  done
  redis-cli -h "$redis_host" -p "$redis_port" ping >/dev/null 2>&1 || { echo "Redis is not reachable on $redis_host:$redis_port" >&2; exit 1; }
fi
