/* lua_type.c: loading node types declared in Lua, checking their declarations, running
 * their nodes, and generating their editor definitions (contract in lua_type.h).
 *
 * A declaration is read once, in a state of its own (lt->decl) that afterwards holds only
 * the property validators. Each node runs the file again in its own script state; the
 * properties the engine filled (one slot per declared property) become node.config. */
#include "lua_type.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "log.h"
#include "lua_host.h"
#include "mem.h"
#include "msg.h"
#include "script.h"

#define LUA_TYPE_FILE       "node.lua"
#define LUA_TYPE_MAX_SOURCE (1u << 20) /* bytes */
#define LUA_TYPE_MAX_PROPS  64

/* ---- data ---- */

typedef enum lt_kind {
    LT_STRING,   /* any text */
    LT_PROPERTY, /* a message property path ("payload.temperature") */
    LT_SELECT,   /* one of 'options' */
    LT_NUMBER,   /* a number, within min..max */
    LT_INTEGER,  /* a whole number, within min..max */
    LT_BOOLEAN,
    LT_JSON, /* any JSON value */
} lt_kind;

static const char *const lt_kind_names[] = {"string",  "property", "select", "number",
                                            "integer", "boolean",  "json",   NULL};

/* One property value in a node's state; which member is valid follows the kind. */
typedef union lt_slot {
    const char *s;   /* STRING, PROPERTY, SELECT: borrowed from the flow or the defaults */
    double d;        /* NUMBER */
    long l;          /* INTEGER */
    bool b;          /* BOOLEAN */
    const json_t *j; /* JSON: borrowed, NULL if absent */
} lt_slot;

typedef struct lt_prop {
    char *name;
    lt_kind kind;
    json_t *def; /* default; NULL for none */
    bool required;
    bool has_min, has_max;
    double min, max;    /* NUMBER, INTEGER */
    json_t *options;    /* SELECT: array of strings */
    char *choices;      /* SELECT: "|a|b|" for the engine */
    char *def_text;     /* 'def' as JSON text for the engine */
    char *label, *help; /* editor: field label, one line of help; may be NULL */
    int validate_ref;   /* validator in lt->decl; LUA_NOREF for none */
} lt_prop;

typedef struct ltype {
    eddy_node_type type; /* first: eddy_node_get_type() is cast back to ltype */
    char *file;          /* as loaded */
    char *chunkname;     /* "<folder>/node.lua", the name in Lua's messages */
    char *source;
    size_t source_len;
    char *name, *category, *color, *icon, *label, *palette_label, *help_md, *summary;
    lt_prop *props;
    int nprops;
    eddy_prop *eprops; /* the engine's view of 'props', NULL-terminated */
    eddy_lua_limits limits;
    eddy_lua *decl; /* holds the validators */
    bool has_validators;
    bool auto_done; /* the file does not mention node.done */
} ltype;

/* A node's state: handlers in its script, then one slot per declared property. */
typedef struct lt_node {
    eddy_script *script;
    int input_ref, setup_ref, close_ref;
    bool ready; /* set up completely: close runs the close handler */
    lt_slot slots[];
} lt_node;

static int lt_validate(const eddy_node_type *type, const json_t *config, void *state,
                       eddy_err *err);
static int lt_setup(eddy_node *node, void *state, eddy_err *err);
static void lt_input(eddy_node *node, void *state, json_t *msg);
static int lt_close(eddy_node *node, void *state, bool removed);

bool eddy_lua_type_is(const eddy_node_type *type)
{
    return type && type->setup == lt_setup;
}

const char *eddy_lua_type_file(const eddy_node_type *type)
{
    return eddy_lua_type_is(type) ? ((const ltype *)type)->file : NULL;
}

static void lt_free(ltype *lt)
{
    if (!lt)
        return;
    for (int i = 0; i < lt->nprops; i++) {
        lt_prop *p = &lt->props[i];
        eddy_free(p->name);
        json_decref(p->def);
        json_decref(p->options);
        eddy_free(p->choices);
        eddy_free(p->def_text);
        eddy_free(p->label);
        eddy_free(p->help);
    }
    eddy_free(lt->props);
    eddy_free(lt->eprops);
    eddy_lua_free(lt->decl);
    eddy_free(lt->file);
    eddy_free(lt->chunkname);
    eddy_free(lt->source);
    eddy_free(lt->name);
    eddy_free(lt->category);
    eddy_free(lt->color);
    eddy_free(lt->icon);
    eddy_free(lt->label);
    eddy_free(lt->palette_label);
    eddy_free(lt->help_md);
    eddy_free(lt->summary);
    eddy_free(lt);
}

static void lt_release(const eddy_node_type *type)
{
    lt_free((ltype *)type);
}

/* ---- where in the file: lines for declaration errors ---- */

/* The line of the first "<key> =" (not "==") at or after line 'from', or 0. Lua keeps no
 * line per table field, so declaration errors find theirs in the text. */
static int line_of_key(const ltype *lt, const char *key, int from)
{
    size_t klen = strlen(key);
    int line = 1;
    const char *s = lt->source, *end = s + lt->source_len;
    for (const char *p = s; p < end; p++) {
        if (*p == '\n') {
            line++;
            continue;
        }
        if (line < from || (size_t)(end - p) < klen || memcmp(p, key, klen) != 0)
            continue;
        if (p > s && (isalnum((unsigned char)p[-1]) || p[-1] == '_' || p[-1] == '.'))
            continue;
        const char *q = p + klen;
        while (q < end && (*q == ' ' || *q == '\t'))
            q++;
        if (q < end && *q == '=' && (q + 1 >= end || q[1] != '='))
            return line;
    }
    return 0;
}

/* The line declaring property 'name' (name = "<name>"), or 0. */
static int line_of_prop(const ltype *lt, const char *name)
{
    int line = 1;
    size_t nlen = strlen(name);
    const char *s = lt->source, *end = s + lt->source_len;
    for (const char *p = s; p < end; p++) {
        if (*p == '\n') {
            line++;
            continue;
        }
        if ((*p != '"' && *p != '\'') || (size_t)(end - p) < nlen + 2 ||
            memcmp(p + 1, name, nlen) != 0 || p[nlen + 1] != *p)
            continue;
        const char *q = p - 1; /* back over "name =" */
        while (q > s && (*q == ' ' || *q == '\t'))
            q--;
        if (q > s && *q == '=' && q[-1] != '=') {
            q--;
            while (q > s && (*q == ' ' || *q == '\t'))
                q--;
            if (q >= s + 3 && memcmp(q - 3, "name", 4) == 0)
                return line;
        }
    }
    return 0;
}

/* ---- reading the declaration (inside eddy_lua_run) ---- */

typedef struct decl_ctx {
    ltype *lt;
    eddy_err *err;
    int rc; /* first problem found */
} decl_ctx;

static void decl_fail(decl_ctx *c, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void decl_fail(decl_ctx *c, int line, const char *fmt, ...)
{
    if (c->rc != EDDY_OK)
        return;
    char text[EDDY_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof(text), fmt, ap);
    va_end(ap);
    c->rc = EDDY_EINVAL;
    eddy_err_set(c->err, EDDY_EINVAL, "%s", text);
    eddy_err_at_file(c->err, c->lt->file, line, 0);
}

/* Copies string field 'key' of the table at 'idx' into '*out' (NULL when absent).
 * false (with the problem reported) when present but not a string. */
static bool decl_string(decl_ctx *c, int idx, const char *key, char **out, int line_from,
                        const char *where)
{
    lua_State *L = eddy_lua_state(c->lt->decl);
    int t = lua_getfield(L, idx, key);
    bool ok = true;
    if (t == LUA_TSTRING) {
        size_t len;
        const char *v = lua_tolstring(L, -1, &len);
        if (strlen(v) != len) {
            decl_fail(c, line_of_key(c->lt, key, line_from), "%s'%s' contains a NUL byte", where,
                      key);
            ok = false;
        } else if (!(*out = eddy_strdup(v))) {
            luaL_error(L, "not enough memory");
        }
    } else if (t != LUA_TNIL) {
        decl_fail(c, line_of_key(c->lt, key, line_from), "%s'%s' must be a string, not %s", where,
                  key, luaL_typename(L, -1));
        ok = false;
    }
    lua_pop(L, 1);
    return ok;
}

/* Reads integer field 'key' into '*out' (left as is when absent). */
static bool decl_int(decl_ctx *c, int idx, const char *key, long lo, long hi, long *out)
{
    lua_State *L = eddy_lua_state(c->lt->decl);
    int t = lua_getfield(L, idx, key);
    bool ok = true;
    if (t != LUA_TNIL) {
        if (!lua_isinteger(L, -1) || lua_tointeger(L, -1) < lo || lua_tointeger(L, -1) > hi) {
            decl_fail(c, line_of_key(c->lt, key, 1), "'%s' must be a whole number from %ld to %ld",
                      key, lo, hi);
            ok = false;
        } else {
            *out = (long)lua_tointeger(L, -1);
        }
    }
    lua_pop(L, 1);
    return ok;
}

/* Checks that every key of the table at 'idx' is one of 'allowed' (typos in field names
 * would otherwise be ignored silently). */
static bool decl_known_keys(decl_ctx *c, int idx, const char *const *allowed, int line_from,
                            const char *where)
{
    lua_State *L = eddy_lua_state(c->lt->decl);
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        lua_pop(L, 1);
        bool known = false;
        if (lua_type(L, -1) == LUA_TSTRING)
            for (int i = 0; allowed[i] && !known; i++)
                known = strcmp(lua_tostring(L, -1), allowed[i]) == 0;
        if (!known) {
            char key[80];
            if (lua_type(L, -1) == LUA_TSTRING)
                snprintf(key, sizeof(key), "'%.60s'", lua_tostring(L, -1));
            else
                snprintf(key, sizeof(key), "a key of type %s", luaL_typename(L, -1));
            int line = lua_type(L, -1) == LUA_TSTRING
                           ? line_of_key(c->lt, lua_tostring(L, -1), line_from)
                           : 0;
            lua_pop(L, 1);
            decl_fail(c, line ? line : line_from, "%sunknown field %s", where, key);
            return false;
        }
    }
    return true;
}

static bool valid_type_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == ' ' || s[n - 1] == ' ')
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != ' ' && *s != '-' && *s != '_')
            return false;
    return true;
}

static bool valid_prop_name(const char *s)
{
    static const char *const reserved[] = {"id", "type", "z",    "wires",   "x",      "y", "g",
                                           "d",  "name", "info", "outputs", "inputs", NULL};
    if (!*s || strlen(s) > 64 || (!isalpha((unsigned char)*s) && *s != '_'))
        return false;
    for (const char *p = s; *p; p++)
        if (!isalnum((unsigned char)*p) && *p != '_')
            return false;
    for (int i = 0; reserved[i]; i++)
        if (strcmp(s, reserved[i]) == 0)
            return false;
    return true;
}

static bool valid_color(const char *s)
{
    size_t n = strlen(s);
    if (s[0] != '#' || (n != 4 && n != 7))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* Checks 'v' (the default) against the property's kind and limits; NULL when fine, else
 * what is wrong. */
static const char *prop_value_problem(const lt_prop *p, const json_t *v, char *buf, size_t size)
{
    switch (p->kind) {
    case LT_STRING:
    case LT_PROPERTY:
    case LT_SELECT:
        if (!json_is_string(v))
            return "must be a string";
        if (p->kind == LT_PROPERTY && (json_string_length(v) > 0 || p->required)) {
            eddy_path path;
            eddy_err perr;
            const char *text = json_string_value(v);
            if (strncmp(text, "msg.", 4) == 0)
                text += 4;
            if (eddy_path_parse(text, &path, &perr) != EDDY_OK) {
                snprintf(buf, size, "is not a message property (%.100s)", perr.msg);
                return buf;
            }
        }
        if (p->kind == LT_SELECT) {
            size_t i;
            json_t *o;
            json_array_foreach(p->options, i, o) if (json_equal(o, (json_t *)v)) return NULL;
            return "is not one of the options";
        }
        return NULL;
    case LT_NUMBER:
    case LT_INTEGER: {
        if (!json_is_number(v))
            return "must be a number";
        double d = json_number_value(v);
        if (p->kind == LT_INTEGER && !json_is_integer(v))
            return "must be a whole number";
        if ((p->has_min && d < p->min) || (p->has_max && d > p->max)) {
            char lo[32] = "-", hi[32] = "-";
            if (p->has_min)
                eddy_format_number(p->min, lo);
            if (p->has_max)
                eddy_format_number(p->max, hi);
            snprintf(buf, size, "must be from %s to %s", lo, hi);
            return buf;
        }
        return NULL;
    }
    case LT_BOOLEAN:
        return json_is_boolean(v) ? NULL : "must be true or false";
    case LT_JSON:
        return NULL;
    }
    return NULL;
}

static bool decl_property(decl_ctx *c, int idx, int position, lt_prop *p)
{
    static const char *const allowed[] = {"name",    "type",  "default", "required", "min", "max",
                                          "options", "label", "help",    "validate", NULL};
    ltype *lt = c->lt;
    lua_State *L = eddy_lua_state(lt->decl);
    int line = lt->source ? line_of_key(lt, "properties", 1) : 0;
    p->validate_ref = LUA_NOREF;
    if (lua_type(L, idx) != LUA_TTABLE) {
        decl_fail(c, line, "properties[%d] must be a table ({name = ..., type = ...})", position);
        return false;
    }
    char where[96];
    snprintf(where, sizeof(where), "properties[%d]: ", position);
    if (!decl_string(c, idx, "name", &p->name, line, where))
        return false;
    if (!p->name) {
        decl_fail(c, line, "properties[%d] has no name", position);
        return false;
    }
    int pline = line_of_prop(lt, p->name);
    if (pline)
        line = pline;
    snprintf(where, sizeof(where), "property '%.60s': ", p->name);
    if (!valid_prop_name(p->name)) {
        decl_fail(c, line,
                  "%sa property name is a letter or '_' followed by letters, digits or '_', "
                  "and not one of id, type, z, wires, x, y, g, d, name, info, inputs, outputs",
                  where);
        return false;
    }
    if (!decl_known_keys(c, idx, allowed, line, where))
        return false;
    char *kind = NULL;
    if (!decl_string(c, idx, "type", &kind, line, where))
        return false;
    int k = -1;
    for (int i = 0; kind && lt_kind_names[i]; i++)
        if (strcmp(kind, lt_kind_names[i]) == 0)
            k = i;
    eddy_free(kind);
    if (k < 0) {
        decl_fail(c, line_of_key(lt, "type", line),
                  "%s'type' must be one of string, property, select, number, integer, "
                  "boolean, json",
                  where);
        return false;
    }
    p->kind = (lt_kind)k;
    if (!decl_string(c, idx, "label", &p->label, line, where) ||
        !decl_string(c, idx, "help", &p->help, line, where))
        return false;
    /* required */
    int t = lua_getfield(L, idx, "required");
    if (t != LUA_TNIL && t != LUA_TBOOLEAN) {
        decl_fail(c, line_of_key(lt, "required", line), "%s'required' must be true or false",
                  where);
        return false;
    }
    p->required = lua_toboolean(L, -1);
    lua_pop(L, 1);
    /* min, max */
    const char *bounds[] = {"min", "max"};
    for (int i = 0; i < 2; i++) {
        t = lua_getfield(L, idx, bounds[i]);
        if (t != LUA_TNIL) {
            if (t != LUA_TNUMBER || (p->kind != LT_NUMBER && p->kind != LT_INTEGER)) {
                decl_fail(c, line_of_key(lt, bounds[i], line), "%s'%s' %s", where, bounds[i],
                          t != LUA_TNUMBER ? "must be a number"
                                           : "applies to number and integer properties only");
                return false;
            }
            *(i ? &p->max : &p->min) = lua_tonumber(L, -1);
            *(i ? &p->has_max : &p->has_min) = true;
        }
        lua_pop(L, 1);
    }
    if (p->has_min && p->has_max && p->min > p->max) {
        decl_fail(c, line_of_key(lt, "min", line), "%s'min' is greater than 'max'", where);
        return false;
    }
    /* options */
    t = lua_getfield(L, idx, "options");
    if ((t != LUA_TNIL) != (p->kind == LT_SELECT)) {
        decl_fail(c, t != LUA_TNIL ? line_of_key(lt, "options", line) : line, "%s%s", where,
                  t != LUA_TNIL ? "'options' applies to select properties only"
                                : "a select property needs 'options', a list of strings");
        return false;
    }
    if (t != LUA_TNIL) {
        eddy_err e;
        eddy_err_clear(&e);
        int rc = eddy_lua_to_json(L, -1, "options", NULL, &p->options, &e);
        bool ok = rc == EDDY_OK && json_is_array(p->options) && json_array_size(p->options) > 0;
        size_t i;
        json_t *o;
        json_array_foreach(p->options, i, o) ok =
            ok && json_is_string(o) && !strchr(json_string_value(o), '|');
        if (!ok) {
            decl_fail(c, line_of_key(lt, "options", line),
                      "%s'options' must be a non-empty list of strings (without '|')", where);
            return false;
        }
        size_t len = 2;
        json_array_foreach(p->options, i, o) len += json_string_length(o) + 1;
        if (!(p->choices = eddy_malloc(len)))
            return luaL_error(L, "not enough memory"), false;
        strcpy(p->choices, "|");
        json_array_foreach(p->options, i, o)
        {
            strcat(p->choices, json_string_value(o));
            strcat(p->choices, "|");
        }
    }
    lua_pop(L, 1);
    /* validate */
    t = lua_getfield(L, idx, "validate");
    if (t != LUA_TNIL && t != LUA_TFUNCTION) {
        decl_fail(c, line_of_key(lt, "validate", line), "%s'validate' must be a function", where);
        return false;
    }
    if (t == LUA_TFUNCTION) {
        p->validate_ref = luaL_ref(L, LUA_REGISTRYINDEX);
        lt->has_validators = true;
    } else {
        lua_pop(L, 1);
    }
    /* default: checked like a value from a flow */
    t = lua_getfield(L, idx, "default");
    if (t != LUA_TNIL) {
        eddy_err e;
        eddy_err_clear(&e);
        if (eddy_lua_to_json(L, -1, "default", NULL, &p->def, &e) != EDDY_OK) {
            decl_fail(c, line_of_key(lt, "default", line), "%s%s", where, e.msg);
            return false;
        }
        char buf[160];
        const char *problem = prop_value_problem(p, p->def, buf, sizeof(buf));
        if (problem) {
            decl_fail(c, line_of_key(lt, "default", line), "%s'default' %s", where, problem);
            return false;
        }
        if (!(p->def_text = eddy_json_dumps(p->def, 0)))
            return luaL_error(L, "not enough memory"), false;
    } else if (p->kind != LT_STRING && p->kind != LT_PROPERTY && p->kind != LT_JSON) {
        decl_fail(c, line, "%sa %s property needs a 'default'%s", where, lt_kind_names[p->kind],
                  p->kind == LT_SELECT ? " (one of its options)" : "");
        return false;
    }
    lua_pop(L, 1);
    return true;
}

static bool decl_handlers(decl_ctx *c, int idx)
{
    static const char *const handlers[] = {"setup", "input", "close", NULL};
    lua_State *L = eddy_lua_state(c->lt->decl);
    for (int i = 0; handlers[i]; i++) {
        int t = lua_getfield(L, idx, handlers[i]);
        lua_pop(L, 1);
        if (t != LUA_TNIL && t != LUA_TFUNCTION) {
            decl_fail(c, line_of_key(c->lt, handlers[i], 1), "'%s' must be a function",
                      handlers[i]);
            return false;
        }
        if (strcmp(handlers[i], "input") == 0 && (t == LUA_TNIL) != (c->lt->type.inputs == 0)) {
            decl_fail(
                c, t == LUA_TNIL ? line_of_key(c->lt, "inputs", 1) : line_of_key(c->lt, "input", 1),
                t == LUA_TNIL ? "a type with an input needs an 'input' handler"
                              : "a type with 'inputs = 0' cannot have an 'input' handler");
            return false;
        }
    }
    return true;
}

/* The first paragraph of the Markdown help, without heading marks, as one line. */
static char *help_summary(const char *md)
{
    const char *p = md;
    while (*p == '\n' || *p == ' ' || *p == '\t' || *p == '#')
        p++;
    const char *end = strstr(p, "\n\n");
    size_t n = end ? (size_t)(end - p) : strlen(p);
    while (n > 0 && isspace((unsigned char)p[n - 1]))
        n--;
    char *s = eddy_strndup(p, n);
    for (char *q = s; q && *q; q++)
        if (*q == '\n')
            *q = ' ';
    return s;
}

static int decl_fn(lua_State *L)
{
    decl_ctx *c = lua_touserdata(L, 1);
    ltype *lt = c->lt;
    static const char *const allowed[] = {
        "name",       "category", "color",  "icon",  "label", "paletteLabel", "inputs", "outputs",
        "properties", "help",     "limits", "setup", "input", "close",        NULL};
    eddy_lua_load(L, lt->source, lt->source_len, lt->chunkname);
    lua_call(L, 0, 1);
    if (lua_type(L, -1) != LUA_TTABLE) {
        decl_fail(c, 0,
                  "the file must return a table declaring the node type ({name = ..., input "
                  "= function(node, msg) ... end}), not %s",
                  luaL_typename(L, -1));
        return 0;
    }
    int d = lua_gettop(L);
    if (!decl_known_keys(c, d, allowed, 1, ""))
        return 0;
    if (!decl_string(c, d, "name", &lt->name, 1, "") ||
        !decl_string(c, d, "category", &lt->category, 1, "") ||
        !decl_string(c, d, "color", &lt->color, 1, "") ||
        !decl_string(c, d, "icon", &lt->icon, 1, "") ||
        !decl_string(c, d, "label", &lt->label, 1, "") ||
        !decl_string(c, d, "paletteLabel", &lt->palette_label, 1, "") ||
        !decl_string(c, d, "help", &lt->help_md, 1, ""))
        return 0;
    if (!lt->name) {
        decl_fail(c, 1, "the declaration has no 'name' (the node type's name in flows)");
        return 0;
    }
    if (!valid_type_name(lt->name)) {
        decl_fail(c, line_of_key(lt, "name", 1),
                  "'name' must be 1 to 64 letters, digits, spaces, '-' or '_', not '%s'", lt->name);
        return 0;
    }
    if (lt->color && !valid_color(lt->color)) {
        decl_fail(c, line_of_key(lt, "color", 1), "'color' must look like \"#a1b2c3\", not '%s'",
                  lt->color);
        return 0;
    }
    long inputs = 1, outputs = 1;
    if (!decl_int(c, d, "inputs", 0, 1, &inputs) || !decl_int(c, d, "outputs", 0, 64, &outputs))
        return 0;
    lt->type.inputs = (int)inputs;
    lt->type.outputs = (int)outputs;
    /* limits = {memory = MiB, instructions = N} */
    int t = lua_getfield(L, d, "limits");
    if (t == LUA_TTABLE) {
        static const char *const lim_keys[] = {"memory", "instructions", NULL};
        if (!decl_known_keys(c, lua_gettop(L), lim_keys, line_of_key(lt, "limits", 1), "limits: "))
            return 0;
        lua_getfield(L, -1, "memory");
        lua_getfield(L, -2, "instructions");
        if ((!lua_isnil(L, -2) &&
             !(lua_tonumber(L, -2) >= 0.0625 && lua_tonumber(L, -2) <= 4096)) ||
            (!lua_isnil(L, -1) && !(lua_isinteger(L, -1) && lua_tointeger(L, -1) >= 1000))) {
            decl_fail(c, line_of_key(lt, "limits", 1),
                      "limits: 'memory' is MiB from 0.0625 to 4096, 'instructions' a whole "
                      "number of at least 1000");
            return 0;
        }
        lt->limits.memory = (size_t)(lua_tonumber(L, -2) * 1048576.0);
        lt->limits.instructions = lua_tointeger(L, -1);
        lua_pop(L, 2);
    } else if (t != LUA_TNIL) {
        decl_fail(c, line_of_key(lt, "limits", 1),
                  "'limits' must be a table ({memory = MiB, instructions = N})");
        return 0;
    }
    lua_pop(L, 1);
    if (!decl_handlers(c, d))
        return 0;
    /* properties: a list, in the order the editor shows them */
    t = lua_getfield(L, d, "properties");
    if (t != LUA_TNIL) {
        int pl = lua_gettop(L);
        lua_Integer n = t == LUA_TTABLE ? (lua_Integer)lua_rawlen(L, pl) : -1;
        lua_Integer keys = 0;
        if (t == LUA_TTABLE) {
            lua_pushnil(L);
            while (lua_next(L, pl)) {
                keys++;
                lua_pop(L, 1);
            }
        }
        if (n < 0 || keys != n) {
            decl_fail(c, line_of_key(lt, "properties", 1),
                      "'properties' must be a list of tables: {{name = ..., type = ...}, ...}");
            return 0;
        }
        if (n > LUA_TYPE_MAX_PROPS) {
            decl_fail(c, line_of_key(lt, "properties", 1), "more than %d properties",
                      LUA_TYPE_MAX_PROPS);
            return 0;
        }
        lt->props = eddy_calloc((size_t)n + 1, sizeof(*lt->props));
        if (!lt->props)
            return luaL_error(L, "not enough memory");
        for (lua_Integer i = 1; i <= n; i++) {
            lua_rawgeti(L, pl, i);
            lt->nprops++;
            bool ok = decl_property(c, lua_gettop(L), (int)i, &lt->props[i - 1]);
            lua_settop(L, pl);
            if (!ok)
                return 0;
            for (lua_Integer k = 1; k < i; k++)
                if (strcmp(lt->props[k - 1].name, lt->props[i - 1].name) == 0) {
                    decl_fail(c, line_of_prop(lt, lt->props[i - 1].name),
                              "property '%s' is declared twice", lt->props[i - 1].name);
                    return 0;
                }
        }
    }
    return 0;
}

/* ---- building and registering ---- */

/* "chunk:LINE: message" (Lua's form) into file, line and message. */
static void err_from_lua(eddy_err *err, const ltype *lt)
{
    if (!err)
        return;
    size_t n = strlen(lt->chunkname);
    char *msg = err->msg;
    if (strncmp(msg, lt->chunkname, n) == 0 && msg[n] == ':') {
        char *end;
        long line = strtol(msg + n + 1, &end, 10);
        if (end != msg + n + 1 && *end == ':') {
            memmove(msg, end + 2, strlen(end + 2) + 1);
            eddy_err_at_file(err, lt->file, (int)line, 0);
            return;
        }
    }
    eddy_err_at_file(err, lt->file, 0, 0);
}

static int lt_build_props(ltype *lt)
{
    lt->eprops = eddy_calloc((size_t)lt->nprops + 1, sizeof(*lt->eprops));
    if (!lt->eprops)
        return EDDY_ENOMEM;
    static const eddy_prop_kind kinds[] = {
        [LT_STRING] = EDDY_PROP_STR, [LT_PROPERTY] = EDDY_PROP_STR, [LT_SELECT] = EDDY_PROP_STR,
        [LT_NUMBER] = EDDY_PROP_NUM, [LT_INTEGER] = EDDY_PROP_INT,  [LT_BOOLEAN] = EDDY_PROP_BOOL,
        [LT_JSON] = EDDY_PROP_JSON};
    for (int i = 0; i < lt->nprops; i++) {
        lt_prop *p = &lt->props[i];
        lt->eprops[i] = (eddy_prop){
            .name = p->name,
            .kind = kinds[p->kind],
            .def = p->def_text,
            .required = p->required,
            .offset = offsetof(lt_node, slots) + (size_t)i * sizeof(lt_slot),
            .help = p->help ? p->help : p->label,
            .choices = p->choices,
        };
    }
    return EDDY_OK;
}

static char *chunk_name(const char *file)
{
    /* "<folder>/node.lua": enough to find it, short enough for Lua's 60-byte names */
    const char *base = strrchr(file, '/');
    const char *folder = base;
    if (base && base > file)
        for (folder = base - 1; folder > file && folder[-1] != '/'; folder--)
            ;
    const char *from = folder ? folder : file;
    size_t n = strlen(from);
    if (n > LUA_IDSIZE - 2)
        from += n - (LUA_IDSIZE - 2);
    return eddy_strdup(from);
}

static char *read_file(const char *path, size_t *len, eddy_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        eddy_err_set(err, EDDY_EIO, "cannot open: %s", strerror(errno));
        eddy_err_at_file(err, path, 0, 0);
        return NULL;
    }
    char *buf = eddy_malloc(LUA_TYPE_MAX_SOURCE + 1);
    size_t n = buf ? fread(buf, 1, LUA_TYPE_MAX_SOURCE + 1, f) : 0;
    bool bad = ferror(f);
    fclose(f);
    if (!buf || bad || n > LUA_TYPE_MAX_SOURCE) {
        eddy_free(buf);
        eddy_err_set(err, !buf ? EDDY_ENOMEM : EDDY_EIO, "%s",
                     !buf  ? "out of memory"
                     : bad ? "cannot read the file"
                           : "the file is larger than 1 MiB");
        eddy_err_at_file(err, path, 0, 0);
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

int eddy_lua_type_load_file(eddy_registry *reg, const char *file, eddy_err *err)
{
    ltype *lt = eddy_calloc(1, sizeof(*lt));
    if (!lt)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory loading %s", file);
    lt->file = eddy_strdup(file);
    lt->chunkname = chunk_name(file);
    if (!lt->file || !lt->chunkname) {
        lt_free(lt);
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory loading %s", file);
    }
    lt->source = read_file(file, &lt->source_len, err);
    if (!lt->source) {
        lt_free(lt);
        return err ? err->code : EDDY_EIO;
    }
    if (strlen(lt->source) != lt->source_len) {
        lt_free(lt);
        eddy_err_set(err, EDDY_EINVAL, "the file contains a NUL byte");
        eddy_err_at_file(err, file, 0, 0);
        return EDDY_EINVAL;
    }
    char subject[200];
    snprintf(subject, sizeof(subject), "lua type %s", lt->chunkname);
    lt->decl = eddy_lua_new(NULL, subject, err);
    if (!lt->decl) {
        lt_free(lt);
        return err ? err->code : EDDY_ENOMEM;
    }
    eddy_err local;
    eddy_err_clear(&local);
    decl_ctx c = {lt, &local, EDDY_OK};
    int rc = eddy_lua_run(lt->decl, decl_fn, &c, &local);
    if (rc != EDDY_OK)
        err_from_lua(&local, lt);
    else
        rc = c.rc;
    if (rc == EDDY_OK && lt_build_props(lt) != EDDY_OK)
        rc = eddy_err_set(&local, EDDY_ENOMEM, "out of memory");
    if (rc == EDDY_OK && lt->help_md && !(lt->summary = help_summary(lt->help_md)))
        rc = eddy_err_set(&local, EDDY_ENOMEM, "out of memory");
    if (rc != EDDY_OK) {
        if (!local.file[0])
            eddy_err_at_file(&local, file, 0, 0);
        if (err)
            *err = local;
        lt_free(lt);
        return rc;
    }
    lt->auto_done = !strstr(lt->source, "node.done");
    lt->type = (eddy_node_type){
        .name = lt->name,
        .inputs = lt->type.inputs,
        .outputs = lt->type.outputs,
        .flags = EDDY_NODE_ASYNC_DONE,
        .props = lt->eprops,
        .state_size = sizeof(lt_node) + (size_t)lt->nprops * sizeof(lt_slot),
        .help = lt->summary,
        .validate = lt_validate,
        .setup = lt_setup,
        .input = lt->type.inputs ? lt_input : NULL,
        .close = lt_close,
    };
    rc = eddy_registry_add_owned(reg, &lt->type, lt_release, &local);
    if (rc != EDDY_OK) {
        eddy_err_at_file(&local, file, 0, 0);
        if (err)
            *err = local;
    }
    return rc;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static void add_problem(eddy_problems *problems, const eddy_err *err)
{
    if (problems)
        eddy_problems_add(problems, err);
}

int eddy_lua_types_load(eddy_registry *reg, const char *dir, eddy_problems *problems)
{
    eddy_err err;
    eddy_err_clear(&err);
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, LUA_TYPE_FILE);
    if (is_file(path)) {
        int rc = eddy_lua_type_load_file(reg, path, &err);
        if (rc != EDDY_OK)
            add_problem(problems, &err);
        return rc == EDDY_OK ? 1 : rc;
    }
    DIR *d = opendir(dir);
    if (!d) {
        eddy_err_set(&err, EDDY_ENOTFOUND, "cannot open the node types folder: %s",
                     strerror(errno));
        eddy_err_at_file(&err, dir, 0, 0);
        add_problem(problems, &err);
        return EDDY_ENOTFOUND;
    }
    char **names = NULL;
    size_t count = 0, cap = 0;
    int rc = EDDY_OK;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s/%s", dir, de->d_name, LUA_TYPE_FILE);
        if (!is_file(path))
            continue;
        if (count == cap) {
            cap = cap ? cap * 2 : 16;
            char **grown = eddy_realloc(names, cap * sizeof(*names));
            if (!grown) {
                rc = EDDY_ENOMEM;
                break;
            }
            names = grown;
        }
        if (!(names[count] = eddy_strdup(de->d_name))) {
            rc = EDDY_ENOMEM;
            break;
        }
        count++;
    }
    closedir(d);
    if (rc != EDDY_OK) {
        eddy_err_set(&err, rc, "out of memory listing %s", dir);
        add_problem(problems, &err);
    }
    if (count > 1)
        qsort(names, count, sizeof(*names), cmp_names);
    int added = 0;
    for (size_t i = 0; i < count; i++) {
        snprintf(path, sizeof(path), "%s/%s/%s", dir, names[i], LUA_TYPE_FILE);
        eddy_err_clear(&err);
        int one = eddy_lua_type_load_file(reg, path, &err);
        if (one == EDDY_OK) {
            added++;
        } else {
            add_problem(problems, &err);
            if (rc == EDDY_OK)
                rc = one;
        }
        eddy_free(names[i]);
    }
    eddy_free(names);
    return rc == EDDY_OK ? added : rc;
}

const char *eddy_lua_types_dir(void)
{
    const char *env = getenv("EDDY_LUA_NODES");
    if (env)
        return env;
#ifdef EDDY_LUA_NODES_DIR
    return EDDY_LUA_NODES_DIR;
#else
    return "nodes/lua";
#endif
}

/* ---- nodes of a Lua type ---- */

/* The properties of a node as a JSON object (node.config, validator arguments). New. */
static json_t *lt_config(const ltype *lt, const lt_node *st)
{
    json_t *cfg = json_object();
    for (int i = 0; cfg && i < lt->nprops; i++) {
        const lt_prop *p = &lt->props[i];
        const lt_slot *v = &st->slots[i];
        json_t *j = NULL;
        switch (p->kind) {
        case LT_STRING:
        case LT_PROPERTY:
        case LT_SELECT:
            j = json_string(v->s ? v->s : "");
            break;
        case LT_NUMBER:
            j = eddy_json_number(v->d);
            break;
        case LT_INTEGER:
            j = json_integer(v->l);
            break;
        case LT_BOOLEAN:
            j = json_boolean(v->b);
            break;
        case LT_JSON:
            /* the editor saves a JSON field as its text */
            if (json_is_string(v->j))
                j = eddy_json_loadb(json_string_value(v->j), json_string_length(v->j), NULL);
            if (!j)
                j = v->j ? json_deep_copy(v->j) : json_null();
            break;
        }
        if (!j || json_object_set_new(cfg, p->name, j) != 0) {
            json_decref(cfg);
            return NULL;
        }
    }
    return cfg;
}

typedef struct validate_call {
    const lt_prop *prop;
    const json_t *value, *config;
    char *problem; /* what the validator said, eddy_malloc'd; NULL when fine */
} validate_call;

static int validate_fn(lua_State *L)
{
    validate_call *c = lua_touserdata(L, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, c->prop->validate_ref);
    eddy_lua_push_json(L, c->value);
    eddy_lua_push_json(L, c->config);
    lua_call(L, 2, 2);
    /* true or nil: fine; false: invalid; a string: invalid, and why */
    if (lua_isnil(L, -2) || (lua_isboolean(L, -2) && lua_toboolean(L, -2)))
        return 0;
    const char *why = lua_type(L, -2) == LUA_TSTRING   ? lua_tostring(L, -2)
                      : lua_type(L, -1) == LUA_TSTRING ? lua_tostring(L, -1)
                                                       : "is not valid";
    c->problem = eddy_strdup(why);
    return 0;
}

static int lt_validate(const eddy_node_type *type, const json_t *config, void *state, eddy_err *err)
{
    ltype *lt = (ltype *)type;
    lt_node *st = state;
    json_t *cfg = lt_config(lt, st);
    if (!cfg)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    int rc = EDDY_OK;
    for (int i = 0; rc == EDDY_OK && i < lt->nprops; i++) {
        const lt_prop *p = &lt->props[i];
        const json_t *v = json_object_get(cfg, p->name);
        char buf[160];
        const char *problem =
            p->kind == LT_SELECT ? NULL : prop_value_problem(p, v, buf, sizeof(buf));
        if (problem) {
            rc = eddy_err_set(err, EDDY_EINVAL, "property '%s' %s", p->name, problem);
            break;
        }
        if (p->validate_ref == LUA_NOREF)
            continue;
        validate_call c = {p, v, cfg, NULL};
        eddy_err e;
        eddy_err_clear(&e);
        if (eddy_lua_run(lt->decl, validate_fn, &c, &e) != EDDY_OK)
            rc = eddy_err_set(err, EDDY_EINVAL, "property '%s': its validate function failed: %s",
                              p->name, e.msg);
        else if (c.problem)
            rc = eddy_err_set(err, EDDY_EINVAL, "property '%s' %s", p->name, c.problem);
        eddy_free(c.problem);
    }
    json_decref(cfg);
    return rc;
}

static int lt_setup(eddy_node *node, void *state, eddy_err *err)
{
    const ltype *lt = (const ltype *)eddy_node_get_type(node);
    lt_node *st = state;
    st->input_ref = st->setup_ref = st->close_ref = LUA_NOREF;
    st->script = eddy_script_new(node, &lt->limits, lt->auto_done, err);
    if (!st->script)
        return err ? err->code : EDDY_ENOMEM;
    int module;
    int rc = eddy_script_load_module(st->script, lt->source, lt->source_len, lt->chunkname, &module,
                                     err);
    if (rc != EDDY_OK)
        return rc;
    st->input_ref = eddy_script_field_ref(st->script, module, "input");
    st->setup_ref = eddy_script_field_ref(st->script, module, "setup");
    st->close_ref = eddy_script_field_ref(st->script, module, "close");
    json_t *cfg = lt_config(lt, st);
    if (!cfg)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    rc = eddy_script_set_node_field(st->script, "config", cfg, err);
    json_decref(cfg);
    if (rc != EDDY_OK)
        return rc;
    eddy_err e;
    eddy_err_clear(&e);
    rc = eddy_script_call(st->script, st->setup_ref, true, &e);
    if (rc != EDDY_OK)
        return eddy_err_set(err, rc, "setup: %s", e.msg);
    st->ready = true;
    return EDDY_OK;
}

static void lt_input(eddy_node *node, void *state, json_t *msg)
{
    lt_node *st = state;
    eddy_script_input(st->script, st->input_ref, true, msg);
}

static int lt_close(eddy_node *node, void *state, bool removed)
{
    lt_node *st = state;
    if (!st->script)
        return EDDY_CLOSE_DONE;
    eddy_script_closing(st->script);
    if (st->ready) {
        eddy_err e;
        eddy_err_clear(&e);
        if (eddy_script_call(st->script, st->close_ref, true, &e) != EDDY_OK)
            eddy_node_error(node, NULL, "close: %s", e.msg);
    }
    eddy_script_free(st->script);
    st->script = NULL;
    return EDDY_CLOSE_DONE;
}

/* ---- the editor definition ---- */

static void hb_fmt(eddy_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void hb_fmt(eddy_buf *b, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n > 0)
        eddy_buf_add(b, tmp, (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A JavaScript literal of 'v' that is safe inside a <script> element ("</" escaped). */
static void hb_js(eddy_buf *b, const json_t *v)
{
    char *text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_ESCAPE_SLASH);
    if (!text) {
        b->failed = true;
        return;
    }
    eddy_buf_str(b, text);
    eddy_free(text); /* jansson allocates through eddy_mem_install's functions */
}

static void hb_js_str(eddy_buf *b, const char *s)
{
    json_t *v = json_string(s ? s : "");
    if (!v) {
        b->failed = true;
        return;
    }
    hb_js(b, v);
    json_decref(v);
}

/* Text for an HTML element or attribute. */
static void hb_html(eddy_buf *b, const char *s)
{
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            eddy_buf_str(b, "&amp;");
            break;
        case '<':
            eddy_buf_str(b, "&lt;");
            break;
        case '>':
            eddy_buf_str(b, "&gt;");
            break;
        case '"':
            eddy_buf_str(b, "&quot;");
            break;
        case '\'':
            eddy_buf_str(b, "&#39;");
            break;
        default:
            eddy_buf_add(b, s, 1);
        }
    }
}

/* Markdown inside <script type="text/markdown">: only "</script" would end it early. */
static void hb_markdown(eddy_buf *b, const char *s)
{
    for (const char *p = s; p && *p; p++) {
        if (p[0] == '<' && p[1] == '/' && strncasecmp(p + 2, "script", 6) == 0) {
            eddy_buf_str(b, "<\\/");
            p++;
            continue;
        }
        eddy_buf_add(b, p, 1);
    }
}

static void hb_validator(eddy_buf *b, const lt_prop *p)
{
    if (p->kind != LT_NUMBER && p->kind != LT_INTEGER)
        return;
    char lo[32], hi[32];
    hb_fmt(b,
           ", validate: function(v) { if (v === \"\" || v === undefined) return %s; "
           "var n = Number(v); return !isNaN(n)",
           p->required ? "false" : "true");
    if (p->kind == LT_INTEGER)
        eddy_buf_str(b, " && Math.floor(n) === n");
    if (p->has_min)
        hb_fmt(b, " && n >= %s", eddy_format_number(p->min, lo));
    if (p->has_max)
        hb_fmt(b, " && n <= %s", eddy_format_number(p->max, hi));
    eddy_buf_str(b, "; }");
}

char *eddy_lua_type_editor_html(const eddy_node_type *type)
{
    if (!eddy_lua_type_is(type))
        return NULL;
    const ltype *lt = (const ltype *)type;
    eddy_buf b = {0};
    eddy_buf_str(&b, "<script type=\"text/javascript\">\n    RED.nodes.registerType(");
    hb_js_str(&b, lt->name);
    eddy_buf_str(&b, ", {\n        category: ");
    hb_js_str(&b, lt->category ? lt->category : "function");
    eddy_buf_str(&b, ",\n        color: ");
    hb_js_str(&b, lt->color ? lt->color : "#C0DEED");
    eddy_buf_str(&b, ",\n        defaults: {\n            name: {value: \"\"}");
    for (int i = 0; i < lt->nprops; i++) {
        const lt_prop *p = &lt->props[i];
        eddy_buf_str(&b, ",\n            ");
        eddy_buf_str(&b, p->name); /* an identifier (valid_prop_name) */
        eddy_buf_str(&b, ": {value: ");
        if (p->def && p->kind == LT_JSON) /* a JSON field holds its text */
            hb_js_str(&b, p->def_text);
        else if (p->def)
            hb_js(&b, p->def);
        else
            eddy_buf_str(&b, p->kind == LT_BOOLEAN ? "false" : "\"\"");
        if (p->required)
            eddy_buf_str(&b, ", required: true");
        hb_validator(&b, p);
        eddy_buf_str(&b, "}");
    }
    hb_fmt(&b, "\n        },\n        inputs: %d,\n        outputs: %d,\n        icon: ",
           lt->type.inputs, lt->type.outputs);
    hb_js_str(&b, lt->icon ? lt->icon : "function.svg");
    if (lt->palette_label) {
        eddy_buf_str(&b, ",\n        paletteLabel: ");
        hb_js_str(&b, lt->palette_label);
    }
    eddy_buf_str(&b, ",\n        label: function() { return this.name || ");
    hb_js_str(&b, lt->label ? lt->label : lt->name);
    eddy_buf_str(&b, "; }");
    bool json_props = false;
    for (int i = 0; i < lt->nprops; i++)
        json_props |= lt->props[i].kind == LT_JSON || lt->props[i].kind == LT_PROPERTY;
    if (json_props) {
        eddy_buf_str(&b, ",\n        oneditprepare: function() {");
        for (int i = 0; i < lt->nprops; i++) {
            const lt_prop *p = &lt->props[i];
            if (p->kind == LT_JSON)
                hb_fmt(&b, "\n            $(\"#node-input-%s\").typedInput({types: [\"json\"]});",
                       p->name);
            else if (p->kind == LT_PROPERTY)
                hb_fmt(&b, "\n            $(\"#node-input-%s\").typedInput({types: [\"msg\"]});",
                       p->name);
        }
        eddy_buf_str(&b, "\n        }");
    }
    eddy_buf_str(&b, "\n    });\n</script>\n\n<script type=\"text/html\" data-template-name=\"");
    hb_html(&b, lt->name);
    eddy_buf_str(&b, "\">\n    <div class=\"form-row\">\n        <label for=\"node-input-name\"><i "
                     "class=\"fa fa-tag\"></i> Name</label>\n        <input type=\"text\" "
                     "id=\"node-input-name\" placeholder=\"Name\">\n    </div>\n");
    for (int i = 0; i < lt->nprops; i++) {
        const lt_prop *p = &lt->props[i];
        hb_fmt(&b, "    <div class=\"form-row\">\n        <label for=\"node-input-%s\">", p->name);
        hb_html(&b, p->label ? p->label : p->name);
        eddy_buf_str(&b, "</label>\n        ");
        if (p->kind == LT_BOOLEAN) {
            hb_fmt(&b,
                   "<input type=\"checkbox\" id=\"node-input-%s\" style=\"display: "
                   "inline-block; width: auto; vertical-align: top;\">",
                   p->name);
        } else if (p->kind == LT_SELECT) {
            hb_fmt(&b, "<select id=\"node-input-%s\">", p->name);
            size_t k;
            json_t *o;
            json_array_foreach(p->options, k, o)
            {
                eddy_buf_str(&b, "\n            <option value=\"");
                hb_html(&b, json_string_value(o));
                eddy_buf_str(&b, "\">");
                hb_html(&b, json_string_value(o));
                eddy_buf_str(&b, "</option>");
            }
            eddy_buf_str(&b, "\n        </select>");
        } else {
            hb_fmt(&b, "<input type=\"text\" id=\"node-input-%s\"", p->name);
            if (p->help) {
                eddy_buf_str(&b, " placeholder=\"");
                hb_html(&b, p->help);
                eddy_buf_str(&b, "\"");
            }
            eddy_buf_str(&b, ">");
        }
        eddy_buf_str(&b, "\n    </div>\n");
    }
    eddy_buf_str(&b, "</script>\n\n<script type=\"text/markdown\" data-help-name=\"");
    hb_html(&b, lt->name);
    eddy_buf_str(&b, "\">\n");
    hb_markdown(&b, lt->help_md ? lt->help_md : lt->name);
    eddy_buf_str(&b, "\n</script>\n");
    if (b.failed) {
        eddy_free(b.data);
        return NULL;
    }
    return b.data;
}
