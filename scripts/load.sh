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
source "$(dirname "$0")/lib/local-stack.sh"
stack_init load


echo "== building batchq, batchq-load and the fake provider"
cargo build --quiet -p batchq-cli -p fake-openai

start_emulator
start_fake

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
echo "== emulator on $AWS_ENDPOINT_URL, fake provider on $OPENAI_BASE_URL, batchq serve on $api (tenants load-a, load-b)"

LOAD_TOKEN="$key_a,$key_b" "$bin/batchq-load" --api "$api" "$@"
