#!/usr/bin/env bash
# make demo: the whole pipeline on this machine, end to end.
#
# Starts a private AWS emulator (moto) and the fake provider (which speaks
# both OpenAI's and Anthropic's batch APIs), runs `batchq init` and
# `batchq serve` with a provider table of two providers (`openai`, and
# `claude` for `/v1/messages`), enqueues the sample workload
# (demo/workload.py: review sentiment and article summaries for OpenAI,
# ticket triage for Anthropic), waits with progress, prints per-job results
# and the savings per provider, and stops every process it started — also
# on Ctrl-C or failure.
#
# Against the real OpenAI Batch API instead of the fake:
#   OPENAI_API_KEY=sk-... BATCHQ_PROVIDER=openai make demo
# (a small workload, 20 requests, costs well under one cent; batches may take
# up to 24 h, usually minutes).
set -euo pipefail
source "$(dirname "$0")/lib/local-stack.sh"
stack_init demo

say() { printf '\n== %s\n' "$*"; }


real_provider=false
if [ -n "${OPENAI_API_KEY:-}" ] && [ "${BATCHQ_PROVIDER:-}" = "openai" ]; then
  real_provider=true
fi

say "building batchq and the fake provider"
cargo build --quiet -p batchq-cli -p fake-openai

say "starting the local AWS emulator (moto: S3 + DynamoDB)"
start_emulator
echo "emulator on $AWS_ENDPOINT_URL"

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

# Local tables and bucket of their own; groups are submitted a few seconds
# after their first request instead of the production 15 minutes.
export BATCHQ_REQUESTS_TABLE=batchq-demo-requests BATCHQ_JOBS_TABLE=batchq-demo-jobs BATCHQ_BUCKET=batchq-demo
export BATCHQ_SUBMIT_MAX_AGE_SECS="${BATCHQ_SUBMIT_MAX_AGE_SECS:-5}"
export BATCHQ_LOG="${BATCHQ_LOG:-warn}"

say "batchq init"
"$bin/batchq" init

say "batchq serve"
"$bin/batchq" serve --addr 127.0.0.1:0 --submit-every 2s --poll-every 1s >"$work/serve.out" 2>"$work/serve.log" &
pids+=($!)
api=$(wait_for_line "$work/serve.out" 'http://[0-9.:]+' "${pids[-1]}")
echo "API on $api"

say "enqueueing $reviews review classifications and $articles article summaries (OpenAI), $tickets ticket triages (Anthropic)"
"$venv/bin/python" demo/workload.py "$reviews" "$articles" "$tickets" >"$work/workload.jsonl"
"$bin/batchq" enqueue "$work/workload.jsonl" --api "$api"

say "waiting for the batches"
"$bin/batchq" wait --timeout "$timeout"

say "jobs"
"$bin/batchq" jobs

say "results"
"$bin/batchq" results --out "$work/results.jsonl"
"$bin/batchq" jobs --json >"$work/jobs.json"
"$venv/bin/python" - "$work/jobs.json" "$work/results.jsonl" <<'PY'
import json, sys
from decimal import Decimal
jobs = json.load(open(sys.argv[1]))["jobs"]
lines = [json.loads(l) for l in open(sys.argv[2])]
per_model = {}
per_provider = {}
batch = realtime = Decimal(0)
for j in jobs:
    per_model.setdefault(j["model"], 0)
    per_model[j["model"]] += j["request_counts"]["completed"]
    t = j["totals"]
    batch += Decimal(t["batch_cost"])
    realtime += Decimal(t["realtime_cost"])
    p = per_provider.setdefault(j["provider"], [0, Decimal(0), Decimal(0)])
    p[0] += j["request_counts"]["completed"]
    p[1] += Decimal(t["batch_cost"])
    p[2] += Decimal(t["realtime_cost"])
for model, n in sorted(per_model.items()):
    print(f"completed with {model}: {n}")
for name, (n, b, r) in sorted(per_provider.items()):
    print(f"provider {name}: {n} completed, paid ${b:.6f} instead of ${r:.6f}: saved ${r - b:.6f}")
# OpenAI's output-file lines carry "response"; Anthropic's result lines "result".
def succeeded(l):
    if "result" in l:
        return l["result"].get("type") == "succeeded"
    return bool(l.get("response")) and 200 <= l["response"]["status_code"] < 300
ok = sum(1 for l in lines if succeeded(l))
print(f"result lines exported: {len(lines)} ({ok} successful), each in its provider's batch output format")
saved = realtime - batch
pct = (saved / realtime * 100) if realtime else Decimal(0)
print(f"savings: paid ${batch:.6f} instead of ${realtime:.6f} in real time: saved ${saved:.6f} ({pct:.0f}%)")
PY

say "savings per provider"
"$bin/batchq" savings --group-by provider

say "stats"
"$bin/batchq" stats
echo
echo "demo: done; stopping the server, the fake provider and the emulator"
