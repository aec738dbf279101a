#!/bin/sh
# Builds llama.cpp's llama-server once per machine and prints the path of the binary.
#
# The source is the llama.cpp that the npm package node-llama-cpp ships as a git bundle
# (node_modules/node-llama-cpp/llama/gitRelease.bundle); tests/llama/package.json pins the
# package and tests/llama/package-lock.json the exact tarball, so no network is needed beyond the
# npm registry (or npm's cache). The binary lands in a cache outside the work tree, keyed by the
# llama.cpp commit and a hash of everything that changes the machine code:
#
#   ${XDG_CACHE_HOME:-$HOME/.cache}/arun/llama-server-<commit>-<flags hash>/llama-server
#
# so every clone and worktree on a machine shares one build. A run that finds it prints the path
# at once (no npm, no git). A build runs in a temporary directory next to the cache entry and is
# renamed into place only when the binary answers --version: an interrupted build leaves no half
# entry, and its leftovers are removed by the next run. Two runs at once wait on one lock per key.
#
# Output: the binary's path on stdout, progress on stderr. Exit status 1 with a sentence on failure.
# Environment: JOBS (parallel compile jobs, default nproc), CC/CXX/CFLAGS/CXXFLAGS (part of the key).
# The first build takes 4.5 minutes on 2 idle cores (7 beside other work); the binary (~15 MB)
# needs only libgomp and libstdc++.
set -eu

# The llama.cpp commit in node-llama-cpp@3.21.1's bundle. It is written here too so that the cache
# path is known without installing the package; the build checks that the bundle agrees.
LLAMA_COMMIT=80fb11ac73e66d89eae2c6a91d8a77428fa733ed

# Only the server, no network at build time: the web UI is neither downloaded (PREBUILT_UI) nor
# built, no TLS, no tests or examples, and a static libllama so the binary moves as one file.
# GGML_NATIVE stays at its default (on): the cache is per machine, and the CPU flags are in the key.
CMAKE_FLAGS="-DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_OPENSSL=OFF
-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF -DCMAKE_BUILD_TYPE=Release"

root=$(cd "$(dirname "$0")/.." && pwd)
pkg="$root/tests/llama"
bundle="$pkg/node_modules/node-llama-cpp/llama/gitRelease.bundle"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/arun"
cc="${CC:-cc}"
cxx="${CXX:-c++}"

die() {
    echo "llama-server.sh: $*" >&2
    exit 1
}

# Everything that changes the binary besides the source: flags, compilers, CPU features.
flags_hash() {
    {
        echo "$CMAKE_FLAGS"
        echo "CFLAGS=${CFLAGS:-} CXXFLAGS=${CXXFLAGS:-}"
        "$cc" --version 2>/dev/null | head -n 1
        "$cxx" --version 2>/dev/null | head -n 1
        uname -m
        grep -m 1 '^flags' /proc/cpuinfo 2>/dev/null || true
    } | sha256sum | cut -c 1-12
}

key="llama-server-$(echo "$LLAMA_COMMIT" | cut -c 1-7)-$(flags_hash)"
entry="$cache/$key"
bin="$entry/llama-server"

if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.$key.lock"
flock 9
# Another run may have finished the build while this one waited for the lock.
if [ -x "$bin" ]; then
    echo "$bin"
    exit 0
fi
# Holding the lock, any temporary directory of this key is a dead run's leftover.
rm -rf "$cache/.$key.tmp-"*

command -v npm >/dev/null 2>&1 || die "npm not found (scripts/deps.sh installs it)"
command -v git >/dev/null 2>&1 || die "git not found (scripts/deps.sh installs it)"
command -v cmake >/dev/null 2>&1 || die "cmake not found (scripts/deps.sh installs it)"

bundle_head() {
    [ -f "$bundle" ] && git bundle list-heads "$bundle" | awk '$2 == "HEAD" { print $1 }'
}

# The package's install script only test-loads a prebuilt Node addon we never use: skip it.
# --omit=optional keeps npm from fetching the CUDA, Vulkan and ARM builds (~730 MB).
if [ "$(bundle_head || true)" != "$LLAMA_COMMIT" ]; then
    echo "llama-server.sh: npm ci in tests/llama (node-llama-cpp, the llama.cpp source)" >&2
    (cd "$pkg" && npm ci --omit=optional --ignore-scripts --no-audit --no-fund --loglevel=error) >&2 \
        || die "npm ci failed in $pkg"
fi
[ -f "$bundle" ] || die "the llama.cpp bundle is missing: $bundle"
head=$(bundle_head)
[ "$head" = "$LLAMA_COMMIT" ] ||
    die "$bundle holds llama.cpp $head, but LLAMA_COMMIT in $0 is $LLAMA_COMMIT: update one of them"

tmp=$(mktemp -d "$cache/.$key.tmp-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM HUP
log="$cache/.$key.log" # kept after a failure, for reading
jobs="${JOBS:-$(nproc)}"
echo "llama-server.sh: building llama.cpp $(echo "$LLAMA_COMMIT" | cut -c 1-7) into $entry" \
    "(4.5 to 7 min on 2 cores; log in $log)" >&2
start=$(date +%s)
# shellcheck disable=SC2086 # CMAKE_FLAGS is split into its words on purpose
build() {
    git clone -q --no-checkout "$bundle" "$tmp/src" &&
        git -C "$tmp/src" -c advice.detachedHead=false checkout -q "$LLAMA_COMMIT" &&
        CC="$cc" CXX="$cxx" cmake -S "$tmp/src" -B "$tmp/build" $CMAKE_FLAGS &&
        cmake --build "$tmp/build" -j "$jobs" --target llama-server
}
if ! build >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    die "building llama-server failed (the lines above end its log, $log)"
fi
"$tmp/build/bin/llama-server" --version >"$log" 2>&1 ||
    die "the built llama-server does not run: $(tail -n 3 "$log")"

mkdir "$tmp/entry"
cp "$tmp/build/bin/llama-server" "$tmp/entry/llama-server"
# rename(2) of a directory: the entry appears whole or not at all.
mv -T "$tmp/entry" "$entry"
rm -f "$log"
echo "llama-server.sh: built in $(($(date +%s) - start)) s" >&2
echo "$bin"
