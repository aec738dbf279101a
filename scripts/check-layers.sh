#!/bin/sh
# scripts/check-layers.sh [ROOT]: the layer check that `make test` runs. Each module includes
# only modules of its own or a lower layer, in the order of the design (docs: design.md, "Source
# layout"):
#
#     core < http < store < tenancy < engines < cluster < gateway < runs
#
# src/DIR/ is layer DIR. Besides the layers:
#   - src/main.c and src/serve.c wire everything together and may include anything;
#   - src/cli/ is a client of the HTTP API: it may include core, http (the SSE parser, the
#     client side of HTTP) and the engine modules in CLI_ALLOWED below, which run no loop and
#     keep no state, so that `arun doctor` asks them instead of restating what they know;
#   - tools/mock-engine/ stands in for an engine and shares only core and http with arun.
# Only `#include "dir/file.h"` is checked; an include without a directory is a file of the same
# folder. A folder of src/ that is not a known layer fails the check, so a new layer is placed in
# the order here on purpose.
#
# Prints each offending FILE:LINE with the include and why, and exits 1; exits 0 when clean.
# `scripts/check-layers.sh --self-test` checks the checker on a small tree of its own.
set -eu

LAYERS="core http store tenancy engines cluster gateway runs"

# What src/cli may include beyond core and http, with why:
#   engines/memory.h     meminfo and NVML readings (doctor's memory check)
#   engines/admission.h  the fit and envelope rule, a pure function (doctor's "would it fit")
#   engines/manifest.h   how an engine's command and image are resolved from the config
#   engines/proc.h       command splitting and process start ticks (pure helpers)
#   engines/record.h     the engine records doctor reads back (adoption state)
#   store/store.h        the database file name and path, so doctor never restates them; and
#                        store_open for `arun keys` when no server runs on the data_dir
#   tenancy/keys.h       `arun keys` on the store itself makes and lists keys with the
#                        server's own module (on a loop of the CLI's), so both paths agree
CLI_ALLOWED="engines/memory.h engines/admission.h engines/manifest.h engines/proc.h
engines/record.h store/store.h tenancy/keys.h"

# Known exceptions, one "FILE INCLUDE" a line, each with the reason it is allowed for now. Empty:
# the tree is clean.
EXCEPTIONS=""

check() {
    _root=$1
    (
        cd "$_root"
        find src tools/mock-engine -type f \( -name '*.c' -o -name '*.h' \) 2>/dev/null | sort |
            xargs awk -v layers="$LAYERS" -v cli_allowed="$CLI_ALLOWED" \
                -v exceptions="$EXCEPTIONS" '
            BEGIN {
                n = split(layers, L, " ")
                for (i = 1; i <= n; i++) rank[L[i]] = i
                m = split(cli_allowed, A, /[ \n]+/)
                for (i = 1; i <= m; i++) if (A[i] != "") allowed[A[i]] = 1
                k = split(exceptions, E, "\n")
                for (i = 1; i <= k; i++) if (E[i] != "") excepted[E[i]] = 1
                bad = 0
            }
            FNR == 1 {
                # The layer of this file: a folder of src/, "wiring", "cli" or "mock".
                split(FILENAME, p, "/")
                if (p[1] == "tools") who = "mock"
                else if (p[3] == "") who = "wiring"
                else who = p[2]
                if (who != "wiring" && who != "cli" && who != "mock" && !(who in rank)) {
                    printf "%s:1: src/%s/ is not a layer of the design (%s); add it to " \
                        "LAYERS in scripts/check-layers.sh in its place\n", FILENAME, who, layers
                    bad = 1
                }
            }
            /^[ \t]*#[ \t]*include[ \t]*"/ {
                inc = $0
                sub(/^[^"]*"/, "", inc)
                sub(/".*$/, "", inc)
                if (index(inc, "/") == 0 || who == "wiring") next
                top = inc
                sub(/\/.*$/, "", top)
                if ((FILENAME " " inc) in excepted) next
                why = ""
                if (who == "mock") {
                    if (top != "core" && top != "http")
                        why = "tools/mock-engine may include only core and http"
                } else if (who == "cli") {
                    if (top != "core" && top != "http" && top != "cli" && !(inc in allowed))
                        why = "src/cli may include core, http and CLI_ALLOWED only"
                } else if (!(top in rank)) {
                    why = top " is not a layer below " who
                } else if (rank[top] > rank[who]) {
                    why = who " may not include " top ", a higher layer (" layers ")"
                }
                if (why != "") {
                    printf "%s:%d: #include \"%s\": %s\n", FILENAME, FNR, inc, why
                    bad = 1
                }
            }
            END { exit bad }'
    )
}

self_test() {
    _t=$(mktemp -d)
    trap 'rm -rf "$_t"' EXIT
    mkdir -p "$_t/src/core" "$_t/src/http" "$_t/src/engines" "$_t/src/cli" \
        "$_t/tools/mock-engine"
    printf '#include "core/log.h"\n#include "local.h"\n' >"$_t/src/http/ok.c"
    printf '#include "engines/memory.h"\n#include "http/sse_parser.h"\n' >"$_t/src/cli/ok.c"
    printf '#include "core/buf.h"\n#include "http/server.h"\n' >"$_t/tools/mock-engine/ok.c"
    printf '#include "engines/supervisor.h"\n' >"$_t/src/main.c"
    check "$_t" >/dev/null || { echo "check-layers self-test: a clean tree failed" >&2; exit 1; }
    printf '/* x */\n#include "core/buf.h"\n#include "gateway/gateway.h"\n' >"$_t/src/engines/bad.c"
    printf '#include "engines/supervisor.h"\n' >"$_t/src/cli/bad.c"
    printf '#include "store/store.h"\n' >"$_t/tools/mock-engine/bad.c"
    printf '#include "http/server.h"\n' >"$_t/src/core/bad.h"
    if _out=$(check "$_t"); then
        echo "check-layers self-test: a tree with four bad includes passed" >&2
        exit 1
    fi
    for _want in 'src/engines/bad.c:3: #include "gateway/gateway.h"' \
        'src/cli/bad.c:1: #include "engines/supervisor.h"' \
        'tools/mock-engine/bad.c:1: #include "store/store.h"' \
        'src/core/bad.h:1: #include "http/server.h"'; do
        case $_out in
        *"$_want"*) ;;
        *)
            printf 'check-layers self-test: expected "%s" in:\n%s\n' "$_want" "$_out" >&2
            exit 1
            ;;
        esac
    done
    [ "$(printf '%s\n' "$_out" | wc -l)" -eq 4 ] ||
        { printf 'check-layers self-test: expected 4 lines:\n%s\n' "$_out" >&2; exit 1; }
}

if [ "${1:-}" = "--self-test" ]; then
    self_test
    echo "check-layers: self-test passed"
    exit 0
fi
ROOT=${1:-$(cd "$(dirname "$0")/.." && pwd)}
if ! check "$ROOT"; then
    echo "check-layers: includes that break the layer order above (see scripts/check-layers.sh)" >&2
    exit 1
fi
echo "check-layers: every include respects the layers ($LAYERS)"
