/* loop_test.c: timers on the virtual clock: order, repetition, stopping from callbacks,
 * finalizers, and the real clock firing once. */
#include "check.h"
#include "loop.h"

static char order[64];
static int finalized;

static int64_t record(eddy_loop *loop, eddy_timer *t, void *data)
{
    strncat(order, data, sizeof(order) - strlen(order) - 1);
    return EDDY_TIMER_STOP;
}

static void count_final(eddy_loop *loop, void *data)
{
    finalized++;
}

static void test_deadline_order(void)
{
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, NULL);
    order[0] = '\0';
    finalized = 0;
    eddy_timer_start(loop, 30, record, "c", count_final);
    eddy_timer_start(loop, 10, record, "a", count_final);
    eddy_timer_start(loop, 20, record, "b", count_final);
    eddy_timer_start(loop, 10, record, "A", count_final); /* same deadline: start order */
    eddy_loop_advance(loop, 15);
    CHECK_STR_EQ(order, "aA");
    CHECK_INT_EQ(eddy_loop_now(loop), 15);
    eddy_loop_advance(loop, 100);
    CHECK_STR_EQ(order, "aAbc");
    CHECK_INT_EQ(finalized, 4);
    CHECK_INT_EQ(eddy_loop_timer_count(loop), 0);
    eddy_loop_free(loop);
}

static int fired;
static int64_t times_at[8];

static int64_t repeat_thrice(eddy_loop *loop, eddy_timer *t, void *data)
{
    times_at[fired++] = eddy_loop_now(loop);
    return fired < 3 ? 100 : EDDY_TIMER_STOP;
}

static void test_repeat(void)
{
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, NULL);
    fired = 0;
    eddy_timer_start(loop, 50, repeat_thrice, NULL, NULL);
    eddy_loop_advance(loop, 1000);
    CHECK_INT_EQ(fired, 3);
    CHECK_INT_EQ(times_at[0], 50);
    CHECK_INT_EQ(times_at[1], 150);
    CHECK_INT_EQ(times_at[2], 250);
    eddy_loop_free(loop);
}

static int64_t stop_self(eddy_loop *loop, eddy_timer *t, void *data)
{
    fired++;
    eddy_timer_stop(loop, t);
    return 10; /* ignored: it was stopped */
}

static void test_stop_inside_callback(void)
{
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, NULL);
    fired = 0;
    finalized = 0;
    eddy_timer_start(loop, 5, stop_self, NULL, count_final);
    eddy_loop_advance(loop, 100);
    CHECK_INT_EQ(fired, 1);
    CHECK_INT_EQ(finalized, 1);
    CHECK_INT_EQ(eddy_loop_timer_count(loop), 0);
    eddy_loop_free(loop);
}

static void test_stop_before_and_free_finalizes(void)
{
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, NULL);
    order[0] = '\0';
    finalized = 0;
    eddy_timer *t = eddy_timer_start(loop, 10, record, "x", count_final);
    eddy_timer_start(loop, 10, record, "y", count_final);
    eddy_timer_stop(loop, t);
    CHECK_INT_EQ(finalized, 1);
    eddy_timer_start(loop, 500, record, "z", count_final);
    eddy_loop_advance(loop, 20);
    CHECK_STR_EQ(order, "y");
    eddy_loop_free(loop); /* "z" never fired but is finalized */
    CHECK_INT_EQ(finalized, 3);
}

static void test_wall_clock_follows_virtual(void)
{
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, NULL);
    eddy_loop_set_wall(loop, 1000000);
    eddy_loop_advance(loop, 250);
    CHECK_INT_EQ(eddy_loop_wall(loop), 1000250);
    eddy_loop_free(loop);
}

static int64_t stop_loop(eddy_loop *loop, eddy_timer *t, void *data)
{
    fired++;
    eddy_loop_stop(loop);
    return EDDY_TIMER_STOP;
}

static void test_real_clock(void)
{
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_REAL, NULL);
    fired = 0;
    int64_t start = eddy_loop_now(loop);
    eddy_timer_start(loop, 20, stop_loop, NULL, NULL);
    eddy_loop_run(loop);
    CHECK_INT_EQ(fired, 1);
    CHECK(eddy_loop_now(loop) - start >= 20);
    eddy_loop_free(loop);
}

/* A timer that asks to run again at once (0 ms) must not starve the rest of the loop:
 * before-sleep hooks (commits) run between its firings, however many other timers are
 * waiting (a timer phase once fired it again as many times as there were timers). */
static int spins, sleeps;
static int64_t spin(eddy_loop *loop, eddy_timer *t, void *data)
{
    if (++spins == 50) {
        eddy_loop_stop(loop);
        return EDDY_TIMER_STOP;
    }
    return 0;
}

static void count_sleep(eddy_loop *loop, void *data)
{
    sleeps++;
}

static void test_zero_delay_timer_lets_hooks_run(void)
{
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_REAL, NULL);
    spins = sleeps = 0;
    CHECK_INT_EQ(eddy_loop_add_before_sleep(loop, count_sleep, NULL), EDDY_OK);
    for (int i = 0; i < 10; i++)
        CHECK(eddy_timer_start(loop, 60000, spin, NULL, NULL));
    eddy_timer_start(loop, 0, spin, NULL, NULL);
    eddy_loop_run(loop);
    CHECK_INT_EQ(spins, 50);
    CHECK(sleeps >= 49); /* one turn of the loop per firing */
    eddy_loop_free(loop);
}

/* Acks follow work: flush hooks run only after the work queue is empty and every hold
 * is released, and always after the before-sleep (commit) hooks of the same iteration. */
static int work_left;
static char hook_log[64];

static bool do_work(eddy_loop *loop, void *data)
{
    strncat(hook_log, "w", sizeof(hook_log) - strlen(hook_log) - 1);
    return --work_left > 0;
}

static void commit_hook(eddy_loop *loop, void *data)
{
    strncat(hook_log, "c", sizeof(hook_log) - strlen(hook_log) - 1);
    if (data)
        eddy_loop_release(loop, 1);
}

static void flush_hook(eddy_loop *loop, void *data)
{
    strncat(hook_log, "F", sizeof(hook_log) - strlen(hook_log) - 1);
}

static void test_flush_waits_for_work_and_holds(void)
{
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_MANUAL, NULL);
    hook_log[0] = '\0';
    eddy_loop_set_work(loop, do_work, NULL);
    CHECK_INT_EQ(eddy_loop_add_flush(loop, flush_hook, NULL), EDDY_OK);
    CHECK_INT_EQ(eddy_loop_add_before_sleep(loop, commit_hook, NULL), EDDY_OK);
    work_left = 3;
    eddy_loop_work_pending(loop);
    CHECK(!eddy_loop_settled(loop));
    eddy_loop_settle(loop);
    CHECK_STR_EQ(hook_log, "wwwcF");
    CHECK(eddy_loop_settled(loop));

    /* A hold keeps the flush back until the commit hook releases it. */
    hook_log[0] = '\0';
    eddy_loop_hold(loop, 1);
    CHECK(!eddy_loop_settled(loop));
    eddy_loop_remove_before_sleep(loop, commit_hook, NULL);
    eddy_loop_settle(loop);
    CHECK_STR_EQ(hook_log, ""); /* held: no flush */
    hook_log[0] = '\0';
    eddy_loop_add_before_sleep(loop, commit_hook, (void *)1);
    eddy_loop_settle(loop);
    CHECK_STR_EQ(hook_log, "cF");
    CHECK(eddy_loop_settled(loop));
    eddy_loop_free(loop);
}

/* A deferred call runs at the top level (it may run the loop itself, as a deploy's
 * stop does), and eddy_loop_run then goes on until eddy_loop_stop. */
static int deferred_runs;
static int nested_turns;

static void deferred_call(eddy_loop *loop, void *data)
{
    (void)data;
    deferred_runs++;
    /* running the loop here must be allowed: we are outside libuv's callbacks */
    eddy_loop_run_once(loop);
    nested_turns++;
}

static int64_t defer_then_continue(eddy_loop *loop, eddy_timer *t, void *data)
{
    int *step = data;
    if ((*step)++ == 0) {
        eddy_loop_defer(loop, deferred_call, NULL);
        return 5; /* fire again after the deferred call */
    }
    eddy_loop_stop(loop);
    return EDDY_TIMER_STOP;
}

static void test_defer_runs_at_top_level(void)
{
    eddy_loop *loop = eddy_loop_new(EDDY_CLOCK_REAL, NULL);
    int step = 0;
    deferred_runs = nested_turns = 0;
    eddy_timer_start(loop, 1, defer_then_continue, &step, NULL);
    CHECK_INT_EQ(eddy_loop_run(loop), EDDY_OK);
    CHECK_INT_EQ(deferred_runs, 1);
    CHECK_INT_EQ(nested_turns, 1);
    CHECK_INT_EQ(step, 2); /* the loop went on after the deferred call */
    /* a call cancelled before the loop runs never runs */
    eddy_loop_defer(loop, deferred_call, &step);
    eddy_loop_cancel_deferred(loop, &step);
    eddy_timer_start(loop, 1, defer_then_continue, &step, NULL);
    step = 1;
    eddy_loop_run(loop);
    CHECK_INT_EQ(deferred_runs, 1);
    eddy_loop_free(loop);
}

static const check_test tests[] = {
    {"deadline_order", test_deadline_order},
    {"repeat", test_repeat},
    {"stop_inside_callback", test_stop_inside_callback},
    {"stop_before_and_free_finalizes", test_stop_before_and_free_finalizes},
    {"wall_clock_follows_virtual", test_wall_clock_follows_virtual},
    {"real_clock", test_real_clock},
    {"zero_delay_timer_lets_hooks_run", test_zero_delay_timer_lets_hooks_run},
    {"flush_waits_for_work_and_holds", test_flush_waits_for_work_and_holds},
    {"defer_runs_at_top_level", test_defer_runs_at_top_level},
    {NULL, NULL}};

CHECK_MAIN(tests)
