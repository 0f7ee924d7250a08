#!/usr/bin/env bash
# 03-store-events-cli: the event store through the command line on real files. `eddy run
# --data` appends through an event-store node; `eddy events` stats, read (by stream,
# position and time), tail, export and import (exact round trip, idempotent re-import,
# bad lines named), check; a progress line only on a terminal; damaged and foreign files
# reported, not crashed on; a flow without event nodes touches no data folder.
set -uo pipefail
eddy="$1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
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

# --- eddy run appends 300 readings of 3 devices through an event-store node
items=""
for i in $(seq 0 299); do
    items+="{\\\"dev\\\":\\\"dev-$((i % 3))\\\",\\\"id\\\":\\\"r$i\\\",\\\"ts\\\":$((1704067200000 + i * 1000)),\\\"t\\\":$i}"
    [ "$i" -lt 299 ] && items+=","
done
cat >"$work/store.json" <<JSON
[{"id":"t","type":"tab","label":"store"},
 {"id":"i","type":"inject","z":"t","props":[{"p":"payload"}],"payload":"[$items]","payloadType":"json","repeat":"","once":true,"onceDelay":0,"wires":[["sp"]]},
 {"id":"sp","type":"split","z":"t","splt":"\\\\n","spltType":"str","arraySplt":1,"arraySpltType":"len","stream":false,"addname":"","wires":[["s"]]},
 {"id":"s","type":"event-store","z":"t","stream":"payload.dev","eventType":"reading","eventId":"payload.id","eventTime":"payload.ts","wires":[[],[]]}]
JSON
"$eddy" run "$work/store.json" --port 0 --data "$work/data" >"$work/run.log" 2>&1 &
pid=$!
for _ in $(seq 1 100); do
    n=$("$eddy" events stats --data "$work/data" 2>/dev/null | sed -n 's/^events: *\([0-9]*\).*/\1/p')
    [ "${n:-0}" -ge 300 ] && break
    sleep 0.1
done
kill -s TERM "$pid"
wait "$pid"; rc=$?
expect_eq "run with event-store exits 0" "$rc" "0"

out=$("$eddy" events stats --data "$work/data")
expect_contains "stats counts events" "$out" "events:       300 (last position 300)"
expect_contains "stats counts streams" "$out" "streams:      3"
expect_contains "stats counts dead letters" "$out" "dead letters: 0"

# --- read by stream, position, time; tail
out=$("$eddy" events read --data "$work/data" --stream dev-1 --json)
expect_eq "read a stream" "$(wc -l <<<"$out")" "100"
expect_contains "stream in version order" "$(sed -n 2p <<<"$out")" '"stream":"dev-1","version":1,'
out=$("$eddy" events read --data "$work/data" --from 10 --to 12)
expect_eq "read a position range" "$(wc -l <<<"$out")" "3"
expect_contains "table row" "$(head -1 <<<"$out")" "      10  2024-01-01T00:00:09.000Z  dev-0@3  reading  r9  {"
out=$("$eddy" events read --data "$work/data" --stream dev-2 --from-time 2024-01-01T00:01:00Z --to-time 2024-01-01T00:02:00Z --json)
expect_eq "read a time range of a stream" "$(wc -l <<<"$out")" "20"
out=$("$eddy" events read --data "$work/data" --from-time 1704067200000 --to-time 1704067204999 --json)
expect_eq "read a time range of the log" "$(wc -l <<<"$out")" "5"
out=$("$eddy" events tail --data "$work/data" -n 3 --json)
expect_contains "tail ends at the last event" "$(tail -1 <<<"$out")" '"position":300,'
expect_eq "tail -n 3" "$(wc -l <<<"$out")" "3"

# --- export, import elsewhere, export again: byte for byte the same
"$eddy" events export --data "$work/data" -o "$work/all.ndjson" 2>"$work/export.err"
expect_eq "export writes every event" "$(wc -l <"$work/all.ndjson")" "300"
if grep -q $'\r' "$work/export.err"; then fail "no progress when stderr is not a terminal"; else pass "no progress when stderr is not a terminal"; fi
out=$("$eddy" events import --data "$work/copy" "$work/all.ndjson" 2>&1)
expect_contains "import says what it did" "$out" "300 events imported, 0 already there, 0 at new positions"
"$eddy" events export --data "$work/copy" >"$work/again.ndjson"
if cmp -s "$work/all.ndjson" "$work/again.ndjson"; then pass "round trip is exact"; else fail "round trip is exact" "$(diff "$work/all.ndjson" "$work/again.ndjson" | head -5)"; fi
out=$("$eddy" events import --data "$work/copy" <"$work/all.ndjson" 2>&1)
expect_contains "re-import stores nothing" "$out" "0 events imported, 300 already there"

# --- a bad line is named; what came before it is kept
head -5 "$work/all.ndjson" >"$work/bad.ndjson"
echo '{"position":6,"stream":"dev-0","version":"two"}' >>"$work/bad.ndjson"
out=$("$eddy" events import --data "$work/part" "$work/bad.ndjson" 2>&1); rc=$?
expect_eq "bad import exits 1" "$rc" "1"
expect_contains "bad line named" "$out" "bad.ndjson:6: \"version\" is not an integer"
expect_contains "lines before it kept" "$("$eddy" events stats --data "$work/part")" "events:       5"

# --- progress line on a terminal (script gives the command a pseudo-terminal)
if command -v script >/dev/null; then
    out=$(script -qec "'$eddy' events export --data '$work/data' -o '$work/tty.ndjson'" /dev/null)
    expect_contains "progress on a terminal" "$out" "300 events exported"
fi

# --- check: clean, then damaged
out=$("$eddy" events check --data "$work/copy" 2>&1)
expect_contains "check passes a clean store" "$out" "events.mdb: ok"
cp "$work/copy/events.mdb" "$work/cut.mdb"
mkdir "$work/cut" && head -c 20000 "$work/cut.mdb" >"$work/cut/events.mdb"
out=$("$eddy" events stats --data "$work/cut" 2>&1); rc=$?
expect_eq "truncated store refused" "$rc" "1"
expect_contains "truncated store reported" "$out" "is damaged"
mkdir "$work/junk" && head -c 65536 /dev/urandom >"$work/junk/events.mdb"
out=$("$eddy" events read --data "$work/junk" 2>&1); rc=$?
expect_eq "foreign file refused" "$rc" "1"
expect_contains "foreign file reported" "$out" "is not an eddy event store"
out=$("$eddy" events check --data "$work/junk" 2>&1); rc=$?
expect_eq "check of a foreign file exits 1" "$rc" "1"
out=$("$eddy" events stats --data "$work/nothing" 2>&1); rc=$?
expect_contains "missing store reported" "$out" "no event store in"

# --- a flow without event nodes opens no store; bad --fsync is refused
cat >"$work/plain.json" <<'JSON'
[{"id":"t","type":"tab"},{"id":"c","type":"comment","z":"t"}]
JSON
touch "$work/a-file"
"$eddy" run "$work/plain.json" --port 0 --data "$work/a-file/data" >"$work/plain.log" 2>&1 &
pid=$!
sleep 0.3
kill -s TERM "$pid"
wait "$pid"; rc=$?
expect_eq "flow without event nodes needs no data folder" "$rc" "0"
out=$("$eddy" run "$work/store.json" --port 0 --data "$work/data" --fsync sometimes 2>&1); rc=$?
expect_eq "bad --fsync exits 1" "$rc" "1"
expect_contains "bad --fsync said" "$out" "fsync policy must be always, interval[:MS] or never"
out=$("$eddy" help events)
expect_contains "help events" "$out" "eddy events COMMAND"

echo "$passes passed, $fails failed"
[ "$fails" -eq 0 ]
