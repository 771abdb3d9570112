#!/usr/bin/env bash
# The metrics test lints /metrics with Prometheus' own `promtool check metrics`.
# Only promtool is wanted, not a Prometheus server: Debian's package is
# downloaded and promtool alone extracted into the venv, without installing
# the package (which would set up a service). Otherwise the test skips.
set -uo pipefail
VENV=$(cd "${VENV:-.venv}" && pwd) || exit 0
if command -v promtool >/dev/null 2>&1 || [ -x "$VENV/bin/promtool" ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "promtool is not installed (needs apt-get); the metrics lint test will be skipped."
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work" || exit 0
if { apt-get download prometheus >/dev/null 2>&1 \
     || { apt-get update -q >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1; }; } \
   && dpkg-deb -x prometheus_*.deb extracted \
   && [ -x extracted/usr/bin/promtool ]; then
  cp extracted/usr/bin/promtool "$VENV/bin/promtool"
  echo "promtool extracted into $VENV/bin."
else
  echo "Could not get promtool; the metrics lint test will be skipped."
fi
exit 0
