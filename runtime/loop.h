/* loop.h: eddy's one event loop. It wraps libuv (see runtime/README.md for why libuv) and
 * adds what the engine needs on top: timers kept in eddy's own heap so that tests can run
 * them on a virtual clock, a "work" hook that drains the run queue in bounded batches
 * without starving I/O, and before-sleep hooks (commits happen there, acks after them).
 *
 * Threads: every function here is for the loop thread only, except eddy_loop_wakeup. */
#ifndef EDDY_LOOP_H
#define EDDY_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "err.h"

typedef struct eddy_loop eddy_loop;
typedef struct eddy_timer eddy_timer;

/* A timer callback returns the delay in ms before it fires again, or EDDY_TIMER_STOP. */
#define EDDY_TIMER_STOP (-1)
typedef int64_t (*eddy_timer_fn)(eddy_loop *loop, eddy_timer *timer, void *data);
/* Runs once when a timer goes away (stopped, or loop freed): frees 'data' if it owns it. */
typedef void (*eddy_timer_finalizer)(eddy_loop *loop, void *data);

/* Work hook: does at most one bounded batch and returns true while more work is pending. */
typedef bool (*eddy_loop_work_fn)(eddy_loop *loop, void *data);
/* Before-sleep hook: runs each iteration after I/O and work, before the loop blocks. */
typedef void (*eddy_loop_hook_fn)(eddy_loop *loop, void *data);

typedef enum eddy_clock_mode {
    EDDY_CLOCK_REAL = 0, /* libuv's monotonic clock and the system's wall clock */
    EDDY_CLOCK_MANUAL    /* time moves only through eddy_loop_advance (tests) */
} eddy_clock_mode;

/* Ownership: new, free with eddy_loop_free. NULL with 'err' set on failure. */
eddy_loop *eddy_loop_new(eddy_clock_mode mode, eddy_err *err);
/* Stops and finalizes every timer, closes libuv handles. Accepts NULL. */
void eddy_loop_free(eddy_loop *loop);

/* The libuv loop, for modules that add their own handles (MQTT socket, HTTP server).
 * Borrowed for the life of 'loop'. NULL in manual mode. */
struct uv_loop_s *eddy_loop_uv(eddy_loop *loop);

/* Runs until eddy_loop_stop (real mode). Returns EDDY_OK. */
int eddy_loop_run(eddy_loop *loop);
/* Asks eddy_loop_run to return after the current iteration. */
void eddy_loop_stop(eddy_loop *loop);
/* Runs 'fn' at the top level of eddy_loop_run, outside every loop callback: for work that
 * itself runs the loop (stopping and starting flows on a deploy), since libuv's loop must
 * not be re-entered from a callback. Calls run in the order queued. Not run if the loop is
 * freed first. EDDY_OK or EDDY_ENOMEM. */
int eddy_loop_defer(eddy_loop *loop, eddy_loop_hook_fn fn, void *data);
/* Drops the deferred calls queued with 'data'. */
void eddy_loop_cancel_deferred(eddy_loop *loop, void *data);
/* Thread-safe: wakes a sleeping loop (e.g. after a worker finished). */
void eddy_loop_wakeup(eddy_loop *loop);

/* Monotonic milliseconds; in manual mode starts at 0 and moves with eddy_loop_advance. */
int64_t eddy_loop_now(const eddy_loop *loop);
/* Wall-clock milliseconds since the epoch; in manual mode the start set by
 * eddy_loop_set_wall plus the virtual time elapsed. */
int64_t eddy_loop_wall(const eddy_loop *loop);
/* Manual mode: sets the wall-clock time that corresponds to the current virtual time. */
void eddy_loop_set_wall(eddy_loop *loop, int64_t wall_ms);

/* Starts a timer firing after 'delay_ms' (0 = on the next iteration). 'finalizer' may be
 * NULL. Ownership: the timer belongs to the loop; the handle stays valid until the timer
 * stops (callback returned EDDY_TIMER_STOP or eddy_timer_stop was called), after which it
 * must not be used. NULL on out-of-memory. */
eddy_timer *eddy_timer_start(eddy_loop *loop, int64_t delay_ms, eddy_timer_fn fn, void *data,
                             eddy_timer_finalizer finalizer);
/* Stops a timer; its finalizer runs (now, or after its callback returns if it is running).
 * Safe from inside any callback, including the timer's own. Accepts NULL. */
void eddy_timer_stop(eddy_loop *loop, eddy_timer *timer);

/* Sets the single work hook (the engine's run queue). */
void eddy_loop_set_work(eddy_loop *loop, eddy_loop_work_fn fn, void *data);
/* Tells the loop the work hook has work (call after enqueueing into an idle queue). */
void eddy_loop_work_pending(eddy_loop *loop);
/* Adds a before-sleep hook; returns EDDY_OK or EDDY_ENOMEM. */
int eddy_loop_add_before_sleep(eddy_loop *loop, eddy_loop_hook_fn fn, void *data);
void eddy_loop_remove_before_sleep(eddy_loop *loop, eddy_loop_hook_fn fn, void *data);

/* Acknowledgements follow work. A module that takes input from outside (MQTT) sends its
 * acknowledgements from a flush hook: flush hooks run after the before-sleep hooks (where
 * the event store commits), and only in an iteration where the loop is settled: the run
 * queue is empty and no hold is outstanding. A module whose work is not finished when the
 * queue empties (appends waiting for their commit) holds the loop until it is. */
int eddy_loop_add_flush(eddy_loop *loop, eddy_loop_hook_fn fn, void *data);
void eddy_loop_remove_flush(eddy_loop *loop, eddy_loop_hook_fn fn, void *data);
/* Takes 'n' holds / gives 'n' back. Give back from the loop thread; a worker thread
 * finishing work posts to the loop first (then calls eddy_loop_wakeup). */
void eddy_loop_hold(eddy_loop *loop, long n);
void eddy_loop_release(eddy_loop *loop, long n);
/* true when no work is pending and no hold is outstanding. */
bool eddy_loop_settled(const eddy_loop *loop);
/* Group commit's hint. A source that stops reading with input still waiting (a batch
 * limit per turn, a full run queue) notes it during the turn; before-sleep hooks may then
 * leave their group open for the next turn to take that input too (the event store does,
 * within limits). The note is forgotten once the before-sleep hooks have run. */
void eddy_loop_note_input_left(eddy_loop *loop);
bool eddy_loop_input_left(const eddy_loop *loop);

/* Manual mode: drains all work and runs due timers and before-sleep hooks until nothing is
 * left to do at the current virtual time. Returns the number of timer firings. */
int eddy_loop_settle(eddy_loop *loop);
/* Manual mode: moves virtual time forward 'ms', firing timers in deadline order (time is
 * set to each deadline before its callback) and settling between them. */
void eddy_loop_advance(eddy_loop *loop, int64_t ms);
/* Real mode: runs one non-blocking iteration (tests and shutdown). */
void eddy_loop_run_once(eddy_loop *loop);
/* Number of live timers (tests assert nothing leaked). */
int eddy_loop_timer_count(const eddy_loop *loop);

#endif
