/* event_store.c: eddy's "event-store" node: appends each message to the event store as one
 * event and passes the message on once the append is committed (acks follow commits).
 * Where the stream, type, id, time and expected version come from is configured as message
 * property paths ("payload.deviceId"); the type may be a fixed name instead.
 *
 * Output 1: the message after its event is committed, with msg.position, msg.version and
 * msg.eventId (msg.duplicate = true when the id was stored before: redelivery).
 * Output 2: what was refused, with msg.reason: version conflicts (and msg.currentVersion),
 * ids stored in another stream, and input that went to $deadletter (msg.deadletter is its
 * position there). Nothing is dropped: every message leaves by one of the two outputs.
 *
 * Each message waits in a store waiter until its group commits (invariant: one waiter per
 * message held, freed by its callback or by close). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "event_msg.h"
#include "mem.h"
#include "msg.h"
#include "node.h"
#include "store.h"

#define STATUS_DEBOUNCE_MS 200

struct es_state {
    /* properties, filled by the engine */
    const char *stream;           /* message property path */
    const char *event_type;       /* fixed name, or a path when event_type_type is "msg" */
    const char *event_type_type;  /* "str" or "msg" */
    const char *event_id;         /* path; "" = a generated id */
    const char *event_time;       /* path; "" = the ingest time */
    const char *expected_version; /* path; "" = any */
    const char *body;             /* path of the body, "payload" by default */
    const char *body_format;      /* "json": a string body is JSON text; "value": as is */
    const char *invalid;          /* path of a reason the flow found the input bad; "" = none */

    /* set up */
    eddy_store *store;
    eddy_path stream_path, type_path, id_path, time_path, expected_path, body_path, invalid_path;
    bool type_from_msg, body_is_text, has_invalid;

    /* run time */
    size_t waiting;   /* messages waiting for their commit */
    uint64_t stored;  /* events appended (or found) */
    uint64_t refused; /* messages sent to output 2 */
    uint64_t last_position;
    eddy_timer *status; /* pending status report; NULL if none */
};

/* A message waiting for its commit. Owned by its store waiter. */
typedef struct es_entry {
    eddy_node *node;
    struct es_state *st;
    json_t *msg; /* owned */
    int output;  /* 0 stored, 1 refused */
} es_entry;

static const eddy_prop es_props[] = {
    {"stream", EDDY_PROP_STR, "\"topic\"", false, offsetof(struct es_state, stream),
     "message property with the stream name (a device, an order): payload.deviceId", NULL},
    {"eventType", EDDY_PROP_STR, "\"event\"", false, offsetof(struct es_state, event_type),
     "event type: a fixed name, or a message property when eventTypeType is msg", NULL},
    {"eventTypeType", EDDY_PROP_STR, "\"str\"", false, offsetof(struct es_state, event_type_type),
     "str (eventType is the name) or msg (eventType is a property)", "|str|msg|"},
    {"eventId", EDDY_PROP_STR, "\"\"", false, offsetof(struct es_state, event_id),
     "message property with the event id (redelivery with the same id is not stored twice); "
     "empty: a new id for each message",
     NULL},
    {"eventTime", EDDY_PROP_STR, "\"\"", false, offsetof(struct es_state, event_time),
     "message property with the event time (ms or ISO 8601); empty: the ingest time", NULL},
    {"expectedVersion", EDDY_PROP_STR, "\"\"", false, offsetof(struct es_state, expected_version),
     "message property with the expected stream version (N, no_stream, stream_exists, any); "
     "empty: any",
     NULL},
    {"body", EDDY_PROP_STR, "\"payload\"", false, offsetof(struct es_state, body),
     "message property stored as the event's body", NULL},
    {"bodyFormat", EDDY_PROP_STR, "\"json\"", false, offsetof(struct es_state, body_format),
     "json: a string body is JSON text (invalid text goes to $deadletter); value: any value is "
     "stored as it is",
     "|json|value|"},
    {"invalid", EDDY_PROP_STR, "\"\"", false, offsetof(struct es_state, invalid),
     "message property with the reason a flow found the input bad (validation): a non-empty "
     "string there sends the event to $deadletter with that reason; empty: not used",
     NULL},
    {0},
};

static int parse_path(const char *prop, const char *what, eddy_path *path, bool *set, eddy_err *err)
{
    *set = *prop != '\0';
    if (!*set)
        return EDDY_OK;
    eddy_err perr;
    if (eddy_path_parse(event_msg_path(prop), path, &perr) != EDDY_OK)
        return eddy_err_set(err, EDDY_EINVAL, "%s '%s': %s", what, prop, perr.msg);
    return EDDY_OK;
}

static int es_paths(struct es_state *st, bool *has, eddy_err *err)
{
    bool stream_set, body_set;
    st->type_from_msg = strcmp(st->event_type_type, "msg") == 0;
    int rc;
    if ((rc = parse_path(st->stream, "stream", &st->stream_path, &stream_set, err)) ||
        (rc = parse_path(st->type_from_msg ? st->event_type : "", "eventType", &st->type_path,
                         &has[0], err)) ||
        (rc = parse_path(st->event_id, "eventId", &st->id_path, &has[1], err)) ||
        (rc = parse_path(st->event_time, "eventTime", &st->time_path, &has[2], err)) ||
        (rc = parse_path(st->expected_version, "expectedVersion", &st->expected_path, &has[3],
                         err)) ||
        (rc = parse_path(st->body, "body", &st->body_path, &body_set, err)) ||
        (rc = parse_path(st->invalid, "invalid", &st->invalid_path, &st->has_invalid, err)))
        return rc;
    if (!stream_set)
        return eddy_err_set(err, EDDY_EINVAL, "stream: a message property is needed");
    if (!body_set)
        return eddy_err_set(err, EDDY_EINVAL, "body: a message property is needed");
    if (st->type_from_msg && !has[0])
        return eddy_err_set(err, EDDY_EINVAL, "eventType: a message property is needed");
    if (!st->type_from_msg && strlen(st->event_type) > EDDY_STORE_NAME_MAX)
        return eddy_err_set(err, EDDY_EINVAL, "eventType is longer than %d bytes",
                            EDDY_STORE_NAME_MAX);
    return EDDY_OK;
}

static int es_validate(const eddy_node_type *type, const json_t *config, void *state, eddy_err *err)
{
    struct es_state copy = *(struct es_state *)state;
    bool has[4];
    return es_paths(&copy, has, err);
}

/* ---- status ---- */

static int64_t status_cb(eddy_node *node, void *state, void *data)
{
    struct es_state *st = state;
    char text[96];
    snprintf(text, sizeof(text), "%llu stored, %llu refused, last %llu",
             (unsigned long long)st->stored, (unsigned long long)st->refused,
             (unsigned long long)st->last_position);
    eddy_node_set_status(node, st->refused ? "yellow" : "green", "dot", text);
    return EDDY_TIMER_STOP;
}

static void status_gone(void *data)
{
    struct es_state *st = data;
    st->status = NULL;
}

static void status_later(eddy_node *node, struct es_state *st)
{
    if (!st->status)
        st->status = eddy_node_timer_start(node, STATUS_DEBOUNCE_MS, status_cb, st, status_gone);
}

/* ---- committing ---- */

static void es_committed(eddy_store *store, int status, const char *error, void *data)
{
    es_entry *e = data;
    struct es_state *st = e->st;
    if (status != EDDY_OK && e->output == 0) {
        /* The group was lost: nothing of it is stored, so this is not an ack. */
        json_object_del(e->msg, "position");
        json_object_del(e->msg, "version");
        json_object_del(e->msg, "duplicate");
        json_object_set_new(e->msg, "reason", json_string(error ? error : "commit failed"));
        eddy_node_error(e->node, e->msg, "event not stored: %s", error ? error : "commit failed");
        e->output = 1;
    }
    if (e->output == 0) {
        st->stored++;
        json_int_t pos = json_integer_value(json_object_get(e->msg, "position"));
        if ((uint64_t)pos > st->last_position)
            st->last_position = (uint64_t)pos;
    } else {
        st->refused++;
    }
    st->waiting--;
    eddy_node_done(e->node, e->msg);
    eddy_node_send(e->node, e->output, e->msg);
    status_later(e->node, st);
    eddy_free(e);
}

/* ---- input ---- */

/* The stream name from the message: strings as they are, numbers as JavaScript prints
 * them. NULL when missing or of another type ('buf' holds number text). */
static const char *stream_of(json_t *v, char *buf)
{
    if (json_is_string(v))
        return json_string_value(v);
    if (json_is_number(v))
        return eddy_format_number(json_number_value(v), buf);
    return NULL;
}

static void es_input(eddy_node *node, void *state, json_t *msg)
{
    struct es_state *st = state;
    char sbuf[32], ibuf[32];
    eddy_store_event ev = {.time = EDDY_STORE_TIME_NONE};
    int64_t expected = EDDY_STORE_ANY;
    const char *reason = NULL;

    const char *stream = stream_of(eddy_path_get(msg, &st->stream_path), sbuf);
    json_t *sv = eddy_path_get(msg, &st->stream_path);
    if (stream && json_is_string(sv) && strlen(stream) != json_string_length(sv))
        ev.invalid = "stream name contains NUL";
    ev.type = st->event_type;
    if (st->type_from_msg) {
        json_t *tv = eddy_path_get(msg, &st->type_path);
        ev.type = json_is_string(tv) ? json_string_value(tv) : NULL;
        if (tv && !json_is_string(tv))
            ev.invalid = "event type is not a string";
    }
    if (*st->event_id) {
        json_t *iv = eddy_path_get(msg, &st->id_path);
        ev.id = stream_of(iv, ibuf);
        if (iv && !ev.id)
            ev.invalid = "event id is not a string or number";
    }
    if (*st->event_time) {
        json_t *tv = eddy_path_get(msg, &st->time_path);
        if (tv && !event_msg_time(tv, &ev.time))
            ev.invalid = "invalid event time";
    }
    if (st->has_invalid) {
        /* The flow's own verdict (a validation step): kept in $deadletter with its reason,
         * which lives in 'msg' until the append below has copied it. */
        json_t *why = eddy_path_get(msg, &st->invalid_path);
        if (json_is_string(why) && json_string_length(why) > 0)
            ev.invalid = json_string_value(why);
    }
    if (*st->expected_version) {
        json_t *xv = eddy_path_get(msg, &st->expected_path);
        if (xv && !event_msg_expected(xv, &expected))
            reason = "invalid expected version (a number, any, no_stream or stream_exists)";
    }
    char *text = NULL;
    json_t *body = eddy_path_get(msg, &st->body_path);
    if (json_is_string(body) && st->body_is_text) {
        ev.data = json_string_value(body);
        ev.data_len = json_string_length(body);
    } else if (body) {
        text = eddy_json_dumps(body, 0);
        ev.data = text;
        ev.data_len = text ? strlen(text) : 0;
        if (!text)
            reason = "out of memory";
    }

    es_entry *e = eddy_calloc(1, sizeof(*e));
    if (!e) {
        eddy_free(text);
        eddy_node_error(node, msg, "out of memory storing an event");
        eddy_node_done(node, msg);
        json_decref(msg);
        return;
    }
    *e = (es_entry){node, st, msg, 1};
    eddy_err err;
    eddy_err_clear(&err);
    eddy_store_result res = {0};
    int rc =
        reason ? EDDY_EINVAL : eddy_store_append(st->store, stream, expected, &ev, 1, &res, &err);
    eddy_free(text);
    if (rc == EDDY_OK && ev.outcome == EDDY_STORE_DEADLETTERED) {
        json_object_set_new(msg, "reason", json_string(ev.reason));
        json_object_set_new(msg, "deadletter", json_integer((json_int_t)ev.position));
    } else if (rc == EDDY_OK) {
        e->output = 0;
        json_object_set_new(msg, "position", json_integer((json_int_t)ev.position));
        json_object_set_new(msg, "version", json_integer(ev.version));
        json_object_set_new(msg, "eventId", json_string(ev.id && *ev.id ? ev.id : ev.made_id));
        if (ev.outcome == EDDY_STORE_EXISTING)
            json_object_set_new(msg, "duplicate", json_true());
    } else {
        json_object_set_new(msg, "reason", json_string(reason ? reason : err.msg));
        if (rc == EDDY_ECONFLICT)
            json_object_set_new(msg, "currentVersion", json_integer(res.current_version));
        if (rc != EDDY_ECONFLICT && rc != EDDY_EDUPLICATE && rc != EDDY_EINVAL)
            eddy_node_error(node, msg, "event not stored: %s", err.msg);
    }
    /* Even refusals wait for the commit point, so both outputs keep the input's order. */
    if (eddy_store_when_committed(st->store, es_committed, e, &err) != EDDY_OK) {
        eddy_node_error(node, msg, "%s", err.msg);
        eddy_node_done(node, msg);
        json_decref(msg);
        eddy_free(e);
        return;
    }
    st->waiting++;
}

/* ---- life cycle ---- */

static int es_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct es_state *st = state;
    bool has[4];
    int rc = es_paths(st, has, err);
    if (rc != EDDY_OK)
        return rc;
    st->body_is_text = strcmp(st->body_format, "json") == 0;
    st->store = eddy_node_store(node);
    if (!st->store)
        return eddy_err_set(err, EDDY_EINVAL, "no event store: run eddy with --data DIR");
    return EDDY_OK;
}

static int es_close(eddy_node *node, void *state, bool removed)
{
    struct es_state *st = state;
    /* Commit what is pending now, so every held message leaves (or is refused) before the
     * node goes away; its waiters point at this node. */
    if (st->waiting > 0)
        eddy_store_commit(st->store, NULL);
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_event_store = {
    .name = "event-store",
    .inputs = 1,
    .outputs = 2,
    .flags = EDDY_NODE_ASYNC_DONE | EDDY_NODE_STORE,
    .props = es_props,
    .state_size = sizeof(struct es_state),
    .help = "Appends each message to the event store as one event (stream, type, id, time and "
            "expected version from message properties) and sends it on output 1 once the "
            "append is committed, with msg.position, msg.version and msg.eventId "
            "(msg.duplicate when the id was stored before). Refused appends (version "
            "conflicts, ids of another stream) and input that went to $deadletter leave on "
            "output 2 with msg.reason.",
    .validate = es_validate,
    .setup = es_setup,
    .input = es_input,
    .close = es_close,
};
