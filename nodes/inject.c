/* inject.c: Node-RED's "inject" node: starts flows with a fresh message, once after start,
 * every 'repeat' seconds or on a crontab schedule (nodes/inject_cron.c), and whenever a
 * message reaches its input (the editor's button). Property values are typed values
 * evaluated per injection by eddy_node_eval_typed; JSONata values are not supported.
 *
 * Back-pressure: a repeat or crontab tick that finds the run queue backlogged
 * (eddy_node_backlogged) is skipped, not queued; the node warns once when it starts
 * skipping and logs how many ticks it skipped once it injects again. Crontabs use local
 * time (the TZ environment variable). */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "inject_cron.h"
#include "mem.h"
#include "msg.h"
#include "node.h"

/* Node-RED refuses repeats above this many seconds (the limit of a JavaScript timer). */
#define INJECT_REPEAT_MAX 2147483.0

struct inject_state {
    /* properties, filled by the engine */
    const json_t *props_cfg;  /* "props": [{p, v, vt}], NULL or not an array: legacy */
    const json_t *topic;      /* legacy topic, and the value of a topic prop without v */
    const json_t *payload;    /* the value of a payload prop without v */
    const char *payload_type; /* its type; "" means "str" */
    double repeat;            /* seconds between injections; <= 0: none */
    const char *crontab;      /* used when there is no repeat; "" for none */
    bool once;                /* inject once after start */
    double once_delay;        /* seconds before that; 0 means Node-RED's 0.1 */

    /* run time */
    json_t *props;         /* normalised [{p, v, vt}] (owned) */
    int64_t repeat_ms;     /* 0: no repeat */
    bool use_cron;         /* schedule by 'cron' */
    inject_cron cron;      /* the parsed crontab */
    int64_t cron_due;      /* wall ms of the tick being waited for */
    bool backlogged;       /* skipping ticks since the last injection */
    unsigned long skipped; /* ticks skipped in the current backlog */
};

static const eddy_prop inject_props[] = {
    {.name = "props",
     .kind = EDDY_PROP_JSON,
     .offset = offsetof(struct inject_state, props_cfg),
     .help = "properties to set: [{p: property, v: value, vt: value type}]"},
    {.name = "topic",
     .kind = EDDY_PROP_JSON,
     .offset = offsetof(struct inject_state, topic),
     .help = "msg.topic (for a topic property without a value, and legacy nodes)"},
    {.name = "payload",
     .kind = EDDY_PROP_JSON,
     .offset = offsetof(struct inject_state, payload),
     .help = "msg.payload value (for a payload property without a value, and legacy nodes)"},
    {.name = "payloadType",
     .kind = EDDY_PROP_STR,
     .offset = offsetof(struct inject_state, payload_type),
     .help = "type of 'payload': str, num, bool, json, date, bin, env, flow, global"},
    {.name = "repeat",
     .kind = EDDY_PROP_NUM,
     .offset = offsetof(struct inject_state, repeat),
     .help = "inject every this many seconds (empty: no repeat)"},
    {.name = "crontab",
     .kind = EDDY_PROP_STR,
     .offset = offsetof(struct inject_state, crontab),
     .help = "inject on this schedule (5 or 6 cron fields, local time) when there is no repeat"},
    {.name = "once",
     .kind = EDDY_PROP_BOOL,
     .def = "false",
     .offset = offsetof(struct inject_state, once),
     .help = "inject once after the flow starts"},
    {.name = "onceDelay",
     .kind = EDDY_PROP_NUM,
     .def = "0.1",
     .offset = offsetof(struct inject_state, once_delay),
     .help = "seconds to wait before that first injection"},
    {0},
};

/* ---- configuration ---- */

static bool is_type(const char *type, const char *name)
{
    return type != NULL && strcmp(type, name) == 0;
}

/* Node-RED's property list: the 'props' array, where a payload entry without a value takes
 * the node's payload/payloadType and a string topic entry without a value the node's
 * topic; or, for flows older than 1.1, payload and topic. Ownership: new. */
static json_t *inject_normalise_props(const struct inject_state *st)
{
    json_t *out = json_array();
    if (!out) {
        return NULL;
    }
    const char *ptype = st->payload_type && *st->payload_type ? st->payload_type : NULL;
    const json_t *payload = st->payload;
    /* Flows from before Node-RED 0.17 say "none" (an empty string) and "string". */
    if (is_type(ptype, "none") || is_type(ptype, "string")) {
        payload = is_type(ptype, "none") ? NULL : payload;
        ptype = "str";
    }
    if (!json_is_array(st->props_cfg)) {
        json_t *pay = json_object();
        json_t *top = json_object();
        if (pay && payload) {
            json_object_set(pay, "v", (json_t *)payload);
        }
        if (pay && ptype) {
            json_object_set_new(pay, "vt", json_string(ptype));
        }
        if (top && st->topic) {
            json_object_set(top, "v", (json_t *)st->topic);
        }
        if (!pay || !top || json_object_set_new(pay, "p", json_string("payload")) ||
            json_object_set_new(top, "p", json_string("topic")) ||
            json_object_set_new(top, "vt", json_string("str")) || json_array_append_new(out, pay) ||
            json_array_append_new(out, top)) {
            json_decref(out);
            return NULL;
        }
        return out;
    }
    size_t i;
    json_t *entry;
    json_array_foreach(st->props_cfg, i, entry)
    {
        json_t *copy = json_is_object(entry) ? json_deep_copy(entry) : json_incref(entry);
        if (!copy || json_array_append_new(out, copy)) {
            json_decref(out);
            return NULL;
        }
        if (!json_is_object(copy)) {
            continue;
        }
        const char *p = json_string_value(json_object_get(copy, "p"));
        const char *vt = json_string_value(json_object_get(copy, "vt"));
        bool has_v = json_object_get(copy, "v") != NULL;
        if (is_type(p, "payload") && !has_v) {
            if (payload) {
                json_object_set(copy, "v", (json_t *)payload);
            }
            if (ptype) {
                json_object_set_new(copy, "vt", json_string(ptype));
            } else {
                json_object_del(copy, "vt");
            }
        } else if (is_type(p, "topic") && is_type(vt, "str") && !has_v && st->topic) {
            json_object_set(copy, "v", (json_t *)st->topic);
        }
    }
    return out;
}

/* A property value as the string JavaScript's evaluation would see (undefined is "").
 * Ownership: new. */
static json_t *inject_value_text(const json_t *v)
{
    if (v == NULL) {
        return json_string("");
    }
    if (json_is_string(v)) {
        return json_incref((json_t *)v);
    }
    char *text = eddy_json_to_string(v, false);
    json_t *out = text ? json_string(text) : NULL;
    eddy_free(text);
    return out;
}

static int inject_check_props(const json_t *props, eddy_err *err)
{
    size_t i;
    json_t *entry;
    json_array_foreach(props, i, entry)
    {
        if (!json_is_object(entry)) {
            return eddy_err_set(err, EDDY_EINVAL, "props[%zu]: expected an object {p, v, vt}", i);
        }
        json_t *pj = json_object_get(entry, "p");
        if (pj && !json_is_string(pj)) {
            return eddy_err_set(err, EDDY_EINVAL, "props[%zu]: 'p' must be a property name", i);
        }
        const char *p = json_string_value(pj);
        if (!p || !*p) {
            continue; /* Node-RED skips entries without a property */
        }
        json_t *vtj = json_object_get(entry, "vt");
        const char *vt = vtj ? json_string_value(vtj) : "str";
        if (!vt) {
            return eddy_err_set(err, EDDY_EINVAL, "props[%zu] (msg.%s): 'vt' must be a string", i,
                                p);
        }
        if (strcmp(vt, "jsonata") == 0 || strcmp(vt, "jsonata_exp") == 0) {
            return eddy_err_set(err, EDDY_EUNSUPPORTED,
                                "props[%zu] (msg.%s): JSONata expressions are not supported", i, p);
        }
        if (!eddy_typed_supported(vt)) {
            return eddy_err_set(err, EDDY_EINVAL, "props[%zu] (msg.%s): unknown value type '%s'", i,
                                p, vt);
        }
        eddy_path path;
        eddy_err perr;
        eddy_err_clear(&perr);
        if (eddy_path_parse(p, &path, &perr) != EDDY_OK) {
            return eddy_err_set(err, EDDY_EINVAL, "props[%zu]: bad property 'msg.%s': %s", i, p,
                                perr.msg);
        }
        json_t *v = json_object_get(entry, "v");
        if ((strcmp(vt, "json") == 0 || strcmp(vt, "bin") == 0) && json_is_string(v)) {
            const char *text = json_string_value(v);
            eddy_err jerr;
            eddy_err_clear(&jerr);
            json_t *parsed = eddy_json_loadb(text, strlen(text), &jerr);
            if (!parsed) {
                return eddy_err_set(err, EDDY_EINVAL, "props[%zu] (msg.%s): invalid JSON: %s", i, p,
                                    jerr.msg);
            }
            bool ok = strcmp(vt, "json") == 0 || json_is_array(parsed) || json_is_string(parsed);
            json_decref(parsed);
            if (!ok) {
                return eddy_err_set(err, EDDY_EINVAL,
                                    "props[%zu] (msg.%s): a buffer needs an array or a string", i,
                                    p);
            }
        }
    }
    return EDDY_OK;
}

static int inject_validate(const eddy_node_type *type, const json_t *config, void *state,
                           eddy_err *err)
{
    struct inject_state *st = state;
    json_t *props = inject_normalise_props(st);
    if (!props) {
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    }
    int rc = inject_check_props(props, err);
    json_decref(props);
    if (rc != EDDY_OK) {
        return rc;
    }
    if (st->repeat > INJECT_REPEAT_MAX) {
        return eddy_err_set(err, EDDY_EINVAL,
                            "repeat %g s is too long (Node-RED's limit is %.0f s, about 24 days)",
                            st->repeat, INJECT_REPEAT_MAX);
    }
    if (!(st->repeat > 0) && st->crontab && *st->crontab) {
        inject_cron cron;
        rc = inject_cron_parse(st->crontab, &cron, err);
        if (rc != EDDY_OK) {
            return rc;
        }
    }
    return EDDY_OK;
}

/* ---- injecting ---- */

/* Appends "; text" to the error list 'buf'. */
static void inject_add_error(char *buf, size_t size, const char *text)
{
    size_t len = strlen(buf);
    if (len + 3 < size) {
        if (len)
            strcat(buf, "; ");
        strncat(buf, text, size - strlen(buf) - 1);
    }
}

/* Sets the properties on 'msg' (taken) and sends it; reports an error instead if any
 * property failed to evaluate (Node-RED joins the messages with "; "). */
static void inject_emit(eddy_node *node, struct inject_state *st, json_t *msg)
{
    char errors[EDDY_ERR_MSG_MAX] = "";
    json_t *props = st->props;
    json_t *user = json_object_get(msg, "__user_inject_props__");
    if (json_is_array(user)) {
        props = user;
    }
    json_incref(props);
    json_object_del(msg, "__user_inject_props__");

    size_t i;
    json_t *entry;
    json_array_foreach(props, i, entry)
    {
        const char *p = json_string_value(json_object_get(entry, "p"));
        if (!p || !*p) {
            continue;
        }
        json_t *vtj = json_object_get(entry, "vt");
        const char *vt = vtj ? json_string_value(vtj) : "str";
        json_t *v = json_object_get(entry, "v");
        eddy_err e;
        eddy_err_clear(&e);
        if (!vt || strcmp(vt, "jsonata") == 0) {
            if (vt && !eddy_json_truthy(v)) {
                continue; /* an empty expression sets nothing */
            }
            snprintf(e.msg, sizeof e.msg, "msg.%s: %s", p,
                     vt ? "JSONata expressions are not supported" : "bad value type");
            inject_add_error(errors, sizeof errors, e.msg);
            continue;
        }
        json_t *text = inject_value_text(v);
        json_t *value = NULL;
        int rc = text ? eddy_node_eval_typed(node, msg, vt, text, &value, &e)
                      : eddy_err_set(&e, EDDY_ENOMEM, "out of memory");
        json_decref(text);
        if (rc != EDDY_OK) {
            inject_add_error(errors, sizeof errors, e.msg);
            continue;
        }
        eddy_path path;
        if (eddy_path_parse(p, &path, &e) != EDDY_OK) {
            json_decref(value);
            inject_add_error(errors, sizeof errors, e.msg);
            continue;
        }
        if (value) {
            /* Like Node-RED, a property under a non-object is silently not set. */
            (void)eddy_path_set_take(msg, &path, value, NULL);
        } else {
            (void)eddy_path_delete(msg, &path); /* undefined removes the property */
        }
    }
    json_decref(props);

    if (errors[0]) {
        eddy_node_error(node, msg, "%s", errors);
        json_decref(msg);
        return;
    }
    eddy_node_send(node, 0, msg);
}

static void inject_emit_fresh(eddy_node *node, struct inject_state *st)
{
    json_t *msg = eddy_msg_new();
    if (!msg) {
        eddy_node_error(node, NULL, "out of memory creating a message");
        return;
    }
    inject_emit(node, st, msg);
}

/* A scheduled tick: injects unless the run queue is backlogged. */
static void inject_tick(eddy_node *node, struct inject_state *st)
{
    if (eddy_node_backlogged(node)) {
        if (!st->backlogged) {
            eddy_node_warn(node, "run queue backlogged: skipping scheduled injections");
        }
        st->backlogged = true;
        st->skipped++;
        return;
    }
    if (st->backlogged) {
        eddy_node_log(node, "injecting again after skipping %lu tick(s)", st->skipped);
        st->backlogged = false;
        st->skipped = 0;
    }
    inject_emit_fresh(node, st);
}

/* ---- timers ---- */

static int64_t inject_repeat_cb(eddy_node *node, void *state, void *data)
{
    struct inject_state *st = state;
    inject_tick(node, st);
    return st->repeat_ms;
}

/* Delay until the next crontab match after 'from_ms', remembering it as due. */
static int64_t inject_cron_delay(eddy_node *node, struct inject_state *st, int64_t from_ms)
{
    int64_t now = eddy_loop_wall(eddy_node_loop(node));
    int64_t next = inject_cron_next(&st->cron, from_ms > now ? from_ms : now);
    if (next < 0) {
        eddy_node_warn(node, "crontab '%s' never fires", st->crontab);
        return EDDY_TIMER_STOP;
    }
    st->cron_due = next;
    return next > now ? next - now : 0;
}

static int64_t inject_cron_cb(eddy_node *node, void *state, void *data)
{
    struct inject_state *st = state;
    inject_tick(node, st);
    /* A timer that fires a little early must not fire twice for the same second. */
    return inject_cron_delay(node, st, st->cron_due);
}

static void inject_schedule(eddy_node *node, struct inject_state *st)
{
    if (st->repeat_ms > 0) {
        if (!eddy_node_timer_start(node, st->repeat_ms, inject_repeat_cb, NULL, NULL)) {
            eddy_node_error(node, NULL, "out of memory starting the repeat timer");
        }
    } else if (st->use_cron) {
        int64_t delay = inject_cron_delay(node, st, 0);
        if (delay != EDDY_TIMER_STOP &&
            !eddy_node_timer_start(node, delay, inject_cron_cb, NULL, NULL)) {
            eddy_node_error(node, NULL, "out of memory starting the crontab timer");
        }
    }
}

static int64_t inject_once_cb(eddy_node *node, void *state, void *data)
{
    struct inject_state *st = state;
    inject_emit_fresh(node, st);
    inject_schedule(node, st);
    return EDDY_TIMER_STOP;
}

/* ---- life cycle ---- */

static int inject_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct inject_state *st = state;
    st->props = inject_normalise_props(st);
    if (!st->props) {
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    }
    if (st->repeat > 0 && st->repeat <= INJECT_REPEAT_MAX) {
        st->repeat_ms = (int64_t)llround(st->repeat * 1000.0);
        if (st->repeat_ms < 1) {
            st->repeat_ms = 1;
        }
    } else if (st->crontab && *st->crontab) {
        int rc = inject_cron_parse(st->crontab, &st->cron, err);
        if (rc != EDDY_OK) {
            json_decref(st->props);
            st->props = NULL;
            return rc;
        }
        st->use_cron = true;
    }
    if (st->once) {
        double delay = st->once_delay;
        if (!(delay != 0) || isnan(delay)) {
            delay = 0.1; /* Node-RED: (onceDelay || 0.1) */
        }
        int64_t ms = delay > 0 ? (int64_t)llround(delay * 1000.0) : 0;
        if (!eddy_node_timer_start(node, ms, inject_once_cb, NULL, NULL)) {
            json_decref(st->props);
            st->props = NULL;
            return eddy_err_set(err, EDDY_ENOMEM, "out of memory starting the once timer");
        }
    } else {
        inject_schedule(node, st);
    }
    return EDDY_OK;
}

/* A message on the input (the editor's button, or a wire) injects once, on that message:
 * its own properties stay, and __user_inject_props__ replaces the node's property list. */
static void inject_input(eddy_node *node, void *state, json_t *msg)
{
    inject_emit(node, state, msg);
}

/* The editor's inject button: POST inject/<id> with {} or {"__user_inject_props__":[...]}
 * (the dialog's Inject button, with properties not yet deployed). */
static int inject_command(eddy_node *node, void *state, const char *name, const json_t *arg,
                          eddy_err *err)
{
    if (strcmp(name, "inject") != 0)
        return eddy_err_set(err, EDDY_EUNSUPPORTED, "inject takes no command '%s'", name);
    json_t *msg = eddy_msg_new();
    if (!msg)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    json_t *props = json_object_get(arg, "__user_inject_props__");
    if (json_is_array(props))
        json_object_set(msg, "__user_inject_props__", props);
    inject_emit(node, state, msg);
    return EDDY_OK;
}

static int inject_close(eddy_node *node, void *state, bool removed)
{
    struct inject_state *st = state;
    json_decref(st->props);
    st->props = NULL;
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_inject = {
    .name = "inject",
    .inputs = 1,
    .outputs = 1,
    .flags = 0,
    .props = inject_props,
    .state_size = sizeof(struct inject_state),
    .help = "Injects a message into a flow: once after start (optionally after a delay), "
            "every 'repeat' seconds, on a crontab schedule (local time), or when a message "
            "reaches its input. Each message gets the properties listed in 'props', each a "
            "typed value (string, number, boolean, JSON, timestamp, buffer, environment "
            "variable, flow or global context); JSONata values are not supported. Scheduled "
            "ticks are skipped while the run queue is backlogged.",
    .validate = inject_validate,
    .setup = inject_setup,
    .input = inject_input,
    .command = inject_command,
    .close = inject_close,
};
