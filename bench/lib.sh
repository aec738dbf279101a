# Shared helpers for the benchmark scripts: free ports, waiting on a URL, wrk parsing.
# Everything listens on 127.0.0.1 only, and every load run is bounded by its duration.

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL [SECONDS]: polls until URL answers 2xx, or fails after the deadline.
wait_http() {
    _deadline=$(( $(date +%s) + ${2:-10} ))
    until curl -sf -o /dev/null "$1"; do
        [ "$(date +%s)" -lt "$_deadline" ] || { echo "bench: $1 did not come up" >&2; return 1; }
        sleep 0.05
    done
}

# run_wrk NAME URL: one bounded wrk run; prints "NAME RPS P50_MS P99_MS".
run_wrk() {
    _out=$(wrk -t"${WRK_THREADS:-1}" -c"${WRK_CONNS:-32}" -d"${WRK_SECS:-5}"s --latency "$2")
    _rps=$(printf '%s\n' "$_out" | awk '/^Requests\/sec/ {print $2}')
    _p50=$(printf '%s\n' "$_out" | awk '$1=="50%" {print $2}')
    _p99=$(printf '%s\n' "$_out" | awk '$1=="99%" {print $2}')
    echo "$1 $_rps $(to_ms "$_p50") $(to_ms "$_p99")"
}

# to_ms 1.23ms|456.00us|1.2s -> milliseconds
to_ms() {
    case "$1" in
    *us) echo "$1" | sed 's/us$//' | awk '{printf "%.3f", $1/1000}' ;;
    *ms) echo "$1" | sed 's/ms$//' | awk '{printf "%.3f", $1}' ;;
    *s) echo "$1" | sed 's/s$//' | awk '{printf "%.3f", $1*1000}' ;;
    *) echo "?" ;;
    esac
}

# start_nginx DIR HTTP_BODY: runs Debian's nginx (1 worker, no access log) with its pid, logs
# and temp files under DIR and HTTP_BODY (server/upstream blocks) inside `http { }`. DIR must be
# readable by nginx's workers (www-data). Stop it with `kill "$(cat DIR/nginx.pid)"`.
start_nginx() {
    mkdir -p "$1/nginx"
    cat >"$1/nginx.conf" <<NGINX
worker_processes 1;
pid $1/nginx.pid;
error_log $1/nginx/error.log;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $1/nginx; proxy_temp_path $1/nginx; fastcgi_temp_path $1/nginx;
    uwsgi_temp_path $1/nginx; scgi_temp_path $1/nginx;
$2
}
NGINX
    /usr/sbin/nginx -p "$1/nginx" -c "$1/nginx.conf"
}

# cpu_ticks PID…: user + system clock ticks these processes (all their threads) used so far.
cpu_ticks() {
    _t=0
    for _p in "$@"; do
        _v=$(awk '{print $14 + $15}' "/proc/$_p/stat" 2>/dev/null || echo 0)
        _t=$((_t + _v))
    done
    echo "$_t"
}

# run_post NAME URL PID…: one bounded wrk run of $LUA (bench/gateway/post.lua); prints "NAME RPS P50_MS P99_MS BAD
# CPU_US", BAD being the non-2xx answers plus socket errors (anything but 0 makes the row
# meaningless) and CPU_US the CPU time the processes PID… spent per request (the server that
# answers wrk: the engine for direct, the proxy alone otherwise). Unlike req/s, that number does
# not depend on how the two cores were shared between wrk, the proxy and the engine.
run_post() {
    _name=$1
    _url=$2
    shift 2
    _t0=$(cpu_ticks "$@")
    _out=$(wrk -t"${WRK_THREADS:-1}" -c"${WRK_CONNS:-32}" -d"${WRK_SECS:-5}"s --latency \
        -s "$LUA" "$_url")
    _t1=$(cpu_ticks "$@")
    _n=$(printf '%s\n' "$_out" | awk '/requests in/ {print $1}')
    _rps=$(printf '%s\n' "$_out" | awk '/^Requests\/sec/ {print $2}')
    _p50=$(printf '%s\n' "$_out" | awk '$1=="50%" {print $2}')
    _p99=$(printf '%s\n' "$_out" | awk '$1=="99%" {print $2}')
    _bad=$(printf '%s\n' "$_out" | awk '/Non-2xx/ {n += $NF}
        /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}')
    [ "$_bad" = 0 ] || echo "bench: $_name: $_bad bad answers or socket errors" >&2
    _cpu=$(awk -v t="$((_t1 - _t0))" -v hz="$(getconf CLK_TCK)" -v n="$_n" \
        'BEGIN { printf "%.2f", (n > 0 ? t * 1e6 / hz / n : 0) }')
    echo "$_name $_rps $(to_ms "$_p50") $(to_ms "$_p99") $_bad $_cpu"
}

# best_of NAMES…: reads run_post lines on stdin; prints the best (highest req/s) line of each.
best_of() {
    awk -v names="$*" 'NF==6 { if ($2 > best[$1]) { best[$1]=$2; line[$1]=$0 } }
        END { n=split(names, a, " "); for (i=1; i<=n; i++) print line[a[i]] }'
}

# post_table REF: the Markdown table of best_of lines on stdin, each row against REF's row.
post_table() {
    _lines=$(cat)
    _ref=$1
    echo "| path | req/s | p50 ms | p99 ms | req/s vs $_ref | p99 added ms | bad answers" \
        "| server CPU µs/req |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
    printf '%s\n' "$_lines" | awk -v ref="$_ref" '
        { n++; name[n]=$1; rps[n]=$2; p50[n]=$3; p99[n]=$4; bad[n]=$5; cpu[n]=$6
          if ($1 == ref) { rr = $2; rp = $4 } }
        END { for (i=1; i<=n; i++)
            printf "| %s | %.0f | %.3f | %.3f | %.2f | %+.3f | %d | %.1f |\n",
                name[i], rps[i], p50[i], p99[i], rps[i]/rr, p99[i]-rp, bad[i], cpu[i] }'
}

# wait_ready URL [SECONDS]: polls GET /v1/engines/NAME until its state is ready.
wait_ready() {
    _deadline=$(( $(date +%s) + ${2:-20} ))
    until curl -sf "$1" 2>/dev/null | grep -q '"state":"ready"'; do
        [ "$(date +%s)" -lt "$_deadline" ] || { echo "bench: $1 never became ready" >&2; return 1; }
        sleep 0.05
    done
}

# engine_pid URL: the pid of the engine that GET /v1/engines/NAME describes.
engine_pid() {
    curl -sf "$1" | sed -n 's/.*"pid":\([0-9]*\).*/\1/p'
}

# An awk prelude for tables of bench/gateway/stream.mjs lines (NAME and 7 numbers): it reads
# them, and med(NAME, COL) is the median of column COL over NAME's lines. Use it as
# awk "$AWK_STREAM_MED"' END { … med("arun", 2) … }'.
# shellcheck disable=SC2016 # awk's $1 and $c, not the shell's
AWK_STREAM_MED='
    function med(name, col,   v, n, i, j, t) {
        n = 0; for (i=1; i<=nl; i++) if (nm[i]==name) v[++n] = f[i, col]
        for (i=1; i<=n; i++) for (j=i+1; j<=n; j++) if (v[j] < v[i]) { t=v[i]; v[i]=v[j]; v[j]=t }
        return v[int((n+1)/2)]
    }
    NF==8 { nl++; nm[nl]=$1; for (c=2; c<=8; c++) f[nl, c]=$c }
'

# stream_table REF OTHER: the Markdown table of bench/gateway/stream.mjs lines on stdin (several
# rounds of REF and OTHER): the median of each column per path, OTHER - REF and OTHER / REF.
stream_table() {
    awk -v ref="$1" -v oth="$2" "$AWK_STREAM_MED"'
    END {
        printf "| path | TTFT p50 ms | TTFT p99 ms | inter-token mean ms | inter-token p99 ms"
        print " | streams ok | wall ms |"
        print "|---|---:|---:|---:|---:|---:|---:|"
        for (k=1; k<=2; k++) { n = k == 1 ? ref : oth
            printf "| %s | %.2f | %.2f | %.3f | %.2f | %d | %d |\n",
                n, med(n,2), med(n,3), med(n,4), med(n,5), med(n,6), med(n,8) }
        printf "| %s - %s | %+.2f | %+.2f | %+.3f | %+.2f | | %+d |\n", oth, ref,
            med(oth,2) - med(ref,2), med(oth,3) - med(ref,3),
            med(oth,4) - med(ref,4), med(oth,5) - med(ref,5), med(oth,8) - med(ref,8)
        printf "| %s / %s | %.2f | %.2f | %.3f | %.2f | | |\n", oth, ref,
            med(oth,2) / med(ref,2), med(oth,3) / med(ref,3),
            med(oth,4) / med(ref,4), med(oth,5) / med(ref,5)
    }'
}

# Sets BUILD to the absolute build folder (its argument, relative to $ROOT unless absolute) and
# exits 1 unless the binaries named after it (arun by default) are there.
bench_build() {
    BUILD=$1
    shift
    case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
    [ $# -gt 0 ] || set -- arun
    for bin in "$@"; do
        if [ ! -x "$BUILD/$bin" ]; then
            echo "bench: $BUILD/$bin missing: run make first" >&2
            exit 1
        fi
    done
}
