# seed.sh: sourced by the seed-flow tests (09-glasshouse.sh, ...). Each test runs one of
# flows/*.json unchanged against a real mosquitto on a free loopback port, with its simulator
# from examples/, and reads the result over eddy's HTTP API and from the LMDB files.
#
# Before sourcing: eddy (the binary) and src (the source folder). Provides: $work (removed at
# exit), $build_dir, $MQTT_PORT (exported: the flows read ${MQTT_PORT}), $http (eddy's editor
# port), and the functions below.

build_dir=$(dirname "$eddy")
work=$(mktemp -d)
pids=()
eddy_pid=""
http=""
fails=0
passes=0
seed_cleanup() {
    exec 2>/dev/null
    for p in "${pids[@]}"; do kill -9 "$p"; done
    rm -rf "$work"
}
trap seed_cleanup EXIT

pass() { passes=$((passes + 1)); echo "ok   $1"; }
fail() { fails=$((fails + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && echo "     $2"; }
expect_eq() { # name got want
    if [ "$2" = "$3" ]; then pass "$1"; else fail "$1" "got '$2', want '$3'"; fi
}
expect_ge() { # name got least
    if [ "${2:-0}" -ge "$3" ] 2>/dev/null; then pass "$1"; else fail "$1" "got '$2', want >= $3"; fi
}
# The test's exit status, with a summary line.
finish() {
    echo "$passes passed, $fails failed"
    [ "$fails" -eq 0 ]
}

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Waits up to $1 seconds (a whole number) for the command after it to succeed.
wait_until() {
    local tries=$(($1 * 10))
    shift
    for _ in $(seq "$tries"); do "$@" && return 0; sleep 0.1; done
    "$@"
}

# A fresh mosquitto on a free port, in memory only.
start_broker() {
    MQTT_PORT=$((20000 + RANDOM % 20000))
    while listening "$MQTT_PORT"; do MQTT_PORT=$((MQTT_PORT + 1)); done
    export MQTT_PORT
    printf 'listener %d 127.0.0.1\nallow_anonymous true\nmax_queued_messages 1000000\n' \
        "$MQTT_PORT" >"$work/mosquitto.conf"
    mosquitto -c "$work/mosquitto.conf" >>"$work/mosquitto.log" 2>&1 &
    pids+=($!)
    wait_until 5 listening "$MQTT_PORT" || fail "mosquitto did not start"
}

# Starts `eddy run FLOW --data $work/data` (more arguments are passed on) and waits until its
# HTTP port is known and its MQTT connection is up. Log: $work/eddy.log (appended).
start_eddy() {
    local flow=$1
    shift
    local mark
    mark=$(cat "$work/eddy.log" 2>/dev/null | wc -l)
    "$eddy" run "$flow" --port 0 --data "$work/data" "$@" >>"$work/eddy.log" 2>&1 &
    eddy_pid=$!
    pids+=("$eddy_pid")
    http=""
    for _ in $(seq 100); do
        http=$(tail -n +"$((mark + 1))" "$work/eddy.log" |
            sed -n 's|.*editor on http://127.0.0.1:\([0-9]*\)/.*|\1|p' | head -1)
        [ -n "$http" ] && break
        sleep 0.1
    done
    [ -n "$http" ] || { fail "eddy did not start"; tail -20 "$work/eddy.log"; return 1; }
    connected() { tail -n +"$((mark + 1))" "$work/eddy.log" | grep -q "connected to broker"; }
    wait_until 10 connected || fail "eddy did not connect to the broker"
}

stop_eddy() { # a clean stop; returns eddy's exit status (under ASan, not 0 after a leak)
    kill -TERM "$eddy_pid" 2>/dev/null
    wait "$eddy_pid" 2>/dev/null
}

kill_eddy() { # a crash: no chance to commit, close or say goodbye
    kill -9 "$eddy_pid" 2>/dev/null
    wait "$eddy_pid" 2>/dev/null
}

# GET http://127.0.0.1:$http$1, the body on stdout.
api() { curl -sf "http://127.0.0.1:$http$1"; }

# The number of events in a stream, from the LMDB files (eddy may be running: readers do not
# block it).
stream_count() {
    "$eddy" events read --data "$work/data" --stream "$1" 2>/dev/null | grep -c .
}

# Fails when eddy's log has an error or a sanitizer report (dead letters are warnings the
# seed flows cause on purpose).
expect_clean_log() {
    if grep -E ' error |Sanitizer|runtime error' "$work/eddy.log" | grep -v 'went to \$deadletter' >"$work/errors"; then
        fail "eddy logged errors" "$(head -5 "$work/errors")"
    else
        pass "no errors in eddy's log"
    fi
}
