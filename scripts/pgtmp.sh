#!/bin/sh
# A throwaway PostgreSQL cluster for tests and benchmarks: Debian's postgresql binaries, run as
# a user that is not root (initdb and pg_ctl refuse root: `nobody` then), listening on
# 127.0.0.1 and on a socket in its own directory. Nothing outside DIR is touched.
#
#   scripts/pgtmp.sh start DIR [PORT]   # prints the URL: postgresql://arun@127.0.0.1:PORT/arun
#   scripts/pgtmp.sh stop DIR           # stops it (fast) and removes DIR
#   scripts/pgtmp.sh kill DIR           # stops it at once (immediate: like a crash), keeps DIR
#   scripts/pgtmp.sh restart DIR        # starts a stopped cluster again on its port
#   scripts/pgtmp.sh createdb DIR NAME  # another database on it, for one test's arun
#
# PORT 0 or absent picks a free one. The role `arun` owns database `arun`; trust auth on
# loopback only (this is a test cluster).
set -eu

BIN=${PG_BIN:-$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)}
[ -x "$BIN/initdb" ] || { echo "pgtmp: no PostgreSQL server binaries (apt-get install postgresql)" >&2; exit 1; }

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { sed -n 2,14p "$0" >&2; exit 2; }

as_owner() {
    if [ "$(id -u)" -eq 0 ]; then runuser -u nobody -- "$@"; else "$@"; fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

case "$cmd" in
start)
    port=${3:-0}
    [ "$port" != 0 ] || port=$(free_port)
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [ "$(id -u)" -ne 0 ] || chown nobody "$dir"
    chmod 700 "$dir"
    as_owner "$BIN/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; exit 1; }
    cat >>"$dir/data/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$dir'
max_connections = 200
shared_buffers = 64MB
fsync = on
synchronous_commit = on
log_min_messages = warning
CONF
    echo "$port" >"$dir/port"
    as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
    as_owner "$BIN/psql" -h "$dir" -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
        -c "CREATE ROLE arun LOGIN" -c "CREATE DATABASE arun OWNER arun" >/dev/null
    echo "postgresql://arun@127.0.0.1:$port/arun"
    ;;
createdb)
    name=${3:?createdb DIR NAME}
    port=$(cat "$dir/port")
    as_owner "$BIN/psql" -h "$dir" -p "$port" -U postgres -d postgres -q -v ON_ERROR_STOP=1 \
        -c "CREATE DATABASE \"$name\" OWNER arun" >/dev/null
    echo "postgresql://arun@127.0.0.1:$port/$name"
    ;;
stop)
    [ -d "$dir/data" ] && as_owner "$BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
kill)
    as_owner "$BIN/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null
    ;;
restart)
    as_owner "$BIN/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 start >/dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
    ;;
*)
    sed -n 2,14p "$0" >&2; exit 2
    ;;
esac
