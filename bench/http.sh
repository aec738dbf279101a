#!/bin/sh
# bench/http.sh [BUILD_DIR]: requests per second of arun's HTTP core, side by side with two
# references measured in the same run with the same load tool (wrk, 1 thread, 32 connections):
#   arun          GET /healthz through arun serve
#   mock-engine   GET /health of arun-mock-engine (h2o, the same library, no arun in between)
#   nginx         a static file from Debian's nginx (1 worker)
# Prints a Markdown table with ratios to arun; paste it into bench/README.md.
set -eu
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
cd "$ROOT"
TMP=$(mktemp -d)
chmod 755 "$TMP" # nginx workers run as www-data and must read the static file
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    [ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

A_PORT=$(free_port); M_PORT=$(free_port); N_PORT=$(free_port)
printf 'data_dir: %s/data\nlog_level: warn\n' "$TMP" >"$TMP/arun.yaml"
"$BUILD/arun" serve --config "$TMP/arun.yaml" --listen "127.0.0.1:$A_PORT" 2>"$TMP/arun.log" &
PIDS="$PIDS $!"
"$BUILD/arun-mock-engine" --port "$M_PORT" 2>"$TMP/mock.log" &
PIDS="$PIDS $!"
mkdir -p "$TMP/html"
printf '{"status":"ok"}' >"$TMP/html/healthz"
start_nginx "$TMP" "    server { listen 127.0.0.1:$N_PORT; root $TMP/html; }"

wait_http "http://127.0.0.1:$A_PORT/healthz"
wait_http "http://127.0.0.1:$M_PORT/health"
wait_http "http://127.0.0.1:$N_PORT/healthz"

# Interleave three rounds so a noisy neighbour hurts all three alike; keep the better run of each.
R=""
for round in 1 2 3; do
    R="$R
$(run_wrk arun "http://127.0.0.1:$A_PORT/healthz")
$(run_wrk mock-engine "http://127.0.0.1:$M_PORT/health")
$(run_wrk nginx "http://127.0.0.1:$N_PORT/healthz")"
done
BEST=$(printf '%s\n' "$R" | awk 'NF==4 { if ($2 > best[$1]) { best[$1]=$2; line[$1]=$0 } }
    END { print line["arun"]; print line["mock-engine"]; print line["nginx"] }')
ARUN_RPS=$(printf '%s\n' "$BEST" | awk '$1=="arun" {print $2}')
echo "| target | req/s | p50 ms | p99 ms | arun / target |"
echo "|---|---:|---:|---:|---:|"
printf '%s\n' "$BEST" | awk -v a="$ARUN_RPS" '{ printf "| %s | %.0f | %s | %s | %.2f |\n", $1, $2, $3, $4, a/$2 }'
echo
echo "wrk -t${WRK_THREADS:-1} -c${WRK_CONNS:-32} -d${WRK_SECS:-5}s, best of 3 interleaved rounds, $(nproc) cores, $(date -u +%Y-%m-%d)"
