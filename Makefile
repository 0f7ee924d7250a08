# eddy: the two commands a person needs are `make run` and `make test`.
# Everything builds with CMake into build/ (and build-asan/ for the sanitizer build).

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
FLOW ?= flows/glasshouse.json
DATA ?= eddy-data
PORT ?= 1880

.PHONY: all deps build build-asan run test test-release test-asan test-browser bench format format-check clean

all: build

deps:
	@bash scripts/install-deps.sh

build: deps
	cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	cmake --build build -j $(JOBS)

build-asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DEDDY_SANITIZE=ON -DCMAKE_C_COMPILER=clang >/dev/null
	cmake --build build-asan -j $(JOBS)

# Starts a local mosquitto (if none listens on 127.0.0.1:1883) and the device simulator too.
run: build
	FLOW=$(FLOW) DATA=$(DATA) PORT=$(PORT) bash scripts/run-example.sh

# Everything: the release build's tests, then the same tests under ASan+UBSan (clang).
test: test-release test-asan

test-release: build
	cd build && ctest --output-on-failure -j $(JOBS)

test-asan: build-asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest --output-on-failure -j $(JOBS)

# Only the browser tests (the editor through chromium), on the release build.
test-browser: build
	cd build && ctest --output-on-failure -L browser

bench: build
	bash bench/run.sh

format:
	clang-format -i runtime/*.c runtime/*.h nodes/*.c nodes/*.h tests/*/*.c tests/*/*.h bench/*.c examples/*/*.c

format-check:
	clang-format --dry-run -Werror runtime/*.c runtime/*.h nodes/*.c nodes/*.h tests/*/*.c tests/*/*.h bench/*.c examples/*/*.c

clean:
	rm -rf build build-asan
