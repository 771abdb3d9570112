#!/usr/bin/env bash
# The browser test drives Debian's Chromium (not a browser downloaded by a test
# tool). Install it when missing and we are allowed to; otherwise say so, and
# the browser test skips with that reason.
set -uo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing Debian's chromium for the browser test..."
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } \
    || echo "Could not install chromium; the browser test will be skipped."
else
  echo "chromium is not installed (needs root and apt-get); the browser test will be skipped."
fi
exit 0
