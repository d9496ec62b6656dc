#!/usr/bin/env bash
# CI check of the README's quick path: runs the shell blocks the README marks
# with `<!-- quick-path -->`, in order, as one script, in a fresh clone of this
# repository (its committed HEAD) in a temporary directory, with the fake
# provider standing in for OpenAI. Then every request the quick path enqueued
# must be in the exported results with status 200, and no process started
# from the temporary directory may be left running.
#
# The blocks are run as written but for these substitutions, each printed:
#   make demo              -> scripts/check-demo.sh demo (the same demo, also
#                             checked for its figures and leftover processes)
#   cargo install ...      -> cargo install --debug --root TMP/cargo ... (a
#                             debug build into the temporary directory, first
#                             on PATH, instead of a release into ~/.cargo/bin)
#   127.0.0.1:8080         -> 127.0.0.1:<a free port>
# The clone's target/ is a link to this checkout's, so nothing is built twice.
# OPENAI_BASE_URL and OPENAI_API_KEY point at the fake (as the README says to
# try the path offline); AWS_* variables are unset so the store is the
# embedded one the README describes.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
readme="$root/README.md"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/batchq-quick-path.XXXXXX")
fake_pid=

say() { printf 'check-quick-path: %s\n' "$*" >&2; }

finish() {
  local code=$?
  if [ -n "$fake_pid" ]; then
    kill "$fake_pid" 2>/dev/null || true
    wait "$fake_pid" 2>/dev/null || true
  fi
  local left
  left=$(pgrep -af -- "$tmp/" || true)
  if [ -n "$left" ]; then
    say "processes left running by the quick path:"
    echo "$left" >&2
    # shellcheck disable=SC2046
    kill $(pgrep -f -- "$tmp/") 2>/dev/null || true
    code=1
  fi
  if [ "$code" -eq 0 ]; then
    rm -rf "$tmp"
  else
    say "failed (exit $code); kept $tmp"
  fi
  exit "$code"
}
trap finish EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [ -n "$(git -C "$root" status --porcelain --untracked-files=no)" ]; then
  say "warning: uncommitted changes are not checked; the clone has HEAD only"
fi

# 1. The quick path, as the README has it.
script="$tmp/quick-path.sh"
awk '
  /^<!-- quick-path -->$/ { marked = 1; next }
  marked && /^```sh$/ { inside = 1; marked = 0; blocks++; printf "\n# --- quick-path block %d\n", blocks; next }
  marked { print "check-quick-path: a quick-path marker is not followed by a ```sh block: " $0 > "/dev/stderr"; exit 2 }
  inside && /^```$/ { inside = 0; next }
  inside { print }
  END { if (inside) { print "check-quick-path: unterminated quick-path block" > "/dev/stderr"; exit 2 }
        if (blocks == 0) { print "check-quick-path: README.md marks no quick-path block" > "/dev/stderr"; exit 2 } }
' "$readme" >"$script.raw"
say "extracted $(grep -c '^# --- quick-path block' "$script.raw") blocks from README.md"

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
substitute() { # PATTERN REPLACEMENT EXPECTED-COUNT (exact, or "+" for at least one)
  local n
  n=$(grep -cE -- "$1" "$script.raw" || true)
  if { [ "$3" = + ] && [ "$n" -lt 1 ]; } || { [ "$3" != + ] && [ "$n" -ne "$3" ]; }; then
    say "expected ${3/+/at least one} line(s) matching /$1/ in the quick path, found $n"
    exit 1
  fi
  sed -i -E "s#$1#$2#g" "$script.raw"
  say "substituted /$1/ -> $2 ($n line(s))"
}
substitute '^make demo$' 'scripts/check-demo.sh demo' 1
substitute '^cargo install ' 'cargo install --debug --root "$QP_ROOT" ' 1
substitute '127\.0\.0\.1:8080' "127.0.0.1:$port" +
{ echo 'set -euxo pipefail'; cat "$script.raw"; } >"$script"

# 2. A clean clone whose target/ is this checkout's.
say "cloning HEAD into $tmp/batchq"
git clone --quiet "$root" "$tmp/batchq"
ln -s "$root/target" "$tmp/batchq/target"

# 3. The fake provider, run from a copy so that check-demo.sh (which looks
#    for target/debug/fake-openai processes left by the demo) does not see it.
(cd "$tmp/batchq" && cargo build --quiet -p fake-openai)
cp "$root/target/debug/fake-openai" "$tmp/fake-provider"
"$tmp/fake-provider" --port 0 --step-ms 500 --api-key sk-fake >"$tmp/fake.out" 2>"$tmp/fake.log" &
fake_pid=$!
fake=
for _ in $(seq 1 300); do
  fake=$(grep -m1 -oE 'http://[0-9.:]+' "$tmp/fake.out" || true)
  [ -n "$fake" ] && break
  kill -0 "$fake_pid" 2>/dev/null || { cat "$tmp/fake.log" >&2; exit 1; }
  sleep 0.1
done
[ -n "$fake" ] || { say "the fake provider did not start"; exit 1; }
say "fake provider on $fake"

# 4. Run it.
unset AWS_ENDPOINT_URL AWS_PROFILE AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN BATCHQ_STORE \
  BATCHQ_PROVIDER BATCHQ_PROVIDERS_FILE BATCHQ_API_KEYS BATCHQ_API_KEY
if [ -e "$HOME/.aws" ]; then
  # As the README says when AWS credentials are configured.
  export BATCHQ_STORE=embedded:./batchq-data
fi
export OPENAI_BASE_URL="$fake/v1" OPENAI_API_KEY=sk-fake QP_ROOT="$tmp/cargo"
export PATH="$tmp/cargo/bin:$PATH"
say "running the quick path in $tmp/batchq"
(cd "$tmp/batchq" && timeout 1800 bash "$script")

# 5. What it promised: every request it enqueued came back answered.
python3 - "$script" "$tmp/batchq/results.jsonl" <<'PY'
import json, re, sys
script, results = sys.argv[1], sys.argv[2]
wanted = set(re.findall(r'"custom_id": "([^"]+)"', open(script).read()))
got = {}
for line in open(results):
    row = json.loads(line)
    got[row["custom_id"]] = (row.get("response") or {}).get("status_code")
missing = sorted(wanted - got.keys())
bad = sorted(k for k in wanted & got.keys() if got[k] != 200)
if not wanted or missing or bad:
    sys.exit(f"check-quick-path: enqueued {sorted(wanted)}; missing from results.jsonl: {missing}; not 200: {bad}")
print(f"check-quick-path: {len(wanted)} requests enqueued, all exported with status 200", file=sys.stderr)
PY
say "the README's quick path passed and left nothing running"
