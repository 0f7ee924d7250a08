#!/usr/bin/env bash
# 11-turnstile: the turnstile seed flow (flows/turnstile.json, unchanged) end to end with its
# simulator on a real mosquitto and real LMDB files. The simulator plays 3 gates in 2 zones
# (gate-01 and gate-02 in zone-1, gate-03 in zone-2) for about an hour of simulated time
# (a 5-second slot per gate, 60 slots a second), with deliberately bad messages; gate-02's
# turnstile jams 20 simulated minutes in. Once eddy has reset it, eddy is stopped (SIGTERM)
# and started again: the occupancy counter learns its counts back from the log, and the
# windows' half-built state comes back from the store. (Stopping before the reset would
# let the jam run on in simulated time while eddy is away, 5 simulated minutes per wall
# second, and under load the alert might not clear before the run ends.) Then:
# - every valid rotation and camera count is in its gate's stream exactly once, every bad
#   one in $deadletter with the validation's reason;
# - every rotation was counted once (one OccupancyChanged each), and the occupancy read
#   model holds, per zone, the entries and exits the stored rotations say, and their
#   difference;
# - gate-02 raised a malfunction alert from its 5-minute windows, the reset command was
#   acknowledged by the simulated gate, the alert cleared afterwards, and the malfunctions
#   model holds no active alert; the other gates raised none.
set -uo pipefail
eddy="$1"
src="$2"
. "$src/tests/integration/lib/seed.sh"
flow="$src/flows/turnstile.json"
messages=1100 # about an hour of simulated time for 3 gates

events_json() { "$eddy" events read --data "$work/data" --json "$@" 2>/dev/null; }
count_type() { # type [stream]
    "$eddy" events read --data "$work/data" ${2:+--stream "$2"} 2>/dev/null |
        awk -v t="$1" '$4 == t' | wc -l
}

start_broker
start_eddy "$flow"
"$build_dir/examples/turnstile-sim" --port "$MQTT_PORT" --devices 3 --rate 60 \
    --time-scale 300 --count "$messages" --seed 7 >"$work/sim.json" 2>"$work/sim.log" &
sim=$!
pids+=("$sim")

# The restart: once gate-02's jam is reset, with about half the rotations counted.
acked() { "$eddy" events read --data "$work/data" --stream actuator-gate-02 2>/dev/null |
    grep -c 'ActuatorAcknowledged.*"actuatorId":"arm".*"state":"free"'; }
reset_done() { [ "$(acked)" -ge 1 ]; }
wait_until 30 reset_done || fail "gate-02 was not reset"
stop_eddy
status=$?
expect_eq "eddy stopped cleanly with $(count_type OccupancyChanged occupancy) rotations counted" \
    "$status" 0
start_eddy "$flow"

wait "$sim" || fail "the simulator did not finish"
expect_eq "simulator published every message" "$(jq .published "$work/sim.json")" "$messages"
rotations=$(jq .kinds.rotation "$work/sim.json")
cameras=$(jq .kinds.camera "$work/sim.json")
bad=$(jq .kinds.bad "$work/sim.json")
all_in() { [ "$(count_type OccupancyChanged occupancy)" -ge "$rotations" ] &&
    [ "$(count_type CameraCount)" -ge "$cameras" ]; }
wait_until 30 all_in
events_json | jq -s '[.[] | select(.stream | startswith("gate-"))]' >"$work/gates.json"
expect_eq "every rotation stored once" \
    "$(jq '[.[] | select(.type == "Rotation")] | length' "$work/gates.json")" "$rotations"
expect_eq "every camera count stored once" \
    "$(jq '[.[] | select(.type == "CameraCount")] | length' "$work/gates.json")" "$cameras"
expect_eq "no event id twice" \
    "$(jq '[.[] | select(.type != "malfunction") | .id] | unique | length' "$work/gates.json")" \
    $((rotations + cameras))
expect_eq "every bad message in \$deadletter" "$(stream_count '$deadletter')" "$bad"
dl=$("$eddy" events read --data "$work/data" --stream '$deadletter')
for reason in "direction is not in or out" "people is not a whole number" \
    "deviceId is missing" "not a JSON object"; do
    if grep -qF "$reason" <<<"$dl"; then pass "dead letter: $reason"; else fail "dead letter: $reason"; fi
done

# Occupancy: each rotation counted once, across the restart.
events_json --stream occupancy >"$work/occupancy.ndjson"
expect_eq "one OccupancyChanged per rotation" "$(grep -c . "$work/occupancy.ndjson")" "$rotations"
expect_eq "no rotation counted twice" \
    "$(jq -s '[.[].data.rotationPosition] | unique | length' "$work/occupancy.ndjson")" "$rotations"
last=$("$eddy" events stats --data "$work/data" | sed -n 's/^events: *\([0-9]*\).*/\1/p')
caught_up() { [ "$(api /api/state/occupancy | jq .position)" -ge "$last" ] 2>/dev/null; }
wait_until 20 caught_up || fail "read models did not catch up with position $last"
jq -S 'map(select(.type == "Rotation")) | group_by(.data.zone) |
    map({key: .[0].data.zone,
         value: {entries: map(select(.data.direction == "in")) | length,
                 exits: map(select(.data.direction == "out")) | length}}) |
    from_entries | map_values(. + {occupancy: (.entries - .exits)})' \
    "$work/gates.json" >"$work/occupancy.log"
api /api/state/occupancy |
    jq -S '.keys | map_values(.sensors | map_values(.value))' >"$work/occupancy.model"
if cmp -s "$work/occupancy.log" "$work/occupancy.model"; then
    pass "occupancy per zone equals the log's entries minus exits: $(jq -c 'map_values(.occupancy)' "$work/occupancy.model")"
else
    fail "occupancy differs from the log" "$(diff "$work/occupancy.log" "$work/occupancy.model" | head -6)"
fi

# The jam: alert, reset, clear.
malfunctions() { "$eddy" events read --data "$work/data" --stream "$1" | awk '$4 == "malfunction"'; }
if malfunctions gate-02 | head -1 | grep -q '"state":"raised"'; then
    pass "gate-02 raised a malfunction alert"
else
    fail "gate-02 raised no malfunction alert" "$(malfunctions gate-02 | head -2)"
fi
expect_eq "gate-02's reset acknowledged by the gate" "$(acked)" 1
expect_eq "gate-02's alert cleared after the reset" \
    "$(malfunctions gate-02 | sed -n 2p | grep -c '"state":"cleared"')" 1
expect_eq "gate-01 and gate-03 raised no alert" \
    "$(malfunctions gate-01 | wc -l) $(malfunctions gate-03 | wc -l)" "0 0"
expect_eq "malfunctions model: no active alert" "$(api /api/state/malfunctions | jq .count)" 0
expect_eq "gates model: gate-02's arm was reset" \
    "$(api /api/state/gates/gate-02%2Farm | jq -r .state.command)" reset

stop_eddy
expect_eq "eddy exited cleanly" "$?" 0
expect_clean_log
finish
