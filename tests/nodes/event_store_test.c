/* event_store_test.c: the event-store node in a real engine on a real LMDB store: messages
 * go on only after their commit (a probe node after it reads the store with a fresh read
 * transaction), flush hooks (MQTT acks) run only after the commit, redelivery, version
 * conflicts, dead letters, event times and types from messages. */
#include <string.h>

#include "check.h"
#include "harness.h"
#include "store.h"

static char *dir;
static eddy_store *st;
static eddy_harness *h;

/* "probe": on input, looks the event up with a new read transaction (so it sees only what
 * is committed) and records whether it was there. */
static int probe_seen, probe_missing;
static void probe_input(eddy_node *node, void *state, json_t *msg)
{
    uint64_t pos;
    eddy_err err;
    const char *id = json_string_value(json_object_get(msg, "eventId"));
    if (id && eddy_store_find_id(eddy_node_store(node), id, &pos, &err) == EDDY_OK &&
        pos == (uint64_t)json_integer_value(json_object_get(msg, "position")))
        probe_seen++;
    else
        probe_missing++;
    eddy_node_send(node, 0, msg);
}
static const eddy_node_type probe_type = {
    .name = "probe", .inputs = 1, .outputs = 1, .input = probe_input};
static const eddy_node_type *const test_types[] = {&probe_type, NULL};

static void start(const char *flow)
{
    dir = eddy_test_tmpdir();
    CHECK(dir);
    eddy_err err;
    st = eddy_store_open(dir, NULL, &err);
    CHECK(st);
    eddy_harness_opts opts = {.store = st, .types = test_types};
    eddy_problems problems = {0};
    h = eddy_harness_new(flow, &opts, &problems);
    if (!h) {
        eddy_problems_print(&problems, stderr);
        CHECK(h);
    }
    eddy_problems_clear(&problems);
    probe_seen = probe_missing = 0;
}

static void stop(void)
{
    CHECK_INT_EQ(eddy_harness_free(h), 0);
    h = NULL;
    eddy_store_close(st);
    st = NULL;
    eddy_test_rmdir(dir);
    dir = NULL;
}

static void send_json(const char *node, const char *text)
{
    json_t *msg = json_loads(text, 0, NULL);
    CHECK(msg);
    CHECK_INT_EQ(eddy_harness_send(h, node, msg), EDDY_OK);
}

static const char *flow_basic =
    "[{\"id\":\"s\",\"type\":\"event-store\",\"stream\":\"payload.device\","
    "\"eventType\":\"reading\",\"eventId\":\"msg.payload.id\",\"eventTime\":\"payload.ts\","
    "\"expectedVersion\":\"expected\",\"wires\":[[\"p\"],[\"bad\"]]},"
    "{\"id\":\"p\",\"type\":\"probe\",\"wires\":[[\"ok\"]]},"
    "{\"id\":\"ok\",\"type\":\"helper\"},{\"id\":\"bad\",\"type\":\"helper\"}]";

static void test_message_goes_on_after_commit(void)
{
    start(flow_basic);
    send_json("s", "{\"payload\":{\"device\":\"d1\",\"id\":\"e1\",\"ts\":1000,\"t\":20}}");
    send_json("s", "{\"payload\":{\"device\":\"d1\",\"id\":\"e2\",\"ts\":2000,\"t\":21}}");
    send_json("s", "{\"payload\":{\"device\":\"d2\",\"id\":\"e3\",\"ts\":1500,\"t\":22}}");
    eddy_harness_settle(h);
    json_t *got = eddy_harness_take(h, "ok");
    CHECK_INT_EQ(json_array_size(got), 3);
    CHECK_INT_EQ(probe_seen, 3);
    CHECK_INT_EQ(probe_missing, 0);
    json_t *m = json_array_get(got, 1);
    CHECK_INT_EQ(json_integer_value(json_object_get(m, "position")), 2);
    CHECK_INT_EQ(json_integer_value(json_object_get(m, "version")), 1);
    CHECK_STR_EQ(json_string_value(json_object_get(m, "eventId")), "e2");
    CHECK(!json_object_get(m, "duplicate"));
    json_decref(got);
    got = eddy_harness_take(h, "bad");
    CHECK_INT_EQ(json_array_size(got), 0);
    json_decref(got);
    /* what was stored */
    eddy_err err;
    eddy_store_query q = {.stream = "d1"};
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    eddy_store_record rec;
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 1);
    CHECK_STR_EQ(rec.type, "reading");
    CHECK_INT_EQ(rec.time, 1000);
    CHECK_STR_EQ(rec.data, "{\"device\":\"d1\",\"id\":\"e1\",\"ts\":1000,\"t\":20}");
    CHECK_INT_EQ(rec.ingest_time, 1704067200000); /* the harness's wall clock */
    eddy_store_iter_close(it);
    stop();
}

/* A flush hook stands for MQTT's acknowledgements: it must not run while appends wait. */
static int flushes, early_flushes;
static uint64_t flushed_at;
static void on_flush(eddy_loop *loop, void *data)
{
    flushes++;
    if (eddy_store_pending(data))
        early_flushes++;
    flushed_at = eddy_store_last_position(data);
}

static void test_acks_wait_for_the_commit(void)
{
    start(flow_basic);
    eddy_loop *loop = eddy_harness_loop(h);
    CHECK_INT_EQ(eddy_loop_add_flush(loop, on_flush, st), EDDY_OK);
    flushes = early_flushes = 0;
    for (int i = 0; i < 50; i++) {
        char text[128];
        snprintf(text, sizeof(text), "{\"payload\":{\"device\":\"d\",\"id\":\"a%d\",\"ts\":%d}}", i,
                 i);
        send_json("s", text);
    }
    CHECK(!eddy_loop_settled(loop));
    eddy_harness_settle(h);
    CHECK(flushes > 0);
    CHECK_INT_EQ(early_flushes, 0);
    CHECK_INT_EQ(flushed_at, 50);
    json_t *got = eddy_harness_take(h, "ok");
    CHECK_INT_EQ(json_array_size(got), 50);
    json_decref(got);
    eddy_loop_remove_flush(loop, on_flush, st);
    stop();
}

static void test_redelivery_is_stored_once(void)
{
    start(flow_basic);
    send_json("s", "{\"payload\":{\"device\":\"d1\",\"id\":\"same\",\"ts\":1}}");
    eddy_harness_settle(h);
    send_json("s", "{\"payload\":{\"device\":\"d1\",\"id\":\"same\",\"ts\":1}}");
    send_json("s", "{\"payload\":{\"device\":\"d1\",\"id\":\"same\",\"ts\":1}}");
    eddy_harness_settle(h);
    json_t *got = eddy_harness_take(h, "ok");
    CHECK_INT_EQ(json_array_size(got), 3);
    for (int i = 0; i < 3; i++) {
        json_t *m = json_array_get(got, (size_t)i);
        CHECK_INT_EQ(json_integer_value(json_object_get(m, "position")), 1);
        CHECK_INT_EQ(json_is_true(json_object_get(m, "duplicate")), i > 0);
    }
    json_decref(got);
    CHECK_INT_EQ(eddy_store_last_position(st), 1);
    stop();
}

static void test_refused_and_dead_letters_leave_on_output_2(void)
{
    start(flow_basic);
    /* expected version 5 on a new stream */
    send_json("s", "{\"payload\":{\"device\":\"d1\",\"id\":\"v1\",\"ts\":1},\"expected\":5}");
    /* no stream, a body that is not JSON text, a time that is not a time */
    send_json("s", "{\"payload\":{\"id\":\"v2\",\"ts\":1}}");
    send_json("s", "{\"payload\":{\"device\":\"d1\",\"id\":\"v3\",\"ts\":\"yesterday\"}}");
    send_json("s", "{\"payload\":{\"device\":\"d1\",\"id\":\"v4\",\"ts\":1},\"expected\":\"x\"}");
    /* and one good one with an exact expected version */
    send_json(
        "s", "{\"payload\":{\"device\":\"d1\",\"id\":\"v5\",\"ts\":1},\"expected\":\"no_stream\"}");
    eddy_harness_settle(h);
    json_t *bad = eddy_harness_take(h, "bad");
    CHECK_INT_EQ(json_array_size(bad), 4);
    json_t *m = json_array_get(bad, 0);
    CHECK_CONTAINS(json_string_value(json_object_get(m, "reason")),
                   "stream 'd1' is at version -1, expected 5");
    CHECK_INT_EQ(json_integer_value(json_object_get(m, "currentVersion")), -1);
    m = json_array_get(bad, 1);
    CHECK_STR_EQ(json_string_value(json_object_get(m, "reason")), "missing stream");
    CHECK(json_integer_value(json_object_get(m, "deadletter")) > 0);
    m = json_array_get(bad, 2);
    CHECK_STR_EQ(json_string_value(json_object_get(m, "reason")), "invalid event time");
    m = json_array_get(bad, 3);
    CHECK_CONTAINS(json_string_value(json_object_get(m, "reason")), "invalid expected version");
    json_decref(bad);
    json_t *ok = eddy_harness_take(h, "ok");
    CHECK_INT_EQ(json_array_size(ok), 1);
    json_decref(ok);
    eddy_store_stats stats;
    eddy_err err;
    CHECK_INT_EQ(eddy_store_get_stats(st, &stats, &err), EDDY_OK);
    CHECK_INT_EQ(stats.deadletters, 2);
    CHECK_INT_EQ(stats.events, 3);
    stop();
}

static void test_body_formats_and_types(void)
{
    start("[{\"id\":\"s\",\"type\":\"event-store\",\"stream\":\"topic\",\"eventType\":\"kind\","
          "\"eventTypeType\":\"msg\",\"eventTime\":\"when\",\"wires\":[[\"ok\"],[\"bad\"]]},"
          "{\"id\":\"v\",\"type\":\"event-store\",\"stream\":\"topic\",\"bodyFormat\":\"value\","
          "\"wires\":[[\"ok\"],[\"bad\"]]},"
          "{\"id\":\"ok\",\"type\":\"helper\"},{\"id\":\"bad\",\"type\":\"helper\"}]");
    send_json("s", "{\"topic\":\"a\",\"kind\":\"opened\",\"when\":\"2024-01-01T00:00:01.5Z\","
                   "\"payload\":\"{ \\\"door\\\": 1 }\"}");
    send_json("s", "{\"topic\":\"a\",\"kind\":\"opened\",\"payload\":\"on\"}");
    send_json("v", "{\"topic\":\"b\",\"payload\":\"on\"}");
    send_json("v", "{\"topic\":42,\"payload\":[1,2.5,null]}");
    eddy_harness_settle(h);
    json_t *ok = eddy_harness_take(h, "ok");
    json_t *bad = eddy_harness_take(h, "bad");
    CHECK_INT_EQ(json_array_size(ok), 3);
    CHECK_INT_EQ(json_array_size(bad), 1);
    CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(bad, 0), "reason")),
                 "body is not valid JSON");
    json_decref(ok);
    json_decref(bad);
    eddy_err err;
    eddy_store_query q = {0};
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    eddy_store_record rec;
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 1);
    CHECK_STR_EQ(rec.stream, "a");
    CHECK_STR_EQ(rec.type, "opened");
    CHECK_INT_EQ(rec.time, 1704067201500);
    CHECK_STR_EQ(rec.data, "{\"door\":1}");
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 1);
    CHECK_STR_EQ(rec.stream, EDDY_STORE_DEADLETTER_STREAM);
    CHECK_CONTAINS(rec.data, "\"original\":\"on\"");
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 1);
    CHECK_STR_EQ(rec.stream, "b");
    CHECK_STR_EQ(rec.type, "event");
    CHECK_STR_EQ(rec.data, "\"on\"");
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 1);
    CHECK_STR_EQ(rec.stream, "42");
    CHECK_STR_EQ(rec.data, "[1,2.5,null]");
    eddy_store_iter_close(it);
    stop();
}

/* A validation step's verdict (msg.invalid) sends the event to $deadletter with that reason
 * and the original body; a message without one is stored as usual. */
static void test_flow_verdict_goes_to_dead_letters(void)
{
    start("[{\"id\":\"s\",\"type\":\"event-store\",\"stream\":\"payload.device\","
          "\"eventId\":\"payload.id\",\"invalid\":\"invalid\",\"wires\":[[\"ok\"],[\"bad\"]]},"
          "{\"id\":\"ok\",\"type\":\"helper\"},{\"id\":\"bad\",\"type\":\"helper\"}]");
    send_json("s", "{\"payload\":{\"device\":\"d1\",\"id\":\"w1\",\"t\":\"hot\"},"
                   "\"invalid\":\"temperature is not a number\"}");
    send_json("s", "{\"payload\":{\"device\":\"d1\",\"id\":\"w2\",\"t\":21},\"invalid\":\"\"}");
    /* the verdict wins over the store's own complaint (no stream here) */
    send_json("s", "{\"payload\":\"{\\\"device\",\"invalid\":\"not a JSON object\"}");
    eddy_harness_settle(h);
    json_t *bad = eddy_harness_take(h, "bad");
    CHECK_INT_EQ(json_array_size(bad), 2);
    json_t *m = json_array_get(bad, 1);
    CHECK_STR_EQ(json_string_value(json_object_get(m, "reason")), "not a JSON object");
    m = json_array_get(bad, 0);
    CHECK_STR_EQ(json_string_value(json_object_get(m, "reason")), "temperature is not a number");
    uint64_t dl = (uint64_t)json_integer_value(json_object_get(m, "deadletter"));
    CHECK(dl > 0);
    json_decref(bad);
    json_t *ok = eddy_harness_take(h, "ok");
    CHECK_INT_EQ(json_array_size(ok), 1);
    json_decref(ok);

    eddy_err err;
    eddy_store_query q = {.stream = EDDY_STORE_DEADLETTER_STREAM};
    eddy_store_iter *it = eddy_store_iter_open(st, &q, &err);
    CHECK(it);
    eddy_store_record rec;
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 1);
    CHECK_INT_EQ(rec.position, dl);
    json_t *body = json_loadb(rec.data, rec.data_len, 0, NULL);
    CHECK(body);
    CHECK_STR_EQ(json_string_value(json_object_get(body, "reason")), "temperature is not a number");
    CHECK_STR_EQ(json_string_value(json_object_get(body, "stream")), "d1");
    CHECK_STR_EQ(json_string_value(json_object_get(body, "id")), "w1");
    CHECK_CONTAINS(json_string_value(json_object_get(body, "original")), "\"t\":\"hot\"");
    json_decref(body);
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 1);
    CHECK_CONTAINS(rec.data, "not a JSON object");
    CHECK_INT_EQ(eddy_store_iter_next(it, &rec, &err), 0);
    eddy_store_iter_close(it);
    stop();
}

static void test_configuration_errors(void)
{
    eddy_problems problems = {0};
    /* no store */
    eddy_harness *x =
        eddy_harness_new("[{\"id\":\"s\",\"type\":\"event-store\"}]", NULL, &problems);
    CHECK(!x);
    CHECK(problems.count > 0);
    CHECK_CONTAINS(problems.items[0].msg, "no event store");
    CHECK_STR_EQ(problems.items[0].node_id, "s");
    eddy_problems_clear(&problems);
    /* a bad property path */
    x = eddy_harness_new("[{\"id\":\"s\",\"type\":\"event-store\",\"stream\":\"a[\"}]", NULL,
                         &problems);
    CHECK(!x);
    CHECK_CONTAINS(problems.items[0].msg, "stream 'a['");
    eddy_problems_clear(&problems);
    x = eddy_harness_new("[{\"id\":\"s\",\"type\":\"event-store\",\"bodyFormat\":\"xml\"}]", NULL,
                         &problems);
    CHECK(!x);
    eddy_problems_clear(&problems);
}

static const check_test tests[] = {
    {"message_goes_on_after_commit", test_message_goes_on_after_commit},
    {"acks_wait_for_the_commit", test_acks_wait_for_the_commit},
    {"redelivery_is_stored_once", test_redelivery_is_stored_once},
    {"refused_and_dead_letters_leave_on_output_2", test_refused_and_dead_letters_leave_on_output_2},
    {"body_formats_and_types", test_body_formats_and_types},
    {"flow_verdict_goes_to_dead_letters", test_flow_verdict_goes_to_dead_letters},
    {"configuration_errors", test_configuration_errors},
    {NULL, NULL}};

CHECK_MAIN(tests)
