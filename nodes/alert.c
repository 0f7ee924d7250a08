/* alert.c: eddy's "alert" node: threshold alerts per key on a numeric message property.
 * Three conditions, each optional and tracked on its own per key: above 'high', below
 * 'low', and a rate of change faster than 'rateOfChange' units per second between two
 * consecutive readings of the key. A condition is raised once it has held for
 * 'minDurationMs' of message time, and cleared with hysteresis; it is raised once per
 * episode. Node-RED has no such node; eddy defines it (nodes/README.md, "alert").
 *
 * States of one condition of one key and the reading that moves it (in alert_step):
 *
 *   idle --reading meets the raise test--> pending (episode starts at its time)
 *   pending --raise test fails--> idle (nothing sent)
 *   pending --held for minDurationMs (message time)--> raised (sends "raised")
 *   raised --reading meets the clear test--> idle (sends "cleared")
 *
 * Raise and clear tests: high: v > high / v < high - hysteresis; low: v < low /
 * v > low + hysteresis; rate: |dv/dt| > rateOfChange / |dv/dt| <= rateOfChange.
 *
 * Invariants:
 *   1. 'active' is the number of raised conditions over all keys.
 *   2. A key is in memory (and, with a store, has a record) while one of its conditions is
 *      not idle, or while the rate condition needs its last reading.
 *   3. With a store, a key's record is rewritten in the turn it changes (it commits with
 *      that turn's group). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "event_msg.h"
#include "keyed.h"
#include "mem.h"
#include "msg.h"
#include "node.h"
#include "store.h"

#define ALERT_STATE_VERSION 1

enum { COND_HIGH, COND_LOW, COND_RATE, COND_COUNT };
enum { PHASE_IDLE, PHASE_PENDING, PHASE_RAISED };

static const char *const cond_names[] = {"high", "low", "rate"};

typedef struct cond {
    int phase;     /* PHASE_* */
    int64_t since; /* ms: message time the episode began (pending, raised) */
} cond;

typedef struct akey {
    const char *name; /* borrowed from its map entry */
    size_t name_len;
    cond c[COND_COUNT];
    bool has_prev;  /* rate: a previous reading is known */
    double prev_v;  /* rate: the previous reading */
    int64_t prev_t; /* rate: its time, ms */
} akey;

struct alert_state {
    /* properties, filled by the engine */
    const char *key_property;
    const char *property;
    const char *time_property;
    const json_t *high;
    const json_t *low;
    double hysteresis;
    double min_duration_ms;
    const json_t *rate;
    long max_keys;
    bool persist;

    /* parsed */
    bool on[COND_COUNT];
    double threshold[COND_COUNT];
    eddy_path key_path, value_path, time_path;

    /* run time */
    eddy_node *node;
    eddy_store *store; /* NULL: memory only */
    keyed_map keys;
    size_t active;    /* invariant 1 */
    bool limit_hit;   /* a new key was turned away and none has gone since */
    size_t shown;     /* active count in the status; (size_t)-1: none shown */
    bool shown_limit; /* the status shows the key limit */
};

static const eddy_prop alert_props[] = {
    {"keyProperty", EDDY_PROP_STR, "\"\"", false, offsetof(struct alert_state, key_property),
     "message property holding the key (payload.deviceId); empty: one key for all messages", NULL},
    {"property", EDDY_PROP_STR, "\"payload\"", false, offsetof(struct alert_state, property),
     "message property with the numeric reading", NULL},
    {"timeProperty", EDDY_PROP_STR, "\"\"", false, offsetof(struct alert_state, time_property),
     "message property with the reading's time (ms since the epoch or ISO 8601); empty: the "
     "arrival time",
     NULL},
    {"high", EDDY_PROP_JSON, NULL, false, offsetof(struct alert_state, high),
     "raise when the reading is above this; empty: no high alert", NULL},
    {"low", EDDY_PROP_JSON, NULL, false, offsetof(struct alert_state, low),
     "raise when the reading is below this; empty: no low alert", NULL},
    {"hysteresis", EDDY_PROP_NUM, "0", false, offsetof(struct alert_state, hysteresis),
     "a raised high alert clears below high - hysteresis, a low one above low + hysteresis", NULL},
    {"minDurationMs", EDDY_PROP_NUM, "0", false, offsetof(struct alert_state, min_duration_ms),
     "the condition must hold this long (message time) before the alert is raised", NULL},
    {"rateOfChange", EDDY_PROP_JSON, NULL, false, offsetof(struct alert_state, rate),
     "raise when the reading changes faster than this many units per second between two "
     "consecutive readings of the key; empty: no rate alert",
     NULL},
    {"maxKeys", EDDY_PROP_INT, "10000", false, offsetof(struct alert_state, max_keys),
     "most keys tracked at once; readings of new keys beyond it are errors", NULL},
    {"persist", EDDY_PROP_BOOL, "true", false, offsetof(struct alert_state, persist),
     "keep alert states in the event store so they survive a restart (needs a data folder)", NULL},
    {0},
};

/* ---- configuration ---- */

/* An optional number property: absent, null or "" is off. */
static int optional_number(const json_t *v, const char *name, bool *on, double *out, eddy_err *err)
{
    *on = false;
    if (!v || json_is_null(v) || (json_is_string(v) && json_string_length(v) == 0))
        return EDDY_OK;
    if (!keyed_number(v, out))
        return eddy_err_set(err, EDDY_EINVAL, "%s must be a number or empty", name);
    *on = true;
    return EDDY_OK;
}

static int alert_parse(struct alert_state *st, eddy_err *err)
{
    int rc;
    if ((rc = optional_number(st->high, "high", &st->on[COND_HIGH], &st->threshold[COND_HIGH],
                              err)) ||
        (rc = optional_number(st->low, "low", &st->on[COND_LOW], &st->threshold[COND_LOW], err)) ||
        (rc = optional_number(st->rate, "rateOfChange", &st->on[COND_RATE],
                              &st->threshold[COND_RATE], err)))
        return rc;
    if (!st->on[COND_HIGH] && !st->on[COND_LOW] && !st->on[COND_RATE])
        return eddy_err_set(err, EDDY_EINVAL, "set at least one of high, low and rateOfChange");
    if (st->on[COND_HIGH] && st->on[COND_LOW] &&
        st->threshold[COND_LOW] >= st->threshold[COND_HIGH])
        return eddy_err_set(err, EDDY_EINVAL, "low must be below high");
    if (st->on[COND_RATE] && st->threshold[COND_RATE] < 0)
        return eddy_err_set(err, EDDY_EINVAL, "rateOfChange must not be negative");
    if (st->hysteresis < 0)
        return eddy_err_set(err, EDDY_EINVAL, "hysteresis must not be negative");
    if (st->min_duration_ms < 0)
        return eddy_err_set(err, EDDY_EINVAL, "minDurationMs must not be negative");
    if (st->max_keys < 1)
        return eddy_err_set(err, EDDY_EINVAL, "maxKeys must be at least 1");
    if (!*st->property)
        return eddy_err_set(err, EDDY_EINVAL, "property: a message property is needed");
    if ((rc = keyed_parse_path(st->property, "property", &st->value_path, err)) ||
        (*st->key_property &&
         (rc = keyed_parse_path(st->key_property, "keyProperty", &st->key_path, err))) ||
        (*st->time_property &&
         (rc = keyed_parse_path(st->time_property, "timeProperty", &st->time_path, err))))
        return rc;
    return EDDY_OK;
}

static int alert_validate(const eddy_node_type *type, const json_t *config, void *state,
                          eddy_err *err)
{
    struct alert_state copy = *(struct alert_state *)state;
    return alert_parse(&copy, err);
}

/* ---- status and the store ---- */

static void show_status(struct alert_state *st)
{
    if (st->active == st->shown && st->limit_hit == st->shown_limit)
        return;
    char text[96];
    if (st->limit_hit) {
        snprintf(text, sizeof(text), "key limit %ld reached, %zu active", st->max_keys, st->active);
        eddy_node_set_status(st->node, "red", "ring", text);
    } else {
        snprintf(text, sizeof(text), "%zu active%s", st->active, st->store ? "" : " (in memory)");
        eddy_node_set_status(st->node, st->active ? "red" : "green", "dot", text);
    }
    st->shown = st->active;
    st->shown_limit = st->limit_hit;
}

static void key_save(struct alert_state *st, akey *k)
{
    if (!st->store)
        return;
    json_t *c = json_array();
    for (int i = 0; i < COND_COUNT; i++)
        json_array_append_new(c, json_pack("[i,I]", k->c[i].phase, (json_int_t)k->c[i].since));
    json_t *rec = json_pack("{s:i,s:o}", "v", ALERT_STATE_VERSION, "c", c);
    if (rec && k->has_prev)
        json_object_set_new(rec, "prev", json_pack("[f,I]", k->prev_v, (json_int_t)k->prev_t));
    keyed_state_put(st->node, st->store, k->name, k->name_len, rec, "alerts");
}

/* Saves 'k', or forgets it when nothing of it needs keeping (invariant 2). */
static void key_settle(struct alert_state *st, akey *k)
{
    bool keep = st->on[COND_RATE] && k->has_prev;
    for (int i = 0; i < COND_COUNT; i++)
        keep |= k->c[i].phase != PHASE_IDLE;
    if (keep) {
        key_save(st, k);
        return;
    }
    eddy_err err;
    if (st->store &&
        eddy_store_state_del(st->store, eddy_node_id(st->node), k->name, k->name_len, &err))
        eddy_node_error(st->node, NULL, "cannot delete the alerts of key '%s': %s", k->name,
                        err.msg);
    keyed_del(&st->keys, k->name, k->name_len);
    eddy_free(k);
    if (st->limit_hit && st->keys.count < (size_t)st->max_keys)
        st->limit_hit = false;
}

/* ---- input ---- */

static void emit(struct alert_state *st, akey *k, int which, const char *state, double v, int64_t t,
                 double rate)
{
    json_t *payload = json_object();
    json_object_set_new(payload, "key", json_stringn(k->name, k->name_len));
    json_object_set_new(payload, "condition", json_string(cond_names[which]));
    json_object_set_new(payload, "state", json_string(state));
    json_object_set_new(payload, "value", eddy_json_number(v));
    json_object_set_new(payload, "threshold", eddy_json_number(st->threshold[which]));
    if (which == COND_RATE)
        json_object_set_new(payload, "rate", eddy_json_number(rate));
    json_object_set_new(payload, "time", json_integer(t));
    json_object_set_new(payload, "since", json_integer(k->c[which].since));
    json_t *msg = eddy_msg_new();
    json_object_set_new(msg, "topic", json_stringn(k->name, k->name_len));
    json_object_set_new(msg, "payload", payload);
    eddy_node_send(st->node, 0, msg);
}

/* Moves one condition with a reading: 'in' = the raise test holds, 'out' = the clear
 * test holds (see the state diagram above). */
static void alert_step(struct alert_state *st, akey *k, int which, bool in, bool out, double v,
                       int64_t t, double rate)
{
    cond *c = &k->c[which];
    if (c->phase == PHASE_RAISED) {
        if (out) {
            emit(st, k, which, "cleared", v, t, rate);
            c->phase = PHASE_IDLE;
            st->active--;
        }
        return;
    }
    if (!in) {
        c->phase = PHASE_IDLE;
        return;
    }
    if (c->phase == PHASE_IDLE) {
        c->phase = PHASE_PENDING;
        c->since = t;
    }
    if ((double)(t - c->since) >= st->min_duration_ms) {
        c->phase = PHASE_RAISED;
        st->active++;
        emit(st, k, which, "raised", v, t, rate);
    }
}

static void alert_input(eddy_node *node, void *state, json_t *msg)
{
    struct alert_state *st = state;
    char kbuf[KEYED_KEY_MAX + 1] = "";
    size_t klen = 0;
    const char *why = NULL;
    double v;
    int64_t t = eddy_loop_wall(eddy_node_loop(node));
    if (*st->key_property &&
        !keyed_key_text(eddy_path_get(msg, &st->key_path), kbuf, &klen, &why)) {
        eddy_node_error(node, msg, "%s", why);
    } else if (*st->time_property && !event_msg_time(eddy_path_get(msg, &st->time_path), &t)) {
        eddy_node_error(node, msg,
                        "the reading's time is missing or not a time (ms since the epoch or "
                        "ISO 8601)");
    } else if (!keyed_number(eddy_path_get(msg, &st->value_path), &v)) {
        eddy_node_error(node, msg, "the reading '%s' is missing or not a number", st->property);
    } else {
        akey *k = keyed_get(&st->keys, kbuf, klen);
        keyed_entry *e = NULL;
        if (!k && st->keys.count >= (size_t)st->max_keys) {
            st->limit_hit = true;
            eddy_node_error(node, msg, "key limit reached (maxKeys %ld): key '%s' is not tracked",
                            st->max_keys, kbuf);
        } else if (!k && (!(k = eddy_calloc(1, sizeof(*k))) ||
                          !(e = keyed_put(&st->keys, kbuf, klen, k)))) {
            eddy_free(k);
            eddy_node_error(node, msg, "out of memory");
        } else {
            if (e) {
                k->name = e->key;
                k->name_len = klen;
            }
            double hi = st->threshold[COND_HIGH], lo = st->threshold[COND_LOW];
            if (st->on[COND_HIGH])
                alert_step(st, k, COND_HIGH, v > hi, v < hi - st->hysteresis, v, t, 0);
            if (st->on[COND_LOW])
                alert_step(st, k, COND_LOW, v<lo, v> lo + st->hysteresis, v, t, 0);
            if (st->on[COND_RATE]) {
                if (k->has_prev && t > k->prev_t) {
                    double rate = (v - k->prev_v) * 1000.0 / (double)(t - k->prev_t);
                    bool fast = fabs(rate) > st->threshold[COND_RATE];
                    alert_step(st, k, COND_RATE, fast, !fast, v, t, rate);
                }
                if (!k->has_prev || t > k->prev_t) {
                    k->has_prev = true;
                    k->prev_v = v;
                    k->prev_t = t;
                }
            }
            key_settle(st, k);
        }
    }
    show_status(st);
    json_decref(msg);
}

/* ---- life cycle ---- */

static int load_key(const char *key, size_t key_len, const void *value, size_t len, void *data)
{
    struct alert_state *st = data;
    eddy_err err;
    json_t *rec = eddy_json_loadb(value, len, &err);
    json_t *c = json_object_get(rec, "c");
    if (!json_is_array(c) || json_array_size(c) != COND_COUNT) {
        json_decref(rec);
        return 0; /* damaged: left out, and rewritten or deleted with the next reading */
    }
    akey *k = eddy_calloc(1, sizeof(*k));
    keyed_entry *e = k ? keyed_put(&st->keys, key, key_len, k) : NULL;
    if (!e) {
        eddy_free(k);
        json_decref(rec);
        return EDDY_ENOMEM;
    }
    k->name = e->key;
    k->name_len = key_len;
    for (int i = 0; i < COND_COUNT; i++) {
        json_t *ci = json_array_get(c, (size_t)i);
        int phase = (int)json_integer_value(json_array_get(ci, 0));
        /* a condition switched off since the record was written starts idle */
        k->c[i].phase = st->on[i] && phase >= PHASE_IDLE && phase <= PHASE_RAISED ? phase : 0;
        k->c[i].since = json_integer_value(json_array_get(ci, 1));
        st->active += k->c[i].phase == PHASE_RAISED;
    }
    json_t *prev = json_object_get(rec, "prev");
    if (json_is_array(prev)) {
        k->has_prev = true;
        k->prev_v = json_number_value(json_array_get(prev, 0));
        k->prev_t = json_integer_value(json_array_get(prev, 1));
    }
    json_decref(rec);
    return 0;
}

static void free_each(void *record, void *data)
{
    eddy_free(record);
}

static void alert_free(struct alert_state *st)
{
    keyed_each(&st->keys, free_each, NULL);
    keyed_free(&st->keys);
}

static int alert_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct alert_state *st = state;
    st->node = node;
    int rc = alert_parse(st, err);
    if (rc != EDDY_OK)
        return rc;
    st->store = st->persist ? eddy_node_store(node) : NULL;
    if (st->persist && !st->store)
        eddy_node_warn(node, "no event store (eddy run --data DIR): alert states are kept in "
                             "memory only and are lost on restart");
    if (st->store) {
        rc = eddy_store_state_scan(st->store, eddy_node_id(node), load_key, st, err);
        if (rc == EDDY_ENOMEM)
            rc = eddy_err_set(err, EDDY_ENOMEM, "out of memory loading stored alerts");
        if (rc != EDDY_OK) {
            alert_free(st);
            return rc;
        }
    }
    st->shown = (size_t)-1;
    show_status(st);
    return EDDY_OK;
}

static int alert_close(eddy_node *node, void *state, bool removed)
{
    struct alert_state *st = state;
    eddy_err err;
    if (removed && st->store &&
        eddy_store_state_clear(st->store, eddy_node_id(node), &err) != EDDY_OK)
        eddy_node_error(node, NULL, "cannot delete the stored alerts: %s", err.msg);
    alert_free(st);
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_alert = {
    .name = "alert",
    .inputs = 1,
    .outputs = 1,
    .flags = EDDY_NODE_STORE,
    .props = alert_props,
    .state_size = sizeof(struct alert_state),
    .help = "Threshold alerts per key on a numeric property: above high, below low (each with "
            "hysteresis) and a rate of change, each raised once per episode after holding for "
            "minDurationMs of message time. Sends msg.payload.state \"raised\" and \"cleared\". "
            "With a data folder, active alerts survive a restart; the status counts them.",
    .validate = alert_validate,
    .setup = alert_setup,
    .input = alert_input,
    .close = alert_close,
};
