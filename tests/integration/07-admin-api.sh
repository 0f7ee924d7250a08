#!/usr/bin/env bash
# 07-admin-api: the editor's admin HTTP API and /comms on a real `eddy run --port 0`, route
# by route as ../shared/EDITOR-API.md lists them, with curl: loading the editor (page, theme,
# locales, settings, user settings kept across a restart, plugins, node catalogue, icons),
# deploys (revisions and 409, bad bodies, invalid flows refused with every problem while the
# running flow goes on, unknown types accepted with the missing-types notification, 413,
# the modified-nodes/flows/reload modes, the files in the data folder, a restart running the
# last deploy), the inject and debug buttons, credentials (encrypted, never sent back, kept
# by a deploy without them), the context sidebar, and the login (401, prompts, 403, 429,
# tokens and their revocation, /comms auth).
#
# Helpers from the build, passed by tests/CMakeLists.txt: $EDDY_COMMS_CLIENT (a /comms
# websocket client) and $EDDY_HASH_PW (a bcrypt hasher). Needs curl and jq.
set -uo pipefail
eddy="$1"
src="$2"
comms="${EDDY_COMMS_CLIENT:?EDDY_COMMS_CLIENT: the comms_client helper (see tests/CMakeLists.txt)}"
hash_pw="${EDDY_HASH_PW:?EDDY_HASH_PW: the hash_pw helper (see tests/CMakeLists.txt)}"
work=$(mktemp -d)
pid=""
bg_pids=()
cleanup() {
    for p in "${bg_pids[@]}" $pid; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT
fails=0
passes=0
# Upper bound for anything to happen (the ASan build is slow); checks end as soon as it has.
tries=400 # x 0.05 s

pass() { passes=$((passes + 1)); echo "ok   $1"; }
fail() { fails=$((fails + 1)); echo "FAIL $1"; [ -n "${2:-}" ] && echo "     $2"; }
expect_contains() { # name haystack needle
    if grep -qF -- "$3" <<<"$2"; then pass "$1"; else fail "$1" "missing: $3"$'\n'"in: ${2:0:2000}"; fi
}
expect_lacks() { # name haystack needle
    if grep -qF -- "$3" <<<"$2"; then fail "$1" "unexpected: $3"; else pass "$1"; fi
}
expect_eq() { # name got want
    if [ "$2" == "$3" ]; then pass "$1"; else fail "$1" "got:  ${2:0:2000}"$'\n'"     want: $3"; fi
}
expect_jq() { # name json filter: the filter must give true
    local got
    got=$(jq -e "$3" <<<"$2" 2>&1)
    if [ "$got" == "true" ]; then pass "$1"; else fail "$1" "jq '$3' gave: $got"$'\n'"     on: ${2:0:2000}"; fi
}
wait_for() { # file needle: true once the file holds the needle
    for _ in $(seq $tries); do
        grep -qF -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# --- the server: start_eddy ARGS... (sets pid, port, base, log), stop_eddy
runs=0
start_eddy() {
    runs=$((runs + 1))
    log="$work/eddy.$runs.log"
    "$eddy" run "$@" --port 0 >"$log" 2>&1 &
    pid=$!
    port=""
    if wait_for "$log" "editor on http://127.0.0.1:"; then
        port=$(grep -o 'editor on http://127.0.0.1:[0-9]*' "$log" | head -1 | sed 's/.*://')
    fi
    base="http://127.0.0.1:$port"
    [ -n "$port" ] || { fail "eddy run $* started" "$(cat "$log")"; exit 1; }
}
stop_eddy() {
    kill -TERM "$pid"
    wait "$pid"
    local rc=$?
    pid=""
    [ $rc -eq 0 ] && grep -qF "stopped cleanly" "$log" && pass "eddy run $runs stopped cleanly" ||
        fail "eddy run $runs stopped cleanly" "rc=$rc: $(tail -5 "$log")"
}

# --- requests: req METHOD PATH [curl args...] sets status, body, headers
req() {
    local method="$1" path="$2"
    shift 2
    status=$(curl -s -o "$work/body" -D "$work/headers" -w '%{http_code}' -X "$method" \
        -H "Node-RED-API-Version: ${api:-v2}" "$@" "$base/$path")
    body=$(tr -d '\0' <"$work/body") # binary bodies (gzip, icons) hold NULs
    headers=$(tr -d '\r' <"$work/headers")
}
expect_status() { # name want
    if [ "$status" == "$2" ]; then pass "$1"; else fail "$1" "status $status, want $2: ${body:0:2000}"; fi
}
deploy() { # json [type] [curl args...]
    local json="$1" type="${2:-full}"
    shift 2 2>/dev/null || shift
    req POST flows -H 'Content-Type: application/json' -H "Node-RED-Deployment-Type: $type" \
        --data-binary "$json" "$@"
}
current_rev() { req GET flows; jq -r .rev <<<"$body"; }
deploy_line() { grep "deployed:" "$log" | tail -1 | sed 's/.*deployed: //'; }
deploy_count() { grep -c "deployed:" "$log"; }

data="$work/data"
start_eddy --data "$data"

# --- loading the editor
req GET ""
expect_status "GET / answers" 200
expect_contains "GET / is HTML" "$headers" "content-type: text/html"
expect_contains "GET / is eddy's page" "$body" "<title>eddy</title>"
req GET theme
expect_status "theme answers" 200
expect_jq "theme brands eddy" "$body" '.page.title == "eddy" and .header.title == "eddy" and .themes == []'
expect_jq "theme names the editor's assets" "$body" '.asset.red == "red/red.min.js" and .asset.main == "red/main.min.js"'
req GET "locales/editor?lng=en-US"
expect_status "locales/editor en-US answers" 200
expect_jq "locales/editor en-US is the catalogue" "$body" '.common.label.name | type == "string"'
req GET "locales/editor?lng=en"
expect_eq "locales/editor en is {}" "$status $body" "200 {}"
req GET "locales/node-red?lng=en-US"
expect_jq "locales/node-red is the nodes' catalogue" "$body" '.inject | type == "object"'
req GET "locales/unknown-ns?lng=en-US"
expect_eq "an unknown locale namespace is {}" "$status $body" "200 {}"
req GET settings -H 'Accept: application/json'
expect_status "settings answers" 200
expect_jq "settings: telemetry off" "$body" '.telemetryEnabled == false'
expect_jq "settings: no user without auth" "$body" 'has("user") | not'
expect_jq "settings: tours and palette installs off" "$body" '.editorTheme.tours == false and .externalModules.palette.allowInstall == false'
expect_jq "settings: what core node HTML reads" "$body" '.functionExternalModules == false and .tlsConfigDisableLocalFiles == true'
req GET auth/login
expect_eq "auth/login without adminAuth is {}" "$status $body" "200 {}"

# --- user settings, kept in the data folder
req GET settings/user
expect_eq "settings/user starts empty" "$status $body" "200 {}"
user_settings='{"view":{"view-grid-size":30,"view-show-grid":false},"editor":{"view":{"view-store-zoom":true}}}'
req POST settings/user -H 'Content-Type: application/json' --data-binary "$user_settings"
expect_status "POST settings/user: 204" 204
req GET settings/user
expect_jq "settings/user gives back what was posted" "$body" ". == $user_settings"
req POST settings/user -H 'Content-Type: application/json' --data-binary '{"view":'
expect_status "POST settings/user, bad JSON: 400" 400
req POST settings/user -H 'Content-Type: application/json' --data-binary '[1,2]'
expect_status "POST settings/user, not an object: 400" 400
req GET settings/user
expect_jq "refused user settings change nothing" "$body" ". == $user_settings"

# --- plugins, node catalogue, icons
req GET plugins -H 'Accept: application/json'
expect_eq "plugins as JSON: []" "$status $body" "200 []"
req GET plugins -H 'Accept: text/html'
expect_eq "plugins as HTML: empty" "$status $body" "200 "
expect_contains "plugins as HTML: text/html" "$headers" "content-type: text/html"
req GET "plugins/messages?lng=en-US"
expect_eq "plugins/messages: {}" "$status $body" "200 {}"
req GET nodes -H 'Accept: application/json'
expect_status "nodes as JSON answers" 200
sets_json="$body"
expect_jq "nodes: each set has id, types, enabled, module" "$sets_json" 'all(.[]; (.id | type == "string") and (.types | type == "array") and .enabled == true and (.module | type == "string"))'
types=$("$eddy" nodes | grep -v '^ ' | sed -E 's/ +in:[0-9]+ out:.*$//')
missing_types=""
while IFS= read -r t; do
    jq -e --arg t "$t" 'any(.[]; .types | index($t))' <<<"$sets_json" >/dev/null || missing_types+="[$t] "
done <<<"$types"
expect_eq "nodes: every type of \`eddy nodes\` is in a set ($(wc -l <<<"$types") types)" "$missing_types" ""
expect_jq "nodes: the Lua type dew point is its own set" "$sets_json" 'any(.[]; .id == "eddy-lua/dew%20point" and .types == ["dew point"])'
req GET nodes -H 'Accept: text/html'
expect_status "nodes as HTML answers" 200
html="$body"
expect_contains "nodes as HTML: text/html" "$headers" "content-type: text/html"
missing_sets=""
for id in $(jq -r '.[].id' <<<"$sets_json"); do
    grep -qF -- "<!-- --- [red-module:$id] --- -->" <<<"$html" || missing_sets+="[$id] "
done
expect_eq "nodes as HTML: a red-module marker for every set" "$missing_sets" ""
expect_contains "nodes as HTML: dew point registered" "$html" 'RED.nodes.registerType("dew point"'
expect_contains "nodes as HTML: inject is Node-RED's" "$html" "RED.nodes.registerType('inject'"
req GET nodes
expect_contains "nodes without Accept: HTML" "$headers" "content-type: text/html"
req GET "nodes/messages?lng=en-US"
expect_jq "nodes/messages: an object" "$body" 'type == "object"'
req GET icons -H 'Accept: application/json'
expect_jq "icons lists node-red's" "$body" '.["node-red"] | index("inject.svg") != null'
req GET icons/node-red/inject.svg
inject_svg="$body"
expect_status "icons/node-red/inject.svg answers" 200
expect_contains "an icon is an image" "$headers" "content-type: image/svg+xml"
req GET icons/node-red/arrow-in.svg
arrow_svg="$body"
req GET icons/node-red/no-such-icon.svg
expect_eq "an unknown icon is arrow-in.svg" "$status $body" "200 $arrow_svg"
[ "$arrow_svg" != "$inject_svg" ] && pass "icons differ by name" || fail "icons differ by name"
for p in "icons/node-red/..%2F..%2Fnodes%2Fpackage.json" "icons/..%2F..%2Fnodes/package.json"; do
    req GET "$p" --path-as-is
    { [ "$status $body" == "200 $arrow_svg" ] || [ "$status" == 404 ]; } && pass "$p: never a file outside the icons" ||
        fail "$p: never a file outside the icons" "$status ${body:0:200}"
done
# static files: the editor's public folder (pre-compressed when the client takes gzip),
# the debug node's pop-out view, eddy's favicon
req GET red/keymap.json
expect_status "static red/keymap.json answers" 200
expect_jq "static red/keymap.json is the editor's keymap" "$body" 'type == "object" and has("*")'
req GET red/red.min.js -H 'Accept-Encoding: gzip'
expect_contains "static: gzip for a client that takes it" "$headers" "Content-Encoding: gzip"
expect_contains "static: long cache" "$headers" "max-age=86400"
req GET red/red.min.js
expect_lacks "static: plain for a client without gzip" "$headers" "Content-Encoding: gzip"
req GET debug/view/debug-utils.js
expect_status "debug/view/debug-utils.js answers" 200
expect_contains "debug/view: JavaScript" "$headers" "content-type: application/javascript"
req GET favicon.ico
expect_eq "favicon.ico: an icon" "$status $(grep -i '^content-type' <<<"$headers")" "200 content-type: image/x-icon"
req GET red/no-such-file.js
expect_status "a missing static file: 404" 404
req GET "library/local/flows/"
expect_eq "library/local/flows: empty" "$status $body" "200 []"
req GET no/such/route
expect_status "an unknown path: 404" 404

# --- GET flows before any deploy
req GET flows
expect_jq "flows: {flows, rev}" "$body" '(.flows == []) and (.rev | test("^[0-9a-f]{64}$"))'
rev0=$(jq -r .rev <<<"$body")
api=v1 req GET flows
expect_eq "flows, API v1: the bare array" "$body" "[]"

# --- a full deploy: two tabs, an inject -> lua -> debug chain, an MQTT broker with
# credentials, a debug node on its own tab
flows_a='[
  {"id":"t1","type":"tab","label":"one"},
  {"id":"t2","type":"tab","label":"two"},
  {"id":"i1","type":"inject","z":"t1","name":"go","props":[{"p":"payload"}],"payload":"hello","payloadType":"str","repeat":"","once":false,"wires":[["l1"]]},
  {"id":"l1","type":"lua","z":"t1","name":"count","func":"local n = (context.get(\"count\") or 0) + 1\ncontext.set(\"count\", n)\nflow.set(\"last\", msg.payload)\nglobal.set(\"seen\", {n = n, what = msg.payload})\nmsg.count = n\nreturn msg","outputs":1,"wires":[["d1"]]},
  {"id":"d1","type":"debug","z":"t1","name":"out","active":true,"tosidebar":true,"console":true,"complete":"true","targetType":"full","wires":[]},
  {"id":"i2","type":"inject","z":"t2","name":"other","props":[{"p":"payload"}],"payload":"2","payloadType":"num","repeat":"","once":false,"wires":[["d2"]]},
  {"id":"d2","type":"debug","z":"t2","name":"two","active":true,"tosidebar":true,"console":true,"complete":"payload","targetType":"msg","wires":[]},
  {"id":"b1","type":"mqtt-broker","name":"broker","broker":"127.0.0.1","port":"1","clientid":"","usetls":false,"protocolVersion":"4","keepalive":"60","cleansession":true,"credentials":{"user":"alice","password":"s3cret-pw"}}
]'
deploy "{\"flows\":$flows_a,\"rev\":\"$rev0\"}"
expect_status "full deploy: 200" 200
rev1=$(jq -r .rev <<<"$body")
expect_jq "full deploy answers {rev}" "$body" '.rev | test("^[0-9a-f]{64}$")'
[ "$rev1" != "$rev0" ] && pass "the deploy made a new rev" || fail "the deploy made a new rev" "$rev1"
req GET flows
expect_eq "GET flows has the new rev" "$(jq -r .rev <<<"$body")" "$rev1"
flows_now="$body"
expect_jq "GET flows: the deployed nodes" "$flows_now" '[.flows[].id] == ["t1","t2","i1","l1","d1","i2","d2","b1"]'
expect_lacks "GET flows: no credentials" "$flows_now" "credentials"
expect_lacks "GET flows: no password" "$flows_now" "s3cret-pw"
expect_lacks "GET flows: no user" "$flows_now" "alice"
expect_eq "full deploy: every node started" "$(deploy_line)" "6 node(s) started, 0 stopped, 0 kept"
[ -f "$data/flows.json" ] && pass "flows.json written" || fail "flows.json written"
expect_jq "flows.json holds the deployed flows" "$(cat "$data/flows.json" 2>/dev/null)" '[.[].id] == ["t1","t2","i1","l1","d1","i2","d2","b1"]'
expect_lacks "flows.json: no password" "$(cat "$data/flows.json" 2>/dev/null)" "s3cret-pw"
cred_file=$(cat "$data/flows_cred.json" 2>/dev/null)
[ -n "$cred_file" ] && pass "flows_cred.json written" || fail "flows_cred.json written"
expect_lacks "flows_cred.json: no plaintext password" "$cred_file" "s3cret-pw"
expect_lacks "flows_cred.json: no plaintext user" "$cred_file" "alice"
"$comms" --until "$rev1" "$port" notification/runtime-deploy >"$work/c.deploy" 2>&1 &&
    pass "/comms: runtime-deploy retained with the rev" || fail "/comms: runtime-deploy retained with the rev" "$(cat "$work/c.deploy")"
"$comms" --until '"state":"start"' "$port" notification/runtime-state >"$work/c.state" 2>&1 &&
    pass "/comms: runtime-state start retained" || fail "/comms: runtime-state start retained" "$(cat "$work/c.state")"

# --- credentials
req GET credentials/mqtt-broker/b1
expect_jq "credentials: user and has_password" "$body" '. == {"user":"alice","has_password":true}'
expect_lacks "credentials: never the password" "$body" "s3cret-pw"
req GET credentials/mqtt-broker/nope
expect_eq "credentials of an unknown node: {}" "$status $body" "200 {}"
# the editor sends back only changed fields: none here, or the password placeholder
flows_nocred=$(jq -c 'map(del(.credentials))' <<<"$flows_a")
deploy "{\"flows\":$flows_nocred,\"rev\":\"$rev1\"}"
expect_status "deploy without credentials: 200" 200
rev2=$(jq -r .rev <<<"$body")
expect_eq "the same flows keep their rev" "$rev2" "$rev1"
req GET credentials/mqtt-broker/b1
expect_jq "a deploy without credentials keeps them" "$body" '. == {"user":"alice","has_password":true}'
[ -f "$data/flows.json.backup" ] && pass "flows.json.backup kept" || fail "flows.json.backup kept"
flows_pwrd=$(jq -c 'map(if .id == "b1" then .credentials = {"user":"bob","password":"__PWRD__"} else . end)' <<<"$flows_nocred")
deploy "{\"flows\":$flows_pwrd,\"rev\":\"$rev1\"}"
expect_status "deploy changing the user only: 200" 200
req GET credentials/mqtt-broker/b1
expect_jq "__PWRD__ keeps the password, the user changes" "$body" '. == {"user":"bob","has_password":true}'
expect_lacks "flows_cred.json: still no plaintext" "$(cat "$data/flows_cred.json")" "s3cret-pw"

# --- deploy errors; the running flow stays as it is
rev_before=$(current_rev)
deploy "{\"flows\":$flows_nocred,\"rev\":\"$rev0\"}"
expect_status "stale rev: 409" 409
expect_jq "stale rev: version_mismatch" "$body" '.code == "version_mismatch" and (.message | type == "string")'
deploy '{"flows":[{"id":"t1","type":"tab"'
expect_status "bad JSON: 400" 400
expect_jq "bad JSON: code and message" "$body" '.code == "invalid_json" and (.message | length > 0)'
deploy '{"flows":{"id":"t1"}}'
expect_status "flows not an array: 400" 400
deploy '{"flows":[{"type":"tab"}]}'
expect_status "a node without an id: 400" 400
deploy '{"flows":[42]}'
expect_status "a node that is no object: 400" 400
deploy "{\"flows\":$flows_nocred}" frobnicate
expect_status "unknown deployment type: 400" 400
deploy '{"flows":[{"id":"t9","type":"tab"},{"id":"a","type":"inject","z":"t9","wires":[[]]},{"id":"a","type":"debug","z":"t9","wires":[]}]}'
expect_status "a duplicate id: 400" 400
expect_contains "a duplicate id: named" "$body" "id 'a' is used by more than one node"
deploy '{"flows":[{"id":"a","type":"inject","z":"no-tab","wires":[[]]}]}'
expect_status "a node on a missing tab: 400" 400
expect_contains "a node on a missing tab: named" "$body" "no-tab"
flows_bad=$(jq -c '. + [
  {"id":"dl","type":"delay","z":"t1","pauseType":"delay","timeout":"soon","timeoutUnits":"seconds","wires":[[]]},
  {"id":"mi","type":"mqtt in","z":"t1","topic":"x","qos":"0","broker":"no-such-broker","wires":[[]]},
  {"id":"ls","type":"lua","z":"t2","func":"if then","outputs":1,"wires":[[]]}]' <<<"$flows_nocred")
deploy "{\"flows\":$flows_bad,\"rev\":\"$rev_before\"}"
expect_status "invalid flow: 400" 400
expect_jq "invalid flow: code invalid_flows" "$body" '.code == "invalid_flows"'
expect_jq "invalid flow: every problem listed" "$body" '[.problems[].id] | sort == ["dl","ls","mi"]'
expect_contains "invalid flow: the bad property named" "$body" "timeout"
expect_contains "invalid flow: the dangling config node named" "$body" "no-such-broker"
req GET flows
expect_eq "invalid flow: the rev is unchanged" "$(jq -r .rev <<<"$body")" "$rev_before"
expect_jq "invalid flow: GET flows unchanged" "$body" '[.flows[].id] == ["t1","t2","i1","l1","d1","i2","d2","b1"]'
# oversized body: over 5 MiB
{ printf '{"flows":[{"id":"big","type":"comment","z":"t1","info":"'; head -c $((5 * 1024 * 1024 + 10)) /dev/zero | tr '\0' 'x'; printf '"}]}'; } >"$work/big.json"
deploy "@$work/big.json"
expect_status "a body over 5 MiB: 413" 413
expect_eq "after 413: the rev is unchanged" "$(current_rev)" "$rev_before"
# a chunked body (no Content-Length): libwebsockets does not decode chunked request bodies,
# so eddy must refuse it (411) rather than run the handler on an empty body
deploy "{\"flows\":$flows_nocred}" full -H 'Transfer-Encoding: chunked'
expect_status "a chunked deploy body: 411" 411
expect_jq "a chunked body: code length_required" "$body" '.code == "length_required"'
req POST settings/user -H 'Content-Type: application/json' -H 'Transfer-Encoding: chunked' --data-binary '{"view":{}}'
expect_status "a chunked settings/user body: 411" 411
n_deploys=$(deploy_count)

# the flow still runs: inject -> lua -> debug, on the console and on /comms
"$comms" --timeout 60 "$port" debug notification/runtime-deploy >"$work/c.debug" 2>&1 &
bg_pids+=($!)
wait_for "$work/c.debug" "$rev_before" && pass "/comms: debug subscribed" || fail "/comms: debug subscribed" "$(cat "$work/c.debug")"
req POST inject/i1 -H 'Content-Type: application/json' --data-binary '{}'
expect_status "inject/i1: 200" 200
wait_for "$log" '[debug out]' && pass "the running flow still runs after refused deploys" ||
    fail "the running flow still runs after refused deploys" "$(tail -5 "$log")"
expect_contains "the message went through the lua node" "$(grep '\[debug out\]' "$log")" '"count":1'
wait_for "$work/c.debug" '"id":"d1"' && pass "/comms: the debug message arrives" || fail "/comms: the debug message arrives" "$(cat "$work/c.debug")"
dbg=$(grep '"topic":"debug"' "$work/c.debug" | head -1)
expect_jq "/comms debug: id, z, name, format, msg" "$dbg" '.data.id == "d1" and .data.z == "t1" and .data.name == "out" and .data.format == "Object" and (.data.msg | fromjson | .payload == "hello" and .count == 1)'
expect_eq "refused deploys deployed nothing" "$(deploy_count)" "$n_deploys"

# --- the inject button
req POST inject/nope -H 'Content-Type: application/json' --data-binary '{}'
expect_status "inject of an unknown id: 404" 404
req POST inject/d1 -H 'Content-Type: application/json' --data-binary '{}'
expect_status "inject of a debug node: 404" 404
req POST inject/i1 -H 'Content-Type: application/json' --data-binary '{"__user_inject_props__":[{"p":"payload","v":"from-dialog","vt":"str"}]}'
expect_status "inject with the dialog's properties: 200" 200
wait_for "$log" 'from-dialog' && pass "the dialog's payload is injected" || fail "the dialog's payload is injected" "$(tail -3 "$log")"
req POST inject/i1 -H 'Content-Type: application/json' --data-binary '{"__user_inject_props__":'
expect_status "inject with bad JSON: 400" 400

# --- debug buttons
req POST debug/d1/disable
expect_status "debug/d1/disable: 201" 201
req POST inject/i1 -H 'Content-Type: application/json' --data-binary '{"__user_inject_props__":[{"p":"payload","v":"while-off","vt":"str"}]}'
req POST debug/d1/enable
expect_status "debug/d1/enable: 200" 200
req POST inject/i1 -H 'Content-Type: application/json' --data-binary '{"__user_inject_props__":[{"p":"payload","v":"back-on","vt":"str"}]}'
wait_for "$log" 'back-on' && pass "an enabled debug node shows messages" || fail "an enabled debug node shows messages"
expect_lacks "a disabled debug node shows nothing" "$(cat "$log")" "while-off"
req POST debug/nope/enable
expect_status "debug of an unknown id: 404" 404
req POST debug/i1/enable
expect_status "debug enable of an inject node: 404" 404
req POST debug/d1/frobnicate
expect_status "an unknown debug action: 404" 404
req POST debug/disable --data 'nodes[]=d1&nodes[]=d2'
expect_status "debug/disable with nodes[]: 201" 201
req POST inject/i2 -H 'Content-Type: application/json' --data-binary '{}'
req POST inject/i1 -H 'Content-Type: application/json' --data-binary '{"__user_inject_props__":[{"p":"payload","v":"both-off","vt":"str"}]}'
req POST debug/enable --data 'nodes[]=d1&nodes[]=d2'
expect_status "debug/enable with nodes[]: 200" 200
req POST inject/i2 -H 'Content-Type: application/json' --data-binary '{"__user_inject_props__":[{"p":"payload","v":"two-on","vt":"str"}]}'
req POST inject/i1 -H 'Content-Type: application/json' --data-binary '{"__user_inject_props__":[{"p":"payload","v":"one-on","vt":"str"}]}'
wait_for "$log" 'one-on' && wait_for "$log" 'two-on' && pass "debug/enable switched both on" || fail "debug/enable switched both on" "$(tail -5 "$log")"
expect_lacks "debug/disable switched both off" "$(cat "$log")" "both-off"
expect_lacks "debug/disable switched d2 off" "$(grep '\[debug two\]' "$log")" "payload: 2"

# --- context sidebar
req GET context/node/l1
expect_status "context/node answers" 200
expect_jq "context/node: the lua node's counter" "$body" '.memory.count.format == "number" and (.memory.count.msg | tostring) == "6"'
req GET context/flow/t1
expect_jq "context/flow: the tab's value" "$body" '.memory.last.format == "string[6]" and .memory.last.msg == "one-on"'
req GET context/global
expect_jq "context/global: an object" "$body" '.memory.seen.format == "Object" and (.memory.seen.msg | fromjson) == {"n":6,"what":"one-on"}'
req GET context/global/seen
expect_jq "context/global/<key>: one entry" "$body" '.format == "Object"'
req GET context/node/nope
expect_eq "context of an unknown node: empty" "$status $body" '200 {"memory":{}}'
req GET context/bogus/x
expect_status "an unknown context scope: 404" 404

# --- modified nodes, modified flows, reload
rev=$(current_rev)
flows_b=$(jq -c 'map(if .id == "d2" then .name = "two-b" else . end)' <<<"$flows_nocred")
deploy "{\"flows\":$flows_b,\"rev\":\"$rev\"}" nodes
expect_status "modified-nodes deploy: 200" 200
expect_eq "modified nodes: only the changed node restarted" "$(deploy_line)" "1 node(s) started, 1 stopped, 5 kept"
rev=$(jq -r .rev <<<"$body")
flows_c=$(jq -c 'map(if .id == "d2" then .name = "two-c" else . end)' <<<"$flows_b")
deploy "{\"flows\":$flows_c,\"rev\":\"$rev\"}" flows
expect_status "modified-flows deploy: 200" 200
expect_eq "modified flows: the changed tab restarted" "$(deploy_line)" "2 node(s) started, 2 stopped, 4 kept"
rev=$(jq -r .rev <<<"$body")
flows_d=$(jq -c 'map(if .id == "i1" then .x = 400 else . end)' <<<"$flows_c")
deploy "{\"flows\":$flows_d,\"rev\":\"$rev\"}" nodes
expect_eq "modified nodes: moving a node restarts nothing" "$(deploy_line)" "0 node(s) started, 0 stopped, 6 kept"
rev=$(jq -r .rev <<<"$body")
req POST flows -H 'Node-RED-Deployment-Type: reload'
expect_status "reload: 200" 200
expect_eq "reload keeps the rev" "$(jq -r .rev <<<"$body")" "$rev"
expect_eq "reload restarts everything" "$(deploy_line)" "6 node(s) started, 6 stopped, 0 kept"
req GET credentials/mqtt-broker/b1
expect_jq "reload keeps the credentials" "$body" '.user == "bob"'
# a changed password is a change of the node: a modified-nodes deploy restarts the broker
flows_pw=$(jq -c 'map(if .id == "b1" then .credentials = {"password":"another-pw"} else . end)' <<<"$flows_d")
deploy "{\"flows\":$flows_pw,\"rev\":\"$rev\"}" nodes
expect_status "a credentials-only deploy: 200" 200
expect_eq "a credentials-only change keeps the rev" "$(jq -r .rev <<<"$body")" "$rev"
expect_eq "a credentials-only change restarts that node" "$(deploy_line)" "1 node(s) started, 1 stopped, 5 kept"
expect_lacks "flows_cred.json: the new password encrypted" "$(cat "$data/flows_cred.json")" "another-pw"
deploy "$flows_d"
expect_status "API v1 body (a bare array, no rev): 200" 200
expect_eq "a bare array deploys the same flows" "$(jq -r .rev <<<"$body")" "$rev"

# --- unknown node types: accepted, flows stopped, the editor told
flows_unknown=$(jq -c '. + [{"id":"x1","type":"teleport","z":"t1","wires":[[]]}]' <<<"$flows_d")
deploy "{\"flows\":$flows_unknown,\"rev\":\"$rev\"}"
expect_status "a flow with an unknown type is accepted (as Node-RED)" 200
rev_unknown=$(jq -r .rev <<<"$body")
expect_jq "GET flows keeps the unknown node" "$(req GET flows; echo "$body")" 'any(.flows[]; .id == "x1" and .type == "teleport")'
"$comms" --until teleport "$port" "notification/#" >"$work/c.missing" 2>&1 &&
    pass "/comms: missing-types notification" || fail "/comms: missing-types notification" "$(cat "$work/c.missing")"
expect_jq "missing-types: the notification's shape" "$(grep missing-types "$work/c.missing" | tail -1)" '.topic == "notification/runtime-state" and .data.error == "missing-types" and .data.types == ["teleport"]'
req POST inject/i1 -H 'Content-Type: application/json' --data-binary '{}'
expect_status "flows with missing types are stopped: inject 404" 404
deploy "{\"flows\":$flows_d,\"rev\":\"$rev_unknown\"}"
expect_status "deploying the type away: 200" 200
"$comms" --until '"state":"start"' "$port" notification/runtime-state >"$work/c.restart" 2>&1 &&
    pass "/comms: runtime-state start replaces missing-types" || fail "/comms: runtime-state start replaces missing-types" "$(cat "$work/c.restart")"
req POST inject/i1 -H 'Content-Type: application/json' --data-binary '{"__user_inject_props__":[{"p":"payload","v":"running-again","vt":"str"}]}'
expect_status "the fixed flows run: inject 200" 200
wait_for "$log" 'running-again' && pass "the fixed flows deliver" || fail "the fixed flows deliver"
rev_last=$(current_rev)
stop_eddy

# --- a restart without a flow file runs DATA/flows.json, with its credentials and settings
start_eddy --data "$data"
expect_contains "restart: runs the last deployed flows" "$(cat "$log")" "running the flows last deployed"
expect_eq "restart: the same rev" "$(current_rev)" "$rev_last"
req GET settings/user
expect_jq "restart: user settings kept" "$body" ". == $user_settings"
req GET credentials/mqtt-broker/b1
expect_jq "restart: credentials kept" "$body" '. == {"user":"bob","has_password":true}'
req POST inject/i1 -H 'Content-Type: application/json' --data-binary '{"__user_inject_props__":[{"p":"payload","v":"after-restart","vt":"str"}]}'
expect_status "restart: inject 200" 200
wait_for "$log" 'after-restart' && pass "restart: the flows run" || fail "restart: the flows run" "$(tail -5 "$log")"
# a node taken out of the flows takes its credentials along
rev=$(current_rev)
flows_nob=$(jq -c 'map(select(.id != "b1"))' <<<"$flows_d")
deploy "{\"flows\":$flows_nob,\"rev\":\"$rev\"}"
expect_status "deploy without the broker: 200" 200
req GET credentials/mqtt-broker/b1
expect_eq "a removed node's credentials are dropped" "$status $body" "200 {}"
# flows with an unknown type in the data folder: eddy starts, the flows stay stopped
deploy "{\"flows\":$flows_unknown}"
expect_status "a forced deploy (no rev) with an unknown type: 200" 200
rev_last=$(jq -r .rev <<<"$body")
stop_eddy
start_eddy --data "$data"
"$comms" --until teleport "$port" "notification/#" >"$work/c.missing2" 2>&1 &&
    pass "restart with a missing type: notification" || fail "restart with a missing type: notification" "$(cat "$work/c.missing2")"
req POST inject/i1 -H 'Content-Type: application/json' --data-binary '{}'
expect_status "restart with a missing type: flows stopped" 404
req GET credentials/mqtt-broker/b1
expect_eq "restart: dropped credentials stay dropped" "$status $body" "200 {}"
stop_eddy

# --- a seed flow file is used only while the data folder has no deploy
printf '[{"id":"s","type":"tab"},{"id":"si","type":"inject","z":"s","wires":[[]]}]' >"$work/seed.json"
start_eddy "$work/seed.json" --data "$data"
expect_eq "a seed file does not replace the deployed flows" "$(current_rev)" "$rev_last"
stop_eddy
start_eddy "$work/seed.json" --data "$work/data-seed"
expect_jq "a new data folder runs the seed file" "$(req GET flows; echo "$body")" '[.flows[].id] == ["s","si"]'
stop_eddy

# --- login
hash=$("$hash_pw" 'open sesame')
cat >"$work/settings.json" <<JSON
{"adminAuth":{"type":"credentials","users":[{"username":"admin","password":"$hash","permissions":"*"},
                                              {"username":"viewer","password":"$hash","permissions":"read"}]},
 "credentialSecret":"a secret for the tests"}
JSON
start_eddy --data "$work/data-auth" --settings "$work/settings.json"
req GET settings
expect_status "auth: settings without a token: 401" 401
req GET flows
expect_status "auth: flows without a token: 401" 401
deploy '{"flows":[]}'
expect_status "auth: deploy without a token: 401" 401
req POST inject/x
expect_status "auth: inject without a token: 401" 401
req GET ""
expect_status "auth: the page is public" 200
req GET theme
expect_status "auth: the theme is public" 200
req GET auth/login
expect_jq "auth/login: the prompts" "$body" '.type == "credentials" and [.prompts[].id] == ["username","password"] and [.prompts[].type] == ["text","password"]'
login() { # user password
    req POST auth/token --data-urlencode client_id=node-red-editor --data-urlencode grant_type=password \
        --data-urlencode scope= --data-urlencode "username=$1" --data-urlencode "password=$2"
}
login admin 'open sesame'
expect_status "auth/token: the right password: 200" 200
expect_jq "auth/token: a bearer token" "$body" '.token_type == "Bearer" and (.access_token | length >= 32) and .expires_in > 0'
token=$(jq -r .access_token <<<"$body")
req GET settings -H "Authorization: Bearer $token"
expect_status "auth: settings with the token: 200" 200
expect_jq "auth: settings name the user" "$body" '.user.username == "admin" and .user.permissions == "*"'
req GET flows -H "Authorization: Bearer $token"
expect_status "auth: flows with the token: 200" 200
req GET flows -H "Authorization: Bearer nottherighttoken"
expect_status "auth: a wrong token: 401" 401
"$comms" --token "$token" --until '"auth":"ok"' "$port" >"$work/c.auth" 2>&1 &&
    pass "/comms: auth ok with the token" || fail "/comms: auth ok with the token" "$(cat "$work/c.auth")"
"$comms" --token nottherighttoken --until '"auth":"fail"' "$port" >"$work/c.authfail" 2>&1 &&
    pass "/comms: auth fail with a wrong token" || fail "/comms: auth fail with a wrong token" "$(cat "$work/c.authfail")"
login admin 'open sesame'
token2=$(jq -r .access_token <<<"$body")
[ "$token2" != "$token" ] && pass "each login gets its own token" || fail "each login gets its own token"
req POST auth/revoke -H "Authorization: Bearer $token" --data-urlencode "token=$token"
expect_status "auth/revoke: 200" 200
req GET flows -H "Authorization: Bearer $token"
expect_status "auth: a revoked token: 401" 401
req GET flows -H "Authorization: Bearer $token2"
expect_status "auth: revoking one token keeps the other" 200
# A user with permission "read" sees everything and changes nothing (Node-RED answers 401).
login viewer 'open sesame'
expect_status "auth/token: the read-only user: 200" 200
viewer=$(jq -r .access_token <<<"$body")
req GET settings -H "Authorization: Bearer $viewer"
expect_jq "read-only: settings say so (the editor hides deploy)" "$body" '.user.permissions == "read"'
req GET flows -H "Authorization: Bearer $viewer"
expect_status "read-only: flows can be read" 200
rev_before=$(jq -r .rev <<<"$body")
deploy '{"flows":[]}' full -H "Authorization: Bearer $viewer"
expect_status "read-only: deploy refused: 401" 401
req GET flows -H "Authorization: Bearer $token2"
expect_eq "read-only: the flows did not change" "$(jq -r .rev <<<"$body")" "$rev_before"
req POST inject/x -H "Authorization: Bearer $viewer"
expect_status "read-only: inject refused: 401" 401
req POST debug/x/disable -H "Authorization: Bearer $viewer"
expect_status "read-only: debug switch refused: 401" 401
req POST settings/user -H "Authorization: Bearer $viewer" -H 'Content-Type: application/json' --data '{}'
expect_status "read-only: user settings refused: 401" 401
"$comms" --token "$viewer" --until '"auth":"ok"' "$port" >"$work/c.viewer" 2>&1 &&
    pass "read-only: /comms accepts the token" || fail "read-only: /comms accepts the token" "$(cat "$work/c.viewer")"
req POST auth/revoke -H "Authorization: Bearer $viewer" --data-urlencode "token=$viewer"
expect_status "read-only: may log out" 200
login nobody 'open sesame'
expect_status "auth/token: an unknown user: 403" 403
for i in 2 3 4 5; do
    login admin "wrong $i"
    expect_status "auth/token: wrong password $i: 403" 403
done
login admin 'wrong 6'
expect_status "auth/token: the sixth failure in a minute: 429" 429
login admin 'open sesame'
expect_status "auth/token: locked for a minute, even the right password: 429" 429
req GET flows -H "Authorization: Bearer $token2"
expect_status "auth: tokens still work during the lock" 200
stop_eddy
expect_contains "auth: failed logins are logged" "$(cat "$log")" "failed login for user 'nobody'"
# Node-RED's lists of scopes are refused at start rather than guessed at.
sed 's/"permissions":"read"/"permissions":["flows.read"]/' "$work/settings.json" >"$work/settings-scopes.json"
out=$(timeout 10 "$eddy" run --port 0 --data "$work/data-auth" --settings "$work/settings-scopes.json" 2>&1)
rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] && pass "permission scopes: eddy refuses to start" ||
    fail "permission scopes: eddy refuses to start" "rc $rc"
expect_contains "permission scopes: the error names the user" "$out" "user 2 ('viewer'): permissions must be"

echo "$passes passed, $fails failed"
[ $fails -eq 0 ]
