#!/usr/bin/env bash
# 04-lua-cli: Lua on the command line: the shipped Lua node types and --nodes folders in
# `eddy nodes`, `eddy check` and `eddy run`; a bad type's declaration named by file and
# line; a lua node and a Lua type running in a real process, with a runaway script stopped
# while the flow keeps going.
set -uo pipefail
eddy="$1"
src="$2"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fails=0
passes=0

pass() { passes=$((passes + 1)); echo "ok   $1"; }
fail() { fails=$((fails + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && echo "     $2"; }
expect_contains() { # name haystack needle
    if grep -qF -- "$3" <<<"$2"; then pass "$1"; else fail "$1" "missing: $3"$'\n'"in: $2"; fi
}
expect_lacks() { # name haystack needle
    if grep -qF -- "$3" <<<"$2"; then fail "$1" "unexpected: $3"; else pass "$1"; fi
}

# --- nodes: shipped types, --nodes folders, EDDY_LUA_NODES
out=$("$eddy" nodes 2>&1)
expect_contains "lua node listed" "$out" "lua            in:1 out:n"
expect_contains "dew point shipped" "$out" "dew point      in:1 out:1"
expect_contains "shipped type names its file" "$out" "dew-point/node.lua)"
out=$("$eddy" nodes --nodes "$src/examples/lua-node" 2>&1)
expect_contains "--nodes adds the example" "$out" "moving average in:1 out:1"
out=$(EDDY_LUA_NODES="" "$eddy" nodes 2>&1)
expect_lacks "EDDY_LUA_NODES empty: none shipped" "$out" "dew point"
expect_contains "EDDY_LUA_NODES empty: natives stay" "$out" "switch"
out=$("$eddy" nodes --nodes "$work/missing" 2>&1); rc=$?
[ $rc -eq 1 ] && pass "missing --nodes folder exits 1" || fail "missing --nodes folder exits 1" "rc=$rc"
expect_contains "missing folder named" "$out" "missing: cannot open the node types folder"

# --- a bad declaration stops eddy with file and line
mkdir -p "$work/types/gauge"
cat >"$work/types/gauge/node.lua" <<'LUA'
return {
    name = "gauge",
    outputs = 1,
    properties = {
        {name = "max", type = "number", default = 10},
        {name = "unit", type = "select", options = {"bar", "psi"}, default = "kPa"},
    },
    input = function(node, msg) return msg end,
}
LUA
out=$("$eddy" check "$src/flows/glasshouse.json" --nodes "$work/types" 2>&1); rc=$?
[ $rc -eq 1 ] && pass "bad type: check exits 1" || fail "bad type: check exits 1" "rc=$rc"
expect_contains "bad type: file and line" "$out" "types/gauge/node.lua:6: property 'unit': 'default' is not one of the options"
out=$("$eddy" run "$src/flows/glasshouse.json" --port 0 --nodes "$work/types" --data "$work/data" 2>&1); rc=$?
[ $rc -eq 1 ] && pass "bad type: run exits 1" || fail "bad type: run exits 1" "rc=$rc"

# --- check: a flow using Lua types and a lua node, with problems in each
sed -i 's/default = "kPa"/default = "bar"/' "$work/types/gauge/node.lua"
cat >"$work/uses.json" <<'JSON'
[
  {"id": "t", "type": "tab"},
  {"id": "g", "type": "gauge", "z": "t", "max": "lots", "wires": [[]]},
  {"id": "h", "type": "hysteresis", "z": "t", "low": 30, "high": 20, "wires": [[]]},
  {"id": "l", "type": "lua", "z": "t", "func": "if msg then\n  return msg\n", "outputs": 1, "wires": [[]]}
]
JSON
out=$("$eddy" check "$work/uses.json" --nodes "$work/types" 2>&1); rc=$?
[ $rc -eq 1 ] && pass "check with Lua types exits 1" || fail "check with Lua types exits 1" "rc=$rc"
expect_contains "Lua type property checked" "$out" "uses.json:3: node g (gauge) on tab t: property 'max' must be a number"
expect_contains "Lua validator ran" "$out" "uses.json:4: node h (hysteresis) on tab t: property 'high' must be above low (30)"
expect_contains "lua syntax error with line" "$out" "uses.json:5: node l (lua) on tab t: func:3: 'end' expected"

# --- run: a lua node and a Lua type in a real process; a runaway message is stopped
cat >"$work/run.json" <<'JSON'
[
  {"id": "t", "type": "tab"},
  {"id": "i", "type": "inject", "z": "t", "props": [{"p": "payload"}], "payload": "{\"temperature\": 31, \"humidity\": 60}", "payloadType": "json", "repeat": "0.1", "once": true, "onceDelay": 0, "wires": [["l"]]},
  {"id": "l", "type": "lua", "z": "t", "maxInstructions": 100000,
   "func": "local n = (context.get('n') or 0) + 1\ncontext.set('n', n)\nif n == 2 then while true do end end\nmsg.n = n\nreturn msg",
   "wires": [["dp"]]},
  {"id": "dp", "type": "dew point", "z": "t", "wires": [["d"]]},
  {"id": "d", "type": "debug", "z": "t", "name": "out", "console": true, "active": true, "complete": "true", "wires": []},
  {"id": "c", "type": "catch", "z": "t", "wires": [["dc"]]},
  {"id": "dc", "type": "debug", "z": "t", "name": "caught", "console": true, "active": true, "complete": "error.message", "wires": []}
]
JSON
"$eddy" run "$work/run.json" --port 0 --data "$work/data" >"$work/run.log" 2>&1 &
pid=$!
sleep 1
kill -s TERM "$pid"
wait "$pid"; rc=$?
log=$(cat "$work/run.log")
[ $rc -eq 0 ] && pass "run with Lua exits 0" || fail "run with Lua exits 0" "rc=$rc log=$log"
expect_contains "message through lua and dew point" "$log" "\"dewPoint\":22.3"
expect_contains "runaway message caught" "$log" "[debug caught] error.message: \"func:3: instruction budget exceeded (100000 instructions per call)\""
expect_contains "later messages still flow" "$log" "\"n\":3"

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
