/* event_subscribe_test.c: the event-subscribe node on a real store: catch-up then live with
 * appends landing during the catch-up (no gap, no duplicate at the switch), resuming from
 * the stored checkpoint after a restart (store closed and reopened), one stream, start at
 * the end. */
#include <string.h>

#include "check.h"
#include "harness.h"
#include "store.h"

static char *dir;
static eddy_store *st;
static eddy_harness *h;
static int appended;

static void append_n(const char *stream, int n)
{
    char id[32], data[64];
    eddy_err err;
    for (int i = 0; i < n; i++, appended++) {
        snprintf(id, sizeof(id), "x%d", appended);
        snprintf(data, sizeof(data), "{\"n\":%d}", appended);
        eddy_store_event ev = {
            .id = id, .time = EDDY_STORE_TIME_NONE, .data = data, .data_len = strlen(data)};
        CHECK_INT_EQ(eddy_store_append(st, stream, EDDY_STORE_ANY, &ev, 1, NULL, &err), EDDY_OK);
    }
}

/* "appender": appends 7 new events every 50 messages it sees (so appends land while the
 * subscription is still catching up), passing nothing on. */
static int seen_by_appender;
static void appender_input(eddy_node *node, void *state, json_t *msg)
{
    if (++seen_by_appender % 50 == 0 && seen_by_appender <= 1000)
        append_n("a", 7);
    json_decref(msg);
}
static const eddy_node_type appender_type = {
    .name = "appender", .inputs = 1, .outputs = 0, .input = appender_input};
static const eddy_node_type *const test_types[] = {&appender_type, NULL};

static void open_store(void)
{
    eddy_err err;
    st = eddy_store_open(dir, NULL, &err);
    CHECK(st);
}

static void start(const char *flow)
{
    eddy_harness_opts opts = {.store = st, .types = test_types};
    eddy_problems problems = {0};
    h = eddy_harness_new(flow, &opts, &problems);
    if (!h) {
        eddy_problems_print(&problems, stderr);
        CHECK(h);
    }
}

static void stop_harness(void)
{
    CHECK_INT_EQ(eddy_harness_free(h), 0);
    h = NULL;
}

/* Takes what reached "out" and checks it is positions first..first+count-1, in order. */
static void expect_positions(uint64_t first, size_t count)
{
    json_t *got = eddy_harness_take(h, "out");
    if (json_array_size(got) != count)
        CHECK_FAIL_("got %zu events, want %zu", json_array_size(got), count);
    for (size_t i = 0; i < count; i++) {
        json_t *m = json_array_get(got, i);
        CHECK_INT_EQ(json_integer_value(json_object_get(m, "position")), (long long)(first + i));
    }
    json_decref(got);
}

#define SUB_FLOW(props)                                                                            \
    "[{\"id\":\"sub\",\"type\":\"event-subscribe\"" props ",\"wires\":[[\"out\",\"app\"]]},"       \
    "{\"id\":\"out\",\"type\":\"helper\"},{\"id\":\"app\",\"type\":\"appender\"}]"

static void test_catch_up_then_live_without_gap_or_duplicate(void)
{
    dir = eddy_test_tmpdir();
    open_store();
    appended = seen_by_appender = 0;
    append_n("a", 300);
    eddy_err err;
    CHECK_INT_EQ(eddy_store_commit(st, &err), EDDY_OK);
    start(SUB_FLOW(",\"chunk\":40"));
    eddy_harness_settle(h);
    /* 300 stored, plus 7 for every 50 seen while catching up, until it caught up */
    CHECK(appended > 300);
    expect_positions(1, (size_t)appended);
    seen_by_appender = 1000000; /* quiet from now on */
    /* live: appends from outside the flow, committed by the loop's hook */
    append_n("a", 5);
    append_n("b", 5);
    eddy_harness_settle(h);
    expect_positions((uint64_t)appended - 9, 10);
    eddy_harness_advance(h, 2000); /* the checkpoint is written */
    eddy_store_checkpoint cp;
    CHECK_INT_EQ(eddy_store_checkpoint_get(st, "sub:sub", &cp, &err), EDDY_OK);
    CHECK_INT_EQ(cp.position, appended);
    json_t *evs = eddy_harness_take_events(h);
    const char *status = NULL;
    size_t i;
    json_t *e;
    json_array_foreach(evs, i, e) if (json_object_get(e, "status")) status =
        json_string_value(json_object_get(e, "text"));
    CHECK_CONTAINS(status, "live, at");
    json_decref(evs);
    stop_harness();
    eddy_store_close(st);
    eddy_test_rmdir(dir);
}

static void test_resumes_from_checkpoint_after_restart(void)
{
    dir = eddy_test_tmpdir();
    open_store();
    seen_by_appender = 1000000; /* the appender stays quiet */
    appended = 0;
    append_n("a", 100);
    eddy_err err;
    CHECK_INT_EQ(eddy_store_commit(st, &err), EDDY_OK);
    const char *flow = SUB_FLOW(",\"subscription\":\"model\",\"checkpointMs\":60000");
    start(flow);
    eddy_harness_settle(h);
    expect_positions(1, 100);
    stop_harness(); /* close writes the checkpoint; detach commits it */
    eddy_store_close(st);
    open_store();
    append_n("a", 20);
    CHECK_INT_EQ(eddy_store_commit(st, &err), EDDY_OK);
    start(flow);
    eddy_harness_settle(h);
    expect_positions(101, 20);
    stop_harness();
    /* another subscription name starts from the beginning */
    start(SUB_FLOW(",\"subscription\":\"other\""));
    eddy_harness_settle(h);
    expect_positions(1, 120);
    stop_harness();
    eddy_store_close(st);
    eddy_test_rmdir(dir);
}

static void test_one_stream_and_start_at_end(void)
{
    dir = eddy_test_tmpdir();
    open_store();
    appended = 0;
    seen_by_appender = 1000000;
    append_n("a", 3);
    append_n("b", 2);
    append_n("a", 3);
    eddy_err err;
    CHECK_INT_EQ(eddy_store_commit(st, &err), EDDY_OK);
    const char *flow = SUB_FLOW(",\"stream\":\"a\",\"checkpointMs\":0");
    start(flow);
    eddy_harness_settle(h);
    json_t *got = eddy_harness_take(h, "out");
    CHECK_INT_EQ(json_array_size(got), 6);
    CHECK_INT_EQ(json_integer_value(json_object_get(json_array_get(got, 5), "version")), 5);
    CHECK_INT_EQ(json_integer_value(json_object_get(json_array_get(got, 5), "position")), 8);
    json_decref(got);
    stop_harness();
    append_n("a", 1);
    append_n("b", 1);
    CHECK_INT_EQ(eddy_store_commit(st, &err), EDDY_OK);
    start(flow);
    eddy_harness_settle(h);
    got = eddy_harness_take(h, "out");
    CHECK_INT_EQ(json_array_size(got), 1);
    CHECK_INT_EQ(json_integer_value(json_object_get(json_array_get(got, 0), "version")), 6);
    json_decref(got);
    stop_harness();
    /* start at the end: only what comes after */
    start(SUB_FLOW(",\"subscription\":\"late\",\"start\":\"end\""));
    eddy_harness_settle(h);
    expect_positions(1, 0);
    append_n("b", 2);
    eddy_harness_settle(h);
    expect_positions(11, 2);
    stop_harness();
    eddy_store_close(st);
    eddy_test_rmdir(dir);
}

static const check_test tests[] = {
    {"catch_up_then_live_without_gap_or_duplicate",
     test_catch_up_then_live_without_gap_or_duplicate},
    {"resumes_from_checkpoint_after_restart", test_resumes_from_checkpoint_after_restart},
    {"one_stream_and_start_at_end", test_one_stream_and_start_at_end},
    {NULL, NULL}};

CHECK_MAIN(tests)
