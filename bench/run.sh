#!/usr/bin/env bash
# Runs eddy's benchmarks (built by `make build`) and prints their figures.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
echo "== chain: inject -> change -> switch -> 10 x change -> sink"
for i in 1 2 3; do "$build/bench/bench_chain" "${MESSAGES:-2000000}"; done
echo "== lua: a lua node's threshold test against a switch doing the same, one run"
"$build/bench/bench_lua" "${LUA_MESSAGES:-500000}"
