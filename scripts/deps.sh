#!/bin/sh
# Installs the Debian packages arun needs to build, run and test. A quiet no-op when every one is
# already present, so `make run` and `make test` can call it each time. Needs root (or sudo) only
# when something is missing.
set -eu

PKGS="build-essential cmake pkg-config clang libclang-rt-14-dev
libuv1-dev libh2o-dev libssl-dev zlib1g-dev libcurl4-openssl-dev libjansson-dev libyaml-dev
libsqlite3-dev libpq-dev postgresql libcmocka-dev sqlite3 curl wrk nginx-light procps openssl
podman runc busybox-static uidmap git python3 chromium"

# postgresql: the throwaway clusters of the multi-node tests (initdb, pg_ctl; its service is
# never used).
# chromium: Debian's, for the console's browser tests (tests/browser/, driven by playwright-core;
# no browser is ever downloaded).
# Node: Debian's nodejs is enough; a newer one already installed (nodesource) is kept.
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"

missing=""
for p in $PKGS; do
    st=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
    [ "$st" = "installed" ] || missing="$missing $p"
done
[ -z "$missing" ] && exit 0

echo "deps: installing:$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
