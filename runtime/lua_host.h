/* lua_host.h: one Lua 5.4 state per node, the limits and the sandbox every script runs
 * under, and the conversion between JSON values (jansson) and Lua values. What a script may
 * do to the flow (node.send, context, timers) is lua_api.h's; this module knows no node.
 *
 * Limits. Every state has a memory cap (its lua_Alloc refuses to grow past it, so the
 * script gets Lua's "not enough memory" error) and an instruction budget per entry from
 * the host (a count hook every EDDY_LUA_HOOK_STEP instructions adds to a counter shared by
 * the state's coroutines; creating a coroutine and converting values to JSON are charged
 * too). A script that exhausts its budget cannot go on by catching the error with pcall:
 * from then on its hook fires on every instruction and raises again, so each enclosing
 * pcall unwinds in turn until the host's call returns.
 *
 * Sandbox. Opened: base (without dofile, loadfile; load only compiles text), coroutine,
 * table, string (without string.dump), math, utf8, and os.time, os.clock, os.date,
 * os.difftime. Not opened: io, package/require, debug, os.execute, os.exit, os.remove,
 * os.rename, os.tmpname, os.getenv (environment goes through env.get), os.setlocale
 * (process-wide). collectgarbage accepts only "collect", "count", "step", "isrunning".
 * Lua runs __gc finalizers and message handlers with hooks off, where no budget can stop
 * them: setmetatable refuses metatables with __gc, and xpcall calls its handler after the
 * stack has unwound. print and warn go to eddy's log.
 *
 * JSON <-> Lua (runtime/README.md has the table):
 *   object -> table (string keys); array -> table (1..n) marked with the json.array
 *   metatable, so [] stays an array; null -> json.null (a light userdata); integer ->
 *   integer; real -> float, except integral reals that fit in 64 bits, which become
 *   integers; string -> string. Back: a table is an array when it carries the json.array
 *   mark or its keys are exactly 1..n (n >= 1); an object when all keys are strings; an
 *   empty unmarked table is an object. Anything else (mixed keys, holes, non-string keys,
 *   functions, NaN, infinities, invalid UTF-8, nesting deeper than EDDY_LUA_MAX_DEPTH) is
 *   an error naming the path of the bad value ("msg.payload.f").
 *
 * Errors are longjmps inside Lua; every function here that may raise must run inside
 * eddy_lua_run (protected), which is how the host never panics.
 *
 * Threads: a state belongs to the loop thread that made it. */
#ifndef EDDY_LUA_HOST_H
#define EDDY_LUA_HOST_H

#include <jansson.h>
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

#define EDDY_LUA_DEFAULT_MEMORY       (16u << 20) /* bytes per state */
#define EDDY_LUA_DEFAULT_INSTRUCTIONS 10000000    /* VM instructions per call */
#define EDDY_LUA_HOOK_STEP            1000        /* instructions between budget checks */
#define EDDY_LUA_MAX_DEPTH            100         /* nesting of tables/objects converted */
#define EDDY_LUA_VALUE_COST           10          /* budget charged per value converted to JSON */
#define EDDY_LUA_REFUSAL_COST         100000      /* budget charged per allocation refused */
#define EDDY_LUA_PATTERN_STEPS        16 /* string pattern matching steps per instruction */

typedef struct eddy_lua eddy_lua;

typedef struct eddy_lua_limits {
    size_t memory;        /* bytes the state may hold; 0 = EDDY_LUA_DEFAULT_MEMORY */
    int64_t instructions; /* per call from the host; 0 = EDDY_LUA_DEFAULT_INSTRUCTIONS */
} eddy_lua_limits;

/* ---- the state ---- */

/* A sandboxed state. 'log_subject' (copied) prefixes print/warn lines, e.g. "node n1 (lua)".
 * Ownership: new, free with eddy_lua_free. NULL with 'err' set (ENOMEM) on failure. */
eddy_lua *eddy_lua_new(const eddy_lua_limits *limits, const char *log_subject, eddy_err *err);
/* Closes the state (running pending __gc finalizers under the budget). Accepts NULL. */
void eddy_lua_free(eddy_lua *h);
/* The state. Borrowed for the life of 'h'. */
lua_State *eddy_lua_state(eddy_lua *h);
/* The host of a state (or of one of its coroutines). */
eddy_lua *eddy_lua_from_state(lua_State *L);
/* Embedder data (lua_api's node binding). */
void eddy_lua_set_user(eddy_lua *h, void *user);
void *eddy_lua_user(const eddy_lua *h);
/* Bytes the state holds now. */
size_t eddy_lua_memory(const eddy_lua *h);
const eddy_lua_limits *eddy_lua_get_limits(const eddy_lua *h);

/* ---- running code ---- */

/* Calls 'fn' in protected mode with a fresh instruction budget; 'fn' gets 'ud' as a light
 * userdata at stack index 1 and may raise Lua errors. Returns EDDY_OK; EDDY_EBUDGET when the
 * instruction budget or the memory cap stopped it; EDDY_ESCRIPT for any other error (its
 * message, with the chunk name and line Lua gives, in 'err'). Nested calls (from inside
 * 'fn') share the outer budget. The stack is left as it was. */
int eddy_lua_run(eddy_lua *h, lua_CFunction fn, void *ud, eddy_err *err);
/* Compiles text 'src' (binary chunks are refused) named 'chunkname' (shown in messages as
 * given, e.g. "func") and pushes the function. Must run inside eddy_lua_run; raises the
 * syntax error ("func:3: ...") as a Lua error. */
void eddy_lua_load(lua_State *L, const char *src, size_t len, const char *chunkname);
/* Adds 'n' instructions of work done in C on the script's behalf; raises the budget error
 * when exhausted. Inside eddy_lua_run only. */
void eddy_lua_charge(lua_State *L, int64_t n);
/* true once the current call ran out of budget or memory. */
bool eddy_lua_exhausted(const eddy_lua *h);
/* Counts every call from now on (Lua or C functions, metamethods included) until
 * eddy_lua_watched_calls, which stops counting and returns the count: how a caller learns
 * that a read-only function (lua_inspect.h) ran nothing but its own code. On the main
 * thread, inside eddy_lua_run only. */
void eddy_lua_watch_calls(eddy_lua *h);
long eddy_lua_watched_calls(eddy_lua *h);

/* C memory held across Lua calls that may raise: a userdata (pushed on the stack) whose
 * collection frees 'json' and 'text'. Push the box first, then allocate into it; clear it
 * when done. eddy_lua_box_new raises on out-of-memory (before anything is owned). */
typedef struct eddy_lua_box {
    json_t *json; /* json_decref'd */
    char *text;   /* eddy_free'd */
} eddy_lua_box;
eddy_lua_box *eddy_lua_box_new(lua_State *L);
/* Frees what the box holds now. Accepts NULL. */
void eddy_lua_box_clear(eddy_lua_box *box);

/* ---- JSON <-> Lua ---- */

/* Pushes 'v' (borrowed) as a Lua value; NULL pushes nil. Raises on out-of-memory or
 * nesting deeper than EDDY_LUA_MAX_DEPTH. */
void eddy_lua_push_json(lua_State *L, const json_t *v);
/* Converts the value at 'idx' to JSON. 'what' names it in errors ("msg"). 'hint' (borrowed,
 * may be NULL) is a JSON value the result may share: every sub-value equal to the one at
 * the same path of 'hint' is taken from it (a reference), so an unchanged message costs a
 * walk, not a copy; the caller must not use 'hint' for another result. nil converts to
 * NULL with EDDY_OK. Returns EDDY_OK with 'out' a new reference, EDDY_EINVAL (value that JSON
 * cannot hold) or EDDY_ENOMEM with 'err' set, or EDDY_EBUDGET when the work charged ran
 * out of budget. Never raises. */
int eddy_lua_to_json(lua_State *L, int idx, const char *what, const json_t *hint, json_t **out,
                     eddy_err *err);
/* Pushes the json.null sentinel / tests for it. */
void eddy_lua_push_null(lua_State *L);
bool eddy_lua_is_null(lua_State *L, int idx);
/* Marks the table at 'idx' as a JSON array (the json.array metatable). */
void eddy_lua_mark_array(lua_State *L, int idx);
/* true if the table at 'idx' carries the json.array mark. */
bool eddy_lua_is_marked_array(lua_State *L, int idx);

#endif
