/* engine.h: runs a validated flow. Instantiates nodes (config nodes first), delivers
 * messages through one bounded run queue drained in batches on the loop, routes errors,
 * status and completion to catch/status/complete nodes, keeps context, and closes
 * everything on stop.
 *
 * States and the function behind each transition:
 *   idle --eddy_engine_start--> running --eddy_engine_stop--> closing --(all closed)--> idle
 * eddy_engine_stop returns once every node has closed (it runs the loop for nodes that
 * close asynchronously). */
#ifndef EDDY_ENGINE_H
#define EDDY_ENGINE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"
#include "flow.h"
#include "loop.h"
#include "node.h"
#include "registry.h"

typedef struct eddy_engine eddy_engine;

typedef struct eddy_engine_opts {
    size_t queue_limit; /* deliveries queued before sources are asked to hold back; 0 = 65536 */
    int batch;          /* deliveries per loop iteration; 0 = 1024 */
    struct eddy_store *store; /* the event store nodes reach through eddy_node_store;
                                 borrowed, must outlive the engine; NULL = none */
} eddy_engine_opts;

/* Hooks an embedder (admin server, test harness) can set; all optional. Arguments are
 * borrowed for the call. */
typedef struct eddy_engine_hooks {
    void (*on_status)(void *data, eddy_node *node, const json_t *status);
    /* An error nobody caught (or with no message): the formatted log line and the node. */
    void (*on_uncaught)(void *data, eddy_node *node, const char *text);
    void (*on_warn)(void *data, eddy_node *node, const char *text);
    /* A debug node output 'value' (the whole message or one property, named 'property'). */
    void (*on_debug)(void *data, eddy_node *node, const json_t *value, const char *property);
    /* A node is about to close (stop, redeploy); 'removed' when it leaves the flow. */
    void (*on_close)(void *data, eddy_node *node, bool removed);
    void *data;
} eddy_engine_hooks;

/* Ownership: new; borrows 'loop' and 'reg', which must outlive it. */
eddy_engine *eddy_engine_new(eddy_loop *loop, const eddy_registry *reg,
                             const eddy_engine_opts *opts, eddy_err *err);
/* Stops (if running) and frees. Accepts NULL. */
void eddy_engine_free(eddy_engine *engine);
void eddy_engine_set_hooks(eddy_engine *engine, const eddy_engine_hooks *hooks);
/* Sets the event store nodes reach (a deploy may bring the first event node); borrowed. */
void eddy_engine_set_store(eddy_engine *engine, struct eddy_store *store);

/* Starts 'flow' (takes it). If a node fails to set up, every node started so far is
 * closed and the problems are listed; the engine is then idle. */
int eddy_engine_start(eddy_engine *engine, eddy_flow *flow, eddy_problems *problems);
/* Closes every node (waiting for asynchronous closes) and drops queued messages of the
 * stopped flow (counted in eddy_engine_stats.dropped_on_stop). Before any node closes, the
 * run queue is drained (within a bound) and the event store's open group committed, so the
 * messages event-store nodes held for that commit reach the rest of the flow too. */
void eddy_engine_stop(eddy_engine *engine);
bool eddy_engine_running(const eddy_engine *engine);

/* How a deploy replaces the running flow (Node-RED-Deployment-Type). */
typedef enum eddy_deploy_mode {
    EDDY_DEPLOY_FULL,  /* stop every node, start the new flow */
    EDDY_DEPLOY_NODES, /* restart only changed nodes */
    EDDY_DEPLOY_FLOWS  /* restart every node of a tab that has a change */
} eddy_deploy_mode;

typedef struct eddy_deploy_result {
    int stopped; /* nodes closed (changed or removed) */
    int started; /* nodes set up (changed or added) */
    int kept;    /* nodes left running untouched */
} eddy_deploy_result;

/* Replaces the running flow by 'flow' (taken; validated by the caller). A node counts as
 * changed when its JSON differs other than in position and wires (x, y, wires: moving a
 * node or rewiring it keeps it running; its wires are redone), when its type, tab env or
 * disabled state changed, or when a node it found at set-up (a config node, a link or
 * subflow target) restarts. NODES restarts the changed nodes; FLOWS every node of a tab
 * with a change (added and removed nodes count); FULL all. Messages queued for restarted
 * nodes are dropped (counted in dropped_on_stop; acknowledgements wait as in stop). Node,
 * flow and global context survive, except for nodes and tabs no longer in the flow. If a
 * new node fails to set up, every node is stopped, as with eddy_engine_start. */
int eddy_engine_redeploy(eddy_engine *engine, eddy_flow *flow, eddy_deploy_mode mode,
                         eddy_problems *problems, eddy_deploy_result *result);

/* The running node with 'id', or NULL. Borrowed until stop. */
eddy_node *eddy_engine_find(eddy_engine *engine, const char *id);
/* Queues 'msg' (taken) to the input of 'node' as if a wire delivered it. */
void eddy_engine_inject(eddy_engine *engine, eddy_node *node, json_t *msg);
/* Drains the run queue completely (tests, shutdown). */
void eddy_engine_drain(eddy_engine *engine);
/* Global context, kept across restarts. Borrowed. */
json_t *eddy_engine_global_context(eddy_engine *engine);
/* The context of node or scope (tab, subflow instance) 'id' (ignored for global), or NULL
 * if it has none yet. Borrowed; contexts are kept across redeploys, as in Node-RED. */
json_t *eddy_engine_context(eddy_engine *engine, eddy_ctx_scope scope, const char *id);
const eddy_flow *eddy_engine_flow(const eddy_engine *engine);

typedef struct eddy_engine_stats {
    uint64_t delivered;       /* messages handed to input handlers */
    uint64_t errors;          /* node errors reported */
    uint64_t uncaught;        /* of which nobody caught */
    size_t queued;            /* deliveries waiting now */
    size_t queue_high;        /* most ever waiting */
    uint64_t dropped_on_stop; /* deliveries discarded by stop */
} eddy_engine_stats;
void eddy_engine_get_stats(const eddy_engine *engine, eddy_engine_stats *out);

#endif
