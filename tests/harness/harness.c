/* harness.c: a flow on a virtual clock, fed by the test and watched through "helper"
 * nodes and the engine's hooks. One harness at a time per thread (the helper type finds
 * its harness through a thread-local pointer, since node types are static data). */
#include "harness.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "lua_type.h"
#include "mem.h"
#include "node_int.h"
#include "store.h"

struct eddy_harness {
    eddy_loop *loop;
    eddy_registry *reg;
    eddy_engine *engine;
    json_t *received;  /* helper id -> array of messages */
    json_t *events;    /* errors, warnings, status reports */
    eddy_store *store; /* attached to 'loop' while the flow runs; not owned */
};

static _Thread_local eddy_harness *harness_current;

static void helper_input(eddy_node *node, void *state, json_t *msg)
{
    eddy_harness *h = harness_current;
    if (!h) {
        json_decref(msg);
        return;
    }
    json_t *list = json_object_get(h->received, eddy_node_id(node));
    if (!list) {
        list = json_array();
        json_object_set_new(h->received, eddy_node_id(node), list);
    }
    json_array_append_new(list, msg);
}

static const eddy_node_type helper_type = {
    .name = "helper",
    .inputs = 1,
    .outputs = 0,
    .help = "Records what reaches it (tests only).",
    .input = helper_input,
};

static void add_event(eddy_harness *h, const char *kind, eddy_node *node, const char *text,
                      const json_t *status)
{
    json_t *ev = json_pack("{s:s,s:s}", "kind", kind, "node", eddy_node_id(node));
    if (text)
        json_object_set_new(ev, "text", json_string(text));
    if (status)
        json_object_set_new(ev, "status", json_deep_copy(status));
    json_array_append_new(h->events, ev);
}

static void on_status(void *data, eddy_node *node, const json_t *status)
{
    add_event(data, "status", node, json_string_value(json_object_get(status, "text")), status);
}

static void on_uncaught(void *data, eddy_node *node, const char *text)
{
    add_event(data, "error", node, text, NULL);
}

static void on_warn(void *data, eddy_node *node, const char *text)
{
    add_event(data, "warn", node, text, NULL);
}

static void on_debug(void *data, eddy_node *node, const json_t *value, const char *property)
{
    eddy_harness *h = data;
    json_t *ev = json_pack("{s:s,s:s,s:s}", "kind", "debug", "node", eddy_node_id(node), "property",
                           property);
    json_object_set_new(ev, "value", value ? json_deep_copy(value) : json_null());
    json_array_append_new(h->events, ev);
}

/* Puts nodes without a tab on tab "t" (adding it), config nodes excepted. */
static void place_on_tab(json_t *doc, const eddy_registry *reg)
{
    bool has_tab = false;
    size_t i;
    json_t *n;
    json_array_foreach(doc, i, n) has_tab |= strcmp(node__str(n, "type"), "tab") == 0;
    if (has_tab)
        return;
    json_array_foreach(doc, i, n)
    {
        const char *type = node__str(n, "type");
        const eddy_node_type *t = eddy_registry_find(reg, type);
        if (json_object_get(n, "z") || strcmp(type, "subflow") == 0 ||
            (t && (t->flags & EDDY_NODE_CONFIG)))
            continue;
        json_object_set_new(n, "z", json_string("t"));
    }
    json_array_insert_new(doc, 0,
                          json_pack("{s:s,s:s,s:s}", "id", "t", "type", "tab", "label", "test"));
}

eddy_harness *eddy_harness_new(const char *flow_json, const eddy_harness_opts *opts,
                               eddy_problems *problems)
{
    eddy_err err;
    eddy_err_clear(&err);
    eddy_harness *h = eddy_calloc(1, sizeof(*h));
    if (!h)
        return NULL;
    h->received = json_object();
    h->events = json_array();
    eddy_clock_mode mode = opts && opts->real_clock ? EDDY_CLOCK_REAL : EDDY_CLOCK_MANUAL;
    h->loop = eddy_loop_new(mode, &err);
    h->reg = eddy_registry_new(&err);
    if (!h->loop || !h->reg || eddy_registry_add_builtin(h->reg, &err) != EDDY_OK ||
        eddy_registry_add(h->reg, &helper_type, &err) != EDDY_OK)
        goto fail;
    for (int i = 0; opts && opts->types && opts->types[i]; i++)
        if (eddy_registry_add(h->reg, opts->types[i], &err) != EDDY_OK)
            goto fail;
    /* the Lua node types shipped with eddy, so that their vectors run like native ones */
    if (*eddy_lua_types_dir() && eddy_lua_types_load(h->reg, eddy_lua_types_dir(), problems) < 0)
        goto fail_quiet;
    if (mode == EDDY_CLOCK_MANUAL)
        eddy_loop_set_wall(h->loop, opts && opts->wall_start ? opts->wall_start : 1704067200000);
    eddy_engine_opts eopts = {.queue_limit = opts ? opts->queue_limit : 0,
                              .store = opts ? opts->store : NULL};
    if (eopts.store) {
        if (eddy_store_attach(eopts.store, h->loop, &err) != EDDY_OK)
            goto fail;
        h->store = eopts.store;
    }
    h->engine = eddy_engine_new(h->loop, h->reg, &eopts, &err);
    if (!h->engine)
        goto fail;
    eddy_engine_hooks hooks = {.on_status = on_status,
                               .on_uncaught = on_uncaught,
                               .on_warn = on_warn,
                               .on_debug = on_debug,
                               .data = h};
    eddy_engine_set_hooks(h->engine, &hooks);
    json_t *doc = eddy_json_loadb(flow_json, strlen(flow_json), &err);
    if (!doc)
        goto fail;
    if (json_is_array(doc))
        place_on_tab(doc, h->reg);
    eddy_flow *flow = eddy_flow_from_json(doc, NULL, "test-flow", h->reg, problems);
    if (!flow)
        goto fail_quiet;
    harness_current = h;
    if (eddy_engine_start(h->engine, flow, problems) != EDDY_OK)
        goto fail_quiet;
    return h;
fail:
    if (err.code)
        eddy_problems_add(problems, &err);
fail_quiet:
    eddy_harness_free(h);
    return NULL;
}

int eddy_harness_free(eddy_harness *h)
{
    if (!h)
        return 0;
    harness_current = h;
    int leaked = 0;
    if (h->engine) {
        eddy_engine_stop(h->engine);
        leaked = eddy_loop_timer_count(h->loop);
        eddy_engine_free(h->engine);
    }
    eddy_store_detach(h->store);
    eddy_loop_free(h->loop);
    eddy_registry_free(h->reg);
    json_decref(h->received);
    json_decref(h->events);
    harness_current = NULL;
    eddy_free(h);
    return leaked;
}

int eddy_harness_send(eddy_harness *h, const char *node_id, json_t *msg)
{
    eddy_node *n = eddy_engine_find(h->engine, node_id);
    if (!n) {
        json_decref(msg);
        return EDDY_ENOTFOUND;
    }
    if (!json_object_get(msg, "_msgid")) {
        char id[17];
        eddy_msg_new_id(id);
        json_object_set_new(msg, "_msgid", json_string(id));
    }
    eddy_engine_inject(h->engine, n, msg);
    return EDDY_OK;
}

void eddy_harness_settle(eddy_harness *h)
{
    harness_current = h;
    eddy_loop_settle(h->loop);
}

void eddy_harness_advance(eddy_harness *h, int64_t ms)
{
    harness_current = h;
    eddy_loop_advance(h->loop, ms);
}

json_t *eddy_harness_take(eddy_harness *h, const char *helper_id)
{
    json_t *list = json_object_get(h->received, helper_id);
    json_t *out = list ? json_incref(list) : json_array();
    json_object_del(h->received, helper_id);
    return out;
}

json_t *eddy_harness_take_events(eddy_harness *h)
{
    json_t *out = h->events;
    h->events = json_array();
    return out;
}

eddy_engine *eddy_harness_engine(eddy_harness *h)
{
    return h->engine;
}

eddy_loop *eddy_harness_loop(eddy_harness *h)
{
    return h->loop;
}

char *eddy_test_tmpdir(void)
{
    const char *base = getenv("TMPDIR");
    char tmpl[512];
    snprintf(tmpl, sizeof(tmpl), "%s/eddy-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(tmpl))
        return NULL;
    return eddy_strdup(tmpl);
}

void eddy_test_rmdir(char *dir)
{
    if (!dir)
        return;
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[1024];
            snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
            if (unlink(path) != 0) {
                char *sub = eddy_strdup(path);
                eddy_test_rmdir(sub); /* a folder: empty it first */
            }
        }
        closedir(d);
    }
    rmdir(dir);
    eddy_free(dir);
}
