#!/usr/bin/env bash
# make load: N concurrent clients enqueue through a local `batchq serve` for
# LOAD_SECONDS, then every accepted request is read back ("lost: 0").
#
# Starts a private AWS emulator (moto), the fake provider and `batchq serve`
# with two tenants (BATCHQ_API_KEYS, random keys; the clients alternate
# between them), all on loopback; runs `batchq-load` (cli/src/bin/); prints
# its figures; stops everything it started, also on Ctrl-C or failure. Exit
# status: batchq-load's (1 when a request was lost).
#
#   LOAD_SECONDS=60 LOAD_CLIENTS=32 make load
#   LOAD_MAX_REQUESTS=…  bounds the count too (default 1,000,000)
# Submit and poll run meanwhile as in the demo (groups due after 5 s), so
# the load meets the pipeline's own writes.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
venv="${BATCHQ_VENV:-$root/.venv}"
bin="$root/target/debug"
mkdir -p .tmp
work=$(mktemp -d "$root/.tmp/load.XXXXXX")
pids=()

stop_all() {
  local code=$?
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$code" -ne 0 ]; then
    echo "load: failed (exit $code); logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
}
trap stop_all EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

wait_for_line() {
  local file=$1 pattern=$2 pid=$3
  for _ in $(seq 1 300); do
    if line=$(grep -m1 -oE "$pattern" "$file" 2>/dev/null); then
      echo "$line"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "load: process $pid exited early; its output:" >&2
      cat "$file" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "load: timed out waiting for '$pattern' in $file" >&2
  return 1
}

echo "== building batchq, batchq-load and the fake provider"
cargo build --quiet -p batchq-cli -p fake-openai

port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
"$venv/bin/python" scripts/moto_server.py -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do
  if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then break; fi
  sleep 0.1
done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
unset AWS_PROFILE AWS_SESSION_TOKEN

"$bin/fake-openai" --port 0 --step-ms 1500 >"$work/fake.out" 2>"$work/fake.log" &
pids+=($!)
fake=$(wait_for_line "$work/fake.out" 'http://[0-9.:]+' "${pids[-1]}")
export OPENAI_BASE_URL="$fake/v1" OPENAI_API_KEY=sk-fake BATCHQ_PROVIDER=openai

export BATCHQ_REQUESTS_TABLE=batchq-load-requests BATCHQ_JOBS_TABLE=batchq-load-jobs BATCHQ_BUCKET=batchq-load
export BATCHQ_SUBMIT_MAX_AGE_SECS="${BATCHQ_SUBMIT_MAX_AGE_SECS:-5}"
export BATCHQ_LOG="${BATCHQ_LOG:-warn}"
key_a=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
key_b=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
export BATCHQ_API_KEYS="load-a:$key_a,load-b:$key_b"
"$bin/batchq" init >/dev/null

"$bin/batchq" serve --addr 127.0.0.1:0 >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
api=$(wait_for_line "$work/serve.out" 'http://[0-9.:]+' "${pids[-1]}")
unset BATCHQ_API_KEYS
echo "== emulator on $AWS_ENDPOINT_URL, fake provider on $fake, batchq serve on $api (tenants load-a, load-b)"

LOAD_TOKEN="$key_a,$key_b" "$bin/batchq-load" --api "$api" "$@"
