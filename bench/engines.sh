#!/bin/sh
# bench/engines.sh [BUILD_DIR]: how long arun takes to bring an engine up, next to doing the same
# by hand in the same run. The engine is arun-mock-engine with --load-ms 0, so what is measured
# is arun's own share: spawning, probing, state changes, the event.
#   native      POST /v1/engines/NAME/start until its `ready` event on GET /v1/events,
#               vs the same binary started by hand and GET /health polled every 5 ms until 200
#   container   the same with a podman engine (image from scripts/mock-image.sh), vs
#               `podman run -d -p 127.0.0.1:P:P …` and the same polling (skipped without podman)
#   swap        two engines in one exclusive group, one ready: POST start of the other until it is
#               ready (arun stops the first, then starts the second), vs SIGTERM + wait + spawn +
#               poll by hand
# Each is run RUNS times (10), interleaved; prints a Markdown table (median and p90 in ms, and
# arun / direct) to paste into bench/README.md. Everything is on 127.0.0.1; every wait is bounded.
set -eu
BUILD=${1:-build}
RUNS=${RUNS:-10}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
. "$ROOT/bench/lib.sh"
cd "$ROOT"
bench_build "$BUILD" arun arun-mock-engine
TMP=$(mktemp -d)
PIDS=""
IMAGE=localhost/arun-bench-mock:latest
PODMAN=""
if command -v podman >/dev/null 2>&1; then PODMAN=podman; fi
export CONTAINERS_CONF="$ROOT/tests/containers.conf"
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    sleep 0.3
    if [ -n "$PODMAN" ]; then
        $PODMAN rm -f arun-bench-direct arun-bc >/dev/null 2>&1 || true
    fi
    rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

MOCK="$BUILD/arun-mock-engine"
A_PORT=$(free_port)
P_DIRECT=$(free_port)
P_CDIRECT=$(free_port)
P_C=$(free_port)

CONTAINER_ENGINE=""
if [ -n "$PODMAN" ]; then
    if scripts/mock-image.sh "$IMAGE" "$BUILD" >"$TMP/image.log" 2>&1; then
        CONTAINER_ENGINE=yes
    else
        echo "bench: scripts/mock-image.sh failed; skipping the container rows:" >&2
        cat "$TMP/image.log" >&2
    fi
fi

# The mock prints its listening line and every request quietly; --load-ms 0: ready at once.
cat >"$TMP/arun.yaml" <<EOF
data_dir: $TMP/data
log_level: warn
node: {ram_mb: 100000, vram_mb: 0, reserve_mb: 0}
runtime: {container_cli: podman}
engines:
  bn:
    cmd: "$MOCK --port \${PORT} --load-ms 0"
    start: manual
    restart: {policy: never}
  sa:
    cmd: "$MOCK --port \${PORT} --load-ms 0"
    start: manual
    group: bench
    min_resident_s: 0
    restart: {policy: never}
  sb:
    cmd: "$MOCK --port \${PORT} --load-ms 0"
    start: manual
    group: bench
    min_resident_s: 0
    restart: {policy: never}
EOF
if [ -n "$CONTAINER_ENGINE" ]; then
    cat >>"$TMP/arun.yaml" <<EOF
  bc:
    image: $IMAGE
    args: [/arun-mock-engine, --host, 0.0.0.0, --port, "\${PORT}", --load-ms, "0"]
    port: $P_C
    start: manual
    restart: {policy: never}
EOF
fi
"$BUILD/arun" config check "$TMP/arun.yaml" >"$TMP/check.log" 2>&1 || {
    cat "$TMP/check.log" >&2
    exit 1
}
"$BUILD/arun" serve --config "$TMP/arun.yaml" --listen "127.0.0.1:$A_PORT" 2>"$TMP/arun.log" &
PIDS="$PIDS $!"
wait_http "http://127.0.0.1:$A_PORT/readyz"

# The timing loop: one Python process follows /v1/events for the whole run, so the time of a
# `ready` is when arun published it, not when a poll happened to ask.
cat >"$TMP/bench.py" <<'PY'
import http.client, json, os, signal, socket, subprocess, sys, threading, time, queue

arun_port, mock, runs = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
p_direct, p_cdirect, image, podman = int(sys.argv[4]), int(sys.argv[5]), sys.argv[6], sys.argv[7]
events = queue.Queue()

def follow():
    s = socket.create_connection(("127.0.0.1", arun_port))
    s.sendall(b"GET /v1/events HTTP/1.0\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
    f = s.makefile("rb")
    while True:
        line = f.readline()
        if not line:
            return
        if line.startswith(b"data: {"):
            try:
                j = json.loads(line[6:])
            except ValueError:
                continue  # a chunk-size line split a data line: not an engine.state we wait on
            if j.get("type") == "engine.state":
                events.put((time.monotonic(), j["data"]))

threading.Thread(target=follow, daemon=True).start()
time.sleep(0.2)

def post(path):
    c = http.client.HTTPConnection("127.0.0.1", arun_port, timeout=10)
    c.request("POST", path, body=b"")
    r = c.getresponse(); r.read(); c.close()
    if r.status >= 300:
        raise SystemExit("bench: POST %s answered %d" % (path, r.status))

def wait_state(name, state, limit=60):
    deadline = time.monotonic() + limit
    while True:
        t, d = events.get(timeout=max(0.01, deadline - time.monotonic()))
        if d["engine"] == name and d["state"] == state:
            return t
        if d["engine"] == name and d["state"] == "failed":
            raise SystemExit("bench: %s failed: %s" % (name, d["reason"]))

def drain():
    while not events.empty():
        events.get_nowait()

def arun_start(name):
    drain()
    t0 = time.monotonic()
    post("/v1/engines/%s/start" % name)
    return (wait_state(name, "ready") - t0) * 1000

def arun_stop(name):
    drain()
    post("/v1/engines/%s/stop" % name)
    wait_state(name, "stopped")

def poll_health(port, limit=30):
    # The direct path: GET /health every 5 ms until 200, as a careful script would.
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
            c.request("GET", "/health")
            r = c.getresponse(); r.read(); c.close()
            if r.status == 200:
                return time.monotonic()
        except OSError:
            pass
        time.sleep(0.005)
    raise SystemExit("bench: nothing answered on port %d" % port)

def direct_native():
    t0 = time.monotonic()
    p = subprocess.Popen([mock, "--port", str(p_direct), "--load-ms", "0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ms = (poll_health(p_direct) - t0) * 1000
    return ms, p

def stop_proc(p):
    p.send_signal(signal.SIGTERM)
    p.wait(timeout=10)

def direct_container():
    t0 = time.monotonic()
    subprocess.run([podman, "run", "-d", "--name", "arun-bench-direct",
                    "-p", "127.0.0.1:%d:%d" % (p_cdirect, p_cdirect), image,
                    "/arun-mock-engine", "--host", "0.0.0.0", "--port", str(p_cdirect),
                    "--load-ms", "0"], check=True, stdout=subprocess.DEVNULL)
    ms = (poll_health(p_cdirect) - t0) * 1000
    subprocess.run([podman, "rm", "-f", "arun-bench-direct"], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return ms

res = {k: [] for k in ("arun-native", "direct-native", "arun-container", "direct-container",
                       "arun-swap", "direct-swap")}
for i in range(runs):
    res["arun-native"].append(arun_start("bn"))
    arun_stop("bn")
    ms, p = direct_native()
    res["direct-native"].append(ms)
    stop_proc(p)
    if image != "-":
        res["arun-container"].append(arun_start("bc"))
        arun_stop("bc")
        res["direct-container"].append(direct_container())

# Swap: sa ready, then ask for sb (arun stops sa first), then for sa, alternating.
arun_start("sa")
cur, other = "sa", "sb"
for i in range(runs):
    res["arun-swap"].append(arun_start(other))
    cur, other = other, cur
arun_stop(cur)
# By hand: one engine runs; SIGTERM it, wait for its exit, start the other, poll until 200.
_, p = direct_native()
for i in range(runs):
    t0 = time.monotonic()
    stop_proc(p)
    p = subprocess.Popen([mock, "--port", str(p_direct), "--load-ms", "0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    res["direct-swap"].append((poll_health(p_direct) - t0) * 1000)
stop_proc(p)

def q(v, f):
    s = sorted(v)
    return s[min(len(s) - 1, int(round(f * (len(s) - 1))))]

for k, v in res.items():
    if v:
        print(k, "%.1f" % q(v, 0.5), "%.1f" % q(v, 0.9), " ".join("%.0f" % x for x in v))
PY

python3 "$TMP/bench.py" "$A_PORT" "$MOCK" "$RUNS" "$P_DIRECT" "$P_CDIRECT" \
    "$([ -n "$CONTAINER_ENGINE" ] && echo "$IMAGE" || echo -)" "${PODMAN:-podman}" >"$TMP/res.txt"

echo "| what | arun median ms | arun p90 ms | by hand median ms | by hand p90 ms | arun / by hand (median) |"
echo "|---|---:|---:|---:|---:|---:|"
row() {
    awk -v a="arun-$1" -v d="direct-$1" -v label="$2" '
        $1 == a { am = $2; ap = $3 } $1 == d { dm = $2; dp = $3 }
        END { if (am != "") printf "| %s | %s | %s | %s | %s | %.1f |\n", label, am, ap, dm, dp, am / dm }' "$TMP/res.txt"
}
row native "native start to ready"
if [ -n "$CONTAINER_ENGINE" ]; then
    row container "podman start to ready"
else
    echo "| podman start to ready | skipped: no podman | | | | |"
fi
row swap "swap in an exclusive group"
echo
echo "$RUNS runs each, interleaved; mock engine with --load-ms 0; by hand = spawn (or podman run -d)" \
    "and GET /health every 5 ms; $(nproc) cores, $(date -u +%Y-%m-%d)"
echo
echo "Raw (ms, in run order):"
echo
sed 's/^/    /' "$TMP/res.txt"
