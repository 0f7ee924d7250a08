/* event_subscribe.c: eddy's "event-subscribe" node: a subscription that follows the event
 * store. It starts after its stored checkpoint (or at the beginning or the end of the log
 * the first time), catches up through what is stored, then follows live: every commit that
 * stores events wakes it. Its checkpoint is stored in the event store, so after a restart
 * it resumes where it stopped.
 *
 * No gap and no duplicate at the switch from catch-up to live: there is no switch in the
 * data path. The node always reads the store after the last event it emitted (an iterator
 * that resumes after its last key); a commit only wakes it. Events appended while it
 * catches up are simply read in their turn.
 *
 * The checkpoint is the last event handed to the flow; it is written into the store's
 * group at most every 'checkpointMs' ms and when the node closes. After a clean stop the
 * subscription resumes exactly; after a crash it emits again what came after the last
 * durable checkpoint (at least once).
 *
 * Like event-replay it emits at most 'chunk' events per loop turn and holds back while the
 * run queue is over its bound. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "event_msg.h"
#include "mem.h"
#include "msg.h"
#include "node.h"
#include "store.h"

#define STATUS_DEBOUNCE_MS 500

struct sub_state {
    /* properties, filled by the engine */
    const char *subscription; /* checkpoint name; "" = the node id */
    const char *stream;       /* "" = every stream ($all) */
    const char *start;        /* without a checkpoint: "beginning" or "end" */
    long chunk;               /* events per loop turn */
    double checkpoint_ms;     /* longest time between checkpoint writes; 0 = every turn */

    /* run time */
    eddy_store *store;
    eddy_store_iter *it;
    char name[EDDY_STORE_NAME_MAX + 1]; /* checkpoint name in the store */
    eddy_store_checkpoint cp;           /* last event emitted */
    bool dirty;                         /* cp not written yet */
    bool live;                          /* caught up */
    bool draining;                      /* waiting for on_drain */
    bool listening;
    uint64_t emitted;
    eddy_timer *turn;     /* next pump; NULL if none */
    eddy_timer *cp_timer; /* next checkpoint write; NULL if none */
    eddy_timer *status;   /* pending status report; NULL if none */
};

static const eddy_prop sub_props[] = {
    {"subscription", EDDY_PROP_STR, "\"\"", false, offsetof(struct sub_state, subscription),
     "name under which the checkpoint is stored; empty: the node id", NULL},
    {"stream", EDDY_PROP_STR, "\"\"", false, offsetof(struct sub_state, stream),
     "stream to follow; empty: every stream in log order", NULL},
    {"start", EDDY_PROP_STR, "\"beginning\"", false, offsetof(struct sub_state, start),
     "where a new subscription (no checkpoint yet) starts: beginning or end", "|beginning|end|"},
    {"chunk", EDDY_PROP_INT, "500", false, offsetof(struct sub_state, chunk),
     "events emitted per loop turn", NULL},
    {"checkpointMs", EDDY_PROP_NUM, "1000", false, offsetof(struct sub_state, checkpoint_ms),
     "longest time in ms between checkpoint writes (0: after every turn)", NULL},
    {0},
};

static int sub_validate(const eddy_node_type *type, const json_t *config, void *state,
                        eddy_err *err)
{
    struct sub_state *st = state;
    if (st->chunk < 1 || st->chunk > 100000)
        return eddy_err_set(err, EDDY_EINVAL, "chunk must be 1 to 100000");
    if (st->checkpoint_ms < 0)
        return eddy_err_set(err, EDDY_EINVAL, "checkpointMs must be 0 or more");
    if (strlen(st->subscription) > EDDY_STORE_NAME_MAX - 4 ||
        strlen(st->stream) > EDDY_STORE_NAME_MAX)
        return eddy_err_set(err, EDDY_EINVAL, "subscription or stream name is too long");
    return EDDY_OK;
}

/* ---- status and checkpoint ---- */

static int64_t status_cb(eddy_node *node, void *state, void *data)
{
    struct sub_state *st = state;
    char text[96];
    snprintf(text, sizeof(text), "%s, at %llu (%llu emitted)", st->live ? "live" : "catching up",
             (unsigned long long)st->cp.position, (unsigned long long)st->emitted);
    eddy_node_set_status(node, st->live ? "green" : "blue", st->live ? "dot" : "ring", text);
    return EDDY_TIMER_STOP;
}

static void status_gone(void *data)
{
    ((struct sub_state *)data)->status = NULL;
}

static void status_later(eddy_node *node, struct sub_state *st)
{
    if (!st->status)
        st->status = eddy_node_timer_start(node, STATUS_DEBOUNCE_MS, status_cb, st, status_gone);
}

static void write_checkpoint(eddy_node *node, struct sub_state *st)
{
    if (!st->dirty)
        return;
    eddy_err err;
    if (eddy_store_checkpoint_set(st->store, st->name, &st->cp, &err) != EDDY_OK)
        eddy_node_error(node, NULL, "cannot store the checkpoint: %s", err.msg);
    else
        st->dirty = false;
}

static int64_t cp_cb(eddy_node *node, void *state, void *data)
{
    struct sub_state *st = state;
    st->cp_timer = NULL;
    write_checkpoint(node, st);
    return EDDY_TIMER_STOP;
}

/* ---- reading ---- */

static void sub_pump(eddy_node *node, void *state);

static int64_t turn_cb(eddy_node *node, void *state, void *data)
{
    struct sub_state *st = state;
    st->turn = NULL;
    sub_pump(node, st);
    return EDDY_TIMER_STOP;
}

static void schedule(eddy_node *node, struct sub_state *st)
{
    if (!st->turn && !st->draining)
        st->turn = eddy_node_timer_start(node, 0, turn_cb, NULL, NULL);
}

static void sub_pump(eddy_node *node, void *state)
{
    struct sub_state *st = state;
    st->draining = false;
    if (!st->it || st->turn)
        return;
    long budget = st->chunk;
    uint64_t before = st->emitted;
    eddy_err err;
    for (;;) {
        if (eddy_node_backlogged(node)) {
            st->draining = true; /* sub_pump again from on_drain */
            break;
        }
        if (budget-- <= 0) {
            schedule(node, st);
            break;
        }
        eddy_store_record rec;
        eddy_err_clear(&err);
        int rc = eddy_store_iter_next(st->it, &rec, &err);
        if (rc == 0) {
            st->live = true; /* a commit listener wakes us */
            break;
        }
        json_t *m = rc > 0 ? event_msg_from_record(&rec, &err) : NULL;
        if (!m) {
            /* A damaged record: say so and stop here, rather than skip it silently. */
            eddy_node_error(node, NULL, "subscription stopped: %s", err.msg);
            eddy_node_set_status(node, "red", "ring", "stopped: damaged event");
            eddy_store_iter_close(st->it);
            st->it = NULL;
            break;
        }
        st->cp.position = rec.position;
        st->cp.version = st->it && *st->stream ? rec.version : -1;
        st->dirty = true;
        st->emitted++;
        eddy_node_send(node, 0, m);
    }
    eddy_store_iter_pause(st->it);
    if (st->emitted != before) {
        status_later(node, st);
        if (st->checkpoint_ms <= 0)
            write_checkpoint(node, st);
        else if (!st->cp_timer)
            st->cp_timer =
                eddy_node_timer_start(node, (int64_t)st->checkpoint_ms, cp_cb, NULL, NULL);
    }
}

static void on_commit(eddy_store *store, uint64_t last, void *data)
{
    eddy_node *node = data;
    struct sub_state *st = eddy_node_state(node);
    if (st->it && last > st->cp.position)
        schedule(node, st);
}

/* ---- life cycle ---- */

static int sub_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct sub_state *st = state;
    st->store = eddy_node_store(node);
    if (!st->store)
        return eddy_err_set(err, EDDY_EINVAL, "no event store: run eddy with --data DIR");
    snprintf(st->name, sizeof(st->name), "sub:%s",
             *st->subscription ? st->subscription : eddy_node_id(node));
    int rc = eddy_store_checkpoint_get(st->store, st->name, &st->cp, err);
    if (rc == EDDY_ENOTFOUND) {
        eddy_err_clear(err);
        st->cp = (eddy_store_checkpoint){0, -1};
        if (strcmp(st->start, "end") == 0) {
            st->cp.position = eddy_store_last_position(st->store);
            if (*st->stream &&
                (rc = eddy_store_stream_version(st->store, st->stream, &st->cp.version, err)))
                return rc;
        }
        st->dirty = true; /* remember where it started */
    } else if (rc != EDDY_OK) {
        return rc;
    }
    eddy_store_query q = {0};
    if (*st->stream) {
        q.stream = st->stream;
        q.has_version = true;
        q.from_version = st->cp.version + 1;
        q.to_version = INT64_MAX;
    } else {
        q.from_position = st->cp.position + 1;
    }
    if (!(st->it = eddy_store_iter_open(st->store, &q, err)))
        return err ? err->code : EDDY_EIO;
    if (eddy_store_listen(st->store, on_commit, node, err) != EDDY_OK) {
        eddy_store_iter_close(st->it);
        st->it = NULL;
        return EDDY_ENOMEM;
    }
    st->listening = true;
    eddy_node_on_drain(node, sub_pump);
    write_checkpoint(node, st);
    schedule(node, st);
    return EDDY_OK;
}

static int sub_close(eddy_node *node, void *state, bool removed)
{
    struct sub_state *st = state;
    if (st->listening)
        eddy_store_unlisten(st->store, on_commit, node);
    if (st->it)
        write_checkpoint(node, st);
    eddy_store_iter_close(st->it);
    st->it = NULL;
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_event_subscribe = {
    .name = "event-subscribe",
    .inputs = 0,
    .outputs = 1,
    .flags = EDDY_NODE_STORE,
    .props = sub_props,
    .state_size = sizeof(struct sub_state),
    .help = "Follows the event store: emits every stored event (of one stream, or all) after "
            "its checkpoint, catching up first and then live as appends commit. The "
            "checkpoint is kept in the store under the subscription's name, so a restart "
            "resumes where it stopped. Messages are as event-replay's.",
    .validate = sub_validate,
    .setup = sub_setup,
    .close = sub_close,
};
