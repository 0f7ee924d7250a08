#!/usr/bin/env bash
# Runs eddy's benchmarks (built by `make build`) and prints their figures.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BUILD:-build}
echo "== chain: inject -> change -> switch -> 10 x change -> sink"
for i in 1 2 3; do "$build/bench/bench_chain" "${MESSAGES:-2000000}"; done
echo
# MQTT: a private mosquitto, then the bare counter, eddy and Node-RED (installed on first
# use into ~/.cache/eddy-bench/node-red) on the same flow, at QoS 0 and 1
MESSAGES=${MQTT_MESSAGES:-200000} BUILD=$build bash bench/mqtt.sh
echo
# The glasshouse workload (issue 7): mqtt in -> json -> [event-store] -> window -> switch ->
# mqtt out, eddy beside Node-RED's own version of each flow, bursts and paced latency
MESSAGES=${GLASSHOUSE_MESSAGES:-200000} BUILD=$build bash bench/glasshouse.sh
echo
echo "== store: appends per fsync policy and batch beside bare LMDB; replay (raw and through a flow)"
"$build/bench/bench_store" "${EVENTS:-200000}" "${STORE_DIR:-${TMPDIR:-/tmp}}"
for i in 1 2 3; do
    "$build/bench/bench_store" "${EVENTS:-200000}" "${STORE_DIR:-${TMPDIR:-/tmp}}" replay | tail -1
done
echo
echo "== lua: a lua node's threshold test against a switch doing the same, one run"
"$build/bench/bench_lua" "${LUA_MESSAGES:-500000}"
