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
