#!/usr/bin/env bash
# The main job end to end: seed legacy organizations, backfill their admin
# groups with real Celery workers (progress bar), check, then finalize with
# the contract migration.
# Run through `make demo`, which sets up the venv, services and database first.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-.venv}
# A local demo: DEBUG on (and a development SECRET_KEY) unless the caller says otherwise.
export DEBUG=${DEBUG:-true}
ROWS=${ROWS:-1000000}
PORT=${PORT:-8000}
DEMO_USER=${DEMO_USER:-demo}
DEMO_PASSWORD=${DEMO_PASSWORD:-demo-password}
WORKERS=${WORKERS:-2}
PY="$VENV/bin/python"
LOGS=${LOGS:-demo-logs}
mkdir -p "$LOGS"

pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

MIGRATE=("$PY" manage.py migrate_with_timeouts --lock-timeout-in-ms 100 --lock-timeout-max-retries 10)

echo "== Expanded schema: admin is nullable (contract reversed if a previous demo applied it)"
"${MIGRATE[@]}" organizations 0005 -v0

echo "== Seeding $ROWS legacy organizations (no admin group yet)"
"$PY" manage.py seed_organizations --count "$ROWS" --existing-groups 200

echo "== Starting $WORKERS Celery workers and beat (logs in $LOGS/)"
for i in $(seq 1 "$WORKERS"); do
  setsid "$VENV/bin/celery" -A project worker -Q backfill,default -c 1 -n "demo$i@%h" -l INFO \
    >"$LOGS/worker$i.log" 2>&1 &
  pids+=($!)
done
setsid "$VENV/bin/celery" -A project beat -l INFO -s "$LOGS/celerybeat-schedule" \
  >"$LOGS/beat.log" 2>&1 &
pids+=($!)
"$PY" manage.py shell --no-imports -c "
from django.contrib.auth.models import User
user, _ = User.objects.get_or_create(username='$DEMO_USER', defaults={'is_staff': True})
user.is_staff = True
user.set_password('$DEMO_PASSWORD')
user.save()
"
setsid "$PY" manage.py runserver "127.0.0.1:$PORT" --noreload >"$LOGS/web.log" 2>&1 &
pids+=($!)
sleep 3
echo "== Watch it live: http://127.0.0.1:$PORT/backfill/ (user $DEMO_USER, password $DEMO_PASSWORD)"

echo "== Backfilling admin groups"
"$PY" manage.py backfill run admin_groups --concurrency "$WORKERS"

echo "== Checking"
"$PY" manage.py backfill check admin_groups

echo "== Contract: admin becomes NOT NULL (refused if any row were left)"
"${MIGRATE[@]}" organizations

echo "== Done. Organizations and their admin groups:"
"$PY" manage.py shell --no-imports -c "
from organizations.models import Organization
for o in Organization.objects.select_related('admin').filter(name__startswith='Shared Org 1')[:5]:
    print(f'  {o.name!r:45} -> {o.admin.name!r}')
"
if [ -t 0 ]; then
  read -r -p "Dashboard still at http://127.0.0.1:$PORT/backfill/ -- press Enter to stop. " _
fi
# The embedded server (scripts/ensure-services.sh) outlives the demo: say so.
if [ -f .postgres/18/postmaster.pid ]; then
  pg_port=$(sed -n 4p .postgres/18/postmaster.pid)
  if "$PY" -c "import socket; socket.create_connection(('127.0.0.1', $pg_port), 1)" 2>/dev/null; then
    echo "The embedded PostgreSQL 18 is still running on port $pg_port: stop it with $PY scripts/local_postgres.py stop"
  fi
fi
