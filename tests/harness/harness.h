/* harness.h: runs a flow on a virtual clock with given input messages and records what
 * reached "helper" nodes (the name Node-RED's own test helper uses), plus every error,
 * warning and status the nodes reported. Unit, node and later integration tests use it. */
#ifndef EDDY_HARNESS_H
#define EDDY_HARNESS_H

#include <jansson.h>
#include <stdbool.h>

#include "engine.h"
#include "flow.h"
#include "loop.h"
#include "registry.h"

typedef struct eddy_harness eddy_harness;

typedef struct eddy_harness_opts {
    eddy_clock_mode clock;    /* EDDY_CLOCK_MANUAL (default, 0 means manual here) or REAL */
    bool real_clock;          /* true: use the real clock instead */
    int64_t wall_start;       /* manual clock: wall time at virtual 0; 0 = 2024-01-01T00:00Z */
    size_t queue_limit;       /* engine queue bound; 0 = engine default */
    struct eddy_store *store; /* event store for the flow (attached to the harness loop
                                 while it runs, detached by eddy_harness_free); NULL = none */
    const eddy_node_type *const *types; /* test-only node types to register as well
                                           (NULL-terminated); NULL = none */
} eddy_harness_opts;

/* Loads 'flow_json' (a Node-RED flow array as text) with the native types, the Lua types
 * shipped with eddy (eddy_lua_types_dir) and "helper", and starts it. A flow without a tab
 * gets one ("t") and nodes without "z" are put on it (config nodes excepted). On failure
 * returns NULL and lists the problems. 'opts' may be NULL. Ownership: new,
 * eddy_harness_free. */
eddy_harness *eddy_harness_new(const char *flow_json, const eddy_harness_opts *opts,
                               eddy_problems *problems);
/* Stops the flow, then frees everything. Returns the number of timers still alive after
 * stop (a leak if not 0). Accepts NULL. */
int eddy_harness_free(eddy_harness *h);

/* Queues 'msg' (taken) to the input of node 'node_id'; a message without _msgid gets one.
 * EDDY_ENOTFOUND if no such running node. Does not run the loop. */
int eddy_harness_send(eddy_harness *h, const char *node_id, json_t *msg);
/* Runs until nothing is left to do at the current time. */
void eddy_harness_settle(eddy_harness *h);
/* Moves the virtual clock forward 'ms', firing timers on the way. */
void eddy_harness_advance(eddy_harness *h, int64_t ms);

/* Messages that reached helper 'helper_id' since the last take, in order. Ownership: new
 * array (empty if none). */
json_t *eddy_harness_take(eddy_harness *h, const char *helper_id);
/* Errors, warnings and status reports since the last take: array of
 * {"kind":"error"|"warn"|"status","node":id,"text":..., "status":{...}}. New array. */
json_t *eddy_harness_take_events(eddy_harness *h);

eddy_engine *eddy_harness_engine(eddy_harness *h);
eddy_loop *eddy_harness_loop(eddy_harness *h);

/* A fresh empty folder under $TMPDIR (or /tmp) for real files (LMDB stores). Ownership:
 * new, eddy_test_rmdir removes it with everything in it and frees the name. */
char *eddy_test_tmpdir(void);
void eddy_test_rmdir(char *dir);

#endif
