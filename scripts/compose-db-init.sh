#!/bin/sh
# Run once by the postgres image on a new data volume (docker-entrypoint-initdb.d):
# the app connects as a role of its own that owns its database, not as the superuser.
set -eu
psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres \
  --set app_password="$APP_DB_PASSWORD" <<'SQL'
CREATE ROLE backfill LOGIN PASSWORD :'app_password';
CREATE DATABASE backfill OWNER backfill;
SQL
