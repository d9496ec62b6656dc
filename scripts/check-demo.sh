#!/usr/bin/env bash
# CI check of `make demo` (or `scripts/check-demo.sh demo-aws`): it exits 0,
# prints the requests completed per model and the savings, and leaves none of
# the processes it started running.
set -euo pipefail
cd "$(dirname "$0")/.."
target=${1:-demo}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
make --no-print-directory "$target" 2>&1 | tee "$out"
grep -qE '^completed with gpt-4o-mini: 2000$' "$out" || { echo "check-demo: no per-model count for gpt-4o-mini" >&2; exit 1; }
grep -qE '^completed with gpt-4.1-mini: 1000$' "$out" || { echo "check-demo: no per-model count for gpt-4.1-mini" >&2; exit 1; }
grep -qE '^completed with claude-haiku-4-5: 500$' "$out" || { echo "check-demo: no per-model count for claude-haiku-4-5" >&2; exit 1; }
for p in openai claude; do
  grep -qE "^provider $p: [0-9]+ completed, paid \\\$[0-9.]+ instead of \\\$[0-9.]+: saved \\\$[0-9.]+$" "$out" \
    || { echo "check-demo: no savings line for provider $p" >&2; exit 1; }
done
grep -qE '^savings: paid \$[0-9.]+ instead of \$[0-9.]+ in real time: saved \$[0-9.]+ \(50%\)$' "$out" \
  || { echo "check-demo: no savings line" >&2; exit 1; }
if [ "$target" = demo ]; then
  grep -qE '^batchq: store embedded:' "$out" || { echo "check-demo: make demo did not run on the embedded store" >&2; exit 1; }
fi
sleep 1
# Only processes of this checkout: others on the machine (another checkout's
# tests) are not the demo's. The demo starts the fake and batchq by their
# absolute paths, and the emulator from the checkout's root.
root=$(pwd)
left=$(pgrep -af -- "$root/target/debug/(fake-openai|batchq serve)" || true)
for pid in $(pgrep -f 'scripts/moto_server.py' || true); do
  if [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$(pwd -P)" ]; then
    left+=$'\n'"$(ps -o pid=,args= -p "$pid")"
  fi
done
left=$(printf '%s' "$left" | sed '/^$/d')
if [ -n "$left" ]; then
  echo "check-demo: processes left running after make demo:" >&2
  echo "$left" >&2
  exit 1
fi
echo "check-demo: make $target passed and left nothing running"
