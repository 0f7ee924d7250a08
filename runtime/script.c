/* script.c: the API a Lua script sees and the message path of Lua-driven nodes (contract
 * in script.h). Every entry into Lua goes through eddy_lua_run, so script errors, budget and
 * memory stops come back here as values and become node errors. */
#include "script.h"

#include <lauxlib.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "lua_inspect.h"
#include "mem.h"
#include "msg.h"

/* ---- data ---- */

typedef struct script_timer {
    eddy_script *s;
    eddy_timer *timer;
    int fn_ref;       /* the Lua function to call */
    lua_Integer id;   /* what setTimeout returned */
    int64_t interval; /* ms between calls; 0 for a one-shot */
    json_t *origin;   /* the message being handled when it started; NULL if none */
    struct script_timer *prev, *next;
} script_timer;

struct eddy_script {
    eddy_node *node;
    eddy_lua *host;
    int node_ref;          /* the `node` table */
    const json_t *current; /* the message being handled (borrowed), NULL outside input */
    const json_t *origin;  /* in a timer: the message being handled when it started */
    bool hint_free;        /* 'current' may still be shared by a converted message */
    bool auto_done;        /* say done when a handler returns */
    bool closing;          /* no new timers */
    script_timer *timers;  /* live timers (invariant 2) */
    lua_Integer next_timer_id;
    int read_only_refs[4]; /* handlers found read-only (lua_inspect.h) when referenced */
    int read_only_count;
};

static eddy_script *script_of(lua_State *L)
{
    return eddy_lua_user(eddy_lua_from_state(L));
}

/* Raises the error of a failed conversion: the budget one if that is what ran out. */
static int raise_conv(lua_State *L, int rc, const eddy_err *err)
{
    if (rc == EDDY_EBUDGET)
        eddy_lua_charge(L, 0); /* raises the budget error */
    return luaL_error(L, "%s", err->msg);
}

/* ---- results: what a handler returns, or node.send takes ---- */

typedef struct outbox_item {
    int port;
    json_t *msg;
} outbox_item;

/* Messages to send, in order; the first few without allocating. */
typedef struct outbox {
    outbox_item *items; /* 'inline_items' or heap */
    size_t count, cap;
    outbox_item inline_items[4];
} outbox;

static void outbox_init(outbox *o)
{
    o->items = o->inline_items;
    o->count = 0;
    o->cap = 4;
}

static void outbox_clear(outbox *o)
{
    for (size_t i = 0; i < o->count; i++)
        json_decref(o->items[i].msg);
    if (o->items != o->inline_items)
        eddy_free(o->items);
    outbox_init(o);
}

static bool outbox_add(outbox *o, int port, json_t *msg)
{
    if (o->count == o->cap) {
        size_t cap = o->cap * 2;
        outbox_item *items = eddy_malloc(cap * sizeof(*items));
        if (!items) {
            json_decref(msg);
            return false;
        }
        memcpy(items, o->items, o->count * sizeof(*items));
        if (o->items != o->inline_items)
            eddy_free(o->items);
        o->items = items;
        o->cap = cap;
    }
    o->items[o->count].port = port;
    o->items[o->count].msg = msg;
    o->count++;
    return true;
}

/* true if the table at 'idx' is a message (some string key, or empty and not marked as an
 * array); false for a list. */
static bool is_message_table(lua_State *L, int idx)
{
    idx = lua_absindex(L, idx);
    if (eddy_lua_is_marked_array(L, idx))
        return false;
    lua_pushnil(L);
    if (!lua_next(L, idx))
        return true;
    bool str = lua_type(L, -2) == LUA_TSTRING;
    lua_pop(L, 2);
    return str;
}

/* The highest index of a list whose keys must all be positive integers; -1 (with 'err')
 * otherwise. */
static lua_Integer list_length(lua_State *L, int idx, const char *what, eddy_err *err)
{
    lua_Integer max = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < 1) {
            lua_pop(L, 1);
            eddy_err_set(err, EDDY_EINVAL,
                         "%s mixes list entries and other keys; return a message, a list "
                         "with one entry per output, or nil",
                         what);
            return -1;
        }
        if (lua_tointeger(L, -1) > max)
            max = lua_tointeger(L, -1);
    }
    return max;
}

/* Converts the message table at 'idx' and adds it to 'o' for 'port'. */
static int collect_message(eddy_script *s, lua_State *L, int idx, int port, const char *what,
                           outbox *o, eddy_err *err)
{
    const json_t *hint = s->hint_free ? s->current : NULL;
    json_t *m;
    int rc = eddy_lua_to_json(L, idx, what, hint, &m, err);
    if (rc != EDDY_OK)
        return rc;
    if (hint)
        s->hint_free = false; /* invariant 1 */
    if (!json_is_object(m)) {
        json_decref(m);
        return eddy_err_set(err, EDDY_EINVAL, "%s is not a message", what);
    }
    if (!outbox_add(o, port, m))
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    return EDDY_OK;
}

static const char *lua_kind(lua_State *L, int idx)
{
    return eddy_lua_is_null(L, idx) ? "json.null" : luaL_typename(L, idx);
}

/* Sorts the value at 'idx' into messages per output (script.h). */
static int collect(eddy_script *s, lua_State *L, int idx, const char *what, outbox *o,
                   eddy_err *err)
{
    idx = lua_absindex(L, idx);
    if (lua_isnoneornil(L, idx))
        return EDDY_OK;
    if (lua_type(L, idx) != LUA_TTABLE)
        return eddy_err_set(err, EDDY_EINVAL,
                            "%s is a %s; expected a message (table), a list with one entry "
                            "per output, or nil",
                            what, lua_kind(L, idx));
    if (is_message_table(L, idx))
        return collect_message(s, L, idx, 0, what, o, err);
    lua_Integer n = list_length(L, idx, what, err);
    if (n < 0)
        return EDDY_EINVAL;
    int outputs = eddy_node_output_count(s->node);
    for (lua_Integer port = 1; port <= n && port <= outputs; port++) {
        char label[96];
        snprintf(label, sizeof(label), "%s[%lld]", what, (long long)port);
        int t = lua_rawgeti(L, idx, port);
        int rc = EDDY_OK;
        if (t == LUA_TNIL || eddy_lua_is_null(L, -1)) {
            /* nothing on this output */
        } else if (t != LUA_TTABLE) {
            rc = eddy_err_set(err, EDDY_EINVAL, "%s is a %s; expected a message or a list of them",
                              label, lua_kind(L, -1));
        } else if (is_message_table(L, -1)) {
            rc = collect_message(s, L, lua_gettop(L), (int)port - 1, label, o, err);
        } else {
            int list = lua_gettop(L);
            lua_Integer m = list_length(L, list, label, err);
            rc = m < 0 ? EDDY_EINVAL : EDDY_OK;
            for (lua_Integer k = 1; rc == EDDY_OK && k <= m; k++) {
                char item[128];
                snprintf(item, sizeof(item), "%s[%lld]", label, (long long)k);
                int kt = lua_rawgeti(L, list, k);
                if (kt == LUA_TTABLE && is_message_table(L, -1))
                    rc = collect_message(s, L, lua_gettop(L), (int)port - 1, item, o, err);
                else if (kt != LUA_TNIL && !eddy_lua_is_null(L, -1))
                    rc = eddy_err_set(err, EDDY_EINVAL, "%s is a %s; expected a message", item,
                                      lua_kind(L, -1));
                lua_pop(L, 1);
            }
        }
        lua_pop(L, 1);
        if (rc != EDDY_OK)
            return rc;
    }
    return EDDY_OK;
}

/* Gives each message its _msgid (the input's while handling one) and sends them all. */
static void outbox_send(eddy_script *s, outbox *o)
{
    const json_t *id = s->current ? json_object_get(s->current, "_msgid") : NULL;
    for (size_t i = 0; i < o->count; i++) {
        json_t *m = o->items[i].msg;
        json_t *have = m == s->current ? (json_t *)id : json_object_get(m, "_msgid");
        if (have == id && id) {
            /* the message handled, unchanged at the top: its id is right */
        } else if (json_is_string(id)) {
            if (have != id && !json_equal(have, (json_t *)id))
                json_object_set(m, "_msgid", (json_t *)id);
        } else if (!json_is_string(have)) {
            char fresh[17];
            eddy_msg_new_id(fresh);
            json_object_set_new(m, "_msgid", json_string(fresh));
        }
        eddy_node_send(s->node, o->items[i].port, m);
        o->items[i].msg = NULL;
    }
    outbox_clear(o);
}

/* Collects and sends the value at 'idx', or raises (nothing sent) if it is not valid. */
static void send_value(eddy_script *s, lua_State *L, int idx, const char *what)
{
    outbox o;
    outbox_init(&o);
    eddy_err err;
    eddy_err_clear(&err);
    int rc = collect(s, L, idx, what, &o, &err);
    if (rc != EDDY_OK) {
        outbox_clear(&o);
        raise_conv(L, rc, &err);
    }
    outbox_send(s, &o);
}

/* ---- node.* ---- */

static int api_send(lua_State *L)
{
    eddy_script *s = script_of(L);
    send_value(s, L, 1, "node.send");
    return 0;
}

/* Converts the optional message argument at 'idx' (NULL if absent). Raises on failure. */
static json_t *opt_message(lua_State *L, int idx, const char *what)
{
    if (lua_isnoneornil(L, idx))
        return NULL;
    json_t *m;
    eddy_err err;
    eddy_err_clear(&err);
    int rc = eddy_lua_to_json(L, idx, what, NULL, &m, &err);
    if (rc != EDDY_OK)
        raise_conv(L, rc, &err);
    return m;
}

/* The text of a log/warn/error argument: tables as JSON (if they convert), anything else
 * as tostring. Pushes it. */
static const char *text_arg(lua_State *L, int idx)
{
    if (lua_type(L, idx) == LUA_TTABLE) {
        eddy_lua_box *box = eddy_lua_box_new(L);
        eddy_err err;
        if (eddy_lua_to_json(L, idx, "value", NULL, &box->json, &err) == EDDY_OK && box->json &&
            (box->text = eddy_json_dumps(box->json, 0)) != NULL) {
            lua_pushstring(L, box->text);
            eddy_lua_box_clear(box);
            return lua_tostring(L, -1);
        }
        eddy_lua_box_clear(box);
    }
    return luaL_tolstring(L, idx, NULL);
}

static int api_done(lua_State *L)
{
    eddy_script *s = script_of(L);
    json_t *m = opt_message(L, 1, "node.done");
    if (m) {
        eddy_node_done(s->node, m);
        json_decref(m);
    } else if (s->current || s->origin) {
        eddy_node_done(s->node, s->current ? s->current : s->origin);
    }
    return 0;
}

static int api_error(lua_State *L)
{
    eddy_script *s = script_of(L);
    const char *text = text_arg(L, 1);
    json_t *m = opt_message(L, 2, "node.error");
    eddy_node_error(s->node, m, "%s", text);
    json_decref(m);
    return 0;
}

static int api_warn(lua_State *L)
{
    eddy_node_warn(script_of(L)->node, "%s", text_arg(L, 1));
    return 0;
}

static int api_log(lua_State *L)
{
    eddy_node_log(script_of(L)->node, "%s", text_arg(L, 1));
    return 0;
}

static const char *opt_field(lua_State *L, int idx, const char *name)
{
    lua_getfield(L, idx, name);
    const char *v = lua_type(L, -1) == LUA_TSTRING || lua_type(L, -1) == LUA_TNUMBER
                        ? lua_tostring(L, -1)
                        : NULL;
    return v; /* left on the stack, so the string stays valid */
}

/* node.status({fill=, shape=, text=}) or node.status("text"); nil or {} clears. */
static int api_status(lua_State *L)
{
    eddy_script *s = script_of(L);
    if (lua_isnoneornil(L, 1)) {
        eddy_node_set_status(s->node, NULL, NULL, NULL);
        return 0;
    }
    if (lua_type(L, 1) != LUA_TTABLE) {
        eddy_node_set_status(s->node, NULL, NULL, luaL_tolstring(L, 1, NULL));
        return 0;
    }
    const char *fill = opt_field(L, 1, "fill");
    const char *shape = opt_field(L, 1, "shape");
    const char *text = opt_field(L, 1, "text");
    eddy_node_set_status(s->node, fill, shape, text);
    return 0;
}

/* ---- context, flow, global, env ---- */

static eddy_ctx_scope ctx_scope(lua_State *L)
{
    return (eddy_ctx_scope)lua_tointeger(L, lua_upvalueindex(1));
}

static int api_ctx_get(lua_State *L)
{
    eddy_script *s = script_of(L);
    const char *key = luaL_checkstring(L, 1);
    json_t *v = eddy_node_context_get(s->node, ctx_scope(L), key);
    eddy_lua_push_json(L, v);
    return 1;
}

static int api_ctx_set(lua_State *L)
{
    eddy_script *s = script_of(L);
    const char *key = luaL_checkstring(L, 1);
    json_t *v = NULL;
    eddy_err err;
    eddy_err_clear(&err);
    char what[160];
    snprintf(what, sizeof(what), "value of '%.100s'", key);
    int rc = eddy_lua_to_json(L, 2, what, NULL, &v, &err);
    if (rc != EDDY_OK)
        return raise_conv(L, rc, &err);
    if (eddy_node_context_set(s->node, ctx_scope(L), key, v, &err) != EDDY_OK)
        return luaL_error(L, "%s.set: %s", "context", err.msg);
    return 0;
}

static int api_ctx_keys(lua_State *L)
{
    eddy_script *s = script_of(L);
    json_t *ctx = eddy_node_context(s->node, ctx_scope(L));
    lua_createtable(L, (int)json_object_size(ctx), 0);
    const char *key;
    json_t *v;
    lua_Integer i = 1;
    json_object_foreach(ctx, key, v)
    {
        lua_pushstring(L, key);
        lua_rawseti(L, -2, i++);
    }
    eddy_lua_mark_array(L, -1);
    return 1;
}

static int api_env_get(lua_State *L)
{
    eddy_script *s = script_of(L);
    eddy_lua_push_json(L, eddy_node_env(s->node, luaL_checkstring(L, 1)));
    return 1;
}

/* ---- util: message properties by path, as Node-RED's RED.util ---- */

/* Parses 'expr' ("payload.a[0]", with or without "msg.") or raises. */
static void check_path(lua_State *L, const char *expr, eddy_path *path)
{
    eddy_err err;
    eddy_err_clear(&err);
    if (strncmp(expr, "msg.", 4) == 0)
        expr += 4;
    if (eddy_path_parse(expr, path, &err) != EDDY_OK)
        luaL_error(L, "%s", err.msg);
}

/* Pushes the key of segment 'seg': array indexes count from 0 as in Node-RED's paths, and
 * Lua arrays from 1. */
static void push_segment(lua_State *L, const eddy_path_seg *seg)
{
    if (seg->key)
        lua_pushstring(L, seg->key);
    else
        lua_pushinteger(L, (lua_Integer)seg->index + 1);
}

/* util.getMessageProperty(msg, path): the value, or nil when any step is missing. */
static int api_get_property(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    eddy_path path;
    check_path(L, luaL_checkstring(L, 2), &path);
    lua_settop(L, 1);
    for (int i = 0; i < path.count; i++) {
        if (lua_type(L, -1) != LUA_TTABLE) {
            lua_pushnil(L);
            return 1;
        }
        push_segment(L, &path.seg[i]);
        lua_rawget(L, -2);
        lua_remove(L, -2);
    }
    return 1;
}

/* util.setMessageProperty(msg, path, value): creates tables on the way (arrays when the
 * next step is an index); nil deletes. */
static int api_set_property(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    eddy_path path;
    check_path(L, luaL_checkstring(L, 2), &path);
    lua_settop(L, 3);
    lua_pushvalue(L, 1);
    for (int i = 0; i < path.count - 1; i++) {
        push_segment(L, &path.seg[i]);
        lua_rawget(L, -2);
        if (lua_type(L, -1) != LUA_TTABLE) {
            if (!lua_isnil(L, -1) && !eddy_lua_is_null(L, -1))
                return luaL_error(L, "cannot set '%s': a step on the way is a %s",
                                  lua_tostring(L, 2), luaL_typename(L, -1));
            lua_pop(L, 1);
            lua_newtable(L);
            if (!path.seg[i + 1].key)
                eddy_lua_mark_array(L, -1);
            push_segment(L, &path.seg[i]);
            lua_pushvalue(L, -2);
            lua_rawset(L, -4);
        }
        lua_remove(L, -2);
    }
    push_segment(L, &path.seg[path.count - 1]);
    lua_pushvalue(L, 3);
    lua_rawset(L, -3);
    return 0;
}

/* ---- timers ---- */

static int timer_call(lua_State *L)
{
    script_timer *t = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
    lua_call(L, 0, 0);
    return 0;
}

static int64_t timer_fire(eddy_node *node, void *state, void *data)
{
    script_timer *t = data;
    eddy_script *s = t->s;
    eddy_err err;
    eddy_err_clear(&err);
    s->current = NULL; /* sends from a timer are new messages... */
    s->origin = t->origin;
    int rc = eddy_lua_run(s->host, timer_call, t, &err);
    s->origin = NULL;
    if (rc != EDDY_OK) /* ...but errors reach catch with the message that started it */
        eddy_node_error(node, t->origin, "%s", err.msg);
    return t->interval > 0 ? t->interval : EDDY_TIMER_STOP;
}

static void timer_finalize(void *data)
{
    script_timer *t = data;
    eddy_script *s = t->s;
    if (t->prev)
        t->prev->next = t->next;
    else
        s->timers = t->next;
    if (t->next)
        t->next->prev = t->prev;
    /* luaL_unref writes two existing registry slots: it cannot allocate or raise */
    luaL_unref(eddy_lua_state(s->host), LUA_REGISTRYINDEX, t->fn_ref);
    json_decref(t->origin);
    eddy_free(t);
}

static int timer_start(lua_State *L, bool repeat)
{
    eddy_script *s = script_of(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_Number ms = luaL_optnumber(L, 2, 0);
    if (s->closing)
        return luaL_error(L, "%s: the node is closing", repeat ? "setInterval" : "setTimeout");
    int64_t delay = ms > 0 && ms < 9e15 ? (int64_t)ms : 0;
    if (repeat && delay < 1)
        delay = 1;
    lua_settop(L, 1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX); /* may raise: nothing allocated yet */
    script_timer *t = eddy_calloc(1, sizeof(*t));
    if (!t) {
        luaL_unref(L, LUA_REGISTRYINDEX, ref);
        return luaL_error(L, "out of memory starting a timer");
    }
    t->s = s;
    t->fn_ref = ref;
    t->id = ++s->next_timer_id;
    t->interval = repeat ? delay : 0;
    t->origin = s->current ? json_incref((json_t *)s->current) : NULL;
    t->next = s->timers;
    if (s->timers)
        s->timers->prev = t;
    s->timers = t;
    t->timer = eddy_node_timer_start(s->node, delay, timer_fire, t, timer_finalize);
    if (!t->timer) {
        timer_finalize(t);
        return luaL_error(L, "out of memory starting a timer");
    }
    lua_pushinteger(L, t->id);
    return 1;
}

static int api_set_timeout(lua_State *L)
{
    return timer_start(L, false);
}

static int api_set_interval(lua_State *L)
{
    return timer_start(L, true);
}

static int api_clear_timer(lua_State *L)
{
    eddy_script *s = script_of(L);
    lua_Integer id = luaL_optinteger(L, 1, 0);
    for (script_timer *t = s->timers; t; t = t->next) {
        if (t->id == id) {
            eddy_node_timer_stop(s->node, t->timer);
            break;
        }
    }
    return 0;
}

/* ---- installing the API ---- */

static void set_fn(lua_State *L, const char *name, lua_CFunction fn)
{
    lua_pushcfunction(L, fn);
    lua_setfield(L, -2, name);
}

static void push_ctx_table(lua_State *L, eddy_ctx_scope scope)
{
    static const luaL_Reg fns[] = {
        {"get", api_ctx_get}, {"set", api_ctx_set}, {"keys", api_ctx_keys}, {NULL, NULL}};
    lua_createtable(L, 0, 5);
    lua_pushinteger(L, scope);
    luaL_setfuncs(L, fns, 1);
}

static int script_open(lua_State *L)
{
    eddy_script *s = lua_touserdata(L, 1);
    eddy_node *node = s->node;
    static const luaL_Reg timers[] = {{"setTimeout", api_set_timeout},
                                      {"setInterval", api_set_interval},
                                      {"clearTimeout", api_clear_timer},
                                      {"clearInterval", api_clear_timer},
                                      {NULL, NULL}};
    lua_createtable(L, 0, 16);
    lua_pushstring(L, eddy_node_id(node));
    lua_setfield(L, -2, "id");
    lua_pushstring(L, eddy_node_name(node));
    lua_setfield(L, -2, "name");
    lua_pushstring(L, eddy_node_type_name(node));
    lua_setfield(L, -2, "type");
    lua_pushinteger(L, eddy_node_output_count(node));
    lua_setfield(L, -2, "outputCount");
    set_fn(L, "send", api_send);
    set_fn(L, "done", api_done);
    set_fn(L, "error", api_error);
    set_fn(L, "warn", api_warn);
    set_fn(L, "log", api_log);
    set_fn(L, "status", api_status);
    luaL_setfuncs(L, timers, 0);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "node");
    s->node_ref = luaL_ref(L, LUA_REGISTRYINDEX);

    lua_pushglobaltable(L);
    luaL_setfuncs(L, timers, 0);
    lua_pop(L, 1);

    push_ctx_table(L, EDDY_CTX_FLOW);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "flow");
    push_ctx_table(L, EDDY_CTX_GLOBAL);
    lua_pushvalue(L, -1);
    lua_setglobal(L, "global");
    push_ctx_table(L, EDDY_CTX_NODE);
    lua_insert(L, -3); /* context, flow, global */
    lua_setfield(L, -3, "global");
    lua_setfield(L, -2, "flow");
    lua_setglobal(L, "context");

    lua_createtable(L, 0, 1);
    set_fn(L, "get", api_env_get);
    lua_setglobal(L, "env");
    lua_createtable(L, 0, 2);
    set_fn(L, "getMessageProperty", api_get_property);
    set_fn(L, "setMessageProperty", api_set_property);
    lua_setglobal(L, "util");
    /* print goes to the node's log line */
    lua_pushcfunction(L, api_log);
    lua_setglobal(L, "print");
    return 0;
}

eddy_script *eddy_script_new(eddy_node *node, const eddy_lua_limits *limits, bool auto_done,
                             eddy_err *err)
{
    eddy_script *s = eddy_calloc(1, sizeof(*s));
    if (!s) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory creating a Lua state");
        return NULL;
    }
    char subject[160];
    snprintf(subject, sizeof(subject), "node %s (%s)", eddy_node_id(node),
             eddy_node_type_name(node));
    s->node = node;
    s->auto_done = auto_done;
    s->node_ref = LUA_NOREF;
    s->host = eddy_lua_new(limits, subject, err);
    if (!s->host) {
        eddy_free(s);
        return NULL;
    }
    eddy_lua_set_user(s->host, s);
    eddy_err local;
    eddy_err_clear(&local);
    if (eddy_lua_run(s->host, script_open, s, &local) != EDDY_OK) {
        eddy_err_set(err, EDDY_ENOMEM, "cannot set up the Lua state: %s", local.msg);
        eddy_script_free(s);
        return NULL;
    }
    return s;
}

void eddy_script_closing(eddy_script *s)
{
    s->closing = true;
}

void eddy_script_free(eddy_script *s)
{
    if (!s)
        return;
    s->closing = true;
    while (s->timers) /* finalizers unlink (invariant 2) */
        eddy_node_timer_stop(s->node, s->timers->timer);
    eddy_lua_free(s->host);
    eddy_free(s);
}

eddy_lua *eddy_script_host(eddy_script *s)
{
    return s->host;
}

/* ---- compiling and calling ---- */

typedef struct compile_call {
    const char *src;
    size_t len;
    const char *chunkname;
    bool run; /* run the chunk and keep its first result (a table) */
    int ref;
    bool read_only; /* out: the function referenced is read-only */
} compile_call;

static int compile_fn(lua_State *L)
{
    compile_call *c = lua_touserdata(L, 1);
    eddy_lua_load(L, c->src, c->len, c->chunkname);
    if (c->run) {
        lua_call(L, 0, 1);
        if (lua_type(L, -1) != LUA_TTABLE)
            return luaL_error(L,
                              "%s: the file must return a table (the node type's "
                              "declaration), not %s",
                              c->chunkname, luaL_typename(L, -1));
    } else {
        c->read_only = eddy_lua_is_read_only(L, -1);
    }
    c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* Handlers are referenced for the script's life, so a ref stays the function it was. */
static void note_read_only(eddy_script *s, int ref, bool read_only)
{
    int max = (int)(sizeof(s->read_only_refs) / sizeof(s->read_only_refs[0]));
    if (read_only && s->read_only_count < max)
        s->read_only_refs[s->read_only_count++] = ref;
}

static bool is_read_only(const eddy_script *s, int ref)
{
    for (int i = 0; i < s->read_only_count; i++)
        if (s->read_only_refs[i] == ref)
            return true;
    return false;
}

int eddy_script_compile(eddy_script *s, const char *src, const char *chunkname, int *ref,
                        eddy_err *err)
{
    compile_call c = {src, strlen(src), chunkname, false, LUA_NOREF, false};
    int rc = eddy_lua_run(s->host, compile_fn, &c, err);
    *ref = c.ref;
    if (rc == EDDY_OK)
        note_read_only(s, c.ref, c.read_only);
    return rc;
}

int eddy_script_load_module(eddy_script *s, const char *src, size_t len, const char *chunkname,
                            int *ref, eddy_err *err)
{
    compile_call c = {src, len, chunkname, true, LUA_NOREF, false};
    int rc = eddy_lua_run(s->host, compile_fn, &c, err);
    *ref = c.ref;
    return rc;
}

typedef struct field_call {
    int table_ref;
    const char *name;
    const json_t *value; /* set_node_field */
    int ref;
    bool read_only; /* out: the function referenced is read-only */
} field_call;

static int field_fn(lua_State *L)
{
    field_call *c = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->table_ref);
    lua_getfield(L, -1, c->name);
    if (lua_type(L, -1) == LUA_TFUNCTION) {
        c->read_only = eddy_lua_is_read_only(L, -1);
        c->ref = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    return 0;
}

int eddy_script_field_ref(eddy_script *s, int table_ref, const char *name)
{
    field_call c = {table_ref, name, NULL, LUA_NOREF, false};
    eddy_lua_run(s->host, field_fn, &c, NULL);
    note_read_only(s, c.ref, c.read_only);
    return c.ref;
}

static int set_field_fn(lua_State *L)
{
    field_call *c = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->table_ref);
    eddy_lua_push_json(L, c->value);
    lua_setfield(L, -2, c->name);
    return 0;
}

int eddy_script_set_node_field(eddy_script *s, const char *name, const json_t *value, eddy_err *err)
{
    field_call c = {s->node_ref, name, value, LUA_NOREF, false};
    return eddy_lua_run(s->host, set_field_fn, &c, err);
}

typedef struct handler_call {
    eddy_script *s;
    int ref;
    bool with_node;
    const json_t *msg; /* NULL: no message argument */
    bool read_only;    /* the handler is read-only (lua_inspect.h) */
} handler_call;

/* Sends the message being handled on output 1, as it came. */
static void send_incoming(eddy_script *s, lua_State *L)
{
    outbox o;
    outbox_init(&o);
    s->hint_free = false; /* invariant 1 */
    if (!outbox_add(&o, 0, json_incref((json_t *)s->current)))
        luaL_error(L, "out of memory");
    outbox_send(s, &o);
}

/* Runs a read-only handler with the message table, kept at 'msg_idx'. Such a handler can
 * change no table, unless a metamethod runs, and the host counts every call: when the
 * only call was the handler's own and it returns the table it was given, the message goes
 * on as it came, without converting the table back. */
static void call_read_only(handler_call *c, lua_State *L, int nargs, int msg_idx)
{
    eddy_lua *h = eddy_lua_from_state(L);
    eddy_lua_watch_calls(h);
    lua_call(L, nargs, 1);
    bool untouched = eddy_lua_watched_calls(h) == 1;
    if (untouched && lua_rawequal(L, -1, msg_idx))
        send_incoming(c->s, L);
    else
        send_value(c->s, L, -1, "result");
}

static int handler_fn(lua_State *L)
{
    handler_call *c = lua_touserdata(L, 1);
    int nargs = 0, msg_idx = 0;
    if (c->msg) {
        eddy_lua_push_json(L, c->msg);
        msg_idx = lua_gettop(L);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->ref);
    if (c->with_node) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, c->s->node_ref);
        nargs++;
    }
    if (c->msg) {
        lua_pushvalue(L, msg_idx);
        nargs++;
    }
    if (c->msg && c->read_only) {
        call_read_only(c, L, nargs, msg_idx);
        return 0;
    }
    lua_call(L, nargs, 1);
    if (c->msg) /* what on-start/on-stop code and setup/close return is ignored */
        send_value(c->s, L, -1, "result");
    return 0;
}

void eddy_script_input(eddy_script *s, int ref, bool with_node, json_t *msg)
{
    handler_call c = {s, ref, with_node, msg, is_read_only(s, ref)};
    eddy_err err;
    eddy_err_clear(&err);
    s->current = msg;
    s->hint_free = true;
    int rc = eddy_lua_run(s->host, handler_fn, &c, &err);
    s->current = NULL;
    if (rc != EDDY_OK)
        eddy_node_error(s->node, msg, "%s", err.msg);
    else if (s->auto_done)
        eddy_node_done(s->node, msg);
    json_decref(msg);
}

int eddy_script_call(eddy_script *s, int ref, bool with_node, eddy_err *err)
{
    if (ref == LUA_NOREF || ref == LUA_REFNIL)
        return EDDY_OK;
    handler_call c = {s, ref, with_node, NULL, false};
    s->current = NULL;
    return eddy_lua_run(s->host, handler_fn, &c, err);
}
