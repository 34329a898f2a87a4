# xsnoop — the two commands a newcomer needs are `make demo` and `make test`.
CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build deps test lint unit e2e-auto fuzz-check fuzz demo bench bench-fwd clean

all: build

## deps: install the Debian packages xsnoop needs (idempotent; root)
deps:
	@scripts/deps.sh

## build: release build of the switch and the CLI
build: deps
	$(CARGO) build --release --workspace

## test: lint, every unit/property/end-to-end test, and the fuzz targets' build
test: deps lint unit fuzz-check

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Namespace tests must run, not skip, here: XSNOOP_REQUIRE_NETNS makes a missing privilege a failure.
unit:
	XSNOOP_REQUIRE_NETNS=1 $(CARGO) test --workspace
	$(MAKE) e2e-auto

# The end-to-end suite again with every `xsnoop run` in dataplane = "auto", the daemon's default
# (the first pass pins "afxdp"): on the testbed every port accepts XDP redirects, so multicast,
# known unicast and broadcast are forwarded in the kernel. Both modes must pass the same tests.
# (--workspace, not -p xsnoop-tests: the same feature set as `unit`, so nothing is rebuilt.)
e2e-auto:
	XSNOOP_REQUIRE_NETNS=1 XSNOOP_TEST_DATAPLANE=auto $(CARGO) test --workspace \
	  --test run_e2e --test runtime_e2e --test differential --test demo_e2e --test fault_e2e \
	  --test hostile_e2e --test privilege_e2e --test cli_e2e --test notify_e2e

# The fuzz crate needs nightly to fuzz (`cargo +nightly fuzz run <target>`); here we prove it
# compiles on stable and replay the engine fuzzer's committed corpus and regressions.
fuzz-check:
	$(CARGO) build --manifest-path fuzz/Cargo.toml --bins
	$(CARGO) test --manifest-path fuzz/Cargo.toml

## fuzz: a short smoke of every fuzz target (FUZZ_SECONDS each, default 20) starting from its
## committed corpus; needs nightly + cargo-fuzz, so it is not part of `make test` (CI runs
## fuzz-check). New inputs go to a temp dir, crashes to fuzz/artifacts/<target>/; a target's
## fuzz/dict/<target>.dict, if any, is its libFuzzer dictionary.
FUZZ_TARGETS := parse_frame igmp punt engine config
FUZZ_SECONDS ?= 20
fuzz:
	@for t in $(FUZZ_TARGETS); do \
	  new=$$(mktemp -d) || exit 1; \
	  echo "== fuzz $$t for $(FUZZ_SECONDS) s"; \
	  dict=; [ -f fuzz/dict/$$t.dict ] && dict=-dict=dict/$$t.dict; \
	  (cd fuzz && cargo +nightly fuzz run $$t $$new corpus/$$t -- $$dict \
	    -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1) || { rm -rf $$new; exit 1; }; \
	  rm -rf $$new; \
	done

## demo: run the switch's snooping brain on a built-in namespace topology of real hosts
demo: build
	./target/release/xsnoop-demo

## bench: control-plane rates; packet rates (multicast N=1,2,4,8 at 64 and 1518 B, unicast,
## broadcast, an IGMP report flood, 1/1000/100000 groups) of both xsnoop dataplane modes vs an
## AF_XDP copy-mode forwarder in C (the baseline of the afxdp mode) vs the Linux bridge vs the
## XDP ceiling, with CPU per million frames; join/fast-leave/per-frame latency; memory per group.
## On a veth testbed (root; ~15 min). Tables in bench/results/latest.md (+ latest.csv,
## latency.csv, memory.csv, table-scale.csv, SVG plots).
## Profile of the worker: add --perf-record FILE (see bench/results/profile.md).
bench: build bench-fwd
	./target/release/xsnoop-bench

## bench-fwd: the AF_XDP C forwarder `make bench` measures (bench/afxdp-fwd/: libxdp + libbpf,
## which scripts/bench-deps.sh installs) into target/release/xsnoop-afxdp-fwd and its XDP program
## target/release/xsnoop-afxdp-fwd.bpf.o. Not part of build or test: they never need libxdp.
FWD_DIR := target/release
bench-fwd:
	@scripts/bench-deps.sh
	@mkdir -p $(FWD_DIR)
	clang -target bpf -O2 -g -Wall -Werror -c bench/afxdp-fwd/fwd.bpf.c -o $(FWD_DIR)/xsnoop-afxdp-fwd.bpf.o
	$(CC) -O2 -Wall -Wextra -Werror $$(pkg-config --cflags libxdp libbpf) bench/afxdp-fwd/fwd.c \
	  -o $(FWD_DIR)/xsnoop-afxdp-fwd $$(pkg-config --libs libxdp libbpf)

clean:
	$(CARGO) clean
