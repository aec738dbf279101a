#!/bin/sh
# scripts/mock-image.sh IMAGE BUILD_DIR: makes a container image holding arun-mock-engine from
# BUILD_DIR, for tests that run an engine as a container without a registry or the network.
#
# The image is a root filesystem built here: busybox (static) for /bin/sh and friends, the mock
# binary at /arun-mock-engine, and every shared library `ldd` lists for it at the same path
# (the dynamic loader included), so the binary runs as it does on the host. It has no
# entrypoint: the command is given at run time (IMAGE /arun-mock-engine --host 0.0.0.0 ...).
# `podman import` makes it IMAGE, labelled arun.mock.sha256 with a hash of everything in it;
# when IMAGE already carries that hash nothing is rebuilt (a second run takes ~0.1 s).
# The CLI is podman, or $ARUN_CONTAINER_CLI (docker works the same way).
set -eu

usage() {
    echo "usage: $0 IMAGE BUILD_DIR" >&2
    exit 2
}
[ $# -eq 2 ] || usage
IMAGE=$1
BUILD_DIR=$2
CLI=${ARUN_CONTAINER_CLI:-podman}
BIN=$BUILD_DIR/arun-mock-engine
[ -x "$BIN" ] || { echo "$0: $BIN not found or not executable: build it first" >&2; exit 1; }
BUSYBOX=$(command -v busybox || true)
[ -n "$BUSYBOX" ] || { echo "$0: busybox not found: apt-get install busybox-static" >&2; exit 1; }

# The shared libraries a binary needs, as absolute paths (the loader's line has no "=>").
libs_of() {
    ldd "$1" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
}

FILES="$BIN $BUSYBOX $(libs_of "$BIN") $(libs_of "$BUSYBOX")"
# The hash covers what goes into the image and this script (how it is put together). FILES is
# split on purpose: library paths have no spaces.
# shellcheck disable=SC2086
HASH=$(cat $FILES "$0" | sha256sum | cut -c1-64)
HAVE=$("$CLI" image inspect --format '{{index .Labels "arun.mock.sha256"}}' "$IMAGE" \
    2>/dev/null || true)
if [ "$HAVE" = "$HASH" ]; then
    echo "$IMAGE is up to date ($HASH)"
    exit 0
fi
OLD_ID=$("$CLI" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)

TMP=$(mktemp -d "${TMPDIR:-/tmp}/arun-mock-image.XXXXXX")
trap 'rm -rf "$TMP"' EXIT INT TERM
ROOT=$TMP/root
mkdir -p "$ROOT/bin" "$ROOT/tmp" "$ROOT/proc" "$ROOT/sys" "$ROOT/dev" "$ROOT/etc"
chmod 1777 "$ROOT/tmp"
cp -L "$BUSYBOX" "$ROOT/bin/busybox"
for applet in $("$BUSYBOX" --list); do
    [ -e "$ROOT/bin/$applet" ] || ln -s busybox "$ROOT/bin/$applet"
done
cp -L "$BIN" "$ROOT/arun-mock-engine"
for lib in $(libs_of "$BIN") $(libs_of "$BUSYBOX"); do
    mkdir -p "$ROOT$(dirname "$lib")"
    cp -L "$lib" "$ROOT$lib"
done
echo "root:x:0:0:root:/:/bin/sh" > "$ROOT/etc/passwd"
echo "root:x:0:" > "$ROOT/etc/group"
tar -C "$ROOT" -cf "$TMP/rootfs.tar" .
"$CLI" import --change "LABEL=arun.mock.sha256=$HASH" "$TMP/rootfs.tar" "$IMAGE" >/dev/null
# The previous build of IMAGE is now untagged: remove it unless a container still uses it.
NEW_ID=$("$CLI" image inspect --format '{{.Id}}' "$IMAGE")
if [ -n "$OLD_ID" ] && [ "$OLD_ID" != "$NEW_ID" ]; then
    "$CLI" rmi "$OLD_ID" >/dev/null 2>&1 || true
fi
echo "$IMAGE built ($HASH)"
