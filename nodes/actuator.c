/* actuator.c: eddy's "actuator" node: turns a message into a command for a device's
 * actuator, records it as an event, publishes it over MQTT, and tracks the device's answer.
 * Node-RED has no such node; eddy defines it (nodes/README.md, "actuator").
 *
 * A command {actuatorId, deviceId, command, value, correlationId, time} is appended to the
 * event store (stream "actuator-<deviceId>", type ActuatorCommand, event id = the
 * correlation id) and published on the 'topic' template ("glasshouse/{deviceId}/actuator/
 * {actuatorId}/set"). The node subscribes once to the 'stateTopic' template with each
 * placeholder as '+'; an answer there whose JSON payload carries the correlation id of a
 * pending command acknowledges it (output 1, with latencyMs; event ActuatorAcknowledged).
 * Without an answer within 'timeoutMs' the command is published again, up to 'retries'
 * times; then it has timed out (output 2; event ActuatorTimedOut).
 *
 * States of one command and the function behind each transition:
 *
 *   (input) --skipUnchanged and the acknowledged state is the same (act_input)--> skipped
 *   (input) --appended + published (act_input)--> pending (try 1)
 *   pending --answer with its correlation id (on_answer)--> acknowledged
 *   pending --timeout, tries <= retries (try_cb)--> pending (published again, try + 1)
 *   pending --timeout, tries > retries (try_cb)--> timed out
 *
 * Invariants:
 *   1. With a store, every pending command has a node state record "p:<correlationId>"
 *      and every actuator with an acknowledged state a record "s:<deviceId>/<actuatorId>";
 *      each is written in the loop turn that changed it, so it commits with the events of
 *      that turn. A command's MQTT publish leaves in a flush hook, after that commit: a
 *      command is on disk before any device can see it.
 *   2. Pending commands survive a restart: they are loaded at set-up and their current try
 *      gets a fresh 'timeoutMs' (the device may have answered while eddy was down; such an
 *      answer is lost, so the command is published again or times out as usual). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

#include "keyed.h"
#include "mem.h"
#include "mqtt.h"
#include "msg.h"
#include "node.h"
#include "store.h"

#define ACT_RECORD_VERSION 1

typedef struct pending {
    struct act_state *st;
    char corr[40];     /* correlation id */
    json_t *cmd;       /* the command body (owned) */
    json_t *msg;       /* the input message, answered on output 1 or 2 (owned) */
    char *topic;       /* where it is published (owned) */
    int tries;         /* publishes so far */
    int64_t first;     /* wall ms of the first publish */
    eddy_timer *timer; /* the current try's timeout; NULL if none */
} pending;

struct act_state {
    /* properties, filled by the engine */
    eddy_node *broker;
    const char *actuator_prop;
    const char *actuator_id;
    const char *device_prop;
    const char *device_id;
    const char *command_prop;
    const char *command_def;
    const char *value_prop;
    const char *topic;
    const char *state_topic;
    const char *qos;
    double timeout_ms;
    long retries;
    bool skip_unchanged;
    long max_pending;
    bool persist;

    /* parsed */
    eddy_path actuator_path, device_path, command_path, value_path;
    char filter[512]; /* the state topic with '+' for each placeholder */

    /* run time */
    eddy_node *node;
    mqtt_broker *b;
    eddy_store *store; /* NULL: memory only */
    keyed_map pending; /* correlation id -> pending */
    keyed_map known;   /* "<deviceId>/<actuatorId>" -> json_t * {command, value} (owned) */
    uint64_t acked, timed_out, skipped;
};

static const eddy_prop act_props[] = {
    {"broker", EDDY_PROP_CONFIG, NULL, true, offsetof(struct act_state, broker),
     "the mqtt-broker node", "mqtt-broker"},
    {"actuatorIdProperty", EDDY_PROP_STR, "\"payload.actuatorId\"", false,
     offsetof(struct act_state, actuator_prop), "message property with the actuator id", NULL},
    {"actuatorId", EDDY_PROP_STR, "\"\"", false, offsetof(struct act_state, actuator_id),
     "actuator id when the message has none", NULL},
    {"deviceIdProperty", EDDY_PROP_STR, "\"payload.deviceId\"", false,
     offsetof(struct act_state, device_prop), "message property with the device id", NULL},
    {"deviceId", EDDY_PROP_STR, "\"\"", false, offsetof(struct act_state, device_id),
     "device id when the message has none", NULL},
    {"commandProperty", EDDY_PROP_STR, "\"payload.command\"", false,
     offsetof(struct act_state, command_prop), "message property with the command", NULL},
    {"command", EDDY_PROP_STR, "\"set\"", false, offsetof(struct act_state, command_def),
     "command when the message has none", NULL},
    {"valueProperty", EDDY_PROP_STR, "\"payload.value\"", false,
     offsetof(struct act_state, value_prop), "message property with the value (any JSON)", NULL},
    {"topic", EDDY_PROP_STR, "\"glasshouse/{deviceId}/actuator/{actuatorId}/set\"", false,
     offsetof(struct act_state, topic), "command topic template ({deviceId}, {actuatorId})", NULL},
    {"stateTopic", EDDY_PROP_STR, "\"glasshouse/{deviceId}/actuator/{actuatorId}/state\"", false,
     offsetof(struct act_state, state_topic),
     "topic template of the devices' answers (subscribed with + for each placeholder)", NULL},
    {"qos", EDDY_PROP_STR, "\"1\"", false, offsetof(struct act_state, qos),
     "QoS of commands and of the answer subscription", "|0|1|2|"},
    {"timeoutMs", EDDY_PROP_NUM, "5000", false, offsetof(struct act_state, timeout_ms),
     "how long each try waits for the answer (ms)", NULL},
    {"retries", EDDY_PROP_INT, "2", false, offsetof(struct act_state, retries),
     "publishes after the first before the command times out", NULL},
    {"skipUnchanged", EDDY_PROP_BOOL, "false", false, offsetof(struct act_state, skip_unchanged),
     "do not send a command that would not change the acknowledged state", NULL},
    {"maxPending", EDDY_PROP_INT, "1000", false, offsetof(struct act_state, max_pending),
     "most commands waiting for an answer at once", NULL},
    {"persist", EDDY_PROP_BOOL, "true", false, offsetof(struct act_state, persist),
     "append command events and keep pending commands in the event store (needs a data folder)",
     NULL},
    {0},
};

/* ---- topics ---- */

/* Expands 'tmpl' into 'out' with {deviceId} and {actuatorId} (NULL ids: '+'). False when
 * it does not fit or holds another placeholder. */
static bool expand(const char *tmpl, const char *dev, const char *act, char *out, size_t cap)
{
    size_t o = 0;
    for (const char *p = tmpl; *p;) {
        const char *rep = NULL;
        size_t skip = 1;
        if (strncmp(p, "{deviceId}", 10) == 0) {
            rep = dev ? dev : "+";
            skip = 10;
        } else if (strncmp(p, "{actuatorId}", 12) == 0) {
            rep = act ? act : "+";
            skip = 12;
        } else if (*p == '{' || *p == '}') {
            return false;
        }
        size_t n = rep ? strlen(rep) : 1;
        if (o + n + 1 > cap)
            return false;
        memcpy(out + o, rep ? rep : p, n);
        o += n;
        p += skip;
    }
    out[o] = '\0';
    return true;
}

static int act_parse(struct act_state *st, eddy_err *err)
{
    int rc;
    char t[512];
    if (!expand(st->topic, "d", "a", t, sizeof(t)) || !mqtt_topic_valid(t))
        return eddy_err_set(err, EDDY_EINVAL,
                            "topic '%s': a topic with {deviceId} and {actuatorId} placeholders "
                            "and no wildcards is needed",
                            st->topic);
    if (!expand(st->state_topic, NULL, NULL, st->filter, sizeof(st->filter)) ||
        !mqtt_filter_valid(st->filter) || strchr(st->state_topic, '+') ||
        strchr(st->state_topic, '#'))
        return eddy_err_set(err, EDDY_EINVAL,
                            "stateTopic '%s': a topic with {deviceId} and {actuatorId} "
                            "placeholders (each a whole level) and no wildcards is needed",
                            st->state_topic);
    if (!(st->timeout_ms >= 1 && st->timeout_ms <= 86400000.0))
        return eddy_err_set(err, EDDY_EINVAL, "timeoutMs must be 1 to 86400000");
    if (st->retries < 0 || st->retries > 100)
        return eddy_err_set(err, EDDY_EINVAL, "retries must be 0 to 100");
    if (st->max_pending < 1)
        return eddy_err_set(err, EDDY_EINVAL, "maxPending must be at least 1");
    if ((rc = keyed_parse_path(st->actuator_prop, "actuatorIdProperty", &st->actuator_path, err)) ||
        (rc = keyed_parse_path(st->device_prop, "deviceIdProperty", &st->device_path, err)) ||
        (rc = keyed_parse_path(st->command_prop, "commandProperty", &st->command_path, err)) ||
        (rc = keyed_parse_path(st->value_prop, "valueProperty", &st->value_path, err)))
        return rc;
    return EDDY_OK;
}

static int act_validate(const eddy_node_type *type, const json_t *config, void *state,
                        eddy_err *err)
{
    struct act_state *copy = eddy_malloc(sizeof(*copy));
    if (!copy)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    *copy = *(struct act_state *)state;
    int rc = act_parse(copy, err);
    eddy_free(copy);
    return rc;
}

/* ---- status, events and records ---- */

static void show_status(struct act_state *st, const char *note)
{
    char text[128];
    snprintf(text, sizeof(text), "%s%s%zu pending, %llu acknowledged, %llu timed out",
             note ? note : "", note ? "; " : "", st->pending.count, (unsigned long long)st->acked,
             (unsigned long long)st->timed_out);
    eddy_node_set_status(st->node, st->timed_out ? "yellow" : "green",
                         st->pending.count ? "ring" : "dot", text);
}

/* Appends an event of 'type' with 'body' (borrowed) and id 'id'. */
static void append_event(struct act_state *st, const char *type, const char *id, const json_t *body,
                         json_t *msg)
{
    if (!st->store)
        return;
    char stream[EDDY_STORE_NAME_MAX + 1];
    snprintf(stream, sizeof(stream), "actuator-%s",
             json_string_value(json_object_get(body, "deviceId")));
    char *text = eddy_json_dumps(body, 0);
    eddy_store_event ev = {.type = type,
                           .id = id,
                           .time = EDDY_STORE_TIME_NONE,
                           .data = text,
                           .data_len = text ? strlen(text) : 0};
    eddy_err err;
    eddy_err_clear(&err);
    if (!text)
        eddy_node_error(st->node, msg, "%s not stored: out of memory", type);
    else if (eddy_store_append(st->store, stream, EDDY_STORE_ANY, &ev, 1, NULL, &err) != EDDY_OK)
        eddy_node_error(st->node, msg, "%s not stored: %s", type, err.msg);
    eddy_free(text);
}

static void record_put(struct act_state *st, const char *prefix, const char *key, json_t *rec)
{
    if (!st->store)
        return;
    char k[KEYED_KEY_MAX + 1];
    int n = snprintf(k, sizeof(k), "%s%s", prefix, key);
    eddy_err err;
    eddy_err_clear(&err);
    char *text = rec ? eddy_json_dumps(rec, 0) : NULL;
    int rc = n < 0 || (size_t)n >= sizeof(k) ? eddy_err_set(&err, EDDY_EINVAL, "key too long")
             : rec ? (text ? eddy_store_state_put(st->store, eddy_node_id(st->node), k, (size_t)n,
                                                  text, strlen(text), &err)
                           : eddy_err_set(&err, EDDY_ENOMEM, "out of memory"))
                   : eddy_store_state_del(st->store, eddy_node_id(st->node), k, (size_t)n, &err);
    if (rc != EDDY_OK)
        eddy_node_error(st->node, NULL, "cannot store actuator state '%s': %s", k, err.msg);
    eddy_free(text);
}

static void pending_save(struct act_state *st, pending *p)
{
    json_t *rec =
        json_pack("{s:i,s:O,s:O,s:s,s:i,s:I}", "v", ACT_RECORD_VERSION, "cmd", p->cmd, "msg",
                  p->msg, "topic", p->topic, "tries", p->tries, "first", (json_int_t)p->first);
    record_put(st, "p:", p->corr, rec);
    json_decref(rec);
}

/* The actuator's key "<deviceId>/<actuatorId>" from a command body. */
static void actuator_key(const json_t *cmd, char *key, size_t cap)
{
    snprintf(key, cap, "%s/%s", json_string_value(json_object_get(cmd, "deviceId")),
             json_string_value(json_object_get(cmd, "actuatorId")));
}

static void known_set(struct act_state *st, const json_t *cmd)
{
    char key[KEYED_KEY_MAX + 1];
    actuator_key(cmd, key, sizeof(key));
    json_t *state = json_pack("{s:O*,s:O*}", "command", json_object_get(cmd, "command"), "value",
                              json_object_get(cmd, "value"));
    json_t *old = keyed_get(&st->known, key, strlen(key));
    if (old) {
        keyed_del(&st->known, key, strlen(key));
        json_decref(old);
    }
    if (state && !keyed_put(&st->known, key, strlen(key), state)) {
        json_decref(state);
        return;
    }
    record_put(st, "s:", key, state);
}

/* ---- pending commands ---- */

static void pending_free(pending *p)
{
    json_decref(p->cmd);
    json_decref(p->msg);
    eddy_free(p->topic);
    eddy_free(p);
}

/* Removes 'p' from the map, its record and its timer. */
static void pending_drop(struct act_state *st, pending *p)
{
    if (p->timer)
        eddy_node_timer_stop(st->node, p->timer);
    p->timer = NULL;
    keyed_del(&st->pending, p->corr, strlen(p->corr));
    record_put(st, "p:", p->corr, NULL);
}

static bool publish(struct act_state *st, pending *p)
{
    char *text = eddy_json_dumps(p->cmd, 0);
    eddy_err err;
    eddy_err_clear(&err);
    int rc = text ? mqtt_broker_publish(st->b, st->node, p->topic, text, strlen(text),
                                        st->qos[0] - '0', false, &err)
                  : eddy_err_set(&err, EDDY_ENOMEM, "out of memory");
    eddy_free(text);
    p->tries++;
    if (rc != EDDY_OK)
        eddy_node_error(st->node, p->msg, "command %s not published (try %d): %s", p->corr,
                        p->tries, err.msg);
    return rc == EDDY_OK;
}

static int64_t try_cb(eddy_node *node, void *state, void *data);

static void arm(struct act_state *st, pending *p)
{
    p->timer = eddy_node_timer_start(st->node, (int64_t)st->timeout_ms, try_cb, p, NULL);
    if (!p->timer)
        eddy_node_error(st->node, p->msg, "command %s: out of memory starting its timer", p->corr);
}

/* Output 'out' with the command body plus 'extra' (taken) as payload; frees 'p'. */
static void answer(struct act_state *st, pending *p, int out, json_t *extra)
{
    json_t *payload = json_deep_copy(p->cmd);
    json_object_update(payload, extra);
    json_decref(extra);
    json_t *msg = p->msg;
    p->msg = NULL;
    json_object_set_new(msg, "payload", payload);
    eddy_node_done(st->node, msg);
    eddy_node_send(st->node, out, msg);
    pending_free(p);
}

static int64_t try_cb(eddy_node *node, void *state, void *data)
{
    struct act_state *st = state;
    pending *p = data;
    p->timer = NULL;
    if (p->tries <= st->retries) {
        publish(st, p);
        pending_save(st, p);
        arm(st, p);
        show_status(st, NULL);
        return EDDY_TIMER_STOP;
    }
    pending_drop(st, p);
    st->timed_out++;
    json_t *body = json_deep_copy(p->cmd);
    json_object_set_new(body, "tries", json_integer(p->tries));
    char id[64];
    snprintf(id, sizeof(id), "%s:timeout", p->corr);
    append_event(st, "ActuatorTimedOut", id, body, p->msg);
    json_decref(body);
    answer(st, p, 1,
           json_pack("{s:b,s:i,s:f}", "timedOut", true, "tries", p->tries, "timeoutMs",
                     st->timeout_ms));
    show_status(st, NULL);
    return EDDY_TIMER_STOP;
}

/* An answer on the state topic: JSON with the correlation id of a pending command. */
static void on_answer(eddy_node *node, void *token, const mqtt_delivery *d)
{
    struct act_state *st = eddy_node_state(node);
    eddy_err err;
    json_t *reply = eddy_json_loadb(d->payload, d->len, &err);
    const char *corr = json_string_value(json_object_get(reply, "correlationId"));
    pending *p = corr ? keyed_get(&st->pending, corr, strlen(corr)) : NULL;
    if (!p) {
        /* not ours, or late: the command was answered or has timed out already */
        json_decref(reply);
        return;
    }
    pending_drop(st, p);
    st->acked++;
    int64_t latency = eddy_loop_wall(eddy_node_loop(node)) - p->first;
    json_t *body = json_deep_copy(p->cmd);
    json_object_set_new(body, "latencyMs", json_integer(latency));
    json_object_set_new(body, "tries", json_integer(p->tries));
    json_object_set(body, "reply", reply);
    char id[64];
    snprintf(id, sizeof(id), "%s:ack", p->corr);
    append_event(st, "ActuatorAcknowledged", id, body, p->msg);
    json_decref(body);
    known_set(st, p->cmd);
    answer(st, p, 0,
           json_pack("{s:I,s:i,s:o,s:s}", "latencyMs", (json_int_t)latency, "tries", p->tries,
                     "reply", reply, "topic", d->topic));
    show_status(st, NULL);
}

/* ---- input ---- */

/* An id from the message (a string or number), else the node's default. */
static bool id_of(json_t *msg, const eddy_path *path, const char *def, char *buf, const char **why)
{
    size_t len;
    json_t *v = eddy_path_get(msg, path);
    if (!v || json_is_null(v)) {
        if (!*def) {
            *why = "missing";
            return false;
        }
        snprintf(buf, KEYED_KEY_MAX + 1, "%s", def);
    } else if (!keyed_key_text(v, buf, &len, why)) {
        return false;
    }
    if (!*buf || strpbrk(buf, "/+#")) {
        *why = "empty or holds '/', '+' or '#' (it becomes a topic level)";
        return false;
    }
    return true;
}

static void make_correlation_id(char out[40])
{
    unsigned char r[16];
    if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r)) {
        static uint64_t counter;
        uint64_t c = ++counter ^ (uint64_t)(uintptr_t)out;
        for (int i = 0; i < 16; i++)
            r[i] = (unsigned char)(c >> (8 * (i % 8))) ^ (unsigned char)i;
    }
    r[6] = (unsigned char)((r[6] & 0x0f) | 0x40); /* UUID version 4 */
    r[8] = (unsigned char)((r[8] & 0x3f) | 0x80);
    snprintf(out, 40, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", r[0],
             r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], r[9], r[10], r[11], r[12], r[13],
             r[14], r[15]);
}

static void act_input(eddy_node *node, void *state, json_t *msg)
{
    struct act_state *st = state;
    char dev[KEYED_KEY_MAX + 1], act[KEYED_KEY_MAX + 1], cmd_text[KEYED_KEY_MAX + 1];
    const char *why = NULL;
    if (!id_of(msg, &st->device_path, st->device_id, dev, &why)) {
        eddy_node_error(node, msg, "device id (%s): %s", st->device_prop, why);
        goto drop;
    }
    if (!id_of(msg, &st->actuator_path, st->actuator_id, act, &why)) {
        eddy_node_error(node, msg, "actuator id (%s): %s", st->actuator_prop, why);
        goto drop;
    }
    json_t *cv = eddy_path_get(msg, &st->command_path);
    size_t len;
    if (cv && !json_is_null(cv)) {
        if (!keyed_key_text(cv, cmd_text, &len, &why)) {
            eddy_node_error(node, msg, "command (%s): %s", st->command_prop, why);
            goto drop;
        }
    } else {
        snprintf(cmd_text, sizeof(cmd_text), "%s", st->command_def);
    }
    json_t *value = eddy_path_get(msg, &st->value_path);
    char akey[2 * KEYED_KEY_MAX + 2];
    snprintf(akey, sizeof(akey), "%s/%s", dev, act);
    if (st->skip_unchanged) {
        json_t *known =
            strlen(akey) <= KEYED_KEY_MAX ? keyed_get(&st->known, akey, strlen(akey)) : NULL;
        json_t *want = json_pack("{s:s,s:O*}", "command", cmd_text, "value", value);
        bool same = known && json_equal(known, want);
        json_decref(want);
        if (same) {
            st->skipped++;
            json_t *payload = json_pack("{s:s,s:s,s:s,s:O*,s:b,s:s}", "actuatorId", act, "deviceId",
                                        dev, "command", cmd_text, "value", value, "skipped", true,
                                        "reason", "unchanged: the acknowledged state is the same");
            json_object_set_new(msg, "payload", payload);
            json_object_set_new(msg, "skipped", json_true());
            eddy_node_done(node, msg);
            eddy_node_send(node, 0, msg);
            char note[96];
            snprintf(note, sizeof(note), "skipped %s: unchanged", akey);
            show_status(st, note);
            return;
        }
    }
    if (st->pending.count >= (size_t)st->max_pending) {
        eddy_node_error(node, msg, "%ld commands are waiting for an answer (maxPending)",
                        st->max_pending);
        goto drop;
    }
    char topic[1024];
    if (!expand(st->topic, dev, act, topic, sizeof(topic)) || !mqtt_topic_valid(topic)) {
        eddy_node_error(node, msg, "the command topic for %s is too long", akey);
        goto drop;
    }
    pending *p = eddy_calloc(1, sizeof(*p));
    if (!p)
        goto oom;
    p->st = st;
    make_correlation_id(p->corr);
    p->first = eddy_loop_wall(eddy_node_loop(node));
    p->topic = eddy_strdup(topic);
    p->cmd =
        json_pack("{s:s,s:s,s:s,s:O*,s:s,s:I}", "actuatorId", act, "deviceId", dev, "command",
                  cmd_text, "value", value, "correlationId", p->corr, "time", (json_int_t)p->first);
    p->msg = msg;
    if (!p->topic || !p->cmd || !keyed_put(&st->pending, p->corr, strlen(p->corr), p)) {
        p->msg = NULL;
        pending_free(p);
        goto oom;
    }
    append_event(st, "ActuatorCommand", p->corr, p->cmd, msg);
    publish(st, p);
    pending_save(st, p);
    arm(st, p);
    show_status(st, NULL);
    return;
oom:
    eddy_node_error(node, msg, "out of memory");
drop:
    eddy_node_done(node, msg);
    json_decref(msg);
}

/* ---- life cycle ---- */

static int load_record(const char *key, size_t key_len, const void *value, size_t len, void *data)
{
    struct act_state *st = data;
    eddy_err err;
    json_t *rec = eddy_json_loadb(value, len, &err);
    if (!rec || key_len < 3)
        goto done;
    if (strncmp(key, "s:", 2) == 0) {
        if (!keyed_put(&st->known, key + 2, key_len - 2, rec)) {
            json_decref(rec);
            return EDDY_ENOMEM;
        }
        return 0;
    }
    json_t *cmd = json_object_get(rec, "cmd");
    const char *topic = json_string_value(json_object_get(rec, "topic"));
    if (strncmp(key, "p:", 2) != 0 || !json_is_object(cmd) || !topic || key_len - 2 >= 40)
        goto done;
    pending *p = eddy_calloc(1, sizeof(*p));
    if (!p) {
        json_decref(rec);
        return EDDY_ENOMEM;
    }
    p->st = st;
    memcpy(p->corr, key + 2, key_len - 2);
    p->cmd = json_incref(cmd);
    p->msg = json_incref(json_object_get(rec, "msg"));
    if (!json_is_object(p->msg)) {
        json_decref(p->msg);
        p->msg = eddy_msg_new();
    }
    p->topic = eddy_strdup(topic);
    p->tries = (int)json_integer_value(json_object_get(rec, "tries"));
    p->first = json_integer_value(json_object_get(rec, "first"));
    if (!p->topic || !keyed_put(&st->pending, p->corr, strlen(p->corr), p)) {
        pending_free(p);
        json_decref(rec);
        return EDDY_ENOMEM;
    }
done:
    json_decref(rec);
    return 0;
}

static void rearm_each(void *record, void *data)
{
    arm(data, record);
}

static void free_pending(void *record, void *data)
{
    /* the engine stopped the node's timers before close (node.h, invariant 3) */
    pending_free(record);
}

static void free_known(void *record, void *data)
{
    json_decref(record);
}

static void act_free(struct act_state *st)
{
    keyed_each(&st->pending, free_pending, NULL);
    keyed_free(&st->pending);
    keyed_each(&st->known, free_known, NULL);
    keyed_free(&st->known);
}

static int act_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct act_state *st = state;
    st->node = node;
    int rc = act_parse(st, err);
    if (rc != EDDY_OK)
        return rc;
    st->store = st->persist ? eddy_node_store(node) : NULL;
    if (st->persist && !st->store)
        eddy_node_warn(node, "no event store (eddy run --data DIR): commands are not recorded "
                             "and pending commands are lost on restart");
    if (st->store) {
        rc = eddy_store_state_scan(st->store, eddy_node_id(node), load_record, st, err);
        if (rc == EDDY_ENOMEM)
            rc = eddy_err_set(err, EDDY_ENOMEM, "out of memory loading pending commands");
        if (rc != EDDY_OK) {
            act_free(st);
            return rc;
        }
    }
    st->b = mqtt_broker_of(st->broker);
    if ((rc = mqtt_broker_register(st->b, node, err)) != EDDY_OK) {
        act_free(st);
        return rc;
    }
    if ((rc = mqtt_broker_subscribe(st->b, node, st->filter, st->qos[0] - '0', on_answer, NULL,
                                    err)) != EDDY_OK) {
        mqtt_broker_unregister(st->b, node, false);
        act_free(st);
        return rc;
    }
    keyed_each(&st->pending, rearm_each, st);
    if (st->pending.count)
        eddy_node_log(node, "%zu pending commands resumed", st->pending.count);
    return EDDY_OK;
}

static int act_close(eddy_node *node, void *state, bool removed)
{
    struct act_state *st = state;
    mqtt_broker_unregister(st->b, node, removed);
    eddy_err err;
    if (removed && st->store &&
        eddy_store_state_clear(st->store, eddy_node_id(node), &err) != EDDY_OK)
        eddy_node_error(node, NULL, "cannot delete the stored commands: %s", err.msg);
    act_free(st);
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_actuator = {
    .name = "actuator",
    .inputs = 1,
    .outputs = 2,
    .flags = EDDY_NODE_ASYNC_DONE | EDDY_NODE_STORE,
    .props = act_props,
    .state_size = sizeof(struct act_state),
    .help = "Sends a command to a device's actuator over MQTT (topic from a template) with a "
            "correlation id, records it as an ActuatorCommand event, and waits for the device's "
            "answer on the state topic: output 1 when acknowledged (payload.latencyMs), output 2 "
            "when no answer came after the retries. skipUnchanged skips commands that would not "
            "change the acknowledged state. Pending commands survive a restart.",
    .validate = act_validate,
    .setup = act_setup,
    .input = act_input,
    .close = act_close,
};
