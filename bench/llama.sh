#!/bin/sh
# bench/llama.sh [BUILD_DIR]: what arun's gateway adds to the answers of a real engine. The
# engine is llama.cpp's llama-server (scripts/llama-server.sh builds it once per machine) serving
# a generated model with random weights (tests/models/make_gguf.py; MODEL_KIND=--tiny, dim 64 and
# 2 layers, answers in a few ms so the gateway's share is as visible as it can be; --big, dim
# 1024 and 8 layers, ~60 tokens/s). arun spawns it as engine `l` (-t 1, one slot: the cores are
# shared with arun and the load generator), and the direct rows talk to that same process.
#   (a) non-streaming: POST /v1/chat/completions, TOKENS_A (8) tokens with ignore_eos, one
#       connection (wrk -c1, WRK_SECS each): the latency each answer has directly and through
#       arun, best of ROUNDS interleaved rounds by req/s.
#   (b) streaming: one stream of TOKENS_B (64) tokens at a time (bench/gateway/stream.mjs with 1
#       stream), ROUNDS interleaved rounds of each path: time to first token and the delay
#       between tokens, median per column.
# Prints Markdown tables to paste into bench/README.md, and every round's raw line to stderr.
# Everything listens on 127.0.0.1, every load run is bounded in time; about a minute in all.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
cd "$ROOT"
LUA=$ROOT/bench/gateway/post.lua
ROUNDS=${ROUNDS:-3}
WRK_SECS=${WRK_SECS:-5}
TOKENS_A=${TOKENS_A:-8}
TOKENS_B=${TOKENS_B:-64}
MODEL_KIND=${MODEL_KIND:---tiny}
MAKE_GGUF=${MAKE_GGUF:-$ROOT/tests/models/make_gguf.py}

BUILD=${1:-build}
bench_build "$BUILD" arun
[ -f "$MAKE_GGUF" ] || { echo "bench: the model generator $MAKE_GGUF is missing" >&2; exit 1; }
LLAMA=$(scripts/llama-server.sh)

TMP=$(mktemp -d)
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    sleep 0.3 # arun stops its engine on SIGTERM
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

python3 "$MAKE_GGUF" "$MODEL_KIND" "$TMP/model.gguf"
A_PORT=$(free_port)
L_PORT=$(free_port)
cat >"$TMP/arun.yaml" <<EOF
data_dir: $TMP/data
node: {ram_mb: 100000, vram_mb: 0, reserve_mb: 0}
engines:
  l:
    cmd: "$LLAMA -m $TMP/model.gguf --alias l --host 127.0.0.1 --port \${PORT} -t 1 -np 1 -c 1024 --no-webui"
    port: $L_PORT
    start: always
    max_concurrency: 1
    restart: {policy: never}
EOF
"$BUILD/arun" serve --config "$TMP/arun.yaml" --listen "127.0.0.1:$A_PORT" 2>"$TMP/arun.log" &
ARUN_PID=$!
PIDS="$PIDS $!"
wait_http "http://127.0.0.1:$A_PORT/healthz"
wait_ready "http://127.0.0.1:$A_PORT/v1/engines/l" 60
L_PID=$(engine_pid "http://127.0.0.1:$A_PORT/v1/engines/l")

# ---- (a) non-streaming, one connection ------------------------------------------------------
export WRK_BODY="{\"model\":\"l\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\
\"max_tokens\":$TOKENS_A,\"ignore_eos\":true}"
R=""
for round in $(seq "$ROUNDS"); do
    R="$R
$(WRK_CONNS=1 run_post direct "http://127.0.0.1:$L_PORT/v1/chat/completions" "$L_PID")
$(WRK_CONNS=1 run_post arun "http://127.0.0.1:$A_PORT/v1/chat/completions" "$ARUN_PID")"
done
printf '%s\n' "$R" | sed '/^$/d; s/^/bench: (a) /' >&2
A_TABLE=$(printf '%s\n' "$R" | best_of direct arun | post_table direct)

# ---- (b) streaming, one stream at a time ----------------------------------------------------
stream() { node bench/gateway/stream.mjs "$1" "http://127.0.0.1:$2/v1/chat/completions" 1 \
    "$TOKENS_B" l; }
S=""
for round in $(seq "$ROUNDS"); do
    S="$S
$(stream direct "$L_PORT")
$(stream arun "$A_PORT")"
done
printf '%s\n' "$S" | sed '/^$/d; s/^/bench: (b) /' >&2
B_TABLE=$(printf '%s\n' "$S" | awk "$AWK_STREAM_MED"'
    END {
        print "| path | TTFT ms | inter-token mean ms | inter-token p99 ms | wall ms |"
        print "|---|---:|---:|---:|---:|"
        split("direct arun", names, " ")
        for (k=1; k<=2; k++) { n=names[k]
            printf "| %s | %.2f | %.3f | %.2f | %d |\n", n, med(n,2), med(n,4), med(n,5), med(n,8) }
        printf "| arun - direct | %+.2f | %+.3f | %+.2f | %+d |\n",
            med("arun",2) - med("direct",2), med("arun",4) - med("direct",4),
            med("arun",5) - med("direct",5), med("arun",8) - med("direct",8)
    }')

echo "#### llama-server ($MODEL_KIND model), non-streaming, one connection ($TOKENS_A tokens)"
echo
printf '%s\n' "$A_TABLE"
echo
echo "wrk -t1 -c1 -d${WRK_SECS}s -s bench/gateway/post.lua, best of $ROUNDS interleaved rounds"
echo
echo "#### llama-server ($MODEL_KIND model), one stream of $TOKENS_B tokens at a time"
echo
printf '%s\n' "$B_TABLE"
echo
echo "bench/gateway/stream.mjs (node:http, 1 stream), median of $ROUNDS interleaved rounds"
echo
echo "llama.cpp $("$LLAMA" --version 2>&1 | sed -n 's/.*commit \([0-9a-f]*\).*/\1/p'), -t 1 -np 1;" \
    "$(nproc) cores, node $(node --version), $(date -u +%Y-%m-%d)"
