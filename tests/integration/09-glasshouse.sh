#!/usr/bin/env bash
# 09-glasshouse: the glasshouse seed flow (flows/glasshouse.json, unchanged) end to end with
# its simulator on a real mosquitto and real LMDB files. The simulator plays 5 glasshouses
# for 15 simulated minutes (60x faster than the clock) with deliberately bad readings; in
# the middle eddy is SIGKILLed and restarted. Then:
# - every valid reading is in its device's stream exactly once, every bad one in
#   $deadletter with the validation's reason (nothing lost, nothing twice, despite the kill);
# - the hot glasshouse (gh-002) raised a high-temperature alert from its 1-minute windows
#   and the cold one (gh-004) a low one; the vent and heater commands were acknowledged by
#   the simulated devices, as events and in the "actuators" read model;
# - the read models over HTTP: "latest" has every device, "daily" counted every valid
#   reading once (the kill included);
# - after a clean stop, `eddy events rebuild` of "latest" and "daily" from the log gives
#   the models eddy kept live.
set -uo pipefail
eddy="$1"
src="$2"
. "$src/tests/integration/lib/seed.sh"
flow="$src/flows/glasshouse.json"
devices=5
readings=3000 # 600 per device, one per 1.5 simulated seconds: 15 minutes

start_broker
start_eddy "$flow"
"$build_dir/examples/glasshouse-sim" --port "$MQTT_PORT" --devices "$devices" --rate 40 \
    --time-scale 60 --count "$readings" --seed 7 >"$work/sim.json" 2>"$work/sim.log" &
sim=$!
pids+=("$sim")

# The crash: once a third of the readings are in, with windows half built.
stored_readings() {
    "$eddy" events read --data "$work/data" 2>/dev/null | awk '$4 == "reading"' | wc -l
}
third() { [ "$(stored_readings)" -ge $((readings / 3)) ]; }
wait_until 30 third || fail "readings did not arrive"
kill_eddy
pass "eddy SIGKILLed with $(stored_readings) readings stored"
start_eddy "$flow"

wait "$sim" || fail "the simulator did not finish"
valid=$(jq .kinds.valid "$work/sim.json")
bad=$(jq .kinds.bad "$work/sim.json")
expect_eq "simulator published every reading" "$(jq .published "$work/sim.json")" "$readings"
all_in() { [ "$(stored_readings)" -ge "$valid" ]; }
wait_until 30 all_in
expect_eq "every valid reading stored once" "$(stored_readings)" "$valid"
ids=$("$eddy" events read --data "$work/data" | awk '$4 == "reading" {print $5}' | sort -u | wc -l)
expect_eq "no reading stored twice" "$ids" "$valid"
expect_eq "every bad reading in \$deadletter" "$(stream_count '$deadletter')" "$bad"
dl=$("$eddy" events read --data "$work/data" --stream '$deadletter')
for reason in "temperature is not a number" "humidity is not a number" "not a JSON object"; do
    if grep -qF "$reason" <<<"$dl"; then pass "dead letter: $reason"; else fail "dead letter: $reason"; fi
done

# Alerts from the 1-minute windows, stored as events in the device's stream.
alerts() { "$eddy" events read --data "$work/data" --stream "$1" | awk '$4 == "alert"'; }
if alerts gh-002 | grep -q '"condition":"high","state":"raised"'; then
    pass "gh-002 raised a high temperature alert"
else
    fail "gh-002 raised no high temperature alert"
fi
if alerts gh-004 | grep -q '"condition":"low","state":"raised"'; then
    pass "gh-004 raised a low temperature alert"
else
    fail "gh-004 raised no low temperature alert"
fi

# Commands and the devices' answers.
acked() { "$eddy" events read --data "$work/data" --stream "actuator-$1" | grep -c "ActuatorAcknowledged.*\"actuatorId\":\"$2\""; }
expect_ge "vent commands acknowledged by gh-002" "$(acked gh-002 vent)" 1
expect_ge "heater commands acknowledged by gh-004" "$(acked gh-004 heater)" 1
expect_eq "actuators model: gh-002's vent" \
    "$(api /api/state/actuators/gh-002%2Fvent | jq -r '.state.value | IN("open", "closed")')" true
expect_eq "actuators model: gh-004's heater" \
    "$(api /api/state/actuators/gh-004%2Fheater | jq -r '.state.value | IN("on", "off")')" true

# Read models over HTTP, once the subscription has caught up with the log.
last=$("$eddy" events stats --data "$work/data" | sed -n 's/^events: *\([0-9]*\).*/\1/p')
caught_up() { [ "$(api /api/state/daily | jq .position)" -ge "$last" ] 2>/dev/null; }
wait_until 20 caught_up || fail "read models did not catch up with position $last"
expect_eq "latest: every device" "$(api /api/state/latest | jq .count)" "$devices"
expect_eq "latest: gh-003 has temperature and humidity" \
    "$(api /api/state/latest/gh-003 | jq -c '.sensors | keys')" '["humidity","temperature"]'
expect_eq "daily: every valid reading counted once" \
    "$(api /api/state/daily | jq '[.keys[] | select(.sensor == "temperature") | .count] | add')" \
    "$valid"

# Rebuilt from the log, offline, the models equal the live ones.
api /api/state/latest | jq -S .keys >"$work/latest.live"
api /api/state/daily | jq -S .keys >"$work/daily.live"
stop_eddy
for model in latest daily; do
    if "$eddy" events rebuild --data "$work/data" --flow "$flow" --model "$model" \
        >"$work/rebuild.log" 2>&1; then
        pass "rebuild $model"
    else
        fail "rebuild $model" "$(tail -5 "$work/rebuild.log")"
    fi
done
start_eddy "$flow"
for model in latest daily; do
    api "/api/state/$model" | jq -S .keys >"$work/$model.rebuilt"
    if cmp -s "$work/$model.live" "$work/$model.rebuilt"; then
        pass "$model rebuilt from the log equals the live model"
    else
        fail "$model rebuilt from the log differs" "$(diff "$work/$model.live" "$work/$model.rebuilt" | head -5)"
    fi
done
stop_eddy
expect_eq "eddy exited cleanly" "$?" 0
expect_clean_log
finish
