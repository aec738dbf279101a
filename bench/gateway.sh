#!/bin/sh
# bench/gateway.sh [BUILD_DIR]: what arun's OpenAI gateway costs on top of the engine it relays
# to, beside a plain reverse proxy and a peer AI gateway, measured in the same run. The upstream
# is always arun-mock-engine (docs/mock-engine.md); arun spawns it as engine `m` (no pacing),
# `s` (200 tokens/s, ignore_eos) and `w` (1000 tokens/s), and the direct rows talk to those same
# processes.
#   (a) non-streaming: POST /v1/chat/completions, max_tokens 4, wrk -t1 -c32 -d5s with
#       bench/gateway/post.lua, to: the mock directly, arun, nginx (1 worker, proxy_pass to the
#       mock over a keepalive upstream). Both keep an access log as they would in production:
#       arun at its default log_level (info: one line a request, LOG_LEVEL to change it),
#       nginx with `access_log` in its default (combined) format (NGINX_ACCESS_LOG=off to turn
#       it off), each into a file. Best of 3 interleaved rounds by req/s. Then the same
#       with one connection (wrk -c1 -d3s), where latency is what each hop adds to one request.
#       Then the 32-connection load against `w`, which takes 4 ms per answer as a real engine
#       takes time: the engine bounds throughput there, and the rows show what each hop costs.
#   (b) streaming: 200 concurrent streams of 500 tokens (bench/gateway/stream.mjs): TTFT p50/p99
#       and inter-token delay, direct vs through arun. Median of 3 interleaved rounds per column,
#       and TTFT round by round (round 1: the engine's first burst since arun started it).
#   (c) peer: @portkey-ai/gateway (bench/gateway/package.json, `npm ci` there first) with the
#       load of (a), beside the direct path and arun, all three inside a private network namespace
#       (unshare -n) because Portkey binds every interface. Skipped, with the reason, when the
#       package is not installed or unshare is not allowed.
# Prints Markdown tables to paste into bench/README.md, and every round's raw line to stderr.
# Everything listens on 127.0.0.1 (or on the namespace's own loopback), every load run is
# bounded in time, and the whole script takes about 3 minutes.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
cd "$ROOT"
LUA=$ROOT/bench/gateway/post.lua
PORTKEY=$ROOT/bench/gateway/node_modules/@portkey-ai/gateway/build/start-server.js
ROUNDS=${ROUNDS:-3}
STREAMS=${STREAMS:-200}
TOKENS=${TOKENS:-500}
TPS=${TPS:-200}
WRK1_SECS=${WRK1_SECS:-3}
WORK_TPS=${WORK_TPS:-1000}
LOG_LEVEL=${LOG_LEVEL:-info}               # arun's default
NGINX_ACCESS_LOG=${NGINX_ACCESS_LOG:-on} # on: nginx's default access_log, into a file

# ---- (c), inside the namespace: the script runs itself again under unshare -n. ----------------
if [ "${1:-}" = "--in-netns" ]; then
    BUILD=$2
    TMP=$3
    PIDS=""
    # arun stops its engine on SIGTERM; the namespace dies with its last process.
    trap 'for p in $PIDS; do kill "$p" 2>/dev/null || true; done; sleep 0.3' EXIT
    trap 'exit 1' INT TERM HUP PIPE
    ip link set lo up
    # A fresh loopback: fixed ports cannot collide with anything outside. arun spawns the mock as
    # in (a); the direct and Portkey rows talk to that same process.
    cat >"$TMP/ns-arun.yaml" <<EOF
data_dir: $TMP/ns-data
log_level: $LOG_LEVEL
node: {ram_mb: 100000, vram_mb: 0, reserve_mb: 0}
engines:
  m:
    cmd: "$BUILD/arun-mock-engine --port \${PORT} --load-ms 0"
    port: 9001
    start: always
    max_concurrency: 256
    queue_limit: 1024
    restart: {policy: never}
EOF
    "$BUILD/arun" serve --config "$TMP/ns-arun.yaml" --listen 127.0.0.1:9000 2>"$TMP/ns-arun.log" &
    ARUN_PID=$!
    PIDS="$PIDS $!"
    NODE_ENV=production node "$PORTKEY" --port=8787 --headless >"$TMP/portkey.log" 2>&1 &
    PORTKEY_PID=$!
    PIDS="$PIDS $!"
    wait_http "http://127.0.0.1:9000/healthz"
    wait_ready "http://127.0.0.1:9000/v1/engines/m"
    wait_http "http://127.0.0.1:8787/" 30
    MOCK_PID=$(engine_pid "http://127.0.0.1:9000/v1/engines/m")
    # Portkey must forward to the mock and answer it unchanged, else its numbers mean nothing.
    UP=http://127.0.0.1:9001/v1
    if ! curl -sf http://127.0.0.1:8787/v1/chat/completions -H 'content-type: application/json' \
        -H 'x-portkey-provider: openai' -H "x-portkey-custom-host: $UP" \
        -H 'authorization: Bearer bench' \
        -d '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4}' |
        grep -q '"completion_tokens":4'; then
        echo "bench: portkey did not relay a completion; its log:" >&2
        cat "$TMP/portkey.log" >&2
        exit 1
    fi
    R=""
    for round in $(seq "$ROUNDS"); do
        R="$R
$(run_post direct "http://127.0.0.1:9001/v1/chat/completions" "$MOCK_PID")
$(run_post arun "http://127.0.0.1:9000/v1/chat/completions" "$ARUN_PID")
$(export PORTKEY_UPSTREAM="$UP" &&
    run_post portkey "http://127.0.0.1:8787/v1/chat/completions" "$PORTKEY_PID")"
    done
    printf '%s\n' "$R" | sed '/^$/d; s/^/bench: (c) /' >&2
    printf '%s\n' "$R" | best_of direct arun portkey
    exit 0
fi

BUILD=${1:-build}
bench_build "$BUILD" arun arun-mock-engine
TMP=$(mktemp -d)
chmod 755 "$TMP" # nginx's workers run as www-data
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    [ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true
    sleep 0.3 # arun stops its engines on SIGTERM
    rm -rf "$TMP"
}
# A signal (a closed pipe too) ends the run after cleaning up, instead of going on without TMP.
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

MOCK="$BUILD/arun-mock-engine"
A_PORT=$(free_port); M_PORT=$(free_port); S_PORT=$(free_port); N_PORT=$(free_port)
W_PORT=$(free_port); NW_PORT=$(free_port)
cat >"$TMP/arun.yaml" <<EOF
data_dir: $TMP/data
log_level: $LOG_LEVEL
node: {ram_mb: 100000, vram_mb: 0, reserve_mb: 0}
engines:
  m:
    cmd: "$MOCK --port \${PORT} --load-ms 0"
    port: $M_PORT
    start: always
    max_concurrency: 256
    queue_limit: 1024
    restart: {policy: never}
  s:
    cmd: "$MOCK --port \${PORT} --load-ms 0 --tokens-per-s $TPS --ignore-eos"
    port: $S_PORT
    start: always
    max_concurrency: 256
    queue_limit: 1024
    restart: {policy: never}
  w:
    cmd: "$MOCK --port \${PORT} --load-ms 0 --tokens-per-s $WORK_TPS"
    port: $W_PORT
    start: always
    max_concurrency: 256
    queue_limit: 1024
    restart: {policy: never}
EOF
"$BUILD/arun" serve --config "$TMP/arun.yaml" --listen "127.0.0.1:$A_PORT" 2>"$TMP/arun.log" &
ARUN_PID=$!
PIDS="$PIDS $!"

# lib.sh turns nginx's access log off for the whole http block; a server's own access_log wins.
NGINX_LOG="access_log off;"
[ "$NGINX_ACCESS_LOG" = off ] || NGINX_LOG="access_log $TMP/nginx/access.log;"
start_nginx "$TMP" "    upstream mock { server 127.0.0.1:$M_PORT; keepalive 64; }
    upstream work { server 127.0.0.1:$W_PORT; keepalive 64; }
    server {
        listen 127.0.0.1:$N_PORT;
        $NGINX_LOG
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }
    server {
        listen 127.0.0.1:$NW_PORT;
        $NGINX_LOG
        location / {
            proxy_pass http://work;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"

wait_http "http://127.0.0.1:$A_PORT/healthz"
wait_ready "http://127.0.0.1:$A_PORT/v1/engines/m"
wait_ready "http://127.0.0.1:$A_PORT/v1/engines/s"
wait_ready "http://127.0.0.1:$A_PORT/v1/engines/w"
wait_http "http://127.0.0.1:$N_PORT/health"
# The processes whose CPU time each row reports: the engine (direct), arun, nginx's master and
# worker.
MOCK_PID=$(engine_pid "http://127.0.0.1:$A_PORT/v1/engines/m")
WORK_PID=$(engine_pid "http://127.0.0.1:$A_PORT/v1/engines/w")
NGINX_PIDS="$(cat "$TMP/nginx.pid") $(pgrep -P "$(cat "$TMP/nginx.pid")" | tr '\n' ' ')"

# ---- (a) non-streaming ----------------------------------------------------------------------
# Interleaved rounds so a noisy neighbour hurts every path alike; keep the best run of each.
R=""
for round in $(seq "$ROUNDS"); do
    R="$R
$(run_post direct "http://127.0.0.1:$M_PORT/v1/chat/completions" "$MOCK_PID")
$(run_post arun "http://127.0.0.1:$A_PORT/v1/chat/completions" "$ARUN_PID")
$(run_post nginx "http://127.0.0.1:$N_PORT/v1/chat/completions" $NGINX_PIDS)"
done
printf '%s\n' "$R" | sed '/^$/d; s/^/bench: (a) /' >&2
A_TABLE=$(printf '%s\n' "$R" | best_of direct arun nginx | post_table direct)

# The same with one connection: no queueing at any hop, so the latency columns show what each
# hop adds to one request (with 32 connections they mostly show throughput: latency ~ 32 / rps).
R1=""
for round in $(seq "$ROUNDS"); do
    R1="$R1
$(WRK_CONNS=1 WRK_SECS=$WRK1_SECS run_post direct "http://127.0.0.1:$M_PORT/v1/chat/completions" \
    "$MOCK_PID")
$(WRK_CONNS=1 WRK_SECS=$WRK1_SECS run_post arun "http://127.0.0.1:$A_PORT/v1/chat/completions" \
    "$ARUN_PID")
$(WRK_CONNS=1 WRK_SECS=$WRK1_SECS run_post nginx "http://127.0.0.1:$N_PORT/v1/chat/completions" \
    $NGINX_PIDS)"
done
printf '%s\n' "$R1" | sed '/^$/d; s/^/bench: (a1) /' >&2
A1_TABLE=$(printf '%s\n' "$R1" | best_of direct arun nginx | post_table direct)

# The same load against an engine that takes time to answer (4 tokens at WORK_TPS tokens/s), as
# any real one does: the engine, not the CPU, bounds throughput, and the rows show what each
# hop costs then.
WBODY='{"model":"w","messages":[{"role":"user","content":"hi"}],"max_tokens":4}'
R2=""
for round in $(seq "$ROUNDS"); do
    R2="$R2
$(WRK_BODY=$WBODY run_post direct "http://127.0.0.1:$W_PORT/v1/chat/completions" "$WORK_PID")
$(WRK_BODY=$WBODY run_post arun "http://127.0.0.1:$A_PORT/v1/chat/completions" "$ARUN_PID")
$(WRK_BODY=$WBODY run_post nginx "http://127.0.0.1:$NW_PORT/v1/chat/completions" $NGINX_PIDS)"
done
printf '%s\n' "$R2" | sed '/^$/d; s/^/bench: (a2) /' >&2
A2_TABLE=$(printf '%s\n' "$R2" | best_of direct arun nginx | post_table direct)

# ---- (b) streaming --------------------------------------------------------------------------
stream() { node bench/gateway/stream.mjs "$1" "http://127.0.0.1:$2/v1/chat/completions" \
    "$STREAMS" "$TOKENS" s; }
S=""
for round in $(seq "$ROUNDS"); do
    S="$S
$(stream direct "$S_PORT")
$(stream arun "$A_PORT")"
done
printf '%s\n' "$S" | sed '/^$/d; s/^/bench: (b) /' >&2
# TTFT round by round: round 1 is the streaming engine's first burst since arun started it.
B_ROUNDS=$(printf '%s\n' "$S" | awk '
    NF==8 && $1=="direct" { r++; d50[r]=$2; d99[r]=$3 }
    NF==8 && $1=="arun" { a50[r]=$2; a99[r]=$3 }
    END {
        print "| round | direct TTFT p50 ms | direct p99 ms | arun TTFT p50 ms | arun p99 ms" \
            " | added p50 ms | added p99 ms |"
        print "|---|---:|---:|---:|---:|---:|---:|"
        for (i=1; i<=r; i++)
            printf "| %d%s | %.2f | %.2f | %.2f | %.2f | %+.2f | %+.2f |\n", i,
                i == 1 ? " (first)" : "", d50[i], d99[i], a50[i], a99[i],
                a50[i] - d50[i], a99[i] - d99[i]
    }')
B_TABLE=$(printf '%s\n' "$S" | stream_table direct arun)

# ---- (c) the peer gateway, in a private network namespace ------------------------------------
C_TABLE=""
C_NOTE=""
if [ ! -f "$PORTKEY" ]; then
    C_NOTE="skipped: @portkey-ai/gateway is not installed (run \`npm ci\` in bench/gateway)"
elif ! unshare -n true 2>/dev/null; then
    C_NOTE="skipped: unshare -n is not allowed here (Portkey binds every interface, so it runs"
    C_NOTE="$C_NOTE only in a private network namespace)"
elif C_LINES=$(unshare -n sh "$ROOT/bench/gateway.sh" --in-netns "$BUILD" "$TMP"); then
    C_TABLE=$(printf '%s\n' "$C_LINES" | post_table direct)
else
    C_NOTE="failed: see the messages above"
fi

echo "#### (a) non-streaming chat completions (max_tokens 4)"
echo
printf '%s\n' "$A_TABLE"
echo
echo "wrk -t${WRK_THREADS:-1} -c${WRK_CONNS:-32} -d${WRK_SECS:-5}s -s bench/gateway/post.lua," \
    "best of $ROUNDS interleaved rounds"
echo
echo "#### (a) one connection"
echo
printf '%s\n' "$A1_TABLE"
echo
echo "wrk -t1 -c1 -d${WRK1_SECS}s -s bench/gateway/post.lua, best of $ROUNDS interleaved rounds"
echo
echo "#### (a) an engine that works: 4 tokens at $WORK_TPS tokens/s per answer"
echo
printf '%s\n' "$A2_TABLE"
echo
echo "wrk -t${WRK_THREADS:-1} -c${WRK_CONNS:-32} -d${WRK_SECS:-5}s -s bench/gateway/post.lua," \
    "best of $ROUNDS interleaved rounds"
echo
echo "#### (b) $STREAMS concurrent streams of $TOKENS tokens at $TPS tokens/s each"
echo
printf '%s\n' "$B_TABLE"
echo
echo "bench/gateway/stream.mjs (node:http), median of $ROUNDS interleaved rounds per column"
echo
echo "Each round (direct, then arun, same run):"
echo
printf '%s\n' "$B_ROUNDS"
echo
PK_VERSION=$(sed -n 's/^ *"version": "\(.*\)",$/\1/p' "$(dirname "$PORTKEY")/../package.json" \
    2>/dev/null | head -1)
echo "#### (c) peer gateway: @portkey-ai/gateway ${PK_VERSION:-?}, in a private network namespace"
echo
if [ -n "$C_TABLE" ]; then printf '%s\n' "$C_TABLE"; else echo "$C_NOTE"; fi
echo
echo "arun log_level: $LOG_LEVEL, nginx access log: $NGINX_ACCESS_LOG;" \
    "$(nproc) cores, node $(node --version), $(date -u +%Y-%m-%d)"
