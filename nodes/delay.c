/* delay.c: Node-RED's "delay" node: holds each message for a fixed, per-message (msg.delay)
 * or random time; or limits the rate of a flow, queueing or dropping what comes too fast
 * (all messages, or the latest per topic, or bursts). msg.reset empties it and msg.flush
 * releases held messages now. Timing uses the node's timers (the loop's clock).
 *
 * Every message it takes is finished exactly once: eddy_node_done when it is sent on or
 * discarded (reset, flush of an empty message, close); when the bound 'maxQueue' (eddy's;
 * Node-RED has none by default) would be passed, the new message is refused with an error
 * that catch nodes see, never dropped silently.
 *
 * Held messages in the delay modes each have a timer whose data is a delay_entry; the
 * timer's finalizer frees the entry, so an entry lives exactly as long as its timer,
 * whoever stops it (the node, or the engine when the node closes). */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "msg.h"
#include "node.h"

#define DELAY_MAX_QUEUE_DEFAULT  "100000"
#define DELAY_STATUS_DEBOUNCE_MS 500

typedef enum delay_mode {
    MODE_DELAY,  /* fixed delay */
    MODE_DELAYV, /* msg.delay, else the fixed delay */
    MODE_RANDOM, /* uniformly between randomFirst and randomLast */
    MODE_RATE,   /* one message per rate period; queue or drop the rest */
    MODE_QUEUE,  /* latest message per topic, one topic per rate period */
    MODE_TIMED,  /* latest message per topic, all topics every rate period */
    MODE_BURST,  /* at most 'rate' messages per period; drop the rest */
} delay_mode;

struct delay_state;

/* A message held in the delay/delayv/random modes: on the node's list while its timer
 * runs. Freed by the timer's finalizer (entry_gone). */
typedef struct delay_entry {
    json_t *msg;              /* held message (owned); NULL once released */
    eddy_timer *timer;        /* valid while 'linked' */
    struct delay_state *st;   /* the list's owner */
    struct delay_entry *prev; /* towards older entries */
    struct delay_entry *next; /* towards newer entries */
    bool linked;              /* on the list */
} delay_entry;

/* A ring of messages (rate, queue and timed modes). */
typedef struct delay_ring {
    json_t **items; /* owned messages; 'cap' slots */
    size_t head;    /* index of the oldest */
    size_t count;
    size_t cap;
} delay_ring;

struct delay_state {
    /* properties, filled by the engine */
    const char *pause_type;
    double timeout;
    const char *timeout_units;
    double rate;
    double nb_rate_units;
    const char *rate_units;
    double random_first;
    double random_last;
    const char *random_units;
    bool drop;
    bool allowrate;
    long max_queue;

    /* set up */
    delay_mode mode;
    double timeout_ms;    /* fixed delay */
    double fixed_rate_ms; /* configured period between messages */
    double rate_ms;       /* current period (msg.rate may change it) */
    double burst_ms;      /* burst mode: the window */
    double random_first_ms;
    double random_diff_ms;
    bool second_output; /* two outputs: dropped or replaced messages go to the second */
    uint64_t rng;       /* xorshift state for the random mode */

    /* run time */
    delay_entry *oldest; /* delay modes: held messages, oldest first */
    delay_entry *newest;
    size_t held;          /* entries on the list */
    delay_ring ring;      /* rate/queue/timed modes */
    eddy_timer *interval; /* the periodic release timer; NULL when stopped */
    int64_t interval_ms;  /* its period */
    eddy_timer *busy;     /* pending status report; NULL when none */
    bool have_last;       /* drop mode: a message was sent ... */
    int64_t last_sent;    /* ... at this loop time (ms) */
    double inflight;      /* burst mode: messages sent in the current windows */
    uintptr_t burst_gen;  /* burst mode: bumped by reset, to ignore older windows */
};

static const eddy_prop delay_props[] = {
    {.name = "pauseType",
     .kind = EDDY_PROP_STR,
     .def = "\"delay\"",
     .offset = offsetof(struct delay_state, pause_type),
     .help = "delay, delayv (msg.delay), random, rate, queue (per topic), timed, burst"},
    {.name = "timeout",
     .kind = EDDY_PROP_NUM,
     .def = "5",
     .offset = offsetof(struct delay_state, timeout),
     .help = "delay, in timeoutUnits"},
    {.name = "timeoutUnits",
     .kind = EDDY_PROP_STR,
     .def = "\"seconds\"",
     .offset = offsetof(struct delay_state, timeout_units),
     .help = "milliseconds, seconds, minutes, hours or days"},
    {.name = "rate",
     .kind = EDDY_PROP_NUM,
     .def = "1",
     .offset = offsetof(struct delay_state, rate),
     .help = "messages per nbRateUnits rateUnits"},
    {.name = "nbRateUnits",
     .kind = EDDY_PROP_NUM,
     .def = "1",
     .offset = offsetof(struct delay_state, nb_rate_units),
     .help = "length of the rate period"},
    {.name = "rateUnits",
     .kind = EDDY_PROP_STR,
     .def = "\"second\"",
     .offset = offsetof(struct delay_state, rate_units),
     .help = "second, minute, hour or day"},
    {.name = "randomFirst",
     .kind = EDDY_PROP_NUM,
     .def = "1",
     .offset = offsetof(struct delay_state, random_first),
     .help = "shortest random delay"},
    {.name = "randomLast",
     .kind = EDDY_PROP_NUM,
     .def = "5",
     .offset = offsetof(struct delay_state, random_last),
     .help = "longest random delay"},
    {.name = "randomUnits",
     .kind = EDDY_PROP_STR,
     .def = "\"seconds\"",
     .offset = offsetof(struct delay_state, random_units),
     .help = "milliseconds, seconds, minutes, hours or days"},
    {.name = "drop",
     .kind = EDDY_PROP_BOOL,
     .def = "false",
     .offset = offsetof(struct delay_state, drop),
     .help = "rate mode: drop messages that come too fast instead of queueing them"},
    {.name = "allowrate",
     .kind = EDDY_PROP_BOOL,
     .def = "false",
     .offset = offsetof(struct delay_state, allowrate),
     .help = "msg.rate (ms) may change the rate"},
    {.name = "maxQueue",
     .kind = EDDY_PROP_INT,
     .def = DELAY_MAX_QUEUE_DEFAULT,
     .offset = offsetof(struct delay_state, max_queue),
     .help = "most messages held at once (eddy only); more are refused with an error"},
    {0},
};

/* ---- helpers ---- */

static double unit_ms(const char *units, bool plural)
{
    const char *u = units ? units : "";
    if (strcmp(u, plural ? "milliseconds" : "millisecond") == 0) {
        return 1;
    }
    if (strcmp(u, plural ? "minutes" : "minute") == 0) {
        return 60e3;
    }
    if (strcmp(u, plural ? "hours" : "hour") == 0) {
        return 3600e3;
    }
    if (strcmp(u, plural ? "days" : "day") == 0) {
        return 86400e3;
    }
    return 1000; /* Node-RED's default: seconds */
}

static int64_t to_timer_ms(double ms)
{
    if (!(ms > 0)) {
        return 0;
    }
    if (ms > 9e15) {
        return (int64_t)9e15;
    }
    return (int64_t)llround(ms);
}

/* Like setInterval: a period below 1 ms (or not a number) is 1 ms. */
static int64_t to_period_ms(double ms)
{
    int64_t p = to_timer_ms(ms);
    return p < 1 ? 1 : p;
}

static void status_count(eddy_node *node, const char *shape, size_t n)
{
    char text[32];
    snprintf(text, sizeof text, "%zu", n);
    eddy_node_set_status(node, "blue", shape, text);
}

/* Sends a held message on, finishing it. Takes 'msg'. */
static void release(eddy_node *node, json_t *msg, int output)
{
    eddy_node_done(node, msg);
    eddy_node_send(node, output, msg);
}

/* Finishes a message that goes no further. Takes 'msg'. */
static void discard(eddy_node *node, json_t *msg)
{
    eddy_node_done(node, msg);
    json_decref(msg);
}

/* Refuses a message because the node holds 'maxQueue' already. Takes 'msg'. */
static void refuse(eddy_node *node, struct delay_state *st, json_t *msg)
{
    eddy_node_error(node, msg, "queue full (maxQueue %ld): message dropped", st->max_queue);
    json_decref(msg);
}

/* ---- the ring (rate, queue, timed) ---- */

static bool ring_reserve(delay_ring *r)
{
    if (r->count < r->cap) {
        return true;
    }
    size_t cap = r->cap ? r->cap * 2 : 16;
    json_t **items = eddy_malloc(cap * sizeof *items);
    if (!items) {
        return false;
    }
    for (size_t i = 0; i < r->count; i++) {
        items[i] = r->items[(r->head + i) % r->cap];
    }
    eddy_free(r->items);
    r->items = items;
    r->head = 0;
    r->cap = cap;
    return true;
}

static json_t **ring_at(delay_ring *r, size_t i)
{
    return &r->items[(r->head + i) % r->cap];
}

static bool ring_push_back(delay_ring *r, json_t *msg)
{
    if (!ring_reserve(r)) {
        return false;
    }
    r->items[(r->head + r->count) % r->cap] = msg;
    r->count++;
    return true;
}

static bool ring_push_front(delay_ring *r, json_t *msg)
{
    if (!ring_reserve(r)) {
        return false;
    }
    r->head = (r->head + r->cap - 1) % r->cap;
    r->items[r->head] = msg;
    r->count++;
    return true;
}

static json_t *ring_pop_front(delay_ring *r)
{
    if (r->count == 0) {
        return NULL;
    }
    json_t *msg = r->items[r->head];
    r->head = (r->head + 1) % r->cap;
    r->count--;
    return msg;
}

/* Discards every queued message (finishing each). */
static void ring_clear(eddy_node *node, delay_ring *r)
{
    json_t *msg;
    while ((msg = ring_pop_front(r)) != NULL) {
        discard(node, msg);
    }
}

/* ---- status debounce (Node-RED reports the queue length at most every 500 ms) ---- */

static int64_t busy_cb(eddy_node *node, void *state, void *data)
{
    struct delay_state *st = state;
    status_count(node, "dot", st->ring.count);
    return EDDY_TIMER_STOP;
}

static void busy_gone(void *data)
{
    struct delay_state *st = data;
    st->busy = NULL;
}

static void report_depth(eddy_node *node, struct delay_state *st)
{
    if (!st->busy) {
        st->busy = eddy_node_timer_start(node, DELAY_STATUS_DEBOUNCE_MS, busy_cb, st, busy_gone);
    }
}

/* ---- the periodic release timer ---- */

static void interval_gone(void *data)
{
    struct delay_state *st = data;
    st->interval = NULL;
}

static void interval_stop(eddy_node *node, struct delay_state *st)
{
    if (st->interval) {
        eddy_node_timer_stop(node, st->interval); /* interval_gone clears the field */
    }
}

static void interval_start(eddy_node *node, struct delay_state *st, eddy_node_timer_fn fn)
{
    interval_stop(node, st);
    st->interval_ms = to_period_ms(st->rate_ms);
    st->interval = eddy_node_timer_start(node, st->interval_ms, fn, st, interval_gone);
    if (!st->interval) {
        eddy_node_error(node, NULL, "out of memory starting the rate timer");
    }
}

/* ---- delay, delayv, random: one timer per held message ---- */

static void entry_unlink(delay_entry *e)
{
    struct delay_state *st = e->st;
    if (!e->linked) {
        return;
    }
    if (e->prev) {
        e->prev->next = e->next;
    } else {
        st->oldest = e->next;
    }
    if (e->next) {
        e->next->prev = e->prev;
    } else {
        st->newest = e->prev;
    }
    e->prev = e->next = NULL;
    e->linked = false;
    st->held--;
}

/* The timer's finalizer. If the engine stopped the timer (the node is closing) the entry
 * is still listed: unlist it and drop its message. */
static void entry_gone(void *data)
{
    delay_entry *e = data;
    if (e->linked) {
        entry_unlink(e);
    }
    json_decref(e->msg);
    eddy_free(e);
}

static void hold_status_after_change(eddy_node *node, struct delay_state *st)
{
    if ((st->mode == MODE_DELAY && st->timeout_ms > 1000) || st->mode == MODE_DELAYV ||
        (st->mode == MODE_RANDOM && st->timeout_ms >= 1000)) {
        status_count(node, "dot", st->held);
    }
}

static int64_t entry_fire(eddy_node *node, void *state, void *data)
{
    delay_entry *e = data;
    struct delay_state *st = state;
    json_t *msg = e->msg;
    e->msg = NULL;
    entry_unlink(e);
    hold_status_after_change(node, st);
    if (msg) {
        release(node, msg, 0);
    }
    return EDDY_TIMER_STOP; /* entry_gone frees 'e' */
}

/* Holds 'msg' (taken) for 'wait_ms'. */
static void hold(eddy_node *node, struct delay_state *st, json_t *msg, double wait_ms)
{
    if (st->held >= (size_t)st->max_queue) {
        refuse(node, st, msg);
        return;
    }
    delay_entry *e = eddy_calloc(1, sizeof *e);
    if (!e) {
        eddy_node_error(node, msg, "out of memory holding a message");
        json_decref(msg);
        return;
    }
    e->msg = msg;
    e->st = st;
    e->timer = eddy_node_timer_start(node, to_timer_ms(wait_ms), entry_fire, e, entry_gone);
    if (!e->timer) {
        eddy_node_error(node, msg, "out of memory holding a message");
        json_decref(msg);
        eddy_free(e);
        return;
    }
    e->linked = true;
    e->prev = st->newest;
    if (st->newest) {
        st->newest->next = e;
    } else {
        st->oldest = e;
    }
    st->newest = e;
    st->held++;
}

/* Sends the 'n' oldest held messages now (all when 'n' < 0). */
static void hold_flush(eddy_node *node, struct delay_state *st, long n)
{
    while (st->oldest && n != 0) {
        delay_entry *e = st->oldest;
        json_t *msg = e->msg;
        e->msg = NULL;
        entry_unlink(e);
        eddy_node_timer_stop(node, e->timer); /* entry_gone frees 'e' */
        if (msg) {
            release(node, msg, 0);
        }
        if (n > 0) {
            n--;
        }
    }
}

/* Discards every held message. */
static void hold_clear(eddy_node *node, struct delay_state *st)
{
    while (st->oldest) {
        delay_entry *e = st->oldest;
        json_t *msg = e->msg;
        e->msg = NULL;
        entry_unlink(e);
        eddy_node_timer_stop(node, e->timer);
        if (msg) {
            discard(node, msg);
        }
    }
}

/* How many to flush for msg.flush: a number means that many (floored), anything else all. */
static long flush_count(const json_t *flush, size_t available)
{
    if (json_is_number(flush)) {
        double n = floor(json_number_value(flush));
        if (n < 0) {
            return 0;
        }
        return n < (double)available ? (long)n : (long)available;
    }
    return (long)available;
}

static double next_random(struct delay_state *st)
{
    uint64_t x = st->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    st->rng = x;
    return (double)(x >> 11) / 9007199254740992.0; /* [0, 1) */
}

static void hold_input(eddy_node *node, struct delay_state *st, json_t *msg)
{
    bool has_reset = json_object_get(msg, "reset") != NULL;
    json_t *flush = json_object_get(msg, "flush");
    json_t *flush_copy = flush ? json_incref(flush) : NULL;
    double wait = st->timeout_ms;

    if (st->mode == MODE_DELAYV) {
        double d;
        if (eddy_json_parse_float(json_object_get(msg, "delay"), &d)) {
            wait = d;
        }
        if (wait < 0) {
            wait = 0;
        }
    } else if (st->mode == MODE_RANDOM) {
        wait = st->random_first_ms + st->random_diff_ms * next_random(st);
    }

    if (has_reset) {
        /* Node-RED holds it and clears it with the rest. */
        hold_clear(node, st);
        discard(node, msg);
        status_count(node, "ring", 0);
    } else if (flush && json_object_size(msg) == 2) {
        discard(node, msg); /* only an id and msg.flush: a command, not something to hold */
    } else {
        hold(node, st, msg, wait);
    }
    msg = NULL;

    if (flush_copy && (!has_reset || st->mode != MODE_DELAY)) {
        hold_flush(node, st, flush_count(flush_copy, st->held));
        status_count(node, "dot", st->held);
    }
    if (st->mode != MODE_DELAY || (!has_reset && !flush_copy)) {
        hold_status_after_change(node, st);
    }
    json_decref(flush_copy);
}

/* ---- rate ---- */

/* One tick: sends the oldest queued message; an empty queue stops the timer. */
static int64_t rate_tick(eddy_node *node, void *state, void *data)
{
    struct delay_state *st = state;
    if (st->ring.count == 0) {
        return EDDY_TIMER_STOP; /* interval_gone clears st->interval */
    }
    json_t *msg = ring_pop_front(&st->ring);
    if (json_object_size(msg) > 1) {
        release(node, msg, 0);
    } else {
        discard(node, msg);
    }
    report_depth(node, st);
    return st->interval_ms;
}

/* msg.rate, when allowed and a number, sets the period in ms. Returns true if it did. */
static bool take_msg_rate(struct delay_state *st, const json_t *msg, double *rate)
{
    double r;
    if (st->allowrate && eddy_json_parse_float(json_object_get(msg, "rate"), &r)) {
        *rate = r;
        return true;
    }
    return false;
}

static void rate_queue_input(eddy_node *node, struct delay_state *st, json_t *msg)
{
    bool has_reset = json_object_get(msg, "reset") != NULL;
    json_t *flush = json_object_get(msg, "flush");
    json_t *flush_copy = flush ? json_incref(flush) : NULL;
    bool to_front = json_is_true(json_object_get(msg, "toFront"));
    double r;

    json_object_del(msg, "flush");
    if (has_reset && !flush_copy) {
        discard(node, msg); /* Node-RED queues it and then clears the queue */
    } else if (json_object_size(msg) > 1) {
        if (st->interval) {
            if (take_msg_rate(st, msg, &r) && r != st->rate_ms) {
                st->rate_ms = r;
                interval_start(node, st, rate_tick);
            }
            if (st->ring.count >= (size_t)st->max_queue) {
                refuse(node, st, msg);
            } else if (!(to_front ? ring_push_front : ring_push_back)(&st->ring, msg)) {
                eddy_node_error(node, msg, "out of memory queueing a message");
                json_decref(msg);
            } else {
                report_depth(node, st);
            }
        } else {
            if (take_msg_rate(st, msg, &r)) {
                st->rate_ms = r;
            }
            if (!has_reset) {
                release(node, msg, 0);
            } else if (!ring_push_back(&st->ring, msg)) { /* reset with flush */
                eddy_node_error(node, msg, "out of memory queueing a message");
                json_decref(msg);
            }
            report_depth(node, st);
            interval_start(node, st, rate_tick);
        }
    } else {
        discard(node, msg); /* nothing but an id (and flush/reset): a command */
    }
    msg = NULL;

    if (flush_copy) {
        long n = flush_count(flush_copy, st->ring.count);
        if (n == 0) {
            interval_stop(node, st);
        } else {
            for (; n > 0; n--) {
                json_t *m = ring_pop_front(&st->ring);
                json_object_del(m, "flush");
                json_object_del(m, "reset");
                if (json_object_size(m) > 1) {
                    release(node, m, 0);
                } else {
                    discard(node, m);
                }
            }
            interval_start(node, st, rate_tick);
        }
        status_count(node, "dot", st->ring.count);
    }
    if (has_reset) {
        if (!flush_copy) {
            interval_stop(node, st);
            st->have_last = false;
        }
        ring_clear(node, &st->ring);
        st->rate_ms = st->fixed_rate_ms;
        status_count(node, "ring", 0);
    }
    json_decref(flush_copy);
}

static void rate_drop_input(eddy_node *node, struct delay_state *st, json_t *msg)
{
    if (json_object_get(msg, "reset")) {
        if (!json_object_get(msg, "flush")) {
            st->have_last = false;
        }
        st->rate_ms = st->fixed_rate_ms;
        status_count(node, "ring", 0);
        discard(node, msg);
        return;
    }
    double r;
    if (take_msg_rate(st, msg, &r)) {
        st->rate_ms = r;
    }
    int64_t now = eddy_loop_now(eddy_node_loop(node));
    /* Node-RED compares nanoseconds with '>'; on a millisecond clock a message exactly one
     * period after the last one is let through. */
    if (!st->have_last || (double)(now - st->last_sent) >= st->rate_ms) {
        st->have_last = true;
        st->last_sent = now;
        release(node, msg, 0);
    } else if (st->second_output) {
        release(node, msg, 1);
    } else {
        discard(node, msg);
    }
}

/* ---- queue and timed: the latest message per topic ---- */

/* JavaScript's === for two topics (objects are never equal: they are different objects). */
static bool js_strict_equal(const json_t *a, const json_t *b)
{
    if (json_is_string(a) && json_is_string(b)) {
        return strcmp(json_string_value(a), json_string_value(b)) == 0;
    }
    if (json_is_number(a) && json_is_number(b)) {
        return json_number_value(a) == json_number_value(b);
    }
    if (json_is_boolean(a) && json_is_boolean(b)) {
        return json_is_true(a) == json_is_true(b);
    }
    return json_is_null(a) && json_is_null(b);
}

static int64_t topic_tick(eddy_node *node, void *state, void *data)
{
    struct delay_state *st = state;
    if (st->mode == MODE_QUEUE) {
        if (st->ring.count > 0) {
            release(node, ring_pop_front(&st->ring), 0);
        }
    } else {
        while (st->ring.count > 0) {
            release(node, ring_pop_front(&st->ring), 0);
        }
    }
    report_depth(node, st);
    return st->interval_ms;
}

static void topic_input(eddy_node *node, struct delay_state *st, json_t *msg)
{
    bool has_reset = json_object_get(msg, "reset") != NULL;
    json_t *flush = json_object_get(msg, "flush");
    json_t *flush_copy = flush ? json_incref(flush) : NULL;
    double r;

    if (take_msg_rate(st, msg, &r) && r != st->rate_ms) {
        st->rate_ms = r;
        interval_start(node, st, topic_tick);
    }
    if (!json_object_get(msg, "topic")) {
        json_object_set_new(msg, "topic", json_string("_none_"));
    }
    const json_t *topic = json_object_get(msg, "topic");
    bool replaced = false;
    for (size_t i = 0; i < st->ring.count; i++) {
        json_t **slot = ring_at(&st->ring, i);
        if (js_strict_equal(topic, json_object_get(*slot, "topic"))) {
            json_t *old = *slot;
            *slot = msg;
            if (st->second_output) {
                release(node, old, 1);
            } else {
                discard(node, old);
            }
            replaced = true;
            break;
        }
    }
    if (!replaced) {
        if (st->ring.count >= (size_t)st->max_queue) {
            refuse(node, st, msg);
        } else if (!ring_push_back(&st->ring, msg)) {
            eddy_node_error(node, msg, "out of memory queueing a message");
            json_decref(msg);
        } else {
            report_depth(node, st);
        }
    }
    msg = NULL;

    if (flush_copy) {
        for (long n = flush_count(flush_copy, st->ring.count); n > 0; n--) {
            json_t *m = ring_pop_front(&st->ring);
            json_object_del(m, "flush");
            json_object_del(m, "reset");
            /* _msgid and topic alone: the flush command itself */
            if (json_object_size(m) > 2) {
                release(node, m, 0);
            } else {
                discard(node, m);
            }
        }
        eddy_node_set_status(node, NULL, NULL, NULL);
    }
    if (has_reset) {
        ring_clear(node, &st->ring);
        st->rate_ms = st->fixed_rate_ms;
        eddy_node_set_status(node, NULL, NULL, "reset");
    }
    json_decref(flush_copy);
}

/* ---- burst ---- */

static int64_t burst_window_end(eddy_node *node, void *state, void *data)
{
    struct delay_state *st = state;
    if ((uintptr_t)data != st->burst_gen) {
        return EDDY_TIMER_STOP; /* a window from before a reset */
    }
    if (st->inflight == st->rate) {
        eddy_node_set_status(node, "green", "ring", "");
    }
    st->inflight -= 1;
    return EDDY_TIMER_STOP;
}

static void burst_input(eddy_node *node, struct delay_state *st, json_t *msg)
{
    if (json_object_get(msg, "reset")) {
        st->burst_gen++;
        st->inflight = 0;
        eddy_node_set_status(node, "green", "ring", "");
        discard(node, msg);
        return;
    }
    if (st->inflight < st->rate) {
        st->inflight += 1;
        if (!eddy_node_timer_start(node, to_timer_ms(st->burst_ms), burst_window_end,
                                   (void *)st->burst_gen, NULL)) {
            eddy_node_error(node, NULL, "out of memory starting a burst window");
        }
        release(node, msg, 0);
    } else {
        if (st->second_output) {
            release(node, msg, 1);
        } else {
            discard(node, msg);
        }
        eddy_node_set_status(node, "red", "dot", "");
    }
}

/* ---- life cycle ---- */

static const struct {
    const char *name;
    delay_mode mode;
} delay_modes[] = {
    {"delay", MODE_DELAY}, {"delayv", MODE_DELAYV}, {"random", MODE_RANDOM}, {"rate", MODE_RATE},
    {"queue", MODE_QUEUE}, {"timed", MODE_TIMED},   {"burst", MODE_BURST},
};

static int delay_parse_mode(const char *name, delay_mode *mode)
{
    for (size_t i = 0; i < sizeof delay_modes / sizeof delay_modes[0]; i++) {
        if (strcmp(name, delay_modes[i].name) == 0) {
            *mode = delay_modes[i].mode;
            return EDDY_OK;
        }
    }
    return EDDY_EINVAL;
}

static int delay_validate(const eddy_node_type *type, const json_t *config, void *state,
                          eddy_err *err)
{
    struct delay_state *st = state;
    delay_mode mode;
    const char *pt = st->pause_type && *st->pause_type ? st->pause_type : "delay";
    if (delay_parse_mode(pt, &mode) != EDDY_OK) {
        return eddy_err_set(err, EDDY_EINVAL,
                            "pauseType '%s': expected delay, delayv, random, rate, queue, timed "
                            "or burst",
                            pt);
    }
    if ((mode == MODE_DELAY || mode == MODE_DELAYV) && !(st->timeout >= 0)) {
        return eddy_err_set(err, EDDY_EINVAL, "timeout %g: must not be negative", st->timeout);
    }
    if ((mode == MODE_RATE || mode == MODE_QUEUE || mode == MODE_TIMED || mode == MODE_BURST) &&
        !(st->rate > 0)) {
        return eddy_err_set(err, EDDY_EINVAL, "rate %g: must be more than 0", st->rate);
    }
    if (mode == MODE_RANDOM && (!(st->random_first >= 0) || !(st->random_last >= 0))) {
        return eddy_err_set(err, EDDY_EINVAL, "randomFirst and randomLast must not be negative");
    }
    if (st->max_queue < 1) {
        return eddy_err_set(err, EDDY_EINVAL, "maxQueue %ld: must be at least 1", st->max_queue);
    }
    return EDDY_OK;
}

static int delay_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct delay_state *st = state;
    const char *pt = st->pause_type && *st->pause_type ? st->pause_type : "delay";
    if (delay_parse_mode(pt, &st->mode) != EDDY_OK) {
        return eddy_err_set(err, EDDY_EINVAL, "pauseType '%s' is not known", pt);
    }
    st->timeout_ms = st->timeout * unit_ms(st->timeout_units, true);
    double unit = unit_ms(st->rate_units, false);
    st->fixed_rate_ms = unit / st->rate * (st->nb_rate_units > 0 ? st->nb_rate_units : 1);
    st->rate_ms = st->fixed_rate_ms;
    st->burst_ms = (st->nb_rate_units > 0 ? st->nb_rate_units : 1) * unit;
    double runit = unit_ms(st->random_units, true);
    st->random_first_ms = st->random_first * runit;
    st->random_diff_ms = st->random_last * runit - st->random_first_ms;
    st->second_output = eddy_node_output_count(node) >= 2;
    st->rng = (uint64_t)eddy_loop_wall(eddy_node_loop(node)) ^ (uint64_t)(uintptr_t)st ^
              0x9e3779b97f4a7c15ull;
    if (st->rng == 0) {
        st->rng = 1;
    }
    if (st->mode == MODE_QUEUE || st->mode == MODE_TIMED) {
        interval_start(node, st, topic_tick);
        if (!st->interval) {
            return eddy_err_set(err, EDDY_ENOMEM, "out of memory starting the rate timer");
        }
    } else if (st->mode == MODE_BURST) {
        eddy_node_set_status(node, "green", "ring", "");
    }
    return EDDY_OK;
}

static void delay_input(eddy_node *node, void *state, json_t *msg)
{
    struct delay_state *st = state;
    switch (st->mode) {
    case MODE_DELAY:
    case MODE_DELAYV:
    case MODE_RANDOM:
        hold_input(node, st, msg);
        break;
    case MODE_RATE:
        if (st->drop) {
            rate_drop_input(node, st, msg);
        } else {
            rate_queue_input(node, st, msg);
        }
        break;
    case MODE_QUEUE:
    case MODE_TIMED:
        topic_input(node, st, msg);
        break;
    case MODE_BURST:
        burst_input(node, st, msg);
        break;
    }
}

static int delay_close(eddy_node *node, void *state, bool removed)
{
    struct delay_state *st = state;
    hold_clear(node, st);
    ring_clear(node, &st->ring);
    eddy_free(st->ring.items);
    st->ring.items = NULL;
    st->ring.cap = 0;
    interval_stop(node, st);
    if (st->busy) {
        eddy_node_timer_stop(node, st->busy);
    }
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_delay = {
    .name = "delay",
    .inputs = 1,
    .outputs = -1,
    .flags = EDDY_NODE_ASYNC_DONE,
    .props = delay_props,
    .state_size = sizeof(struct delay_state),
    .help = "Delays each message (a fixed time, msg.delay, or a random time), or limits the "
            "rate of messages: queueing them, dropping them (to the second output when there "
            "are two), keeping the latest per topic, or letting bursts through. msg.reset "
            "clears what is held; msg.flush sends it now (msg.flush = n: the n oldest). At "
            "most maxQueue messages are held; more are refused with an error.",
    .validate = delay_validate,
    .setup = delay_setup,
    .input = delay_input,
    .close = delay_close,
};
