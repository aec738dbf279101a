# The two set-up commands (README.md): `make run` and `make test`. Everything else is a helper.
PREFIX ?= /usr/local
BUILD ?= build
ASAN_BUILD ?= build-asan
JOBS ?= $(shell nproc)
E2E := tests/e2e
BROWSER := tests/browser

# The sanitizer run: leaks fail the run, UBSan stops at the first report.
export ASAN_OPTIONS ?= detect_leaks=1:abort_on_error=0:halt_on_error=1:strict_string_checks=1
export UBSAN_OPTIONS ?= halt_on_error=1:print_stacktrace=1
export LSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0

.PHONY: all deps build run test layers unit e2e e2e-pg browser screenshots llama-server bench install clean \
	format fuzz

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@scripts/run-demo.sh $(BUILD)

$(ASAN_BUILD)/build.ninja $(ASAN_BUILD)/Makefile:
	@CC=clang cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DARUN_SANITIZE=ON \
	  -DARUN_FUZZ=ON >/dev/null

asan: deps $(ASAN_BUILD)/Makefile
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

unit: asan
	@cd $(ASAN_BUILD) && ctest --output-on-failure -j $(JOBS)

$(E2E)/node_modules/.package-lock.json: $(E2E)/package-lock.json
	@cd $(E2E) && npm ci --no-audit --no-fund --loglevel=error

$(BROWSER)/node_modules/.package-lock.json: $(BROWSER)/package-lock.json
	@cd $(BROWSER) && npm ci --no-audit --no-fund --loglevel=error

# llama.cpp's llama-server, a real engine beside the mock: built once per machine into a cache
# outside the tree (about 4.5 min on 2 cores, then instant); the script prints its path.
llama-server: deps
	@scripts/llama-server.sh >/dev/null

e2e: asan llama-server $(E2E)/node_modules/.package-lock.json
	@LLAMA_SERVER_BIN=$$(scripts/llama-server.sh) ARUN_BIN=$(CURDIR)/$(ASAN_BUILD)/arun \
	  MOCK_BIN=$(CURDIR)/$(ASAN_BUILD)/arun-mock-engine node --test --test-concurrency=2 $(E2E)/

# The durable runs and tenancy again on PostgreSQL (ARUN_TEST_STORE=postgres: each file starts a
# throwaway cluster with scripts/pgtmp.sh and every arun gets a database of its own,
# tests/e2e/lib/pg.mjs), then the tests only a shared store has: several nodes on one database,
# and a PostgreSQL outage under load (they skip themselves in the SQLite pass).
E2E_PG := responses responses-api responses-crash responses-recovery responses-retention \
	responses-sdk conversations isolation keys limits audit secrets multinode pg-outage
e2e-pg: asan $(E2E)/node_modules/.package-lock.json
	@ARUN_TEST_STORE=postgres ARUN_BIN=$(CURDIR)/$(ASAN_BUILD)/arun \
	  MOCK_BIN=$(CURDIR)/$(ASAN_BUILD)/arun-mock-engine node --test --test-concurrency=2 \
	  $(E2E_PG:%=$(E2E)/%.test.mjs)

# The console in Debian's chromium (headless, driven by playwright-core), against the ASan build;
# screenshots of each view land in build/console-screens/.
browser: asan $(BROWSER)/node_modules/.package-lock.json
	@ARUN_BIN=$(CURDIR)/$(ASAN_BUILD)/arun MOCK_BIN=$(CURDIR)/$(ASAN_BUILD)/arun-mock-engine \
	  node --test --test-concurrency=2 $(BROWSER)/

# docs/console/*.png, the screenshots docs/console.md shows, from the release build at 1280x800
# (and one at 390x844). Regenerate them when the page changes; never edit them by hand.
screenshots: build $(BROWSER)/node_modules/.package-lock.json
	@ARUN_BIN=$(CURDIR)/$(BUILD)/arun MOCK_BIN=$(CURDIR)/$(BUILD)/arun-mock-engine \
	  node $(BROWSER)/screenshots.mjs docs/console

# The layer order of the design (scripts/check-layers.sh), checked first: it takes a moment.
layers:
	@scripts/check-layers.sh --self-test
	@scripts/check-layers.sh

# build too: `make run`'s release build (gcc, -Werror, other warnings than clang's) must compile.
test: layers build unit e2e e2e-pg browser

# The fuzz targets for longer than make test does (FUZZ_SECONDS each), in the sanitizer build.
FUZZ_SECONDS ?= 60
fuzz: deps $(ASAN_BUILD)/Makefile
	@cmake -S . -B $(ASAN_BUILD) -DARUN_FUZZ=ON >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)
	@for t in $(ASAN_BUILD)/fuzz_*; do \
	  m=$${t##*/fuzz_}; $$t -max_total_time=$(FUZZ_SECONDS) -max_len=512 \
	    $(ASAN_BUILD)/fuzz-corpus/$$m tests/fuzz/corpus/$$m || exit 1; done

bench: build
	@bench/http.sh $(BUILD)

install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BUILD)/arun $(BUILD)/arun-mock-engine $(DESTDIR)$(PREFIX)/bin/

format:
	@clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
