#!/bin/sh
# bench/multinode.sh [BUILD_DIR]: what running on PostgreSQL and on several nodes costs, at the
# default configuration (store.synchronous full for SQLite, synchronous_commit on for
# PostgreSQL, log_level info), against arun-mock-engine. In the same run:
#   sqlite     one arun on SQLite (the embedded default: the reference row)
#   pg-1       one arun on a throwaway PostgreSQL 15 cluster (scripts/pgtmp.sh, on loopback)
#   pg-3       three aruns sharing that PostgreSQL database, the load spread over the three
#   (a) background responses created per second: wrk (bench/gateway/post.lua) POSTs background
#       responses for an engine that holds one at a time, so each request is the create path
#       alone (row and first two events committed before the answer). pg-3 runs one wrk per
#       node at once and adds their rates. Best of ROUNDS.
#   (b) events committed per second: EV_RUNS background responses of EV_TOKENS tokens at once
#       per node on an unpaced engine, arun_run_events_total over the time until all ended
#       (pg-3: the three nodes at once, their events added, the longest time).
#   (c) the node-to-node hop: a non-streaming chat completion (max_tokens 4) sent to node A,
#       whose engine serves it, and to node B, which has no engine for the model and proxies it
#       to A (x-arun-node: A): p50/p99 at 1 and 32 connections, and the added latency.
# Prints Markdown tables for bench/README.md and every raw line to stderr. Everything listens
# on 127.0.0.1 (PostgreSQL too), every load run is bounded in time; about 3 minutes in all.
# On a 2-core machine the three nodes, PostgreSQL and the load generator share two cores: read
# the pg-3 rows as what one box can do, not as scaling.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
cd "$ROOT"
LUA=$ROOT/bench/gateway/post.lua # run_post's wrk script
export LUA
ROUNDS=${ROUNDS:-3}
EV_RUNS=${EV_RUNS:-32}
EV_TOKENS=${EV_TOKENS:-2000}
WRK_SECS=${WRK_SECS:-5}
export WRK_SECS
LOG_LEVEL=${LOG_LEVEL:-info}

BUILD=${1:-build}
bench_build "$BUILD" arun arun-mock-engine
TMP=$(mktemp -d)
chmod 755 "$TMP"
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    sleep 0.5 # arun stops its engines on SIGTERM
    "$ROOT/scripts/pgtmp.sh" stop "$TMP/pg" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

MOCK="$BUILD/arun-mock-engine"
RUNS="node $ROOT/bench/runs/runs.mjs"
ARUN_CLUSTER_SECRET=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
export ARUN_CLUSTER_SECRET
PG_URL=$("$ROOT/scripts/pgtmp.sh" start "$TMP/pg")
LOAD0=$(cut -d" " -f1-3 /proc/loadavg)

# config FILE NAME PORT STORE_URL ENGINES: engines m (unpaced) and q (one at a time, slow), or
# none ("-": a node that proxies everything).
config() {
    {
        echo "data_dir: $TMP/$2"
        echo "log_level: $LOG_LEVEL"
        echo "store: {url: \"$4\"}"
        echo "cluster: {node_id: $2, advertise: \"http://127.0.0.1:$3\"}"
        echo "node: {ram_mb: 100000, vram_mb: 0, reserve_mb: 0}"
        if [ "$5" != "-" ]; then
            cat <<EOF
engines:
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
        fi
    } >"$1"
}

# serve NAME STORE_URL ENGINES: starts arun on a free port; sets PORT and APID.
serve() {
    PORT=$(free_port)
    config "$TMP/$1.yaml" "$1" "$PORT" "$2" "$3"
    "$BUILD/arun" serve --config "$TMP/$1.yaml" --listen "127.0.0.1:$PORT" 2>"$TMP/$1.log" &
    APID=$!
    PIDS="$PIDS $APID"
    wait_http "http://127.0.0.1:$PORT/healthz"
    if [ "$3" != "-" ]; then
        for e in m q; do wait_ready "http://127.0.0.1:$PORT/v1/engines/$e"; done
    fi
}

stop() {
    for _p in "$@"; do kill "$_p" 2>/dev/null || true; done
    for _p in "$@"; do while kill -0 "$_p" 2>/dev/null; do sleep 0.05; done; done
}

# new_db NAME: a fresh database on the cluster, so every row starts from an empty store.
new_db() {
    "$ROOT/scripts/pgtmp.sh" createdb "$TMP/pg" "$1"
}

CREATE_BODY='{"model":"q","input":"hi","background":true}'

# ---- (a) and (b) ---------------------------------------------------------------------------
A=""
B=""
# one node: sqlite, then pg-1; (b) on a fresh store: (a)'s runs stay queued on q
for store in sqlite pg-1; do
    url=sqlite
    [ "$store" = sqlite ] || url=$(new_db "bench_a_one")
    serve "$store-a" "$url" m
    U="http://127.0.0.1:$PORT"
    for _ in $(seq "$ROUNDS"); do
        A="$A
$(WRK_BODY=$CREATE_BODY run_post "$store" "$U/v1/responses" "$APID")"
    done
    stop "$APID"
    [ "$store" = sqlite ] || url=$(new_db "bench_b_one")
    serve "$store-b" "$url" m
    B="$B
$store $($RUNS events "http://127.0.0.1:$PORT" m "$EV_RUNS" "$EV_TOKENS")"
    stop "$APID"
done

# three nodes on one database, (a) then (b) on a fresh one
three() { # DB: starts n1..n3 on it; sets NODES and URLS
    NODES=""
    URLS=""
    for n in n1 n2 n3; do
        serve "$n-$1" "$2" m
        NODES="$NODES $APID"
        URLS="$URLS http://127.0.0.1:$PORT"
    done
}
three a "$(new_db bench_a_three)"
for _ in $(seq "$ROUNDS"); do
    JOBS=""
    for u in $URLS; do
        WRK_BODY=$CREATE_BODY run_post pg-3 "$u/v1/responses" $NODES >"$TMP/a.$(echo "$u" | tr -dc 0-9)" &
        JOBS="$JOBS $!"
    done
    wait $JOBS # not a bare wait: the aruns are this shell's children too
    # Added rates, the worst p50/p99 of the three, CPU of all nodes per request.
    A="$A
$(cat "$TMP"/a.* | awk '{ r += $2; if ($3 > p50) p50 = $3; if ($4 > p99) p99 = $4; bad += $5; cpu = $6 }
        END { printf "pg-3 %.2f %.3f %.3f %d %.2f\n", r, p50, p99, bad, cpu / 3 }')"
    rm -f "$TMP"/a.*
done
stop $NODES
url=$(new_db bench_b_three)
three b "$url"
JOBS=""
for u in $URLS; do
    $RUNS events "$u" m "$EV_RUNS" "$EV_TOKENS" >"$TMP/b.$(echo "$u" | tr -dc 0-9)" &
    JOBS="$JOBS $!"
done
wait $JOBS
B="$B
pg-3 $(cat "$TMP"/b.* | awk '{ n += $2; if ($3 > ms) ms = $3 } END { printf "events %d %d %d\n", n, ms, n / ms * 1000 }')"
rm -f "$TMP"/b.*
printf '%s\n' "$A" | sed '/^$/d; s/^/bench: (a) /' >&2
printf '%s\n' "$B" | sed '/^$/d; s/^/bench: (b) /' >&2

# ---- (c) the hop: n1 serves m, a fourth node without engines proxies to the cluster ----------
serve hop "$url" -   # the nodes of (b) serve m; this one has no engine
HOP="http://127.0.0.1:$PORT"
HOP_PID=$APID
DIRECT=$(echo "$URLS" | awk '{print $1}')
C=""
for conns in 1 32; do
    for _ in $(seq "$ROUNDS"); do
        C="$C
$(WRK_CONNS=$conns run_post "direct-c$conns" "$DIRECT/v1/chat/completions" $NODES)
$(WRK_CONNS=$conns run_post "hop-c$conns" "$HOP/v1/chat/completions" $NODES $HOP_PID)"
    done
done
printf '%s\n' "$C" | sed '/^$/d; s/^/bench: (c) /' >&2
ANSWERED=$(curl -s -D - -o /dev/null -H 'Content-Type: application/json' \
    -d '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4}' \
    "$HOP/v1/chat/completions" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-arun-node" {print $2}')
stop $NODES "$HOP_PID"

echo "#### Multi-node: load average at the start $LOAD0; $(nproc) cores"
echo
echo "#### (a) background responses created per second"
echo
echo "| store | created/s | p50 ms | p99 ms | bad answers | vs sqlite |"
echo "|---|---:|---:|---:|---:|---:|"
printf '%s\n' "$A" | best_of sqlite pg-1 pg-3 | awk '
    { n++; name[n]=$1; r[n]=$2; p50[n]=$3; p99[n]=$4; bad[n]=$5; if ($1=="sqlite") ref=$2 }
    END { for (i=1; i<=n; i++) printf "| %s | %.0f | %.3f | %.3f | %d | %.2f |\n", name[i], r[i], p50[i], p99[i], bad[i], r[i]/ref }'
echo
echo "wrk -t1 -c${WRK_CONNS:-32} -d${WRK_SECS}s per node (pg-3: one wrk per node at once, rates added, worst p50/p99), best of $ROUNDS"
echo
echo "#### (b) events committed per second ($EV_RUNS background responses of $EV_TOKENS tokens per node, unpaced engine)"
echo
echo "| store | events | ms | events/s | vs sqlite |"
echo "|---|---:|---:|---:|---:|"
printf '%s\n' "$B" | awk 'NF==5 { n++; name[n]=$1; ev[n]=$3; ms[n]=$4; r[n]=$5; if ($1=="sqlite") ref=$5 }
    END { for (i=1; i<=n; i++) printf "| %s | %d | %d | %d | %.2f |\n", name[i], ev[i], ms[i], r[i], r[i]/ref }'
echo
echo "#### (c) a chat completion through another node (the answer's x-arun-node: $ANSWERED)"
echo
for conns in 1 32; do
    printf '%s\n' "$C" | best_of "direct-c$conns" "hop-c$conns" | post_table "direct-c$conns"
    echo
done
echo "non-streaming, max_tokens 4, wrk -t1 -d${WRK_SECS}s, best of $ROUNDS; server CPU counts the nodes' processes (and the hop node's)"
