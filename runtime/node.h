/* node.h: what a node type is (a static description with callbacks, one per file in nodes/)
 * and what a node instance may do (send, report errors and status, say it is done, use
 * context, timers and typed values). The engine (engine.h) owns instances; node code sees
 * only this header, msg.h, loop.h, log.h, mem.h and err.h.
 *
 * Life cycle of an instance, and the function behind each step:
 *   validated (eddy_flow_load) -> configured (engine fills props into state) ->
 *   set up ('setup') -> running ('input', timers) -> closing ('close') ->
 *   closed (close returned EDDY_CLOSE_DONE, or the node called eddy_node_closed) -> freed.
 *
 * Invariants:
 *   1. 'input' owns the message it gets: it sends it (eddy_node_send takes it) or frees it,
 *      exactly once. The engine calls eddy_node_done for it after 'input' returns unless the
 *      type has EDDY_NODE_ASYNC_DONE, in which case the node calls it itself.
 *   2. Nothing a node does from a callback runs another node's code synchronously: sends are
 *      queued, so a node's state is never re-entered.
 *   3. Timers started with eddy_node_timer_start are stopped by the engine when the node
 *      closes; node code need not track them for that.
 */
#ifndef EDDY_NODE_H
#define EDDY_NODE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "loop.h"
#include "msg.h"

typedef struct eddy_node eddy_node;
typedef struct eddy_node_type eddy_node_type;

/* ---- properties: declared data, validated and filled by the engine before setup ---- */

typedef enum eddy_prop_kind {
    EDDY_PROP_STR,    /* const char * (borrowed from the flow, valid until close); "" if absent */
    EDDY_PROP_NUM,    /* double; accepts JSON numbers and numeric strings ("5"); "" = default */
    EDDY_PROP_INT,    /* long; like NUM but must be integral */
    EDDY_PROP_BOOL,   /* bool; accepts true/false and "true"/"false" */
    EDDY_PROP_JSON,   /* json_t * borrowed from the flow (any JSON), NULL if absent */
    EDDY_PROP_CONFIG, /* eddy_node * of a config node whose id the property holds; the
                         'choices' field names the required type ("mqtt-broker") */
} eddy_prop_kind;

typedef struct eddy_prop {
    const char *name; /* the property name in the flow JSON (Node-RED's name) */
    eddy_prop_kind kind;
    const char *def;     /* default as JSON text ("5", "\"payload\"", "true"); NULL = none */
    bool required;       /* absent (or "" for STR) is an error */
    size_t offset;       /* where the value goes inside the type's state struct */
    const char *help;    /* one line, for `eddy help nodes` and the editor */
    const char *choices; /* STR: allowed values as "|a|b|c|", NULL = any; CONFIG: type name */
} eddy_prop;

/* ---- the type: one const struct per file in nodes/ ---- */

/* Flags of eddy_node_type.flags:
 *   EDDY_NODE_CONFIG      a config node (no wires; others refer to it by id); set up first.
 *   EDDY_NODE_ASYNC_DONE  the node calls eddy_node_done itself (it holds messages).
 *   EDDY_NODE_CATCH       receives errors of nodes in scope ('scope' property).
 *   EDDY_NODE_STATUS      receives status changes of nodes in scope.
 *   EDDY_NODE_COMPLETE    receives messages that nodes in scope finished.
 *   EDDY_NODE_LINK_IN     a link target: other nodes find it with eddy_node_find.
 *   EDDY_NODE_NO_RUN      declared only (comment, tab-like): never instantiated.
 *   EDDY_NODE_STORE       uses the event store: `eddy run` opens the data folder's store
 *                         only for flows that have such a node. */
#define EDDY_NODE_CONFIG     0x01u
#define EDDY_NODE_ASYNC_DONE 0x02u
#define EDDY_NODE_CATCH      0x04u
#define EDDY_NODE_STATUS     0x08u
#define EDDY_NODE_COMPLETE   0x10u
#define EDDY_NODE_LINK_IN    0x20u
#define EDDY_NODE_NO_RUN     0x40u
#define EDDY_NODE_STORE      0x80u

/* Returned by 'close': done now, or later through eddy_node_closed. */
#define EDDY_CLOSE_DONE  0
#define EDDY_CLOSE_LATER 1

struct eddy_node_type {
    const char *name;       /* Node-RED's type name, e.g. "switch", "link in" */
    int inputs;             /* 0 or 1 */
    int outputs;            /* fixed output count, or -1: from the 'outputs' property or the
                               length of 'wires' (switch, function-like nodes) */
    unsigned flags;         /* EDDY_NODE_* above */
    const eddy_prop *props; /* terminated by an entry with name NULL; NULL for none */
    size_t state_size;      /* bytes zeroed by the engine; props are written into it */
    const char *help;       /* one paragraph for `eddy help nodes` */

    /* Optional deeper validation, run by `eddy check` and before setup: 'config' is the
     * node's JSON object, 'state' already holds the props. Report problems with
     * eddy_err_set (the engine adds id, type and tab). Must not start timers or I/O. */
    int (*validate)(const eddy_node_type *type, const json_t *config, void *state, eddy_err *err);
    /* Starts the node. Fails through 'err'. May be NULL. */
    int (*setup)(eddy_node *node, void *state, eddy_err *err);
    /* One message arrived on the input. Takes 'msg' (invariant 1). NULL for no input. */
    void (*input)(eddy_node *node, void *state, json_t *msg);
    /* Stops the node: frees what setup allocated, returns EDDY_CLOSE_DONE or
     * EDDY_CLOSE_LATER. 'removed' is true when the node is deleted (not only restarted).
     * May be NULL. */
    int (*close)(eddy_node *node, void *state, bool removed);
    /* A command from the editor (the inject button: "inject" with the request body;
     * the debug toggle: "enable"/"disable"), called through eddy_node_command. Returns
     * EDDY_OK, or an error through 'err' (EDDY_EUNSUPPORTED for commands it does not know).
     * May be NULL: the type takes no commands. */
    int (*command)(eddy_node *node, void *state, const char *name, const json_t *arg,
                   eddy_err *err);
    /* Credential fields the editor may read back ("|user|"); every other field of a
     * node's "credentials" is a secret the editor only learns the presence of. */
    const char *public_credentials;
};

/* Runs a command of the node's type (see 'command'); EDDY_EUNSUPPORTED if it has none. */
int eddy_node_command(eddy_node *node, const char *name, const json_t *arg, eddy_err *err);

/* ---- identity and configuration (all borrowed for the life of the node) ---- */

const char *eddy_node_id(const eddy_node *node);
const char *eddy_node_type_name(const eddy_node *node);
/* The node's type (for types made at run time, which share callbacks: Lua types). */
const eddy_node_type *eddy_node_get_type(const eddy_node *node);
const char *eddy_node_name(const eddy_node *node); /* "" when unnamed */
const char *eddy_node_tab(const eddy_node *node);  /* tab id, or subflow instance id */
/* The node's whole JSON object from the flow. Borrowed. */
const json_t *eddy_node_config(const eddy_node *node);
/* The state of a (config) node, e.g. one found through an EDDY_PROP_CONFIG property. */
void *eddy_node_state(eddy_node *node);
int eddy_node_output_count(const eddy_node *node);
eddy_loop *eddy_node_loop(eddy_node *node);
/* The event store of the engine (eddy run --data DIR), or NULL when it has none. Borrowed
 * for the life of the node. Types that need it set EDDY_NODE_STORE. */
struct eddy_store *eddy_node_store(eddy_node *node);

/* ---- messages ---- */

/* Sends 'msg' on output 'output' (0-based). Takes 'msg'. The first wire gets it, the others
 * deep copies; with no wire it is freed. Delivery is queued (ordered per wire). A message
 * a node makes must come from eddy_msg_new (or be a copy of one), so it has a _msgid; this
 * hot path does not check. */
void eddy_node_send(eddy_node *node, int output, json_t *msg);
/* Node-RED's send(array): 'msgs' is an array with one entry per output: null (nothing), a
 * message, or an array of messages sent in order. Takes 'msgs'. Top-level messages
 * without a _msgid get a fresh one, as Node-RED's send does. */
void eddy_node_send_array(eddy_node *node, json_t *msgs);
/* Tells complete nodes in scope that 'msg' is finished. Borrowed: copies what it needs. */
void eddy_node_done(eddy_node *node, const json_t *msg);
/* Reports an error. With a 'msg' (borrowed) it goes to catch nodes in scope (msg.error =
 * {message, source:{id,type,name,count}}); if none catches it, or with no msg, it is logged
 * with the node's id and type. The flow keeps running. */
void eddy_node_error(eddy_node *node, const json_t *msg, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void eddy_node_warn(eddy_node *node, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void eddy_node_log(eddy_node *node, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Sets the node's status (to status nodes, later the editor). NULLs clear it. */
void eddy_node_set_status(eddy_node *node, const char *fill, const char *shape, const char *text);
/* Publishes 'value' (borrowed) as debug output of this node: to the engine's on_debug hook
 * (the editor's debug sidebar) and, if 'to_log', to the log. 'property' names what it is
 * ("payload", or "msg" for the whole message). */
void eddy_node_debug_out(eddy_node *node, const json_t *value, const char *property, bool to_log);
/* Back-pressure: true while the run queue is over its bound. Source nodes (inject, mqtt in)
 * should hold back until their 'resume' callback, set with eddy_node_on_drain, runs. */
bool eddy_node_backlogged(const eddy_node *node);
void eddy_node_on_drain(eddy_node *node, void (*resume)(eddy_node *node, void *state));

/* Message deliveries for catch/status/complete/link nodes are ordinary input messages. */

/* ---- finding other nodes (link nodes) ---- */

/* The running node with 'id', or NULL. Borrowed while both run. */
eddy_node *eddy_node_find(eddy_node *from, const char *id);
/* Queues 'msg' to the input of 'target' (links). Takes 'msg'. */
void eddy_node_deliver(eddy_node *from, eddy_node *target, json_t *msg);

/* ---- finishing asynchronously ---- */

/* For a 'close' that returned EDDY_CLOSE_LATER: the node has finished closing. */
void eddy_node_closed(eddy_node *node);

/* ---- timers, stopped automatically when the node closes ---- */

typedef int64_t (*eddy_node_timer_fn)(eddy_node *node, void *state, void *data);
/* Like eddy_timer_start; the callback gets the node and its state. 'finalizer' (may be NULL)
 * frees 'data' when the timer goes away. The handle is valid until the timer stops. */
eddy_timer *eddy_node_timer_start(eddy_node *node, int64_t delay_ms, eddy_node_timer_fn fn,
                                  void *data, void (*finalizer)(void *data));
void eddy_node_timer_stop(eddy_node *node, eddy_timer *timer);

/* ---- context and environment ---- */

typedef enum eddy_ctx_scope { EDDY_CTX_NODE, EDDY_CTX_FLOW, EDDY_CTX_GLOBAL } eddy_ctx_scope;

/* The context object of 'scope' (a JSON object; mutate it in place). Borrowed while the
 * node runs (node and flow context are cleared on redeploy, global is kept). */
json_t *eddy_node_context(eddy_node *node, eddy_ctx_scope scope);
/* Gets a context value by key path ("a.b"). In a subflow "$parent.x" reads the parent flow.
 * Borrowed, NULL if missing. */
json_t *eddy_node_context_get(eddy_node *node, eddy_ctx_scope scope, const char *key);
/* Sets (takes 'value'; NULL deletes). */
int eddy_node_context_set(eddy_node *node, eddy_ctx_scope scope, const char *key, json_t *value,
                          eddy_err *err);
/* An environment variable as Node-RED resolves it: the subflow instance's env, its
 * template's, the tab's env, then the process environment, then NODE_RED-style built-ins
 * (NR_NODE_ID, NR_NODE_NAME, NR_FLOW_ID, NR_FLOW_NAME). Borrowed (a JSON value: env entries
 * may be typed), NULL if unset. */
json_t *eddy_node_env(eddy_node *node, const char *name);

/* ---- typed values (Node-RED's typedInput: a value and its type) ---- */

/* Evaluates a typed value: type "str", "num", "bool", "json", "date", "env", "msg", "flow",
 * "global", "re" (string), "bin" (array of bytes as JSON), "jsonata" is EDDY_EUNSUPPORTED.
 * For "date" the value may be "" (ms), "iso" or "object". For "msg" 'msg' may be NULL (then
 * the result is NULL with EDDY_OK). "env" expands "${X}" references inside strings too.
 * Ownership: 'out' gets a new reference (NULL when the referenced value is missing). */
int eddy_node_eval_typed(eddy_node *node, const json_t *msg, const char *type, const json_t *value,
                         json_t **out, eddy_err *err);
/* true for the typed-value types eddy_node_eval_typed supports. */
bool eddy_typed_supported(const char *type);

#endif
