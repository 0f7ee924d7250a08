/* mqtt_test.c: mqtt-broker, mqtt in and mqtt out against a real mosquitto on 127.0.0.1:
 * wildcards, QoS, retained messages, payload decoding, dynamic subscriptions, credentials,
 * a broker killed in the middle of a stream, persistent sessions, and acknowledgements
 * that wait for the flow to settle. eddy runs in this process on the real clock; the test
 * drives its loop, so it decides when eddy may act. */
#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "check.h"
#include "harness.h"
#include "loop.h"
#include "node.h"
#include "test_broker.h"

static test_broker broker;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void nap(void)
{
    struct timespec ts = {0, 1000000L};
    nanosleep(&ts, NULL);
}

/* Messages collected per helper across pumps (eddy_harness_take empties its record). */
static json_t *got;
static json_t *events;

static void collect(eddy_harness *h)
{
    static const char *helpers[] = {"h1", "h2", "h3", "h4", "h5", "h6", "hc", NULL};
    for (int i = 0; helpers[i]; i++) {
        json_t *msgs = eddy_harness_take(h, helpers[i]);
        if (json_array_size(msgs)) {
            json_t *list = json_object_get(got, helpers[i]);
            if (!list)
                json_object_set_new(got, helpers[i], list = json_array());
            json_array_extend(list, msgs);
        }
        json_decref(msgs);
    }
    json_t *ev = eddy_harness_take_events(h);
    json_array_extend(events, ev);
    json_decref(ev);
}

static size_t count(const char *helper)
{
    return json_array_size(json_object_get(got, helper));
}

static json_t *msg_at(const char *helper, size_t i)
{
    return json_array_get(json_object_get(got, helper), i);
}

/* Runs eddy's loop for 'ms' or until 'helper' has 'n' messages (helper NULL: full time). */
static bool pump(eddy_harness *h, int ms, const char *helper, size_t n)
{
    int64_t until = now_ms() + ms;
    while (now_ms() < until) {
        eddy_loop_run_once(eddy_harness_loop(h));
        collect(h);
        if (helper && count(helper) >= n)
            return true;
        nap();
    }
    return helper == NULL;
}

/* True once node 'id' reported a status whose text contains 'text'. */
static bool saw_status(const char *id, const char *text)
{
    size_t i;
    json_t *e;
    json_array_foreach(events, i, e)
    {
        const char *kind = json_string_value(json_object_get(e, "kind"));
        const char *node = json_string_value(json_object_get(e, "node"));
        const char *t = json_string_value(json_object_get(json_object_get(e, "status"), "text"));
        if (kind && strcmp(kind, "status") == 0 && node && strcmp(node, id) == 0 && t &&
            strstr(t, text))
            return true;
    }
    return false;
}

static bool wait_status(eddy_harness *h, const char *id, const char *text, int ms)
{
    int64_t until = now_ms() + ms;
    while (now_ms() < until) {
        if (saw_status(id, text))
            return true;
        pump(h, 5, NULL, 0);
    }
    return saw_status(id, text);
}

static void reset_records(void)
{
    json_decref(got);
    json_decref(events);
    got = json_object();
    events = json_array();
}

/* Builds a flow from a template where every %d is the broker port. */
static char *flow_text(const char *tmpl, int port)
{
    static char buf[8192];
    char *o = buf;
    for (const char *p = tmpl; *p && o < buf + sizeof(buf) - 8; p++) {
        if (p[0] == '%' && p[1] == 'd') {
            o += snprintf(o, 8, "%d", port);
            p++;
        } else {
            *o++ = *p;
        }
    }
    *o = '\0';
    return buf;
}

static size_t queue_limit; /* 0: the engine's default */

static eddy_harness *start_flow(const char *tmpl, int port,
                                const eddy_node_type *const *extra_types)
{
    eddy_problems problems = {0};
    eddy_harness_opts opts = {.real_clock = true, .types = extra_types, .queue_limit = queue_limit};
    eddy_harness *h = eddy_harness_new(flow_text(tmpl, port), &opts, &problems);
    if (!h)
        eddy_problems_print(&problems, stderr);
    eddy_problems_clear(&problems);
    return h;
}

/* ---- wildcards and QoS ---- */

static const char *wildcard_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\"},"
    "{\"id\":\"i1\",\"type\":\"mqtt in\",\"topic\":\"a/+/c\",\"qos\":\"2\",\"datatype\":"
    "\"utf8\",\"broker\":\"b\",\"wires\":[[\"h1\"]]},"
    "{\"id\":\"i2\",\"type\":\"mqtt in\",\"topic\":\"a/#\",\"qos\":\"1\",\"datatype\":\"utf8\","
    "\"broker\":\"b\",\"wires\":[[\"h2\"]]},"
    "{\"id\":\"i3\",\"type\":\"mqtt in\",\"topic\":\"q/#\",\"qos\":\"0\",\"datatype\":\"utf8\","
    "\"broker\":\"b\",\"wires\":[[\"h3\"]]},"
    "{\"id\":\"h1\",\"type\":\"helper\"},{\"id\":\"h2\",\"type\":\"helper\"},"
    "{\"id\":\"h3\",\"type\":\"helper\"}]";

static void test_wildcards_and_qos(void)
{
    reset_records();
    eddy_harness *h = start_flow(wildcard_flow, broker.port, NULL);
    CHECK(h);
    CHECK(wait_status(h, "i3", "connected", 3000) &&
          wait_status(h, "i1", "common.status.connected", 3000));
    pump(h, 100, NULL, 0); /* SUBACKs */
    test_client *c = test_client_new(broker.port, "wild-pub", false);
    CHECK(c);
    CHECK_INT_EQ(test_client_publish(c, "a/b/c", "abc", 3, 2, false), 0);
    CHECK_INT_EQ(test_client_publish(c, "a/x", "ax", 2, 1, false), 0);
    CHECK_INT_EQ(test_client_publish(c, "b/c", "bc", 2, 0, false), 0);
    CHECK_INT_EQ(test_client_publish(c, "a/b/c/d", "abcd", 4, 0, false), 0);
    CHECK_INT_EQ(test_client_publish(c, "q/1", "q1", 2, 2, false), 0);
    CHECK(pump(h, 3000, "h2", 3));
    CHECK(pump(h, 3000, "h3", 1));
    pump(h, 100, NULL, 0);
    CHECK_INT_EQ(count("h1"), 1); /* a/+/c: only a/b/c */
    CHECK_STR_EQ(json_string_value(json_object_get(msg_at("h1", 0), "topic")), "a/b/c");
    CHECK_STR_EQ(json_string_value(json_object_get(msg_at("h1", 0), "payload")), "abc");
    /* QoS 2 subscriptions are made at QoS 1 (nodes/README.md, "MQTT") */
    CHECK_INT_EQ(json_integer_value(json_object_get(msg_at("h1", 0), "qos")), 1);
    /* a/#: a/b/c, a/x, a/b/c/d (not b/c); MQTT orders messages per QoS level only */
    CHECK_INT_EQ(count("h2"), 3);
    /* a/b/c matches both of the client's subscriptions: the broker sends it once, at the
     * higher QoS, and both nodes get it, as in Node-RED. */
    const char *expect[][2] = {{"a/b/c", "1"}, {"a/x", "1"}, {"a/b/c/d", "0"}};
    for (int e = 0; e < 3; e++) {
        bool found = false;
        for (size_t i = 0; i < 3; i++) {
            json_t *m = msg_at("h2", i);
            /* QoS is the lower of publish and subscription: a/b/c/d went at 0 */
            found |= strcmp(json_string_value(json_object_get(m, "topic")), expect[e][0]) == 0 &&
                     json_integer_value(json_object_get(m, "qos")) == atoi(expect[e][1]);
        }
        if (!found)
            fprintf(stderr, "h2 lacks %s at QoS %s: %s\n", expect[e][0], expect[e][1],
                    json_dumps(json_object_get(got, "h2"), JSON_COMPACT));
        CHECK(found);
    }
    CHECK_INT_EQ(count("h3"), 1);
    CHECK_INT_EQ(json_integer_value(json_object_get(msg_at("h3", 0), "qos")), 0);
    CHECK(json_is_false(json_object_get(msg_at("h3", 0), "retain")));
    test_client_free(c);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
}

/* ---- retained messages ---- */

static const char *retained_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\"},"
    "{\"id\":\"i1\",\"type\":\"mqtt in\",\"topic\":\"r/#\",\"qos\":\"1\",\"datatype\":\"utf8\","
    "\"broker\":\"b\",\"wires\":[[\"h1\"]]},{\"id\":\"h1\",\"type\":\"helper\"}]";

static void test_retained(void)
{
    reset_records();
    test_client *c = test_client_new(broker.port, "ret-pub", false);
    CHECK(c);
    CHECK_INT_EQ(test_client_publish(c, "r/1", "kept", 4, 1, true), 0);
    eddy_harness *h = start_flow(retained_flow, broker.port, NULL);
    CHECK(h);
    CHECK(pump(h, 3000, "h1", 1));
    CHECK_STR_EQ(json_string_value(json_object_get(msg_at("h1", 0), "payload")), "kept");
    CHECK(json_is_true(json_object_get(msg_at("h1", 0), "retain")));
    CHECK_INT_EQ(test_client_publish(c, "r/2", "live", 4, 1, false), 0);
    CHECK(pump(h, 3000, "h1", 2));
    CHECK(json_is_false(json_object_get(msg_at("h1", 1), "retain")));
    CHECK_INT_EQ(test_client_publish(c, "r/1", "", 0, 1, true), 0); /* clears the retained */
    test_client_free(c);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
}

/* ---- payload decoding ---- */

static const char *payload_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\"},"
    "{\"id\":\"i1\",\"type\":\"mqtt in\",\"topic\":\"p/1/#\",\"qos\":\"1\",\"datatype\":"
    "\"auto-detect\",\"broker\":\"b\",\"wires\":[[\"h1\"]]},"
    "{\"id\":\"i2\",\"type\":\"mqtt in\",\"topic\":\"p/2/#\",\"qos\":\"1\",\"datatype\":\"auto\","
    "\"broker\":\"b\",\"wires\":[[\"h2\"]]},"
    "{\"id\":\"i3\",\"type\":\"mqtt in\",\"topic\":\"p/3/#\",\"qos\":\"1\",\"datatype\":\"utf8\","
    "\"broker\":\"b\",\"wires\":[[\"h3\"]]},"
    "{\"id\":\"i4\",\"type\":\"mqtt in\",\"topic\":\"p/4/#\",\"qos\":\"1\",\"datatype\":"
    "\"buffer\",\"broker\":\"b\",\"wires\":[[\"h4\"]]},"
    "{\"id\":\"i5\",\"type\":\"mqtt in\",\"topic\":\"p/5/#\",\"qos\":\"1\",\"datatype\":"
    "\"base64\",\"broker\":\"b\",\"wires\":[[\"h5\"]]},"
    "{\"id\":\"i6\",\"type\":\"mqtt in\",\"topic\":\"p/6/#\",\"qos\":\"1\",\"datatype\":\"json\","
    "\"broker\":\"b\",\"wires\":[[\"h6\"]]},"
    "{\"id\":\"c\",\"type\":\"catch\",\"scope\":null,\"wires\":[[\"hc\"]]},"
    "{\"id\":\"h1\",\"type\":\"helper\"},{\"id\":\"h2\",\"type\":\"helper\"},"
    "{\"id\":\"h3\",\"type\":\"helper\"},{\"id\":\"h4\",\"type\":\"helper\"},"
    "{\"id\":\"h5\",\"type\":\"helper\"},{\"id\":\"h6\",\"type\":\"helper\"},"
    "{\"id\":\"hc\",\"type\":\"helper\"}]";

static const char binary[] = {'\xff', '\xfe', '\0', 'A'};

static void publish_samples(test_client *c, int n)
{
    char topic[32];
    const struct {
        const char *bytes;
        size_t len;
    } samples[] = {{"{\"a\":1}", 7}, {"42", 2}, {"hello", 5}, {binary, 4}};
    for (int i = 0; i < 4; i++) {
        snprintf(topic, sizeof(topic), "p/%d/%d", n, i);
        CHECK_INT_EQ(test_client_publish(c, topic, samples[i].bytes, samples[i].len, 1, false), 0);
    }
}

static void check_json(const char *helper, size_t i, const char *expected_payload)
{
    json_t *payload = json_object_get(msg_at(helper, i), "payload");
    char *text = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
    if (strcmp(text, expected_payload) != 0)
        fprintf(stderr, "%s[%zu].payload = %s, expected %s\n", helper, i, text, expected_payload);
    CHECK_STR_EQ(text, expected_payload);
    eddy_free(text);
}

static void test_payload_types(void)
{
    reset_records();
    eddy_harness *h = start_flow(payload_flow, broker.port, NULL);
    CHECK(h);
    CHECK(wait_status(h, "i6", "common.status.connected", 3000));
    pump(h, 100, NULL, 0);
    test_client *c = test_client_new(broker.port, "pay-pub", false);
    CHECK(c);
    for (int n = 1; n <= 6; n++)
        publish_samples(c, n);
    CHECK(pump(h, 3000, "h6", 2));
    CHECK(pump(h, 3000, "hc", 2));
    CHECK(pump(h, 3000, "h5", 4));
    pump(h, 100, NULL, 0);
    /* auto-detect: JSON parsed, text kept, binary as a Buffer */
    check_json("h1", 0, "{\"a\":1}");
    check_json("h1", 1, "42");
    check_json("h1", 2, "\"hello\"");
    check_json("h1", 3, "{\"type\":\"Buffer\",\"data\":[255,254,0,65]}");
    /* auto: text or Buffer, never parsed */
    check_json("h2", 0, "\"{\\\"a\\\":1}\"");
    check_json("h2", 1, "\"42\"");
    check_json("h2", 3, "{\"type\":\"Buffer\",\"data\":[255,254,0,65]}");
    /* utf8: always text, invalid bytes as U+FFFD */
    check_json("h3", 3, "\"\\uFFFD\\uFFFD\\u0000A\"");
    check_json("h4", 2, "{\"type\":\"Buffer\",\"data\":[104,101,108,108,111]}");
    check_json("h5", 2, "\"aGVsbG8=\"");
    check_json("h5", 3, "\"//4AQQ==\"");
    /* json: parsed, or an error to catch and nothing sent */
    CHECK_INT_EQ(count("h6"), 2);
    check_json("h6", 0, "{\"a\":1}");
    check_json("h6", 1, "42");
    CHECK_INT_EQ(count("hc"), 2);
    json_t *e1 = msg_at("hc", 0);
    CHECK_STR_EQ(json_string_value(json_object_get(e1, "payload")), "hello");
    CHECK_STR_EQ(json_string_value(json_object_get(e1, "topic")), "p/6/2");
    CHECK_CONTAINS(json_string_value(json_object_get(json_object_get(e1, "error"), "message")),
                   "Failed to parse JSON string");
    CHECK_CONTAINS(
        json_string_value(json_object_get(json_object_get(msg_at("hc", 1), "error"), "message")),
        "Invalid JSON string");
    /* and the flow goes on */
    CHECK_INT_EQ(test_client_publish(c, "p/6/9", "[true]", 6, 1, false), 0);
    CHECK(pump(h, 3000, "h6", 3));
    check_json("h6", 2, "[true]");
    test_client_free(c);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
}

/* ---- dynamic subscriptions ---- */

static const char *dynamic_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\"},"
    "{\"id\":\"i1\",\"type\":\"mqtt in\",\"topic\":\"\",\"qos\":\"2\",\"datatype\":\"utf8\","
    "\"inputs\":1,\"broker\":\"b\",\"wires\":[[\"h1\"]]},"
    "{\"id\":\"c\",\"type\":\"catch\",\"scope\":null,\"wires\":[[\"hc\"]]},"
    "{\"id\":\"h1\",\"type\":\"helper\"},{\"id\":\"hc\",\"type\":\"helper\"}]";

static void test_dynamic_subscribe(void)
{
    reset_records();
    eddy_harness *h = start_flow(dynamic_flow, broker.port, NULL);
    CHECK(h);
    CHECK(wait_status(h, "i1", "common.status.connected", 3000));
    test_client *c = test_client_new(broker.port, "dyn-pub", false);
    CHECK(c);
    CHECK_INT_EQ(test_client_publish(c, "d/0", "before", 6, 1, false), 0);
    json_t *sub = json_pack("{s:s, s:[s, {s:s, s:i}]}", "action", "subscribe", "topic", "d/+",
                            "topic", "e/1", "qos", 1);
    CHECK_INT_EQ(eddy_harness_send(h, "i1", sub), 0);
    pump(h, 200, NULL, 0);
    CHECK_INT_EQ(test_client_publish(c, "d/1", "one", 3, 1, false), 0);
    CHECK_INT_EQ(test_client_publish(c, "e/1", "e", 1, 1, false), 0);
    CHECK(pump(h, 3000, "h1", 2));
    CHECK_STR_EQ(json_string_value(json_object_get(msg_at("h1", 0), "payload")), "one");
    CHECK_INT_EQ(json_integer_value(json_object_get(msg_at("h1", 1), "qos")), 1);
    CHECK_INT_EQ(eddy_harness_send(h, "i1", json_pack("{s:s}", "action", "getSubscriptions")), 0);
    CHECK(pump(h, 3000, "h1", 3));
    check_json("h1", 2, "[{\"topic\":\"d/+\",\"qos\":2},{\"topic\":\"e/1\",\"qos\":1}]");
    CHECK_INT_EQ(eddy_harness_send(
                     h, "i1", json_pack("{s:s, s:s}", "action", "unsubscribe", "topic", "d/+")),
                 0);
    pump(h, 200, NULL, 0);
    CHECK_INT_EQ(test_client_publish(c, "d/2", "two", 3, 1, false), 0);
    CHECK_INT_EQ(test_client_publish(c, "e/1", "e2", 2, 1, false), 0);
    CHECK(pump(h, 3000, "h1", 4));
    pump(h, 200, NULL, 0);
    CHECK_INT_EQ(count("h1"), 4); /* d/2 did not come */
    CHECK_STR_EQ(json_string_value(json_object_get(msg_at("h1", 3), "payload")), "e2");
    /* a bad action and a bad topic reach catch */
    CHECK_INT_EQ(eddy_harness_send(h, "i1", json_pack("{s:s}", "action", "explode")), 0);
    CHECK_INT_EQ(eddy_harness_send(
                     h, "i1", json_pack("{s:s, s:s}", "action", "subscribe", "topic", "a/#/b")),
                 0);
    CHECK(pump(h, 1000, "hc", 2));
    test_client_free(c);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
}

/* ---- credentials ---- */

static const char *auth_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\","
    "\"reconnectMin\":100,\"credentials\":{\"user\":\"eddy\",\"password\":\"PASS\"}},"
    "{\"id\":\"i1\",\"type\":\"mqtt in\",\"topic\":\"s/#\",\"qos\":\"1\",\"datatype\":\"utf8\","
    "\"broker\":\"b\",\"wires\":[[\"h1\"]]},{\"id\":\"h1\",\"type\":\"helper\"}]";

static char *with_password(const char *password)
{
    static char buf[1024];
    const char *at = strstr(auth_flow, "PASS");
    snprintf(buf, sizeof(buf), "%.*s%s%s", (int)(at - auth_flow), auth_flow, password, at + 4);
    return buf;
}

static void test_credentials(void)
{
    reset_records();
    test_broker secure;
    CHECK_INT_EQ(test_broker_start_auth(&secure, "eddy", "s3cret"), 0);
    eddy_harness *bad = start_flow(with_password("wrong"), secure.port, NULL);
    CHECK(bad);
    pump(bad, 800, NULL, 0);
    CHECK(!saw_status("i1", "common.status.connected"));
    CHECK(saw_status("i1", "connecting"));
    CHECK_INT_EQ(eddy_harness_free(bad), 0);

    reset_records();
    eddy_harness *good = start_flow(with_password("s3cret"), secure.port, NULL);
    CHECK(good);
    CHECK(wait_status(good, "i1", "common.status.connected", 3000));
    pump(good, 100, NULL, 0);
    /* mosquitto_pub with the same credentials */
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "mosquitto_pub -p %d -u eddy -P s3cret -q 1 -t s/1 -m secret-hello",
             secure.port);
    CHECK_INT_EQ(system(cmd), 0);
    CHECK(pump(good, 3000, "h1", 1));
    CHECK_STR_EQ(json_string_value(json_object_get(msg_at("h1", 0), "payload")), "secret-hello");
    CHECK_INT_EQ(eddy_harness_free(good), 0);
    test_broker_stop(&secure, SIGTERM);
}

/* ---- a broker killed in the middle of a stream ---- */

static const char *outage_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\","
    "\"clientid\":\"eddy-outage\",\"reconnectMin\":50,\"reconnectMax\":200},"
    "{\"id\":\"b2\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\","
    "\"clientid\":\"eddy-small\",\"outQueueLimit\":5,\"reconnectMin\":50,\"reconnectMax\":200},"
    "{\"id\":\"o1\",\"type\":\"mqtt out\",\"topic\":\"\",\"qos\":\"1\",\"broker\":\"b\"},"
    "{\"id\":\"o2\",\"type\":\"mqtt out\",\"topic\":\"small\",\"qos\":\"1\",\"broker\":\"b2\"},"
    "{\"id\":\"c\",\"type\":\"catch\",\"scope\":null,\"wires\":[[\"hc\"]]},"
    "{\"id\":\"hc\",\"type\":\"helper\"}]";

static void send_numbered(eddy_harness *h, const char *node, const char *prefix, int from, int to)
{
    char text[32];
    for (int i = from; i < to; i++) {
        snprintf(text, sizeof(text), "%s-%d", prefix, i);
        json_t *m = json_pack("{s:s, s:s}", "topic", "o/x", "payload", text);
        CHECK_INT_EQ(eddy_harness_send(h, node, m), 0);
    }
}

/* The payloads 'prefix'-0..n-1 appear in 'received' in order (others may be between). */
static bool in_order(json_t *received, const char *prefix, int n)
{
    int next = 0;
    char want[32];
    size_t i;
    json_t *m;
    json_array_foreach(received, i, m)
    {
        snprintf(want, sizeof(want), "%s-%d", prefix, next);
        const char *p = json_string_value(json_object_get(m, "payload"));
        if (p && strcmp(p, want) == 0)
            next++;
        else if (p && strncmp(p, prefix, strlen(prefix)) == 0 && next < n) {
            /* an earlier one again is a redelivery; a later one before its turn is a gap */
            int k = atoi(p + strlen(prefix) + 1);
            if (k > next)
                return false;
        }
    }
    return next == n;
}

static void test_broker_outage(void)
{
    reset_records();
    eddy_harness *h = start_flow(outage_flow, broker.port, NULL);
    CHECK(h);
    CHECK(wait_status(h, "o1", "common.status.connected", 3000));
    test_client *c = test_client_new(broker.port, "outage-sub", false);
    CHECK(c);
    CHECK_INT_EQ(test_client_subscribe(c, "o/#", 1), 0);
    send_numbered(h, "o1", "pre", 0, 20);
    int64_t until = now_ms() + 3000;
    while (test_client_count(c) < 20 && now_ms() < until)
        pump(h, 5, NULL, 0);
    CHECK_INT_EQ(test_client_count(c), 20);
    test_client_free(c);

    test_broker_stop(&broker, SIGKILL);
    json_array_clear(events);
    send_numbered(h, "o1", "mid", 0, 50); /* eddy may not know yet */
    CHECK(wait_status(h, "o1", "disconnected", 3000));
    send_numbered(h, "o1", "down", 0, 200);
    send_numbered(h, "o2", "small", 0, 8); /* 5 fit, 3 are refused */
    pump(h, 300, NULL, 0);
    if (count("hc") != 3)
        fprintf(stderr, "events: %s\n", json_dumps(events, JSON_COMPACT));
    CHECK_INT_EQ(count("hc"), 3);
    CHECK_CONTAINS(
        json_string_value(json_object_get(json_object_get(msg_at("hc", 0), "error"), "message")),
        "queue is full");

    CHECK_INT_EQ(test_broker_restart(&broker), 0);
    c = test_client_new(broker.port, "outage-sub", false);
    CHECK(c);
    CHECK_INT_EQ(test_client_subscribe(c, "o/#", 1), 0);
    test_client *small = test_client_new(broker.port, "outage-small", false);
    CHECK(small);
    CHECK_INT_EQ(test_client_subscribe(small, "small", 1), 0);
    /* Redeliveries of messages in flight at the crash may come too (at least once). */
    until = now_ms() + 10000;
    for (bool all = false; !all && now_ms() < until;) {
        pump(h, 20, NULL, 0);
        json_t *so_far = test_client_take(c, false);
        all = in_order(so_far, "down", 200) && test_client_count(small) >= 5;
        json_decref(so_far);
    }
    pump(h, 100, NULL, 0);
    json_t *received = test_client_take(c, false);
    if (!in_order(received, "down", 200)) {
        size_t i;
        json_t *m;
        fprintf(stderr, "received %zu:", json_array_size(received));
        json_array_foreach(received, i, m)
            fprintf(stderr, " %s", json_string_value(json_object_get(m, "payload")));
        fprintf(stderr, "\n");
    }
    CHECK(in_order(received, "down", 200));
    CHECK(in_order(received, "mid", 50));
    json_decref(received);
    received = test_client_take(small, false);
    CHECK_INT_EQ(json_array_size(received), 5);
    CHECK(in_order(received, "small", 5));
    json_decref(received);
    test_client_free(c);
    test_client_free(small);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
}

/* ---- what mqtt out sends, birth and close messages ---- */

static const char *out_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\","
    "\"birthTopic\":\"st/eddy\",\"birthPayload\":\"online\",\"birthQos\":\"1\","
    "\"closeTopic\":\"st/eddy\",\"closePayload\":\"offline\",\"closeQos\":\"1\"},"
    "{\"id\":\"o1\",\"type\":\"mqtt out\",\"topic\":\"\",\"qos\":\"\",\"retain\":\"\","
    "\"broker\":\"b\"},"
    "{\"id\":\"o2\",\"type\":\"mqtt out\",\"topic\":\"fixed/t\",\"qos\":\"1\","
    "\"retain\":\"true\",\"broker\":\"b\"}]";

static void test_out_payloads_birth_close(void)
{
    reset_records();
    test_client *c = test_client_new(broker.port, "out-sub", false);
    CHECK(c);
    CHECK_INT_EQ(test_client_subscribe(c, "out/#", 1), 0);
    CHECK_INT_EQ(test_client_subscribe(c, "st/#", 1), 0);
    eddy_harness *h = start_flow(out_flow, broker.port, NULL);
    CHECK(h);
    CHECK(wait_status(h, "o1", "common.status.connected", 3000));
    const char *payloads[] = {"{\"a\":{\"b\":[1,2]}}",
                              "42",
                              "2.5",
                              "true",
                              "null",
                              "\"text\"",
                              "{\"type\":\"Buffer\",\"data\":[104,105]}"};
    const char *sent_as[] = {"{\"a\":{\"b\":[1,2]}}", "42", "2.5", "true", "", "text", "hi"};
    for (int i = 0; i < 7; i++) {
        char topic[16];
        snprintf(topic, sizeof(topic), "out/%d", i);
        json_t *m = json_pack("{s:s, s:o, s:i}", "topic", topic, "payload",
                              json_loads(payloads[i], JSON_DECODE_ANY, NULL), "qos", 1);
        CHECK_INT_EQ(eddy_harness_send(h, "o1", m), 0);
    }
    /* the node's topic, QoS and retain win over the message's */
    CHECK_INT_EQ(eddy_harness_send(h, "o2",
                                   json_pack("{s:s, s:s, s:i, s:b}", "topic", "out/no", "payload",
                                             "fixed", "qos", 0, "retain", 0)),
                 0);
    int64_t until = now_ms() + 3000;
    while (test_client_count(c) < 8 && now_ms() < until)
        pump(h, 5, NULL, 0);
    CHECK_INT_EQ(eddy_harness_free(h), 0); /* sends the close message */
    until = now_ms() + 3000;
    while (test_client_count(c) < 9 && now_ms() < until)
        nap();
    json_t *got_out = test_client_take(c, true);
    CHECK_INT_EQ(json_array_size(got_out), 9);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(got_out, 0), "payload")),
                 "online");
    for (int i = 0; i < 7; i++) {
        json_t *m = json_array_get(got_out, (size_t)i + 1);
        char topic[16];
        snprintf(topic, sizeof(topic), "out/%d", i);
        CHECK_STR_EQ(json_string_value(json_object_get(m, "topic")), topic);
        CHECK_STR_EQ(json_string_value(json_object_get(m, "payload")), sent_as[i]);
    }
    json_decref(got_out);
    test_client_free(c);
    /* fixed/t was retained: a new subscriber gets it */
    c = test_client_new(broker.port, "out-sub2", false);
    CHECK(c);
    CHECK_INT_EQ(test_client_subscribe(c, "fixed/t", 1), 0);
    until = now_ms() + 3000;
    while (test_client_count(c) < 1 && now_ms() < until)
        nap();
    got_out = test_client_take(c, false);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(got_out, 0), "payload")),
                 "fixed");
    CHECK(json_is_true(json_object_get(json_array_get(got_out, 0), "retain")));
    json_decref(got_out);
    CHECK_INT_EQ(test_client_publish(c, "fixed/t", "", 0, 1, true), 0);
    test_client_free(c);
}

/* ---- back-pressure: a full run queue stops reading from the socket ---- */

static const char *burst_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\"},"
    "{\"id\":\"i1\",\"type\":\"mqtt in\",\"topic\":\"burst/#\",\"qos\":\"1\",\"datatype\":"
    "\"utf8\",\"broker\":\"b\",\"wires\":[[\"h1\"]]},{\"id\":\"h1\",\"type\":\"helper\"}]";

/* Starts 'tmpl' with a run queue bound of 16 and waits until 'i1' is connected. */
static eddy_harness *start_bounded(const char *tmpl)
{
    reset_records();
    queue_limit = 16;
    eddy_harness *h = start_flow(tmpl, broker.port, NULL);
    queue_limit = 0;
    CHECK(h);
    CHECK(wait_status(h, "i1", "common.status.connected", 3000));
    pump(h, 100, NULL, 0);
    return h;
}

/* Publishes "burst-0" .. "burst-1999" on 'topic' at 'qos' while eddy's loop does not run,
 * so that it all waits in the socket. */
static void publish_burst(const char *topic, int qos)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd),
             "for i in $(seq 0 1999); do echo burst-$i; done | mosquitto_pub -p %d -q %d "
             "-t %s -l",
             broker.port, qos, topic);
    CHECK_INT_EQ(system(cmd), 0);
}

/* Takes the burst and checks that the run queue stayed within its bound: reading pauses
 * at the bound; one read may overshoot by a message's fan-out. */
static void expect_burst_within_bound(eddy_harness *h)
{
    CHECK(pump(h, 10000, "h1", 2000));
    CHECK(in_order(json_object_get(got, "h1"), "burst", 2000));
    eddy_engine_stats stats;
    eddy_engine_get_stats(eddy_harness_engine(h), &stats);
    if (stats.queue_high > 16 + 2)
        CHECK_FAIL_("run queue reached %zu messages (bound 16)", stats.queue_high);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
}

static void test_backpressure(void)
{
    eddy_harness *h = start_bounded(burst_flow);
    publish_burst("burst/x", 1);
    expect_burst_within_bound(h);
}

/* At QoS 0 nothing of libmosquitto's own ends a read call after one packet, and one
 * mosquitto_loop_read reads as many packets as the client has QoS 1 messages queued out:
 * 300 publishes of 'o1' whose acknowledgements are not read yet. The bound must hold. */
static const char *burst_qos0_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\"},"
    "{\"id\":\"i1\",\"type\":\"mqtt in\",\"topic\":\"burst0/#\",\"qos\":\"0\",\"datatype\":"
    "\"utf8\",\"broker\":\"b\",\"wires\":[[\"h1\"]]},{\"id\":\"h1\",\"type\":\"helper\"},"
    "{\"id\":\"o1\",\"type\":\"mqtt out\",\"topic\":\"elsewhere/x\",\"qos\":\"1\","
    "\"broker\":\"b\"}]";

static void test_backpressure_qos0(void)
{
    eddy_harness *h = start_bounded(burst_qos0_flow);
    /* 300 publishes, a few per loop turn (below the bound), with no pause for their
     * acknowledgements to be read */
    for (int i = 0; i < 300; i++) {
        eddy_harness_send(h, "o1", json_pack("{s:i}", "payload", i));
        if (i % 10 == 9)
            eddy_loop_run_once(eddy_harness_loop(h));
    }
    publish_burst("burst0/x", 0); /* waits in the socket behind the acknowledgements */
    expect_burst_within_bound(h);
}

/* ---- read coalescing: dense input raises the socket's low-water mark ---- */

/* The receive low-water mark of this process's TCP connection to 'port' (eddy's; the
 * test's publishers run as other processes), or -1 if there is none. */
static int low_water_to(int port)
{
    DIR *dir = opendir("/proc/self/fd");
    if (!dir)
        return -1;
    int found = -1;
    struct dirent *e;
    while (found < 0 && (e = readdir(dir))) {
        int fd = atoi(e->d_name);
        struct sockaddr_in peer;
        socklen_t len = sizeof peer;
        if (e->d_name[0] == '.' || getpeername(fd, (struct sockaddr *)&peer, &len) != 0 ||
            peer.sin_family != AF_INET || ntohs(peer.sin_port) != port)
            continue;
        int lowat = 0;
        len = sizeof lowat;
        if (getsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, &len) == 0)
            found = lowat;
    }
    closedir(dir);
    return found;
}

/* "%d": the broker's port, "%s": its readCoalesce */
static const char *coalesce_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\","
    "\"readCoalesce\":%s},"
    "{\"id\":\"i1\",\"type\":\"mqtt in\",\"topic\":\"dense/#\",\"qos\":\"1\",\"datatype\":"
    "\"utf8\",\"broker\":\"b\",\"wires\":[[\"h1\"]]},{\"id\":\"h1\",\"type\":\"helper\"}]";

/* Publishes a burst, reads part of it and returns the low-water mark eddy had then, after
 * checking that the whole burst arrives in order. */
static int low_water_in_burst(eddy_harness *h)
{
    publish_burst("dense/x", 1);
    CHECK(pump(h, 5000, "h1", 300)); /* read turns back to back: dense */
    int lowat = low_water_to(broker.port);
    CHECK(pump(h, 10000, "h1", 2000));
    CHECK(in_order(json_object_get(got, "h1"), "burst", 2000));
    return lowat;
}

static eddy_harness *start_coalesce_flow(const char *coalesce_ms)
{
    reset_records();
    char tmpl[1024];
    snprintf(tmpl, sizeof tmpl, coalesce_flow, broker.port, coalesce_ms);
    eddy_harness *h = start_flow(tmpl, broker.port, NULL);
    CHECK(h);
    CHECK(wait_status(h, "i1", "common.status.connected", 3000));
    pump(h, 100, NULL, 0);
    CHECK_INT_EQ(low_water_to(broker.port), 1);
    return h;
}

static void test_read_coalescing(void)
{
    /* readCoalesce 200: the test's loop turns (a 1 ms nap each) are far closer than that */
    eddy_harness *h = start_coalesce_flow("200");
    int lowat = low_water_in_burst(h);
    if (lowat <= 1)
        CHECK_FAIL_("low-water mark %d during a burst: input was not coalesced", lowat);
    /* a tick with nothing read since the previous one ends coalescing (ticks: 200 ms) */
    pump(h, 800, NULL, 0);
    CHECK_INT_EQ(low_water_to(broker.port), 1);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "mosquitto_pub -p %d -q 1 -t dense/x -m after", broker.port);
    CHECK_INT_EQ(system(cmd), 0);
    CHECK(pump(h, 3000, "h1", 2001));
    CHECK_INT_EQ(eddy_harness_free(h), 0);

    /* readCoalesce 0: every packet is read as it comes */
    h = start_coalesce_flow("0");
    CHECK_INT_EQ(low_water_in_burst(h), 1);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
}

/* ---- TLS ---- */

/* The tls-config node comes after the broker that uses it, as Node-RED writes it when TLS
 * is added to an existing broker. */
static const char *tls_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\","
    "\"usetls\":true,\"tls\":\"tls1\",\"reconnectMin\":100},"
    "{\"id\":\"i1\",\"type\":\"mqtt in\",\"topic\":\"sec/#\",\"qos\":\"1\",\"datatype\":"
    "\"utf8\",\"broker\":\"b\",\"wires\":[[\"h1\"]]},"
    "{\"id\":\"o1\",\"type\":\"mqtt out\",\"topic\":\"sec/x\",\"qos\":\"1\",\"broker\":\"b\"},"
    "{\"id\":\"h1\",\"type\":\"helper\"},"
    "{\"id\":\"tls1\",\"type\":\"tls-config\",\"ca\":\"%s/%s\",\"verifyservercert\":true}]";

static eddy_harness *start_tls_flow(const test_broker *tb, const char *ca_file)
{
    char text[2048];
    char port[16];
    snprintf(port, sizeof(port), "%d", tb->port);
    /* flow_text substitutes %d only; the CA path is put in here */
    const char *at = strstr(tls_flow, "%d");
    const char *ca_at = strstr(tls_flow, "%s/%s");
    snprintf(text, sizeof(text), "%.*s%s%.*s%s/%s%s", (int)(at - tls_flow), tls_flow, port,
             (int)(ca_at - at - 2), at + 2, tb->dir, ca_file, ca_at + 5);
    eddy_problems problems = {0};
    eddy_harness_opts opts = {.real_clock = true};
    eddy_harness *h = eddy_harness_new(text, &opts, &problems);
    if (!h)
        eddy_problems_print(&problems, stderr);
    eddy_problems_clear(&problems);
    return h;
}

static void test_tls(void)
{
    test_broker secure;
    CHECK_INT_EQ(test_broker_start_tls(&secure), 0);
    /* a CA that did not sign the server's certificate: refused, and eddy keeps running */
    reset_records();
    eddy_harness *h = start_tls_flow(&secure, "other-ca.crt");
    CHECK(h);
    pump(h, 1000, NULL, 0);
    CHECK(!saw_status("i1", "common.status.connected"));
    CHECK_INT_EQ(eddy_harness_free(h), 0);

    reset_records();
    h = start_tls_flow(&secure, "ca.crt");
    CHECK(h);
    CHECK(wait_status(h, "i1", "common.status.connected", 5000));
    pump(h, 200, NULL, 0);
    CHECK_INT_EQ(eddy_harness_send(h, "o1", json_pack("{s:s}", "payload", "over tls")), 0);
    CHECK(pump(h, 3000, "h1", 1));
    CHECK_STR_EQ(json_string_value(json_object_get(msg_at("h1", 0), "payload")), "over tls");
    CHECK_INT_EQ(eddy_harness_free(h), 0);
    test_broker_stop(&secure, SIGTERM);
}

/* ---- persistent session ---- */

static const char *persistent_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\","
    "\"clientid\":\"eddy-persist\",\"cleansession\":false},"
    "{\"id\":\"i1\",\"type\":\"mqtt in\",\"topic\":\"ps/#\",\"qos\":\"1\",\"datatype\":\"utf8\","
    "\"broker\":\"b\",\"wires\":[[\"h1\"]]},{\"id\":\"h1\",\"type\":\"helper\"}]";

static void test_persistent_session(void)
{
    reset_records();
    eddy_harness *h = start_flow(persistent_flow, broker.port, NULL);
    CHECK(h);
    CHECK(wait_status(h, "i1", "common.status.connected", 3000));
    pump(h, 200, NULL, 0); /* the SUBACK */
    CHECK_INT_EQ(eddy_harness_free(h), 0);

    test_client *c = test_client_new(broker.port, "persist-pub", false);
    CHECK(c);
    char text[16];
    for (int i = 0; i < 30; i++) {
        snprintf(text, sizeof(text), "ps-%d", i);
        CHECK_INT_EQ(test_client_publish(c, "ps/x", text, strlen(text), 1, false), 0);
    }
    test_client_free(c);

    reset_records();
    h = start_flow(persistent_flow, broker.port, NULL);
    CHECK(h);
    CHECK(pump(h, 5000, "h1", 30));
    CHECK(in_order(json_object_get(got, "h1"), "ps", 30));
    CHECK_INT_EQ(eddy_harness_free(h), 0);
}

/* ---- acknowledgements wait for the flow ---- */

/* A test node that holds the loop for every message it passes on, as an event store does
 * until its commit. */
static long held;

static void hold_input(eddy_node *node, void *state, json_t *msg)
{
    eddy_loop_hold(eddy_node_loop(node), 1);
    held++;
    eddy_node_send(node, 0, msg);
}

static const eddy_node_type hold_type = {
    .name = "test hold", .inputs = 1, .outputs = 1, .input = hold_input};
static const eddy_node_type *const hold_types[] = {&hold_type, NULL};

static const char *hold_flow =
    "[{\"id\":\"b\",\"type\":\"mqtt-broker\",\"broker\":\"127.0.0.1\",\"port\":\"%d\"},"
    "{\"id\":\"i1\",\"type\":\"mqtt in\",\"topic\":\"hold/#\",\"qos\":\"1\",\"datatype\":"
    "\"utf8\",\"broker\":\"b\",\"wires\":[[\"k\"]]},"
    "{\"id\":\"k\",\"type\":\"test "
    "hold\",\"wires\":[[\"h1\"]]},{\"id\":\"h1\",\"type\":\"helper\"}]";

static void test_ack_waits_for_hold(void)
{
    /* This broker lets one QoS 1 message be in flight per client: it sends the second only
     * after eddy acknowledged the first. */
    test_broker strict;
    CHECK_INT_EQ(test_broker_start(&strict, "max_inflight_messages 1"), 0);
    reset_records();
    held = 0;
    eddy_harness *h = start_flow(hold_flow, strict.port, hold_types);
    CHECK(h);
    CHECK(wait_status(h, "i1", "common.status.connected", 3000));
    pump(h, 100, NULL, 0);
    test_client *c = test_client_new(strict.port, "hold-pub", false);
    CHECK(c);
    CHECK_INT_EQ(test_client_publish(c, "hold/1", "first", 5, 1, false), 0);
    CHECK_INT_EQ(test_client_publish(c, "hold/2", "second", 6, 1, false), 0);
    CHECK(pump(h, 3000, "h1", 1));
    pump(h, 500, NULL, 0);
    CHECK_INT_EQ(count("h1"), 1); /* held: no PUBACK, so no second message */
    eddy_loop_release(eddy_harness_loop(h), held);
    held = 0;
    CHECK(pump(h, 3000, "h1", 2));
    CHECK_STR_EQ(json_string_value(json_object_get(msg_at("h1", 1), "payload")), "second");
    eddy_loop_release(eddy_harness_loop(h), held);
    test_client_free(c);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
    test_broker_stop(&strict, SIGTERM);
}

static const check_test tests[] = {{"wildcards_and_qos", test_wildcards_and_qos},
                                   {"retained", test_retained},
                                   {"payload_types", test_payload_types},
                                   {"dynamic_subscribe", test_dynamic_subscribe},
                                   {"credentials", test_credentials},
                                   {"broker_outage", test_broker_outage},
                                   {"persistent_session", test_persistent_session},
                                   {"backpressure", test_backpressure},
                                   {"backpressure_qos0", test_backpressure_qos0},
                                   {"read_coalescing", test_read_coalescing},
                                   {"tls", test_tls},
                                   {"out_payloads_birth_close", test_out_payloads_birth_close},
                                   {"ack_waits_for_hold", test_ack_waits_for_hold},
                                   {NULL, NULL}};

int main(int argc, char **argv)
{
    if (test_broker_start(&broker, NULL) != 0)
        return 1;
    int rc = check_main(tests, argc, argv);
    test_broker_stop(&broker, SIGTERM);
    json_decref(got);
    json_decref(events);
    return rc;
}
