#!/bin/sh
# `make run`: starts arun in the foreground with the demo configuration (examples/arun.yaml: one
# arun-mock-engine), or with ./arun.yaml when you have written one. Ctrl-C stops it cleanly.
set -eu
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
CONFIG=${ARUN_CONFIG:-}
[ -n "$CONFIG" ] || { [ -f arun.yaml ] && CONFIG=arun.yaml; } || CONFIG=examples/arun.yaml
# The demo engine's cmd names arun-mock-engine; find it (and arun) in the build tree.
PATH="$ROOT/$BUILD:$PATH"
export PATH
LISTEN=$("$BUILD/arun" config check "$CONFIG" 2>/dev/null | sed -n 's/^  "listen": "\(.*\)",*$/\1/p')
LISTEN=${LISTEN:-127.0.0.1:8080}
cat <<MSG
arun: starting with $CONFIG; the API is at http://$LISTEN
try, in another terminal:
  curl -s http://$LISTEN/v1/chat/completions -d '{"model":"demo","messages":[{"role":"user","content":"hi"}]}'
  curl -s http://$LISTEN/v1/engines
  curl -s http://$LISTEN/healthz
  curl -s http://$LISTEN/metrics | head
  curl -sN http://$LISTEN/v1/events
stop with Ctrl-C.
MSG
exec "$BUILD/arun" serve --config "$CONFIG"
