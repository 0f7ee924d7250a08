/* trigger.c: Node-RED's "trigger" node: on a message sends a first value at once, then,
 * unless reset, a second value after a time (or repeats the first, for a negative
 * duration), per topic or for all messages; further messages are ignored or extend the
 * time. msg.reset (or a payload equal to 'reset') cancels. Values are typed values
 * (eddy_node_eval_typed) or Mustache variables ("{{payload}}"); Mustache sections and
 * partials, and JSONata, are not supported.
 *
 * Each running trigger is a trig_entry keyed by topic. While it has a timer, the timer's
 * finalizer (entry_timer_gone) is what frees a removed entry, so an entry never outlives
 * nor is outlived by its timer, whoever stops it. */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "msg.h"
#include "node.h"

struct trigger_state;

typedef struct trig_entry {
    char *key;                /* topic (or "_none"), owned */
    struct trig_entry *next;  /* next in the hash bucket */
    struct trigger_state *st; /* owner */
    eddy_timer *timer;        /* timeout or repeat timer; NULL when none */
    bool hold;                /* duration 0: blocks until reset */
    bool extended;            /* the timer was restarted by a later message */
    bool removed;             /* out of the table; freed when 'timer' goes */
    int64_t period;           /* repeat mode: the period (ms) */
    json_t *msg;              /* the message the timer's output is built on (owned) */
    json_t *m2;               /* second value; NULL is undefined (owned) */
    json_t *npay;             /* op2type "payl": the latest message (owned) */
} trig_entry;

struct trigger_state {
    /* properties, filled by the engine */
    const json_t *op1_cfg;
    const json_t *op2_cfg;
    const char *op1type_cfg;
    const char *op2type_cfg;
    const json_t *duration_cfg;
    const char *units;
    bool extend_cfg;
    bool override_delay;
    const json_t *reset_cfg;
    const char *bytopic;
    const char *topic;

    /* set up */
    json_t *op1; /* value text (or null for "null"), owned */
    json_t *op2;
    const char *op1type; /* after defaults and the legacy "val" mapping */
    const char *op2type;
    bool op1_template; /* a string with "{{": rendered with Mustache */
    bool op2_template;
    double duration_ms; /* time to the second output, or the repeat period */
    bool loop;          /* negative duration: repeat the first output */
    bool extend;
    char *reset; /* payload text that resets; NULL for none (owned) */
    bool by_topic;
    eddy_path topic_path;
    bool second; /* two outputs: the second value goes to output 2 */

    /* run time */
    trig_entry **buckets; /* hash table of running triggers by key */
    size_t nbuckets;
    size_t count;
};

static const eddy_prop trigger_props[] = {
    {.name = "op1",
     .kind = EDDY_PROP_JSON,
     .offset = offsetof(struct trigger_state, op1_cfg),
     .help = "first value to send (default \"1\")"},
    {.name = "op2",
     .kind = EDDY_PROP_JSON,
     .offset = offsetof(struct trigger_state, op2_cfg),
     .help = "second value to send (default \"0\")"},
    {.name = "op1type",
     .kind = EDDY_PROP_STR,
     .offset = offsetof(struct trigger_state, op1type_cfg),
     .help = "str, num, bool, json, date, bin, env, flow, global, pay (the message), nul"},
    {.name = "op2type",
     .kind = EDDY_PROP_STR,
     .offset = offsetof(struct trigger_state, op2type_cfg),
     .help = "as op1type, and payl (the latest message)"},
    {.name = "duration",
     .kind = EDDY_PROP_JSON,
     .offset = offsetof(struct trigger_state, duration_cfg),
     .help = "time before the second value (default 250); 0: wait for a reset; negative: "
             "repeat the first value this often"},
    {.name = "units",
     .kind = EDDY_PROP_STR,
     .offset = offsetof(struct trigger_state, units),
     .help = "ms, s, min or hr"},
    {.name = "extend",
     .kind = EDDY_PROP_BOOL,
     .def = "false",
     .offset = offsetof(struct trigger_state, extend_cfg),
     .help = "a new message restarts the time"},
    {.name = "overrideDelay",
     .kind = EDDY_PROP_BOOL,
     .def = "false",
     .offset = offsetof(struct trigger_state, override_delay),
     .help = "msg.delay (ms) sets the time"},
    {.name = "reset",
     .kind = EDDY_PROP_JSON,
     .offset = offsetof(struct trigger_state, reset_cfg),
     .help = "a payload equal to this resets the trigger"},
    {.name = "bytopic",
     .kind = EDDY_PROP_STR,
     .offset = offsetof(struct trigger_state, bytopic),
     .help = "all (one trigger) or topic (one per topic)"},
    {.name = "topic",
     .kind = EDDY_PROP_STR,
     .offset = offsetof(struct trigger_state, topic),
     .help = "message property that tells topics apart (default topic)"},
    {0},
};

/* ---- helpers ---- */

static bool type_is(const char *type, const char *name)
{
    return strcmp(type, name) == 0;
}

/* A configured value as JavaScript's String() would give it, with Node-RED's '|| default'
 * for falsy values. Ownership: new, eddy_free. */
static char *config_text(const json_t *value, const char *def)
{
    if (!eddy_json_truthy(value)) {
        return def ? eddy_strdup(def) : NULL;
    }
    return eddy_json_to_string(value, false);
}

static int64_t to_timer_ms(double ms)
{
    if (!(ms > 0)) {
        return 0;
    }
    return ms > 9e15 ? (int64_t)9e15 : (int64_t)llround(ms);
}

/* ---- Mustache (variables only, as the trigger uses it) ---- */

/* Checks that 'tpl' uses only {{name}}, {{{name}}}, {{&name}} and {{! comments}}. */
static int mustache_check(const char *tpl, const char *what, eddy_err *err)
{
    for (const char *p = strstr(tpl, "{{"); p; p = strstr(p, "{{")) {
        const char *inner = p + 2;
        bool triple = *inner == '{';
        const char *close = strstr(inner, triple ? "}}}" : "}}");
        if (!close) {
            return eddy_err_set(err, EDDY_EINVAL, "%s: unclosed Mustache tag at offset %d", what,
                                (int)(p - tpl));
        }
        if (!triple && strchr("#^/>=", *inner) && *inner != '\0') {
            return eddy_err_set(err, EDDY_EUNSUPPORTED,
                                "%s: Mustache '{{%c' (sections, partials, delimiters) is not "
                                "supported; only {{name}} values",
                                what, *inner);
        }
        p = close + (triple ? 3 : 2);
    }
    return EDDY_OK;
}

typedef struct strbuf {
    char *data;
    size_t len;
    size_t cap;
    bool failed;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n)
{
    if (b->failed) {
        return;
    }
    if (b->len + n + 1 > b->cap) {
        size_t cap = (b->len + n + 1) * 2;
        char *grown = eddy_realloc(b->data, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

/* mustache.js's HTML escaping. */
static void sb_add_escaped(strbuf *b, const char *s)
{
    for (; *s; s++) {
        const char *rep = NULL;
        switch (*s) {
        case '&':
            rep = "&amp;";
            break;
        case '<':
            rep = "&lt;";
            break;
        case '>':
            rep = "&gt;";
            break;
        case '"':
            rep = "&quot;";
            break;
        case '\'':
            rep = "&#39;";
            break;
        case '/':
            rep = "&#x2F;";
            break;
        case '`':
            rep = "&#x60;";
            break;
        case '=':
            rep = "&#x3D;";
            break;
        default:
            break;
        }
        if (rep) {
            sb_add(b, rep, strlen(rep));
        } else {
            sb_add(b, s, 1);
        }
    }
}

/* Looks a dotted name up in 'view' ("." is the view itself). Borrowed, NULL if missing. */
static const json_t *mustache_lookup(const json_t *view, const char *name, size_t len)
{
    if (len == 1 && name[0] == '.') {
        return view;
    }
    const json_t *v = view;
    const char *end = name + len;
    while (v && name < end) {
        const char *dot = memchr(name, '.', (size_t)(end - name));
        size_t n = dot ? (size_t)(dot - name) : (size_t)(end - name);
        char key[256];
        if (n >= sizeof key) {
            return NULL;
        }
        memcpy(key, name, n);
        key[n] = '\0';
        if (json_is_object(v)) {
            v = json_object_get(v, key);
        } else if (json_is_array(v)) {
            char *stop;
            long i = strtol(key, &stop, 10);
            v = n > 0 && *stop == '\0' && i >= 0 ? json_array_get(v, (size_t)i) : NULL;
        } else {
            v = NULL;
        }
        name += n + (dot ? 1 : 0);
    }
    return v;
}

/* Renders 'tpl' against 'view' (a message). Ownership: new JSON string; NULL on OOM. */
static json_t *mustache_render(const char *tpl, const json_t *view)
{
    strbuf b = {0};
    const char *p = tpl;
    sb_add(&b, "", 0);
    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) {
            sb_add(&b, p, strlen(p));
            break;
        }
        sb_add(&b, p, (size_t)(open - p));
        const char *inner = open + 2;
        bool triple = *inner == '{';
        const char *close = strstr(inner, triple ? "}}}" : "}}");
        if (!close) { /* refused by validate; kept as text */
            sb_add(&b, open, strlen(open));
            break;
        }
        p = close + (triple ? 3 : 2);
        bool escape = !triple;
        if (triple) {
            inner++;
        } else if (*inner == '&') {
            inner++;
            escape = false;
        } else if (*inner == '!') {
            continue;
        }
        while (inner < close && (*inner == ' ' || *inner == '\t')) {
            inner++;
        }
        const char *name_end = close;
        while (name_end > inner && (name_end[-1] == ' ' || name_end[-1] == '\t')) {
            name_end--;
        }
        const json_t *v = mustache_lookup(view, inner, (size_t)(name_end - inner));
        if (!v || json_is_null(v)) {
            continue;
        }
        char *text = eddy_json_to_string(v, false);
        if (!text) {
            b.failed = true;
            break;
        }
        if (escape && !json_is_number(v)) {
            sb_add_escaped(&b, text);
        } else {
            sb_add(&b, text, strlen(text));
        }
        eddy_free(text);
    }
    json_t *out = b.failed ? NULL : json_stringn(b.data, b.len);
    eddy_free(b.data);
    return out;
}

/* ---- the table of running triggers ---- */

static size_t key_hash(const char *key)
{
    size_t h = 2166136261u;
    for (; *key; key++) {
        h = (h ^ (unsigned char)*key) * 16777619u;
    }
    return h;
}

static trig_entry *table_find(struct trigger_state *st, const char *key)
{
    if (!st->nbuckets) {
        return NULL;
    }
    for (trig_entry *e = st->buckets[key_hash(key) % st->nbuckets]; e; e = e->next) {
        if (strcmp(e->key, key) == 0) {
            return e;
        }
    }
    return NULL;
}

static bool table_grow(struct trigger_state *st)
{
    size_t n = st->nbuckets ? st->nbuckets * 2 : 16;
    trig_entry **b = eddy_calloc(n, sizeof *b);
    if (!b) {
        return false;
    }
    for (size_t i = 0; i < st->nbuckets; i++) {
        for (trig_entry *e = st->buckets[i], *next; e; e = next) {
            next = e->next;
            size_t j = key_hash(e->key) % n;
            e->next = b[j];
            b[j] = e;
        }
    }
    eddy_free(st->buckets);
    st->buckets = b;
    st->nbuckets = n;
    return true;
}

static trig_entry *table_add(struct trigger_state *st, const char *key)
{
    if (st->count + 1 > st->nbuckets * 2 && !table_grow(st)) {
        return NULL;
    }
    trig_entry *e = eddy_calloc(1, sizeof *e);
    if (!e || !(e->key = eddy_strdup(key))) {
        eddy_free(e);
        return NULL;
    }
    e->st = st;
    size_t j = key_hash(key) % st->nbuckets;
    e->next = st->buckets[j];
    st->buckets[j] = e;
    st->count++;
    return e;
}

static void entry_free(trig_entry *e)
{
    json_decref(e->msg);
    json_decref(e->m2);
    json_decref(e->npay);
    eddy_free(e->key);
    eddy_free(e);
}

static void table_unlink(struct trigger_state *st, trig_entry *e)
{
    trig_entry **pp = &st->buckets[key_hash(e->key) % st->nbuckets];
    while (*pp && *pp != e) {
        pp = &(*pp)->next;
    }
    if (*pp) {
        *pp = e->next;
        st->count--;
    }
    e->next = NULL;
}

/* The finalizer of an entry's timer: the handle is gone; a removed entry goes with it. */
static void entry_timer_gone(void *data)
{
    trig_entry *e = data;
    e->timer = NULL;
    if (e->removed) {
        entry_free(e);
    }
}

/* Removes 'e' from the table and frees it, now or (if its timer is running its
 * callback) when the timer goes. 'in_callback': called from e's own timer callback,
 * which then returns EDDY_TIMER_STOP. */
static void entry_remove(eddy_node *node, trig_entry *e, bool in_callback)
{
    table_unlink(e->st, e);
    e->removed = true;
    if (e->timer) {
        if (!in_callback) {
            eddy_node_timer_stop(node, e->timer); /* entry_timer_gone frees 'e' */
        }
    } else {
        entry_free(e);
    }
}

static void trigger_status(eddy_node *node, struct trigger_state *st)
{
    if (st->count == 0) {
        eddy_node_set_status(node, NULL, NULL, NULL);
    } else if (st->count == 1) {
        eddy_node_set_status(node, "blue", "dot", NULL);
    } else {
        char text[32];
        snprintf(text, sizeof text, "%zu", st->count);
        eddy_node_set_status(node, "blue", "dot", text);
    }
}

/* ---- values ---- */

/* Evaluates op1 or op2 for 'msg'. 'out' gets a new reference or NULL (undefined). */
static int eval_op(eddy_node *node, const char *type, const json_t *value, bool templ,
                   const json_t *msg, json_t **out, eddy_err *err)
{
    *out = NULL;
    if (templ) {
        *out = mustache_render(json_string_value(value), msg);
        return *out ? EDDY_OK : eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    }
    if (type_is(type, "null")) {
        *out = json_null();
        return EDDY_OK;
    }
    if (type_is(type, "payl")) {
        return EDDY_OK; /* the latest message is used instead */
    }
    return eddy_node_eval_typed(node, msg, type, value, out, err);
}

/* ---- timers ---- */

static int64_t trigger_fire(eddy_node *node, void *state, void *data)
{
    trig_entry *e = data;
    struct trigger_state *st = state;
    int output = st->second ? 1 : 0;
    json_t *out = NULL;

    if (!type_is(st->op2type, "nul")) {
        bool reeval = type_is(st->op2type, "flow") || type_is(st->op2type, "global") ||
                      (!e->extended && type_is(st->op2type, "date"));
        if (reeval) {
            eddy_err err;
            eddy_err_clear(&err);
            json_t *v = NULL;
            if (eval_op(node, st->op2type, st->op2, false, e->msg, &v, &err) != EDDY_OK) {
                eddy_node_error(node, NULL, "second value: %s", err.msg);
                entry_remove(node, e, true);
                trigger_status(node, st);
                return EDDY_TIMER_STOP;
            }
            json_decref(e->m2);
            e->m2 = v;
        }
        if (type_is(st->op2type, "payl") && !e->extended) {
            out = e->npay;
            e->npay = NULL;
        } else {
            out = e->msg ? eddy_msg_clone(e->msg) : NULL;
            if (out && e->m2) {
                json_object_set(out, "payload", e->m2);
            } else if (out) {
                json_object_del(out, "payload");
            }
        }
    }
    entry_remove(node, e, true);
    trigger_status(node, st);
    if (out) {
        eddy_node_send(node, output, out);
    }
    return EDDY_TIMER_STOP;
}

static int64_t trigger_repeat(eddy_node *node, void *state, void *data)
{
    trig_entry *e = data;
    struct trigger_state *st = state;
    if (type_is(st->op1type, "date")) {
        json_object_set_new(e->msg, "payload",
                            json_integer((json_int_t)eddy_loop_wall(eddy_node_loop(node))));
    }
    json_t *copy = e->msg ? eddy_msg_clone(e->msg) : NULL;
    if (copy) {
        eddy_node_send(node, 0, copy);
    }
    return e->period;
}

static bool entry_start_timer(eddy_node *node, trig_entry *e, int64_t delay, eddy_node_timer_fn fn)
{
    e->timer = eddy_node_timer_start(node, delay, fn, e, entry_timer_gone);
    if (!e->timer) {
        eddy_node_error(node, NULL, "out of memory starting a timer");
        return false;
    }
    return true;
}

/* ---- input ---- */

static bool is_reset(const struct trigger_state *st, const json_t *msg)
{
    if (json_object_get(msg, "reset")) {
        return true;
    }
    const json_t *payload = json_object_get(msg, "payload");
    if (!st->reset || !payload || json_is_null(payload)) {
        return false;
    }
    char *text = eddy_json_to_string(payload, false);
    bool eq = text && strcmp(text, st->reset) == 0;
    eddy_free(text);
    return eq;
}

/* The key of the trigger a message belongs to. Ownership: new, eddy_free. */
static char *trigger_key(const struct trigger_state *st, json_t *msg)
{
    if (!st->by_topic) {
        return eddy_strdup("_none");
    }
    const json_t *v = eddy_path_get(msg, &st->topic_path);
    return eddy_json_truthy(v) ? eddy_json_to_string(v, false) : eddy_strdup("_none");
}

/* Starts (or, in repeat mode, restarts) the trigger 'e' with 'msg' (taken). */
static void trigger_start(eddy_node *node, struct trigger_state *st, trig_entry *e, json_t *msg,
                          double delay)
{
    eddy_err err;
    eddy_err_clear(&err);
    json_t *m2 = NULL;
    json_t *v = NULL;

    if (type_is(st->op2type, "pay")) {
        json_t *p = json_object_get(msg, "payload");
        m2 = p ? json_deep_copy(p) : NULL;
    } else if (!type_is(st->op2type, "nul") &&
               eval_op(node, st->op2type, st->op2, st->op2_template, msg, &m2, &err) != EDDY_OK) {
        goto fail;
    }
    json_decref(e->m2);
    e->m2 = m2;

    if (!type_is(st->op1type, "pay") && !type_is(st->op1type, "nul")) {
        if (eval_op(node, st->op1type, st->op1, st->op1_template, msg, &v, &err) != EDDY_OK) {
            goto fail;
        }
        if (v) {
            json_object_set_new(msg, "payload", v);
        } else {
            json_object_del(msg, "payload");
        }
    }

    if (delay == 0) {
        e->hold = true;
    } else if (st->loop) {
        if (e->timer) {
            eddy_node_timer_stop(node, e->timer);
        }
        if (!type_is(st->op1type, "nul")) {
            json_decref(e->msg);
            e->msg = eddy_msg_clone(msg);
            e->period = to_timer_ms(delay) < 1 ? 1 : to_timer_ms(delay);
            entry_start_timer(node, e, e->period, trigger_repeat);
        }
    } else if (!e->timer) {
        json_decref(e->msg);
        e->msg = eddy_msg_clone(msg);
        e->extended = false;
        entry_start_timer(node, e, to_timer_ms(delay), trigger_fire);
    }
    eddy_node_done(node, msg);
    trigger_status(node, st);
    if (!type_is(st->op1type, "nul")) {
        eddy_node_send(node, 0, msg);
    } else {
        json_decref(msg);
    }
    return;

fail:
    eddy_node_error(node, msg, "%s", err.msg);
    if (!e->timer && !e->hold) {
        entry_remove(node, e, false);
    }
    json_decref(msg);
}

static void trigger_input(eddy_node *node, void *state, json_t *msg)
{
    struct trigger_state *st = state;
    char *key = trigger_key(st, msg);
    if (!key) {
        eddy_node_error(node, msg, "out of memory");
        json_decref(msg);
        return;
    }
    double delay = st->duration_ms;
    double d;
    if (st->override_delay && eddy_json_parse_float(json_object_get(msg, "delay"), &d)) {
        delay = d;
    }
    trig_entry *e = table_find(st, key);

    if (is_reset(st, msg)) {
        eddy_free(key);
        if (e) {
            entry_remove(node, e, false);
        }
        trigger_status(node, st);
        eddy_node_done(node, msg);
        json_decref(msg);
        return;
    }
    if (!e && !(e = table_add(st, key))) {
        eddy_free(key);
        eddy_node_error(node, msg, "out of memory");
        json_decref(msg);
        return;
    }
    eddy_free(key);
    if (type_is(st->op2type, "payl")) {
        json_decref(e->npay);
        e->npay = eddy_msg_clone(msg);
    }

    if ((!e->timer && !e->hold) || st->loop) {
        trigger_start(node, st, e, msg, delay);
        return;
    }
    if (st->extend && delay > 0) {
        if (type_is(st->op2type, "payl")) {
            json_t *p = json_object_get(msg, "payload");
            json_decref(e->m2);
            e->m2 = p ? json_deep_copy(p) : NULL;
        }
        if (e->timer) {
            eddy_node_timer_stop(node, e->timer); /* entry_timer_gone clears e->timer */
        }
        e->hold = false;
        json_decref(e->msg);
        e->msg = eddy_msg_clone(msg);
        e->extended = true;
        entry_start_timer(node, e, to_timer_ms(delay), trigger_fire);
    }
    eddy_node_done(node, msg);
    json_decref(msg);
}

/* ---- configuration and life cycle ---- */

static const char *const op_types[] = {"str", "num",  "bool", "json",   "date",
                                       "bin", "env",  "flow", "global", "msg",
                                       "pay", "payl", "nul",  "val",    NULL};

/* Resolves defaults and Node-RED's legacy "val" type. On success 'value' is a new JSON
 * string (or null for "null") and 'type' one of op_types (or "null"). */
static int trigger_resolve_op(const json_t *cfg, const char *type_cfg, const char *def,
                              const char *which, bool first, json_t **value, const char **type,
                              eddy_err *err)
{
    const char *t = type_cfg && *type_cfg ? type_cfg : "str";
    char *text = config_text(cfg, def);
    *value = NULL;
    if (!text) {
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    }
    if (type_is(t, "jsonata")) {
        eddy_free(text);
        return eddy_err_set(err, EDDY_EUNSUPPORTED, "%s: JSONata expressions are not supported",
                            which);
    }
    bool known = false;
    for (int i = 0; op_types[i]; i++) {
        known = known || type_is(t, op_types[i]);
    }
    if (!known || (first && type_is(t, "payl"))) {
        eddy_free(text);
        return eddy_err_set(err, EDDY_EINVAL, "%stype '%s' is not a known value type", which, t);
    }
    if (type_is(t, "date") && strcmp(text, def) == 0) {
        text[0] = '\0'; /* the default "1"/"0" means a timestamp in ms */
    }
    if (type_is(t, "val")) {
        if (strcmp(text, "true") == 0 || strcmp(text, "false") == 0) {
            t = "bool";
        } else if (strcmp(text, "null") == 0) {
            t = "null";
        } else {
            t = "str";
        }
    }
    *type = t;
    *value = type_is(t, "null") ? json_null() : json_string(text);
    eddy_free(text);
    return *value ? EDDY_OK : eddy_err_set(err, EDDY_ENOMEM, "out of memory");
}

/* Fills the derived settings; frees nothing (trigger_release does). */
static int trigger_configure(struct trigger_state *st, eddy_err *err)
{
    int rc = trigger_resolve_op(st->op1_cfg, st->op1type_cfg, "1", "op1", true, &st->op1,
                                &st->op1type, err);
    if (rc == EDDY_OK) {
        rc = trigger_resolve_op(st->op2_cfg, st->op2type_cfg, "0", "op2", false, &st->op2,
                                &st->op2type, err);
    }
    if (rc != EDDY_OK) {
        return rc;
    }
    st->op1_template = type_is(st->op1type, "str") && strstr(json_string_value(st->op1), "{{");
    st->op2_template = type_is(st->op2type, "str") && strstr(json_string_value(st->op2), "{{");
    if (st->op1_template &&
        (rc = mustache_check(json_string_value(st->op1), "op1", err)) != EDDY_OK) {
        return rc;
    }
    if (st->op2_template &&
        (rc = mustache_check(json_string_value(st->op2), "op2", err)) != EDDY_OK) {
        return rc;
    }
    if ((type_is(st->op1type, "json") || type_is(st->op1type, "bin") ||
         type_is(st->op2type, "json") || type_is(st->op2type, "bin"))) {
        for (int i = 0; i < 2; i++) {
            const char *t = i ? st->op2type : st->op1type;
            const char *text = json_string_value(i ? st->op2 : st->op1);
            if (!type_is(t, "json") && !type_is(t, "bin")) {
                continue;
            }
            eddy_err jerr;
            eddy_err_clear(&jerr);
            json_t *parsed = eddy_json_loadb(text, strlen(text), &jerr);
            if (!parsed) {
                return eddy_err_set(err, EDDY_EINVAL, "op%d: invalid JSON: %s", i + 1, jerr.msg);
            }
            json_decref(parsed);
        }
    }

    double d;
    st->duration_ms = eddy_json_parse_float(st->duration_cfg, &d) ? d : 250;
    st->extend = st->extend_cfg;
    if (st->duration_ms < 0) {
        st->loop = true;
        st->duration_ms = -st->duration_ms;
        st->extend = false;
    }
    const char *u = st->units && *st->units ? st->units : "ms";
    if (type_is(u, "s")) {
        st->duration_ms *= 1000;
    } else if (type_is(u, "min")) {
        st->duration_ms *= 60e3;
    } else if (type_is(u, "hr")) {
        st->duration_ms *= 3600e3;
    } else if (!type_is(u, "ms")) {
        return eddy_err_set(err, EDDY_EINVAL, "units '%s': expected ms, s, min or hr", u);
    }

    st->reset = config_text(st->reset_cfg, NULL);
    const char *bt = st->bytopic && *st->bytopic ? st->bytopic : "all";
    if (!type_is(bt, "all") && !type_is(bt, "topic")) {
        return eddy_err_set(err, EDDY_EINVAL, "bytopic '%s': expected all or topic", bt);
    }
    st->by_topic = type_is(bt, "topic");
    const char *topic = st->topic && *st->topic ? st->topic : "topic";
    eddy_err perr;
    eddy_err_clear(&perr);
    if (eddy_path_parse(topic, &st->topic_path, &perr) != EDDY_OK) {
        return eddy_err_set(err, EDDY_EINVAL, "topic '%s': %s", topic, perr.msg);
    }
    return EDDY_OK;
}

static void trigger_release(struct trigger_state *st)
{
    json_decref(st->op1);
    json_decref(st->op2);
    eddy_free(st->reset);
    st->op1 = st->op2 = NULL;
    st->reset = NULL;
}

static int trigger_validate(const eddy_node_type *type, const json_t *config, void *state,
                            eddy_err *err)
{
    struct trigger_state *st = state;
    int rc = trigger_configure(st, err);
    trigger_release(st);
    return rc;
}

static int trigger_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct trigger_state *st = state;
    int rc = trigger_configure(st, err);
    if (rc != EDDY_OK) {
        trigger_release(st);
        return rc;
    }
    st->second = eddy_node_output_count(node) == 2;
    return EDDY_OK;
}

static int trigger_close(eddy_node *node, void *state, bool removed)
{
    struct trigger_state *st = state;
    for (size_t i = 0; i < st->nbuckets; i++) {
        while (st->buckets[i]) {
            entry_remove(node, st->buckets[i], false);
        }
    }
    eddy_free(st->buckets);
    st->buckets = NULL;
    st->nbuckets = 0;
    trigger_release(st);
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_trigger = {
    .name = "trigger",
    .inputs = 1,
    .outputs = -1,
    .flags = EDDY_NODE_ASYNC_DONE,
    .props = trigger_props,
    .state_size = sizeof(struct trigger_state),
    .help = "On a message sends op1 at once, then op2 after 'duration' unless reset (by "
            "msg.reset or a payload equal to 'reset'); messages in between are ignored, or "
            "restart the time with 'extend'. A duration of 0 waits for a reset; a negative "
            "one repeats op1. Triggers can be kept per topic. Values are typed values, the "
            "message's payload (pay), its latest payload (payl), nothing (nul), or "
            "Mustache {{variables}} of the message.",
    .validate = trigger_validate,
    .setup = trigger_setup,
    .input = trigger_input,
    .close = trigger_close,
};
