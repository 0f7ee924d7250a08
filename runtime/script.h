/* script.h: a node driven by Lua: its own sandboxed state (lua_host.h) with the API a script
 * sees (node.send, node.done, node.status, node.error, node.warn, node.log, context, flow,
 * global, env, timers, json, util), and the message path: a message in as a Lua table, whatever
 * the handler returns out to the node's outputs. The `lua` node (nodes/lua.c) and node types
 * written in Lua (lua_type.h) are both built on it. The API is described for script authors
 * in nodes/README.md.
 *
 * What a handler may return (and node.send may take), as Node-RED's function node:
 *   nil                   nothing is sent
 *   a message (a table with string keys, or {})        sent on output 1
 *   a list, one entry per output: nil/json.null (nothing), a message, or a list of
 *   messages sent in order on that output ({nil, msg} sends on output 2 only)
 * Messages sent while handling an input carry that input's _msgid (as Node-RED); others
 * get a fresh one when they have none.
 *
 * Invariants:
 *   1. While a handler runs, 'current' is the message it handles; the first message
 *      converted from Lua in that call may share unchanged sub-values with it, no other.
 *   2. Every timer a script starts is in 'timers' until it stops; eddy_script_free stops
 *      them all before the state goes, so no timer outlives the state. */
#ifndef EDDY_SCRIPT_H
#define EDDY_SCRIPT_H

#include <jansson.h>
#include <stdbool.h>

#include "err.h"
#include "lua_host.h"
#include "node.h"

typedef struct eddy_script eddy_script;

/* A state for 'node' with the API installed (globals node, context, flow, global, env,
 * util, setTimeout, setInterval, clearTimeout, clearInterval; node.setTimeout etc. too).
 * 'auto_done': the script is done with a message when its handler returns (false when the
 * script calls node.done itself). Ownership: new, free with eddy_script_free; borrows
 * 'node' for its life. */
eddy_script *eddy_script_new(eddy_node *node, const eddy_lua_limits *limits, bool auto_done,
                             eddy_err *err);
/* Stops the script's timers, then closes the state. Accepts NULL. */
void eddy_script_free(eddy_script *s);
eddy_lua *eddy_script_host(eddy_script *s);
/* After this, setTimeout/setInterval refuse (the node is closing). */
void eddy_script_closing(eddy_script *s);

/* Compiles 'src' (text) as a chunk named 'chunkname' ("func") whose arguments are '...'
 * and keeps it; '*ref' receives its registry reference. Syntax errors come back as
 * EDDY_ESCRIPT with "func:LINE: ..." in 'err'. */
int eddy_script_compile(eddy_script *s, const char *src, const char *chunkname, int *ref,
                        eddy_err *err);
/* Runs the chunk of 'src' once and keeps its first result (which must be a table) in the
 * registry: '*ref'. For Lua node types, whose file returns its declaration. */
int eddy_script_load_module(eddy_script *s, const char *src, size_t len, const char *chunkname,
                            int *ref, eddy_err *err);
/* The registry reference of field 'name' of the table 'table_ref' if it is a function,
 * else LUA_NOREF. Must not run inside a call. */
int eddy_script_field_ref(eddy_script *s, int table_ref, const char *name);

/* Handles one input: calls function 'ref' with (msg) or, with 'with_node', (node, msg),
 * and sends what it returns. Takes 'msg'. Errors (the script's, a bad result, an exhausted
 * budget or memory) go to catch nodes with the message, named "func:LINE: ..."; the state
 * stays usable for the next message. */
void eddy_script_input(eddy_script *s, int ref, bool with_node, json_t *msg);
/* Calls function 'ref' with no argument or, with 'with_node', (node); what it returns is
 * ignored. For on-start/on-stop code and setup/close handlers. */
int eddy_script_call(eddy_script *s, int ref, bool with_node, eddy_err *err);

/* Pushes 'value' (borrowed JSON) as field 'name' of the `node` table (node.config). Must
 * not run inside a call. */
int eddy_script_set_node_field(eddy_script *s, const char *name, const json_t *value,
                               eddy_err *err);

#endif
