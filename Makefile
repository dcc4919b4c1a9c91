# Entry points. `make demo` and `make test` set up everything they need on a
# fresh Debian 12 machine (run them as root, or with the packages installed).

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
JOBS       ?= $(shell nproc)
IPSENTRY   := $(BUILD)/cli/ipsentry
# Wall-clock seconds of fuzzing: `make test` (and so CI) and `make fuzz`.
# fuzz/run_fuzzers.sh splits them between the targets, two at a time.
FUZZ_TEST_BUDGET ?= 300
FUZZ_BUDGET ?= 3600

.PHONY: all deps build asan demo test test-release test-asan test-fuzz bench bench-capture bench-enforce bench-ike bench-tui fuzz fuzz-regressions samples format tidy clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/build.ninja:
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

$(ASAN_BUILD)/build.ninja:
	cmake -S . -B $(ASAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Debug -DIPSENTRY_SANITIZE=address-undefined \
	      -DIPSENTRY_BUILD_BENCH=OFF

asan: deps $(ASAN_BUILD)/build.ninja
	cmake --build $(ASAN_BUILD) -j $(JOBS)

# Verifies the bundled samples: the seed's AH scenario (all verified), then an
# ESP tunnel capture with a tampered, a replayed, an unknown-SPI and a
# truncated packet among good ones.
demo: build
	$(IPSENTRY) verify samples/seed-ah.pcap -c samples/seed-ah.yaml
	@echo
	-$(IPSENTRY) verify samples/esp-tunnel-faults.pcap -c samples/esp-tunnel.yaml
	@echo
	@echo "The policy audit: was everything protected that the gateway's policy protects?"
	-$(IPSENTRY) verify samples/esp-tunnel-leak.pcap --policy samples/esp-tunnel.yaml
	@echo
	@echo "Browse the same capture in the terminal UI (q quits, ? lists the keys):"
	@echo "  $(IPSENTRY) tui samples/esp-tunnel-faults.pcap -c samples/esp-tunnel.yaml"

# The tests in the release and the ASan+UBSan builds, then the fuzz step:
# every input in fuzz/regressions replayed, and FUZZ_TEST_BUDGET seconds of
# fuzzing (`make fuzz` runs longer).
test: test-release test-asan test-fuzz

test-release: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-asan: asan
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)

bench: build
	bench/run_bench.sh $(IPSENTRY)

# Live capture between two namespaces against tcpdump (root, tcpreplay).
bench-enforce: build
	/usr/bin/python3 bench/enforce_bench.py $(IPSENTRY) $(BUILD)/bench/nfq_accept

# IKEv2 responder: exchanges per second and latency, ipsentry beside charon,
# the same scripted initiator; first packet to SA up (root, strongSwan).
bench-ike: build
	/usr/bin/python3 bench/ike_bench.py $(IPSENTRY)

bench-tui: build
	/usr/bin/python3 bench/tui_bench.py $(IPSENTRY)

bench-capture: build
	/usr/bin/python3 bench/capture_bench.py $(IPSENTRY)

$(FUZZ_BUILD)/build.ninja:
	CC=clang CXX=clang++ cmake -S . -B $(FUZZ_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
	   -DIPSENTRY_BUILD_FUZZ=ON -DIPSENTRY_SANITIZE=address-undefined -DIPSENTRY_BUILD_TESTS=OFF -DIPSENTRY_BUILD_BENCH=OFF

FUZZ_TARGETS := fuzz_packet fuzz_capture_file fuzz_config fuzz_importers fuzz_ike fuzz_ike_responder \
                fuzz_crypto_differential

fuzz: deps $(FUZZ_BUILD)/build.ninja
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(FUZZ_TARGETS)
	fuzz/run_fuzzers.sh $(FUZZ_BUILD) $(FUZZ_BUDGET)

test-fuzz: deps $(FUZZ_BUILD)/build.ninja
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(FUZZ_TARGETS)
	fuzz/run_fuzzers.sh $(FUZZ_BUILD) $(FUZZ_TEST_BUDGET)

# Only the replay of every input a fuzzer ever failed on (seconds).
fuzz-regressions: deps $(FUZZ_BUILD)/build.ninja
	cmake --build $(FUZZ_BUILD) -j $(JOBS) --target $(FUZZ_TARGETS)
	fuzz/run_fuzzers.sh $(FUZZ_BUILD) 0

samples:
	/usr/bin/python3 samples/make_samples.py

format:
	git ls-files '*.cpp' '*.hpp' | xargs clang-format -i

tidy: build
	git ls-files '*.cpp' | grep -v '^fuzz/' | xargs clang-tidy -p $(BUILD) --quiet

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
