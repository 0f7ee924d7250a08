#!/usr/bin/env bash
# 05-mqtt-store-crash: acknowledgements follow commits, end to end. The glasshouse simulator
# publishes readings at QoS 1 to a real mosquitto; eddy (persistent session) appends each
# one through an event-store node with fsync "always". eddy is SIGKILLed at random moments
# 20 times and restarted. A reading eddy acknowledged to the broker before its commit would
# be lost at such a kill (the broker would not deliver it again); so in the end every
# reading the simulator published must be in the store, exactly once (redeliveries of
# unacknowledged ones are recognised by their event id), and the store must open cleanly
# after every kill.
set -uo pipefail
eddy="$1"
src="$2"
build_dir=$(dirname "$eddy")
work=$(mktemp -d)
readings=${READINGS:-4000}
kills=${KILLS:-20}
pids=()
cleanup() { exec 2>/dev/null; for p in "${pids[@]}"; do kill -9 "$p"; done; rm -rf "$work"; }
trap cleanup EXIT
fails=0
fail() { fails=$((fails + 1)); echo "FAIL $1"; }

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((20000 + RANDOM % 20000))
while listening "$port"; do port=$((port + 1)); done
printf 'listener %d 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' "$port" \
    >"$work/mosquitto.conf"
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do listening "$port" && break; sleep 0.05; done

cat >"$work/flow.json" <<JSON
[{"id":"t","type":"tab","label":"crash"},
 {"id":"b","type":"mqtt-broker","broker":"127.0.0.1","port":"$port","clientid":"eddy-crash",
  "cleansession":false,"reconnectMin":50,"reconnectMax":200},
 {"id":"in","type":"mqtt in","z":"t","topic":"glasshouse/+/reading","qos":"1","datatype":"json",
  "broker":"b","wires":[["s"]]},
 {"id":"s","type":"event-store","z":"t","stream":"payload.deviceId","eventType":"reading",
  "eventId":"payload.eventId","eventTime":"payload.ts","wires":[[],[]]}]
JSON

start_eddy() {
    "$eddy" run "$work/flow.json" --port 0 --data "$work/data" --fsync always >>"$work/eddy.log" 2>&1 &
    eddy_pid=$!
    pids+=("$eddy_pid")
}
events_in_store() {
    "$eddy" events stats --data "$work/data" 2>/dev/null | sed -n 's/^events: *\([0-9]*\).*/\1/p'
}

# The session must exist before the readings start, or the broker keeps none for eddy.
start_eddy
for _ in $(seq 200); do grep -q "connected to broker" "$work/eddy.log" && break; sleep 0.05; done
"$build_dir/examples/glasshouse-sim" --port "$port" --devices 10 --rate 100 --qos 1 --no-faults \
    --count "$readings" >"$work/sim.log" 2>&1 &
sim=$!
pids+=("$sim")

for k in $(seq "$kills"); do
    sleep "0.$((RANDOM % 3))$((RANDOM % 10))"
    kill -9 "$eddy_pid" 2>/dev/null
    wait "$eddy_pid" 2>/dev/null
    if ! "$eddy" events check --data "$work/data" >"$work/check.log" 2>&1; then
        fail "store does not open cleanly after kill $k"
        cat "$work/check.log"
    fi
    start_eddy
done
wait "$sim" || fail "the simulator could not publish everything"

# eddy catches up on what the broker kept for its session.
n=0
for _ in $(seq 300); do
    n=$(events_in_store)
    [ "${n:-0}" -ge "$readings" ] && break
    sleep 0.1
done
sleep 0.5
kill -TERM "$eddy_pid"
wait "$eddy_pid"
"$eddy" events export --data "$work/data" >"$work/export.ndjson" 2>/dev/null
total=$(grep -c '"type":"reading"' "$work/export.ndjson")
unique=$(grep -o '"id":"[^"]*"' "$work/export.ndjson" | sort -u | wc -l)
echo "readings published: $readings, events stored: $total, distinct ids: $unique, kills: $kills"
[ "$total" -eq "$readings" ] || fail "stored $total events, want $readings (lost or duplicated)"
[ "$unique" -eq "$readings" ] || fail "stored $unique distinct ids, want $readings"
[ "$fails" -eq 0 ] && echo "ok   every acknowledged reading stored exactly once across $kills kills"
[ "$fails" -eq 0 ]
