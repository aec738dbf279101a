#!/bin/sh
# bench/runs.sh [BUILD_DIR]: what durable runs (the Responses API on the store) cost, at the
# default configuration (store.synchronous full, log_level info), against arun-mock-engine.
#   (a) 200 concurrent streamed responses of 500 tokens at 200 tokens/s (POST /v1/responses,
#       stream: true: every delta committed before it is sent) vs 200 plain chat streams through
#       the gateway to the same engine in the same run (bench/gateway/stream.mjs, STREAM_API):
#       TTFT p50/p99, inter-token delay mean/p99, and the ratios. Median of ROUNDS interleaved
#       rounds per column.
#   (b) background responses created per second: wrk (bench/gateway/post.lua) POSTs
#       background responses to an engine that holds one at a time, so each request is the
#       create path alone (check, gateway queue, row and first two events committed, answer).
#       Best of ROUNDS, on an arun of its own (the queue grows by every round: later rounds are
#       slower, see bench/README.md).
#   (c) events committed per second through the API: EV_RUNS background responses of
#       EV_TOKENS tokens at once on an unpaced engine, arun_run_events_total over the time until
#       all ended; with store.synchronous full and normal (two arun processes, one after the
#       other).
#   (d) resume latency: one response of 10,000 tokens (~10,000 events), then RESUMES resumes
#       one after the other from its start and from near its end, each timed from the request
#       to the first byte of the replay.
#   (e) restart with QUEUED queued background responses: create them on an engine that holds
#       one at a time, kill -9 arun, start it again on the same data_dir and time from the
#       spawn to its log line "recovered N unfinished responses" (written once every one was
#       handed to its engine's queue), and to its listening line.
# Prints Markdown tables for bench/README.md and every round's raw line to stderr. Everything
# listens on 127.0.0.1, every load run is bounded in time; about 2 minutes in all.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
cd "$ROOT"
LUA=$ROOT/bench/gateway/post.lua # run_post's wrk script
export LUA
ROUNDS=${ROUNDS:-3}
STREAMS=${STREAMS:-200}
TOKENS=${TOKENS:-500}
TPS=${TPS:-200}
EV_RUNS=${EV_RUNS:-32}
EV_TOKENS=${EV_TOKENS:-5000}
LONG_TOKENS=${LONG_TOKENS:-10000}
RESUMES=${RESUMES:-50}
QUEUED=${QUEUED:-10000}
LOG_LEVEL=${LOG_LEVEL:-info} # arun's default

BUILD=${1:-build}
bench_build "$BUILD" arun arun-mock-engine
TMP=$(mktemp -d)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    sleep 0.5 # arun stops its engines on SIGTERM
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

MOCK="$BUILD/arun-mock-engine"
RUNS="node $ROOT/bench/runs/runs.mjs"

# config FILE DATA_DIR SYNCHRONOUS: engines s (paced streams), m (unpaced), q (one at a time,
# slow: what is sent to it waits in its queue).
config() {
    cat >"$1" <<EOF
data_dir: $2
log_level: $LOG_LEVEL
store: {synchronous: $3}
node: {ram_mb: 100000, vram_mb: 0, reserve_mb: 0}
engines:
  s:
    cmd: "$MOCK --port \${PORT} --load-ms 0 --tokens-per-s $TPS --ignore-eos"
    start: always
    max_concurrency: 256
    queue_limit: 1024
    restart: {policy: never}
  m:
    cmd: "$MOCK --port \${PORT} --load-ms 0 --ignore-eos"
    start: always
    max_concurrency: 256
    queue_limit: 1024
    restart: {policy: never}
  q:
    cmd: "$MOCK --port \${PORT} --load-ms 0 --tokens-per-s 1"
    start: always
    max_concurrency: 1
    restart: {policy: never}
EOF
}

# serve NAME CONFIG: starts arun on a free port; sets PORT and APID.
serve() {
    PORT=$(free_port)
    "$BUILD/arun" serve --config "$2" --listen "127.0.0.1:$PORT" 2>"$TMP/$1.log" &
    APID=$!
    PIDS="$PIDS $APID"
    wait_http "http://127.0.0.1:$PORT/healthz"
    for e in s m q; do wait_ready "http://127.0.0.1:$PORT/v1/engines/$e"; done
}

# stop PID: SIGTERM and wait (arun stops its engines).
stop() {
    kill "$1" 2>/dev/null || true
    while kill -0 "$1" 2>/dev/null; do sleep 0.05; done
}

# ---- (a) and (d) on one arun at the default configuration -----------------------------------
config "$TMP/full.yaml" "$TMP/full" full
serve full "$TMP/full.yaml"
URL=http://127.0.0.1:$PORT

S=""
for _ in $(seq "$ROUNDS"); do
    S="$S
$(node bench/gateway/stream.mjs chat "$URL/v1/chat/completions" "$STREAMS" "$TOKENS" s)
$(STREAM_API=responses node bench/gateway/stream.mjs responses "$URL/v1/responses" "$STREAMS" \
        "$TOKENS" s)"
done
printf '%s\n' "$S" | sed '/^$/d; s/^/bench: (a) /' >&2
A_TABLE=$(printf '%s\n' "$S" | stream_table chat responses)

LONG=$($RUNS long "$URL" m "$LONG_TOKENS")
echo "bench: (d) $LONG" >&2
LONG_ID=$(echo "$LONG" | awk '{print $2}')
LONG_LAST=$(echo "$LONG" | awk '{print $3}')
D_START=$($RUNS resume "$URL" "$LONG_ID" 0 "$RESUMES")
D_END=$($RUNS resume "$URL" "$LONG_ID" $((LONG_LAST - 10)) "$RESUMES")
echo "bench: (d) from 0: $D_START; from $((LONG_LAST - 10)): $D_END" >&2
stop "$APID"

# ---- (b) on an arun of its own: the runs it creates stay queued ------------------------------
config "$TMP/b.yaml" "$TMP/b" full
serve b "$TMP/b.yaml"
URL=http://127.0.0.1:$PORT
R=""
for _ in $(seq "$ROUNDS"); do
    R="$R
$(WRK_BODY='{"model":"q","input":"hi","background":true}' run_post create "$URL/v1/responses" \
        "$APID")"
done
printf '%s\n' "$R" | sed '/^$/d; s/^/bench: (b) /' >&2
B_LINE=$(printf '%s\n' "$R" | best_of create)

stop "$APID"

# ---- (c) events per second, FULL then NORMAL ------------------------------------------------
C=""
for sync in full normal; do
    config "$TMP/c-$sync.yaml" "$TMP/c-$sync" "$sync"
    serve "c-$sync" "$TMP/c-$sync.yaml"
    C="$C
$sync $($RUNS events "http://127.0.0.1:$PORT" m "$EV_RUNS" "$EV_TOKENS")"
    stop "$APID"
done
printf '%s\n' "$C" | sed '/^$/d; s/^/bench: (c) /' >&2

# ---- (e) restart with QUEUED queued runs ----------------------------------------------------
config "$TMP/e.yaml" "$TMP/e" full
serve e "$TMP/e.yaml"
E_CREATE=$($RUNS create "http://127.0.0.1:$PORT" q "$QUEUED" 64)
echo "bench: (e) $E_CREATE" >&2
Q_PID=$(engine_pid "http://127.0.0.1:$PORT/v1/engines/q")
kill -9 "$APID"
while kill -0 "$APID" 2>/dev/null; do sleep 0.05; done
# The engine survives the kill and is adopted. The run it was answering is in progress: with
# continuation none it fails `interrupted`; the other QUEUED - 1 are queued.
E=$($RUNS restart "$BUILD/arun" "$TMP/e.yaml" "$QUEUED" "$TMP/e-restart.log")
echo "bench: (e) $E" >&2
E_PID=$(echo "$E" | awk '{print $5}')
PIDS="$PIDS $E_PID"
grep -o '"msg":"recovered[^"]*"' "$TMP/e-restart.log" | sed 's/^/bench: (e) /' >&2
stop "$E_PID"
kill "$Q_PID" 2>/dev/null || true

echo "#### (a) $STREAMS concurrent streams of $TOKENS tokens at $TPS tokens/s: chat through the gateway vs POST /v1/responses (stream: true, every delta committed with synchronous FULL before it is sent)"
echo
printf '%s\n' "$A_TABLE"
echo
echo "bench/gateway/stream.mjs (node:http), one arun, one engine, median of $ROUNDS interleaved rounds per column"
echo
echo "#### (b) background responses created per second"
echo
echo "| what | created/s | p50 ms | p99 ms | bad answers | arun CPU µs/create |"
echo "|---|---:|---:|---:|---:|---:|"
echo "$B_LINE" | awk '{ printf "| POST /v1/responses background | %.0f | %.3f | %.3f | %d | %.1f |\n", $2, $3, $4, $5, $6 }'
echo
echo "wrk -t${WRK_THREADS:-1} -c${WRK_CONNS:-32} -d${WRK_SECS:-5}s -s bench/gateway/post.lua, best of $ROUNDS; each answered once its row and first two events committed"
echo
echo "#### (c) events committed per second ($EV_RUNS background responses of $EV_TOKENS tokens at once, unpaced engine)"
echo
echo "| store.synchronous | events | ms | events/s |"
echo "|---|---:|---:|---:|"
printf '%s\n' "$C" | awk 'NF==5 { printf "| %s | %d | %d | %d |\n", $1, $3, $4, $5 }'
echo
echo "#### (d) resume latency, a response of $((LONG_LAST + 1)) events (request to first replayed byte)"
echo
echo "| from | p50 ms | p99 ms | mean ms |"
echo "|---|---:|---:|---:|"
echo "$D_START" | awk '{ printf "| starting_after=0 | %.3f | %.3f | %.3f |\n", $2, $3, $4 }'
echo "$D_END" | awk -v a="$((LONG_LAST - 10))" '{ printf "| starting_after=%d | %.3f | %.3f | %.3f |\n", a, $2, $3, $4 }'
echo
echo "$RESUMES resumes one after the other, node:http"
echo
echo "#### (e) restart with $QUEUED queued background responses"
echo
echo "| what | ms from spawn |"
echo "|---|---:|"
echo "$E" | awk '{ printf "| listening | %d |\n| all %d handed to their engine'"'"'s queue | %d |\n", $2, $4, $3 }'
echo
echo "kill -9 of arun with the runs queued (created at $(echo "$E_CREATE" | awk '{print $4}')/s by 64 clients), then arun serve on the same data_dir; times from the log lines' own timestamps"
echo
echo "arun log_level: $LOG_LEVEL, store.synchronous: full unless said; $(nproc) cores, node $(node --version), $(date -u +%Y-%m-%d)"
