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

"${vg[@]}" "$eddy" run "$src/flows/glasshouse.json" --data "$work/data" >"$work/vg.log" 2>&1 &
pid=$!
sleep 4
kill -TERM "$pid"
wait "$pid"
rc=$?
check "run glasshouse, then SIGTERM" "$rc"
grep -q "stopped cleanly" "$work/vg.log" || { fails=$((fails + 1)); echo "FAIL clean stop under valgrind"; cat "$work/vg.log"; }

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
