#!/bin/sh
# bench/tenancy.sh [BUILD_DIR]: what API keys and TLS cost a request, measured in the same run
# against arun with auth.mode none over plain HTTP (the baseline). The engine is always
# arun-mock-engine, spawned by each arun as engine `m` (no pacing) and `s` (TPS tokens/s, for the
# streams only). Five arun processes serve side by side, each with its own engines:
#   none          auth.mode none, plain HTTP (the baseline)
#   keys          auth.mode keys, every request with a member key: the gate hashes the bearer
#                 value (SHA-256), looks it up in the key table and applies the tenant's limits
#   none-tls      auth.mode none, tls: {cert, key} (a self-signed ECDSA P-256 certificate)
#   keys-tls      both
#   keys-tls-rsa  both, with an RSA 2048 certificate (new connections only: the handshake's
#                 signature is where the key type shows)
# When the `tenants:` section is known to this build, the keys rows run with
# `tenants: {default: {requests_per_minute: 0, concurrent_requests: 0}}` (unlimited), so that
# the gate's own cost is what is measured, and a sixth arun (keys-default) with no `tenants:`
# section shows what a client sees at the default limits (the 429 share).
#   (a) non-streaming POST /v1/chat/completions (max_tokens 4), wrk -t1 -c32 and -c1 for 3 s each
#       with bench/tenancy/post.lua over keep-alive connections (the handshake amortised), best
#       of ROUNDS interleaved rounds by req/s.
#   (b) the same with `Connection: close`: a new connection, and over https a full handshake
#       (arun turns session resumption off), for every request. wrk's latency starts once the
#       connection is up, so the handshake shows in req/s, in ms per request (1 / req/s with one
#       connection) and in the server's CPU time, not in p50/p99.
#   (c) the default limits: what a client of keys-default sees (2xx, 429 and their share).
#   (d) STREAMS concurrent streams of TOKENS tokens at TPS tokens/s (bench/gateway/stream.mjs, a
#       new connection per stream): TTFT p50/p99 and the inter-token delay through none, keys
#       and keys-tls, median of ROUNDS interleaved rounds. The engine is paced here: unpaced
#       streams measure CPU contention, not the time to a first token.
#   (e) refused clients: keys's arun answering requests with no key and with an unknown key
#       (401s) beside its member key's answers, as (a) with 32 connections.
# Prints Markdown tables for bench/README.md, and every round's raw line to stderr. Everything
# listens on 127.0.0.1, every load run is bounded in time, and the whole script takes about
# 5 minutes and a half.
set -eu
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
cd "$ROOT"
LUA=$ROOT/bench/tenancy/post.lua
ROUNDS=${ROUNDS:-3}
WRK_SECS=${WRK_SECS:-3}
WRK1_SECS=${WRK1_SECS:-3}
STREAMS=${STREAMS:-50}
TOKENS=${TOKENS:-100}
TPS=${TPS:-200}
LOG_LEVEL=${LOG_LEVEL:-info} # arun's default: an access line per request, into a file

BUILD=${1:-build}
bench_build "$BUILD" arun arun-mock-engine
LOAD0=$(cut -d" " -f1-3 /proc/loadavg)
TMP=$(mktemp -d)
chmod 755 "$TMP" # nginx's workers run as www-data
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    [ -f "$TMP/nginx.pid" ] && kill "$(cat "$TMP/nginx.pid")" 2>/dev/null || true
    sleep 0.3 # arun stops its engines on SIGTERM
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 1' INT TERM HUP PIPE

# Self-signed certificates for 127.0.0.1: ECDSA P-256 (what certbot issues by default) and
# RSA 2048. The key files are the owner's only, as arun asks.
make_cert() { # NAME OPENSSL_NEWKEY_ARGS…
    _n=$1
    shift
    openssl req -x509 "$@" -nodes -days 2 -subj /CN=127.0.0.1 \
        -addext subjectAltName=IP:127.0.0.1 -keyout "$TMP/$_n-key.pem" -out "$TMP/$_n-cert.pem" \
        2>/dev/null
    chmod 600 "$TMP/$_n-key.pem"
}
make_cert ec -newkey ec -pkeyopt ec_paramgen_curve:prime256v1
make_cert rsa -newkey rsa:2048

# Does this build know `tenants:` (the limits of issue 13)? Then the keys rows say unlimited.
printf 'tenants: {default: {requests_per_minute: 0, concurrent_requests: 0}}\n' >"$TMP/t.yaml"
LIMITS=no
"$BUILD/arun" config check "$TMP/t.yaml" >/dev/null 2>&1 && LIMITS=yes

# start_arun NAME AUTH TLS TENANTS: an arun serving on a free port, with auth.mode AUTH, TLS
# none|ec|rsa, TENANTS unlimited|default; its URL, member key (empty with auth none), pid and CA
# file are kept in $TMP/NAME.{url,key,pids,ca}.
start_arun() {
    _name=$1
    _port=$(free_port)
    free_port >"$TMP/$_name.mport"
    {
        echo "data_dir: $TMP/$_name-data"
        echo "log_level: $LOG_LEVEL"
        echo "auth: {mode: $2}"
        [ "$3" = none ] || echo "tls: {cert: $TMP/$3-cert.pem, key: $TMP/$3-key.pem}"
        if [ "$4" = unlimited ] && [ "$LIMITS" = yes ]; then
            echo "tenants: {default: {requests_per_minute: 0, concurrent_requests: 0}}"
        fi
        cat <<EOF
node: {ram_mb: 100000, vram_mb: 0, reserve_mb: 0}
engines:
  m:
    cmd: "$BUILD/arun-mock-engine --port \${PORT} --load-ms 0"
    port: $(cat "$TMP/$_name.mport")
    start: always
    max_concurrency: 256
    queue_limit: 1024
    restart: {policy: never}
  s:
    cmd: "$BUILD/arun-mock-engine --port \${PORT} --load-ms 0 --tokens-per-s $TPS --ignore-eos"
    port: $(free_port)
    start: always
    max_concurrency: 256
    queue_limit: 1024
    restart: {policy: never}
EOF
    } >"$TMP/$_name.yaml"
    : >"$TMP/$_name.key"
    if [ "$2" = keys ]; then # made in the store before the server starts, as a first key is
        "$BUILD/arun" keys create --config "$TMP/$_name.yaml" --tenant bench --name bench \
            2>/dev/null >"$TMP/$_name.key"
    fi
    _scheme=http
    : >"$TMP/$_name.ca"
    if [ "$3" != none ]; then
        _scheme=https
        echo "$TMP/$3-cert.pem" >"$TMP/$_name.ca"
    fi
    echo "$_scheme://127.0.0.1:$_port" >"$TMP/$_name.url"
    "$BUILD/arun" serve --config "$TMP/$_name.yaml" --listen "127.0.0.1:$_port" \
        2>"$TMP/$_name.log" &
    echo $! >"$TMP/$_name.pids"
    PIDS="$PIDS $!"
}

# chat NAME MODEL [KEY]: POSTs one small chat completion to NAME; prints the HTTP status.
chat() {
    _ca=$(cat "$TMP/$1.ca")
    curl -s -o /dev/null -w '%{http_code}' ${_ca:+--cacert "$_ca"} \
        ${3:+-H "authorization: Bearer $3"} -H 'content-type: application/json' \
        -d "{\"model\":\"$2\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"max_tokens\":4}" \
        "$(cat "$TMP/$1.url")/v1/chat/completions" || true
}

# ready NAME: waits until both of NAME's engines answer a chat completion with its key (20 s),
# and, with a key, checks that the gate is on: no key is a 401.
ready() {
    _key=$(cat "$TMP/$1.key")
    _deadline=$(($(date +%s) + 20))
    until [ "$(chat "$1" m "$_key")" = 200 ] && [ "$(chat "$1" s "$_key")" = 200 ]; do
        if [ "$(date +%s)" -ge "$_deadline" ]; then
            echo "bench: $1 did not answer 200; its log:" >&2
            cat "$TMP/$1.log" >&2
            exit 1
        fi
        sleep 0.05
    done
    if [ -n "$_key" ] && [ "$(chat "$1" m)" != 401 ]; then
        echo "bench: $1 answers without a key: the gate is not on" >&2
        exit 1
    fi
}

PATHS="none keys none-tls keys-tls"
start_arun none none none unlimited
start_arun keys keys none unlimited
start_arun none-tls none ec unlimited
start_arun keys-tls keys ec unlimited
start_arun keys-tls-rsa keys rsa unlimited
[ "$LIMITS" = no ] || start_arun keys-default keys none default
for p in $PATHS keys-tls-rsa; do ready "$p"; done
[ "$LIMITS" = no ] || ready keys-default

# The peer: nginx (1 worker) terminating the same TLS as arun (TLS 1.2+, ECDSA P-256, no
# session tickets or cache) and proxying to none's engine over a keepalive upstream, beside the
# same nginx over plain HTTP; both with their default access log into a file, as arun logs each
# request at its default log_level.
N_PORT=$(free_port)
NT_PORT=$(free_port)
start_nginx "$TMP" "    upstream mock { server 127.0.0.1:$(cat "$TMP/none.mport"); keepalive 64; }
    server {
        listen 127.0.0.1:$N_PORT;
        listen 127.0.0.1:$NT_PORT ssl;
        ssl_certificate $TMP/ec-cert.pem;
        ssl_certificate_key $TMP/ec-key.pem;
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_session_tickets off;
        ssl_session_cache off;
        access_log $TMP/nginx/access.log;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
        }
    }"
wait_http "http://127.0.0.1:$N_PORT/health"
N_PIDS="$(cat "$TMP/nginx.pid") $(pgrep -P "$(cat "$TMP/nginx.pid")" | tr '\n' ' ')"
for n in nginx nginx-tls; do
    : >"$TMP/$n.key"
    echo "$N_PIDS" >"$TMP/$n.pids"
done
echo "http://127.0.0.1:$N_PORT" >"$TMP/nginx.url"
echo "https://127.0.0.1:$NT_PORT" >"$TMP/nginx-tls.url"

# post NAME: one run_post of NAME with its key, CPU time counted for that arun alone (for nginx:
# its master and worker).
post() {
    export WRK_KEY
    WRK_KEY=$(cat "$TMP/$1.key")
    # shellcheck disable=SC2046 # one argument per pid
    run_post "$1" "$(cat "$TMP/$1.url")/v1/chat/completions" $(cat "$TMP/$1.pids")
}

# rounds TAG CONNS SECS CLOSE PATH…: ROUNDS interleaved rounds over PATH…; raw lines to stderr,
# the best line of each path on stdout.
rounds() {
    _tag=$1
    export WRK_CONNS=$2 WRK_SECS=$3 WRK_CLOSE=$4
    shift 4
    _r=""
    for _round in $(seq "$ROUNDS"); do
        for _p in "$@"; do _r="$_r
$(post "$_p")"; done
    done
    printf '%s\n' "$_r" | sed "/^\$/d; s/^/bench: ($_tag) /" >&2
    printf '%s\n' "$_r" | best_of "$@"
}

# table REF: the Markdown table of best lines, each row against REF's: req/s, latency, the
# server's CPU per request, and ms per request (1 / req/s: with one connection, the whole cycle
# of a request, connection and handshake included).
table() {
    echo "| path | req/s | ms/req (1 / req/s) | p50 ms | p99 ms | req/s vs $1 |" \
        "server CPU µs/req | CPU vs $1 | bad answers |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    awk -v ref="$1" '
        { n++; name[n]=$1; rps[n]=$2; p50[n]=$3; p99[n]=$4; bad[n]=$5; cpu[n]=$6
          if ($1 == ref) { rr = $2; rc = $6 } }
        END { for (i=1; i<=n; i++)
            printf "| %s | %.0f | %.3f | %.3f | %.3f | %.2f | %.1f | %.2f | %d |\n", name[i],
                rps[i], 1000 / rps[i], p50[i], p99[i], rps[i] / rr, cpu[i], cpu[i] / rc, bad[i] }'
}

# ---- (a) keep-alive ----------------------------------------------------------------------------
A32=$(rounds a32 32 "$WRK_SECS" 0 $PATHS nginx nginx-tls | table none)
A1=$(rounds a1 1 "$WRK1_SECS" 0 $PATHS nginx nginx-tls | table none)

# ---- (b) a new connection per request ------------------------------------------------------------
B32=$(rounds b32 32 "$WRK_SECS" 1 $PATHS keys-tls-rsa nginx nginx-tls | table none)
B1=$(rounds b1 1 "$WRK1_SECS" 1 $PATHS keys-tls-rsa nginx nginx-tls | table none)

# ---- (c) the default limits --------------------------------------------------------------------
# defaults CONNS SECS: one wrk run against keys-default; prints a table row.
defaults() {
    _key=$(cat "$TMP/keys-default.key")
    _out=$(WRK_KEY=$_key WRK_CLOSE=0 wrk -t1 -c"$1" -d"$2"s --latency -s "$LUA" \
        "$(cat "$TMP/keys-default.url")/v1/chat/completions")
    printf '%s\n' "$_out" | sed 's/^/bench: (c) /' >&2
    printf '%s\n' "$_out" | awk -v c="$1" -v s="$2" '
        /requests in/ { n = $1 } /Non-2xx/ { bad = $NF } /^Requests\/sec/ { rps = $2 }
        END { printf "| -c%d -d%ds | %d | %d | %d | %.1f%% | %.0f |\n",
            c, s, n, n - bad, bad, 100 * bad / n, rps }'
}
C_TABLE=""
if [ "$LIMITS" = yes ]; then
    C_ROWS="$(defaults 32 "$WRK_SECS")
$(defaults 1 "$WRK1_SECS")"
    # What a refused client reads: the first 429 of up to 50 more requests (the bucket refills
    # one request every 0.1 s, so one of them may still pass).
    for _ in $(seq 50); do
        C_SEEN=$(curl -s -D - -o "$TMP/c.json" \
            -H "authorization: Bearer $(cat "$TMP/keys-default.key")" \
            -H 'content-type: application/json' \
            -d '{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":4}' \
            "$(cat "$TMP/keys-default.url")/v1/chat/completions" |
            awk 'NR==1 { s = $2 } tolower($1)=="retry-after:" { r = $2 }
                END { printf "%s, Retry-After: %s", s, r }' | tr -d '\r')
        case $C_SEEN in 429*) break ;; esac
    done
    C_TABLE="| wrk | requests | 2xx | 429 | 429 share | req/s |
|---|---:|---:|---:|---:|---:|
$C_ROWS

A refused request gets HTTP $C_SEEN and \`$(cat "$TMP/c.json")\`"
fi

# ---- (d) streams -------------------------------------------------------------------------------
stream() {
    STREAM_KEY=$(cat "$TMP/$1.key") STREAM_CA=$(cat "$TMP/$1.ca") node bench/gateway/stream.mjs \
        "$1" "$(cat "$TMP/$1.url")/v1/chat/completions" "$STREAMS" "$TOKENS" s
}
S=""
for _ in $(seq "$ROUNDS"); do
    S="$S
$(stream none)
$(stream keys)
$(stream keys-tls)"
done
printf '%s\n' "$S" | sed '/^$/d; s/^/bench: (d) /' >&2
D_TABLE=$(printf '%s\n' "$S" | awk "$AWK_STREAM_MED"'
    END {
        printf "| path | TTFT p50 ms | TTFT p99 ms | p50 vs none | p99 vs none"
        print " | inter-token mean ms | inter-token p99 ms | streams ok |"
        print "|---|---:|---:|---:|---:|---:|---:|---:|"
        split("none keys keys-tls", p, " ")
        for (k=1; k<=3; k++)
            printf "| %s | %.2f | %.2f | %.2f | %.2f | %.3f | %.2f | %d |\n", p[k], med(p[k],2),
                med(p[k],3), med(p[k],2) / med("none",2), med(p[k],3) / med("none",3),
                med(p[k],4), med(p[k],5), med(p[k],6)
    }')

# ---- (e) refused clients ---------------------------------------------------------------------
# What a client without a valid key costs keys's arun, beside its member key's answers: no
# Authorization header, and a well-formed key that is in no table (hashed, looked up, refused).
# Both are 401s, audited (the audit trail rate-limits their records). Every answer of these rows
# is "bad" by design.
for n in keys-nokey keys-badkey; do
    cp "$TMP/keys.url" "$TMP/$n.url"
    cp "$TMP/keys.pids" "$TMP/$n.pids"
done
: >"$TMP/keys-nokey.key"
echo "arun-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" >"$TMP/keys-badkey.key"
E32=$(rounds e32 32 "$WRK_SECS" 0 keys keys-nokey keys-badkey | table keys)

if [ "$LIMITS" = yes ]; then
    UNL="the keys rows with \`tenants: {default: {requests_per_minute: 0, concurrent_requests: 0}}\`"
else
    UNL="this build has no \`tenants:\` (limits): the keys rows run without limits"
fi
echo "#### (a) keep-alive connections, 32 of them"
echo
printf '%s\n' "$A32"
echo
echo "wrk -t1 -c32 -d${WRK_SECS}s -s bench/tenancy/post.lua, best of $ROUNDS interleaved rounds"
echo
echo "#### (a) one keep-alive connection"
echo
printf '%s\n' "$A1"
echo
echo "wrk -t1 -c1 -d${WRK1_SECS}s -s bench/tenancy/post.lua, best of $ROUNDS interleaved rounds"
echo
echo "#### (b) a new connection per request (Connection: close), 32 at a time"
echo
printf '%s\n' "$B32"
echo
echo "WRK_CLOSE=1 wrk -t1 -c32 -d${WRK_SECS}s -s bench/tenancy/post.lua, best of $ROUNDS" \
    "interleaved rounds"
echo
echo "#### (b) a new connection per request, one at a time"
echo
printf '%s\n' "$B1"
echo
echo "WRK_CLOSE=1 wrk -t1 -c1 -d${WRK1_SECS}s -s bench/tenancy/post.lua, best of $ROUNDS" \
    "interleaved rounds"
echo
echo "#### (c) the default limits (auth.mode keys, no \`tenants:\` section), one tenant's key"
echo
if [ -n "$C_TABLE" ]; then printf '%s\n' "$C_TABLE"; else echo "skipped: $UNL"; fi
echo
echo "#### (d) $STREAMS concurrent streams of $TOKENS tokens at $TPS tokens/s each"
echo
printf '%s\n' "$D_TABLE"
echo
echo "bench/gateway/stream.mjs (a new connection per stream: over https its TTFT includes the" \
    "handshake), median of $ROUNDS interleaved rounds per column"
echo
echo "#### (e) refused clients: no key, and an unknown key (401), against keys's member key"
echo
printf '%s\n' "$E32"
echo
echo "wrk -t1 -c32 -d${WRK_SECS}s -s bench/tenancy/post.lua, best of $ROUNDS interleaved rounds;" \
    "bad answers: the 401s"
echo
echo "$UNL; certificates: ECDSA P-256 (keys-tls-rsa: RSA 2048); arun log_level: $LOG_LEVEL;" \
    "wrk $(wrk -v 2>&1 | awk 'NR==1 {print $2}'), $(openssl version | awk '{print $1, $2}');" \
    "$(nproc) cores, load average before: $LOAD0; $(date -u +%Y-%m-%d)"
