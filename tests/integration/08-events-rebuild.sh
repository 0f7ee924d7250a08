#!/usr/bin/env bash
# 08-events-rebuild: `eddy events rebuild` on real files. `eddy run` appends readings and
# folds them live into a state model; after it stops, the offline rebuild (only the state
# node runs: the inject does not fire again) gives the same model, shows progress on
# stderr and a summary; events imported while no eddy ran are folded by the next rebuild;
# a missing model, a doubled model and a missing --model are refused.
set -uo pipefail
eddy="$1"
work=$(mktemp -d)
trap '[ -n "${pid:-}" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
fails=0
passes=0

pass() { passes=$((passes + 1)); echo "ok   $1"; }
fail() { fails=$((fails + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && echo "     $2"; }
expect_contains() { # name haystack needle
    if grep -qF -- "$3" <<<"$2"; then pass "$1"; else fail "$1" "missing: $3"$'\n'"in: $2"; fi
}
expect_eq() { # name got want
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi
}

items=""
for i in $(seq 0 29); do
    items+="{\\\"deviceId\\\":\\\"dev-$((i % 3))\\\",\\\"temperature\\\":$((i * 7 % 11)),\\\"ts\\\":$((1704067200000 + i * 1000))}"
    [ "$i" -lt 29 ] && items+=","
done
state='"type":"state","z":"t","model":"latest","fold":"latest","timeProperty":"payload.ts","chunk":4'
cat >"$work/flow.json" <<JSON
[{"id":"t","type":"tab","label":"state"},
 {"id":"i","type":"inject","z":"t","props":[{"p":"payload"}],"payload":"[$items]","payloadType":"json","repeat":"","once":true,"onceDelay":0,"wires":[["sp"]]},
 {"id":"sp","type":"split","z":"t","splt":"\\\\n","spltType":"str","arraySplt":1,"arraySpltType":"len","stream":false,"addname":"","wires":[["s"]]},
 {"id":"s","type":"event-store","z":"t","stream":"payload.deviceId","eventType":"Reading","eventTime":"payload.ts","wires":[["m"],[]]},
 {"id":"m",$state,"wires":[[],[]]}]
JSON
# only the model, to read it over HTTP without appending anything
cat >"$work/query.json" <<JSON
[{"id":"t","type":"tab","label":"state"},{"id":"m",$state,"wires":[[],[]]}]
JSON
cat >"$work/twice.json" <<JSON
[{"id":"t","type":"tab","label":"state"},{"id":"m",$state,"wires":[[],[]]},
 {"id":"m2",$state,"wires":[[],[]]}]
JSON

# run FLOW, wait until the model has 'count' keys at 'position', save it in FILE
run_and_read() { # flow count position file
    "$eddy" run "$1" --port 0 --data "$work/data" >"$work/run.log" 2>&1 &
    pid=$!
    local port="" out=""
    for _ in $(seq 1 100); do
        port=$(sed -n 's|.*editor on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/run.log" | head -1)
        [ -n "$port" ] && break
        sleep 0.1
    done
    [ -n "$port" ] || { cat "$work/run.log"; fail "eddy run $1 started"; return 1; }
    for _ in $(seq 1 100); do
        out=$(curl -s "http://127.0.0.1:$port/api/state/latest")
        grep -q "\"count\": *$2" <<<"$out" && grep -q "\"position\": *$3" <<<"$out" && break
        sleep 0.1
    done
    jq -S . <<<"$out" >"$4"
    kill -s TERM "$pid"
    wait "$pid"
    local rc=$?
    pid=""
    expect_eq "eddy run $(basename "$1") exits 0" "$rc" "0"
}

# --- live: 30 readings folded as they are appended
run_and_read "$work/flow.json" 3 30 "$work/live.json" || exit 1
expect_contains "live model: three devices at position 30" "$(tr -d ' \n' <"$work/live.json")" '"count":3,"fold":"latest","keys":{'

# --- offline rebuild from the same flow file
"$eddy" events rebuild --data "$work/data" --flow "$work/flow.json" --model latest \
    >"$work/rb.out" 2>"$work/rb.err"
rc=$?
expect_eq "rebuild exits 0" "$rc" "0"
expect_contains "rebuild: progress on stderr" "$(cat "$work/rb.err")" "rebuilt 30 of 30 events (100%)"
expect_contains "rebuild: names the node" "$(cat "$work/rb.err")" "rebuilding model 'latest' (node m of $work/flow.json)"
expect_contains "rebuild: summary" "$(cat "$work/rb.out")" "model 'latest' rebuilt: 30 events read, 3 keys, at position 30"
n=$("$eddy" events stats --data "$work/data" | sed -n 's/^events: *\([0-9]*\).*/\1/p')
expect_eq "rebuild ran no other node (no new events)" "$n" "30"
run_and_read "$work/query.json" 3 30 "$work/rebuilt.json" || exit 1
if cmp -s "$work/live.json" "$work/rebuilt.json"; then
    pass "rebuilt model equals the live one"
else
    fail "rebuilt model equals the live one" "$(diff "$work/live.json" "$work/rebuilt.json")"
fi

# --- events imported offline reach the model only through a rebuild
"$eddy" events export --data "$work/data" --stream dev-0 --from-version 0 --to-version 0 |
    jq -c '.stream = "dev-9" | .id = "01a209fd-6c6e-79e4-9e0f-000000000099" | .position = 31 | .data.deviceId = "dev-9" | .data.temperature = 99' \
        >"$work/extra.ndjson"
"$eddy" events import --data "$work/data" "$work/extra.ndjson" 2>"$work/err"
expect_contains "one event imported offline" "$(cat "$work/err")" "1 events imported"
"$eddy" events rebuild --data "$work/data" --flow "$work/query.json" --model latest \
    >"$work/rb.out" 2>"$work/rb.err"
rc=$?
expect_eq "second rebuild exits 0" "$rc" "0"
expect_contains "second rebuild: folds the imported event" "$(cat "$work/rb.out")" "31 events read, 4 keys, at position 31"
run_and_read "$work/query.json" 4 31 "$work/again.json" || exit 1
expect_eq "imported reading is in the model" "$(jq -c '.keys["dev-9"].sensors.temperature.value' "$work/again.json")" "99"
expect_eq "other keys unchanged" "$(jq -S '.keys | del(.["dev-9"])' "$work/again.json")" \
    "$(jq -S '.keys' "$work/live.json")"

# --- refusals
"$eddy" events rebuild --data "$work/data" --flow "$work/query.json" --model other \
    >/dev/null 2>"$work/err"
rc=$?
expect_eq "unknown model exits 1" "$rc" "1"
expect_contains "unknown model: names the file and its models" "$(cat "$work/err")" \
    "$work/query.json has no state node with model 'other' (its models: 'latest')"
"$eddy" events rebuild --data "$work/data" --flow "$work/twice.json" --model latest \
    >/dev/null 2>"$work/err"
rc=$?
expect_eq "doubled model exits 1" "$rc" "1"
expect_contains "doubled model: names both nodes" "$(cat "$work/err")" "2 state nodes with model 'latest' (nodes m, m2)"
"$eddy" events rebuild --data "$work/data" --flow "$work/query.json" >/dev/null 2>"$work/err"
rc=$?
expect_eq "no --model is a usage error" "$rc" "2"
"$eddy" events rebuild --data "$work/nothing" --flow "$work/query.json" --model latest \
    >/dev/null 2>"$work/err"
rc=$?
expect_eq "no store exits 1" "$rc" "1"
expect_contains "no store: said" "$(cat "$work/err")" "no event store in $work/nothing"
[ ! -e "$work/nothing/events.mdb" ] && pass "no store: none created" || fail "no store: none created"
"$eddy" events rebuild --data "$work/data" --model latest >/dev/null 2>"$work/err"
rc=$?
expect_eq "no --flow and no deployed flows exits 1" "$rc" "1"
expect_contains "no deployed flows: said" "$(cat "$work/err")" "flows.json (the deployed flows) is missing"
"$eddy" help events | grep -q "rebuild --model NAME" && pass "help events shows rebuild" ||
    fail "help events shows rebuild"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
