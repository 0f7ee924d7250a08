/* loop.c: eddy's loop on libuv, with timers kept in a binary min-heap of eddy's own so that
 * the same timer code runs on libuv's clock or on a virtual one (tests).
 *
 * Invariants:
 *   1. Every live timer is in the heap, except the one whose callback is running.
 *   2. In real mode one uv_timer is armed for the earliest deadline whenever the heap is
 *      not empty; one uv_idle is active while the work hook says it has work.
 *   3. A timer stopped during its own callback is finalized after the callback returns and
 *      its return value is ignored; its memory is freed right after its finalizer. */
#include "loop.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "log.h"
#include "mem.h"

struct eddy_timer {
    int64_t deadline;  /* ms on the loop's clock */
    uint64_t seq;      /* start order: equal deadlines fire first-started first */
    size_t heap_index; /* position in loop->heap while queued */
    bool running;      /* its callback is on the stack */
    bool stopped;      /* stop was asked while running */
    eddy_timer_fn fn;
    void *data;
    eddy_timer_finalizer finalizer;
};

typedef struct loop_hook {
    eddy_loop_hook_fn fn;
    void *data;
} loop_hook;

typedef struct hook_list {
    loop_hook *items;
    int count, cap;
} hook_list;

typedef struct deferred {
    eddy_loop_hook_fn fn;
    void *data;
    struct deferred *next;
} deferred;

struct eddy_loop {
    eddy_clock_mode mode;
    uv_loop_t uv;            /* real mode only */
    uv_timer_t uv_timer;     /* fires at the heap's earliest deadline */
    uv_idle_t uv_idle;       /* keeps the loop spinning while work is pending */
    uv_prepare_t uv_prepare; /* before-sleep hooks */
    uv_async_t uv_async;     /* cross-thread wakeups */
    bool uv_ready;           /* handles initialised (real mode) */
    bool in_uv_timer;        /* on_uv_timer is running (inside libuv's timer phase) */
    bool rearm_in_prepare;   /* a timer is due now: arm the uv timer from the prepare phase */
    int64_t virtual_now;     /* manual mode clock, ms */
    int64_t wall_offset;     /* manual mode: wall = virtual_now + wall_offset */
    eddy_timer **heap;
    size_t heap_len, heap_cap;
    uint64_t next_seq;
    int live_timers;
    eddy_loop_work_fn work_fn;
    void *work_data;
    bool work_pending;
    hook_list before_sleep; /* commits */
    hook_list flush;        /* acknowledgements, only when settled */
    long holds;             /* input taken but not yet durable (eddy_loop_hold) */
    bool input_left;        /* a source stopped reading with input left, this turn */
    deferred *deferred;     /* top-level calls waiting (eddy_loop_defer), oldest first */
    bool stop_requested;    /* eddy_loop_stop was called */
};

static void drop_deferred(eddy_loop *loop);

/* ---- heap ---- */

static bool timer_before(const eddy_timer *a, const eddy_timer *b)
{
    return a->deadline < b->deadline || (a->deadline == b->deadline && a->seq < b->seq);
}

static void heap_swap(eddy_loop *loop, size_t i, size_t j)
{
    eddy_timer *t = loop->heap[i];
    loop->heap[i] = loop->heap[j];
    loop->heap[j] = t;
    loop->heap[i]->heap_index = i;
    loop->heap[j]->heap_index = j;
}

static void heap_up(eddy_loop *loop, size_t i)
{
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!timer_before(loop->heap[i], loop->heap[parent]))
            break;
        heap_swap(loop, i, parent);
        i = parent;
    }
}

static void heap_down(eddy_loop *loop, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < loop->heap_len && timer_before(loop->heap[l], loop->heap[m]))
            m = l;
        if (r < loop->heap_len && timer_before(loop->heap[r], loop->heap[m]))
            m = r;
        if (m == i)
            return;
        heap_swap(loop, i, m);
        i = m;
    }
}

static int heap_push(eddy_loop *loop, eddy_timer *t)
{
    if (loop->heap_len == loop->heap_cap) {
        size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
        eddy_timer **h = eddy_realloc(loop->heap, cap * sizeof(*h));
        if (!h)
            return EDDY_ENOMEM;
        loop->heap = h;
        loop->heap_cap = cap;
    }
    t->heap_index = loop->heap_len;
    loop->heap[loop->heap_len++] = t;
    heap_up(loop, t->heap_index);
    return EDDY_OK;
}

static void heap_remove(eddy_loop *loop, eddy_timer *t)
{
    size_t i = t->heap_index;
    loop->heap_len--;
    if (i != loop->heap_len) {
        loop->heap[i] = loop->heap[loop->heap_len];
        loop->heap[i]->heap_index = i;
        heap_up(loop, i);
        heap_down(loop, loop->heap[i]->heap_index);
    }
}

/* ---- clock ---- */

int64_t eddy_loop_now(const eddy_loop *loop)
{
    if (loop->mode == EDDY_CLOCK_MANUAL)
        return loop->virtual_now;
    return (int64_t)uv_now(&((eddy_loop *)loop)->uv);
}

int64_t eddy_loop_wall(const eddy_loop *loop)
{
    if (loop->mode == EDDY_CLOCK_MANUAL)
        return loop->virtual_now + loop->wall_offset;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void eddy_loop_set_wall(eddy_loop *loop, int64_t wall_ms)
{
    loop->wall_offset = wall_ms - loop->virtual_now;
}

/* ---- timers ---- */

static void rearm_uv_timer(eddy_loop *loop);

static void timer_finalize(eddy_loop *loop, eddy_timer *t)
{
    loop->live_timers--;
    if (t->finalizer)
        t->finalizer(loop, t->data);
    eddy_free(t);
}

eddy_timer *eddy_timer_start(eddy_loop *loop, int64_t delay_ms, eddy_timer_fn fn, void *data,
                             eddy_timer_finalizer finalizer)
{
    eddy_timer *t = eddy_calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->deadline = eddy_loop_now(loop) + (delay_ms > 0 ? delay_ms : 0);
    t->seq = loop->next_seq++;
    t->fn = fn;
    t->data = data;
    t->finalizer = finalizer;
    if (heap_push(loop, t) != EDDY_OK) {
        eddy_free(t);
        return NULL;
    }
    loop->live_timers++;
    rearm_uv_timer(loop);
    return t;
}

void eddy_timer_stop(eddy_loop *loop, eddy_timer *t)
{
    if (!t)
        return;
    if (t->running) {
        t->stopped = true; /* finalized by fire_timer after the callback returns */
        return;
    }
    heap_remove(loop, t);
    timer_finalize(loop, t);
    rearm_uv_timer(loop);
}

/* Pops and runs the earliest timer; reschedules it if its callback asks to. */
static void fire_timer(eddy_loop *loop)
{
    eddy_timer *t = loop->heap[0];
    heap_remove(loop, t);
    t->running = true;
    int64_t next = t->fn(loop, t, t->data);
    t->running = false;
    if (t->stopped || next < 0) {
        timer_finalize(loop, t);
        return;
    }
    t->deadline = eddy_loop_now(loop) + next;
    t->seq = loop->next_seq++;
    if (heap_push(loop, t) != EDDY_OK) {
        eddy_log(EDDY_LOG_ERROR, "[loop] out of memory rescheduling a timer; it is stopped");
        timer_finalize(loop, t);
    }
}

static bool timer_due(const eddy_loop *loop)
{
    return loop->heap_len > 0 && loop->heap[0]->deadline <= eddy_loop_now(loop);
}

int eddy_loop_timer_count(const eddy_loop *loop)
{
    return loop->live_timers;
}

/* ---- libuv glue (real mode) ---- */

static void on_uv_timer(uv_timer_t *handle)
{
    eddy_loop *loop = handle->data;
    /* Fire only what was due when the phase began: a timer started or rescheduled by a
     * callback (even at 0 ms) has a newer sequence number and waits for the next turn, so
     * work and before-sleep hooks run between its firings. Among due timers it is last:
     * its deadline is now and its sequence number the newest. */
    uint64_t phase_seq = loop->next_seq;
    loop->in_uv_timer = true;
    while (timer_due(loop) && loop->heap[0]->seq < phase_seq)
        fire_timer(loop);
    loop->in_uv_timer = false;
    /* libuv before 1.45 runs a timer restarted at 0 ms from its own callback again in the
     * same timer phase, forever: nothing else (work, commits, I/O) would run. A timer that
     * is due again is armed from the prepare phase, before this iteration's poll. */
    if (timer_due(loop))
        loop->rearm_in_prepare = true;
    else
        rearm_uv_timer(loop);
}

static void rearm_uv_timer(eddy_loop *loop)
{
    if (loop->mode != EDDY_CLOCK_REAL || !loop->uv_ready || loop->in_uv_timer)
        return; /* on_uv_timer arms it when it is done */
    if (loop->heap_len == 0) {
        uv_timer_stop(&loop->uv_timer);
        return;
    }
    int64_t delay = loop->heap[0]->deadline - eddy_loop_now(loop);
    uv_timer_start(&loop->uv_timer, on_uv_timer, delay > 0 ? (uint64_t)delay : 0, 0);
}

static void on_uv_idle(uv_idle_t *handle)
{
    eddy_loop *loop = handle->data;
    if (!loop->work_fn || !loop->work_fn(loop, loop->work_data)) {
        loop->work_pending = false;
        uv_idle_stop(&loop->uv_idle);
    }
}

static void run_hooks(eddy_loop *loop, const hook_list *list)
{
    for (int i = 0; i < list->count; i++)
        list->items[i].fn(loop, list->items[i].data);
}

/* Commits first; acknowledgements only if nothing taken in is still unfinished. */
static void run_before_sleep(eddy_loop *loop)
{
    run_hooks(loop, &loop->before_sleep);
    loop->input_left = false;
    if (eddy_loop_settled(loop))
        run_hooks(loop, &loop->flush);
}

static void on_uv_prepare(uv_prepare_t *handle)
{
    eddy_loop *loop = handle->data;
    if (loop->rearm_in_prepare) {
        loop->rearm_in_prepare = false;
        rearm_uv_timer(loop);
    }
    run_before_sleep(loop);
}

static void on_uv_async(uv_async_t *handle)
{
    (void)handle; /* waking up is all it is for */
}

static int uv_setup(eddy_loop *loop, eddy_err *err)
{
    int rc = uv_loop_init(&loop->uv);
    if (rc != 0)
        return eddy_err_set(err, EDDY_EIO, "cannot start the event loop: %s", uv_strerror(rc));
    loop->uv.data = loop;
    uv_timer_init(&loop->uv, &loop->uv_timer);
    uv_idle_init(&loop->uv, &loop->uv_idle);
    uv_prepare_init(&loop->uv, &loop->uv_prepare);
    rc = uv_async_init(&loop->uv, &loop->uv_async, on_uv_async);
    if (rc != 0)
        return eddy_err_set(err, EDDY_EIO, "cannot start the event loop: %s", uv_strerror(rc));
    loop->uv_timer.data = loop->uv_idle.data = loop->uv_prepare.data = loop->uv_async.data = loop;
    uv_prepare_start(&loop->uv_prepare, on_uv_prepare);
    /* The prepare and timer handles alone must not keep uv_run alive; the async does. */
    uv_unref((uv_handle_t *)&loop->uv_prepare);
    loop->uv_ready = true;
    return EDDY_OK;
}

/* ---- life cycle ---- */

eddy_loop *eddy_loop_new(eddy_clock_mode mode, eddy_err *err)
{
    eddy_loop *loop = eddy_calloc(1, sizeof(*loop));
    if (!loop) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory creating the loop");
        return NULL;
    }
    loop->mode = mode;
    if (mode == EDDY_CLOCK_MANUAL) {
        loop->wall_offset = 1704067200000; /* 2024-01-01T00:00:00Z */
        return loop;
    }
    if (uv_setup(loop, err) != EDDY_OK) {
        eddy_free(loop);
        return NULL;
    }
    return loop;
}

void eddy_loop_free(eddy_loop *loop)
{
    if (!loop)
        return;
    drop_deferred(loop);
    while (loop->heap_len > 0) {
        eddy_timer *t = loop->heap[loop->heap_len - 1];
        heap_remove(loop, t);
        timer_finalize(loop, t);
    }
    if (loop->uv_ready) {
        uv_close((uv_handle_t *)&loop->uv_timer, NULL);
        uv_close((uv_handle_t *)&loop->uv_idle, NULL);
        uv_close((uv_handle_t *)&loop->uv_prepare, NULL);
        uv_close((uv_handle_t *)&loop->uv_async, NULL);
        uv_run(&loop->uv, UV_RUN_DEFAULT);
        if (uv_loop_close(&loop->uv) != 0)
            eddy_log(EDDY_LOG_WARN, "[loop] handles still open at close (a module leaked one)");
    }
    eddy_free(loop->heap);
    eddy_free(loop->before_sleep.items);
    eddy_free(loop->flush.items);
    eddy_free(loop);
}

struct uv_loop_s *eddy_loop_uv(eddy_loop *loop)
{
    return loop->mode == EDDY_CLOCK_REAL ? &loop->uv : NULL;
}

static void drop_deferred(eddy_loop *loop)
{
    while (loop->deferred) {
        deferred *d = loop->deferred;
        loop->deferred = d->next;
        eddy_free(d);
    }
}

/* Runs the calls eddy_loop_defer queued; returns whether there were any. */
static bool run_deferred(eddy_loop *loop)
{
    bool ran = false;
    while (loop->deferred) {
        deferred *d = loop->deferred;
        loop->deferred = d->next;
        d->fn(loop, d->data);
        eddy_free(d);
        ran = true;
    }
    return ran;
}

int eddy_loop_run(eddy_loop *loop)
{
    loop->stop_requested = false;
    if (loop->mode == EDDY_CLOCK_MANUAL) {
        do
            eddy_loop_settle(loop);
        while (run_deferred(loop));
        return EDDY_OK;
    }
    for (;;) {
        int alive = uv_run(&loop->uv, UV_RUN_DEFAULT);
        bool ran = run_deferred(loop);
        /* a deferred call that defers another leaves libuv's stop flag set: uv_run then
         * returns at once, with handles still alive; only a stop request or a loop with
         * nothing left to do ends the run */
        if (loop->stop_requested || (!ran && !alive && !loop->deferred))
            break;
    }
    return EDDY_OK;
}

void eddy_loop_stop(eddy_loop *loop)
{
    loop->stop_requested = true;
    if (loop->mode == EDDY_CLOCK_REAL)
        uv_stop(&loop->uv);
}

int eddy_loop_defer(eddy_loop *loop, eddy_loop_hook_fn fn, void *data)
{
    deferred *d = eddy_calloc(1, sizeof(*d));
    if (!d)
        return EDDY_ENOMEM;
    d->fn = fn;
    d->data = data;
    deferred **tail = &loop->deferred;
    while (*tail)
        tail = &(*tail)->next;
    *tail = d;
    if (loop->mode == EDDY_CLOCK_REAL)
        uv_stop(&loop->uv);
    return EDDY_OK;
}

void eddy_loop_cancel_deferred(eddy_loop *loop, void *data)
{
    for (deferred **p = &loop->deferred; *p;) {
        if ((*p)->data == data) {
            deferred *d = *p;
            *p = d->next;
            eddy_free(d);
        } else {
            p = &(*p)->next;
        }
    }
}

void eddy_loop_wakeup(eddy_loop *loop)
{
    if (loop->mode == EDDY_CLOCK_REAL)
        uv_async_send(&loop->uv_async);
}

void eddy_loop_run_once(eddy_loop *loop)
{
    if (loop->mode == EDDY_CLOCK_REAL)
        uv_run(&loop->uv, UV_RUN_NOWAIT);
    else
        eddy_loop_settle(loop);
}

/* ---- work and hooks ---- */

void eddy_loop_set_work(eddy_loop *loop, eddy_loop_work_fn fn, void *data)
{
    loop->work_fn = fn;
    loop->work_data = data;
}

void eddy_loop_work_pending(eddy_loop *loop)
{
    if (loop->work_pending)
        return;
    loop->work_pending = true;
    if (loop->mode == EDDY_CLOCK_REAL && loop->uv_ready)
        uv_idle_start(&loop->uv_idle, on_uv_idle);
}

static int hook_add(hook_list *list, eddy_loop_hook_fn fn, void *data)
{
    if (list->count == list->cap) {
        int cap = list->cap ? list->cap * 2 : 4;
        loop_hook *h = eddy_realloc(list->items, (size_t)cap * sizeof(*h));
        if (!h)
            return EDDY_ENOMEM;
        list->items = h;
        list->cap = cap;
    }
    list->items[list->count++] = (loop_hook){fn, data};
    return EDDY_OK;
}

static void hook_remove(hook_list *list, eddy_loop_hook_fn fn, void *data)
{
    for (int i = 0; i < list->count; i++) {
        if (list->items[i].fn == fn && list->items[i].data == data) {
            memmove(&list->items[i], &list->items[i + 1],
                    (size_t)(list->count - i - 1) * sizeof(loop_hook));
            list->count--;
            return;
        }
    }
}

int eddy_loop_add_before_sleep(eddy_loop *loop, eddy_loop_hook_fn fn, void *data)
{
    return hook_add(&loop->before_sleep, fn, data);
}

void eddy_loop_remove_before_sleep(eddy_loop *loop, eddy_loop_hook_fn fn, void *data)
{
    hook_remove(&loop->before_sleep, fn, data);
}

int eddy_loop_add_flush(eddy_loop *loop, eddy_loop_hook_fn fn, void *data)
{
    return hook_add(&loop->flush, fn, data);
}

void eddy_loop_remove_flush(eddy_loop *loop, eddy_loop_hook_fn fn, void *data)
{
    hook_remove(&loop->flush, fn, data);
}

/* ---- settledness: what acknowledgements wait for ---- */

void eddy_loop_hold(eddy_loop *loop, long n)
{
    loop->holds += n;
}

void eddy_loop_release(eddy_loop *loop, long n)
{
    loop->holds -= n;
    if (loop->holds < 0) {
        eddy_log(EDDY_LOG_ERROR, "[loop] released more holds than were taken");
        loop->holds = 0;
    }
}

bool eddy_loop_settled(const eddy_loop *loop)
{
    return !loop->work_pending && loop->holds == 0;
}

void eddy_loop_note_input_left(eddy_loop *loop)
{
    loop->input_left = true;
}

bool eddy_loop_input_left(const eddy_loop *loop)
{
    return loop->input_left;
}

/* ---- manual clock ---- */

/* A timer that re-arms itself at 0 ms forever would keep settle from returning. */
#define SETTLE_MAX_FIRINGS 1000000

int eddy_loop_settle(eddy_loop *loop)
{
    int fired = 0;
    for (;;) {
        bool did = false;
        if (loop->work_pending) {
            while (loop->work_fn && loop->work_fn(loop, loop->work_data))
                ;
            loop->work_pending = false;
            did = true;
        }
        if (timer_due(loop)) {
            if (++fired > SETTLE_MAX_FIRINGS) {
                eddy_log(EDDY_LOG_ERROR, "[loop] timers keep firing at the same instant");
                return fired;
            }
            fire_timer(loop);
            did = true;
        }
        if (!did) {
            run_before_sleep(loop);
            if (!loop->work_pending && !timer_due(loop))
                return fired;
        }
    }
}

void eddy_loop_advance(eddy_loop *loop, int64_t ms)
{
    int64_t target = loop->virtual_now + (ms > 0 ? ms : 0);
    eddy_loop_settle(loop);
    while (loop->heap_len > 0 && loop->heap[0]->deadline <= target) {
        if (loop->heap[0]->deadline > loop->virtual_now)
            loop->virtual_now = loop->heap[0]->deadline;
        eddy_loop_settle(loop);
    }
    loop->virtual_now = target;
    eddy_loop_settle(loop);
}
