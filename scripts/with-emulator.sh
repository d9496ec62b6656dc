#!/usr/bin/env bash
# Runs a command with a private moto server (S3 + DynamoDB) on a free loopback
# port, and always stops the server afterwards, also on failure or Ctrl-C.
#   scripts/with-emulator.sh CMD [ARGS...]
# Exports AWS_ENDPOINT_URL and dummy credentials for CMD. The server runs with
# its meter (scripts/moto_meter.py) unless BATCHQ_MOTO_METER=0.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
venv="${BATCHQ_VENV:-$root/.venv}"
moto="$venv/bin/moto_server"
patched="$root/scripts/moto_server.py"
if [ ! -x "$moto" ]; then
  echo "with-emulator: $moto not found; run 'make venv' (make test does it for you)" >&2
  exit 2
fi

mkdir -p "$root/.tmp"
port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
log="$root/.tmp/moto-$port.log"
export BATCHQ_MOTO_METER="${BATCHQ_MOTO_METER:-1}"
"$venv/bin/python" "$patched" -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
moto_pid=$!

stop() {
  if kill -0 "$moto_pid" 2>/dev/null; then
    kill "$moto_pid" 2>/dev/null || true
    wait "$moto_pid" 2>/dev/null || true
  fi
}
trap stop EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Wait until it answers (moto starts in well under 10 s).
for _ in $(seq 1 100); do
  if "$venv/bin/python" - "$port" <<'PY' 2>/dev/null; then break; fi
import sys, urllib.request
urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/moto-api/", timeout=1)
PY
  if ! kill -0 "$moto_pid" 2>/dev/null; then
    echo "with-emulator: moto_server exited; its log:" >&2
    cat "$log" >&2
    exit 1
  fi
  sleep 0.1
done

export AWS_ENDPOINT_URL="http://127.0.0.1:$port"
export AWS_ACCESS_KEY_ID=test
export AWS_SECRET_ACCESS_KEY=test
export AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN
echo "with-emulator: moto server on $AWS_ENDPOINT_URL (pid $moto_pid, log $log)" >&2
"$@"
