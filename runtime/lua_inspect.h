/* lua_inspect.h: what a compiled Lua function can do, read from its bytecode.
 *
 * A function is read-only when its own code writes no table, upvalue or global, makes no
 * table or closure, calls nothing and uses no to-be-closed variable: it can only read
 * values, compute, compare, jump and return. Whatever such a function is given, it can
 * neither change it nor keep it, except through a metamethod (an __index function, __lt,
 * string arithmetic...), which the caller must watch for: a metamethod is a call, which the
 * host counts (eddy_lua_watch_calls). Filters such as
 * `if msg.payload.temperature > 30 then return msg end` are read-only; anything that calls
 * node.send, sets a field or builds a table is not.
 *
 * The test reads the function's dump (lua_dump, the public API) and knows Lua 5.4's
 * instruction set; a dump in any other format (another Lua version) makes every function
 * "not read-only", which only costs speed. */
#ifndef EDDY_LUA_INSPECT_H
#define EDDY_LUA_INSPECT_H

#include <lua.h>
#include <stdbool.h>

/* True if the Lua function at 'idx' is read-only (above). False for C functions, for
 * functions too large to inspect, and whenever unsure. Does not raise; allocates only
 * outside Lua. */
bool eddy_lua_is_read_only(lua_State *L, int idx);

#endif
