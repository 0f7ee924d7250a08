#!/usr/bin/env bash
# 06-state-http: a state node's read model over HTTP. `eddy run --port 0` appends readings
# through an event-store node into a "latest" model; GET /api/state/<model> and
# /api/state/<model>/<key> answer JSON; unknown models and keys are 404.
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
    items+="{\\\"deviceId\\\":\\\"dev-$((i % 3))\\\",\\\"temperature\\\":$i,\\\"ts\\\":$((1704067200000 + i * 1000))}"
    [ "$i" -lt 29 ] && items+=","
done
cat >"$work/flow.json" <<JSON
[{"id":"t","type":"tab","label":"state"},
 {"id":"i","type":"inject","z":"t","props":[{"p":"payload"}],"payload":"[$items]","payloadType":"json","repeat":"","once":true,"onceDelay":0,"wires":[["sp"]]},
 {"id":"sp","type":"split","z":"t","splt":"\\\\n","spltType":"str","arraySplt":1,"arraySpltType":"len","stream":false,"addname":"","wires":[["s"]]},
 {"id":"s","type":"event-store","z":"t","stream":"payload.deviceId","eventType":"Reading","eventTime":"payload.ts","wires":[["m"],[]]},
 {"id":"m","type":"state","z":"t","model":"latest","fold":"latest","timeProperty":"payload.ts","wires":[[],[]]}]
JSON
"$eddy" run "$work/flow.json" --port 0 --data "$work/data" >"$work/run.log" 2>&1 &
pid=$!
port=""
for _ in $(seq 1 100); do
    port=$(sed -n 's|.*editor on http://127.0.0.1:\([0-9]*\)/.*|\1|p' "$work/run.log" | head -1)
    [ -n "$port" ] && break
    sleep 0.1
done
[ -n "$port" ] || { cat "$work/run.log"; fail "eddy run started"; exit 1; }
base="http://127.0.0.1:$port/api/state"
out=""
for _ in $(seq 1 100); do
    out=$(curl -s "$base/latest")
    grep -q '"count": *3' <<<"$out" && grep -q '"position": *30' <<<"$out" && break
    sleep 0.1
done
expect_contains "whole model: three devices" "$out" '"count":3'
expect_contains "whole model: at the last position" "$out" '"position":30'
out=$(curl -s "$base/latest/dev-2")
expect_contains "one key: latest temperature" "$out" '"temperature":{"value":29,"time":1704067229000}'
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/latest/dev-9")
expect_eq "unknown key is 404" "$code" "404"
code=$(curl -s -o /dev/null -w '%{http_code}' "$base/nothing")
expect_eq "unknown model is 404" "$code" "404"
kill -s TERM "$pid"
wait "$pid"; rc=$?
pid=""
expect_eq "eddy run exits 0" "$rc" "0"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
