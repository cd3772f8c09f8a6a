# Magpie: a multithreaded cache server speaking the memcached text protocol.
#
#   make            build build/magpie (installs missing Debian build packages first)
#   make run        start it in the foreground on 127.0.0.1:11211
#   make test       format check; unit (Check), fuzz and integration tests; then again under
#                   AddressSanitizer+UBSan and ThreadSanitizer (make check: the plain pass only)
#   make asan/tsan  one sanitizer pass
#   make bench      bench/compare against memcached; make bench-memory: bench/memory, bench/hitratio;
#                   make bench-warm: bench/warm (restarts with -e), bench/warmfrom (--warm-from)
#   make format     clang-format the sources; make format-check fails on a difference

SHELL   := /bin/bash
BUILD   ?= build
CC      ?= cc
SANITIZE ?=
WERROR  := $(if $(CI),-Werror,)
OPT     ?= -O2 -g
# CFLAGS and LDFLAGS from the command line add to these rather than replace them.
ALL_CFLAGS = $(OPT) -std=gnu11 -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter $(WERROR) \
             -pthread -Iinclude -MMD -MP $(SANITIZE) $(CFLAGS)
ALL_LDFLAGS = -pthread $(SANITIZE) $(LDFLAGS)
PKG_CFLAGS = $(shell pkg-config --cflags libuv libxxhash libssl libcrypto 2>/dev/null)
LIBS    = $(shell pkg-config --libs libuv libssl libcrypto 2>/dev/null)
CHECK_LIBS = $(shell pkg-config --libs check 2>/dev/null)
PYTHON  := /usr/bin/python3

BUILD_PKGS := gcc make pkg-config libuv1-dev libxxhash-dev libssl-dev clang-format
# The clients and tools the tests compare with memcached (test_clients.py, test_tools.py): pylibmc,
# Dalli, php-memcached, Cache::Memcached::Fast, memcached-tool (in memcached), memcdump (in
# libmemcached-tools), and memjs from npm (NPM_TEST, under build/npm; npm itself comes with nodejs, or
# Debian's npm package); twemproxy (nutcracker) as a proxy in front of a pool (test_proxy.py).
# openssl: the tests make their certificates with its command line tool, and test a renegotiation with it.
TEST_PKGS  := check memcached libmemcached-tools openssl python3 python3-pymemcache python3-pylibmc ruby ruby-dalli \
              php-cli php-memcached libcache-memcached-fast-perl nutcracker nodejs prometheus \
              $(if $(shell command -v npm),,npm)
NPM_TEST   := memjs@1.3.2
FUZZ_PKGS  := clang libclang-rt-14-dev

# Install the Debian packages in $(1) that are missing, saying so; sudo when not root.
define ensure_pkgs
	@missing=""; for p in $(1); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "magpie: installing Debian packages:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi
endef

MODULES := log clock config num item grace slab chain table ghost lru cache snapshot warm proto bproto meta latency hotkeys \
           stats watch dump out exec admin auth tls text binary prom metrics conn listen worker server health
SRC_OBJS := $(MODULES:%=$(BUILD)/obj/%.o)

# Each unit test links only its module and what that module needs.
UNIT_TESTS := num proto bproto clock slab table ghost cache lru stats dump latency hotkeys prom metrics snapshot warm auth tls worker
deps_num   := num
deps_proto := proto num
deps_bproto := bproto
deps_clock := clock
deps_slab  := slab item grace
deps_table := table slab item grace
deps_ghost := ghost
deps_cache := cache lru ghost table chain slab item grace num clock
deps_lru   := lru ghost cache table chain slab item grace num clock
deps_stats := stats hotkeys proto cache lru ghost table chain slab item grace num clock config log
deps_dump  := dump watch cache lru ghost table chain slab item grace num clock
deps_latency := latency
deps_hotkeys := hotkeys
deps_prom  := prom proto num latency
deps_metrics := metrics prom latency $(deps_stats)
deps_snapshot := snapshot cache lru ghost table chain slab item grace num clock
deps_warm  := warm dump watch proto cache lru ghost table chain slab item grace num clock
deps_auth  := auth
deps_tls   := tls config
deps_worker :=
UNIT_BINS := $(UNIT_TESTS:%=$(BUILD)/test/test_%)

.PHONY: all deps test-deps bench-deps run test unit stress integration asan tsan bench bench-memory bench-warm \
        format format-check install clean static image fuzz fuzz-deps check
all: deps $(BUILD)/magpie

deps:
	$(call ensure_pkgs,$(BUILD_PKGS))

test-deps: deps
	$(call ensure_pkgs,$(TEST_PKGS))
	@test -d build/npm/node_modules/memjs || { echo "magpie: installing npm packages: $(NPM_TEST)"; \
	  npm install --prefix build/npm --no-audit --no-fund --silent $(NPM_TEST); }

# Order-only on deps: with -j, the packages are installed before anything compiles.
$(BUILD)/obj/%.o: src/%.c | deps
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

$(BUILD)/magpie: $(SRC_OBJS) $(BUILD)/obj/main.o
	$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

$(BUILD)/test/obj/%.o: test/unit/%.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) $(shell pkg-config --cflags check 2>/dev/null) -c -o $@ $<

# One link rule per unit test, from its deps_ list.
define unit_rule
$(BUILD)/test/test_$(1): $(BUILD)/test/obj/test_$(1).o $(patsubst %,$(BUILD)/obj/%.o,$(deps_$(1)))
	$$(CC) $$(ALL_LDFLAGS) -o $$@ $$^ $$(CHECK_LIBS) $$(LIBS)
endef
$(foreach t,$(UNIT_TESTS),$(eval $(call unit_rule,$(t))))

# A fully static binary for the FROM scratch image: libuv's and OpenSSL's static archives from
# Debian, xxHash header-only (XXH_INLINE_ALL in table.c), glibc static.
STATIC_LIBS = $(shell pkg-config --libs --static libuv-static libssl libcrypto 2>/dev/null)
$(BUILD)/magpie-static: $(SRC_OBJS) $(BUILD)/obj/main.o
	@# glibc warns that getpwnam/getaddrinfo want NSS libraries at run time: numeric addresses
	@# need none, and the image sets its user with USER (by number) rather than with -u. It warns
	@# about dlopen in libcrypto too: that loads engines and providers Magpie never asks for.
	$(CC) $(ALL_LDFLAGS) -static -s -o $@ $^ $(STATIC_LIBS) 2>&1 | grep -v 'in function\|statically linked' >&2 || true
	@test -x $@

static: deps $(BUILD)/magpie-static

# The image always holds the plain optimised build, whatever BUILD or sanitizer the caller uses.
IMAGE ?= magpie:latest
image: deps
	$(call ensure_pkgs,podman runc)
	@$(MAKE) --no-print-directory BUILD=build OPT="-O2 -g" SANITIZE= build/magpie-static
	podman build --format docker -t $(IMAGE) .

run: all
	./$(BUILD)/magpie -p 11211 -l 127.0.0.1

# `make test` is everything CI runs: the formatting check, then the suites three times over,
#   plain:  unit tests, a short fuzz run (the fuzzers are built with ASan and UBSan), integration
#   asan:   unit and integration tests with AddressSanitizer and UBSan
#   tsan:   unit and integration tests with ThreadSanitizer
# about 5 minutes on 2 cores. `make check` is the plain pass alone; each suite ends with Check's
# summary lines and the integration runner's "N passed, N failed".
TEST_FUZZ_SECONDS ?= 10
test: test-deps fuzz-deps
	@$(MAKE) --no-print-directory format-check
	@$(MAKE) --no-print-directory check
	@$(MAKE) --no-print-directory asan
	@$(MAKE) --no-print-directory tsan

check: test-deps
	@$(MAKE) --no-print-directory $(BUILD)/magpie $(UNIT_BINS) $(BUILD)/test/engine_stress
	@$(MAKE) --no-print-directory unit
	@$(MAKE) --no-print-directory stress
	@if [ "$(TEST_FUZZ_SECONDS)" != 0 ]; then $(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(TEST_FUZZ_SECONDS); fi
	@$(MAKE) --no-print-directory integration

unit: $(UNIT_BINS)
	@fail=0; for t in $(UNIT_BINS); do CK_DEFAULT_TIMEOUT=60 ./$$t || fail=1; done; exit $$fail

# Many threads on one engine through the lock-free read path, every value checked (test/stress).
STRESS_SECONDS ?= 15
stress: $(BUILD)/test/engine_stress
	./$(BUILD)/test/engine_stress $(STRESS_SECONDS)

# The modules run in IT_JOBS worker processes (run.py -j): most tests wait more than they compute.
IT_JOBS ?= 2
integration: $(BUILD)/magpie $(BUILD)/test/wallclock_shim.so $(BUILD)/test/stall_shim.so
	$(PYTHON) test/integration/run.py --bin $(BUILD)/magpie -j $(IT_JOBS) $(IT_ARGS)

# Preloaded by test_trust.py to step the server's wall clock; never built with the sanitizers.
$(BUILD)/test/wallclock_shim.so: test/integration/wallclock_shim.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -fPIC -shared -Wall -Wextra $(WERROR) -o $@ $< -ldl

# Preloaded by test_snapshot.py to stop the server in the middle of writing its snapshot.
$(BUILD)/test/stall_shim.so: test/integration/stall_shim.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -fPIC -shared -Wall -Wextra $(WERROR) -o $@ $< -ldl

# The sanitizer passes skip the fuzzers, which already run under ASan and UBSan. ASan's
# quarantine keeps freed memory for a while: a small one keeps memory use close to the real
# server's. MAGPIE_SANITIZER tells the tests that RSS bounds do not apply (shadow memory).
asan: test-deps
	@echo "== make asan: unit and integration tests under AddressSanitizer and UBSan"
	@ASAN_OPTIONS="quarantine_size_mb=16:detect_leaks=1" MAGPIE_SANITIZER=address \
	  $(MAKE) --no-print-directory BUILD=build/asan OPT="-O1 -g -fno-omit-frame-pointer" TEST_FUZZ_SECONDS=0 STRESS_SECONDS=6 \
	  SANITIZE="-fsanitize=address,undefined -fno-sanitize-recover=undefined -DMP_DEBUG" check

tsan: test-deps
	@echo "== make tsan: unit and integration tests under ThreadSanitizer"
	@MAGPIE_SANITIZER=thread TSAN_OPTIONS="halt_on_error=1" \
	  $(MAKE) --no-print-directory BUILD=build/tsan OPT="-O1 -g" SANITIZE="-fsanitize=thread -DMP_DEBUG" TEST_FUZZ_SECONDS=0 STRESS_SECONDS=6 \
	  check

ENGINE_OBJS := $(patsubst %,$(BUILD)/obj/%.o,cache lru ghost table chain slab item grace num clock)
$(BUILD)/test/engine_stress: test/stress/engine_stress.c $(ENGINE_OBJS)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) -o $@ $^ $(ALL_LDFLAGS)
$(BUILD)/bench_engine: bench/engine.c $(ENGINE_OBJS)
	$(CC) $(ALL_CFLAGS) $(PKG_CFLAGS) -o $@ $^ $(ALL_LDFLAGS)

BENCH_PKGS := python3-matplotlib
bench-deps:
	$(call ensure_pkgs,$(BENCH_PKGS))

bench: all test-deps bench-deps $(BUILD)/bench_engine
	./$(BUILD)/bench_engine
	$(PYTHON) bench/compare --magpie $(BUILD)/magpie

bench-memory: all test-deps bench-deps
	$(PYTHON) bench/memory --magpie $(BUILD)/magpie
	$(PYTHON) bench/hitratio --magpie $(BUILD)/magpie

bench-warm: all test-deps
	$(PYTHON) bench/warm --magpie $(BUILD)/magpie
	$(PYTHON) bench/warmfrom --magpie $(BUILD)/magpie

# Fuzzing (libFuzzer, clang): the parser alone, byte streams through a connection into a real
# engine, and bytes as a snapshot file loaded into one. `make fuzz` runs each for FUZZ_SECONDS from
# the seed corpus in test/fuzz/ (the snapshot's seeds are written into build/fuzz/seed_snapshot by
# the writer itself); new inputs it finds go to build/fuzz/corpus_*, not into the repository.
# `make test` runs each briefly.
FUZZ_SECONDS ?= 60
FUZZ_CFLAGS = -g -O1 -std=gnu11 -Iinclude -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_PROTO_SRC := test/fuzz/fuzz_proto.c src/proto.c src/num.c
FUZZ_BPROTO_SRC := test/fuzz/fuzz_bproto.c src/bproto.c
FUZZ_CONN_SRC := test/fuzz/fuzz_conn.c $(patsubst %,src/%.c,conn out exec admin auth tls text binary meta dump watch proto bproto \
                   num cache lru ghost table chain slab item grace clock stats latency hotkeys config log)
SNAPSHOT_SRC := $(patsubst %,src/%.c,snapshot cache lru ghost table chain slab item grace num clock)

build/fuzz/fuzz_proto: $(FUZZ_PROTO_SRC) $(wildcard include/magpie/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $(FUZZ_PROTO_SRC)

build/fuzz/fuzz_bproto: $(FUZZ_BPROTO_SRC) $(wildcard include/magpie/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) -o $@ $(FUZZ_BPROTO_SRC)

build/fuzz/fuzz_conn: $(FUZZ_CONN_SRC) $(wildcard include/magpie/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $(PKG_CFLAGS) -o $@ $(FUZZ_CONN_SRC) $(LIBS) -pthread

build/fuzz/fuzz_snapshot: test/fuzz/fuzz_snapshot.c test/fuzz/snapshot_fuzz.h $(SNAPSHOT_SRC) $(wildcard include/magpie/*.h)
	@mkdir -p $(dir $@)
	clang $(FUZZ_CFLAGS) $(PKG_CFLAGS) -o $@ test/fuzz/fuzz_snapshot.c $(SNAPSHOT_SRC) -pthread

# The snapshot fuzzer's seeds are written by the writer itself, so they follow the format.
build/fuzz/seed_snapshot/plain: test/fuzz/snapshot_seeds.c test/fuzz/snapshot_fuzz.h $(SNAPSHOT_SRC) $(wildcard include/magpie/*.h)
	@mkdir -p $(dir $@)
	$(CC) -O1 -g -std=gnu11 -Iinclude $(PKG_CFLAGS) -o build/fuzz/snapshot_seeds test/fuzz/snapshot_seeds.c $(SNAPSHOT_SRC) -pthread
	./build/fuzz/snapshot_seeds $(dir $@)

fuzz-deps:
	$(call ensure_pkgs,$(FUZZ_PKGS))

fuzz: deps fuzz-deps
	@$(MAKE) --no-print-directory build/fuzz/fuzz_proto build/fuzz/fuzz_bproto build/fuzz/fuzz_conn build/fuzz/fuzz_snapshot \
	  build/fuzz/seed_snapshot/plain
	@for t in proto bproto conn snapshot; do \
	  mkdir -p build/fuzz/corpus_$$t; \
	  seeds=test/fuzz/corpus_$$t; [ -d $$seeds ] || seeds=build/fuzz/seed_$$t; \
	  echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
	  ./build/fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix=build/fuzz/ \
	    build/fuzz/corpus_$$t $$seeds 2>&1 | grep -E "^(#[0-9]+.*DONE|stat::number_of_executed_units|==[0-9]+==|SUMMARY)" ; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1; \
	done

FORMAT_FILES = $(wildcard src/*.c include/magpie/*.h test/unit/*.c test/unit/*.h bench/*.c test/fuzz/*.c test/fuzz/*.h test/stress/*.c \
                           test/integration/*.c)
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES) && echo "format-check: $(words $(FORMAT_FILES)) files clean"

PREFIX ?= /usr/local
install: all
	install -D -m 0755 $(BUILD)/magpie $(DESTDIR)$(PREFIX)/bin/magpie
	install -D -m 0644 man/magpie.1 $(DESTDIR)$(PREFIX)/share/man/man1/magpie.1

clean:
	rm -rf build

-include $(wildcard $(BUILD)/obj/*.d $(BUILD)/test/obj/*.d $(BUILD)/*.d)
