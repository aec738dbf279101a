#!/bin/sh
# bench/store.sh [BUILD_DIR]: what the store's durable-runs path sustains, with no HTTP in the
# way: bench/store_bench.c (arun-store-bench) drives store.h as the runs do.
#   (a) events committed per second: RUNS responses (200) each appending EVENTS events (500) of
#       a ~175-byte delta, WINDOW (1) of each run's events in flight, with synchronous FULL and
#       NORMAL; ROUNDS (3) interleaved rounds, the best and the median printed. Also the commits
#       and events per commit (group commit), and with FULL the fdatasync calls counted by
#       strace in one extra round (one per commit, plus checkpoints), when strace is installed.
#   (b) reading one response's READ_EVENTS (10000) events: time to the first page (PAGE, 1000
#       events) and to all of them, median of 5.
#   (c) checking one event's JSON: SQLite's json_valid() against jansson's parser.
# Each round gets a fresh data_dir under the build directory (a real disk, not tmpfs). Prints
# Markdown rows to paste into bench/README.md, raw lines to stderr.
# BACKEND=postgres runs the same against PostgreSQL: a throwaway cluster (scripts/pgtmp.sh, its
# data under the build directory too, fsync on) and a fresh database per round; "synchronous"
# is then what the backend makes of it. (c) and the strace count are SQLite's only.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BUILD=${1:-$ROOT/build}
ROUNDS=${ROUNDS:-3}
RUNS=${RUNS:-200}
EVENTS=${EVENTS:-500}
WINDOW=${WINDOW:-1}
READ_EVENTS=${READ_EVENTS:-10000}
PAGE=${PAGE:-1000}
BACKEND=${BACKEND:-sqlite}
BIN=$BUILD/arun-store-bench

cmake --build "$BUILD" --target arun-store-bench >/dev/null
TMP=$(mktemp -d "$BUILD/store-bench-XXXXXX")
# The cluster's directory is beside TMP, not in it: mktemp's 0700 would keep out the user
# pgtmp.sh runs PostgreSQL as when we are root.
PG=$BUILD/store-bench-pg-$$
if [ "$BACKEND" = postgres ]; then
    trap '"$ROOT/scripts/pgtmp.sh" stop "$PG"; rm -rf "$TMP"' EXIT
    "$ROOT/scripts/pgtmp.sh" start "$PG" >/dev/null
else
    trap 'rm -rf "$TMP"' EXIT
fi

# one SYNC READ: one run of the bench in a fresh data_dir (and database); its output on stdout.
one() {
    rm -rf "$TMP/data"
    if [ "$BACKEND" = postgres ]; then
        ARUN_STORE_URL=$("$ROOT/scripts/pgtmp.sh" createdb "$PG" "bench_$(date +%s%N)")
        export ARUN_STORE_URL
    fi
    "$BIN" "$TMP/data" "$1" "$RUNS" "$EVENTS" "$WINDOW" "$2" "$PAGE" 2>/dev/null
}

for sync in full normal; do
    : >"$TMP/$sync.rates"
done
i=0
while [ "$i" -lt "$ROUNDS" ]; do
    for sync in full normal; do
        out=$(one "$sync" 0)
        printf '%s\n' "$out" >&2
        printf '%s\n' "$out" | awk '/^append/ {print $(NF-9), $(NF-7), $(NF-5)}' \
            | sed 's/,//g' >>"$TMP/$sync.rates"
    done
    i=$((i + 1))
done

echo "| synchronous | events/s (best) | events/s (median) | events per commit (median round) |"
echo "|---|---:|---:|---:|"
for sync in full normal; do
    sort -n "$TMP/$sync.rates" | awk -v s="$sync" '
        { r[NR] = $1; c[NR] = $3 }
        END { m = int((NR + 1) / 2); printf "| %s | %d | %d | %.1f |\n", s, r[NR], r[m], c[m] }'
done

if [ "$BACKEND" = sqlite ] && command -v strace >/dev/null 2>&1; then
    rm -rf "$TMP/data"
    strace -f -e trace=fdatasync,fsync -c -o "$TMP/strace" \
        "$BIN" "$TMP/data" full "$RUNS" 100 "$WINDOW" 0 "$PAGE" >"$TMP/strace.out" 2>/dev/null
    commits=$(awk '/^append/ {print $(NF-7)}' "$TMP/strace.out")
    syncs=$(awk '$NF == "fdatasync" || $NF == "fsync" {n += $4} END {print n + 0}' "$TMP/strace")
    echo
    echo "FULL, $RUNS x 100 events under strace: $commits commits, $syncs fdatasync/fsync calls" \
        "(the extra ones: opening, the response rows, checkpoints)"
fi

echo
one normal "$READ_EVENTS" | grep -v '^append' | sed 's/^/    /'
