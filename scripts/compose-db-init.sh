#!/bin/sh
# Run once by the postgres image on a new data volume (docker-entrypoint-initdb.d):
# the app connects as a role of its own that owns its database, not as the superuser.
# It may see other roles' sessions (pg_read_all_stats: what holds a table before a
# schema step, old transactions for pacing) and end them when an operator asks
# (pg_signal_backend: migrate_with_timeouts --terminate-blockers); see docs/runbook.md.
set -eu
psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres \
  --set app_password="$APP_DB_PASSWORD" <<'SQL'
CREATE ROLE backfill LOGIN PASSWORD :'app_password';
CREATE DATABASE backfill OWNER backfill;
GRANT pg_read_all_stats, pg_signal_backend TO backfill;
SQL
