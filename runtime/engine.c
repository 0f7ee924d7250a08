/* engine.c: runs a validated flow. One run queue (a ring of node/message deliveries)
 * drained in bounded batches on the loop; errors, status and completions routed to
 * catch/status/complete nodes by scope; context and env; orderly close.
 *
 * Invariants:
 *   1. Every queued delivery owns one reference to its message.
 *   2. A node that is closing gets no more input: deliveries to it are dropped (counted).
 *   3. Node ids are unique among running nodes (the loader guarantees it).
 *   4. Node code never runs re-entrantly: sends only enqueue; the queue is drained by the
 *      loop's work hook, never from inside a send. */
#include "engine.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "log.h"
#include "mem.h"
#include "node_int.h"
#include "store.h"

#define DEFAULT_QUEUE_LIMIT 65536
#define DEFAULT_BATCH       1024
#define MAX_CATCH_COUNT     10   /* Node-RED's guard against catch -> error loops */
#define STOP_DRAIN_FACTOR   4    /* stop drains at most this many times the queue bound */
#define CLOSE_WAIT_MS       5000 /* how long stop waits for asynchronous closes */

/* ---- data ---- */

typedef struct node_list {
    eddy_node **items;
    int count, cap;
} node_list;

typedef struct engine_scope {
    const eddy_flow_scope *fs;
    struct engine_scope *parent; /* enclosing scope of a subflow instance; NULL for tabs */
    eddy_node *instance;         /* the "subflow in" node of an instance scope */
    json_t *context;             /* flow context, borrowed from engine->flow_contexts */
    json_t *env_cache;           /* name -> evaluated env value */
    node_list catchers, statusers;
} engine_scope;

/* A flow document and how many running nodes still point into it. A partial redeploy
 * keeps unchanged nodes, whose configuration (and the strings their properties borrow)
 * lives in the flow they were started from; that flow is freed with its last node. */
typedef struct flow_ref {
    eddy_flow *flow;
    int nodes;
} flow_ref;

typedef struct node_timer {
    eddy_node *node;
    eddy_node_timer_fn fn;
    void *data;
    void (*finalizer)(void *data);
    eddy_timer *timer;
    struct node_timer *prev, *next;
} node_timer;

struct eddy_node {
    eddy_engine *engine;
    const eddy_node_type *type;
    const eddy_flow_node *fn; /* in fref->flow */
    flow_ref *fref;
    const json_t *config; /* fn->config, or own_config when env was substituted */
    json_t *own_config;   /* a copy with "${VAR}" values replaced; NULL if none */
    engine_scope *scope;
    void *state;      /* type->state_size bytes; props first */
    json_t *defaults; /* parsed prop defaults the state borrows from */
    int output_count;
    node_list *outputs;   /* output_count lists of targets */
    node_list completers; /* complete nodes watching this node */
    json_t *context;      /* node context, borrowed from engine->node_contexts */
    node_list uses;       /* nodes it found at set-up (config nodes, link targets): if one
                             of them restarts, so must this one */
    json_t *missed;       /* ids it looked for at set-up and did not find: if one of them
                             appears, it restarts too (owned; NULL if none) */
    json_t *builtins;     /* NR_* env values, created on first use */
    node_timer *timers;
    void (*resume)(eddy_node *node, void *state);
    bool set_up, closing, close_pending;
    bool restart; /* marked by a redeploy: stop it (and start its new version, if any) */
    int position; /* index in engine->nodes */
};

typedef struct delivery {
    eddy_node *target;
    json_t *msg;
} delivery;

struct eddy_engine {
    eddy_loop *loop;
    const eddy_registry *reg;
    eddy_engine_opts opts;
    eddy_engine_hooks hooks;
    eddy_flow *flow;    /* the current flow; owned through 'cur' */
    flow_ref *cur;      /* the current flow's reference; NULL when idle */
    flow_ref **retired; /* older flows still referenced by kept nodes */
    int retired_count;
    eddy_node **nodes; /* in set-up order */
    int node_count;
    engine_scope *scopes;
    int scope_count;
    eddy_node **by_id; /* open-addressing table of node pointers */
    size_t by_id_cap;
    delivery *ring;
    size_t ring_cap, ring_head, ring_len;
    bool backlogged;
    int close_pending;
    json_t *global_context;
    json_t *node_contexts; /* node id -> node context; survives deploys, as in Node-RED */
    json_t *flow_contexts; /* tab or subflow instance id -> flow context */
    json_t *process_env;   /* getenv results, kept so borrowed values stay valid */
    eddy_engine_stats stats;
};

/* ---- small lists ---- */

static int list_add(node_list *l, eddy_node *n)
{
    if (l->count == l->cap) {
        int cap = l->cap ? l->cap * 2 : 4;
        eddy_node **items = eddy_realloc(l->items, (size_t)cap * sizeof(*items));
        if (!items)
            return EDDY_ENOMEM;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count++] = n;
    return EDDY_OK;
}

static void list_free(node_list *l)
{
    eddy_free(l->items);
    memset(l, 0, sizeof(*l));
}

/* ---- id table ---- */

static size_t hash_id(const char *s)
{
    size_t h = 1469598103934665603u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211u;
    return h;
}

static int ids_build(eddy_engine *e)
{
    size_t cap = 16;
    while (cap < (size_t)e->node_count * 2)
        cap *= 2;
    e->by_id = eddy_calloc(cap, sizeof(*e->by_id));
    if (!e->by_id)
        return EDDY_ENOMEM;
    e->by_id_cap = cap;
    for (int i = 0; i < e->node_count; i++) {
        size_t h = hash_id(e->nodes[i]->fn->id) & (cap - 1);
        while (e->by_id[h])
            h = (h + 1) & (cap - 1);
        e->by_id[h] = e->nodes[i];
    }
    return EDDY_OK;
}

eddy_node *eddy_engine_find(eddy_engine *e, const char *id)
{
    if (!e->by_id || !id)
        return NULL;
    size_t h = hash_id(id) & (e->by_id_cap - 1);
    while (e->by_id[h]) {
        if (strcmp(e->by_id[h]->fn->id, id) == 0)
            return e->by_id[h];
        h = (h + 1) & (e->by_id_cap - 1);
    }
    return NULL;
}

/* ---- run queue ---- */

static int ring_grow(eddy_engine *e)
{
    size_t cap = e->ring_cap ? e->ring_cap * 2 : 1024;
    delivery *r = eddy_malloc(cap * sizeof(*r));
    if (!r)
        return EDDY_ENOMEM;
    for (size_t i = 0; i < e->ring_len; i++)
        r[i] = e->ring[(e->ring_head + i) % e->ring_cap];
    eddy_free(e->ring);
    e->ring = r;
    e->ring_cap = cap;
    e->ring_head = 0;
    return EDDY_OK;
}

static void enqueue(eddy_engine *e, eddy_node *target, json_t *msg)
{
    if (!msg)
        return;
    if (e->ring_len == e->ring_cap && ring_grow(e) != EDDY_OK) {
        eddy_log(EDDY_LOG_ERROR, "[node %s (%s)] out of memory queueing a message; dropped",
                 target->fn->id, target->type->name);
        json_decref(msg);
        return;
    }
    e->ring[(e->ring_head + e->ring_len) % e->ring_cap] = (delivery){target, msg};
    e->ring_len++;
    if (e->ring_len > e->stats.queue_high)
        e->stats.queue_high = e->ring_len;
    if (e->ring_len >= e->opts.queue_limit)
        e->backlogged = true;
    eddy_loop_work_pending(e->loop);
}

static void wake_sources(eddy_engine *e)
{
    e->backlogged = false;
    for (int i = 0; i < e->node_count; i++) {
        eddy_node *n = e->nodes[i];
        if (n->resume && !n->closing)
            n->resume(n, n->state);
    }
}

static void deliver(eddy_engine *e, eddy_node *t, json_t *msg)
{
    if (t->closing) {
        json_decref(msg);
        return;
    }
    /* The engine says "done" for the node after its handler, so it keeps a reference. */
    bool track = t->completers.count > 0 && !(t->type->flags & EDDY_NODE_ASYNC_DONE);
    if (track)
        json_incref(msg);
    e->stats.delivered++;
    t->type->input(t, t->state, msg);
    if (track) {
        eddy_node_done(t, msg);
        json_decref(msg);
    }
}

/* The loop's work hook: one bounded batch. */
static bool engine_work(eddy_loop *loop, void *data)
{
    eddy_engine *e = data;
    for (int i = 0; i < e->opts.batch && e->ring_len > 0; i++) {
        delivery d = e->ring[e->ring_head];
        e->ring_head = (e->ring_head + 1) % e->ring_cap;
        e->ring_len--;
        deliver(e, d.target, d.msg);
    }
    if (e->backlogged && e->ring_len <= e->opts.queue_limit / 2)
        wake_sources(e);
    return e->ring_len > 0;
}

void eddy_engine_drain(eddy_engine *e)
{
    while (engine_work(e->loop, e))
        ;
}

/* ---- sending ---- */

void eddy_node_send(eddy_node *node, int output, json_t *msg)
{
    if (!msg)
        return;
    if (output < 0 || output >= node->output_count || node->outputs[output].count == 0) {
        json_decref(msg);
        return;
    }
    node_list *targets = &node->outputs[output];
    /* The first target gets the message itself, the others copies (as Node-RED). */
    for (int i = 1; i < targets->count; i++)
        enqueue(node->engine, targets->items[i], eddy_msg_clone(msg));
    enqueue(node->engine, targets->items[0], msg);
}

void eddy_node_send_array(eddy_node *node, json_t *msgs)
{
    size_t port;
    json_t *entry;
    if (!json_is_array(msgs)) {
        eddy_node_send(node, 0, msgs);
        return;
    }
    json_array_foreach(msgs, port, entry)
    {
        /* Script nodes build messages from scratch; Node-RED's send gives them an id. */
        if (json_is_object(entry) && !json_object_get(entry, "_msgid")) {
            char id[17];
            eddy_msg_new_id(id);
            json_object_set_new(entry, "_msgid", json_string(id));
        }
        if (json_is_object(entry)) {
            eddy_node_send(node, (int)port, json_incref(entry));
        } else if (json_is_array(entry)) {
            size_t k;
            json_t *m;
            json_array_foreach(entry, k, m) if (json_is_object(m))
                eddy_node_send(node, (int)port, json_incref(m));
        }
    }
    json_decref(msgs);
}

void eddy_node_deliver(eddy_node *from, eddy_node *target, json_t *msg)
{
    if (!target) {
        json_decref(msg);
        return;
    }
    enqueue(from->engine, target, msg);
}

void eddy_engine_inject(eddy_engine *e, eddy_node *node, json_t *msg)
{
    enqueue(e, node, msg);
}

bool eddy_node_backlogged(const eddy_node *node)
{
    return node->engine->backlogged;
}

void eddy_node_on_drain(eddy_node *node, void (*resume)(eddy_node *node, void *state))
{
    node->resume = resume;
}

/* ---- identity ---- */

const char *eddy_node_id(const eddy_node *node)
{
    return node->fn->id;
}

const char *eddy_node_type_name(const eddy_node *node)
{
    return node->type->name;
}

const eddy_node_type *eddy_node_get_type(const eddy_node *node)
{
    return node->type;
}

const char *eddy_node_name(const eddy_node *node)
{
    return node__str(node->config, "name");
}

const char *eddy_node_tab(const eddy_node *node)
{
    return node->fn->tab ? node->fn->tab : "";
}

const json_t *eddy_node_config(const eddy_node *node)
{
    return node->config;
}

/* ---- "${VAR}" properties ---- */

/* Node-RED replaces a property whose whole value is "${NAME}" by that env variable before
 * the node starts: from the node's scope (subflow instance, tab), then the process. */
static json_t *resolve_env(void *data, const char *name)
{
    json_t *value = eddy_node_env(data, name);
    if (!value)
        return NULL;
    char *text = eddy_json_to_string(value, true);
    json_t *out = json_string(text ? text : "");
    eddy_free(text);
    return out;
}

void *eddy_node_state(eddy_node *node)
{
    return node->state;
}

int eddy_node_output_count(const eddy_node *node)
{
    return node->output_count;
}

eddy_loop *eddy_node_loop(eddy_node *node)
{
    return node->engine->loop;
}

struct eddy_store *eddy_node_store(eddy_node *node)
{
    return node->engine->opts.store;
}

eddy_node *eddy_node_find(eddy_node *from, const char *id)
{
    eddy_node *n = eddy_engine_find(from->engine, id);
    if (!n || n->closing) {
        if (!from->set_up && id) {
            if (!from->missed)
                from->missed = json_array();
            json_array_append_new(from->missed, json_string(id));
        }
        return NULL;
    }
    /* a node found while setting up may be kept as a pointer: a redeploy that restarts
     * 'n' must restart 'from' too (lookups while running are not recorded) */
    if (!from->set_up && list_add(&from->uses, n) != EDDY_OK)
        return NULL;
    return n;
}

int eddy_node_command(eddy_node *node, const char *name, const json_t *arg, eddy_err *err)
{
    if (!node->type->command || node->closing)
        return eddy_err_set(err, EDDY_EUNSUPPORTED, "node %s (%s) takes no command '%s'",
                            node->fn->id, node->type->name, name);
    return node->type->command(node, node->state, name, arg, err);
}

/* ---- scope membership ---- */

static bool in_scope(const eddy_node *watcher, const eddy_node *subject)
{
    const json_t *scope = json_object_get(watcher->config, "scope");
    if (!scope || json_is_null(scope))
        return true;
    if (json_is_string(scope)) {
        if (strcmp(json_string_value(scope), "group") == 0) {
            const char *g = node__str(watcher->config, "g");
            return *g && strcmp(g, node__str(subject->config, "g")) == 0;
        }
        return false;
    }
    size_t i;
    json_t *id;
    json_array_foreach(scope, i,
                       id) if (json_is_string(id) &&
                               strcmp(json_string_value(id), subject->fn->id) == 0) return true;
    return false;
}

static bool scoped(const eddy_node *watcher)
{
    const json_t *scope = json_object_get(watcher->config, "scope");
    return scope && !json_is_null(scope);
}

/* ---- logging with the node as subject ---- */

static void node_logv(eddy_node *node, eddy_log_level level, char *out, size_t size,
                      const char *fmt, va_list ap)
{
    char text[1536];
    vsnprintf(text, sizeof(text), fmt, ap);
    if (out)
        snprintf(out, size, "%s", text);
    const char *name = eddy_node_name(node);
    const char *tab = eddy_node_tab(node); /* config nodes have none */
    eddy_log(level, "[node %s (%s)%s%s%s%s%s] %s", node->fn->id, node->type->name,
             *name ? " \"" : "", name, *name ? "\"" : "", *tab ? " on " : "", tab, text);
}

void eddy_node_log(eddy_node *node, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    node_logv(node, EDDY_LOG_INFO, NULL, 0, fmt, ap);
    va_end(ap);
}

void eddy_node_warn(eddy_node *node, const char *fmt, ...)
{
    char text[1536];
    va_list ap;
    va_start(ap, fmt);
    node_logv(node, EDDY_LOG_WARN, text, sizeof(text), fmt, ap);
    va_end(ap);
    if (node->engine->hooks.on_warn)
        node->engine->hooks.on_warn(node->engine->hooks.data, node, text);
}

void eddy_node_debug_out(eddy_node *node, const json_t *value, const char *property, bool to_log)
{
    eddy_engine *e = node->engine;
    if (to_log) {
        char *text = value ? eddy_json_dumps(value, 0) : eddy_strdup("undefined");
        const char *name = eddy_node_name(node);
        eddy_log(EDDY_LOG_INFO, "[debug %s] %s: %s", *name ? name : node->fn->id, property,
                 text ? text : "(out of memory)");
        eddy_free(text);
    }
    if (e->hooks.on_debug)
        e->hooks.on_debug(e->hooks.data, node, value, property);
}

/* ---- errors to catch nodes ---- */

static json_t *error_msg(eddy_node *origin, const json_t *msg, const char *text)
{
    json_t *copy = eddy_msg_clone(msg);
    if (!copy)
        return NULL;
    json_int_t count = 1;
    json_t *prev = json_object_get(copy, "error");
    json_t *src = json_object_get(prev, "source");
    if (src && strcmp(node__str(src, "id"), origin->fn->id) == 0)
        count = json_integer_value(json_object_get(src, "count")) + 1;
    json_t *err =
        json_pack("{s:s,s:{s:s,s:s,s:s,s:I}}", "message", text, "source", "id", origin->fn->id,
                  "type", origin->type->name, "name", eddy_node_name(origin), "count", count);
    json_object_set_new(copy, "error", err);
    return copy;
}

/* Offers the error to the catch nodes of 'scope' on behalf of 'reporter'; true if caught. */
static bool catch_in_scope(engine_scope *scope, eddy_node *reporter, const json_t *emsg)
{
    bool handled = false;
    /* Pass 0: catch nodes scoped to chosen nodes; 1: catch-all; 2: uncaught-only. */
    for (int pass = 0; pass < 3; pass++) {
        for (int i = 0; i < scope->catchers.count; i++) {
            eddy_node *c = scope->catchers.items[i];
            bool uncaught_only = json_is_true(json_object_get(c->config, "uncaught"));
            int my_pass = uncaught_only ? 2 : scoped(c) ? 0 : 1;
            if (my_pass != pass || c->closing || (pass == 2 && handled))
                continue;
            if (!in_scope(c, reporter))
                continue;
            enqueue(c->engine, c, eddy_msg_clone(emsg));
            handled = true;
        }
    }
    return handled;
}

void eddy_node_error(eddy_node *node, const json_t *msg, const char *fmt, ...)
{
    eddy_engine *e = node->engine;
    char text[1536];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    e->stats.errors++;
    bool handled = false;
    if (msg && json_is_object(msg)) {
        json_t *emsg = error_msg(node, msg, text);
        json_int_t count = json_integer_value(
            json_object_get(json_object_get(json_object_get(emsg, "error"), "source"), "count"));
        if (count > MAX_CATCH_COUNT) {
            snprintf(text + strlen(text), sizeof(text) - strlen(text),
                     " (message exceeded %d catches; not caught again)", MAX_CATCH_COUNT);
        } else {
            eddy_node *reporter = node;
            for (engine_scope *s = node->scope; s && !handled; s = s->parent) {
                handled = catch_in_scope(s, reporter, emsg);
                if (s->instance)
                    reporter = s->instance; /* the parent sees the subflow instance */
            }
        }
        json_decref(emsg);
    }
    if (handled)
        return;
    e->stats.uncaught++;
    const char *tab = eddy_node_tab(node);
    eddy_log(EDDY_LOG_ERROR, "[node %s (%s)%s%s] %s", node->fn->id, node->type->name,
             *tab ? " on " : "", tab, text);
    if (e->hooks.on_uncaught)
        e->hooks.on_uncaught(e->hooks.data, node, text);
}

/* ---- status and completion ---- */

void eddy_node_set_status(eddy_node *node, const char *fill, const char *shape, const char *text)
{
    eddy_engine *e = node->engine;
    json_t *status = json_object();
    if (fill)
        json_object_set_new(status, "fill", json_string(fill));
    if (shape)
        json_object_set_new(status, "shape", json_string(shape));
    if (text)
        json_object_set_new(status, "text", json_string(text));
    if (e->hooks.on_status)
        e->hooks.on_status(e->hooks.data, node, status);
    for (engine_scope *s = node->scope; s; s = NULL) {
        for (int i = 0; i < s->statusers.count; i++) {
            eddy_node *st = s->statusers.items[i];
            if (st->closing || !in_scope(st, node))
                continue;
            json_t *msg = eddy_msg_new();
            json_t *sv = json_deep_copy(status);
            json_object_set_new(sv, "source",
                                json_pack("{s:s,s:s,s:s}", "id", node->fn->id, "type",
                                          node->type->name, "name", eddy_node_name(node)));
            json_object_set_new(msg, "status", sv);
            enqueue(e, st, msg);
        }
    }
    json_decref(status);
}

void eddy_node_done(eddy_node *node, const json_t *msg)
{
    if (!msg)
        return;
    for (int i = 0; i < node->completers.count; i++) {
        eddy_node *c = node->completers.items[i];
        if (!c->closing)
            enqueue(node->engine, c, eddy_msg_clone(msg));
    }
}

/* ---- timers ---- */

static int64_t node_timer_fire(eddy_loop *loop, eddy_timer *timer, void *data)
{
    node_timer *nt = data;
    return nt->fn(nt->node, nt->node->state, nt->data);
}

static void node_timer_finalize(eddy_loop *loop, void *data)
{
    node_timer *nt = data;
    eddy_node *node = nt->node;
    if (nt->prev)
        nt->prev->next = nt->next;
    else
        node->timers = nt->next;
    if (nt->next)
        nt->next->prev = nt->prev;
    if (nt->finalizer)
        nt->finalizer(nt->data);
    eddy_free(nt);
}

eddy_timer *eddy_node_timer_start(eddy_node *node, int64_t delay_ms, eddy_node_timer_fn fn,
                                  void *data, void (*finalizer)(void *data))
{
    node_timer *nt = eddy_calloc(1, sizeof(*nt));
    if (!nt)
        return NULL;
    nt->node = node;
    nt->fn = fn;
    nt->data = data;
    nt->finalizer = finalizer;
    nt->next = node->timers;
    if (node->timers)
        node->timers->prev = nt;
    node->timers = nt;
    nt->timer =
        eddy_timer_start(node->engine->loop, delay_ms, node_timer_fire, nt, node_timer_finalize);
    if (!nt->timer) {
        node->timers = nt->next;
        if (nt->next)
            nt->next->prev = NULL;
        eddy_free(nt);
        return NULL;
    }
    return nt->timer;
}

void eddy_node_timer_stop(eddy_node *node, eddy_timer *timer)
{
    eddy_timer_stop(node->engine->loop, timer);
}

static void stop_node_timers(eddy_node *node)
{
    while (node->timers)
        eddy_timer_stop(node->engine->loop, node->timers->timer);
}

/* ---- context ---- */

static json_t *ensure_object(json_t **slot)
{
    if (!*slot)
        *slot = json_object();
    return *slot;
}

/* The context object of 'id' in 'map', made on first use; cached in *cache. Contexts live
 * in the engine's maps so that they survive redeploys; NULL on out-of-memory. */
static json_t *context_in(json_t *map, const char *id, json_t **cache)
{
    if (*cache)
        return *cache;
    json_t *c = json_object_get(map, id);
    if (!c) {
        c = json_object();
        if (!c || json_object_set_new(map, id, c) != 0)
            return NULL;
    }
    *cache = c;
    return c;
}

static json_t *scope_context(eddy_engine *e, engine_scope *s)
{
    return context_in(e->flow_contexts, s->fs->id, &s->context);
}

json_t *eddy_node_context(eddy_node *node, eddy_ctx_scope scope)
{
    switch (scope) {
    case EDDY_CTX_NODE:
        return context_in(node->engine->node_contexts, node->fn->id, &node->context);
    case EDDY_CTX_FLOW:
        return scope_context(node->engine, node->scope);
    case EDDY_CTX_GLOBAL:
        return node->engine->global_context;
    }
    return NULL;
}

/* Resolves "$parent." prefixes against enclosing subflow scopes. */
static json_t *context_root(eddy_node *node, eddy_ctx_scope scope, const char **key)
{
    if (scope != EDDY_CTX_FLOW)
        return eddy_node_context(node, scope);
    engine_scope *s = node->scope;
    while (strncmp(*key, "$parent.", 8) == 0) {
        *key += 8;
        if (!s->parent)
            return NULL;
        s = s->parent;
    }
    return scope_context(node->engine, s);
}

json_t *eddy_node_context_get(eddy_node *node, eddy_ctx_scope scope, const char *key)
{
    json_t *root = context_root(node, scope, &key);
    return root ? eddy_path_lookup(root, key) : NULL;
}

int eddy_node_context_set(eddy_node *node, eddy_ctx_scope scope, const char *key, json_t *value,
                          eddy_err *err)
{
    json_t *root = context_root(node, scope, &key);
    if (!root) {
        json_decref(value);
        return eddy_err_set(err, EDDY_ENOTFOUND, "no parent flow for context key '%s'", key);
    }
    eddy_path path;
    int rc = eddy_path_parse(key, &path, err);
    if (rc != EDDY_OK) {
        json_decref(value);
        return rc;
    }
    if (!value) {
        eddy_path_delete(root, &path);
        return EDDY_OK;
    }
    return eddy_path_set_take(root, &path, value, err);
}

json_t *eddy_engine_global_context(eddy_engine *e)
{
    return e->global_context;
}

json_t *eddy_engine_context(eddy_engine *e, eddy_ctx_scope scope, const char *id)
{
    switch (scope) {
    case EDDY_CTX_NODE:
        return json_object_get(e->node_contexts, id);
    case EDDY_CTX_FLOW:
        return json_object_get(e->flow_contexts, id);
    case EDDY_CTX_GLOBAL:
        return e->global_context;
    }
    return NULL;
}

/* Forgets the contexts of nodes and scopes that the current flow no longer has. */
static void prune_contexts(eddy_engine *e)
{
    const char *key;
    json_t *value;
    void *tmp;
    json_object_foreach_safe(e->node_contexts, tmp, key, value)
    {
        if (!eddy_flow_node_find(e->flow, key))
            json_object_del(e->node_contexts, key);
    }
    json_object_foreach_safe(e->flow_contexts, tmp, key, value)
    {
        /* "" is the implicit scope of nodes without a tab: always there */
        if (*key && !eddy_flow_find_scope(e->flow, key))
            json_object_del(e->flow_contexts, key);
    }
}

/* ---- env ---- */

static json_t *env_lookup_scope(eddy_engine *e, engine_scope *s, const char *name, int depth);

/* An env entry {name,type,value} as a JSON value. New reference or NULL. */
static json_t *env_entry_value(eddy_engine *e, engine_scope *s, const json_t *entry, int depth)
{
    const char *type = node__str(entry, "type");
    const json_t *value = json_object_get(entry, "value");
    const char *text = json_string_value(value);
    double num;
    if (strcmp(type, "num") == 0 && text && eddy_parse_number(text, &num))
        return eddy_json_number(num);
    if (strcmp(type, "bool") == 0)
        return json_boolean(json_is_true(value) || (text && strcmp(text, "true") == 0));
    if (strcmp(type, "json") == 0 && text)
        return eddy_json_loadb(text, strlen(text), NULL);
    if (strcmp(type, "env") == 0 && text) {
        json_t *v = s->parent ? env_lookup_scope(e, s->parent, text, depth + 1) : NULL;
        if (!v) {
            const char *pv = getenv(text);
            return pv ? json_string(pv) : NULL;
        }
        return json_incref(v);
    }
    return value ? json_deep_copy(value) : NULL;
}

/* The env value 'name' seen from scope 's' (its entries, then enclosing scopes). Borrowed. */
static json_t *env_lookup_scope(eddy_engine *e, engine_scope *s, const char *name, int depth)
{
    for (; s && depth < 32; s = s->parent, depth++) {
        json_t *cached = json_object_get(s->env_cache, name);
        if (cached)
            return cached;
        size_t i;
        json_t *entry;
        json_array_foreach(s->fs->env, i, entry)
        {
            if (strcmp(node__str(entry, "name"), name) != 0)
                continue;
            json_t *v = env_entry_value(e, s, entry, depth);
            json_t *cache = ensure_object(&s->env_cache);
            /* set_new frees 'v' when it fails: return only what the cache holds */
            if (!v || !cache || json_object_set_new(cache, name, v) != 0)
                return NULL;
            return v;
        }
    }
    return NULL;
}

static json_t *builtin_env(eddy_node *node, const char *name)
{
    const char *value = NULL;
    if (strcmp(name, "NR_NODE_ID") == 0)
        value = node->fn->id;
    else if (strcmp(name, "NR_NODE_NAME") == 0)
        value = eddy_node_name(node);
    else if (strcmp(name, "NR_NODE_PATH") == 0)
        value = node->fn->id;
    else if (strcmp(name, "NR_GROUP_ID") == 0)
        value = node__str(node->config, "g");
    else if (strcmp(name, "NR_FLOW_ID") == 0)
        value = node->scope->fs->id;
    else if (strcmp(name, "NR_FLOW_NAME") == 0)
        value = node->scope->fs->label ? node->scope->fs->label : "";
    if (!value)
        return NULL;
    json_t *v = json_string(value);
    json_t *cache = ensure_object(&node->builtins);
    if (!v || !cache || json_object_set_new(cache, name, v) != 0)
        return NULL;
    return v;
}

json_t *eddy_node_env(eddy_node *node, const char *name)
{
    eddy_engine *e = node->engine;
    json_t *v = env_lookup_scope(e, node->scope, name, 0);
    if (v)
        return v;
    v = builtin_env(node, name);
    if (v)
        return v;
    v = json_object_get(e->process_env, name);
    if (v)
        return v;
    const char *pv = getenv(name);
    if (!pv)
        return NULL;
    v = json_string(pv);
    if (!v || json_object_set_new(e->process_env, name, v) != 0)
        return NULL;
    return v;
}

/* ---- start ---- */

static void report(eddy_problems *problems, eddy_node *node, int code, const char *msg)
{
    eddy_err err;
    eddy_err_clear(&err);
    eddy_err_set(&err, code, "%s", msg);
    eddy_err_at_file(&err, node->fref->flow->file, node->fn->line, 0);
    eddy_err_at_node(&err, node->fn->id, node->type->name, eddy_node_tab(node));
    if (problems)
        eddy_problems_add(problems, &err);
}

/* A flow that cannot start for want of resources (not because of one node). */
static void report_start_failure(eddy_problems *problems, int rc)
{
    eddy_err err;
    eddy_err_clear(&err);
    eddy_err_set(&err, rc, "cannot start the flow: %s", eddy_err_text(rc));
    eddy_problems_add(problems, &err);
}

static engine_scope *scope_of(eddy_engine *e, const char *id)
{
    for (int i = 0; i < e->scope_count; i++)
        if (strcmp(e->scopes[i].fs->id, id) == 0)
            return &e->scopes[i];
    return NULL;
}

static void free_scopes(eddy_engine *e)
{
    for (int i = 0; i < e->scope_count; i++) {
        json_decref(e->scopes[i].env_cache);
        list_free(&e->scopes[i].catchers);
        list_free(&e->scopes[i].statusers);
    }
    eddy_free(e->scopes);
    e->scopes = NULL;
    e->scope_count = 0;
}

static int build_scopes(eddy_engine *e)
{
    /* One implicit scope for nodes with no tab (config nodes). */
    static const eddy_flow_scope global_scope = {.id = "", .label = "global"};
    e->scopes = eddy_calloc((size_t)e->flow->scope_count + 1, sizeof(*e->scopes));
    if (!e->scopes)
        return EDDY_ENOMEM;
    e->scopes[0].fs = &global_scope;
    for (int i = 0; i < e->flow->scope_count; i++)
        e->scopes[i + 1].fs = &e->flow->scopes[i];
    e->scope_count = e->flow->scope_count + 1;
    for (int i = 1; i < e->scope_count; i++)
        if (e->scopes[i].fs->parent)
            e->scopes[i].parent = scope_of(e, e->scopes[i].fs->parent);
    return EDDY_OK;
}

static engine_scope *scope_for(eddy_engine *e, const eddy_flow_node *fn)
{
    engine_scope *s = scope_of(e, fn->tab ? fn->tab : "");
    return s ? s : &e->scopes[0];
}

static eddy_node *node_new(eddy_engine *e, const eddy_flow_node *fn)
{
    eddy_node *n = eddy_calloc(1, sizeof(*n));
    if (!n)
        return NULL;
    n->engine = e;
    n->type = fn->ntype;
    n->fn = fn;
    n->fref = e->cur;
    n->config = fn->config;
    n->scope = scope_for(e, fn);
    n->state = eddy_calloc(1, fn->ntype->state_size ? fn->ntype->state_size : 1);
    n->defaults = json_object();
    n->output_count = node__output_count(fn->ntype, fn->config);
    if (n->output_count < 0)
        n->output_count = 0;
    n->outputs = eddy_calloc((size_t)n->output_count + 1, sizeof(*n->outputs));
    if (!n->state || !n->defaults || !n->outputs) {
        eddy_free(n->state);
        json_decref(n->defaults);
        eddy_free(n->outputs);
        eddy_free(n);
        return NULL;
    }
    e->cur->nodes++;
    return n;
}

static void flow_ref_free(flow_ref *ref)
{
    eddy_flow_free(ref->flow);
    eddy_free(ref);
}

/* Drops a node's hold on its flow; a retired flow goes with its last node. */
static void flow_ref_release(eddy_engine *e, flow_ref *ref)
{
    if (--ref->nodes > 0 || ref == e->cur)
        return;
    for (int i = 0; i < e->retired_count; i++) {
        if (e->retired[i] == ref) {
            e->retired[i] = e->retired[--e->retired_count];
            flow_ref_free(ref);
            return;
        }
    }
}

static void node_free(eddy_node *n)
{
    for (int i = 0; i < n->output_count; i++)
        list_free(&n->outputs[i]);
    eddy_free(n->outputs);
    list_free(&n->completers);
    list_free(&n->uses);
    json_decref(n->missed);
    json_decref(n->builtins);
    json_decref(n->defaults);
    json_decref(n->own_config);
    eddy_free(n->state);
    flow_ref_release(n->engine, n->fref);
    eddy_free(n);
}

static void fill_report(void *data, int code, const char *msg)
{
    (void)code;
    eddy_log(EDDY_LOG_ERROR, "%s: %s", (const char *)data, msg);
}

/* Fills props and resolves config references (config nodes are already created). */
static int configure_node(eddy_engine *e, eddy_node *n, eddy_problems *problems)
{
    const eddy_node_type *t = n->type;
    if (node__has_env_ref(n->config)) {
        /* the flow document stays as deployed; the node sees the substituted copy */
        n->own_config = node__substitute_env(n->config, resolve_env, n);
        if (!n->own_config) {
            report(problems, n, EDDY_ENOMEM, "out of memory substituting env properties");
            return EDDY_ENOMEM;
        }
        n->config = n->own_config;
    }
    if (node__props_fill(t, n->config, n->state, n->defaults, NULL, fill_report,
                         (void *)n->fn->id) > 0) {
        report(problems, n, EDDY_EINVAL, "invalid properties");
        return EDDY_EINVAL;
    }
    for (const eddy_prop *p = t->props; p && p->name; p++) {
        if (p->kind != EDDY_PROP_CONFIG)
            continue;
        const char *id = node__str(n->config, p->name);
        eddy_node *c = *id ? eddy_engine_find(e, id) : NULL;
        if (*id && (!c || (p->choices && strcmp(c->type->name, p->choices) != 0))) {
            /* a ${VAR} reference may name another node at start than it did at load */
            char msg[256];
            snprintf(msg, sizeof(msg), "config node '%s' (property '%s') is not a running %s", id,
                     p->name, p->choices ? p->choices : "config node");
            report(problems, n, EDDY_ENOTFOUND, msg);
            return EDDY_ENOTFOUND;
        }
        *(eddy_node **)((char *)n->state + p->offset) = c;
        if (c && list_add(&n->uses, c) != EDDY_OK) {
            report(problems, n, EDDY_ENOMEM, "out of memory");
            return EDDY_ENOMEM;
        }
    }
    /* Values that came from ${VAR} references were not known when the flow loaded. */
    if (n->own_config && t->validate) {
        eddy_err err;
        eddy_err_clear(&err);
        if (t->validate(t, n->config, n->state, &err) != EDDY_OK) {
            report(problems, n, err.code ? err.code : EDDY_EINVAL,
                   err.msg[0] ? err.msg : "invalid configuration");
            return err.code ? err.code : EDDY_EINVAL;
        }
    }
    return EDDY_OK;
}

static int wire_node(eddy_engine *e, eddy_node *n)
{
    /* a node kept by a redeploy has its old config; its wires are the new flow's */
    const eddy_flow_node *now = eddy_flow_node_find(e->flow, n->fn->id);
    json_t *wires = json_object_get(now ? now->config : n->config, "wires");
    for (int port = 0; port < n->output_count; port++) {
        size_t k;
        json_t *id;
        json_array_foreach(json_array_get(wires, (size_t)port), k, id)
        {
            eddy_node *t = eddy_engine_find(e, json_string_value(id));
            /* wires to disabled or non-running nodes carry nothing, as in Node-RED */
            if (t && list_add(&n->outputs[port], t) != EDDY_OK)
                return EDDY_ENOMEM;
        }
    }
    unsigned f = n->type->flags;
    if ((f & EDDY_NODE_CATCH) && list_add(&n->scope->catchers, n) != EDDY_OK)
        return EDDY_ENOMEM;
    if ((f & EDDY_NODE_STATUS) && list_add(&n->scope->statusers, n) != EDDY_OK)
        return EDDY_ENOMEM;
    if (f & EDDY_NODE_COMPLETE) {
        size_t k;
        json_t *id;
        json_array_foreach(json_object_get(n->config, "scope"), k, id)
        {
            eddy_node *t = eddy_engine_find(e, json_string_value(id));
            if (t && list_add(&t->completers, n) != EDDY_OK)
                return EDDY_ENOMEM;
        }
    }
    return EDDY_OK;
}

/* Whether 'fn' of 'flow' gives a running node: enabled, a runnable type, on an enabled
 * tab. */
static bool runs_in(const eddy_flow *flow, const eddy_flow_node *fn)
{
    if (!fn || fn->disabled || !fn->ntype || (fn->ntype->flags & EDDY_NODE_NO_RUN))
        return false;
    const eddy_flow_scope *sc = eddy_flow_find_scope(flow, fn->tab ? fn->tab : "");
    return !(sc && sc->disabled);
}

static bool runs(eddy_engine *e, const eddy_flow_node *fn)
{
    return runs_in(e->flow, fn);
}

/* Makes the node list from the nodes already running (e->nodes, kept by a redeploy; the
 * id table must cover them) and a new node for every other runnable node of the current
 * flow. Config nodes come first, kept before new in each group, so that others find them
 * when they set up and they close last. New nodes are not set up yet (set_up false). */
static int create_nodes(eddy_engine *e)
{
    int kept = e->node_count;
    eddy_node **nodes = eddy_calloc((size_t)(e->flow->node_count + kept) + 1, sizeof(*nodes));
    if (!nodes)
        return EDDY_ENOMEM;
    int count = 0, rc = EDDY_OK;
    for (int pass = 0; pass < 2 && rc == EDDY_OK; pass++) {
        bool config = pass == 0;
        for (int i = 0; i < kept; i++)
            if (!!(e->nodes[i]->type->flags & EDDY_NODE_CONFIG) == config)
                nodes[count++] = e->nodes[i];
        for (int i = 0; i < e->flow->node_count; i++) {
            const eddy_flow_node *fn = &e->flow->nodes[i];
            if (!runs(e, fn) || !!(fn->ntype->flags & EDDY_NODE_CONFIG) != config)
                continue;
            if (kept && eddy_engine_find(e, fn->id))
                continue;
            eddy_node *n = node_new(e, fn);
            if (!n) {
                rc = EDDY_ENOMEM;
                break;
            }
            nodes[count++] = n;
        }
    }
    if (rc != EDDY_OK) /* kept nodes not yet copied must stay owned */
        for (int i = 0; i < kept; i++) {
            bool copied = false;
            for (int k = 0; k < count && !copied; k++)
                copied = nodes[k] == e->nodes[i];
            if (!copied)
                nodes[count++] = e->nodes[i];
        }
    eddy_free(e->nodes);
    e->nodes = nodes;
    e->node_count = count;
    for (int i = 0; i < count; i++)
        nodes[i]->position = i;
    return rc;
}

/* Subflow instance scopes route errors through their "subflow in" node (needs the ids). */
static void link_instances(eddy_engine *e)
{
    for (int i = 1; i < e->scope_count; i++)
        if (e->scopes[i].fs->subflow)
            e->scopes[i].instance = eddy_engine_find(e, e->scopes[i].fs->id);
}

static void free_nodes(eddy_engine *e)
{
    for (int i = 0; i < e->node_count; i++)
        node_free(e->nodes[i]);
    eddy_free(e->nodes);
    e->nodes = NULL;
    e->node_count = 0;
    eddy_free(e->by_id);
    e->by_id = NULL;
    free_scopes(e);
}

/* Makes 'flow' the current one; the previous stays alive while kept nodes use it. */
static int adopt_flow(eddy_engine *e, eddy_flow *flow)
{
    flow_ref *ref = eddy_calloc(1, sizeof(*ref));
    if (!ref)
        return EDDY_ENOMEM;
    ref->flow = flow;
    if (e->cur) {
        if (e->cur->nodes == 0) {
            flow_ref_free(e->cur);
        } else {
            flow_ref **r = eddy_realloc(e->retired, (size_t)(e->retired_count + 1) * sizeof(*r));
            if (!r) {
                eddy_free(ref);
                return EDDY_ENOMEM;
            }
            e->retired = r;
            e->retired[e->retired_count++] = e->cur;
        }
    }
    e->cur = ref;
    e->flow = flow;
    return EDDY_OK;
}

/* Wires every node, resolves config references and sets up the nodes not set up
 * yet. On failure every node is stopped and the engine is idle. */
static int start_nodes(eddy_engine *e, eddy_problems *problems)
{
    eddy_free(e->by_id);
    e->by_id = NULL;
    int rc = ids_build(e);
    if (rc == EDDY_OK)
        link_instances(e);
    for (int i = 0; rc == EDDY_OK && i < e->node_count; i++)
        rc = wire_node(e, e->nodes[i]);
    if (rc != EDDY_OK) {
        report_start_failure(problems, rc);
        eddy_engine_stop(e);
        return rc;
    }
    /* Every node's properties first: a node's setup may read a config node's state
     * (mqtt-broker reads tls-config), whatever their order in the file. */
    for (int i = 0; rc == EDDY_OK && i < e->node_count; i++)
        if (!e->nodes[i]->set_up)
            rc = configure_node(e, e->nodes[i], problems);
    for (int i = 0; rc == EDDY_OK && i < e->node_count; i++) {
        eddy_node *n = e->nodes[i];
        if (n->set_up)
            continue; /* kept by a redeploy */
        eddy_err err;
        eddy_err_clear(&err);
        if (n->type->setup && (rc = n->type->setup(n, n->state, &err)) != EDDY_OK) {
            report(problems, n, rc, err.msg[0] ? err.msg : "set-up failed");
            n->set_up = true; /* close frees what a partial setup made */
            break;
        }
        n->set_up = true;
    }
    if (rc != EDDY_OK) {
        eddy_engine_stop(e);
        return rc;
    }
    prune_contexts(e);
    return EDDY_OK;
}

int eddy_engine_start(eddy_engine *e, eddy_flow *flow, eddy_problems *problems)
{
    if (e->flow)
        eddy_engine_stop(e);
    int rc = adopt_flow(e, flow);
    if (rc != EDDY_OK) {
        eddy_flow_free(flow);
        report_start_failure(problems, rc);
        return rc;
    }
    rc = build_scopes(e);
    if (rc == EDDY_OK)
        rc = create_nodes(e);
    if (rc != EDDY_OK) {
        report_start_failure(problems, rc);
        eddy_engine_stop(e);
        return rc;
    }
    rc = start_nodes(e, problems);
    if (rc == EDDY_OK)
        eddy_log(EDDY_LOG_DEBUG, "[engine] started %d nodes from %s", e->node_count, flow->file);
    return rc;
}

bool eddy_engine_running(const eddy_engine *e)
{
    return e->flow != NULL;
}

const eddy_flow *eddy_engine_flow(const eddy_engine *e)
{
    return e->flow;
}

/* ---- stop ---- */

void eddy_node_closed(eddy_node *node)
{
    if (!node->close_pending)
        return;
    node->close_pending = false;
    node->engine->close_pending--;
}

static void wait_for_closes(eddy_engine *e)
{
    if (e->close_pending == 0)
        return;
    uv_loop_t *uv = eddy_loop_uv(e->loop);
    int64_t until = eddy_loop_now(e->loop) + CLOSE_WAIT_MS;
    while (e->close_pending > 0) {
        if (!uv) {
            eddy_loop_settle(e->loop);
            if (e->close_pending > 0)
                eddy_loop_advance(e->loop, 100);
        } else {
            uv_run(uv, UV_RUN_ONCE);
        }
        if (eddy_loop_now(e->loop) > until) {
            eddy_log(EDDY_LOG_ERROR, "[engine] %d node(s) did not finish closing in %d ms",
                     e->close_pending, CLOSE_WAIT_MS);
            break;
        }
    }
}

/* Lets what is in flight reach its destination first, within a bound (a flow with a loop
 * in it could otherwise keep the queue full forever). What the event store holds until its
 * commit (event-store nodes send on only then) is in flight too: the group commits here,
 * while every node still takes input, and its messages are drained like the rest. A commit
 * left to a node's close would release the acknowledgements of the input (MQTT) while the
 * nodes downstream, closed already, drop what it sends. */
static void drain_before_stop(eddy_engine *e)
{
    size_t budget = e->opts.queue_limit * STOP_DRAIN_FACTOR;
    for (;;) {
        while (e->ring_len > 0 && budget > 0) {
            size_t before = e->ring_len;
            engine_work(e->loop, e);
            budget -= before < budget ? before : budget;
        }
        if (!e->opts.store || budget == 0)
            return;
        eddy_store_commit(e->opts.store, NULL);
        if (e->ring_len == 0)
            return;
    }
}

/* Drops queued deliveries to nodes marked 'restart' (all if 'all'); returns how many. */
static size_t drop_deliveries(eddy_engine *e, bool all)
{
    size_t kept = 0, dropped = 0;
    for (size_t i = 0; i < e->ring_len; i++) {
        delivery d = e->ring[(e->ring_head + i) % e->ring_cap];
        if (all || d.target->restart) {
            json_decref(d.msg);
            dropped++;
        } else {
            e->ring[(e->ring_head + kept++) % e->ring_cap] = d;
        }
    }
    e->ring_len = kept;
    e->stats.dropped_on_stop += dropped;
    return dropped;
}

/* Closes the nodes marked 'restart' (every node if 'all'), sources before sinks, waiting
 * for asynchronous closes; 'removed' tells each whether it is gone for good. Messages
 * dropped here were not taken by the flow: the loop is held while nodes close, so no
 * acknowledgement of them reaches the outside (the broker delivers them again). */
static void close_nodes(eddy_engine *e, bool all, const eddy_flow *next)
{
    drain_before_stop(e);
    size_t dropped = drop_deliveries(e, all);
    if (dropped) {
        eddy_log(EDDY_LOG_WARN, "[engine] %zu queued message(s) dropped at stop", dropped);
        eddy_loop_hold(e->loop, 1);
    }
    /* Reverse set-up order puts config nodes last. */
    for (int i = e->node_count - 1; i >= 0; i--) {
        eddy_node *n = e->nodes[i];
        if (!all && !n->restart)
            continue;
        n->closing = true;
        stop_node_timers(n);
        bool removed = next && !eddy_flow_node_find(next, n->fn->id);
        if (e->hooks.on_close)
            e->hooks.on_close(e->hooks.data, n, removed);
        if (n->set_up && n->type->close &&
            n->type->close(n, n->state, removed) == EDDY_CLOSE_LATER) {
            n->close_pending = true;
            e->close_pending++;
        }
    }
    wait_for_closes(e);
    if (dropped)
        eddy_loop_release(e->loop, 1);
    for (int i = 0; i < e->node_count; i++)
        if (all || e->nodes[i]->restart)
            stop_node_timers(e->nodes[i]); /* timers a close started */
    drop_deliveries(e, all);
    e->close_pending = 0;
}

void eddy_engine_stop(eddy_engine *e)
{
    if (!e->flow)
        return;
    close_nodes(e, true, NULL);
    free_nodes(e);
    for (int i = 0; i < e->retired_count; i++)
        flow_ref_free(e->retired[i]);
    e->retired_count = 0;
    flow_ref_free(e->cur);
    e->cur = NULL;
    e->flow = NULL;
    e->backlogged = false;
}

/* ---- redeploy ---- */

/* Node-RED properties that only place a node on the canvas: changing them changes
 * nothing the node does. */
static bool layout_key(const char *key)
{
    return strcmp(key, "x") == 0 || strcmp(key, "y") == 0 || strcmp(key, "wires") == 0;
}

static bool same_config(const json_t *a, const json_t *b)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)a, key, v)
    {
        if (!layout_key(key) && !json_equal(v, json_object_get(b, key)))
            return false;
    }
    json_object_foreach((json_t *)b, key, v)
    {
        if (!layout_key(key) && !json_object_get(a, key))
            return false;
    }
    return true;
}

static bool same_scope(const eddy_flow_scope *a, const eddy_flow_scope *b)
{
    if (!a || !b)
        return a == b;
    if (a->disabled != b->disabled || !!a->parent != !!b->parent ||
        (a->parent && strcmp(a->parent, b->parent) != 0))
        return false;
    if (!!a->env != !!b->env)
        return false;
    return !a->env || json_equal(a->env, b->env);
}

/* Whether a running node can stay as it is under the new flow. */
static bool unchanged(eddy_engine *e, const eddy_node *n, const eddy_flow *next)
{
    const eddy_flow_node *fn = eddy_flow_node_find(next, n->fn->id);
    if (!fn || fn->ntype != n->type || fn->disabled)
        return false;
    const char *tab = fn->tab ? fn->tab : "";
    const eddy_flow_scope *now = eddy_flow_find_scope(next, tab);
    if (now && now->disabled)
        return false;
    /* a scope change (env, disabled, nesting) reaches every node in it, up the chain */
    for (const eddy_flow_scope *old = eddy_flow_find_scope(n->fref->flow, tab); old || now;) {
        if (!same_scope(old, now))
            return false;
        const char *parent = now ? now->parent : NULL;
        old = parent ? eddy_flow_find_scope(n->fref->flow, parent) : NULL;
        now = parent ? eddy_flow_find_scope(next, parent) : NULL;
    }
    (void)e;
    return same_config(n->fn->config, fn->config);
}

/* The tab a node is drawn on: subflow copies belong to their instance's tab. */
static const char *top_tab(const eddy_flow *flow, const char *scope)
{
    const eddy_flow_scope *s = scope ? eddy_flow_find_scope(flow, scope) : NULL;
    while (s && s->parent) {
        const eddy_flow_scope *up = eddy_flow_find_scope(flow, s->parent);
        if (!up)
            break;
        s = up;
    }
    return s ? s->id : (scope ? scope : "");
}

/* Marks nodes that use a restarting node, or looked for one that now appears; returns
 * whether anything new was marked. */
static bool spread_to_users(eddy_engine *e, const eddy_flow *next)
{
    bool grew = false;
    for (int i = 0; i < e->node_count; i++) {
        eddy_node *n = e->nodes[i];
        if (n->restart)
            continue;
        for (int k = 0; !n->restart && k < n->uses.count; k++)
            n->restart = n->uses.items[k]->restart;
        size_t k;
        json_t *id;
        json_array_foreach(n->missed, k, id)
        {
            if (n->restart)
                break;
            n->restart = runs_in(next, eddy_flow_node_find(next, json_string_value(id)));
        }
        grew = grew || n->restart; /* newly marked: it was not at the top */
    }
    return grew;
}

/* In "flows" mode a change anywhere on a tab restarts the whole tab. */
static bool spread_to_tabs(eddy_engine *e, const eddy_flow *next)
{
    json_t *dirty = json_object();
    if (!dirty)
        return false;
    for (int i = 0; i < e->node_count; i++)
        if (e->nodes[i]->restart)
            json_object_set_new(dirty, top_tab(e->flow, e->nodes[i]->fn->tab), json_true());
    /* added or changed nodes, running or not (a disabled node that stays disabled is no
     * change), and removed ones */
    for (int i = 0; i < next->node_count; i++) {
        const eddy_flow_node *fn = &next->nodes[i];
        const eddy_flow_node *was = eddy_flow_node_find(e->flow, fn->id);
        if (!was || was->disabled != fn->disabled || was->ntype != fn->ntype ||
            !same_config(was->config, fn->config))
            json_object_set_new(dirty, top_tab(next, fn->tab), json_true());
    }
    for (int i = 0; i < e->flow->node_count; i++) {
        const eddy_flow_node *fn = &e->flow->nodes[i];
        if (!eddy_flow_node_find(next, fn->id))
            json_object_set_new(dirty, top_tab(e->flow, fn->tab), json_true());
    }
    bool grew = false;
    for (int i = 0; i < e->node_count; i++) {
        eddy_node *n = e->nodes[i];
        if (!n->restart && json_object_get(dirty, top_tab(e->flow, n->fn->tab))) {
            n->restart = true;
            grew = true;
        }
    }
    json_decref(dirty);
    return grew;
}

static void mark_restarts(eddy_engine *e, const eddy_flow *next, eddy_deploy_mode mode)
{
    for (int i = 0; i < e->node_count; i++) {
        eddy_node *n = e->nodes[i];
        n->restart = mode == EDDY_DEPLOY_FULL || !unchanged(e, n, next);
    }
    if (mode == EDDY_DEPLOY_FULL)
        return;
    bool grew = true;
    while (grew) {
        grew = spread_to_users(e, next);
        if (mode == EDDY_DEPLOY_FLOWS)
            grew = spread_to_tabs(e, next) || grew;
    }
}

int eddy_engine_redeploy(eddy_engine *e, eddy_flow *flow, eddy_deploy_mode mode,
                         eddy_problems *problems, eddy_deploy_result *result)
{
    eddy_deploy_result res = {0};
    if (!e->flow || mode == EDDY_DEPLOY_FULL) {
        res.stopped = e->node_count;
        int rc = eddy_engine_start(e, flow, problems);
        res.started = e->node_count;
        if (result)
            *result = res;
        return rc;
    }
    mark_restarts(e, flow, mode);
    close_nodes(e, false, flow);
    /* what stays: nodes not restarted; their fn and config stay in their old flow */
    eddy_node **kept = eddy_calloc((size_t)e->node_count + 1, sizeof(*kept));
    if (!kept) {
        eddy_flow_free(flow);
        eddy_engine_stop(e);
        report_start_failure(problems, EDDY_ENOMEM);
        return EDDY_ENOMEM;
    }
    int kept_count = 0;
    for (int i = 0; i < e->node_count; i++) {
        eddy_node *n = e->nodes[i];
        if (n->restart) {
            res.stopped++;
            node_free(n);
            continue;
        }
        kept[kept_count++] = n;
        for (int p = 0; p < n->output_count; p++)
            n->outputs[p].count = 0;
        n->completers.count = 0;
    }
    eddy_free(e->nodes);
    e->nodes = NULL;
    e->node_count = 0;
    eddy_free(e->by_id);
    e->by_id = NULL;
    /* kept nodes must not point at the scopes freed here, even if what follows fails */
    static const eddy_flow_scope detached_fs = {.id = "", .label = "global"};
    static engine_scope detached;
    detached.fs = &detached_fs;
    detached.context = NULL;
    for (int i = 0; i < kept_count; i++)
        kept[i]->scope = &detached;
    free_scopes(e);
    e->nodes = kept; /* owned by the engine again from here */
    e->node_count = kept_count;
    int rc = adopt_flow(e, flow);
    if (rc != EDDY_OK) {
        eddy_flow_free(flow);
        eddy_engine_stop(e);
        return rc;
    }
    rc = build_scopes(e);
    for (int i = 0; rc == EDDY_OK && i < kept_count; i++)
        kept[i]->scope = scope_for(e, kept[i]->fn);
    if (rc == EDDY_OK)
        rc = ids_build(e); /* create_nodes skips the kept ids */
    if (rc == EDDY_OK)
        rc = create_nodes(e);
    if (rc != EDDY_OK) {
        report_start_failure(problems, rc);
        eddy_engine_stop(e);
        return rc;
    }
    res.kept = kept_count;
    res.started = e->node_count - kept_count;
    rc = start_nodes(e, problems);
    if (result)
        *result = res;
    if (rc == EDDY_OK)
        eddy_log(EDDY_LOG_DEBUG, "[engine] redeployed %s: %d kept, %d stopped, %d started",
                 flow->file, res.kept, res.stopped, res.started);
    return rc;
}

/* ---- engine object ---- */

eddy_engine *eddy_engine_new(eddy_loop *loop, const eddy_registry *reg,
                             const eddy_engine_opts *opts, eddy_err *err)
{
    eddy_engine *e = eddy_calloc(1, sizeof(*e));
    if (!e) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory creating the engine");
        return NULL;
    }
    e->loop = loop;
    e->reg = reg;
    if (opts)
        e->opts = *opts;
    if (e->opts.queue_limit == 0)
        e->opts.queue_limit = DEFAULT_QUEUE_LIMIT;
    if (e->opts.batch <= 0)
        e->opts.batch = DEFAULT_BATCH;
    e->global_context = json_object();
    e->node_contexts = json_object();
    e->flow_contexts = json_object();
    e->process_env = json_object();
    if (!e->global_context || !e->node_contexts || !e->flow_contexts || !e->process_env) {
        eddy_engine_free(e);
        eddy_err_set(err, EDDY_ENOMEM, "out of memory creating the engine");
        return NULL;
    }
    eddy_loop_set_work(loop, engine_work, e);
    return e;
}

void eddy_engine_free(eddy_engine *e)
{
    if (!e)
        return;
    eddy_engine_stop(e);
    eddy_loop_set_work(e->loop, NULL, NULL);
    json_decref(e->global_context);
    json_decref(e->node_contexts);
    json_decref(e->flow_contexts);
    json_decref(e->process_env);
    eddy_free(e->retired);
    eddy_free(e->ring);
    eddy_free(e);
}

void eddy_engine_set_hooks(eddy_engine *e, const eddy_engine_hooks *hooks)
{
    e->hooks = *hooks;
}

void eddy_engine_set_store(eddy_engine *e, struct eddy_store *store)
{
    e->opts.store = store;
}

void eddy_engine_get_stats(const eddy_engine *e, eddy_engine_stats *out)
{
    *out = e->stats;
    out->queued = e->ring_len;
}
