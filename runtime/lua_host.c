/* lua_host.c: sandboxed Lua 5.4 states with a memory cap and an instruction budget, and
 * the JSON <-> Lua conversion. The contract and the sandbox's list are in lua_host.h.
 *
 * Invariants:
 *   1. Every Lua API call that may allocate (and so raise) runs inside eddy_lua_run's
 *      lua_pcall, or in lua_newstate/lua_close; the host never reaches Lua's panic.
 *   2. 'bytes' is the sum of the sizes Lua believes its blocks have; the allocator refuses
 *      any growth that would take it past limits.memory.
 *   3. 'used' counts the instructions of the current outermost call; once it passes the
 *      budget, 'exhausted' stays true until the next outermost call starts. */
#include "lua_host.h"

#include <lauxlib.h>
#include <lualib.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "mem.h"
#include "msg.h"

struct eddy_lua {
    lua_State *L;
    eddy_lua_limits limits;
    size_t bytes;     /* held by the state now (invariant 2) */
    bool mem_refused; /* the allocator refused a block during the current call */
    int64_t used;     /* instructions of the current call (invariant 3) */
    bool exhausted;   /* the current call ran out of budget */
    long calls;       /* calls seen since eddy_lua_watch_calls */
    int depth;        /* nesting of eddy_lua_run */
    int array_mt;     /* registry reference of the json.array metatable */
    void *user;
    char warn_buf[256]; /* a warning being assembled from pieces (lua_warning tocont) */
    size_t warn_len;
    char subject[128]; /* log prefix */
};

/* The json.null sentinel: its address is the light userdata's value. */
static const char lua_null_sentinel = 0;

/* ---- memory ---- */

static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    eddy_lua *h = ud;
    size_t old = ptr ? osize : 0; /* with ptr NULL, osize tells the kind of object */
    if (nsize == 0) {
        eddy_free(ptr);
        h->bytes -= old;
        return NULL;
    }
    if (nsize > old && h->bytes + (nsize - old) > h->limits.memory) {
        /* Lua answers a refusal with a full collection; a script that catches the
         * error and tries again pays for those in its budget */
        h->mem_refused = true;
        h->used += EDDY_LUA_REFUSAL_COST;
        return NULL;
    }
    void *p = eddy_realloc(ptr, nsize);
    if (!p) {
        if (nsize > old)
            return NULL;
        p = ptr; /* Lua assumes shrinking never fails: keep the bigger block */
    }
    h->bytes = h->bytes - old + nsize;
    return p;
}

size_t eddy_lua_memory(const eddy_lua *h)
{
    return h->bytes;
}

const eddy_lua_limits *eddy_lua_get_limits(const eddy_lua *h)
{
    return &h->limits;
}

/* ---- the instruction budget ---- */

static eddy_lua *host_of(lua_State *L)
{
    return *(eddy_lua **)lua_getextraspace(L);
}

eddy_lua *eddy_lua_from_state(lua_State *L)
{
    return host_of(L);
}

static void budget_hook(lua_State *L, lua_Debug *ar);

/* Raises the budget error at the running function's line. From then on the thread's hook
 * fires on every instruction, so a pcall in the script cannot swallow it for long. */
static int budget_raise(lua_State *L, lua_Debug *ar)
{
    eddy_lua *h = host_of(L);
    h->exhausted = true;
    lua_sethook(L, budget_hook, LUA_MASKCOUNT, 1);
    char where[LUA_IDSIZE + 24] = "";
    lua_Debug local;
    if (!ar && lua_getstack(L, 1, &local))
        ar = &local;
    if (ar && lua_getinfo(L, "Sl", ar) && ar->currentline > 0)
        snprintf(where, sizeof(where), "%s:%d: ", ar->short_src, ar->currentline);
    return luaL_error(L, "%sinstruction budget exceeded (%I instructions per call)", where,
                      (lua_Integer)h->limits.instructions);
}

static void budget_hook(lua_State *L, lua_Debug *ar)
{
    eddy_lua *h = host_of(L);
    if (ar->event != LUA_HOOKCOUNT) { /* a call, while eddy_lua_watch_calls is on */
        h->calls++;
        return;
    }
    h->used += EDDY_LUA_HOOK_STEP;
    if (h->used > h->limits.instructions || h->exhausted)
        budget_raise(L, ar);
}

void eddy_lua_charge(lua_State *L, int64_t n)
{
    eddy_lua *h = host_of(L);
    h->used += n;
    if (h->used > h->limits.instructions || h->exhausted)
        budget_raise(L, NULL);
}

bool eddy_lua_exhausted(const eddy_lua *h)
{
    return h->exhausted;
}

/* Setting a hook restarts its count: up to EDDY_LUA_HOOK_STEP - 1 instructions run before
 * either call go uncounted, a bounded slack since neither runs inside a script. */
void eddy_lua_watch_calls(eddy_lua *h)
{
    h->calls = 0;
    lua_sethook(h->L, budget_hook, LUA_MASKCOUNT | LUA_MASKCALL, EDDY_LUA_HOOK_STEP);
}

long eddy_lua_watched_calls(eddy_lua *h)
{
    if (!h->exhausted) /* once exhausted the hook fires on every instruction: keep it */
        lua_sethook(h->L, budget_hook, LUA_MASKCOUNT, EDDY_LUA_HOOK_STEP);
    return h->calls;
}

/* ---- print and warn to the log ---- */

static int host_print(lua_State *L)
{
    eddy_lua *h = host_of(L);
    int n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 1; i <= n; i++) {
        if (i > 1)
            luaL_addchar(&b, '\t');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
    eddy_log(EDDY_LOG_INFO, "[%s] %s", h->subject, lua_tostring(L, -1));
    return 0;
}

static void host_warn(void *ud, const char *msg, int tocont)
{
    eddy_lua *h = ud;
    if (h->warn_len == 0 && !tocont && msg[0] == '@')
        return; /* control messages ("@on", "@off"): eddy always shows warnings */
    size_t n = strlen(msg), room = sizeof(h->warn_buf) - 1 - h->warn_len;
    memcpy(h->warn_buf + h->warn_len, msg, n < room ? n : room);
    h->warn_len += n < room ? n : room;
    if (tocont)
        return;
    h->warn_buf[h->warn_len] = '\0';
    eddy_log(EDDY_LOG_WARN, "[%s] %s", h->subject, h->warn_buf);
    h->warn_len = 0;
}

/* ---- sandboxed replacements ---- */

/* load(chunk [, chunkname [, mode [, env]]]) compiling text only. */
static int host_load(lua_State *L)
{
    const char *mode = luaL_optstring(L, 3, "t");
    if (!strchr(mode, 't'))
        return luaL_error(L, "load: binary chunks are not allowed in eddy (mode '%s')", mode);
    int n = lua_gettop(L);
    if (n < 3)
        lua_settop(L, 3);
    lua_pushliteral(L, "t");
    lua_replace(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n < 3 ? 3 : n, LUA_MULTRET);
    return lua_gettop(L);
}

static int host_collectgarbage(lua_State *L)
{
    static const char *const allowed[] = {"collect", "count", "step", "isrunning", NULL};
    const char *opt = luaL_optstring(L, 1, "collect");
    for (int i = 0; allowed[i]; i++) {
        if (strcmp(opt, allowed[i]) == 0) {
            int n = lua_gettop(L);
            lua_pushvalue(L, lua_upvalueindex(1));
            lua_insert(L, 1);
            lua_call(L, n, LUA_MULTRET);
            return lua_gettop(L);
        }
    }
    return luaL_error(L, "collectgarbage('%s') is not allowed in eddy", opt);
}

/* xpcall(f, msgh, ...) calling 'msgh' after the stack has unwound. Lua runs a message
 * handler at the point of the error, and for an error raised by the budget hook that is
 * with hooks off: a handler that loops there could never be stopped. Without the debug
 * library a handler cannot look at the stack anyway, so nothing is lost. */
static int host_xpcall(lua_State *L)
{
    int n = lua_gettop(L);
    luaL_checktype(L, 2, LUA_TFUNCTION);
    lua_pushvalue(L, 2);
    lua_insert(L, 1); /* msgh, f, msgh, args... */
    lua_remove(L, 3); /* msgh, f, args... */
    if (lua_pcall(L, n - 2, LUA_MULTRET, 0) == LUA_OK) {
        lua_pushboolean(L, 1);
        lua_replace(L, 1);
        return lua_gettop(L);
    }
    lua_pushvalue(L, 1);
    lua_insert(L, -2);
    lua_pcall(L, 1, 1, 0); /* the handler's result, or its own error */
    lua_pushboolean(L, 0);
    lua_insert(L, -2);
    return 2;
}

/* setmetatable refusing __gc: Lua runs finalizers with hooks off, so a finalizer that
 * loops could never be stopped. */
static int host_setmetatable(lua_State *L)
{
    if (lua_type(L, 2) == LUA_TTABLE) {
        lua_pushliteral(L, "__gc");
        if (lua_rawget(L, 2) != LUA_TNIL)
            return luaL_error(L, "setmetatable: __gc metamethods are not allowed in eddy "
                                 "(finalizers cannot be interrupted)");
        lua_pop(L, 1);
    }
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, 1);
    return 1;
}

/* coroutine.create / coroutine.wrap: a new coroutine starts a fresh hook count, so each
 * one is charged a full hook step up front. */
static int host_coroutine_new(lua_State *L)
{
    eddy_lua_charge(L, EDDY_LUA_HOOK_STEP);
    int n = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, n, LUA_MULTRET);
    return lua_gettop(L);
}

static void wrap_field(lua_State *L, const char *table, const char *name, lua_CFunction fn)
{
    lua_getglobal(L, table);
    lua_getfield(L, -1, name);
    lua_pushcclosure(L, fn, 1);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

static void remove_fields(lua_State *L, const char *table, const char *const *names)
{
    lua_getglobal(L, table);
    for (int i = 0; names[i]; i++) {
        lua_pushnil(L);
        lua_setfield(L, -2, names[i]);
    }
    lua_pop(L, 1);
}

/* ---- string patterns ----
 *
 * Lua's matcher (string.find, match, gmatch, gsub) backtracks inside one C call, where the
 * count hook never fires: ("a"):rep(1e5):find(("a*"):rep(30) .. "b") would run for
 * ages. Each call is therefore charged, before it runs, a bound on the matcher's steps
 * (one step: an attempt to match one pattern item at one subject position), at
 * EDDY_LUA_PATTERN_STEPS steps per instruction; when the bound does not fit in what is
 * left of the call's budget the call is refused with an error and nothing is matched.
 *
 * The bound, for a subject of n bytes, follows how the matcher works. Per start position,
 * reading the pattern's items from the left with the cost so far as A + M * (cost of the
 * rest): a plain item (a character, '.', %x, a set, a capture bracket, %f, '$') adds M;
 * an item with '*', '+' or '-' tries up to n + 1 lengths, each followed by the rest
 * (A += M (n + 1), M *= n + 1); '?' tries two (A += M, M *= 2); %bxy and back references
 * scan up to n bytes (A += M n). The total is the number of start positions (1 when
 * anchored with '^', else n + 1) times A + M. One refinement keeps common patterns
 * linear: when the only repeated item is the pattern's last ("%s+", "[^,]+", "^%d*"), a
 * match can only fail before that item, and every byte it takes ends a match, so the
 * total is (n + 1) (A + 2) + n. The bound is loose for patterns whose items cannot match
 * the same bytes ("(%w+)=(%w+)" is cubic by it, quadratic in fact); raise the node's
 * budget for those on long texts. */

#define PATTERN_STEP_SATURATED 1e300

/* The end of the set starting at p ('['), or 'end' when it is not closed. */
static const char *pattern_set_end(const char *p, const char *end)
{
    p++;
    if (p < end && *p == '^')
        p++;
    do { /* the first ']' is a member */
        if (p >= end)
            return end;
        if (*p == '%' && p + 1 < end)
            p++;
        p++;
    } while (p < end && *p != ']');
    return p < end ? p + 1 : end;
}

static double pattern_bound(const char *p, size_t plen, size_t subject, bool anchor_ok)
{
    const char *end = p + plen;
    double n = (double)subject, a = 0, m = 1;
    double starts = n + 1;
    if (anchor_ok && p < end && *p == '^') {
        starts = 1;
        p++;
    }
    int repeated = 0;      /* items that multiply */
    bool last_rep = false; /* the last item was '*', '+' or '-' */
    double a_before_last = 0;
    while (p < end) {
        last_rep = false;
        const char *item_end;
        switch (*p) {
        case '(':
            p += (p + 1 < end && p[1] == ')') ? 2 : 1;
            a += m;
            continue;
        case ')':
            p++;
            a += m;
            continue;
        case '$':
            if (p + 1 == end) {
                p++;
                a += m;
                continue;
            }
            item_end = p + 1;
            break;
        case '%':
            if (p + 1 >= end)
                return a + m; /* malformed: Lua's matcher raises at once */
            if (p[1] == 'b') {
                p += 4;
                a += m * n;
                repeated++;
                continue;
            }
            if (p[1] == 'f') {
                p += 2;
                p = p < end && *p == '[' ? pattern_set_end(p, end) : end;
                a += m;
                continue;
            }
            if (p[1] >= '0' && p[1] <= '9') {
                p += 2;
                a += m * n;
                repeated++;
                continue;
            }
            item_end = p + 2;
            break;
        case '[':
            item_end = pattern_set_end(p, end);
            break;
        default:
            item_end = p + 1;
            break;
        }
        p = item_end;
        char q = p < end ? *p : '\0';
        if (q == '*' || q == '+' || q == '-') {
            p++;
            a_before_last = a;
            a += m * (n + 1);
            m *= n + 1;
            repeated++;
            last_rep = true;
        } else if (q == '?') {
            p++;
            a += m;
            m *= 2;
            repeated++;
        } else {
            a += m;
        }
        if (a > PATTERN_STEP_SATURATED || m > PATTERN_STEP_SATURATED)
            return PATTERN_STEP_SATURATED;
    }
    if (repeated == 1 && last_rep)
        return starts * (a_before_last + 2) + n;
    return starts * (a + m);
}

/* string.find, match, gmatch, gsub with the bound charged first (upvalue 1: Lua's
 * function; upvalue 2: its name; upvalue 3: true where '^' anchors). */
static int host_pattern(lua_State *L)
{
    size_t n, plen;
    luaL_checklstring(L, 1, &n);
    const char *p = luaL_checklstring(L, 2, &plen);
    const char *name = lua_tostring(L, lua_upvalueindex(2));
    bool plain = strcmp(name, "find") == 0 && lua_toboolean(L, 4);
    double steps;
    bool specials = false; /* as Lua decides to search with memchr/memcmp */
    for (size_t i = 0; i < plen && !specials; i++)
        specials = strchr("^$*+?.([%-", p[i]) != NULL && p[i] != '\0';
    if (plain || !specials)
        steps = ((double)n + 1) * ((double)plen + 1);
    else
        steps = pattern_bound(p, plen, n, lua_toboolean(L, lua_upvalueindex(3)));
    double cost = steps / EDDY_LUA_PATTERN_STEPS + (double)plen / 8 + 1;
    eddy_lua *h = host_of(L);
    double left = (double)(h->limits.instructions - h->used);
    if (cost > left) {
        char text[400]; /* lua_pushfstring knows no %g or %zu */
        snprintf(text, sizeof(text),
                 "string.%s: this pattern may need up to %.3g matching steps on %zu bytes of "
                 "text, more than the call's instruction budget has left (%.0f instructions, "
                 "%d steps each); simplify the pattern, shorten the text or raise the node's "
                 "instruction limit",
                 name, steps, n, left > 0 ? left : 0, EDDY_LUA_PATTERN_STEPS);
        return luaL_error(L, "%s", text);
    }
    eddy_lua_charge(L, (int64_t)cost);
    int args = lua_gettop(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    lua_call(L, args, LUA_MULTRET);
    return lua_gettop(L);
}

static void wrap_pattern(lua_State *L, const char *name, bool anchors)
{
    lua_getglobal(L, LUA_STRLIBNAME);
    lua_getfield(L, -1, name);
    lua_pushstring(L, name);
    lua_pushboolean(L, anchors);
    lua_pushcclosure(L, host_pattern, 3);
    lua_setfield(L, -2, name);
    lua_pop(L, 1);
}

/* ---- the json library ---- */

static int json_lib_array(lua_State *L)
{
    if (lua_isnoneornil(L, 1))
        lua_newtable(L);
    else
        luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    eddy_lua_mark_array(L, 1);
    return 1;
}

/* C memory a library function holds while it calls Lua (which may raise): kept in a
 * userdata whose __gc frees it if the call never returns normally. */
#define LUA_BOX_META "eddy.box"

static int box_gc(lua_State *L)
{
    eddy_lua_box_clear(lua_touserdata(L, 1));
    return 0;
}

eddy_lua_box *eddy_lua_box_new(lua_State *L)
{
    eddy_lua_box *box = lua_newuserdatauv(L, sizeof(*box), 0);
    box->json = NULL;
    box->text = NULL;
    luaL_setmetatable(L, LUA_BOX_META);
    return box;
}

void eddy_lua_box_clear(eddy_lua_box *box)
{
    if (!box)
        return;
    json_decref(box->json);
    eddy_free(box->text);
    box->json = NULL;
    box->text = NULL;
}

static int json_lib_encode(lua_State *L)
{
    luaL_checkany(L, 1);
    int flags = lua_toboolean(L, 2) ? EDDY_JSON_PRETTY : 0;
    eddy_lua_box *box = eddy_lua_box_new(L);
    eddy_err err;
    eddy_err_clear(&err);
    int rc = eddy_lua_to_json(L, 1, "value", NULL, &box->json, &err);
    if (rc == EDDY_EBUDGET)
        return budget_raise(L, NULL);
    if (rc != EDDY_OK)
        return luaL_error(L, "json.encode: %s", err.msg);
    if (!box->json)
        return luaL_error(L, "json.encode: nil has no JSON form");
    box->text = eddy_json_dumps(box->json, flags);
    if (!box->text)
        return luaL_error(L, "json.encode: out of memory");
    lua_pushstring(L, box->text);
    eddy_lua_box_clear(box);
    return 1;
}

static int json_lib_decode(lua_State *L)
{
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    eddy_lua_charge(L, (int64_t)(len / 8));
    eddy_lua_box *box = eddy_lua_box_new(L);
    eddy_err err;
    eddy_err_clear(&err);
    box->json = eddy_json_loadb(text, len, &err);
    if (!box->json)
        return luaL_error(L, "json.decode: %s at line %d, column %d", err.msg, err.line,
                          err.column);
    eddy_lua_push_json(L, box->json);
    eddy_lua_box_clear(box);
    return 1;
}

/* ---- opening a state ---- */

static int host_open(lua_State *L)
{
    static const luaL_Reg libs[] = {
        {LUA_GNAME, luaopen_base},       {LUA_COLIBNAME, luaopen_coroutine},
        {LUA_TABLIBNAME, luaopen_table}, {LUA_STRLIBNAME, luaopen_string},
        {LUA_MATHLIBNAME, luaopen_math}, {LUA_UTF8LIBNAME, luaopen_utf8},
        {LUA_OSLIBNAME, luaopen_os},     {NULL, NULL}};
    static const char *const base_out[] = {"dofile", "loadfile", NULL};
    static const char *const os_out[] = {"execute", "exit",   "remove",    "rename",
                                         "tmpname", "getenv", "setlocale", NULL};
    static const char *const string_out[] = {"dump", NULL};
    eddy_lua *h = host_of(L);
    lua_gc(L, LUA_GCGEN, 0, 0);
    for (const luaL_Reg *lib = libs; lib->func; lib++) {
        luaL_requiref(L, lib->name, lib->func, 1);
        lua_pop(L, 1);
    }
    remove_fields(L, LUA_GNAME, base_out);
    remove_fields(L, LUA_OSLIBNAME, os_out);
    remove_fields(L, LUA_STRLIBNAME, string_out);
    wrap_field(L, LUA_GNAME, "load", host_load);
    wrap_field(L, LUA_GNAME, "collectgarbage", host_collectgarbage);
    wrap_field(L, LUA_GNAME, "setmetatable", host_setmetatable);
    lua_pushcfunction(L, host_xpcall);
    lua_setglobal(L, "xpcall");
    wrap_pattern(L, "find", true);
    wrap_pattern(L, "match", true);
    wrap_pattern(L, "gmatch", false);
    wrap_pattern(L, "gsub", true);
    wrap_field(L, LUA_COLIBNAME, "create", host_coroutine_new);
    wrap_field(L, LUA_COLIBNAME, "wrap", host_coroutine_new);
    lua_pushcfunction(L, host_print);
    lua_setglobal(L, "print");
    luaL_newmetatable(L, LUA_BOX_META);
    lua_pushcfunction(L, box_gc);
    lua_setfield(L, -2, "__gc");
    lua_pop(L, 1);

    /* json: null, array, encode, decode */
    /* the array mark is protected: a script that could reach it could give every array
     * a __gc metamethod */
    lua_createtable(L, 0, 2);
    lua_pushliteral(L, "json.array");
    lua_setfield(L, -2, "__name");
    lua_pushliteral(L, "json.array");
    lua_setfield(L, -2, "__metatable");
    h->array_mt = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_createtable(L, 0, 4);
    eddy_lua_push_null(L);
    lua_setfield(L, -2, "null");
    lua_pushcfunction(L, json_lib_array);
    lua_setfield(L, -2, "array");
    lua_pushcfunction(L, json_lib_encode);
    lua_setfield(L, -2, "encode");
    lua_pushcfunction(L, json_lib_decode);
    lua_setfield(L, -2, "decode");
    lua_setglobal(L, "json");
    return 0;
}

static int host_panic(lua_State *L)
{
    const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : "?";
    eddy_log(EDDY_LOG_ERROR, "[lua] unprotected error (a bug in eddy): %s", m);
    return 0; /* Lua aborts */
}

eddy_lua *eddy_lua_new(const eddy_lua_limits *limits, const char *log_subject, eddy_err *err)
{
    eddy_lua *h = eddy_calloc(1, sizeof(*h));
    if (!h) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory creating a Lua state");
        return NULL;
    }
    if (limits)
        h->limits = *limits;
    if (h->limits.memory == 0)
        h->limits.memory = EDDY_LUA_DEFAULT_MEMORY;
    if (h->limits.instructions <= 0)
        h->limits.instructions = EDDY_LUA_DEFAULT_INSTRUCTIONS;
    snprintf(h->subject, sizeof(h->subject), "%s", log_subject ? log_subject : "lua");
    h->array_mt = LUA_NOREF;
    h->L = lua_newstate(host_alloc, h);
    if (!h->L) {
        eddy_free(h);
        eddy_err_set(err, EDDY_ENOMEM, "out of memory creating a Lua state");
        return NULL;
    }
    *(eddy_lua **)lua_getextraspace(h->L) = h;
    lua_atpanic(h->L, host_panic);
    lua_setwarnf(h->L, host_warn, h);
    eddy_err local;
    eddy_err_clear(&local);
    if (eddy_lua_run(h, host_open, NULL, &local) != EDDY_OK) {
        eddy_err_set(err, local.code == EDDY_EBUDGET ? EDDY_ENOMEM : local.code,
                     "cannot open a Lua state: %s", local.msg);
        eddy_lua_free(h);
        return NULL;
    }
    return h;
}

void eddy_lua_free(eddy_lua *h)
{
    if (!h)
        return;
    /* __gc finalizers run in lua_close: give them one fresh budget between them */
    h->used = 0;
    h->exhausted = false;
    lua_sethook(h->L, budget_hook, LUA_MASKCOUNT, EDDY_LUA_HOOK_STEP);
    lua_close(h->L);
    eddy_free(h);
}

lua_State *eddy_lua_state(eddy_lua *h)
{
    return h->L;
}

void eddy_lua_set_user(eddy_lua *h, void *user)
{
    h->user = user;
}

void *eddy_lua_user(const eddy_lua *h)
{
    return h->user;
}

/* ---- running ---- */

static int run_failed(eddy_lua *h, int status, eddy_err *err)
{
    lua_State *L = h->L;
    const char *m = lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1) : NULL;
    if (h->exhausted)
        return eddy_err_set(err, EDDY_EBUDGET, "%s", m ? m : "instruction budget exceeded");
    if (status == LUA_ERRMEM || (h->mem_refused && m && strstr(m, "not enough memory")))
        return eddy_err_set(err, EDDY_EBUDGET, "memory limit exceeded (%zu KiB per node)",
                            h->limits.memory >> 10);
    if (m)
        return eddy_err_set(err, EDDY_ESCRIPT, "%s", m);
    if (lua_type(L, -1) == LUA_TNUMBER) {
        char buf[32];
        return eddy_err_set(err, EDDY_ESCRIPT, "%s", eddy_format_number(lua_tonumber(L, -1), buf));
    }
    return eddy_err_set(err, EDDY_ESCRIPT, "error object is a %s value",
                        eddy_lua_is_null(L, -1) ? "json.null" : luaL_typename(L, -1));
}

int eddy_lua_run(eddy_lua *h, lua_CFunction fn, void *ud, eddy_err *err)
{
    lua_State *L = h->L;
    int top = lua_gettop(L);
    if (h->depth == 0) {
        h->used = 0;
        h->exhausted = false;
        h->mem_refused = false;
        lua_sethook(L, budget_hook, LUA_MASKCOUNT, EDDY_LUA_HOOK_STEP);
    }
    h->depth++;
    lua_pushcfunction(L, fn); /* light C function and light userdata: no allocation */
    lua_pushlightuserdata(L, ud);
    int status = lua_pcall(L, 1, 0, 0);
    h->depth--;
    int rc = status == LUA_OK ? EDDY_OK : run_failed(h, status, err);
    lua_settop(L, top);
    return rc;
}

void eddy_lua_load(lua_State *L, const char *src, size_t len, const char *chunkname)
{
    char name[LUA_IDSIZE + 2];
    snprintf(name, sizeof(name), "=%s", chunkname);
    if (luaL_loadbufferx(L, src, len, name, "t") != LUA_OK)
        lua_error(L);
}

/* ---- JSON -> Lua ---- */

void eddy_lua_push_null(lua_State *L)
{
    lua_pushlightuserdata(L, (void *)&lua_null_sentinel);
}

bool eddy_lua_is_null(lua_State *L, int idx)
{
    return lua_touserdata(L, idx) == (void *)&lua_null_sentinel &&
           lua_type(L, idx) == LUA_TLIGHTUSERDATA;
}

void eddy_lua_mark_array(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    lua_rawgeti(L, LUA_REGISTRYINDEX, host_of(L)->array_mt);
    lua_setmetatable(L, idx);
}

bool eddy_lua_is_marked_array(lua_State *L, int idx)
{
    if (!lua_getmetatable(L, idx))
        return false;
    lua_rawgeti(L, LUA_REGISTRYINDEX, host_of(L)->array_mt);
    bool marked = lua_rawequal(L, -1, -2);
    lua_pop(L, 2);
    return marked;
}

/* Integral reals that fit in 64 bits become Lua integers (-0.0 stays a float). */
static bool real_as_integer(double d, lua_Integer *out)
{
    if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0 ||
        (d == 0 && signbit(d)))
        return false;
    *out = (lua_Integer)d;
    return true;
}

static void push_json(lua_State *L, const json_t *v, int depth)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        if (depth >= EDDY_LUA_MAX_DEPTH)
            luaL_error(L, "JSON value nested deeper than %d levels", EDDY_LUA_MAX_DEPTH);
        luaL_checkstack(L, 3, "JSON value too deep");
        json_t *o = (json_t *)v; /* jansson's iterators take non-const objects */
        lua_createtable(L, 0, (int)json_object_size(o));
        for (void *it = json_object_iter(o); it; it = json_object_iter_next(o, it)) {
            lua_pushlstring(L, json_object_iter_key(it), json_object_iter_key_len(it));
            push_json(L, json_object_iter_value(it), depth + 1);
            lua_rawset(L, -3);
        }
        return;
    }
    case JSON_ARRAY: {
        if (depth >= EDDY_LUA_MAX_DEPTH)
            luaL_error(L, "JSON value nested deeper than %d levels", EDDY_LUA_MAX_DEPTH);
        luaL_checkstack(L, 3, "JSON value too deep");
        size_t n = json_array_size(v);
        lua_createtable(L, (int)n, 0);
        for (size_t i = 0; i < n; i++) {
            push_json(L, json_array_get(v, i), depth + 1);
            lua_rawseti(L, -2, (lua_Integer)i + 1);
        }
        eddy_lua_mark_array(L, -1);
        return;
    }
    case JSON_STRING:
        lua_pushlstring(L, json_string_value(v), json_string_length(v));
        return;
    case JSON_INTEGER:
        lua_pushinteger(L, (lua_Integer)json_integer_value(v));
        return;
    case JSON_REAL: {
        lua_Integer i;
        if (real_as_integer(json_real_value(v), &i))
            lua_pushinteger(L, i);
        else
            lua_pushnumber(L, json_real_value(v));
        return;
    }
    case JSON_TRUE:
        lua_pushboolean(L, 1);
        return;
    case JSON_FALSE:
        lua_pushboolean(L, 0);
        return;
    case JSON_NULL:
        eddy_lua_push_null(L);
        return;
    }
}

void eddy_lua_push_json(lua_State *L, const json_t *v)
{
    if (!v)
        lua_pushnil(L);
    else
        push_json(L, v, 0);
}

/* ---- Lua -> JSON ---- */

/* Where the conversion is: a stack of keys (borrowed from Lua strings that stay on the
 * stack meanwhile) and indexes, formatted only when something fails. */
typedef struct conv_seg {
    const char *key; /* NULL for an array index */
    size_t klen;
    lua_Integer index;
} conv_seg;

typedef struct conv {
    lua_State *L;
    eddy_lua *h;
    eddy_err *err;
    int rc;
    const char *what; /* the root's name, "msg" */
    int depth;
    conv_seg segs[EDDY_LUA_MAX_DEPTH + 2];
} conv;

static void conv_path(const conv *c, char *buf, size_t size)
{
    size_t n = (size_t)snprintf(buf, size, "%s", c->what);
    for (int i = 0; i < c->depth && n < size; i++) {
        const conv_seg *sg = &c->segs[i];
        int k = sg->key ? snprintf(buf + n, size - n, ".%.*s", (int)(sg->klen > 64 ? 64 : sg->klen),
                                   sg->key)
                        : snprintf(buf + n, size - n, "[%lld]", (long long)sg->index);
        if (k < 0)
            break;
        n += (size_t)k;
    }
}

static json_t *conv_fail(conv *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static json_t *conv_fail(conv *c, int code, const char *fmt, ...)
{
    char text[EDDY_ERR_MSG_MAX - 64], path[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    conv_path(c, path, sizeof(path));
    c->rc = code;
    eddy_err_set(c->err, code, "%s %s", path, text);
    return NULL;
}

static void path_push_key(conv *c, const char *key, size_t klen)
{
    c->segs[c->depth++] = (conv_seg){key, klen, 0};
}

static void path_push_index(conv *c, lua_Integer i)
{
    c->segs[c->depth++] = (conv_seg){NULL, 0, i};
}

static void path_pop(conv *c)
{
    c->depth--;
}

/* RFC 3629 UTF-8, as jansson requires of strings. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char b = s[i];
        size_t len;
        uint32_t cp;
        if (b < 0x80) {
            i++;
            continue;
        } else if ((b & 0xE0) == 0xC0) {
            len = 2;
            cp = b & 0x1F;
        } else if ((b & 0xF0) == 0xE0) {
            len = 3;
            cp = b & 0x0F;
        } else if ((b & 0xF8) == 0xF0) {
            len = 4;
            cp = b & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += len;
    }
    return true;
}

static json_t *to_json(conv *c, int idx, const json_t *hint, int depth);

static const char *key_desc(lua_State *L, int idx, char *buf, size_t size)
{
    switch (lua_type(L, idx)) {
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx))
            snprintf(buf, size, "key %lld", (long long)lua_tointeger(L, idx));
        else
            snprintf(buf, size, "key %g", lua_tonumber(L, idx));
        return buf;
    default:
        snprintf(buf, size, "a key of type %s", luaL_typename(L, idx));
        return buf;
    }
}

/* Sorts the table at 'idx' into array (n = its length) or object; false on a bad shape. */
static bool table_shape(conv *c, int idx, bool *is_array, lua_Integer *n)
{
    lua_State *L = c->L;
    lua_Integer count = 0, max = 0;
    bool ints = false, strs = false;
    char kbuf[64];
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        count++;
        int kt = lua_type(L, -2);
        if (kt == LUA_TSTRING) {
            strs = true;
        } else if (kt == LUA_TNUMBER && lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1) {
            ints = true;
            if (lua_tointeger(L, -2) > max)
                max = lua_tointeger(L, -2);
        } else {
            conv_fail(c, EDDY_EINVAL,
                      "is a table with %s; JSON objects have string keys and arrays "
                      "indexes 1..n",
                      key_desc(L, -2, kbuf, sizeof(kbuf)));
            lua_pop(L, 2);
            return false;
        }
        lua_pop(L, 1);
    }
    bool marked = eddy_lua_is_marked_array(L, idx);
    if (strs && (ints || marked)) {
        conv_fail(c, EDDY_EINVAL, "%s",
                  marked ? "is marked as an array (json.array) but has string keys"
                         : "mixes array indexes and string keys");
        return false;
    }
    if (ints && max != count) {
        lua_Integer hole = 1;
        while (hole <= max) {
            int t = lua_rawgeti(L, idx, hole);
            lua_pop(L, 1);
            if (t == LUA_TNIL)
                break;
            hole++;
        }
        conv_fail(c, EDDY_EINVAL,
                  "is an array with a hole at index %lld (of %lld); use json.null for a "
                  "null element",
                  (long long)hole, (long long)max);
        return false;
    }
    *is_array = ints || marked;
    *n = count;
    return true;
}

static json_t *array_to_json(conv *c, int idx, lua_Integer n, const json_t *hint, int depth)
{
    lua_State *L = c->L;
    if (!json_is_array(hint) || json_array_size(hint) != (size_t)n)
        hint = NULL;
    json_t *out = NULL;
    for (lua_Integer i = 1; i <= n; i++) {
        lua_rawgeti(L, idx, i);
        const json_t *hv = hint ? json_array_get(hint, (size_t)(i - 1)) : NULL;
        path_push_index(c, i);
        json_t *child = to_json(c, -1, hv, depth + 1);
        path_pop(c);
        lua_pop(L, 1);
        if (!child) {
            json_decref(out);
            return NULL;
        }
        if (!out && child == hv) {
            json_decref(child);
            continue;
        }
        if (!out) { /* first difference: take the equal prefix from 'hint' */
            out = json_array();
            for (lua_Integer k = 1; out && k < i; k++)
                json_array_append(out, json_array_get(hint, (size_t)(k - 1)));
            if (!out) {
                json_decref(child);
                return conv_fail(c, EDDY_ENOMEM, "out of memory");
            }
        }
        if (json_array_append_new(out, child) != 0) {
            json_decref(out);
            return conv_fail(c, EDDY_ENOMEM, "out of memory");
        }
    }
    if (!out) {
        if (hint)
            return json_incref((json_t *)hint);
        out = json_array();
        if (!out)
            return conv_fail(c, EDDY_ENOMEM, "out of memory");
    }
    return out;
}

/* Objects: with a 'hint' object, values equal to the hint's are shared; when nothing
 * differs the hint itself is the result. */
static json_t *object_to_json(conv *c, int idx, const json_t *hint, int depth, bool first_pushed)
{
    lua_State *L = c->L;
    if (!json_is_object(hint))
        hint = NULL;
    json_t *out = NULL;
    size_t seen = 0;     /* Lua keys that the hint has too */
    if (!first_pushed) { /* else the first key and value are on the stack already */
        lua_pushnil(L);
        if (!lua_next(L, idx))
            goto walked;
    }
    do {
        if (lua_type(L, -2) != LUA_TSTRING) {
            char kbuf[64];
            bool index = lua_isinteger(L, -2) && lua_tointeger(L, -2) >= 1;
            if (!index)
                key_desc(L, -2, kbuf, sizeof(kbuf));
            lua_pop(L, 2);
            json_decref(out);
            return index ? conv_fail(c, EDDY_EINVAL, "mixes array indexes and string keys")
                         : conv_fail(c, EDDY_EINVAL,
                                     "is a table with %s; JSON objects have string keys and "
                                     "arrays indexes 1..n",
                                     kbuf);
        }
        size_t klen;
        const char *key = lua_tolstring(L, -2, &klen);
        const json_t *hv = hint ? json_object_getn(hint, key, klen) : NULL;
        if (hv)
            seen++;
        else if (!utf8_valid((const unsigned char *)key, klen)) {
            lua_pop(L, 2);
            json_decref(out);
            return conv_fail(c, EDDY_EINVAL, "has a key that is not valid UTF-8 text");
        }
        path_push_key(c, key, klen);
        json_t *child = to_json(c, -1, hv, depth + 1);
        path_pop(c);
        lua_pop(L, 1);
        if (!child) {
            lua_pop(L, 1);
            json_decref(out);
            return NULL;
        }
        if (!out && child == hv) {
            json_decref(child);
            continue;
        }
        if (!out) {
            out = hint ? json_copy((json_t *)hint) : json_object();
            if (!out) {
                lua_pop(L, 1);
                json_decref(child);
                return conv_fail(c, EDDY_ENOMEM, "out of memory");
            }
        }
        if (json_object_setn_new_nocheck(out, key, klen, child) != 0) {
            lua_pop(L, 1);
            json_decref(out);
            return conv_fail(c, EDDY_ENOMEM, "out of memory");
        }
    } while (lua_next(L, idx));
walked:
    if (!hint) {
        if (!out && !(out = json_object()))
            return conv_fail(c, EDDY_ENOMEM, "out of memory");
        return out;
    }
    if (seen == json_object_size(hint))
        return out ? out : json_incref((json_t *)hint);
    /* keys were removed: keep those the Lua table still has, in the hint's order (the
     * set of keys is gathered without pushing anything onto the Lua stack) */
    const json_t *from = out ? out : hint;
    json_t *present = json_object(), *fresh = json_object();
    bool ok = present && fresh;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        size_t klen;
        const char *key = lua_tolstring(L, -2, &klen);
        lua_pop(L, 1);
        ok = ok && json_object_setn_new_nocheck(present, key, klen, json_null()) == 0;
    }
    const char *key;
    size_t klen;
    json_t *v;
    json_object_keylen_foreach((json_t *)from, key, klen, v)
    {
        if (ok && json_object_getn(present, key, klen))
            ok = json_object_setn_nocheck(fresh, key, klen, v) == 0;
    }
    json_decref(present);
    json_decref(out);
    if (!ok) {
        json_decref(fresh);
        return conv_fail(c, EDDY_ENOMEM, "out of memory");
    }
    return fresh;
}

static json_t *to_json(conv *c, int idx, const json_t *hint, int depth)
{
    lua_State *L = c->L;
    idx = lua_absindex(L, idx);
    c->h->used += EDDY_LUA_VALUE_COST;
    if (c->h->used > c->h->limits.instructions) {
        c->h->exhausted = true;
        char path[256];
        conv_path(c, path, sizeof(path));
        c->rc = EDDY_EBUDGET;
        eddy_err_set(c->err, EDDY_EBUDGET,
                     "instruction budget exceeded converting %s to JSON (%lld instructions "
                     "per call)",
                     path, (long long)c->h->limits.instructions);
        return NULL;
    }
    switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN: {
        bool b = lua_toboolean(L, idx);
        if (hint && json_is_boolean(hint) && json_is_true(hint) == b)
            return json_incref((json_t *)hint);
        return json_boolean(b);
    }
    case LUA_TNUMBER:
        if (lua_isinteger(L, idx)) {
            lua_Integer i = lua_tointeger(L, idx);
            if (json_is_integer(hint) && json_integer_value(hint) == i)
                return json_incref((json_t *)hint);
            json_t *v = json_integer((json_int_t)i);
            return v ? v : conv_fail(c, EDDY_ENOMEM, "out of memory");
        } else {
            double d = lua_tonumber(L, idx);
            if (isnan(d) || isinf(d))
                return conv_fail(c, EDDY_EINVAL, "is %s; JSON has no NaN or infinities",
                                 isnan(d) ? "NaN"
                                 : d > 0  ? "infinity"
                                          : "-infinity");
            if (json_is_number(hint) && json_number_value(hint) == d &&
                !(d == 0 && (signbit(d) != (json_is_real(hint) && signbit(json_real_value(hint))))))
                return json_incref((json_t *)hint);
            json_t *v = eddy_json_number(d);
            return v ? v : conv_fail(c, EDDY_ENOMEM, "out of memory");
        }
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        if (json_is_string(hint) && json_string_length(hint) == len &&
            memcmp(json_string_value(hint), s, len) == 0)
            return json_incref((json_t *)hint);
        if (!utf8_valid((const unsigned char *)s, len))
            return conv_fail(c, EDDY_EINVAL, "is a string that is not valid UTF-8 text");
        json_t *v = json_stringn_nocheck(s, len);
        return v ? v : conv_fail(c, EDDY_ENOMEM, "out of memory");
    }
    case LUA_TLIGHTUSERDATA:
        if (eddy_lua_is_null(L, idx))
            return json_null();
        break;
    case LUA_TTABLE: {
        if (depth >= EDDY_LUA_MAX_DEPTH)
            return conv_fail(c, EDDY_EINVAL,
                             "is nested deeper than %d levels (does a table contain itself?)",
                             EDDY_LUA_MAX_DEPTH);
        if (!lua_checkstack(L, 4))
            return conv_fail(c, EDDY_ENOMEM, "out of memory (Lua stack)");
        /* the common case, an object, in one pass: its first key decides */
        if (!eddy_lua_is_marked_array(L, idx)) {
            lua_pushnil(L);
            if (!lua_next(L, idx))
                return object_to_json(c, idx, hint, depth, false);
            if (lua_type(L, -2) == LUA_TSTRING)
                return object_to_json(c, idx, hint, depth, true);
            lua_pop(L, 2);
        }
        bool is_array;
        lua_Integer n;
        if (!table_shape(c, idx, &is_array, &n))
            return NULL;
        return is_array ? array_to_json(c, idx, n, hint, depth)
                        : object_to_json(c, idx, hint, depth, false);
    }
    default:
        break;
    }
    return conv_fail(c, EDDY_EINVAL, "is a %s, which has no JSON form", luaL_typename(L, idx));
}

int eddy_lua_to_json(lua_State *L, int idx, const char *what, const json_t *hint, json_t **out,
                     eddy_err *err)
{
    *out = NULL;
    if (lua_isnoneornil(L, idx))
        return EDDY_OK;
    conv c; /* the segment stack is filled as needed, not cleared */
    c.L = L;
    c.h = host_of(L);
    c.err = err;
    c.rc = EDDY_OK;
    c.what = what;
    c.depth = 0;
    *out = to_json(&c, idx, hint, 0);
    return *out ? EDDY_OK : c.rc ? c.rc : EDDY_ENOMEM;
}
