/* engine_test.c: fan-out copies, back-pressure with resume, stop draining the queue,
 * asynchronous close, stop passing on what the event store holds until its commit, and a
 * source that respects the queue bound. Uses test-only node
 * types registered next to the native ones. */
#include "check.h"
#include "engine.h"
#include "harness.h"
#include "registry.h"
#include "store.h"

/* "mutate": sets payload.touched = true on what it gets, then passes it on. */
static void mutate_input(eddy_node *node, void *state, json_t *msg)
{
    json_t *p = json_object_get(msg, "payload");
    if (json_is_object(p))
        json_object_set_new(p, "touched", json_true());
    eddy_node_send(node, 0, msg);
}

static const eddy_node_type mutate_type = {
    .name = "mutate", .inputs = 1, .outputs = 1, .input = mutate_input};

/* "burst": on input, sends 'n' numbered messages while the queue allows, resuming when
 * the engine says it drained. */
struct burst_state {
    long n;
    long sent;
    int pauses;
};
static const eddy_prop burst_props[] = {
    {"n", EDDY_PROP_INT, "100", false, offsetof(struct burst_state, n), NULL, NULL}, {0}};

static void burst_pump(eddy_node *node, void *state)
{
    struct burst_state *s = state;
    while (s->sent < s->n) {
        if (eddy_node_backlogged(node)) {
            s->pauses++;
            return;
        }
        json_t *m = eddy_msg_new();
        json_object_set_new(m, "payload", json_integer(s->sent++));
        eddy_node_send(node, 0, m);
    }
}

static int burst_setup(eddy_node *node, void *state, eddy_err *err)
{
    eddy_node_on_drain(node, burst_pump);
    return EDDY_OK;
}

static void burst_input(eddy_node *node, void *state, json_t *msg)
{
    json_decref(msg);
    burst_pump(node, state);
}

static const eddy_node_type burst_type = {.name = "burst",
                                          .inputs = 1,
                                          .outputs = 1,
                                          .props = burst_props,
                                          .state_size = sizeof(struct burst_state),
                                          .setup = burst_setup,
                                          .input = burst_input};

/* "slowclose": closes asynchronously, 50 ms after it is asked. */
static int closed_late;
static int64_t finish_close(eddy_loop *loop, eddy_timer *t, void *data)
{
    closed_late++;
    eddy_node_closed(data);
    return EDDY_TIMER_STOP;
}
static int slowclose_close(eddy_node *node, void *state, bool removed)
{
    eddy_timer_start(eddy_node_loop(node), 50, finish_close, node, NULL);
    return EDDY_CLOSE_LATER;
}
static const eddy_node_type slowclose_type = {
    .name = "slowclose", .inputs = 0, .outputs = 0, .close = slowclose_close};

/* "count": counts what it receives. */
static long counted;
static void count_input(eddy_node *node, void *state, json_t *msg)
{
    counted++;
    json_decref(msg);
}
static const eddy_node_type count_type = {
    .name = "count", .inputs = 1, .outputs = 0, .input = count_input};

typedef struct rig {
    eddy_loop *loop;
    eddy_registry *reg;
    eddy_engine *engine;
} rig;

static void rig_start(rig *r, const char *flow_text, size_t queue_limit)
{
    r->loop = eddy_loop_new(EDDY_CLOCK_MANUAL, NULL);
    r->reg = eddy_registry_new(NULL);
    eddy_registry_add_builtin(r->reg, NULL);
    eddy_registry_add(r->reg, &mutate_type, NULL);
    eddy_registry_add(r->reg, &burst_type, NULL);
    eddy_registry_add(r->reg, &slowclose_type, NULL);
    eddy_registry_add(r->reg, &count_type, NULL);
    eddy_engine_opts opts = {.queue_limit = queue_limit, .batch = 16};
    r->engine = eddy_engine_new(r->loop, r->reg, &opts, NULL);
    eddy_problems p = {0};
    eddy_flow *f = eddy_flow_load(flow_text, strlen(flow_text), "t.json", r->reg, &p);
    if (!f) {
        eddy_problems_print(&p, stderr);
        CHECK_FAIL_("flow did not load");
    }
    CHECK_INT_EQ(eddy_engine_start(r->engine, f, &p), EDDY_OK);
    eddy_problems_clear(&p);
}

static void rig_stop(rig *r)
{
    eddy_engine_free(r->engine);
    CHECK_INT_EQ(eddy_loop_timer_count(r->loop), 0);
    eddy_loop_free(r->loop);
    eddy_registry_free(r->reg);
}

static void test_fan_out_copies_are_independent(void)
{
    /* Each branch mutates its message; neither may see the other's change or a shared one. */
    eddy_harness_opts o = {0};
    eddy_problems p = {0};
    eddy_harness *h =
        eddy_harness_new("[{\"id\":\"j\",\"type\":\"junction\",\"wires\":[[\"h1\",\"h2\"]]},"
                         "{\"id\":\"h1\",\"type\":\"helper\"},{\"id\":\"h2\",\"type\":\"helper\"}]",
                         &o, &p);
    CHECK(h);
    json_t *msg = json_pack("{s:{s:i}}", "payload", "v", 1);
    eddy_harness_send(h, "j", msg);
    eddy_harness_settle(h);
    json_t *a = eddy_harness_take(h, "h1"), *b = eddy_harness_take(h, "h2");
    CHECK_INT_EQ(json_array_size(a), 1);
    CHECK_INT_EQ(json_array_size(b), 1);
    json_t *ma = json_array_get(a, 0), *mb = json_array_get(b, 0);
    CHECK(ma != mb);
    CHECK(json_object_get(ma, "payload") != json_object_get(mb, "payload"));
    CHECK_STR_EQ(json_string_value(json_object_get(ma, "_msgid")),
                 json_string_value(json_object_get(mb, "_msgid")));
    json_decref(a);
    json_decref(b);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
}

static void test_fan_out_mutation_does_not_leak(void)
{
    rig r;
    counted = 0;
    rig_start(&r,
              "[{\"id\":\"t\",\"type\":\"tab\"},"
              "{\"id\":\"j\",\"type\":\"junction\",\"z\":\"t\",\"wires\":[[\"m\",\"c\"]]},"
              "{\"id\":\"m\",\"type\":\"mutate\",\"z\":\"t\",\"wires\":[[]]},"
              "{\"id\":\"c\",\"type\":\"count\",\"z\":\"t\"}]",
              0);
    json_t *msg = json_pack("{s:{s:i}}", "payload", "v", 1);
    json_t *payload = json_incref(json_object_get(msg, "payload"));
    eddy_engine_inject(r.engine, eddy_engine_find(r.engine, "j"), msg);
    eddy_loop_settle(r.loop);
    /* The first target got the original (mutated); the copy went to "c". */
    CHECK(json_is_true(json_object_get(payload, "touched")));
    CHECK_INT_EQ(counted, 1);
    json_decref(payload);
    rig_stop(&r);
}

static void test_back_pressure_bounds_the_queue(void)
{
    rig r;
    counted = 0;
    rig_start(&r,
              "[{\"id\":\"t\",\"type\":\"tab\"},"
              "{\"id\":\"b\",\"type\":\"burst\",\"z\":\"t\",\"n\":10000,\"wires\":[[\"c\"]]},"
              "{\"id\":\"c\",\"type\":\"count\",\"z\":\"t\"}]",
              100);
    eddy_engine_inject(r.engine, eddy_engine_find(r.engine, "b"), eddy_msg_new());
    eddy_loop_settle(r.loop);
    eddy_engine_stats st;
    eddy_engine_get_stats(r.engine, &st);
    CHECK_INT_EQ(counted, 10000);
    CHECK(st.queue_high <= 101); /* the source held back at the bound */
    struct burst_state *bs = eddy_node_state(eddy_engine_find(r.engine, "b"));
    CHECK(bs->pauses > 10);
    rig_stop(&r);
}

static void test_stop_delivers_queued_messages(void)
{
    rig r;
    counted = 0;
    rig_start(&r,
              "[{\"id\":\"t\",\"type\":\"tab\"},"
              "{\"id\":\"j\",\"type\":\"junction\",\"z\":\"t\",\"wires\":[[\"c\"]]},"
              "{\"id\":\"c\",\"type\":\"count\",\"z\":\"t\"}]",
              0);
    for (int i = 0; i < 500; i++)
        eddy_engine_inject(r.engine, eddy_engine_find(r.engine, "j"), eddy_msg_new());
    eddy_engine_stop(r.engine); /* nothing ran yet: stop must deliver them */
    CHECK_INT_EQ(counted, 500);
    rig_stop(&r);
}

static void test_stop_passes_on_what_the_store_holds(void)
{
    /* An event-store node sends a message on only after its commit. At stop, that commit
     * must come while the nodes downstream still take input: committed and then dropped
     * on the way to a closed node, the message would be acknowledged (the commit releases
     * the MQTT acknowledgements) with the rest of its flow never run. */
    char *dir = eddy_test_tmpdir();
    eddy_err err;
    eddy_store *st = eddy_store_open(dir, NULL, &err);
    CHECK(st);
    eddy_harness_opts o = {.store = st};
    eddy_problems p = {0};
    eddy_harness *h = eddy_harness_new(
        "[{\"id\":\"s\",\"type\":\"event-store\",\"stream\":\"topic\",\"wires\":[[\"h\"],[]]},"
        "{\"id\":\"h\",\"type\":\"helper\"}]",
        &o, &p);
    CHECK(h);
    for (int i = 0; i < 3; i++)
        eddy_harness_send(h, "s", json_pack("{s:s,s:{s:i}}", "topic", "a", "payload", "n", i));
    eddy_engine_stop(eddy_harness_engine(h)); /* appended at stop, not committed before */
    json_t *got = eddy_harness_take(h, "h");
    CHECK_INT_EQ(json_array_size(got), 3);
    CHECK_INT_EQ(json_integer_value(json_object_get(json_array_get(got, 2), "position")), 3);
    json_decref(got);
    CHECK_INT_EQ(eddy_harness_free(h), 0);
    eddy_store_close(st);
    eddy_test_rmdir(dir);
}

static void test_asynchronous_close_is_awaited(void)
{
    rig r;
    closed_late = 0;
    rig_start(&r,
              "[{\"id\":\"t\",\"type\":\"tab\"},{\"id\":\"s\",\"type\":\"slowclose\",\"z\":\"t\"}]",
              0);
    eddy_engine_stop(r.engine);
    CHECK_INT_EQ(closed_late, 1);
    CHECK(!eddy_engine_running(r.engine));
    rig_stop(&r);
}

static void test_setup_failure_names_node(void)
{
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, NULL);
    eddy_registry *reg = eddy_registry_new(NULL);
    eddy_registry_add_builtin(reg, NULL);
    eddy_engine *e = eddy_engine_new(loop, reg, NULL, NULL);
    eddy_problems p = {0};
    /* link call with a pending-table allocation failure: make setup's allocation fail */
    const char *text = "[{\"id\":\"t\",\"type\":\"tab\"},{\"id\":\"lc\",\"type\":\"link call\","
                       "\"z\":\"t\",\"links\":[\"li\"],\"wires\":[[]]},"
                       "{\"id\":\"li\",\"type\":\"link in\",\"z\":\"t\",\"wires\":[[]]}]";
    eddy_flow *f = eddy_flow_load(text, strlen(text), "t.json", reg, &p);
    CHECK(f);
    int started = 0;
    /* Fail allocations one by one until start succeeds: every failure must be reported
     * as a problem, and nothing may leak (checked by ASan/valgrind runs). */
    for (long n = 1; n < 200 && !started; n++) {
        eddy_flow *copy = eddy_flow_load(text, strlen(text), "t.json", reg, &p);
        CHECK(copy);
        eddy_mem_fail_after(n);
        int rc = eddy_engine_start(e, copy, &p);
        eddy_mem_fail_after(0);
        if (rc == EDDY_OK)
            started = 1;
        else
            CHECK(p.count > 0);
        eddy_problems_clear(&p);
        eddy_engine_stop(e);
    }
    CHECK(started);
    eddy_flow_free(f);
    eddy_engine_free(e);
    eddy_loop_free(loop);
    eddy_registry_free(reg);
}

static const check_test tests[] = {
    {"fan_out_copies_are_independent", test_fan_out_copies_are_independent},
    {"fan_out_mutation_does_not_leak", test_fan_out_mutation_does_not_leak},
    {"back_pressure_bounds_the_queue", test_back_pressure_bounds_the_queue},
    {"stop_delivers_queued_messages", test_stop_delivers_queued_messages},
    {"stop_passes_on_what_the_store_holds", test_stop_passes_on_what_the_store_holds},
    {"asynchronous_close_is_awaited", test_asynchronous_close_is_awaited},
    {"setup_failure_names_node", test_setup_failure_names_node},
    {NULL, NULL}};

CHECK_MAIN(tests)
