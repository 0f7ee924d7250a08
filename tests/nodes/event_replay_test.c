/* event_replay_test.c: the event-replay node on a real store: full-speed replay in log
 * order in bounded chunks under back-pressure, ranges by stream, position and time from
 * msg.payload, pacing by event time on the virtual clock, stop, progress status, bad
 * requests. */
#include <string.h>

#include "check.h"
#include "harness.h"
#include "store.h"

static char *dir;
static eddy_store *st;
static eddy_harness *h;

static void fill(int n)
{
    char id[32], data[64];
    eddy_err err;
    for (int i = 0; i < n; i++) {
        snprintf(id, sizeof(id), "e%d", i);
        snprintf(data, sizeof(data), "{\"i\":%d}", i);
        eddy_store_event ev = {.type = i % 2 ? "odd" : "even",
                               .id = id,
                               .time = 1000 * (int64_t)i,
                               .data = data,
                               .data_len = strlen(data)};
        CHECK_INT_EQ(eddy_store_append(st, i % 3 ? "a" : "b", EDDY_STORE_ANY, &ev, 1, NULL, &err),
                     EDDY_OK);
    }
    CHECK_INT_EQ(eddy_store_commit(st, &err), EDDY_OK);
}

static void start(const char *flow, int events, size_t queue_limit)
{
    dir = eddy_test_tmpdir();
    CHECK(dir);
    eddy_err err;
    st = eddy_store_open(dir, NULL, &err);
    CHECK(st);
    fill(events);
    eddy_harness_opts opts = {.store = st, .queue_limit = queue_limit};
    eddy_problems problems = {0};
    h = eddy_harness_new(flow, &opts, &problems);
    if (!h) {
        eddy_problems_print(&problems, stderr);
        CHECK(h);
    }
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

static void send_json(const char *text)
{
    json_t *msg = json_loads(text, 0, NULL);
    CHECK(msg);
    CHECK_INT_EQ(eddy_harness_send(h, "r", msg), EDDY_OK);
}

#define FLOW(props)                                                                                \
    "[{\"id\":\"r\",\"type\":\"event-replay\"" props ",\"wires\":[[\"out\"],[\"done\"]]},"         \
    "{\"id\":\"out\",\"type\":\"helper\"},{\"id\":\"done\",\"type\":\"helper\"}]"

static void test_full_speed_in_log_order_under_back_pressure(void)
{
    start(FLOW(",\"chunk\":64"), 3000, 100);
    send_json("{\"payload\":\"go\",\"tag\":7}");
    eddy_harness_settle(h);
    json_t *got = eddy_harness_take(h, "out");
    CHECK_INT_EQ(json_array_size(got), 3000);
    for (size_t i = 0; i < json_array_size(got); i++) {
        json_t *m = json_array_get(got, i);
        CHECK_INT_EQ(json_integer_value(json_object_get(m, "position")), (long long)i + 1);
        CHECK_INT_EQ(json_integer_value(json_object_get(json_object_get(m, "payload"), "i")),
                     (long long)i);
        if (i == 3) {
            CHECK_STR_EQ(json_string_value(json_object_get(m, "topic")), "b");
            CHECK_STR_EQ(json_string_value(json_object_get(m, "eventType")), "odd");
            CHECK_INT_EQ(json_integer_value(json_object_get(m, "version")), 1);
            CHECK_INT_EQ(json_integer_value(json_object_get(m, "eventTime")), 3000);
        }
    }
    json_decref(got);
    eddy_engine_stats es;
    eddy_engine_get_stats(eddy_harness_engine(h), &es);
    CHECK(es.queue_high <= 101); /* it held back at the queue's bound */
    got = eddy_harness_take(h, "done");
    CHECK_INT_EQ(json_array_size(got), 1);
    json_t *d = json_array_get(got, 0);
    CHECK_INT_EQ(json_integer_value(json_object_get(d, "tag")), 7); /* the request message */
    CHECK_INT_EQ(json_integer_value(json_object_get(json_object_get(d, "payload"), "count")), 3000);
    CHECK(json_is_false(json_object_get(json_object_get(d, "payload"), "stopped")));
    json_decref(got);
    /* progress went to the status, ending with done */
    json_t *evs = eddy_harness_take_events(h);
    eddy_harness_advance(h, 1000);
    json_decref(evs);
    evs = eddy_harness_take_events(h);
    json_t *last = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e) if (strcmp(json_string_value(json_object_get(e, "kind")),
                                             "status") == 0) last = e;
    CHECK(last);
    CHECK_STR_EQ(json_string_value(json_object_get(last, "text")), "done: 3000 events");
    json_decref(evs);
    stop();
}

static void test_ranges_from_the_request(void)
{
    start(FLOW(",\"stream\":\"a\""), 30, 0);
    /* the node's stream */
    send_json("{}");
    eddy_harness_settle(h);
    json_t *got = eddy_harness_take(h, "out");
    CHECK_INT_EQ(json_array_size(got), 20);
    json_decref(got);
    /* a position range of $all */
    send_json("{\"payload\":{\"stream\":null,\"from\":5,\"to\":9}}");
    eddy_harness_settle(h);
    got = eddy_harness_take(h, "out");
    CHECK_INT_EQ(json_array_size(got), 5);
    CHECK_INT_EQ(json_integer_value(json_object_get(json_array_get(got, 0), "position")), 5);
    json_decref(got);
    /* a time range of stream b, by event time */
    send_json("{\"payload\":{\"stream\":\"b\",\"fromTime\":\"1970-01-01T00:00:03Z\","
              "\"toTime\":12000}}");
    eddy_harness_settle(h);
    got = eddy_harness_take(h, "out");
    CHECK_INT_EQ(json_array_size(got), 4); /* times 3000, 6000, 9000, 12000 */
    CHECK_INT_EQ(json_integer_value(json_object_get(json_array_get(got, 3), "eventTime")), 12000);
    json_decref(got);
    got = eddy_harness_take(h, "done");
    CHECK_INT_EQ(json_array_size(got), 3);
    json_t *p = json_object_get(json_array_get(got, 2), "payload");
    CHECK_INT_EQ(json_integer_value(json_object_get(p, "count")), 4);
    CHECK_INT_EQ(json_integer_value(json_object_get(p, "fromTime")), 3000);
    json_decref(got);
    /* a bad request is answered on output 2 with the reason */
    send_json("{\"payload\":{\"from\":\"x\"}}");
    eddy_harness_settle(h);
    got = eddy_harness_take(h, "done");
    CHECK_INT_EQ(json_array_size(got), 1);
    CHECK_CONTAINS(json_string_value(json_object_get(
                       json_object_get(json_array_get(got, 0), "payload"), "error")),
                   "from must be a position");
    json_decref(got);
    stop();
}

static void test_paced_by_event_time(void)
{
    /* events at 0, 1000, 2000 ... ms; speed 2: one every 500 ms */
    start(FLOW(",\"speed\":2,\"to\":6"), 10, 0);
    send_json("{}");
    eddy_harness_settle(h);
    json_t *got = eddy_harness_take(h, "out");
    CHECK_INT_EQ(json_array_size(got), 1);
    json_decref(got);
    eddy_harness_advance(h, 499);
    got = eddy_harness_take(h, "out");
    CHECK_INT_EQ(json_array_size(got), 0);
    json_decref(got);
    eddy_harness_advance(h, 1);
    got = eddy_harness_take(h, "out");
    CHECK_INT_EQ(json_array_size(got), 1);
    json_decref(got);
    eddy_harness_advance(h, 1000);
    got = eddy_harness_take(h, "out");
    CHECK_INT_EQ(json_array_size(got), 2);
    json_decref(got);
    /* a second request waits for the first; stop ends the running one */
    send_json("{\"payload\":{\"speed\":0,\"to\":2}}");
    send_json("{\"stop\":true}");
    eddy_harness_settle(h);
    got = eddy_harness_take(h, "done");
    CHECK_INT_EQ(json_array_size(got), 2);
    json_t *p = json_object_get(json_array_get(got, 0), "payload");
    CHECK(json_is_true(json_object_get(p, "stopped")));
    CHECK_INT_EQ(json_integer_value(json_object_get(p, "count")), 4);
    p = json_object_get(json_array_get(got, 1), "payload");
    CHECK(json_is_false(json_object_get(p, "stopped")));
    CHECK_INT_EQ(json_integer_value(json_object_get(p, "count")), 2);
    json_decref(got);
    got = eddy_harness_take(h, "out");
    CHECK_INT_EQ(json_array_size(got), 2);
    json_decref(got);
    stop();
}

static const check_test tests[] = {{"full_speed_in_log_order_under_back_pressure",
                                    test_full_speed_in_log_order_under_back_pressure},
                                   {"ranges_from_the_request", test_ranges_from_the_request},
                                   {"paced_by_event_time", test_paced_by_event_time},
                                   {NULL, NULL}};

CHECK_MAIN(tests)
