#!/usr/bin/env bash
# valgrind: the CLI's integration paths under valgrind (release build only): `eddy check`
# on good and broken flows, and `eddy run` of a timed flow stopped by SIGTERM. Any memory
# error or definite leak fails the test. The small-block cache is off (EDDY_NO_MEM_CACHE)
# so that reuse cannot hide a use-after-free.
set -uo pipefail
eddy="$1"
src="$2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export EDDY_NO_MEM_CACHE=1
vg=(valgrind --quiet --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite
    --show-leak-kinds=definite)
passes=0
fails=0
check() { # name, then the command's exit codes that are fine
    local name="$1"; shift
    local rc="$1"
    if [ "$rc" -eq 99 ]; then fails=$((fails + 1)); echo "FAIL $name"; cat "$work/vg.log"
    else passes=$((passes + 1)); echo "ok   $name"; fi
}

for f in "$src"/flows/*.json "$src"/tests/integration/flows/*.json; do
    [ -f "$f" ] || continue
    "${vg[@]}" "$eddy" check "$f" >"$work/vg.log" 2>&1
    check "check $(basename "$f")" $?
done

printf '[{"id":"a","type":"function"},{"id":"b","type":"junction","wires":[["x"]]},' >"$work/bad.json"
printf '{"id":"c","type":"link call","timeout":"x","links":[],"wires":[[]]}]' >>"$work/bad.json"
"${vg[@]}" "$eddy" check "$work/bad.json" >"$work/vg.log" 2>&1
check "check of a broken flow" $?

# The glasshouse flow against a real mosquitto on a free port, fed by the simulator (time 60x
# faster, so windows close and alerts send commands): MQTT in, Lua, the store, dew point,
# window, alert, actuator, read models, then a clean stop.
build_dir=$(dirname "$eddy")
listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((20000 + RANDOM % 20000))
while listening "$port"; do port=$((port + 1)); done
printf 'listener %d 127.0.0.1\nallow_anonymous true\n' "$port" >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
broker=$!
trap 'kill "$broker" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 100); do listening "$port" && break; sleep 0.05; done
MQTT_PORT=$port "${vg[@]}" "$eddy" run "$src/flows/glasshouse.json" --port 0 --data "$work/data" >"$work/vg.log" 2>&1 &
pid=$!
for _ in $(seq 200); do grep -q "connected to broker" "$work/vg.log" && break; sleep 0.05; done
"$build_dir/examples/glasshouse-sim" --port "$port" --devices 5 --rate 20 --count 400 \
    --time-scale 60 >/dev/null 2>&1
sleep 1
kill -TERM "$pid"
wait "$pid"
rc=$?
check "run glasshouse with MQTT, then SIGTERM" "$rc"
grep -q "stopped cleanly" "$work/vg.log" || { fails=$((fails + 1)); echo "FAIL clean stop under valgrind"; cat "$work/vg.log"; }
grep -q "stream 'gh-002' went to \$deadletter: temperature" "$work/vg.log" || { fails=$((fails + 1)); echo "FAIL no bad reading reached \$deadletter"; cat "$work/vg.log"; }
stored=$("$eddy" events read --data "$work/data" --stream gh-001 2>/dev/null | awk '$4 == "reading"' | wc -l)
[ "$stored" -ge 1 ] || { fails=$((fails + 1)); echo "FAIL no MQTT reading went through the flow"; cat "$work/vg.log"; }

# Reconnects, the outgoing queue, dynamic subscriptions and sessions, from the MQTT test.
for t in broker_outage dynamic_subscribe persistent_session payload_types; do
    "${vg[@]}" "$build_dir/tests/mqtt_test" "$t" >"$work/vg.log" 2>&1
    rc=$?
    [ "$rc" -eq 0 ] || [ "$rc" -eq 99 ] || { fails=$((fails + 1)); echo "FAIL mqtt_test $t"; cat "$work/vg.log"; continue; }
    check "mqtt_test $t" "$rc"
done

# The HTTP and /comms server (libwebsockets on the loop): every case, teardown included.
"${vg[@]}" "$build_dir/tests/http_test" >"$work/vg.log" 2>&1
rc=$?
if [ "$rc" -eq 0 ] || [ "$rc" -eq 99 ]; then check "http_test" "$rc"
else fails=$((fails + 1)); echo "FAIL http_test"; cat "$work/vg.log"; fi

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
