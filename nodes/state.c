/* state.c: eddy's "state" node, the read side of CQRS: folds event messages (from
 * event-subscribe, event-replay or event-store outputs) into a read model kept in the
 * event store's LMDB file, one record per key, and serves it through runtime/readmodel.h
 * (GET /api/state/<model>[/<key>]). Node-RED has no such node; eddy defines it
 * (nodes/README.md, "state").
 *
 * Folds ('fold'):
 *   latest     per device: the latest reading of each sensor (by event time)
 *   actuators  per device/actuator: the acknowledged state, the pending command, the last
 *              timeout (ActuatorCommand, ActuatorAcknowledged, ActuatorTimedOut)
 *   alerts     per alert key/condition: the raised alerts (payload.state "raised" puts the
 *              record, "cleared" deletes it)
 *   daily      per device/sensor/UTC day: count, min, max, sum, avg
 *
 * On disk (node state records of owner "model:<name>", store.h):
 *
 *   key ""     -> {"v":1, "fold":"latest", "position":P, "rebuilding":false}
 *   key K      -> the record of K, JSON
 *
 * States of the node and the function behind each transition:
 *
 *   live --rebuild request (msg.rebuild, topic "rebuild", command "rebuild")--> rebuilding
 *     (st_rebuild_start: clears the model, meta.rebuilding = true)
 *   rebuilding --log read to its end (st_rebuild_turn)--> live (held messages are folded)
 *   set up with meta.rebuilding (a crash during a rebuild) --> rebuilding (from scratch)
 *
 * Invariants:
 *   1. meta.position is the largest event position folded (or read by a rebuild); an
 *      input event at or below it is skipped, so redelivery (a subscription resuming after
 *      a crash) and replays of what the model holds change nothing.
 *   2. A record and meta.position are written in the same loop turn, so they commit in one
 *      group: after a crash the model is the one of some position of the log.
 *   3. While rebuilding, input messages wait (up to MAX_HELD) and are folded afterwards in
 *      order, under invariant 1. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "event_msg.h"
#include "keyed.h"
#include "mem.h"
#include "msg.h"
#include "node.h"
#include "readmodel.h"
#include "store.h"

#define STATE_META_VERSION 1
#define MAX_HELD           100000
#define MAX_SENSORS        32
#define STATUS_DEBOUNCE_MS 200

enum { FOLD_LATEST, FOLD_ACTUATORS, FOLD_ALERTS, FOLD_DAILY };
static const char *const fold_names[] = {"latest", "actuators", "alerts", "daily"};

struct st_state {
    /* properties, filled by the engine */
    const char *model;
    const char *fold_name;
    const char *key_property;
    const char *properties;
    const char *time_property;
    const char *event_types;
    const char *stream_prefix;
    long chunk;

    /* parsed */
    int fold;
    eddy_path key_path, time_path;
    int sensor_count; /* 0: every number in the payload */
    eddy_path sensor_path[MAX_SENSORS];
    char sensor_name[MAX_SENSORS][64];
    char owner[EDDY_STORE_NAME_MAX + 1]; /* "model:<name>" */

    /* run time */
    eddy_node *node;
    eddy_store *store;
    bool registered;
    uint64_t position;   /* invariant 1 */
    uint64_t folded;     /* events that changed the model, since set-up */
    uint64_t skipped;    /* events the fold does not apply to, since set-up */
    eddy_store_iter *it; /* the running rebuild; NULL when live */
    uint64_t rb_done;    /* events read by it */
    uint64_t rb_total;   /* the log's last position when it started */
    uint64_t rb_folded;  /* of which folded */
    json_t *requests;    /* rebuild requests to answer when done (owned array) */
    json_t *held;        /* input waiting for the rebuild (owned array) */
    eddy_timer *turn;    /* next rebuild turn; NULL if none */
    eddy_timer *status;  /* pending status report; NULL if none */
    bool broken;         /* a store error stopped the model; status says so */
};

static const eddy_prop st_props[] = {
    {"model", EDDY_PROP_STR, "\"\"", true, offsetof(struct st_state, model),
     "the model's name: GET /api/state/<model>, eddy events rebuild --model <model>", NULL},
    {"fold", EDDY_PROP_STR, "\"latest\"", false, offsetof(struct st_state, fold_name),
     "latest (reading per device and sensor), actuators, alerts (active), daily (min/max/avg "
     "per sensor and UTC day)",
     "|latest|actuators|alerts|daily|"},
    {"keyProperty", EDDY_PROP_STR, "\"payload.deviceId\"", false,
     offsetof(struct st_state, key_property), "latest, daily: message property holding the device",
     NULL},
    {"properties", EDDY_PROP_STR, "\"\"", false, offsetof(struct st_state, properties),
     "latest, daily: numeric properties, comma-separated (payload.temperature); empty: every "
     "number in the payload",
     NULL},
    {"timeProperty", EDDY_PROP_STR, "\"eventTime\"", false,
     offsetof(struct st_state, time_property),
     "message property with the event time (ms or ISO 8601); empty: the arrival time", NULL},
    {"eventTypes", EDDY_PROP_STR, "\"\"", false, offsetof(struct st_state, event_types),
     "fold only these event types (msg.eventType), comma-separated; empty: every type", NULL},
    {"streamPrefix", EDDY_PROP_STR, "\"\"", false, offsetof(struct st_state, stream_prefix),
     "fold only events of streams (msg.topic) starting with this; empty: every stream", NULL},
    {"chunk", EDDY_PROP_INT, "1000", false, offsetof(struct st_state, chunk),
     "events a rebuild folds per loop turn", NULL},
    {0},
};

/* ---- configuration ---- */

static int st_parse(struct st_state *st, eddy_err *err)
{
    int rc;
    st->fold = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(st->fold_name, fold_names[i]) == 0)
            st->fold = i;
    if (st->fold < 0)
        return eddy_err_set(err, EDDY_EINVAL, "fold '%s' is not latest, actuators, alerts or daily",
                            st->fold_name);
    if (strlen(st->model) + 6 > EDDY_STORE_NAME_MAX)
        return eddy_err_set(err, EDDY_EINVAL, "model name is longer than %d bytes",
                            EDDY_STORE_NAME_MAX - 6);
    if (strchr(st->model, '/'))
        return eddy_err_set(err, EDDY_EINVAL, "model name '%s' must not hold '/'", st->model);
    snprintf(st->owner, sizeof(st->owner), "model:%s", st->model);
    if (st->chunk < 1 || st->chunk > 100000)
        return eddy_err_set(err, EDDY_EINVAL, "chunk must be 1 to 100000");
    bool readings = st->fold == FOLD_LATEST || st->fold == FOLD_DAILY;
    if (readings && !*st->key_property)
        return eddy_err_set(err, EDDY_EINVAL, "keyProperty: a message property is needed");
    if (readings && (rc = keyed_parse_path(st->key_property, "keyProperty", &st->key_path, err)))
        return rc;
    if (*st->time_property &&
        (rc = keyed_parse_path(st->time_property, "timeProperty", &st->time_path, err)))
        return rc;
    st->sensor_count = 0;
    const char *p = st->properties;
    while (readings && *p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ",");
        while (n && p[n - 1] == ' ')
            n--;
        if (!n)
            break;
        if (st->sensor_count == MAX_SENSORS)
            return eddy_err_set(err, EDDY_EINVAL, "properties: at most %d", MAX_SENSORS);
        char one[256];
        if (n >= sizeof(one))
            return eddy_err_set(err, EDDY_EINVAL, "properties: a path is too long");
        memcpy(one, p, n);
        one[n] = '\0';
        if ((rc = keyed_parse_path(one, "properties", &st->sensor_path[st->sensor_count], err)))
            return rc;
        /* named by the path without "msg." and "payload." */
        const char *name = keyed_path(one);
        if (strncmp(name, "payload.", 8) == 0)
            name += 8;
        snprintf(st->sensor_name[st->sensor_count], sizeof(st->sensor_name[0]), "%s", name);
        st->sensor_count++;
        p += strcspn(p, ",");
    }
    return EDDY_OK;
}

static int st_validate(const eddy_node_type *type, const json_t *config, void *state, eddy_err *err)
{
    struct st_state *copy = eddy_malloc(sizeof(*copy));
    if (!copy)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    *copy = *(struct st_state *)state;
    int rc = st_parse(copy, err);
    eddy_free(copy);
    return rc;
}

/* ---- records ---- */

static int load_cb(const char *key, size_t key_len, const void *value, size_t len, void *data)
{
    eddy_err err;
    *(json_t **)data = eddy_json_loadb(value, len, &err);
    return 0;
}

/* The record of 'key', or NULL when there is none (or it is damaged). New reference. */
static json_t *rec_get(struct st_state *st, const char *key, size_t len)
{
    json_t *rec = NULL;
    eddy_store_state_get(st->store, st->owner, key, len, load_cb, &rec, NULL);
    return rec;
}

/* Writes 'rec' (NULL: deletes) under 'key'. False after reporting a store error. */
static bool rec_put(struct st_state *st, const char *key, size_t len, const json_t *rec)
{
    eddy_err err;
    eddy_err_clear(&err);
    int rc;
    if (rec) {
        char *text = eddy_json_dumps(rec, 0);
        rc = text ? eddy_store_state_put(st->store, st->owner, key, len, text, strlen(text), &err)
                  : eddy_err_set(&err, EDDY_ENOMEM, "out of memory");
        eddy_free(text);
    } else {
        rc = eddy_store_state_del(st->store, st->owner, key, len, &err);
    }
    if (rc != EDDY_OK) {
        eddy_node_error(st->node, NULL, "model '%s': cannot write key '%.*s': %s", st->model,
                        (int)len, key, err.msg);
        st->broken = true;
        return false;
    }
    return true;
}

static bool meta_save(struct st_state *st)
{
    json_t *meta =
        json_pack("{s:i,s:s,s:I,s:b}", "v", STATE_META_VERSION, "fold", fold_names[st->fold],
                  "position", (json_int_t)st->position, "rebuilding", st->it != NULL);
    bool ok = meta && rec_put(st, "", 0, meta);
    json_decref(meta);
    return ok;
}

/* ---- the folds ----
 *
 * Each takes one event message (borrowed) and writes what it changes; 'changes' gets
 * {topic: key, payload: record or null} for each changed key (NULL while rebuilding).
 * Returns true when the event applied to the model. */

static void changed(json_t *changes, const char *key, size_t len, const json_t *rec)
{
    if (!changes)
        return;
    json_t *m = json_object();
    json_object_set_new(m, "topic", json_stringn(key, len));
    json_object_set_new(m, "payload", rec ? json_deep_copy(rec) : json_null());
    json_array_append_new(changes, m);
}

/* The readings of 'msg': names and values, at most MAX_SENSORS. */
static int readings(struct st_state *st, json_t *msg, const char **names, double *values)
{
    int n = 0;
    if (st->sensor_count) {
        for (int i = 0; i < st->sensor_count; i++)
            if (keyed_number(eddy_path_get(msg, &st->sensor_path[i]), &values[n]))
                names[n++] = st->sensor_name[i];
        return n;
    }
    json_t *payload = json_object_get(msg, "payload");
    /* the device and time fields are no readings */
    const char *key_field = strncmp(keyed_path(st->key_property), "payload.", 8) == 0
                                ? keyed_path(st->key_property) + 8
                                : "";
    const char *time_field = strncmp(keyed_path(st->time_property), "payload.", 8) == 0
                                 ? keyed_path(st->time_property) + 8
                                 : "";
    const char *k;
    json_t *v;
    json_object_foreach(payload, k, v)
    {
        if (n == MAX_SENSORS || !json_is_number(v) || strcmp(k, key_field) == 0 ||
            strcmp(k, time_field) == 0)
            continue;
        names[n] = k;
        values[n++] = json_number_value(v);
    }
    return n;
}

static bool fold_readings(struct st_state *st, json_t *msg, int64_t t, json_t *changes)
{
    char dev[KEYED_KEY_MAX + 1];
    size_t dlen;
    const char *why;
    if (!keyed_key_text(eddy_path_get(msg, &st->key_path), dev, &dlen, &why) || dlen == 0)
        return false;
    const char *names[MAX_SENSORS];
    double values[MAX_SENSORS];
    int n = readings(st, msg, names, values);
    if (n == 0)
        return false;
    if (st->fold == FOLD_LATEST) {
        json_t *rec = rec_get(st, dev, dlen);
        if (!json_is_object(rec)) {
            json_decref(rec);
            rec = json_pack("{s:s%,s:{}}", "key", dev, dlen, "sensors");
        }
        json_t *sensors = json_object_get(rec, "sensors");
        bool any = false;
        for (int i = 0; i < n; i++) {
            json_t *old = json_object_get(sensors, names[i]);
            if (old && json_integer_value(json_object_get(old, "time")) > t)
                continue; /* an older reading than the one known */
            json_object_set_new(sensors, names[i],
                                json_pack("{s:o,s:I}", "value", eddy_json_number(values[i]), "time",
                                          (json_int_t)t));
            any = true;
        }
        if (any) {
            if (json_integer_value(json_object_get(rec, "time")) <= t)
                json_object_set_new(rec, "time", json_integer(t));
            if (rec_put(st, dev, dlen, rec))
                changed(changes, dev, dlen, rec);
        }
        json_decref(rec);
        return true;
    }
    /* daily: UTC day of the reading */
    time_t secs = (time_t)(t >= 0 ? t / 1000 : (t - 999) / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    char day[40];
    snprintf(day, sizeof(day), "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
    for (int i = 0; i < n; i++) {
        char key[KEYED_KEY_MAX + 1];
        int klen = snprintf(key, sizeof(key), "%.*s/%s/%s", (int)dlen, dev, names[i], day);
        if (klen < 0 || (size_t)klen >= sizeof(key))
            continue;
        json_t *rec = rec_get(st, key, (size_t)klen);
        double v = values[i];
        if (!json_is_object(rec)) {
            json_decref(rec);
            rec = json_pack("{s:s%,s:s,s:s,s:i,s:o,s:o,s:f}", "key", dev, dlen, "sensor", names[i],
                            "day", day, "count", 0, "min", eddy_json_number(v), "max",
                            eddy_json_number(v), "sum", 0.0);
        }
        json_int_t count = json_integer_value(json_object_get(rec, "count")) + 1;
        double sum = json_number_value(json_object_get(rec, "sum")) + v;
        double mn = fmin(json_number_value(json_object_get(rec, "min")), v);
        double mx = fmax(json_number_value(json_object_get(rec, "max")), v);
        json_object_set_new(rec, "count", json_integer(count));
        json_object_set_new(rec, "sum", eddy_json_number(sum));
        json_object_set_new(rec, "min", eddy_json_number(mn));
        json_object_set_new(rec, "max", eddy_json_number(mx));
        json_object_set_new(rec, "avg", eddy_json_number(sum / (double)count));
        if (rec_put(st, key, (size_t)klen, rec))
            changed(changes, key, (size_t)klen, rec);
        json_decref(rec);
    }
    return true;
}

/* "<a>/<b>" from two string (or number) fields of 'payload'; false when one is missing. */
static bool pair_key(json_t *payload, const char *a, const char *b, char *key, size_t *len)
{
    char ta[KEYED_KEY_MAX + 1], tb[KEYED_KEY_MAX + 1];
    size_t la, lb;
    const char *why;
    if (!keyed_key_text(json_object_get(payload, a), ta, &la, &why) ||
        !keyed_key_text(json_object_get(payload, b), tb, &lb, &why) || la + lb + 1 > KEYED_KEY_MAX)
        return false;
    *len = (size_t)snprintf(key, KEYED_KEY_MAX + 1, "%s/%s", ta, tb);
    return true;
}

static bool fold_actuators(struct st_state *st, json_t *msg, int64_t t, json_t *changes)
{
    const char *type = json_string_value(json_object_get(msg, "eventType"));
    json_t *p = json_object_get(msg, "payload");
    char key[KEYED_KEY_MAX + 1];
    size_t klen;
    if (!type || !json_is_object(p) || !pair_key(p, "deviceId", "actuatorId", key, &klen))
        return false;
    bool cmd = strcmp(type, "ActuatorCommand") == 0;
    bool ack = strcmp(type, "ActuatorAcknowledged") == 0;
    bool tmo = strcmp(type, "ActuatorTimedOut") == 0;
    if (!cmd && !ack && !tmo)
        return false;
    json_t *rec = rec_get(st, key, klen);
    if (!json_is_object(rec)) {
        json_decref(rec);
        rec = json_pack("{s:O,s:O}", "deviceId", json_object_get(p, "deviceId"), "actuatorId",
                        json_object_get(p, "actuatorId"));
    }
    json_t *corr = json_object_get(p, "correlationId");
    json_t *pending = json_object_get(rec, "pending");
    bool is_pending =
        pending && corr && json_equal(json_object_get(pending, "correlationId"), corr);
    json_t *brief =
        json_pack("{s:O*,s:O*,s:O*,s:I}", "command", json_object_get(p, "command"), "value",
                  json_object_get(p, "value"), "correlationId", corr, "time", (json_int_t)t);
    if (cmd) {
        json_object_set_new(rec, "pending", brief);
    } else if (ack) {
        json_t *lat = json_object_get(p, "latencyMs");
        if (lat)
            json_object_set(brief, "latencyMs", lat);
        json_object_set_new(rec, "state", brief);
        if (is_pending)
            json_object_del(rec, "pending");
    } else {
        json_object_set_new(rec, "lastTimeout", brief);
        if (is_pending)
            json_object_del(rec, "pending");
    }
    if (rec_put(st, key, klen, rec))
        changed(changes, key, klen, rec);
    json_decref(rec);
    return true;
}

static bool fold_alerts(struct st_state *st, json_t *msg, json_t *changes)
{
    json_t *p = json_object_get(msg, "payload");
    const char *state = json_string_value(json_object_get(p, "state"));
    char key[KEYED_KEY_MAX + 1];
    size_t klen;
    const char *why;
    if (!state || !keyed_key_text(json_object_get(p, "key"), key, &klen, &why))
        return false;
    const char *cond = json_string_value(json_object_get(p, "condition"));
    if (cond) {
        size_t c = strlen(cond);
        if (klen + 1 + c > KEYED_KEY_MAX)
            return false;
        key[klen] = '/';
        memcpy(key + klen + 1, cond, c + 1);
        klen += 1 + c;
    }
    if (strcmp(state, "raised") == 0) {
        if (rec_put(st, key, klen, p))
            changed(changes, key, klen, p);
        return true;
    }
    if (strcmp(state, "cleared") == 0) {
        if (rec_put(st, key, klen, NULL))
            changed(changes, key, klen, NULL);
        return true;
    }
    return false;
}

/* True when 'list' (comma-separated) holds 'name'. */
static bool in_list(const char *list, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t m = strcspn(p, ",");
        size_t e = m;
        while (e && p[e - 1] == ' ')
            e--;
        if (e == n && strncmp(p, name, n) == 0)
            return true;
        p += m;
    }
    return false;
}

/* Folds one message (borrowed). Returns true when it applied to the model. */
static bool st_fold(struct st_state *st, json_t *msg, json_t *changes)
{
    uint64_t pos;
    json_t *pv = json_object_get(msg, "position");
    bool has_pos = pv && event_msg_position(pv, &pos) && pos > 0;
    if (has_pos && pos <= st->position)
        return false; /* invariant 1 */
    if (has_pos)
        st->position = pos;
    bool applies = true;
    const char *stream = json_string_value(json_object_get(msg, "topic"));
    if (stream && stream[0] == '$')
        applies = false; /* $deadletter and other reserved streams */
    if (*st->stream_prefix &&
        (!stream || strncmp(stream, st->stream_prefix, strlen(st->stream_prefix)) != 0))
        applies = false;
    if (*st->event_types) {
        const char *type = json_string_value(json_object_get(msg, "eventType"));
        applies = applies && type && in_list(st->event_types, type);
    }
    int64_t t = eddy_loop_wall(eddy_node_loop(st->node));
    if (applies && *st->time_property && !event_msg_time(eddy_path_get(msg, &st->time_path), &t))
        applies = false;
    if (applies) {
        switch (st->fold) {
        case FOLD_LATEST:
        case FOLD_DAILY:
            applies = fold_readings(st, msg, t, changes);
            break;
        case FOLD_ACTUATORS:
            applies = fold_actuators(st, msg, t, changes);
            break;
        default:
            applies = fold_alerts(st, msg, changes);
        }
    }
    if (applies)
        st->folded++;
    else
        st->skipped++;
    return applies;
}

/* ---- status ---- */

static void status_now(struct st_state *st)
{
    char text[128];
    if (st->broken)
        snprintf(text, sizeof(text), "store error: see the log");
    else if (st->it)
        snprintf(text, sizeof(text), "rebuilding %llu/%llu (%.0f%%)",
                 (unsigned long long)st->rb_done, (unsigned long long)st->rb_total,
                 st->rb_total ? 100.0 * (double)st->rb_done / (double)st->rb_total : 100.0);
    else
        snprintf(text, sizeof(text), "%s at %llu: %llu folded, %llu skipped", st->model,
                 (unsigned long long)st->position, (unsigned long long)st->folded,
                 (unsigned long long)st->skipped);
    eddy_node_set_status(st->node,
                         st->broken ? "red"
                         : st->it   ? "blue"
                                    : "green",
                         st->it ? "ring" : "dot", text);
}

static int64_t status_cb(eddy_node *node, void *state, void *data)
{
    status_now(state);
    return EDDY_TIMER_STOP;
}

static void status_gone(void *data)
{
    ((struct st_state *)data)->status = NULL;
}

static void status_later(struct st_state *st)
{
    if (!st->status)
        st->status =
            eddy_node_timer_start(st->node, STATUS_DEBOUNCE_MS, status_cb, st, status_gone);
}

/* ---- live input ---- */

static void fold_live(struct st_state *st, json_t *msg)
{
    json_t *changes = json_array();
    bool applied = st_fold(st, msg, changes);
    meta_save(st);
    (void)applied;
    size_t i;
    json_t *c;
    json_array_foreach(changes, i, c)
    {
        json_t *out = eddy_msg_new();
        json_object_update(out, c);
        json_object_set_new(out, "model", json_string(st->model));
        eddy_node_send(st->node, 0, out);
    }
    json_decref(changes);
    status_later(st);
}

/* ---- rebuilding ---- */

static void rebuild_finish(struct st_state *st, const char *error);

static int64_t turn_cb(eddy_node *node, void *state, void *data);

static void rebuild_next_turn(struct st_state *st)
{
    eddy_store_iter_pause(st->it);
    st->turn = eddy_node_timer_start(st->node, 0, turn_cb, NULL, NULL);
    if (!st->turn)
        rebuild_finish(st, "out of memory");
}

/* Folds up to 'chunk' events of the log; then the next turn or the end. */
static int64_t turn_cb(eddy_node *node, void *state, void *data)
{
    struct st_state *st = state;
    st->turn = NULL;
    eddy_err err;
    eddy_err_clear(&err);
    for (long n = 0; n < st->chunk; n++) {
        eddy_store_record rec;
        int rc = eddy_store_iter_next(st->it, &rec, &err);
        if (rc == 0) {
            rebuild_finish(st, NULL);
            return EDDY_TIMER_STOP;
        }
        json_t *m = rc > 0 ? event_msg_from_record(&rec, &err) : NULL;
        if (!m) {
            rebuild_finish(st, err.msg);
            return EDDY_TIMER_STOP;
        }
        st->rb_done++;
        st->rb_folded += st_fold(st, m, NULL);
        json_decref(m);
        if (st->broken) {
            rebuild_finish(st, "the model could not be written");
            return EDDY_TIMER_STOP;
        }
    }
    meta_save(st);
    status_later(st);
    rebuild_next_turn(st);
    return EDDY_TIMER_STOP;
}

/* Clears the model and starts reading the log from its first event. */
static void rebuild_start(struct st_state *st)
{
    eddy_err err;
    eddy_err_clear(&err);
    if (eddy_store_state_clear(st->store, st->owner, &err) != EDDY_OK) {
        rebuild_finish(st, err.msg);
        return;
    }
    eddy_store_query q = {0};
    st->it = eddy_store_iter_open(st->store, &q, &err);
    if (!st->it) {
        rebuild_finish(st, err.msg);
        return;
    }
    st->position = 0;
    st->rb_done = st->rb_folded = 0;
    st->rb_total = eddy_store_last_position(st->store);
    st->broken = false;
    meta_save(st);
    status_now(st);
    rebuild_next_turn(st);
}

static void rebuild_finish(struct st_state *st, const char *error)
{
    eddy_store_iter_close(st->it);
    st->it = NULL;
    if (st->turn) {
        eddy_node_timer_stop(st->node, st->turn);
        st->turn = NULL;
    }
    if (error) {
        st->broken = true;
        eddy_node_error(st->node, NULL, "rebuilding model '%s' failed: %s", st->model, error);
    } else {
        meta_save(st);
    }
    size_t i;
    json_t *req;
    json_array_foreach(st->requests, i, req)
    {
        json_t *sum =
            json_pack("{s:s,s:s,s:I,s:I,s:I,s:b}", "model", st->model, "fold", fold_names[st->fold],
                      "events", (json_int_t)st->rb_done, "folded", (json_int_t)st->rb_folded,
                      "position", (json_int_t)st->position, "complete", error == NULL);
        if (error)
            json_object_set_new(sum, "error", json_string(error));
        json_object_set_new(req, "payload", sum);
        json_incref(req);
        eddy_node_send(st->node, 1, req);
    }
    json_array_clear(st->requests);
    status_now(st);
    /* what arrived meanwhile, in order (invariant 3) */
    json_t *held = st->held;
    st->held = json_array();
    json_array_foreach(held, i, req) fold_live(st, req);
    json_decref(held);
}

static bool is_rebuild(json_t *msg)
{
    const char *topic = json_string_value(json_object_get(msg, "topic"));
    return json_is_true(json_object_get(msg, "rebuild")) ||
           (topic && strcmp(topic, "rebuild") == 0);
}

static void st_input(eddy_node *node, void *state, json_t *msg)
{
    struct st_state *st = state;
    if (is_rebuild(msg)) {
        json_array_append_new(st->requests, msg);
        if (!st->it)
            rebuild_start(st);
        return;
    }
    if (st->it) {
        if (json_array_size(st->held) >= MAX_HELD) {
            eddy_node_error(node, msg, "model '%s' is rebuilding and %d messages wait already",
                            st->model, MAX_HELD);
            json_decref(msg);
        } else {
            json_array_append_new(st->held, msg);
        }
        return;
    }
    fold_live(st, msg);
    json_decref(msg);
}

static int st_command(eddy_node *node, void *state, const char *name, const json_t *arg,
                      eddy_err *err)
{
    struct st_state *st = state;
    if (strcmp(name, "rebuild") != 0)
        return eddy_err_set(err, EDDY_EUNSUPPORTED, "unknown command '%s'", name);
    json_t *req = eddy_msg_new();
    json_object_set_new(req, "rebuild", json_true());
    json_array_append_new(st->requests, req);
    if (!st->it)
        rebuild_start(st);
    return EDDY_OK;
}

/* ---- queries (runtime/readmodel.h) ---- */

static int query_each(const char *key, size_t key_len, const void *value, size_t len, void *data)
{
    if (key_len == 0)
        return 0; /* the meta record */
    eddy_err err;
    json_t *rec = eddy_json_loadb(value, len, &err);
    char k[KEYED_KEY_MAX + 1];
    memcpy(k, key, key_len);
    k[key_len] = '\0';
    json_object_set_new(data, k, rec ? rec : json_null());
    return 0;
}

static json_t *st_query(void *data, const char *key, size_t key_len, eddy_err *err)
{
    struct st_state *st = data;
    if (key) {
        json_t *rec = NULL;
        int rc = key_len
                     ? eddy_store_state_get(st->store, st->owner, key, key_len, load_cb, &rec, err)
                     : EDDY_ENOTFOUND;
        if (rc == EDDY_ENOTFOUND)
            eddy_err_set(err, EDDY_ENOTFOUND, "model '%s' has no key '%.*s'", st->model,
                         (int)key_len, key);
        else if (rc == EDDY_OK && !rec)
            eddy_err_set(err, EDDY_EIO, "model '%s': the record of '%.*s' is damaged", st->model,
                         (int)key_len, key);
        return rc == EDDY_OK ? rec : (json_decref(rec), NULL);
    }
    json_t *keys = json_object();
    if (!keys) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory");
        return NULL;
    }
    if (eddy_store_state_scan(st->store, st->owner, query_each, keys, err) != EDDY_OK) {
        json_decref(keys);
        return NULL;
    }
    return json_pack("{s:s,s:s,s:I,s:b,s:I,s:o}", "model", st->model, "fold", fold_names[st->fold],
                     "position", (json_int_t)st->position, "rebuilding", st->it != NULL, "count",
                     (json_int_t)json_object_size(keys), "keys", keys);
}

static bool st_progress(void *data, uint64_t *done, uint64_t *total)
{
    struct st_state *st = data;
    *done = st->rb_done;
    *total = st->rb_total;
    return st->it != NULL || json_array_size(st->requests) > 0;
}

static const eddy_readmodel_ops st_ops = {st_query, st_progress};

/* ---- life cycle ---- */

static int st_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct st_state *st = state;
    st->node = node;
    int rc = st_parse(st, err);
    if (rc != EDDY_OK)
        return rc;
    st->store = eddy_node_store(node);
    if (!st->store)
        return eddy_err_set(err, EDDY_EINVAL, "no event store: run eddy with --data DIR");
    st->requests = json_array();
    st->held = json_array();
    if (!st->requests || !st->held)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    json_t *meta = rec_get(st, "", 0);
    bool resume = false;
    if (json_is_object(meta)) {
        const char *fold = json_string_value(json_object_get(meta, "fold"));
        if (fold && strcmp(fold, fold_names[st->fold]) != 0) {
            eddy_node_warn(node, "model '%s' was folded as %s and is now %s: it is rebuilt",
                           st->model, fold, fold_names[st->fold]);
            resume = true;
        } else {
            st->position = (uint64_t)json_integer_value(json_object_get(meta, "position"));
            resume = json_is_true(json_object_get(meta, "rebuilding"));
            if (resume)
                eddy_node_warn(node,
                               "model '%s' was being rebuilt when eddy stopped: rebuilding "
                               "it again",
                               st->model);
        }
    }
    json_decref(meta);
    if ((rc = eddy_readmodel_register(st->model, &st_ops, st, err)) != EDDY_OK)
        return rc;
    st->registered = true;
    if (resume)
        rebuild_start(st);
    else
        status_now(st);
    return EDDY_OK;
}

static int st_close(eddy_node *node, void *state, bool removed)
{
    struct st_state *st = state;
    if (st->registered)
        eddy_readmodel_unregister(st->model, st);
    eddy_store_iter_close(st->it);
    st->it = NULL;
    /* a rebuild cut short stays marked in meta and starts again with the node */
    json_decref(st->requests);
    json_decref(st->held);
    return EDDY_CLOSE_DONE;
}

/* eddy_node_state is node.h's; nodes.def maps the stem "state" to this symbol */
const eddy_node_type eddy_node_state_model = {
    .name = "state",
    .inputs = 1,
    .outputs = 2,
    .flags = EDDY_NODE_STORE,
    .props = st_props,
    .state_size = sizeof(struct st_state),
    .help = "A read model (CQRS): folds event messages into records per key kept in the event "
            "store (latest reading per device and sensor, actuator states, active alerts, daily "
            "min/max/avg), served at GET /api/state/<model>[/<key>]. Output 1: each changed "
            "record. msg.rebuild (or topic \"rebuild\") clears the model and folds the whole "
            "log again; output 2 then says how it went.",
    .validate = st_validate,
    .setup = st_setup,
    .input = st_input,
    .close = st_close,
    .command = st_command,
};
