# The two commands of the quick start:
#   make demo   installs what is missing, builds, runs a small company
#   make test   installs what is missing, builds with ASan+UBSan, runs ctest
JOBS ?= $(shell nproc)

.PHONY: all deps build build-asan demo test fuzz clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build build -j $(JOBS)

build-asan: deps
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DNX_SANITIZE=ON >/dev/null
	@cmake --build build-asan -j $(JOBS)

demo: build
	@examples/demo.sh build/nexus
	@examples/software-demo.sh build/nexus

# Every test under AddressSanitizer + UndefinedBehaviorSanitizer.
test: build-asan
	@cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure --timeout 600 -j 2

# The decoder under libFuzzer (clang): FUZZ_SECONDS=300 make fuzz
FUZZ_SECONDS ?= 60
fuzz: deps
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DNX_FUZZ=ON -DNX_SANITIZE=ON >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzz_decode
	@mkdir -p build-fuzz/corpus && cp tests/fuzz/corpus/* build-fuzz/corpus/
	@build-fuzz/tests/fuzz_decode -max_total_time=$(FUZZ_SECONDS) -max_len=4096 build-fuzz/corpus

clean:
	rm -rf build build-asan build-fuzz
