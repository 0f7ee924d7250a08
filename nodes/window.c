/* window.c: eddy's "window" node: windowed aggregates per key. Each message belongs to a key
 * (a message property such as payload.deviceId) and carries one or more numeric properties;
 * per key the node keeps open windows (tumbling, hopping, session or count) with count, sum,
 * mean, min, max, first, last and the population standard deviation of each property, and
 * emits one message per window when the window closes. Node-RED has no such node; eddy
 * defines it (nodes/README.md, "window").
 *
 * Time is the event time of a message property, or the arrival time (the loop's wall
 * clock). Each key has its own watermark: the largest event time seen for it minus the
 * allowed lateness. A time window [start, end) closes when the watermark reaches its end;
 * a session closes when it reaches the last event time plus the gap; a count window when
 * it holds 'eventCount' messages. Every key also has an idle timeout on the loop's wall
 * clock: when no message arrived for that long, its open windows close anyway, so a quiet
 * device still gets its last window. In arrival-time mode the watermark follows the wall
 * clock, so windows close on time with no message.
 *
 * Invariants:
 *   1. A key's windows are sorted by start; for the time kinds and sessions their ends
 *      are sorted too (same size, or disjoint sessions), so the windows that close are
 *      always a prefix.
 *   2. Every open window of a time kind ends after the key's watermark: windows whose end
 *      the watermark reached are emitted and freed in the same call that moved it.
 *   3. With a store, the record of a key in the store (eddy_store_state_*) is rewritten in
 *      the same loop turn as any change of the key, so it commits with that turn's group;
 *      a key with no record in memory has none in the store.
 *   4. A key's timer, when set, fires no later than its next deadline (the first window's
 *      end plus the lateness in arrival mode, the idle deadline, the moment it is
 *      forgotten); the callback recomputes and re-arms.
 *
 * A key with no open window is forgotten (its watermark with it), except in event-time
 * mode with an idle timeout: there it is kept for one more idle period after its windows
 * closed, so events of the windows just closed are still recognised as late. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_msg.h"
#include "keyed.h"
#include "mem.h"
#include "msg.h"
#include "node.h"
#include "store.h"

#define WINDOW_MAX_PROPS     16   /* numeric properties per node */
#define WINDOW_MAX_OVERLAP   1000 /* hopping: windows one event may belong to */
#define WINDOW_STATE_VERSION 1    /* of the records in the store */
#define TIME_NONE            INT64_MIN

enum window_kind { KIND_TUMBLING, KIND_HOPPING, KIND_SESSION, KIND_COUNT };

static const char *const kind_names[] = {"tumbling", "hopping", "session", "count"};

/* One property over one window: Welford's running mean and sum of squared deviations. */
typedef struct agg {
    double count; /* values (a double: it takes part in the Welford arithmetic) */
    double sum, min, max, mean, m2;
    int64_t first_t, last_t; /* event times of 'first' and 'last' */
    double first, last;
} agg;

typedef struct win {
    int64_t start;  /* ms; the first event time for sessions and count windows */
    int64_t end;    /* ms, exclusive for time kinds; session: last event + gap; count:
                       the last event time (inclusive) */
    uint64_t count; /* messages in the window */
    agg aggs[];     /* one per property */
} win;

typedef struct wkey {
    const char *name; /* the key text, borrowed from its map entry */
    size_t name_len;
    int64_t max_time;  /* largest event time seen; TIME_NONE before the first */
    int64_t last_wall; /* wall ms of the last message */
    int64_t forget_at; /* wall ms when a key without windows is forgotten; TIME_NONE */
    win **wins;        /* sorted by start (invariant 1) */
    size_t nwins, cap;
    eddy_timer *timer; /* NULL if none */
    int64_t timer_at;  /* wall ms the timer fires at */
    bool changed;      /* in 'changed' of its window_state: to be written at the commit */
} wkey;

struct window_state {
    /* properties, filled by the engine */
    const char *key_property;
    const char *properties;
    const char *kind;
    double size_ms;
    double advance_ms;
    double gap_ms;
    long event_count;
    const char *time_property;
    double lateness_ms;
    double idle_timeout_ms;
    long max_keys;
    bool persist;

    /* parsed */
    enum window_kind k;
    int nprops;
    char *names[WINDOW_MAX_PROPS]; /* aggregate names (owned) */
    eddy_path *paths;              /* nprops value paths + key path + time path (owned) */
    bool has_key, event_time;
    int64_t size, advance, gap, lateness, idle; /* ms; idle 0 = never */
    char sig[128];                              /* configuration the stored state needs */

    /* run time */
    eddy_node *node;
    eddy_store *store; /* NULL: memory only */
    keyed_map keys;
    wkey **changed; /* keys whose record the next commit writes (borrowed from 'keys') */
    size_t nchanged, changed_cap;
    bool hooked;      /* write_changed is a before-commit hook of 'store' */
    bool limit_hit;   /* a new key was turned away and none has gone since */
    size_t shown;     /* key count in the status; (size_t)-1 = nothing shown yet */
    bool shown_limit; /* the status shows the key limit */
    uint64_t late, rejected, emitted;
};

static const eddy_prop window_props[] = {
    {"keyProperty", EDDY_PROP_STR, "\"\"", false, offsetof(struct window_state, key_property),
     "message property holding the key (payload.deviceId); empty: one key for all messages", NULL},
    {"properties", EDDY_PROP_STR, "\"payload\"", false, offsetof(struct window_state, properties),
     "numeric message properties to aggregate, comma-separated (payload.temperature, "
     "payload.humidity); each is named in the output without a leading 'payload.'",
     NULL},
    {"kind", EDDY_PROP_STR, "\"tumbling\"", false, offsetof(struct window_state, kind),
     "tumbling (sizeMs), hopping (sizeMs every advanceMs), session (closes after gapMs "
     "without events) or count (every eventCount messages)",
     "|tumbling|hopping|session|count|"},
    {"sizeMs", EDDY_PROP_NUM, "60000", false, offsetof(struct window_state, size_ms),
     "tumbling and hopping: window length in ms; windows are aligned to the epoch", NULL},
    {"advanceMs", EDDY_PROP_NUM, "0", false, offsetof(struct window_state, advance_ms),
     "hopping: ms between window starts (at most sizeMs)", NULL},
    {"gapMs", EDDY_PROP_NUM, "0", false, offsetof(struct window_state, gap_ms),
     "session: a session ends after this many ms without an event of its key", NULL},
    {"eventCount", EDDY_PROP_INT, "0", false, offsetof(struct window_state, event_count),
     "count: messages per window", NULL},
    {"timeProperty", EDDY_PROP_STR, "\"\"", false, offsetof(struct window_state, time_property),
     "message property with the event time (ms since the epoch or ISO 8601); empty: the "
     "arrival time",
     NULL},
    {"allowedLatenessMs", EDDY_PROP_NUM, "0", false, offsetof(struct window_state, lateness_ms),
     "how far behind the largest event time of its key an event may be; the watermark is "
     "that largest time minus this",
     NULL},
    {"idleTimeoutMs", EDDY_PROP_NUM, "0", false, offsetof(struct window_state, idle_timeout_ms),
     "close a key's windows after this many ms (wall clock) without a message of that key; "
     "0: window length (or gap) plus lateness, none for count windows; -1: never",
     NULL},
    {"maxKeys", EDDY_PROP_INT, "10000", false, offsetof(struct window_state, max_keys),
     "most keys with open windows; messages of new keys beyond it go to output 2", NULL},
    {"persist", EDDY_PROP_BOOL, "true", false, offsetof(struct window_state, persist),
     "keep open windows in the event store so they survive a restart (needs a data folder)", NULL},
    {0},
};

/* ---- configuration ---- */

static void free_names(struct window_state *st)
{
    for (int i = 0; i < WINDOW_MAX_PROPS; i++) {
        eddy_free(st->names[i]);
        st->names[i] = NULL;
    }
    eddy_free(st->paths);
    st->paths = NULL;
}

/* Parses the properties into 'st' (names and paths allocated: free_names). */
static int window_parse(struct window_state *st, eddy_err *err)
{
    size_t i;
    for (i = 0; i < sizeof(kind_names) / sizeof(kind_names[0]); i++)
        if (strcmp(st->kind, kind_names[i]) == 0)
            break;
    st->k = (enum window_kind)i;
    st->size = (int64_t)st->size_ms;
    st->advance = (int64_t)st->advance_ms;
    st->gap = (int64_t)st->gap_ms;
    st->lateness = (int64_t)st->lateness_ms;
    if ((st->k == KIND_TUMBLING || st->k == KIND_HOPPING) && st->size < 1)
        return eddy_err_set(err, EDDY_EINVAL, "sizeMs must be at least 1 ms");
    if (st->k == KIND_HOPPING) {
        if (st->advance < 1 || st->advance > st->size)
            return eddy_err_set(err, EDDY_EINVAL,
                                "advanceMs must be between 1 ms and sizeMs (%lld)",
                                (long long)st->size);
        if ((st->size + st->advance - 1) / st->advance > WINDOW_MAX_OVERLAP)
            return eddy_err_set(err, EDDY_EINVAL, "sizeMs / advanceMs is over %d windows per event",
                                WINDOW_MAX_OVERLAP);
    }
    if (st->k == KIND_SESSION && st->gap < 1)
        return eddy_err_set(err, EDDY_EINVAL, "gapMs must be at least 1 ms for session windows");
    if (st->k == KIND_COUNT && st->event_count < 1)
        return eddy_err_set(err, EDDY_EINVAL, "eventCount must be at least 1 for count windows");
    if (st->lateness < 0)
        return eddy_err_set(err, EDDY_EINVAL, "allowedLatenessMs must not be negative");
    if (st->max_keys < 1)
        return eddy_err_set(err, EDDY_EINVAL, "maxKeys must be at least 1");
    if (st->idle_timeout_ms < 0)
        st->idle = 0;
    else if (st->idle_timeout_ms > 0)
        st->idle = (int64_t)st->idle_timeout_ms;
    else
        st->idle = st->k == KIND_COUNT     ? 0
                   : st->k == KIND_SESSION ? st->gap + st->lateness
                                           : st->size + st->lateness;
    st->has_key = *st->key_property != '\0';
    st->event_time = *st->time_property != '\0';

    st->paths = eddy_calloc(WINDOW_MAX_PROPS + 2, sizeof(eddy_path));
    if (!st->paths)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    int rc;
    if (st->has_key &&
        (rc = keyed_parse_path(st->key_property, "keyProperty", &st->paths[WINDOW_MAX_PROPS], err)))
        return rc;
    if (st->event_time && (rc = keyed_parse_path(st->time_property, "timeProperty",
                                                 &st->paths[WINDOW_MAX_PROPS + 1], err)))
        return rc;
    st->nprops = 0;
    const char *p = st->properties;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && t[-1] == ' ')
            t--;
        if (t > p) {
            if (st->nprops == WINDOW_MAX_PROPS)
                return eddy_err_set(err, EDDY_EINVAL, "properties: more than %d", WINDOW_MAX_PROPS);
            char *text = eddy_strndup(p, (size_t)(t - p));
            if (!text)
                return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
            const char *path = keyed_path(text);
            rc = keyed_parse_path(path, "properties", &st->paths[st->nprops], err);
            const char *name = strncmp(path, "payload.", 8) == 0 ? path + 8 : path;
            memmove(text, name, strlen(name) + 1);
            st->names[st->nprops++] = text;
            if (rc)
                return rc;
            for (int j = 0; j < st->nprops - 1; j++)
                if (strcmp(st->names[j], text) == 0)
                    return eddy_err_set(err, EDDY_EINVAL,
                                        "properties: '%s' is named twice in the output", text);
        }
        p = e;
    }
    if (st->nprops == 0)
        return eddy_err_set(err, EDDY_EINVAL, "properties: at least one property is needed");
    /* What a stored window means depends on these; other settings may change freely. */
    snprintf(st->sig, sizeof(st->sig), "%s/%lld/%lld/%lld/%ld/%d/%s", kind_names[st->k],
             (long long)st->size, (long long)st->advance, (long long)st->gap, st->event_count,
             st->nprops, st->event_time ? "event" : "arrival");
    return EDDY_OK;
}

static int window_validate(const eddy_node_type *type, const json_t *config, void *state,
                           eddy_err *err)
{
    struct window_state copy = *(struct window_state *)state;
    memset(copy.names, 0, sizeof(copy.names));
    copy.paths = NULL;
    int rc = window_parse(&copy, err);
    free_names(&copy);
    return rc;
}

/* ---- aggregates ---- */

static void agg_add(agg *a, double v, int64_t t)
{
    if (a->count == 0) {
        *a = (agg){1, v, v, v, v, 0, t, t, v, v};
        return;
    }
    a->count += 1;
    a->sum += v;
    if (v < a->min)
        a->min = v;
    if (v > a->max)
        a->max = v;
    double d = v - a->mean;
    a->mean += d / a->count;
    a->m2 += d * (v - a->mean);
    if (t < a->first_t) { /* ties keep the earlier arrival */
        a->first_t = t;
        a->first = v;
    }
    if (t >= a->last_t) { /* ties take the later arrival */
        a->last_t = t;
        a->last = v;
    }
}

/* Folds 'b' into 'a' (sessions merging): Chan et al.'s pairwise update. 'b' came later
 * in arrival for tie purposes. */
static void agg_merge(agg *a, const agg *b)
{
    if (b->count == 0)
        return;
    if (a->count == 0) {
        *a = *b;
        return;
    }
    double n = a->count + b->count, d = b->mean - a->mean;
    a->m2 += b->m2 + d * d * a->count * b->count / n;
    a->mean += d * b->count / n;
    a->count = n;
    a->sum += b->sum;
    a->min = b->min < a->min ? b->min : a->min;
    a->max = b->max > a->max ? b->max : a->max;
    if (b->first_t < a->first_t) {
        a->first_t = b->first_t;
        a->first = b->first;
    }
    if (b->last_t >= a->last_t) {
        a->last_t = b->last_t;
        a->last = b->last;
    }
}

static json_t *agg_json(const agg *a)
{
    if (a->count == 0)
        return json_pack("{s:i,s:i,s:n,s:n,s:n,s:n,s:n,s:n}", "count", 0, "sum", 0, "avg", "min",
                         "max", "first", "last", "stddev");
    json_t *o = json_object();
    json_object_set_new(o, "count", eddy_json_number(a->count));
    json_object_set_new(o, "sum", eddy_json_number(a->sum));
    json_object_set_new(o, "avg", eddy_json_number(a->mean));
    json_object_set_new(o, "min", eddy_json_number(a->min));
    json_object_set_new(o, "max", eddy_json_number(a->max));
    json_object_set_new(o, "first", eddy_json_number(a->first));
    json_object_set_new(o, "last", eddy_json_number(a->last));
    json_object_set_new(o, "stddev", eddy_json_number(sqrt(a->m2 / a->count)));
    return o;
}

/* ---- windows of a key ---- */

static win *win_new(struct window_state *st, int64_t start, int64_t end)
{
    win *w = eddy_calloc(1, sizeof(win) + (size_t)st->nprops * sizeof(agg));
    if (w) {
        w->start = start;
        w->end = end;
    }
    return w;
}

/* Inserts 'w' keeping the windows sorted by start (invariant 1). false on out-of-memory. */
static bool win_insert(wkey *k, win *w)
{
    if (k->nwins == k->cap) {
        size_t cap = k->cap ? k->cap * 2 : 4;
        win **p = eddy_realloc(k->wins, cap * sizeof(*p));
        if (!p)
            return false;
        k->wins = p;
        k->cap = cap;
    }
    size_t i = k->nwins;
    while (i > 0 && k->wins[i - 1]->start > w->start) {
        k->wins[i] = k->wins[i - 1];
        i--;
    }
    k->wins[i] = w;
    k->nwins++;
    return true;
}

static void win_remove(wkey *k, size_t i)
{
    eddy_free(k->wins[i]);
    memmove(&k->wins[i], &k->wins[i + 1], (k->nwins - i - 1) * sizeof(win *));
    k->nwins--;
}

/* The window of 'k' with exactly this start, or a new one. NULL on out-of-memory. */
static win *win_at(struct window_state *st, wkey *k, int64_t start, int64_t end)
{
    for (size_t i = 0; i < k->nwins; i++)
        if (k->wins[i]->start == start)
            return k->wins[i];
    win *w = win_new(st, start, end);
    if (w && !win_insert(k, w)) {
        eddy_free(w);
        w = NULL;
    }
    return w;
}

static void win_add(struct window_state *st, win *w, const double *vals, const bool *has, int64_t t)
{
    w->count++;
    for (int i = 0; i < st->nprops; i++)
        if (has[i])
            agg_add(&w->aggs[i], vals[i], t);
}

static int64_t floor_to(int64_t t, int64_t step)
{
    int64_t r = t % step;
    return r < 0 ? t - r - step : t - r;
}

static int64_t watermark(const struct window_state *st, const wkey *k)
{
    return k->max_time == TIME_NONE ? TIME_NONE : k->max_time - st->lateness;
}

/* ---- emitting ---- */

static void emit(struct window_state *st, wkey *k, win *w, const char *closed_by)
{
    json_t *msg = eddy_msg_new();
    json_t *aggs = json_object();
    for (int i = 0; i < st->nprops; i++)
        json_object_set_new(aggs, st->names[i], agg_json(&w->aggs[i]));
    json_t *payload = json_object();
    json_object_set_new(payload, "key", json_stringn(k->name, k->name_len));
    json_object_set_new(payload, "kind", json_string(kind_names[st->k]));
    json_object_set_new(payload, "start", json_integer(w->start));
    json_object_set_new(payload, "end", json_integer(w->end));
    json_object_set_new(payload, "count", json_integer((json_int_t)w->count));
    json_object_set_new(payload, "closedBy", json_string(closed_by));
    json_object_set_new(payload, "aggregates", aggs);
    json_object_set_new(msg, "topic", json_stringn(k->name, k->name_len));
    json_object_set_new(msg, "payload", payload);
    st->emitted++;
    eddy_node_send(st->node, 0, msg);
}

/* Emits and frees the windows the watermark 'wm' has passed (a prefix: invariant 1). */
static void close_passed(struct window_state *st, wkey *k, int64_t wm)
{
    if (st->k == KIND_COUNT || wm == TIME_NONE)
        return;
    while (k->nwins > 0 && k->wins[0]->end <= wm) {
        emit(st, k, k->wins[0], st->k == KIND_SESSION ? "gap" : "watermark");
        win_remove(k, 0);
    }
}

/* The idle timeout: emits every window, and moves the watermark (event time) past them so
 * that events for them are late from now on. */
static void close_idle(struct window_state *st, wkey *k)
{
    int64_t end = TIME_NONE;
    while (k->nwins > 0) {
        if (k->wins[0]->end > end)
            end = k->wins[0]->end;
        emit(st, k, k->wins[0], "idle");
        win_remove(k, 0);
    }
    if (st->event_time && st->k != KIND_COUNT && end != TIME_NONE &&
        end + st->lateness > k->max_time)
        k->max_time = end + st->lateness;
}

/* ---- status ---- */

/* Shows the key count, or the key limit while it turns keys away; only on a change. */
static void show_status(struct window_state *st)
{
    char text[96];
    size_t n = st->keys.count;
    if (n == st->shown && st->limit_hit == st->shown_limit)
        return;
    if (st->limit_hit) {
        snprintf(text, sizeof(text), "key limit %ld reached", st->max_keys);
        eddy_node_set_status(st->node, "red", "ring", text);
    } else {
        snprintf(text, sizeof(text), "%zu key%s%s", n, n == 1 ? "" : "s",
                 st->store ? "" : " (in memory)");
        eddy_node_set_status(st->node, "green", "dot", text);
    }
    st->shown = n;
    st->shown_limit = st->limit_hit;
}

/* ---- the store ---- */

static void key_write(struct window_state *st, wkey *k)
{
    json_t *wins = json_array();
    for (size_t i = 0; i < k->nwins; i++) {
        win *w = k->wins[i];
        json_t *aggs = json_array();
        for (int j = 0; j < st->nprops; j++) {
            agg *a = &w->aggs[j];
            json_array_append_new(aggs, json_pack("[f,f,f,f,f,f,I,f,I,f]", a->count, a->sum, a->min,
                                                  a->max, a->mean, a->m2, (json_int_t)a->first_t,
                                                  a->first, (json_int_t)a->last_t, a->last));
        }
        json_array_append_new(wins, json_pack("[I,I,I,o]", (json_int_t)w->start, (json_int_t)w->end,
                                              (json_int_t)w->count, aggs));
    }
    json_t *rec =
        json_pack("{s:i,s:s,s:I,s:I,s:I,s:o}", "v", WINDOW_STATE_VERSION, "sig", st->sig, "maxTime",
                  (json_int_t)k->max_time, "lastWall", (json_int_t)k->last_wall, "forgetAt",
                  (json_int_t)k->forget_at, "wins", wins);
    keyed_state_put(st->node, st->store, k->name, k->name_len, rec, "windows");
}

/* Writes the record of every changed key into the group about to commit: under a burst a
 * group holds many readings of each key, and the record (the open windows, dozens of
 * numbers) is written once per group instead of once per reading. */
static void write_changed(eddy_store *store, void *data)
{
    (void)store;
    struct window_state *st = data;
    for (size_t i = 0; i < st->nchanged; i++) {
        st->changed[i]->changed = false;
        key_write(st, st->changed[i]);
    }
    st->nchanged = 0;
}

/* Marks 'k' changed: its record is written when the group commits (write_changed). */
static void key_save(struct window_state *st, wkey *k)
{
    if (!st->store || k->changed)
        return;
    if (st->nchanged == st->changed_cap) {
        size_t cap = st->changed_cap ? st->changed_cap * 2 : 16;
        wkey **changed = eddy_realloc(st->changed, cap * sizeof(*changed));
        if (!changed) {
            key_write(st, k); /* now, then, into the open group */
            return;
        }
        st->changed = changed;
        st->changed_cap = cap;
    }
    eddy_err err;
    if (st->nchanged == 0 && eddy_store_open_group(st->store, &err) != EDDY_OK) {
        eddy_node_error(st->node, NULL, "cannot save the windows of key '%s': %s", k->name,
                        err.msg);
        return;
    }
    st->changed[st->nchanged++] = k;
    k->changed = true;
}

static void key_unmark(struct window_state *st, wkey *k)
{
    for (size_t i = 0; k->changed && i < st->nchanged; i++) {
        if (st->changed[i] == k) {
            st->changed[i] = st->changed[--st->nchanged];
            k->changed = false;
        }
    }
}

static void key_free(wkey *k)
{
    for (size_t i = 0; i < k->nwins; i++)
        eddy_free(k->wins[i]);
    eddy_free(k->wins);
    eddy_free(k);
}

/* Forgets 'k': frees it and deletes its record (its timer must be stopped already). */
static void key_forget(struct window_state *st, wkey *k)
{
    eddy_err err;
    key_unmark(st, k);
    if (st->store &&
        eddy_store_state_del(st->store, eddy_node_id(st->node), k->name, k->name_len, &err))
        eddy_node_error(st->node, NULL, "cannot delete the state of key '%s': %s", k->name,
                        err.msg);
    keyed_del(&st->keys, k->name, k->name_len);
    key_free(k);
    if (st->limit_hit && st->keys.count < (size_t)st->max_keys)
        st->limit_hit = false;
    show_status(st);
}

/* ---- timers ---- */

/* The wall time 'k' needs attention next (invariant 4), TIME_NONE if never. */
static int64_t key_deadline(const struct window_state *st, const wkey *k)
{
    if (k->nwins == 0)
        return k->forget_at;
    int64_t at = TIME_NONE;
    if (st->idle > 0)
        at = k->last_wall + st->idle;
    if (!st->event_time && st->k != KIND_COUNT) {
        int64_t close = k->wins[0]->end + st->lateness;
        if (at == TIME_NONE || close < at)
            at = close;
    }
    return at;
}

static int64_t key_timer_cb(eddy_node *node, void *state, void *data);

static void key_arm(struct window_state *st, wkey *k)
{
    int64_t at = key_deadline(st, k);
    if (at == TIME_NONE) {
        if (k->timer)
            eddy_node_timer_stop(st->node, k->timer);
        k->timer = NULL;
        return;
    }
    if (k->timer && k->timer_at <= at)
        return; /* fires first and re-arms */
    if (k->timer)
        eddy_node_timer_stop(st->node, k->timer);
    int64_t now = eddy_loop_wall(eddy_node_loop(st->node));
    k->timer = eddy_node_timer_start(st->node, at > now ? at - now : 0, key_timer_cb, k, NULL);
    k->timer_at = at;
    if (!k->timer)
        eddy_node_error(st->node, NULL, "cannot start a timer for key '%s'", k->name);
}

/* After a change of 'k': forgets it when nothing is left to remember, else saves it.
 * Returns false when 'k' was freed. */
static bool key_settle(struct window_state *st, wkey *k, int64_t now)
{
    if (k->nwins == 0) {
        bool keep = st->event_time && st->k != KIND_COUNT && st->idle > 0;
        if (!keep || (k->forget_at != TIME_NONE && now >= k->forget_at)) {
            if (k->timer)
                eddy_node_timer_stop(st->node, k->timer);
            k->timer = NULL;
            key_forget(st, k);
            return false;
        }
        if (k->forget_at == TIME_NONE)
            k->forget_at = now + st->idle;
    } else {
        k->forget_at = TIME_NONE;
    }
    key_save(st, k);
    key_arm(st, k);
    return true;
}

static int64_t key_timer_cb(eddy_node *node, void *state, void *data)
{
    struct window_state *st = state;
    wkey *k = data;
    k->timer = NULL; /* this firing ends it; key_settle arms a new one if needed */
    int64_t now = eddy_loop_wall(eddy_node_loop(node));
    if (!st->event_time && st->k != KIND_COUNT)
        close_passed(st, k, now - st->lateness);
    if (k->nwins > 0 && st->idle > 0 && now >= k->last_wall + st->idle)
        close_idle(st, k);
    key_settle(st, k, now);
    return EDDY_TIMER_STOP;
}

/* ---- input ---- */

static void reject(struct window_state *st, json_t *msg, const char *code, const char *reason)
{
    json_object_set_new(msg, "reason", json_string(reason));
    json_object_set_new(msg, "rejected", json_string(code));
    st->rejected++;
    eddy_node_send(st->node, 1, msg);
}

/* Adds the event to the session it touches (merging sessions it joins), or starts one.
 * false when it is late (it would open a session the watermark already passed). */
static bool add_session(struct window_state *st, wkey *k, int64_t t, int64_t wm, const double *vals,
                        const bool *has, bool *oom)
{
    size_t i;
    for (i = 0; i < k->nwins; i++)
        if (t >= k->wins[i]->start - st->gap && t < k->wins[i]->end)
            break;
    win *w;
    if (i == k->nwins) {
        if (wm != TIME_NONE && t + st->gap <= wm)
            return false;
        if (!(w = win_new(st, t, t + st->gap)) || !win_insert(k, w)) {
            eddy_free(w);
            *oom = true;
            return true;
        }
    } else {
        w = k->wins[i];
    }
    win_add(st, w, vals, has, t);
    if (t < w->start)
        w->start = t;
    if (t + st->gap > w->end)
        w->end = t + st->gap;
    /* re-sort this one window (its start may have moved down) and merge neighbours that
     * are now less than a gap apart */
    for (i = 0; i < k->nwins && k->wins[i] != w; i++)
        ;
    while (i > 0 && k->wins[i - 1]->start > w->start) {
        k->wins[i] = k->wins[i - 1];
        k->wins[--i] = w;
    }
    for (i = 0; i + 1 < k->nwins;) {
        win *a = k->wins[i], *b = k->wins[i + 1];
        if (b->start < a->end) {
            a->count += b->count;
            for (int j = 0; j < st->nprops; j++)
                agg_merge(&a->aggs[j], &b->aggs[j]);
            if (b->end > a->end)
                a->end = b->end;
            win_remove(k, i + 1);
        } else {
            i++;
        }
    }
    return true;
}

static void window_input(eddy_node *node, void *state, json_t *msg)
{
    struct window_state *st = state;
    int64_t now = eddy_loop_wall(eddy_node_loop(node));
    char kbuf[KEYED_KEY_MAX + 1] = "";
    size_t klen = 0;
    const char *why = NULL;
    if (st->has_key &&
        !keyed_key_text(eddy_path_get(msg, &st->paths[WINDOW_MAX_PROPS]), kbuf, &klen, &why)) {
        reject(st, msg, "key", why);
        return;
    }
    int64_t t = now;
    if (st->event_time &&
        !event_msg_time(eddy_path_get(msg, &st->paths[WINDOW_MAX_PROPS + 1]), &t)) {
        reject(st, msg, "time",
               "the event time is missing or not a time (ms since the epoch or ISO 8601)");
        return;
    }
    double vals[WINDOW_MAX_PROPS];
    bool has[WINDOW_MAX_PROPS];
    int nvals = 0;
    for (int i = 0; i < st->nprops; i++) {
        has[i] = keyed_number(eddy_path_get(msg, &st->paths[i]), &vals[i]);
        nvals += has[i];
    }
    if (nvals == 0) {
        reject(st, msg, "value", "none of the properties is a number");
        return;
    }

    wkey *k = keyed_get(&st->keys, kbuf, klen);
    if (!k) {
        if (st->keys.count >= (size_t)st->max_keys) {
            if (!st->limit_hit) {
                st->limit_hit = true;
                show_status(st);
            }
            char reason[128];
            snprintf(reason, sizeof(reason),
                     "key limit reached (maxKeys %ld): a new key is not "
                     "windowed",
                     st->max_keys);
            reject(st, msg, "maxKeys", reason);
            return;
        }
        keyed_entry *e = NULL;
        if (!(k = eddy_calloc(1, sizeof(*k))) || !(e = keyed_put(&st->keys, kbuf, klen, k))) {
            eddy_free(k);
            eddy_node_error(node, msg, "out of memory");
            json_decref(msg);
            return;
        }
        k->name = e->key;
        k->name_len = klen;
        k->max_time = TIME_NONE;
        k->forget_at = TIME_NONE;
        show_status(st);
    }

    int64_t wm = watermark(st, k);
    bool late = false, oom = false;
    switch (st->k) {
    case KIND_TUMBLING:
    case KIND_HOPPING: {
        int64_t step = st->k == KIND_TUMBLING ? st->size : st->advance;
        int64_t last = floor_to(t, step);
        late = wm != TIME_NONE && last + st->size <= wm;
        /* every window containing t that is still open: starts last, last-step, ... */
        for (int64_t s = last; !late && s > t - st->size; s -= step) {
            if (wm != TIME_NONE && s + st->size <= wm)
                break; /* this one and the earlier ones are closed */
            win *w = win_at(st, k, s, s + st->size);
            if (!w) {
                oom = true;
                break;
            }
            win_add(st, w, vals, has, t);
        }
        break;
    }
    case KIND_SESSION:
        late = !add_session(st, k, t, wm, vals, has, &oom);
        break;
    case KIND_COUNT: {
        win *w = k->nwins ? k->wins[k->nwins - 1] : NULL;
        if (!w && (!(w = win_new(st, t, t)) || !win_insert(k, w))) {
            if (w)
                eddy_free(w);
            oom = true;
            break;
        }
        win_add(st, w, vals, has, t);
        if (t < w->start)
            w->start = t;
        if (t > w->end)
            w->end = t;
        if (w->count >= (uint64_t)st->event_count) {
            emit(st, k, w, "count");
            win_remove(k, k->nwins - 1);
        }
        break;
    }
    }
    if (oom)
        eddy_node_error(node, msg, "out of memory adding to the windows of key '%s'", k->name);
    if (late) {
        st->late++;
        char reason[160], tb[32], wb[32];
        snprintf(reason, sizeof(reason), "late: event time %s is behind the watermark %s",
                 eddy_store_format_time(t, tb), eddy_store_format_time(wm, wb));
        json_object_set_new(msg, "watermark", json_integer(wm));
        json_object_set_new(msg, "eventTime", json_integer(t));
        reject(st, msg, "late", reason);
        msg = NULL;
    } else {
        if (t > k->max_time || k->max_time == TIME_NONE)
            k->max_time = t;
        k->last_wall = now;
        close_passed(st, k, watermark(st, k));
    }
    json_decref(msg);
    key_settle(st, k, now);
}

/* ---- life cycle ---- */

typedef struct load_ctx {
    struct window_state *st;
    int dropped;
    int bad;
} load_ctx;

/* One stored key: rebuilds it unless its configuration changed since. */
static int load_key(const char *key, size_t key_len, const void *value, size_t len, void *data)
{
    load_ctx *c = data;
    struct window_state *st = c->st;
    eddy_err err;
    json_t *rec = eddy_json_loadb(value, len, &err);
    const char *sig = json_string_value(json_object_get(rec, "sig"));
    json_t *wins = json_object_get(rec, "wins");
    if (!rec || !sig || !json_is_array(wins)) {
        c->bad++;
        json_decref(rec);
        return 0;
    }
    if (strcmp(sig, st->sig) != 0) {
        c->dropped++;
        json_decref(rec);
        return 0;
    }
    wkey *k = eddy_calloc(1, sizeof(*k));
    keyed_entry *e = k ? keyed_put(&st->keys, key, key_len, k) : NULL;
    if (!e) {
        eddy_free(k);
        json_decref(rec);
        return EDDY_ENOMEM;
    }
    k->name = e->key;
    k->name_len = key_len;
    k->max_time = json_integer_value(json_object_get(rec, "maxTime"));
    k->last_wall = json_integer_value(json_object_get(rec, "lastWall"));
    k->forget_at = json_integer_value(json_object_get(rec, "forgetAt"));
    size_t i;
    json_t *jw;
    json_array_foreach(wins, i, jw)
    {
        json_t *aggs = json_array_get(jw, 3);
        win *w = win_new(st, json_integer_value(json_array_get(jw, 0)),
                         json_integer_value(json_array_get(jw, 1)));
        if (!w || !win_insert(k, w)) {
            eddy_free(w);
            json_decref(rec);
            return EDDY_ENOMEM;
        }
        w->count = (uint64_t)json_integer_value(json_array_get(jw, 2));
        for (int j = 0; j < st->nprops; j++) {
            json_t *a = json_array_get(aggs, (size_t)j);
            double f[10];
            for (int m = 0; m < 10; m++)
                f[m] = json_number_value(json_array_get(a, (size_t)m));
            w->aggs[j] = (agg){f[0],
                               f[1],
                               f[2],
                               f[3],
                               f[4],
                               f[5],
                               json_integer_value(json_array_get(a, 6)),
                               json_integer_value(json_array_get(a, 8)),
                               f[7],
                               f[9]};
        }
    }
    json_decref(rec);
    return 0;
}

static void free_each(void *record, void *data)
{
    key_free(record);
}

static void window_free(struct window_state *st)
{
    if (st->hooked)
        eddy_store_remove_before_commit(st->store, write_changed, st);
    st->hooked = false;
    eddy_free(st->changed);
    st->changed = NULL;
    st->nchanged = st->changed_cap = 0;
    keyed_each(&st->keys, free_each, NULL);
    keyed_free(&st->keys);
    free_names(st);
}

static void save_each(void *record, void *data)
{
    key_save(data, record);
}

static void arm_each(void *record, void *data)
{
    key_arm(data, record);
}

static int window_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct window_state *st = state;
    st->node = node;
    int rc = window_parse(st, err);
    if (rc != EDDY_OK)
        goto fail;
    st->store = st->persist ? eddy_node_store(node) : NULL;
    if (st->persist && !st->store)
        eddy_node_warn(node, "no event store (eddy run --data DIR): open windows are kept in "
                             "memory only and are lost on restart");
    if (st->store) {
        if ((rc = eddy_store_add_before_commit(st->store, write_changed, st, err)) != EDDY_OK)
            goto fail;
        st->hooked = true;
        load_ctx c = {st, 0, 0};
        rc = eddy_store_state_scan(st->store, eddy_node_id(node), load_key, &c, err);
        if (rc == EDDY_ENOMEM)
            rc = eddy_err_set(err, EDDY_ENOMEM, "out of memory loading stored windows");
        if (rc != EDDY_OK)
            goto fail;
        if (c.dropped || c.bad) {
            eddy_node_warn(node,
                           "dropped the stored windows of %d key(s): the window settings "
                           "changed (%d) or the record was damaged (%d)",
                           c.dropped + c.bad, c.dropped, c.bad);
            /* rewrite: keep only what was loaded */
            if ((rc = eddy_store_state_clear(st->store, eddy_node_id(node), err)) != EDDY_OK)
                goto fail;
            keyed_each(&st->keys, save_each, st);
        }
        keyed_each(&st->keys, arm_each, st);
    }
    st->shown = (size_t)-1;
    show_status(st);
    return EDDY_OK;
fail:
    window_free(st);
    return rc;
}

static int window_close(eddy_node *node, void *state, bool removed)
{
    struct window_state *st = state;
    eddy_err err;
    /* Timers are stopped by the engine before close. A node deleted from the flow leaves
     * no state behind; a stopped or redeployed one keeps it for its next start. */
    if (removed && st->store &&
        eddy_store_state_clear(st->store, eddy_node_id(node), &err) != EDDY_OK)
        eddy_node_error(node, NULL, "cannot delete the stored windows: %s", err.msg);
    else if (st->store)
        write_changed(st->store, st); /* into the open group, committed after the close */
    window_free(st);
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_window = {
    .name = "window",
    .inputs = 1,
    .outputs = 2,
    .flags = EDDY_NODE_STORE,
    .props = window_props,
    .state_size = sizeof(struct window_state),
    .help = "Aggregates numeric message properties per key over tumbling, hopping, session or "
            "count windows (count, sum, avg, min, max, first, last, population stddev) and "
            "emits one message per window when it closes: by the watermark (largest event "
            "time of the key minus the allowed lateness), the gap, the count or an idle "
            "timeout. Late events and rejected messages leave on output 2 with msg.reason. "
            "With a data folder, open windows survive a restart.",
    .validate = window_validate,
    .setup = window_setup,
    .input = window_input,
    .close = window_close,
};
