#!/usr/bin/env bash
# 01-flows-cli: the eddy command line on real files: help and version, `eddy check` on
# good and broken flows (every problem listed, with file, line, id, type, tab), and
# `eddy run` stopping cleanly on SIGTERM and SIGINT.
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

# --- help and version
out=$("$eddy" --version); expect_contains "version" "$out" "eddy 0."
out=$("$eddy" --help); expect_contains "help lists run" "$out" "run FLOWS.json"
out=$("$eddy" help run); expect_contains "help run" "$out" "SIGINT or SIGTERM"
out=$("$eddy" help check); expect_contains "help check" "$out" "Every problem is listed"
"$eddy" frobnicate >/dev/null 2>&1; [ $? -eq 2 ] && pass "unknown command exits 2" || fail "unknown command exits 2"

# --- check: the shipped flows are valid
for f in "$src"/flows/*.json; do
    if out=$("$eddy" check "$f" 2>&1); then pass "check $(basename "$f")"; else fail "check $(basename "$f")" "$out"; fi
done

# --- check: every problem is listed
cat >"$work/bad.json" <<'JSON'
[
  {"id": "t1", "type": "tab", "label": "Main"},
  {"id": "fn1", "type": "function", "z": "t1", "func": "return msg;", "wires": [[]]},
  {"id": "x1", "type": "teleport", "z": "t1", "wires": [[]]},
  {"id": "j1", "type": "junction", "z": "t1", "wires": [["nowhere"]]},
  {"id": "lc1", "type": "link call", "z": "t1", "links": ["j1"], "timeout": "later", "wires": [[]]}
]
JSON
out=$("$eddy" check "$work/bad.json" 2>&1); rc=$?
[ $rc -eq 1 ] && pass "check exits 1 on a bad flow" || fail "check exits 1 on a bad flow" "rc=$rc"
expect_contains "function node named with advice" "$out" "bad.json:3: node fn1 (function) on tab t1: JavaScript function nodes cannot run in eddy; use the lua node"
expect_contains "unknown type named" "$out" "bad.json:4: node x1 (teleport) on tab t1: unknown node type 'teleport'"
expect_contains "dangling wire named" "$out" "bad.json:5: node j1 (junction) on tab t1: output 1 is wired to missing node 'nowhere'"
expect_contains "bad property named" "$out" "bad.json:6: node lc1 (link call) on tab t1: property 'timeout' must be a number"
expect_contains "problem count" "$out" "4 problems"

# --- check: malformed JSON gives line and column
printf '[\n  {"id": "a", "type": "junction"\n  {"id": "b"}\n]\n' >"$work/broken.json"
out=$("$eddy" check "$work/broken.json" 2>&1)
expect_contains "malformed JSON with line" "$out" "broken.json:3:"
expect_contains "malformed JSON said" "$out" "malformed JSON"

# --- check: truncated file, empty file, missing file
head -c 300 "$src/flows/glasshouse.json" >"$work/truncated.json"
out=$("$eddy" check "$work/truncated.json" 2>&1); rc=$?
[ $rc -eq 1 ] && pass "truncated flow refused" || fail "truncated flow refused" "$out"
: >"$work/empty.json"
out=$("$eddy" check "$work/empty.json" 2>&1)
expect_contains "empty flow refused" "$out" "malformed JSON"
out=$("$eddy" check "$work/none.json" 2>&1)
expect_contains "missing file named" "$out" "none.json: cannot open the flow file"

# --- run: a bad flow is not started
out=$("$eddy" run "$work/bad.json" --port 0 --data "$work/data" 2>&1); rc=$?
[ $rc -eq 1 ] && pass "run refuses a bad flow" || fail "run refuses a bad flow" "rc=$rc"
expect_contains "run says it was not started" "$out" "was not started"

# --- run: stops cleanly on SIGTERM and SIGINT, after running the flow
cat >"$work/tick.json" <<'JSON'
[
  {"id": "t", "type": "tab", "label": "tick"},
  {"id": "i", "type": "inject", "z": "t", "props": [{"p": "payload"}], "payload": "tick", "payloadType": "str", "repeat": "0.1", "once": true, "onceDelay": 0, "wires": [["d"]]},
  {"id": "d", "type": "debug", "z": "t", "name": "ticks", "console": true, "wires": []}
]
JSON
for sig in TERM INT; do
    "$eddy" run "$work/tick.json" --port 0 --data "$work/data" >"$work/run.log" 2>&1 &
    pid=$!
    sleep 1
    kill -s "$sig" "$pid"
    wait "$pid"; rc=$?
    log=$(cat "$work/run.log")
    [ $rc -eq 0 ] && pass "SIG$sig exits 0" || fail "SIG$sig exits 0" "rc=$rc log=$log"
    expect_contains "SIG$sig: flow ran" "$log" "[debug ticks] payload: \"tick\""
    expect_contains "SIG$sig: clean stop logged" "$log" "stopped cleanly"
done

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
