#!/usr/bin/env bash
# 10-cat-feeder: the cat feeder seed flow (flows/cat-feeder.json, unchanged) end to end with
# its simulator on a real mosquitto and real LMDB files. The simulator plays 3 feeders for
# about 36 simulated hours (a 2-minute slot per feeder, 100 slots a second), cf-002's cat a
# greedy one, with deliberately bad messages; in the middle eddy is SIGKILLed and restarted.
# The feed rules keep their memory (last portion, portions per day, last press decided) in
# a Lua node and learn it from the log at start, so the crash must not change a decision.
# Then:
# - every valid press and bowl weight is in its feeder's stream exactly once, every bad one
#   in $deadletter with the validation's reason;
# - every press was decided exactly once, and each decision is what the rules give when the
#   stored presses are taken in log order (computed here with jq, independently of the
#   flow): the crash neither lost the rules' memory nor decided a press twice;
# - the greedy cat met both rules (too soon, daily limit);
# - every approved portion was commanded once, acknowledged by the simulated feeder and
#   stored as FoodDispensed; the dispensers and bowls read models have every feeder;
# - the second flow's read model (feedings-per-day), built only by replaying the log, holds
#   for each feeder and UTC day the portions and grams the log's FoodDispensed events say.
set -uo pipefail
eddy="$1"
src="$2"
. "$src/tests/integration/lib/seed.sh"
flow="$src/flows/cat-feeder.json"
feeders=3
messages=500 # about 36 simulated hours for 3 feeders

events_json() { "$eddy" events read --data "$work/data" --json "$@" 2>/dev/null; }
count_type() { # stream type
    "$eddy" events read --data "$work/data" --stream "$1" 2>/dev/null | awk -v t="$2" '$4 == t' |
        wc -l
}
decisions() { "$eddy" events read --data "$work/data" --stream feedings 2>/dev/null |
    awk '$4 ~ /^Feeding/' | wc -l; }

start_broker
start_eddy "$flow"
"$build_dir/examples/cat-feeder-sim" --port "$MQTT_PORT" --devices "$feeders" --rate 100 \
    --time-scale 12000 --count "$messages" --seed 7 >"$work/sim.json" 2>"$work/sim.log" &
sim=$!
pids+=("$sim")

# The crash: once about 50 presses are decided, with commands in flight.
some() { [ "$(decisions)" -ge 50 ]; }
wait_until 30 some || fail "presses were not decided"
kill_eddy
pass "eddy SIGKILLed with $(decisions) presses decided"
start_eddy "$flow"

wait "$sim" || fail "the simulator did not finish"
expect_eq "simulator published every message" "$(jq .published "$work/sim.json")" "$messages"
presses=$(jq .kinds.press "$work/sim.json")
bowls=$(jq .kinds.bowl "$work/sim.json")
bad=$(jq .kinds.bad "$work/sim.json")
device_events() { events_json | jq -s '[.[] | select(.stream | startswith("cf-"))] | length'; }
all_in() { [ "$(device_events)" -ge $((presses + bowls)) ] && [ "$(decisions)" -ge "$presses" ]; }
wait_until 30 all_in
events_json | jq -s '[.[] | select(.stream | startswith("cf-"))]' >"$work/device.json"
expect_eq "every press stored once" "$(jq '[.[] | select(.type == "ButtonPressed")] | length' "$work/device.json")" "$presses"
expect_eq "every bowl weight stored once" "$(jq '[.[] | select(.type == "BowlWeighed")] | length' "$work/device.json")" "$bowls"
expect_eq "no event id twice" "$(jq '[.[].id] | unique | length' "$work/device.json")" \
    $((presses + bowls))
expect_eq "every bad message in \$deadletter" "$(stream_count '$deadletter')" "$bad"
dl=$("$eddy" events read --data "$work/data" --stream '$deadletter')
for reason in "deviceId is missing" "ts is not a time in ms" "grams is not a number" \
    "not a JSON object"; do
    if grep -qF "$reason" <<<"$dl"; then pass "dead letter: $reason"; else fail "dead letter: $reason"; fi
done

# The decisions against the rules applied here to the stored presses, in log order.
events_json --stream feedings >"$work/feedings.ndjson"
jq -s -r '.[] | select(.type | startswith("Feeding")) |
    [.data.pressId, .data.decision, (.data.reason // "" | split(" ")[0])] | @tsv' \
    "$work/feedings.ndjson" | sort >"$work/decided.tsv"
expect_eq "every press decided once" "$(cut -f1 "$work/decided.tsv" | sort -u | wc -l)" "$presses"
expect_eq "no press decided twice" "$(wc -l <"$work/decided.tsv")" "$presses"
jq -r 'sort_by(.position) | reduce (.[] | select(.type == "ButtonPressed")) as $e
    ({f: {}, out: []};
     ($e.data.deviceId) as $d | ($e.data.ts) as $t |
     ($t / 1000 | floor | strftime("%Y-%m-%d")) as $day |
     (.f[$d] // {}) as $s |
     (if $s.day == $day then $s.portions else 0 end) as $n |
     if $s.lastFed != null and $t - $s.lastFed < 90 * 60000 then
         .out += [[$e.id, "refused", "fed"]]
     elif $n >= 6 then
         .out += [[$e.id, "refused", "daily"]]
     else
         .f[$d] = {lastFed: $t, day: $day, portions: ($n + 1)} | .out += [[$e.id, "approved", ""]]
     end) | .out[] | @tsv' "$work/device.json" | sort >"$work/expected.tsv"
if cmp -s "$work/expected.tsv" "$work/decided.tsv"; then
    pass "every decision, across the crash, is what the rules give on the stored presses"
else
    fail "decisions differ from the rules" "$(diff "$work/expected.tsv" "$work/decided.tsv" | head -5)"
fi
expect_ge "cf-002's cat was refused as fed too recently" \
    "$(grep -c "^cf-002.*	refused	fed" "$work/decided.tsv")" 1
expect_ge "cf-002's cat reached the daily limit" \
    "$(grep -c "^cf-002.*	refused	daily" "$work/decided.tsv")" 1
approved=$(grep -c "	approved	" "$work/decided.tsv")
expect_ge "every feeder fed" "$(grep "	approved	" "$work/decided.tsv" | cut -c1-6 | sort -u | wc -l)" "$feeders"

# Every approved portion commanded, acknowledged and stored as FoodDispensed, once.
acks() { for d in 1 2 3; do count_type "actuator-cf-00$d" ActuatorAcknowledged; done |
    awk '{n += $1} END {print n}'; }
settled() { [ "$(count_type feedings FoodDispensed)" -ge "$approved" ] && [ "$(acks)" -ge "$approved" ]; }
wait_until 20 settled
commands=$(for d in 1 2 3; do count_type "actuator-cf-00$d" ActuatorCommand; done |
    awk '{n += $1} END {print n}')
expect_eq "one command per approved portion" "$commands" "$approved"
expect_eq "every command acknowledged by the feeder" "$(acks)" "$approved"
expect_eq "every portion stored as FoodDispensed" "$(count_type feedings FoodDispensed)" "$approved"

# Read models of the first tab, once the subscription has caught up with the log.
last=$("$eddy" events stats --data "$work/data" | sed -n 's/^events: *\([0-9]*\).*/\1/p')
caught_up() { [ "$(api /api/state/dispensers | jq .position)" -ge "$last" ] 2>/dev/null; }
wait_until 20 caught_up || fail "read models did not catch up with position $last"
expect_eq "dispensers: every feeder's dispenser acknowledged 15 g" \
    "$(api /api/state/dispensers | jq -c '[.keys[] | .state.value] | unique')" '[15]'
expect_eq "dispensers: every feeder" "$(api /api/state/dispensers | jq .count)" "$feeders"
expect_eq "bowls: every feeder" "$(api /api/state/bowls | jq -c '.keys | keys')" \
    '["cf-001","cf-002","cf-003"]'

# The second flow: feedings per feeder and day, from the log alone (replayed on a click).
events_json --stream feedings >"$work/feedings.ndjson"
feedings_last=$(jq -s 'map(.position) | max' "$work/feedings.ndjson")
curl -sf -X POST "http://127.0.0.1:$http/inject/cf-history" >/dev/null ||
    fail "the history inject did not answer"
replayed() { [ "$(api /api/state/feedings-per-day | jq .position)" -ge "$feedings_last" ] 2>/dev/null; }
wait_until 20 replayed || fail "the feeding history was not replayed up to $feedings_last"
jq -s -S 'map(select(.type == "FoodDispensed")) |
    group_by(.data.deviceId + "/grams/" + (.time / 1000 | floor | strftime("%Y-%m-%d"))) |
    map({key: (.[0].data.deviceId + "/grams/" + (.[0].time / 1000 | floor | strftime("%Y-%m-%d"))),
         value: {count: length, sum: (map(.data.grams) | add)}}) | from_entries' \
    "$work/feedings.ndjson" >"$work/per-day.log"
api /api/state/feedings-per-day | jq -S '.keys | map_values({count, sum})' >"$work/per-day.model"
if cmp -s "$work/per-day.log" "$work/per-day.model"; then
    pass "feedings-per-day, replayed from the log, equals the log ($(jq length "$work/per-day.log") feeder-days)"
else
    fail "feedings-per-day differs from the log" "$(diff "$work/per-day.log" "$work/per-day.model" | head -5)"
fi
expect_ge "feedings-per-day spans two days" \
    "$(jq '[keys[] | split("/")[2]] | unique | length' "$work/per-day.model")" 2
expect_eq "no feeder got more than 6 portions a day" \
    "$(jq '[.[].count] | max <= 6' "$work/per-day.model")" true

stop_eddy
expect_eq "eddy exited cleanly" "$?" 0
expect_clean_log
finish
