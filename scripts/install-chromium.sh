#!/usr/bin/env bash
# make browser: Debian's Chromium for the dashboard's browser test
# (cli/tests/dashboard_browser.rs). Quick when it is already there; otherwise
# apt-get install as root (or through sudo), refreshing the package lists
# first when they do not know the package (a fresh machine). Fails, saying
# why, when it cannot be installed: the test is never skipped.
set -euo pipefail
if [ -n "${BATCHQ_CHROMIUM:-}" ]; then
  [ -x "$BATCHQ_CHROMIUM" ] && exit 0
  echo "install-chromium: BATCHQ_CHROMIUM=$BATCHQ_CHROMIUM is not an executable" >&2
  exit 1
fi
command -v chromium >/dev/null 2>&1 && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-chromium: chromium is missing and there is no apt-get here; install Chromium and set BATCHQ_CHROMIUM to it" >&2
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "install-chromium: chromium is missing, and installing it needs root: run 'apt-get install -y --no-install-recommends chromium' as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show chromium >/dev/null 2>&1; then
  echo "install-chromium: apt-get update (the package lists do not know chromium)"
  "${as_root[@]}" apt-get update -qq
fi
echo "install-chromium: apt-get install chromium"
"${as_root[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null 2>&1 || { echo "install-chromium: chromium still not on the PATH after installing it" >&2; exit 1; }
chromium --version
