/* redeploy_test.c: partial deploys ("modified nodes", "modified flows") restart only what
 * changed; moving or rewiring a node keeps it running; a node that found a restarted node
 * at set-up restarts too; removed nodes hear 'removed'; context survives; messages queued
 * in flight are delivered before the restart. Test-only types count set-ups and closes
 * per node id. */
#include "check.h"
#include "engine.h"
#include "flow.h"
#include "loop.h"
#include "msg.h"
#include "registry.h"

#define MAX_EVENTS 64

/* What the probes saw: "setup:<id>", "close:<id>", "close-removed:<id>", "in:<id>:<payload>". */
static char events[MAX_EVENTS][64];
static int event_count;

static void record(const char *fmt, const char *a, long b)
{
    if (event_count < MAX_EVENTS)
        snprintf(events[event_count++], sizeof(events[0]), fmt, a, b);
}

static int count_events(const char *text)
{
    int n = 0;
    for (int i = 0; i < event_count; i++)
        n += strcmp(events[i], text) == 0;
    return n;
}

/* "probe": records set-up, close and input, passes messages on. Its 'ref' property may
 * name a "probe-config" node; its 'find' property a node it looks up at set-up. */
struct probe_state {
    const char *label;
    eddy_node *ref;
    const char *find;
};
static const eddy_prop probe_props[] = {
    {"label", EDDY_PROP_STR, "\"\"", false, offsetof(struct probe_state, label), NULL, NULL},
    {"ref", EDDY_PROP_CONFIG, NULL, false, offsetof(struct probe_state, ref), NULL, "probe-config"},
    {"find", EDDY_PROP_STR, "\"\"", false, offsetof(struct probe_state, find), NULL, NULL},
    {0}};

static int probe_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct probe_state *s = state;
    if (*s->find)
        eddy_node_find(node, s->find);
    if (strcmp(s->label, "ctx") == 0) /* flow context touched while setting up */
        eddy_node_context_set(node, EDDY_CTX_FLOW, "k", json_integer(1), NULL);
    record("setup:%s%.0ld", eddy_node_id(node), 0);
    return EDDY_OK;
}

static void probe_input(eddy_node *node, void *state, json_t *msg)
{
    record("in:%s:%ld", eddy_node_id(node),
           (long)json_integer_value(json_object_get(msg, "payload")));
    eddy_node_send(node, 0, msg);
}

static int probe_close(eddy_node *node, void *state, bool removed)
{
    record(removed ? "close-removed:%s%.0ld" : "close:%s%.0ld", eddy_node_id(node), 0);
    return EDDY_CLOSE_DONE;
}

static const eddy_node_type probe_type = {.name = "probe",
                                          .inputs = 1,
                                          .outputs = 1,
                                          .props = probe_props,
                                          .state_size = sizeof(struct probe_state),
                                          .setup = probe_setup,
                                          .input = probe_input,
                                          .close = probe_close};

static const eddy_node_type probe_config_type = {.name = "probe-config",
                                                 .flags = EDDY_NODE_CONFIG,
                                                 .props = probe_props,
                                                 .state_size = sizeof(struct probe_state),
                                                 .setup = probe_setup,
                                                 .close = probe_close};

typedef struct rig {
    eddy_loop *loop;
    eddy_registry *reg;
    eddy_engine *engine;
} rig;

static void rig_open(rig *r)
{
    event_count = 0;
    r->loop = eddy_loop_new(EDDY_CLOCK_MANUAL, NULL);
    r->reg = eddy_registry_new(NULL);
    eddy_registry_add_builtin(r->reg, NULL);
    eddy_registry_add(r->reg, &probe_type, NULL);
    eddy_registry_add(r->reg, &probe_config_type, NULL);
    r->engine = eddy_engine_new(r->loop, r->reg, NULL, NULL);
}

static void rig_close(rig *r)
{
    eddy_engine_free(r->engine);
    eddy_loop_free(r->loop);
    eddy_registry_free(r->reg);
}

static eddy_flow *load(rig *r, const char *text)
{
    eddy_problems p = {0};
    eddy_flow *f = eddy_flow_load(text, strlen(text), "deploy.json", r->reg, &p);
    if (!f)
        eddy_problems_print(&p, stderr);
    eddy_problems_clear(&p);
    return f;
}

static int deploy(rig *r, const char *text, eddy_deploy_mode mode, eddy_deploy_result *res)
{
    eddy_flow *f = load(r, text);
    if (!f)
        return EDDY_EINVAL;
    eddy_problems p = {0};
    event_count = 0;
    int rc = eddy_engine_redeploy(r->engine, f, mode, &p, res);
    eddy_problems_print(&p, stderr);
    eddy_problems_clear(&p);
    return rc;
}

static void send_to(rig *r, const char *id, long payload)
{
    json_t *m = eddy_msg_new();
    json_object_set_new(m, "payload", json_integer(payload));
    eddy_engine_inject(r->engine, eddy_engine_find(r->engine, id), m);
    eddy_engine_drain(r->engine);
}

/* Two tabs: a -> b on t1, c on t2. */
#define TABS "{\"id\":\"t1\",\"type\":\"tab\"},{\"id\":\"t2\",\"type\":\"tab\"},"
#define BASE                                                                                       \
    "[" TABS                                                                                       \
    "{\"id\":\"a\",\"type\":\"probe\",\"z\":\"t1\",\"x\":10,\"y\":10,\"wires\":[[\"b\"]]},"        \
    "{\"id\":\"b\",\"type\":\"probe\",\"z\":\"t1\",\"label\":\"one\",\"wires\":[[]]},"             \
    "{\"id\":\"c\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]}]"

static void test_moving_a_node_keeps_it_running(void)
{
    rig r;
    rig_open(&r);
    CHECK_INT_EQ(deploy(&r, BASE, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    eddy_deploy_result res;
    const char *moved =
        "[" TABS
        "{\"id\":\"a\",\"type\":\"probe\",\"z\":\"t1\",\"x\":300,\"y\":90,\"wires\":[[\"b\"]]},"
        "{\"id\":\"b\",\"type\":\"probe\",\"z\":\"t1\",\"label\":\"one\",\"wires\":[[]]},"
        "{\"id\":\"c\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]}]";
    CHECK_INT_EQ(deploy(&r, moved, EDDY_DEPLOY_NODES, &res), EDDY_OK);
    CHECK_INT_EQ(res.kept, 3);
    CHECK_INT_EQ(res.stopped, 0);
    CHECK_INT_EQ(event_count, 0); /* nobody set up or closed */
    send_to(&r, "a", 7);
    CHECK_INT_EQ(count_events("in:a:7"), 1);
    CHECK_INT_EQ(count_events("in:b:7"), 1); /* the wire survived */
    /* the same move as a full deploy restarts everything */
    CHECK_INT_EQ(deploy(&r, BASE, EDDY_DEPLOY_FULL, &res), EDDY_OK);
    CHECK_INT_EQ(count_events("setup:a"), 1);
    CHECK_INT_EQ(count_events("close:c"), 1);
    rig_close(&r);
}

static void test_nodes_mode_restarts_only_the_changed_node(void)
{
    rig r;
    rig_open(&r);
    CHECK_INT_EQ(deploy(&r, BASE, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    eddy_node *a_before = eddy_engine_find(r.engine, "a");
    const char *changed =
        "[" TABS
        "{\"id\":\"a\",\"type\":\"probe\",\"z\":\"t1\",\"x\":10,\"y\":10,\"wires\":[[\"b\"]]},"
        "{\"id\":\"b\",\"type\":\"probe\",\"z\":\"t1\",\"label\":\"two\",\"wires\":[[]]},"
        "{\"id\":\"c\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]}]";
    eddy_deploy_result res;
    CHECK_INT_EQ(deploy(&r, changed, EDDY_DEPLOY_NODES, &res), EDDY_OK);
    CHECK_INT_EQ(res.stopped, 1);
    CHECK_INT_EQ(res.started, 1);
    CHECK_INT_EQ(res.kept, 2);
    CHECK_INT_EQ(count_events("close:b"), 1);
    CHECK_INT_EQ(count_events("setup:b"), 1);
    CHECK_INT_EQ(count_events("setup:a") + count_events("setup:c"), 0);
    CHECK(eddy_engine_find(r.engine, "a") == a_before);
    send_to(&r, "a", 1); /* the kept node's wire reaches the new b */
    CHECK_INT_EQ(count_events("in:b:1"), 1);
    rig_close(&r);
}

static void test_flows_mode_restarts_the_whole_tab(void)
{
    rig r;
    rig_open(&r);
    CHECK_INT_EQ(deploy(&r, BASE, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    const char *changed =
        "[" TABS
        "{\"id\":\"a\",\"type\":\"probe\",\"z\":\"t1\",\"x\":10,\"y\":10,\"wires\":[[\"b\"]]},"
        "{\"id\":\"b\",\"type\":\"probe\",\"z\":\"t1\",\"label\":\"two\",\"wires\":[[]]},"
        "{\"id\":\"c\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]}]";
    eddy_deploy_result res;
    CHECK_INT_EQ(deploy(&r, changed, EDDY_DEPLOY_FLOWS, &res), EDDY_OK);
    CHECK_INT_EQ(res.stopped, 2);
    CHECK_INT_EQ(res.kept, 1);
    CHECK_INT_EQ(count_events("setup:a"), 1);
    CHECK_INT_EQ(count_events("setup:b"), 1);
    CHECK_INT_EQ(count_events("setup:c"), 0);
    /* a node added on t2 restarts t2 in flows mode, nothing in nodes mode */
    const char *added =
        "[" TABS
        "{\"id\":\"a\",\"type\":\"probe\",\"z\":\"t1\",\"x\":10,\"y\":10,\"wires\":[[\"b\"]]},"
        "{\"id\":\"b\",\"type\":\"probe\",\"z\":\"t1\",\"label\":\"two\",\"wires\":[[]]},"
        "{\"id\":\"c\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]},"
        "{\"id\":\"d\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]}]";
    CHECK_INT_EQ(deploy(&r, added, EDDY_DEPLOY_NODES, &res), EDDY_OK);
    CHECK_INT_EQ(res.started, 1);
    CHECK_INT_EQ(count_events("setup:d"), 1);
    CHECK_INT_EQ(count_events("close:c"), 0);
    const char *added2 =
        "[" TABS
        "{\"id\":\"a\",\"type\":\"probe\",\"z\":\"t1\",\"x\":10,\"y\":10,\"wires\":[[\"b\"]]},"
        "{\"id\":\"b\",\"type\":\"probe\",\"z\":\"t1\",\"label\":\"two\",\"wires\":[[]]},"
        "{\"id\":\"c\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]},"
        "{\"id\":\"d\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]},"
        "{\"id\":\"e\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]}]";
    CHECK_INT_EQ(deploy(&r, added2, EDDY_DEPLOY_FLOWS, &res), EDDY_OK);
    CHECK_INT_EQ(count_events("close:c"), 1);
    CHECK_INT_EQ(count_events("close:d"), 1);
    CHECK_INT_EQ(count_events("setup:e"), 1);
    CHECK_INT_EQ(count_events("close:a"), 0);
    rig_close(&r);
}

static void test_rewiring_keeps_the_node_and_moves_its_messages(void)
{
    rig r;
    rig_open(&r);
    CHECK_INT_EQ(deploy(&r, BASE, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    const char *rewired =
        "[" TABS
        "{\"id\":\"a\",\"type\":\"probe\",\"z\":\"t1\",\"x\":10,\"y\":10,\"wires\":[[\"c\"]]},"
        "{\"id\":\"b\",\"type\":\"probe\",\"z\":\"t1\",\"label\":\"one\",\"wires\":[[]]},"
        "{\"id\":\"c\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]}]";
    eddy_deploy_result res;
    CHECK_INT_EQ(deploy(&r, rewired, EDDY_DEPLOY_NODES, &res), EDDY_OK);
    CHECK_INT_EQ(res.kept, 3);
    send_to(&r, "a", 5);
    CHECK_INT_EQ(count_events("in:c:5"), 1);
    CHECK_INT_EQ(count_events("in:b:5"), 0);
    rig_close(&r);
}

static void test_removed_nodes_are_told_and_context_survives(void)
{
    rig r;
    rig_open(&r);
    CHECK_INT_EQ(deploy(&r, BASE, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    eddy_node *b = eddy_engine_find(r.engine, "b");
    CHECK_INT_EQ(eddy_node_context_set(b, EDDY_CTX_NODE, "seen", json_integer(3), NULL), EDDY_OK);
    CHECK_INT_EQ(eddy_node_context_set(b, EDDY_CTX_FLOW, "total", json_integer(9), NULL), EDDY_OK);
    const char *changed =
        "[" TABS
        "{\"id\":\"a\",\"type\":\"probe\",\"z\":\"t1\",\"x\":10,\"y\":10,\"wires\":[[\"b\"]]},"
        "{\"id\":\"b\",\"type\":\"probe\",\"z\":\"t1\",\"label\":\"two\",\"wires\":[[]]}]";
    eddy_deploy_result res;
    CHECK_INT_EQ(deploy(&r, changed, EDDY_DEPLOY_NODES, &res), EDDY_OK);
    CHECK_INT_EQ(count_events("close-removed:c"), 1);
    CHECK_INT_EQ(count_events("close:b"), 1); /* changed, not removed */
    b = eddy_engine_find(r.engine, "b");
    CHECK_INT_EQ(json_integer_value(eddy_node_context_get(b, EDDY_CTX_NODE, "seen")), 3);
    CHECK_INT_EQ(json_integer_value(eddy_node_context_get(b, EDDY_CTX_FLOW, "total")), 9);
    /* a full deploy keeps context too (Node-RED's memory context does) */
    CHECK_INT_EQ(deploy(&r, changed, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    b = eddy_engine_find(r.engine, "b");
    CHECK_INT_EQ(json_integer_value(eddy_node_context_get(b, EDDY_CTX_NODE, "seen")), 3);
    /* but a node that is gone loses its context */
    CHECK(!eddy_engine_context(r.engine, EDDY_CTX_NODE, "c"));
    rig_close(&r);
}

static void test_users_of_a_restarted_node_restart(void)
{
    rig r;
    rig_open(&r);
    const char *v1 =
        "[" TABS "{\"id\":\"cfg\",\"type\":\"probe-config\",\"label\":\"v1\"},"
        "{\"id\":\"u\",\"type\":\"probe\",\"z\":\"t1\",\"ref\":\"cfg\",\"wires\":[[]]},"
        "{\"id\":\"f\",\"type\":\"probe\",\"z\":\"t2\",\"find\":\"u\",\"wires\":[[]]},"
        "{\"id\":\"other\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]}]";
    const char *v2 =
        "[" TABS "{\"id\":\"cfg\",\"type\":\"probe-config\",\"label\":\"v2\"},"
        "{\"id\":\"u\",\"type\":\"probe\",\"z\":\"t1\",\"ref\":\"cfg\",\"wires\":[[]]},"
        "{\"id\":\"f\",\"type\":\"probe\",\"z\":\"t2\",\"find\":\"u\",\"wires\":[[]]},"
        "{\"id\":\"other\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]}]";
    CHECK_INT_EQ(deploy(&r, v1, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    eddy_deploy_result res;
    CHECK_INT_EQ(deploy(&r, v2, EDDY_DEPLOY_NODES, &res), EDDY_OK);
    /* cfg changed; u uses it; f found u at set-up: all three restart, 'other' does not */
    CHECK_INT_EQ(res.stopped, 3);
    CHECK_INT_EQ(res.kept, 1);
    CHECK_INT_EQ(count_events("setup:cfg"), 1);
    CHECK_INT_EQ(count_events("setup:u"), 1);
    CHECK_INT_EQ(count_events("setup:f"), 1);
    CHECK_INT_EQ(count_events("setup:other"), 0);
    /* the config node set up before its user */
    int cfg_at = -1, u_at = -1;
    for (int i = 0; i < event_count; i++) {
        if (strcmp(events[i], "setup:cfg") == 0)
            cfg_at = i;
        if (strcmp(events[i], "setup:u") == 0)
            u_at = i;
    }
    CHECK(cfg_at >= 0 && cfg_at < u_at);
    rig_close(&r);
}

static void test_queued_messages_are_delivered_before_a_restart(void)
{
    rig r;
    rig_open(&r);
    CHECK_INT_EQ(deploy(&r, BASE, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    eddy_engine_stats before;
    eddy_engine_get_stats(r.engine, &before);
    /* queue one message for c (kept) and one for b (restarted); redeploy before draining */
    json_t *m = eddy_msg_new();
    json_object_set_new(m, "payload", json_integer(1));
    eddy_engine_inject(r.engine, eddy_engine_find(r.engine, "c"), m);
    const char *changed =
        "[" TABS
        "{\"id\":\"a\",\"type\":\"probe\",\"z\":\"t1\",\"x\":10,\"y\":10,\"wires\":[[\"b\"]]},"
        "{\"id\":\"b\",\"type\":\"probe\",\"z\":\"t1\",\"label\":\"two\",\"wires\":[[]]},"
        "{\"id\":\"c\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]}]";
    /* the stop drains what is in flight first, as a full stop does */
    CHECK_INT_EQ(deploy(&r, changed, EDDY_DEPLOY_NODES, NULL), EDDY_OK);
    CHECK_INT_EQ(count_events("in:c:1"), 1);
    eddy_engine_stats after;
    eddy_engine_get_stats(r.engine, &after);
    CHECK_INT_EQ(after.dropped_on_stop, before.dropped_on_stop);
    rig_close(&r);
}

static void test_many_partial_deploys_free_old_flows(void)
{
    /* each partial deploy keeps 'c' from an older flow document; ASan/valgrind check
     * that retired flows are freed with their last node and nothing is used after */
    rig r;
    rig_open(&r);
    CHECK_INT_EQ(deploy(&r, BASE, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    char text[1024];
    for (int i = 0; i < 20; i++) {
        snprintf(text, sizeof(text),
                 "[" TABS "{\"id\":\"a\",\"type\":\"probe\",\"z\":\"t1\",\"wires\":[[\"b\"]]},"
                 "{\"id\":\"b\",\"type\":\"probe\",\"z\":\"t1\",\"label\":\"v%d\",\"wires\":[[]]},"
                 "{\"id\":\"c\",\"type\":\"probe\",\"z\":\"t2\",\"label\":\"%s\",\"wires\":[[]]}]",
                 i, i % 5 == 0 ? "changed" : "");
        CHECK_INT_EQ(deploy(&r, text, i % 2 ? EDDY_DEPLOY_NODES : EDDY_DEPLOY_FLOWS, NULL),
                     EDDY_OK);
        send_to(&r, "a", i);
        char want[32];
        snprintf(want, sizeof(want), "in:b:%d", i);
        CHECK_INT_EQ(count_events(want), 1);
    }
    CHECK_STR_EQ(eddy_node_config(eddy_engine_find(r.engine, "c")) ? "ok" : "no", "ok");
    rig_close(&r);
}

static void test_flows_mode_ignores_disabled_nodes_that_stay_disabled(void)
{
    rig r;
    rig_open(&r);
    const char *f = "[" TABS "{\"id\":\"a\",\"type\":\"probe\",\"z\":\"t1\",\"wires\":[[]]},"
                    "{\"id\":\"c\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]},"
                    "{\"id\":\"d\",\"type\":\"probe\",\"z\":\"t2\",\"d\":true,\"wires\":[[]]}]";
    CHECK_INT_EQ(deploy(&r, f, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    eddy_deploy_result res;
    CHECK_INT_EQ(deploy(&r, f, EDDY_DEPLOY_FLOWS, &res), EDDY_OK);
    CHECK_INT_EQ(res.kept, 2);
    CHECK_INT_EQ(res.stopped, 0);
    rig_close(&r);
}

static void test_a_node_that_looked_for_a_missing_node_restarts_when_it_appears(void)
{
    rig r;
    rig_open(&r);
    const char *v1 =
        "[" TABS "{\"id\":\"f\",\"type\":\"probe\",\"z\":\"t1\",\"find\":\"x\",\"wires\":[[]]}]";
    const char *v2 =
        "[" TABS "{\"id\":\"f\",\"type\":\"probe\",\"z\":\"t1\",\"find\":\"x\",\"wires\":[[]]},"
        "{\"id\":\"x\",\"type\":\"probe\",\"z\":\"t2\",\"wires\":[[]]}]";
    CHECK_INT_EQ(deploy(&r, v1, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    eddy_deploy_result res;
    CHECK_INT_EQ(deploy(&r, v2, EDDY_DEPLOY_NODES, &res), EDDY_OK);
    CHECK_INT_EQ(count_events("setup:x"), 1);
    CHECK_INT_EQ(count_events("setup:f"), 1); /* so it finds x now */
    rig_close(&r);
}

static void test_flow_context_of_nodes_without_a_tab_survives(void)
{
    rig r;
    rig_open(&r);
    const char *f = "[" TABS "{\"id\":\"g\",\"type\":\"probe\",\"label\":\"ctx\",\"wires\":[[]]}]";
    CHECK_INT_EQ(deploy(&r, f, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    eddy_node *g = eddy_engine_find(r.engine, "g");
    CHECK_INT_EQ(json_integer_value(eddy_node_context_get(g, EDDY_CTX_FLOW, "k")), 1);
    CHECK_INT_EQ(deploy(&r, f, EDDY_DEPLOY_FULL, NULL), EDDY_OK);
    g = eddy_engine_find(r.engine, "g");
    CHECK_INT_EQ(json_integer_value(eddy_node_context_get(g, EDDY_CTX_FLOW, "k")), 1);
    rig_close(&r);
}

static const check_test tests[] = {
    {"moving_a_node_keeps_it_running", test_moving_a_node_keeps_it_running},
    {"nodes_mode_restarts_only_the_changed_node", test_nodes_mode_restarts_only_the_changed_node},
    {"flows_mode_restarts_the_whole_tab", test_flows_mode_restarts_the_whole_tab},
    {"rewiring_keeps_the_node_and_moves_its_messages",
     test_rewiring_keeps_the_node_and_moves_its_messages},
    {"removed_nodes_are_told_and_context_survives",
     test_removed_nodes_are_told_and_context_survives},
    {"users_of_a_restarted_node_restart", test_users_of_a_restarted_node_restart},
    {"queued_messages_are_delivered_before_a_restart",
     test_queued_messages_are_delivered_before_a_restart},
    {"many_partial_deploys_free_old_flows", test_many_partial_deploys_free_old_flows},
    {"flows_mode_ignores_disabled_nodes_that_stay_disabled",
     test_flows_mode_ignores_disabled_nodes_that_stay_disabled},
    {"a_node_that_looked_for_a_missing_node_restarts_when_it_appears",
     test_a_node_that_looked_for_a_missing_node_restarts_when_it_appears},
    {"flow_context_of_nodes_without_a_tab_survives",
     test_flow_context_of_nodes_without_a_tab_survives},
    {NULL, NULL}};

CHECK_MAIN(tests)
