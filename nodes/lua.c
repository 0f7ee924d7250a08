/* lua.c: the "lua" node, eddy's counterpart of Node-RED's "function" node. The script (the
 * flow property 'func', a Lua chunk with 'msg' in scope) runs once per message in the
 * node's own sandboxed state; 'initialize' runs at start and 'finalize' at stop, as Node-RED's
 * "On Start" and "On Stop" tabs. What a script can do and return is runtime/script.h's. */
#include <lauxlib.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "lua_host.h"
#include "mem.h"
#include "node.h"
#include "script.h"

struct luanode_state {
    const char *func;       /* run per message, with 'msg' a local */
    long outputs;           /* output count (the engine reads it too) */
    const char *initialize; /* run once at start; "" for none */
    const char *finalize;   /* run once at stop; "" for none */
    const json_t *libs;     /* Node-RED's npm modules: not used by eddy */
    double max_memory;      /* MiB the node's Lua state may hold */
    long max_instructions;  /* per message (or timer, or start/stop code) */
    eddy_script *script;
    int func_ref;
};

static const eddy_prop luanode_props[] = {
    {"func", EDDY_PROP_STR, "\"return msg\"", false, offsetof(struct luanode_state, func),
     "Lua code run for each message; 'msg' is the message, return what to send", NULL},
    {"outputs", EDDY_PROP_INT, "1", false, offsetof(struct luanode_state, outputs),
     "number of outputs", NULL},
    {"initialize", EDDY_PROP_STR, "\"\"", false, offsetof(struct luanode_state, initialize),
     "Lua code run once when the node starts", NULL},
    {"finalize", EDDY_PROP_STR, "\"\"", false, offsetof(struct luanode_state, finalize),
     "Lua code run once when the node stops", NULL},
    {"libs", EDDY_PROP_JSON, NULL, false, offsetof(struct luanode_state, libs),
     "Node-RED's npm modules; ignored (Lua scripts cannot load modules)", NULL},
    {"maxMemory", EDDY_PROP_NUM, "16", false, offsetof(struct luanode_state, max_memory),
     "MiB of memory the node's Lua state may hold", NULL},
    {"maxInstructions", EDDY_PROP_INT, "10000000", false,
     offsetof(struct luanode_state, max_instructions),
     "Lua instructions a call may run before it is stopped with an error", NULL},
    {0},
};

/* "local msg = ..." on the script's first line keeps its line numbers. */
static char *func_source(const char *func)
{
    static const char prefix[] = "local msg = ...; ";
    size_t n = strlen(func);
    char *src = eddy_malloc(sizeof(prefix) + n);
    if (src) {
        memcpy(src, prefix, sizeof(prefix) - 1);
        memcpy(src + sizeof(prefix) - 1, func, n + 1);
    }
    return src;
}

static int compile_only(lua_State *L)
{
    const char **src = lua_touserdata(L, 1);
    eddy_lua_load(L, src[0], strlen(src[0]), src[1]);
    return 0;
}

static int luanode_validate(const eddy_node_type *type, const json_t *config, void *state,
                            eddy_err *err)
{
    struct luanode_state *st = state;
    if (st->outputs < 0 || st->outputs > 64)
        return eddy_err_set(err, EDDY_EINVAL, "outputs must be from 0 to 64, not %ld", st->outputs);
    if (!(st->max_memory >= 0.0625 && st->max_memory <= 4096))
        return eddy_err_set(err, EDDY_EINVAL, "maxMemory must be from 0.0625 to 4096 (MiB)");
    if (st->max_instructions < 1000)
        return eddy_err_set(err, EDDY_EINVAL, "maxInstructions must be at least 1000");
    /* syntax errors are found when the flow loads, not when the first message comes */
    eddy_lua *h = eddy_lua_new(NULL, "check", err);
    if (!h)
        return err ? err->code : EDDY_ENOMEM;
    char *func = func_source(st->func);
    const char *chunks[][2] = {
        {func, "func"}, {st->initialize, "initialize"}, {st->finalize, "finalize"}};
    int rc = func ? EDDY_OK : eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    for (size_t i = 0; rc == EDDY_OK && i < 3; i++)
        rc = eddy_lua_run(h, compile_only, (void *)chunks[i], err);
    eddy_free(func);
    eddy_lua_free(h);
    return rc;
}

static void luanode_report(eddy_node *node, const char *what, const eddy_err *err)
{
    eddy_node_error(node, NULL, "%s: %s", what, err->msg);
}

static int luanode_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct luanode_state *st = state;
    eddy_lua_limits limits = {(size_t)(st->max_memory * 1048576.0), st->max_instructions};
    /* as Node-RED: a script that mentions node.done says itself when it is done */
    bool auto_done = !strstr(st->func, "node.done");
    st->func_ref = LUA_NOREF;
    st->script = eddy_script_new(node, &limits, auto_done, err);
    if (!st->script)
        return err ? err->code : EDDY_ENOMEM;
    char *func = func_source(st->func);
    if (!func)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    int rc = eddy_script_compile(st->script, func, "func", &st->func_ref, err);
    eddy_free(func);
    if (rc != EDDY_OK)
        return rc;
    if (*st->initialize) {
        /* errors in the start code are reported; the node still takes messages */
        int ref;
        eddy_err e;
        eddy_err_clear(&e);
        if (eddy_script_compile(st->script, st->initialize, "initialize", &ref, &e) != EDDY_OK ||
            eddy_script_call(st->script, ref, false, &e) != EDDY_OK)
            luanode_report(node, "initialize", &e);
    }
    return EDDY_OK;
}

static void luanode_input(eddy_node *node, void *state, json_t *msg)
{
    struct luanode_state *st = state;
    eddy_script_input(st->script, st->func_ref, false, msg);
}

static int luanode_close(eddy_node *node, void *state, bool removed)
{
    struct luanode_state *st = state;
    if (!st->script)
        return EDDY_CLOSE_DONE;
    eddy_script_closing(st->script);
    if (*st->finalize) {
        int ref;
        eddy_err e;
        eddy_err_clear(&e);
        if (eddy_script_compile(st->script, st->finalize, "finalize", &ref, &e) != EDDY_OK ||
            eddy_script_call(st->script, ref, false, &e) != EDDY_OK)
            luanode_report(node, "finalize", &e);
    }
    eddy_script_free(st->script);
    st->script = NULL;
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_lua = {
    .name = "lua",
    .inputs = 1,
    .outputs = -1,
    .flags = EDDY_NODE_ASYNC_DONE,
    .props = luanode_props,
    .state_size = sizeof(struct luanode_state),
    .help = "Runs a Lua 5.4 script for each message (Node-RED's function node, in Lua). "
            "'msg' is the message as a table; return it (or another), a list with one entry "
            "per output, or nothing. node.send, node.done, node.status, node.error (reaches "
            "catch), node.warn, node.log, context/flow/global get and set, env.get, "
            "setTimeout/setInterval and json are there; io, os.execute, require and debug "
            "are not. Each node has its own state with a memory cap and an instruction "
            "budget per call.",
    .validate = luanode_validate,
    .setup = luanode_setup,
    .input = luanode_input,
    .close = luanode_close,
};
