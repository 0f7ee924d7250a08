#!/usr/bin/env bash
# glasshouse.sh: the glasshouse benchmark (issue 7). 100 devices publish readings through a
# private mosquitto into a flow that windows them per device and publishes the windows:
#
#   memory  mqtt in -> json -> window (1 s tumbling per device) -> switch -> mqtt out
#   store   mqtt in -> json -> event-store -> window -> switch -> mqtt out: every reading
#           is appended durably before the window sees it
#
# run by eddy (bench/flows/glasshouse-eddy.json, glasshouse-eddy-store.json; the store
# variant with eddy's default --fsync always) and by Node-RED 5 on its own version of each
# flow (glasshouse-node-red.json: a function node does the window; glasshouse-node-red-
# file.json: a file node appends each reading as a line first). For each variant and
# runtime, one process on a fresh mosquitto (free 127.0.0.1 port, bench/lib.sh's
# configuration plus set_tcp_nodelay) goes through:
#
#   idle    the publisher's probe has its answer (the flow is loaded and subscribed), then
#           one second of quiet: RSS now is the idle RSS
#   warm-up WARMUP readings at RATE per second, not measured (Node.js compiles the hot
#           code first; a fresh Node-RED falls behind in its first seconds)
#   paced   PACED readings at RATE per second; the latency of each window closed by a later
#           reading, from the publish of that reading to the window's result arriving at
#           the publisher (bench/mqtt_pub.c -s); p50, p99 and max
#   burst   MESSAGES readings as fast as the broker takes them (at most WINDOW
#           unacknowledged), then the end marker: CPU time of the process per reading,
#           readings per second over the wall time from the first publish to the marker's
#           answer, and the peak RSS (VmHWM) afterwards
#
# Checks, or the run fails: every reading published in a phase is counted by a window
# or came back rejected as late (the publisher waits for the last windows, which close on
# their idle timeout; the late ones are printed), mosquitto dropped nothing, and in the
# store variant the store (eddy events stats) or the file (lines) holds every reading.
#
# Settings (environment): MESSAGES (200000), PACED (30000), WARMUP (10000), RATE (2000),
# DEVICES (100), QOS (1), RUNS (1), VARIANTS ("memory store"), RUNTIMES ("eddy node-red"),
# WINDOW (500), BUILD (build), NODE_RED_DIR (see bench/lib.sh), IDS (random; "ordered":
# event ids in time order, as UUIDv7 ids from devices would be); for eddy's store variant
# EDDY_FSYNC (always: eddy's default) and WINDOW_PERSIST (true: the window's default, its
# open windows are kept in the store too).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${BUILD:-build}
messages=${MESSAGES:-200000}
paced=${PACED:-30000}
warmup=${WARMUP:-10000}
rate=${RATE:-2000}
devices=${DEVICES:-100}
qos=${QOS:-1}
runs=${RUNS:-1}
variants=${VARIANTS:-"memory store"}
runtimes=${RUNTIMES:-"eddy node-red"}
window=${WINDOW:-500}
fsync=${EDDY_FSYNC:-always}
id_opt=()
[[ ${IDS:-random} == ordered ]] && id_opt=(-o)
persist=${WINDOW_PERSIST:-true}
# shellcheck source=bench/lib.sh
. "$root/bench/lib.sh"
nr_dir=$(bench_nr_dir)
pub=$root/$build/bench/bench_mqtt_pub
eddy=$root/$build/eddy
hz=$(getconf CLK_TCK)
results_topic='bench/window/#'
# latency is measured: the broker writes without Nagle's delay
broker_conf_extra="set_tcp_nodelay true"

bench_setup glasshouse "$pub" "$eddy"

# Starts runtime $1 on variant $2's flow; sets sub_pid.
start_runtime() {
    rm -rf "$tmp/eddy-data" "$tmp/events.ndjson"
    case $1 in
    eddy)
        local flow=$root/bench/flows/glasshouse-eddy.json
        [[ $2 == store ]] && flow=$root/bench/flows/glasshouse-eddy-store.json
        MQTT_PORT=$port MQTT_QOS=$qos WINDOW_PERSIST=$persist "$eddy" run "$flow" --no-editor \
            --data "$tmp/eddy-data" --fsync "$fsync" --log-level error >"$tmp/sub.log" 2>&1 &
        sub_pid=$!
        pids+=("$sub_pid")
        ;;
    node-red)
        local flow=$root/bench/flows/glasshouse-node-red.json
        [[ $2 == store ]] && flow=$root/bench/flows/glasshouse-node-red-file.json
        MQTT_PORT=$port MQTT_QOS=$qos EVENTS_FILE=$tmp/events.ndjson start_node_red "$flow"
        ;;
    esac
}

# Readings the runtime $1 stored in variant store (after it stopped).
stored_readings() {
    if [[ $1 == eddy ]]; then
        # the probes and end markers have no device: they went to the dead-letter stream
        "$eddy" events stats --data "$tmp/eddy-data" |
            awk '/^events:/ { e = $2 } /^dead letters:/ { d = $3 } END { print e - d }'
    else
        # every message, the probes and end markers too, is a line
        grep -c '"deviceId"' "$tmp/events.ndjson"
    fi
}

results=$tmp/results
: >"$results"

# Measures runtime $2 on variant $1 and appends a line to $results.
run_one() {
    local variant=$1 rt=$2
    start_broker
    start_runtime "$rt" "$variant"
    if ! "$pub" -p "$port" -q "$qos" -s "$results_topic" probe; then
        echo "glasshouse.sh: $rt did not subscribe; its log:" >&2
        cat "$tmp/sub.log" >&2
        return 1
    fi
    sleep 1 # let start-up work (Node-RED's) finish before measuring
    local idle c0 c1 c2 b0 b1 out_paced out_burst peak anon
    idle=$(rss_kib "$sub_pid")
    if ((warmup > 0)) && ! "$pub" "${id_opt[@]}" -p "$port" -q "$qos" -n "$warmup" -d "$devices" -w "$window" \
        -r "$rate" -s "$results_topic" run >/dev/null; then
        echo "glasshouse.sh: $rt, $variant, warm-up: failed; its log:" >&2
        tail -20 "$tmp/sub.log" >&2
        return 1
    fi
    c0=$(cpu_ticks "$sub_pid")
    out_paced=$("$pub" "${id_opt[@]}" -p "$port" -q "$qos" -n "$paced" -d "$devices" -w "$window" \
        -r "$rate" -s "$results_topic" run) || {
        echo "glasshouse.sh: $rt, $variant, paced: failed; its log:" >&2
        tail -20 "$tmp/sub.log" >&2
        return 1
    }
    c1=$(cpu_ticks "$sub_pid")
    b0=$(cpu_ticks "$broker_pid")
    out_burst=$("$pub" "${id_opt[@]}" -p "$port" -q "$qos" -n "$messages" -d "$devices" -w "$window" \
        -s "$results_topic" run) || {
        echo "glasshouse.sh: $rt, $variant, burst: failed; its log:" >&2
        tail -20 "$tmp/sub.log" >&2
        return 1
    }
    c2=$(cpu_ticks "$sub_pid")
    b1=$(cpu_ticks "$broker_pid")
    peak=$(peak_rss_kib "$sub_pid")
    anon=$(awk '/^RssAnon:/ { print $2 }' "/proc/$sub_pid/status")
    sleep 1.5 # the broker's counters are published every second
    local dropped stored=-
    dropped=$(broker_dropped)
    stop "$sub_pid"
    stop "$broker_pid"
    if [[ $dropped != 0 ]]; then
        echo "glasshouse.sh: $rt, $variant: the broker dropped $dropped messages" >&2
        return 1
    fi
    if [[ $variant == store ]]; then
        stored=$(stored_readings "$rt")
        if [[ $stored != $((warmup + paced + messages)) ]]; then
            echo "glasshouse.sh: $rt, $variant: $stored readings stored of" \
                "$((warmup + paced + messages))" >&2
            return 1
        fi
    fi
    # variant runtime rate us/reading idle-KiB peak-KiB anon-KiB p50 p99 max
    # paced-us/reading broker-s publisher-s late-readings(paced+burst)
    local late
    late=$(field "$out_paced" rejected)+$(field "$out_burst" rejected)
    awk -v v="$variant" -v r="$rt" -v n="$messages" -v np="$paced" -v late="$late" \
        -v w="$(field "$out_burst" wall_s)" -v c=$((c2 - c1)) -v cp=$((c1 - c0)) \
        -v b=$((b1 - b0)) -v hz="$hz" -v idle="$idle" -v peak="$peak" -v anon="$anon" \
        -v p50="$(field "$out_paced" latency_p50_ms)" -v p99="$(field "$out_paced" latency_p99_ms)" \
        -v max="$(field "$out_paced" latency_max_ms)" -v p="$(field "$out_burst" pub_cpu_s)" 'BEGIN {
        printf "%s %s %.0f %.2f %d %d %d %.2f %.2f %.2f %.2f %.2f %.2f %s\n", v, r, n / w,
            c / hz * 1e6 / n, idle, peak, anon, p50, p99, max, cp / hz * 1e6 / np, b / hz, p,
            late
    }' | tee -a "$results" | awk '{
        printf "  %-6s %-8s burst %6d msg/s %7.2f us/reading, rss idle %6d peak %7d KiB" \
            " (anon %6d); paced latency p50 %.2f p99 %.2f max %.2f ms, %.2f us/reading;" \
            " broker %.2f s, publisher %.2f s; late (paced+burst) %s\n", $1, $2, $3, $4, $5, $6, $7, $8, $9,
            $10, $11, $12, $13, $14 }'
    [[ -n $stored && $stored != - ]] && echo "         ($stored readings stored)"
    return 0
}

# ---- main ----

if [[ " $runtimes " == *" node-red "* ]]; then
    install_node_red
    node_red_settings
fi
echo "== glasshouse: $devices devices, QoS $qos -> mqtt in -> json -> [store] -> window 1 s" \
    "-> switch -> mqtt out"
echo "   (burst: $messages readings at full speed: rate, CPU per reading, RSS idle / peak;"
echo "    paced: $paced readings at $rate/s after $warmup to warm up: latency of windows closed by a later reading," \
    "CPU per reading; eddy's store: --fsync $fsync, window persist $persist;" \
    "load: $(cut -d' ' -f1-3 /proc/loadavg))"
for _ in $(seq "$runs"); do
    for variant in $variants; do
        for rt in $runtimes; do
            run_one "$variant" "$rt"
        done
    done
done
echo "   (load after: $(cut -d' ' -f1-3 /proc/loadavg))"

# Means over the runs, and the ratios the issue sets goals for.
awk '{ k = $1 " " $2; n[k]++; rate[k] += $3; us[k] += $4; idle[k] += $5; p99[k] += $9
       if ($6 > peak[k]) peak[k] = $6 }
END {
    split("memory store", vs, " ")
    goal["memory"] = 5; goal["store"] = 25
    for (i = 1; i in vs; i++) {
        v = vs[i]
        for (k in n) {
            split(k, f, " ")
            if (f[1] == v)
                printf "  %-6s %-8s mean of %d: %7.0f msg/s %7.2f us/reading, rss idle %d KiB," \
                    " peak %d KiB, p99 %.2f ms\n", v, f[2], n[k], rate[k] / n[k], us[k] / n[k],
                    idle[k] / n[k], peak[k], p99[k] / n[k]
        }
        e = v " eddy"; r = v " node-red"
        if ((e in n) && (r in n))
            printf "  %-6s node-red/eddy CPU per reading: %.1fx (goal >= %dx)\n", v,
                (us[r] / n[r]) / (us[e] / n[e]), goal[v]
        if (e in n)
            printf "  %-6s eddy peak RSS: %.1f MiB (goal <= 16 MiB)\n", v, peak[e] / 1024
    }
}' "$results"
