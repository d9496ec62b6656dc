#!/usr/bin/env bash
# make demo / make demo-aws: the whole pipeline on this machine, end to end.
#
#   scripts/demo.sh            the embedded store (SQLite and files in a
#                              private data directory): needs only Rust
#   scripts/demo.sh aws        DynamoDB and S3 on a private AWS emulator
#                              (moto, from the pinned virtualenv)
#
# Starts the fake provider (which speaks both OpenAI's and Anthropic's batch
# APIs), runs `batchq init` and `batchq serve` with a provider table of two
# providers (`openai`, and `claude` for `/v1/messages`), enqueues the sample
# workload through the API (review sentiment and article summaries for
# OpenAI, ticket triage for Anthropic), waits with progress, stops the
# server, prints per-job results and the savings per provider, and stops
# every process it started — also on Ctrl-C or failure.
#
# Against the real OpenAI Batch API instead of the fake:
#   OPENAI_API_KEY=sk-... BATCHQ_PROVIDER=openai make demo
# (a small workload, 20 requests, costs well under one cent; batches may take
# up to 24 h, usually minutes).
set -euo pipefail
mode=${1:-embedded}
source "$(dirname "$0")/lib/local-stack.sh"
stack_init "demo-$mode"

say() { printf '\n== %s\n' "$*"; }

real_provider=false
if [ -n "${OPENAI_API_KEY:-}" ] && [ "${BATCHQ_PROVIDER:-}" = "openai" ]; then
  real_provider=true
fi

say "building batchq, the fake provider and the demo workload"
cargo build --quiet -p batchq-cli -p fake-openai --bins --example demo
demo="$root/target/debug/examples/demo"

case "$mode" in
  embedded)
    export BATCHQ_STORE="embedded:$work/batchq-data"
    say "store: embedded (SQLite and files in $work/batchq-data)"
    ;;
  aws)
    say "starting the local AWS emulator (moto: S3 + DynamoDB)"
    start_emulator
    echo "emulator on $AWS_ENDPOINT_URL"
    export BATCHQ_STORE=aws
    # Local tables and bucket of their own.
    export BATCHQ_REQUESTS_TABLE=batchq-demo-requests BATCHQ_JOBS_TABLE=batchq-demo-jobs BATCHQ_BUCKET=batchq-demo
    ;;
  *) echo "usage: $0 [embedded|aws]" >&2; exit 2 ;;
esac

if $real_provider; then
  say "using the real OpenAI Batch API (OPENAI_API_KEY is set, BATCHQ_PROVIDER=openai)"
  reviews=15 articles=5 tickets=0 timeout=26h
else
  say "starting the fake provider (OpenAI Batch API and Anthropic Message Batches, offline)"
  start_fake
  echo "fake provider on $OPENAI_BASE_URL"
  reviews=2000 articles=1000 tickets=500 timeout=10m
  # Two providers side by side: Messages requests go to Anthropic (here the
  # fake's Anthropic routes), everything else to OpenAI.
  cat >"$work/providers.json" <<JSON
{
  "providers": {
    "openai": {"kind": "openai", "base_url": "$OPENAI_BASE_URL", "api_key_env": "OPENAI_API_KEY"},
    "claude": {"kind": "anthropic", "base_url": "$OPENAI_BASE_URL", "api_key_env": "OPENAI_API_KEY"}
  },
  "routes": [
    {"url": "/v1/messages", "provider": "claude"},
    {"provider": "openai"}
  ]
}
JSON
  export BATCHQ_PROVIDERS_FILE="$work/providers.json"
  echo "provider table: openai (OpenAI) and claude (Anthropic, for /v1/messages)"
fi

# Groups are submitted a few seconds after their first request instead of
# the production 15 minutes.
export BATCHQ_SUBMIT_MAX_AGE_SECS="${BATCHQ_SUBMIT_MAX_AGE_SECS:-5}"
export BATCHQ_LOG="${BATCHQ_LOG:-warn}"

say "batchq init"
"$bin/batchq" init

say "batchq serve"
"$bin/batchq" serve --addr 127.0.0.1:0 --submit-every 2s --poll-every 1s >"$work/serve.out" 2>"$work/serve.log" &
serve_pid=$!
pids+=($serve_pid)
api=$(wait_for_line "$work/serve.out" 'http://[0-9.:]+' "$serve_pid")
head -n1 "$work/serve.log"
echo "API on $api"

say "enqueueing $reviews review classifications and $articles article summaries (OpenAI), $tickets ticket triages (Anthropic)"
"$demo" workload "$reviews" "$articles" "$tickets" >"$work/workload.jsonl"
"$bin/batchq" enqueue "$work/workload.jsonl" --api "$api"

say "waiting for the batches"
"$bin/batchq" wait --timeout "$timeout" --api "$api"

say "stopping batchq serve (the commands below read the store itself)"
kill -TERM "$serve_pid"
wait "$serve_pid"

say "jobs"
"$bin/batchq" jobs

say "results"
"$bin/batchq" results --out "$work/results.jsonl"
"$bin/batchq" jobs --json >"$work/jobs.json"
"$demo" summary "$work/jobs.json" "$work/results.jsonl"

say "savings per provider"
"$bin/batchq" savings --group-by provider

say "stats"
"$bin/batchq" stats
echo
echo "demo: done; stopping the fake provider${AWS_ENDPOINT_URL:+ and the emulator}"
