#!/usr/bin/env bash
# Runs an example flow the way `make run` promises: a local MQTT broker (mosquitto with
# eddy's configuration, started only if nothing listens on 127.0.0.1:$MQTT_PORT), the flow's
# device simulator (flows/NAME.json goes with build/examples/NAME-sim; examples/README.md),
# and eddy in the foreground. Ctrl-C stops all three.
#
# Settings (environment): FLOW, DATA, PORT (editor port), MQTT_PORT (1883), DEVICES (5),
# RATE (readings per second per device, 1), TIME_SCALE (simulated time runs this many times
# faster, 1), SIM=0 to run without the simulator.
set -euo pipefail
cd "$(dirname "$0")/.."
FLOW=${FLOW:-flows/glasshouse.json}
DATA=${DATA:-eddy-data}
PORT=${PORT:-1880}
export MQTT_PORT=${MQTT_PORT:-1883}
DEVICES=${DEVICES:-5}
RATE=${RATE:-1}
TIME_SCALE=${TIME_SCALE:-1}
SIM=${SIM:-1}
build=${BUILD:-build}
logs="$build/run-logs"
mkdir -p "$logs"

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null; }

if listening; then
    echo "run: using the MQTT broker already listening on 127.0.0.1:$MQTT_PORT"
else
    conf="$logs/mosquitto.conf"
    sed "s/^listener 1883 /listener $MQTT_PORT /" examples/mosquitto.conf >"$conf"
    mosquitto -c "$conf" >"$logs/mosquitto.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do listening && break; sleep 0.05; done
    listening || { echo "run: mosquitto did not start (see $logs/mosquitto.log)" >&2; exit 1; }
    echo "run: started mosquitto on 127.0.0.1:$MQTT_PORT (log: $logs/mosquitto.log)"
fi

# Each seed flow has its simulator: flows/NAME.json goes with examples/NAME-sim.
sim="$(basename "$FLOW" .json)-sim"
[ -x "$build/examples/$sim" ] || SIM=0
if [ "$SIM" != 0 ]; then
    "$build/examples/$sim" --port "$MQTT_PORT" --devices "$DEVICES" --rate "$RATE" \
        --time-scale "$TIME_SCALE" >"$logs/simulator.log" 2>&1 &
    pids+=($!)
    echo "run: $sim plays $DEVICES device(s) at $RATE message(s)/s (log: $logs/simulator.log)"
fi

echo "run: the editor will be on http://127.0.0.1:$PORT/ (flows deployed there are kept in $DATA/flows.json)"
# Not exec: the trap must stop the broker and the simulator when eddy exits.
"$build/eddy" run "$FLOW" --data "$DATA" --port "$PORT" &
eddy_pid=$!
trap 'kill -TERM "$eddy_pid" 2>/dev/null || true' INT TERM
wait "$eddy_pid" || true
wait "$eddy_pid" 2>/dev/null || true
