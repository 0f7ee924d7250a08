/* event_replay.c: eddy's "event-replay" node: on an input message, emits a range of the
 * event store (by position, by stream, by event time) into the flow, at full speed or paced
 * by the events' own times (speed 1 = as they happened, 10 = ten times faster), then a
 * final message on output 2. Rebuilding a read model, trying a new aggregation, replaying
 * an incident: all are this node wired to the flow under test.
 *
 * It never blocks the loop: it emits at most 'chunk' events per loop turn, pausing its
 * read transaction between turns, and holds back while the run queue is over its bound
 * (eddy_node_backlogged), resuming from on_drain. Requests that arrive during a replay wait
 * their turn; msg.stop ends the current one (its final message says stopped: true).
 *
 * The range comes from the node's properties, each of which msg.payload may override when
 * it is an object: {stream, from, to, fromTime, toTime, speed}. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "event_msg.h"
#include "mem.h"
#include "msg.h"
#include "node.h"
#include "store.h"

#define STATUS_DEBOUNCE_MS 500

struct rp_state {
    /* properties, filled by the engine */
    const char *stream;    /* "" = every stream ($all) */
    double from;           /* first position (0 = the start) */
    double to;             /* last position (0 = the end, as it is when the replay starts) */
    const char *from_time; /* event time bounds: ms or ISO 8601; "" = none */
    const char *to_time;
    double speed; /* 0 = full speed; else event time divided by speed */
    long chunk;   /* events per loop turn */

    /* run time */
    eddy_store *store;
    eddy_store_iter *it; /* the running replay; NULL when idle */
    json_t *request;     /* its input message (owned); becomes the final message */
    json_t *queue;       /* requests waiting their turn (owned array) */
    json_t *held;        /* paced: the next event, not due yet (owned); NULL if none */
    json_t *summary;     /* the range being replayed, for the final message (owned) */
    uint64_t count;      /* events emitted by the running replay */
    uint64_t total;      /* how many it expects (0 = unknown) */
    double pace;         /* speed of the running replay (0 = full) */
    bool paced_started;
    int64_t first_time; /* paced: event time of the first event */
    int64_t start_mono; /* paced: loop time when it was emitted */
    eddy_timer *timer;  /* next turn or next due event; NULL if none */
    eddy_timer *status; /* pending status report; NULL if none */
    bool draining;      /* waiting for on_drain */
};

static const eddy_prop rp_props[] = {
    {"stream", EDDY_PROP_STR, "\"\"", false, offsetof(struct rp_state, stream),
     "stream to replay; empty: every stream in log order", NULL},
    {"from", EDDY_PROP_NUM, "0", false, offsetof(struct rp_state, from),
     "first position (0: the start)", NULL},
    {"to", EDDY_PROP_NUM, "0", false, offsetof(struct rp_state, to), "last position (0: the end)",
     NULL},
    {"fromTime", EDDY_PROP_STR, "\"\"", false, offsetof(struct rp_state, from_time),
     "earliest event time (ms or ISO 8601); with a stream, events come in event time order", NULL},
    {"toTime", EDDY_PROP_STR, "\"\"", false, offsetof(struct rp_state, to_time),
     "latest event time (ms or ISO 8601)", NULL},
    {"speed", EDDY_PROP_NUM, "0", false, offsetof(struct rp_state, speed),
     "0: full speed; N: paced by event time, N times faster than it happened", NULL},
    {"chunk", EDDY_PROP_INT, "500", false, offsetof(struct rp_state, chunk),
     "events emitted per loop turn (keeps the loop responsive)", NULL},
    {0},
};

static int rp_validate(const eddy_node_type *type, const json_t *config, void *state, eddy_err *err)
{
    struct rp_state *st = state;
    int64_t t;
    if (*st->from_time && eddy_store_parse_time(st->from_time, &t) != EDDY_OK)
        return eddy_err_set(err, EDDY_EINVAL, "fromTime '%s' is not a time", st->from_time);
    if (*st->to_time && eddy_store_parse_time(st->to_time, &t) != EDDY_OK)
        return eddy_err_set(err, EDDY_EINVAL, "toTime '%s' is not a time", st->to_time);
    if (st->from < 0 || st->to < 0 || st->from != floor(st->from) || st->to != floor(st->to))
        return eddy_err_set(err, EDDY_EINVAL, "from and to are positions (whole numbers >= 0)");
    if (st->speed < 0 || !isfinite(st->speed))
        return eddy_err_set(err, EDDY_EINVAL, "speed must be 0 (full speed) or more");
    if (st->chunk < 1 || st->chunk > 100000)
        return eddy_err_set(err, EDDY_EINVAL, "chunk must be 1 to 100000");
    return EDDY_OK;
}

/* ---- status ---- */

static void status_now(eddy_node *node, struct rp_state *st)
{
    char text[96];
    if (!st->it)
        snprintf(text, sizeof(text), "done: %llu events", (unsigned long long)st->count);
    else if (st->total)
        snprintf(text, sizeof(text), "replaying %llu/%llu (%.0f%%)", (unsigned long long)st->count,
                 (unsigned long long)st->total,
                 st->count >= st->total ? 100.0 : 100.0 * (double)st->count / (double)st->total);
    else
        snprintf(text, sizeof(text), "replaying %llu", (unsigned long long)st->count);
    eddy_node_set_status(node, st->it ? "blue" : "green", st->it ? "ring" : "dot", text);
}

static int64_t status_cb(eddy_node *node, void *state, void *data)
{
    status_now(node, state);
    return EDDY_TIMER_STOP;
}

static void status_gone(void *data)
{
    ((struct rp_state *)data)->status = NULL;
}

/* ---- one replay ---- */

static void rp_start_next(eddy_node *node, struct rp_state *st);
static void rp_pump(eddy_node *node, void *state);

/* Ends the running replay: the request message goes out on output 2 as the summary. */
static void rp_finish(eddy_node *node, struct rp_state *st, bool stopped, const char *error)
{
    eddy_store_iter_close(st->it);
    st->it = NULL;
    json_decref(st->held);
    st->held = NULL;
    if (st->timer) {
        eddy_node_timer_stop(node, st->timer);
        st->timer = NULL;
    }
    json_t *msg = st->request;
    st->request = NULL;
    json_t *sum = st->summary;
    st->summary = NULL;
    json_object_set_new(sum, "count", json_integer((json_int_t)st->count));
    json_object_set_new(sum, "stopped", json_boolean(stopped));
    if (error) {
        json_object_set_new(sum, "error", json_string(error));
        eddy_node_error(node, msg, "replay failed: %s", error);
    }
    json_object_set_new(msg, "payload", sum);
    json_object_set_new(msg, "complete", json_true());
    status_now(node, st);
    eddy_node_done(node, msg);
    eddy_node_send(node, 1, msg);
}

static int64_t turn_cb(eddy_node *node, void *state, void *data)
{
    struct rp_state *st = state;
    st->timer = NULL;
    rp_pump(node, st);
    return EDDY_TIMER_STOP;
}

static void later(eddy_node *node, struct rp_state *st, int64_t ms)
{
    eddy_store_iter_pause(st->it);
    st->timer = eddy_node_timer_start(node, ms, turn_cb, NULL, NULL);
    if (!st->timer)
        rp_finish(node, st, false, "out of memory");
}

/* Emits what is due, up to one chunk; then schedules itself. */
static void rp_pump(eddy_node *node, void *state)
{
    struct rp_state *st = state;
    st->draining = false;
    if (!st->it || st->timer)
        return;
    long budget = st->chunk;
    eddy_err err;
    for (;;) {
        if (eddy_node_backlogged(node)) {
            eddy_store_iter_pause(st->it);
            st->draining = true; /* rp_pump again from on_drain */
            return;
        }
        json_t *m = st->held;
        st->held = NULL;
        if (!m) {
            if (budget-- <= 0) {
                later(node, st, 0);
                return;
            }
            eddy_store_record rec;
            eddy_err_clear(&err);
            int rc = eddy_store_iter_next(st->it, &rec, &err);
            if (rc == 0) {
                rp_finish(node, st, false, NULL);
                rp_start_next(node, st);
                return;
            }
            if (rc < 0 || !(m = event_msg_from_record(&rec, &err))) {
                rp_finish(node, st, false, err.msg);
                rp_start_next(node, st);
                return;
            }
        }
        if (st->pace > 0) {
            int64_t t = json_integer_value(json_object_get(m, "eventTime"));
            int64_t now = eddy_loop_now(eddy_node_loop(node));
            if (!st->paced_started) {
                st->paced_started = true;
                st->first_time = t;
                st->start_mono = now;
            }
            int64_t due = st->start_mono + (int64_t)floor((double)(t - st->first_time) / st->pace);
            if (due > now) {
                st->held = m;
                later(node, st, due - now);
                return;
            }
        }
        st->count++;
        eddy_node_send(node, 0, m);
        if (!st->status)
            st->status =
                eddy_node_timer_start(node, STATUS_DEBOUNCE_MS, status_cb, st, status_gone);
    }
}

/* Reads a range bound: from msg.payload when it is an object and has 'key', else the
 * node's property. */
static json_t * override(json_t *req, const char *key)
{
    json_t *p = json_object_get(req, "payload");
    return json_is_object(p) ? json_object_get(p, key) : NULL;
}

static bool time_bound(json_t *req, const char *key, const char *prop, bool *has, int64_t *t)
{
    json_t *v = override(req, key);
    if (v && !json_is_null(v) && !(json_is_string(v) && !*json_string_value(v))) {
        *has = true;
        return event_msg_time(v, t);
    }
    if (!*prop)
        return true;
    *has = true;
    return eddy_store_parse_time(prop, t) == EDDY_OK;
}

/* Starts the replay 'req' asks for. On a bad request, answers it on output 2 at once. */
static void rp_begin(eddy_node *node, struct rp_state *st, json_t *req)
{
    eddy_store_query q = {0};
    eddy_err err;
    eddy_err_clear(&err);
    const char *problem = NULL;
    json_t *v;
    char stream[EDDY_STORE_NAME_MAX + 1];
    snprintf(stream, sizeof(stream), "%s", st->stream);
    if ((v = override(req, "stream"))) {
        if (json_is_string(v) && json_string_length(v) <= EDDY_STORE_NAME_MAX)
            snprintf(stream, sizeof(stream), "%s", json_string_value(v));
        else if (json_is_null(v))
            stream[0] = '\0'; /* every stream */
        else
            problem = "stream must be a string (or null for every stream)";
    }
    q.stream = *stream ? stream : NULL;
    q.from_position = (uint64_t)st->from;
    q.to_position = (uint64_t)st->to;
    if ((v = override(req, "from")) && !event_msg_position(v, &q.from_position))
        problem = "from must be a position (a whole number)";
    if ((v = override(req, "to")) && !event_msg_position(v, &q.to_position))
        problem = "to must be a position (a whole number)";
    bool has_from = false, has_to = false;
    int64_t from_t = INT64_MIN, to_t = INT64_MAX;
    if (!time_bound(req, "fromTime", st->from_time, &has_from, &from_t) ||
        !time_bound(req, "toTime", st->to_time, &has_to, &to_t))
        problem = "fromTime and toTime must be times (ms or ISO 8601)";
    q.has_time = has_from || has_to;
    q.from_time = from_t;
    q.to_time = to_t;
    q.by_time = q.has_time && q.stream;
    st->pace = st->speed;
    if ((v = override(req, "speed"))) {
        if (!json_is_number(v) || json_number_value(v) < 0)
            problem = "speed must be a number >= 0";
        else
            st->pace = json_number_value(v);
    }
    st->request = req;
    st->summary = json_object();
    json_object_set_new(st->summary, "stream", q.stream ? json_string(q.stream) : json_null());
    json_object_set_new(st->summary, "from", json_integer((json_int_t)q.from_position));
    json_object_set_new(st->summary, "to", json_integer((json_int_t)q.to_position));
    if (has_from)
        json_object_set_new(st->summary, "fromTime", json_integer(from_t));
    if (has_to)
        json_object_set_new(st->summary, "toTime", json_integer(to_t));
    st->count = 0;
    st->paced_started = false;
    if (!problem && !(st->it = eddy_store_iter_open(st->store, &q, &err)))
        problem = err.msg;
    if (problem) {
        /* st->it is NULL: rp_finish only reports */
        rp_finish(node, st, false, problem);
        return;
    }
    /* What to expect, for the status: exact for position ranges of $all and whole streams. */
    uint64_t last = eddy_store_last_position(st->store);
    st->total = 0;
    if (!q.has_time && !q.stream) {
        uint64_t from = q.from_position ? q.from_position : 1;
        uint64_t to = q.to_position && q.to_position < last ? q.to_position : last;
        st->total = to >= from ? to - from + 1 : 0;
    } else if (!q.has_time && !q.from_position && !q.to_position) {
        int64_t ver;
        if (eddy_store_stream_version(st->store, q.stream, &ver, NULL) == EDDY_OK)
            st->total = (uint64_t)(ver + 1);
    }
    status_now(node, st);
    later(node, st, 0);
}

static void rp_start_next(eddy_node *node, struct rp_state *st)
{
    while (!st->it && !st->request && json_array_size(st->queue) > 0) {
        json_t *req = json_incref(json_array_get(st->queue, 0));
        json_array_remove(st->queue, 0);
        rp_begin(node, st, req);
    }
}

static void rp_input(eddy_node *node, void *state, json_t *msg)
{
    struct rp_state *st = state;
    if (eddy_json_truthy(json_object_get(msg, "stop"))) {
        if (st->it)
            rp_finish(node, st, true, NULL);
        eddy_node_done(node, msg);
        json_decref(msg);
        rp_start_next(node, st);
        return;
    }
    json_array_append_new(st->queue, msg);
    rp_start_next(node, st);
}

static int rp_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct rp_state *st = state;
    st->store = eddy_node_store(node);
    if (!st->store)
        return eddy_err_set(err, EDDY_EINVAL, "no event store: run eddy with --data DIR");
    st->queue = json_array();
    if (!st->queue)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    eddy_node_on_drain(node, rp_pump);
    return EDDY_OK;
}

static int rp_close(eddy_node *node, void *state, bool removed)
{
    struct rp_state *st = state;
    eddy_store_iter_close(st->it);
    st->it = NULL;
    json_decref(st->held);
    json_decref(st->request);
    json_decref(st->summary);
    json_decref(st->queue);
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_event_replay = {
    .name = "event-replay",
    .inputs = 1,
    .outputs = 2,
    .flags = EDDY_NODE_ASYNC_DONE | EDDY_NODE_STORE,
    .props = rp_props,
    .state_size = sizeof(struct rp_state),
    .help = "On an input message, emits a range of stored events (by position, stream or event "
            "time) as messages on output 1: payload is the event's body and topic its stream, "
            "with position, version, eventType, eventId, eventTime and ingestTime. Full speed or "
            "paced by event time (speed N = N times faster). When done the input message "
            "leaves on output 2 with payload {count, stopped, ...}. msg.payload {stream, from, "
            "to, fromTime, toTime, speed} overrides the properties; msg.stop stops.",
    .validate = rp_validate,
    .setup = rp_setup,
    .input = rp_input,
    .close = rp_close,
};
