# Shared by scripts/demo.sh and scripts/load.sh: a private work directory,
# background processes stopped on exit, and the local stand-ins for AWS (the
# moto emulator) and for the provider (fake-openai).
#
#   source "$(dirname "$0")/lib/local-stack.sh"
#   stack_init demo            # sets root, venv, bin, work, pids; traps exit
#   start_emulator             # exports AWS_ENDPOINT_URL and dummy credentials
#   start_fake                 # exports OPENAI_BASE_URL, OPENAI_API_KEY
#
# On failure the work directory (with every process's log) is kept and named.

stack_init() {
  stack_name=$1
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  cd "$root"
  venv="${BATCHQ_VENV:-$root/.venv}"
  bin="$root/target/debug"
  mkdir -p .tmp
  work=$(mktemp -d "$root/.tmp/$stack_name.XXXXXX")
  pids=()
  trap stop_all EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

stop_all() {
  local code=$?
  for pid in "${pids[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${pids[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  if [ "$code" -ne 0 ]; then
    echo "$stack_name: failed (exit $code); logs kept in $work" >&2
  else
    rm -rf "$work"
  fi
}

# Waits until FILE has a line matching PATTERN and prints the match; fails
# (showing FILE) when process PID exits first or after 30 s.
wait_for_line() {
  local file=$1 pattern=$2 pid=$3
  for _ in $(seq 1 300); do
    if line=$(grep -m1 -oE "$pattern" "$file" 2>/dev/null); then
      echo "$line"
      return 0
    fi
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$stack_name: process $pid exited early; its output:" >&2
      cat "$file" >&2
      return 1
    fi
    sleep 0.1
  done
  echo "$stack_name: timed out waiting for '$pattern' in $file" >&2
  return 1
}

start_emulator() {
  local port
  port=$("$venv/bin/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
  "$venv/bin/python" scripts/moto_server.py -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 100); do
    if "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$port/moto-api/', timeout=1)" 2>/dev/null; then break; fi
    sleep 0.1
  done
  export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1
  unset AWS_PROFILE AWS_SESSION_TOKEN
}

start_fake() {
  "$bin/fake-openai" --port 0 --step-ms 1500 >"$work/fake.out" 2>"$work/fake.log" &
  pids+=($!)
  local fake
  fake=$(wait_for_line "$work/fake.out" 'http://[0-9.:]+' "${pids[-1]}")
  export OPENAI_BASE_URL="$fake/v1" OPENAI_API_KEY=sk-fake BATCHQ_PROVIDER=openai
}
