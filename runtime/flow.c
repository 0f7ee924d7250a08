/* flow.c: turns a Node-RED flow file into a validated, flat list of nodes and scopes.
 * It checks everything it can before a node runs (JSON syntax, ids, types, wires, config
 * references, declared properties, each type's own validate) and reports every problem
 * with file, line, node id, type and tab. Subflow instances are expanded into copies of
 * their template's nodes with ids "<instance>-<template node id>". */
#include "flow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "flow_int.h"
#include "log.h"
#include "mem.h"
#include "node_int.h"

#define SUBFLOW_MAX_DEPTH 16

/* ---- problems ---- */

int eddy_problems_add(eddy_problems *list, const eddy_err *err)
{
    if (list->count == list->cap) {
        int cap = list->cap ? list->cap * 2 : 8;
        eddy_err *items = eddy_realloc(list->items, (size_t)cap * sizeof(*items));
        if (!items)
            return EDDY_ENOMEM;
        list->items = items;
        list->cap = cap;
    }
    list->items[list->count++] = *err;
    return EDDY_OK;
}

void eddy_problems_clear(eddy_problems *list)
{
    eddy_free(list->items);
    memset(list, 0, sizeof(*list));
}

void eddy_problems_print(const eddy_problems *list, void *file)
{
    char line[1024];
    for (int i = 0; i < list->count; i++) {
        eddy_err_format(&list->items[i], line, sizeof(line));
        fprintf(file, "%s\n", line);
    }
}

/* ---- loader state ---- */

typedef struct loader {
    const char *file;
    const char *text;
    const eddy_registry *reg;
    eddy_problems *problems;
    json_t *doc;      /* the array of flow objects (borrowed from the flow) */
    json_t *by_id;    /* id -> index in doc (integer) */
    json_t *lines;    /* id -> line in text */
    json_t *tabs;     /* id -> tab object */
    json_t *subflows; /* id -> subflow template object */
    json_t *extra;    /* owned copies made while expanding (the flow keeps it) */
    eddy_flow *flow;
    int cap_nodes, cap_scopes;
} loader;

static int line_of(loader *ld, const char *id)
{
    return id ? (int)json_integer_value(json_object_get(ld->lines, id)) : 0;
}

static void problem(loader *ld, const char *id, const char *type, const char *tab, int code,
                    const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void problem(loader *ld, const char *id, const char *type, const char *tab, int code,
                    const char *fmt, ...)
{
    eddy_err err;
    eddy_err_clear(&err);
    err.code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err.msg, sizeof(err.msg), fmt, ap);
    va_end(ap);
    eddy_err_at_file(&err, ld->file, line_of(ld, id), 0);
    eddy_err_at_node(&err, id, type, tab);
    eddy_problems_add(ld->problems, &err);
}

/* Records the line of every `"id": "<value>"` in the source, so problems can name it. */
static void index_lines(loader *ld)
{
    int line = 1;
    const char *t = ld->text;
    if (!t)
        return;
    for (const char *p = t; *p; p++) {
        if (*p == '\n') {
            line++;
            continue;
        }
        if (strncmp(p, "\"id\"", 4) != 0)
            continue;
        const char *q = p + 4;
        while (*q == ' ' || *q == '\t' || *q == '\n' || *q == '\r')
            q++;
        if (*q != ':')
            continue;
        q++;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q != '"')
            continue;
        const char *end = strchr(q + 1, '"');
        if (!end || end - q > 200)
            continue;
        char id[256];
        snprintf(id, sizeof(id), "%.*s", (int)(end - q - 1), q + 1);
        if (!json_object_get(ld->lines, id))
            json_object_set_new(ld->lines, id, json_integer(line));
    }
}

/* ---- growing the output ---- */

static eddy_flow_node *add_node(loader *ld)
{
    eddy_flow *f = ld->flow;
    if (f->node_count == ld->cap_nodes) {
        int cap = ld->cap_nodes ? ld->cap_nodes * 2 : 32;
        eddy_flow_node *n = eddy_realloc(f->nodes, (size_t)cap * sizeof(*n));
        if (!n)
            return NULL;
        f->nodes = n;
        ld->cap_nodes = cap;
    }
    eddy_flow_node *n = &f->nodes[f->node_count++];
    memset(n, 0, sizeof(*n));
    return n;
}

static eddy_flow_scope *add_scope(loader *ld)
{
    eddy_flow *f = ld->flow;
    if (f->scope_count == ld->cap_scopes) {
        int cap = ld->cap_scopes ? ld->cap_scopes * 2 : 8;
        eddy_flow_scope *s = eddy_realloc(f->scopes, (size_t)cap * sizeof(*s));
        if (!s)
            return NULL;
        f->scopes = s;
        ld->cap_scopes = cap;
    }
    eddy_flow_scope *s = &f->scopes[f->scope_count++];
    memset(s, 0, sizeof(*s));
    return s;
}

/* ---- first pass: ids, tabs, subflow templates ---- */

static bool is_structural(const char *type)
{
    return strcmp(type, "tab") == 0 || strcmp(type, "subflow") == 0 || strcmp(type, "group") == 0 ||
           strcmp(type, "unknown") == 0;
}

static void index_objects(loader *ld)
{
    size_t i;
    json_t *obj;
    json_array_foreach(ld->doc, i, obj)
    {
        const char *id = json_string_value(json_object_get(obj, "id"));
        const char *type = json_string_value(json_object_get(obj, "type"));
        if (!json_is_object(obj) || !id || !*id || !type) {
            eddy_err err;
            eddy_err_clear(&err);
            eddy_err_set(&err, EDDY_EINVAL,
                         "entry %zu is not a node: it needs a string \"id\" and \"type\"", i);
            eddy_err_at_file(&err, ld->file, id ? line_of(ld, id) : 0, 0);
            eddy_problems_add(ld->problems, &err);
            continue;
        }
        if (json_object_get(ld->by_id, id)) {
            problem(ld, id, type, node__str(obj, "z"), EDDY_EDUPLICATE,
                    "id '%s' is used by more than one node", id);
            continue;
        }
        json_object_set_new(ld->by_id, id, json_integer((json_int_t)i));
        if (strcmp(type, "tab") == 0)
            json_object_set(ld->tabs, id, obj);
        else if (strcmp(type, "subflow") == 0)
            json_object_set(ld->subflows, id, obj);
    }
}

static json_t *find_obj(loader *ld, const char *id)
{
    json_t *idx = json_object_get(ld->by_id, id);
    return idx ? json_array_get(ld->doc, (size_t)json_integer_value(idx)) : NULL;
}

/* ---- validating one node ---- */

typedef struct check_ctx {
    loader *ld;
    const char *id, *type, *tab;
    json_t *scope_ids; /* ids visible for config references (NULL: whole flow) */
    json_t *id_map;    /* template id -> copy id, inside a subflow copy */
} check_ctx;

static void report_prop(void *data, int code, const char *msg)
{
    check_ctx *c = data;
    problem(c->ld, c->id, c->type, c->tab, code, "%s", msg);
}

static int config_exists(void *data, const char *id, const char *type)
{
    check_ctx *c = data;
    json_t *obj = find_obj(c->ld, id);
    if (!obj && c->id_map) {
        const char *mapped = json_string_value(json_object_get(c->id_map, id));
        obj = mapped ? find_obj(c->ld, mapped) : NULL;
    }
    if (!obj) { /* copies made by subflow expansion */
        char key[600];
        snprintf(key, sizeof(key), "node:%s", id);
        obj = json_object_get(c->ld->extra, key);
    }
    return obj && (!type || strcmp(node__str(obj, "type"), type) == 0);
}

static void check_typed_jsonata(loader *ld, const json_t *config, const char *id, const char *type,
                                const char *tab)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)config, key, v)
    {
        size_t len = strlen(key);
        /* Node-RED names typed-input types "<prop>Type" or "<prop>t" */
        bool is_type_key = (len > 4 && strcmp(key + len - 4, "Type") == 0);
        if (is_type_key && json_is_string(v) && strcmp(json_string_value(v), "jsonata") == 0)
            problem(ld, id, type, tab, EDDY_EUNSUPPORTED,
                    "property '%s' uses a JSONata expression, which eddy does not support; "
                    "use a lua node for computed values",
                    key);
    }
}

/* Resolves from the process environment, counting what it cannot resolve in *data. */
static json_t *process_env(void *data, const char *name)
{
    const char *value = getenv(name);
    if (!value)
        (*(int *)data)++;
    return value ? json_string(value) : NULL;
}

/* Checks type, props and the type's own validate. Returns the type or NULL. */
static const eddy_node_type *check_node(loader *ld, json_t *obj, const char *id, const char *tab,
                                        json_t *id_map)
{
    const char *type = node__str(obj, "type");
    const eddy_node_type *nt = eddy_registry_find(ld->reg, type);
    if (!nt) {
        if (strcmp(type, "function") == 0)
            problem(ld, id, type, tab, EDDY_EUNSUPPORTED,
                    "JavaScript function nodes cannot run in eddy; use the lua node, which "
                    "takes the same properties (func, outputs, initialize, finalize) with a "
                    "Lua script");
        else
            problem(ld, id, type, tab, EDDY_ENOTFOUND, "unknown node type '%s'", type);
        return NULL;
    }
    check_typed_jsonata(ld, obj, id, type, tab);
    void *state = eddy_calloc(1, nt->state_size ? nt->state_size : 1);
    json_t *defaults = json_object();
    if (!state || !defaults) {
        eddy_free(state);
        json_decref(defaults);
        problem(ld, id, type, tab, EDDY_ENOMEM, "out of memory validating");
        return nt;
    }
    check_ctx c = {ld, id, type, tab, NULL, id_map};
    /* "${NAME}" values are known only when the node starts (they may come from the tab's
     * or a subflow's env, which the engine checks then); here the process environment
     * stands in, and a node with a reference it cannot resolve is left to the start. */
    int unresolved = 0;
    json_t *checked =
        node__has_env_ref(obj) ? node__substitute_env(obj, process_env, &unresolved) : NULL;
    const json_t *config = checked ? checked : obj;
    if (unresolved) {
        eddy_free(state);
        json_decref(defaults);
        json_decref(checked);
        return nt;
    }
    int bad = node__props_fill(nt, config, state, defaults, config_exists, report_prop, &c);
    if (!bad && nt->validate) {
        eddy_err err;
        eddy_err_clear(&err);
        if (nt->validate(nt, config, state, &err) != EDDY_OK)
            problem(ld, id, type, tab, err.code ? err.code : EDDY_EINVAL, "%s",
                    err.msg[0] ? err.msg : "invalid configuration");
    }
    eddy_free(state);
    json_decref(defaults);
    json_decref(checked);
    return nt;
}

/* Wires: an array (per output) of arrays of existing target ids with an input. */
static void check_wires(loader *ld, json_t *obj, const char *id, const char *type, const char *tab,
                        const eddy_node_type *nt, json_t *local_ids)
{
    json_t *wires = json_object_get(obj, "wires");
    if (!wires)
        return;
    if (!json_is_array(wires)) {
        problem(ld, id, type, tab, EDDY_EINVAL, "\"wires\" must be an array of arrays");
        return;
    }
    if (nt && nt->outputs >= 0 && json_array_size(wires) > (size_t)nt->outputs) {
        /* Node-RED tolerates extra empty ports; only wired extra ports are an error. */
        for (size_t p = (size_t)nt->outputs; p < json_array_size(wires); p++)
            if (json_array_size(json_array_get(wires, p)) > 0)
                problem(ld, id, type, tab, EDDY_EINVAL,
                        "output %zu is wired but a %s node has %d output(s)", p + 1, type,
                        nt->outputs);
    }
    size_t p;
    json_t *port;
    json_array_foreach(wires, p, port)
    {
        size_t k;
        json_t *target;
        if (!json_is_array(port)) {
            problem(ld, id, type, tab, EDDY_EINVAL, "output %zu: wires must be an array", p + 1);
            continue;
        }
        json_array_foreach(port, k, target)
        {
            const char *tid = json_string_value(target);
            json_t *tobj =
                tid ? (local_ids ? json_object_get(local_ids, tid) : find_obj(ld, tid)) : NULL;
            if (!tobj) {
                problem(ld, id, type, tab, EDDY_ENOTFOUND,
                        "output %zu is wired to missing node '%s'", p + 1,
                        tid ? tid : "(not a string)");
                continue;
            }
            const eddy_node_type *tt = eddy_registry_find(ld->reg, node__str(tobj, "type"));
            if (tt && tt->inputs == 0)
                problem(ld, id, type, tab, EDDY_EINVAL,
                        "output %zu is wired to node '%s' (%s), which has no input", p + 1, tid,
                        tt->name);
        }
    }
}

/* ---- scopes and env ---- */

/* Merges env arrays: entries of 'over' replace those of 'base' with the same name. New. */
static json_t *merge_env(const json_t *base, const json_t *over)
{
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(base, i, e)
    {
        const char *name = node__str(e, "name");
        bool replaced = false;
        size_t j;
        json_t *o;
        json_array_foreach(over, j, o) replaced |= strcmp(node__str(o, "name"), name) == 0;
        if (!replaced)
            json_array_append(out, e);
    }
    json_array_foreach(over, i, e) json_array_append(out, e);
    return out;
}

/* ---- subflow expansion ---- */

/* Rewrites template ids inside a copy: wires, and string / string-array properties that
 * name a node of the template (config references, catch/status/complete scopes, links). */
static void remap_copy(json_t *copy, json_t *id_map)
{
    const char *key;
    json_t *v;
    json_object_foreach(copy, key, v)
    {
        if (strcmp(key, "id") == 0 || strcmp(key, "z") == 0 || strcmp(key, "type") == 0 ||
            strcmp(key, "name") == 0)
            continue;
        if (json_is_string(v)) {
            json_t *m = json_object_get(id_map, json_string_value(v));
            if (m)
                json_object_set(copy, key, m);
        } else if (json_is_array(v)) {
            size_t i;
            json_t *item;
            json_array_foreach(v, i, item)
            {
                if (json_is_string(item)) {
                    json_t *m = json_object_get(id_map, json_string_value(item));
                    if (m)
                        json_array_set(v, i, m);
                } else if (json_is_array(item)) { /* wires: array of arrays */
                    size_t k;
                    json_t *t;
                    json_array_foreach(item, k, t)
                    {
                        json_t *m = json_object_get(id_map, json_string_value(t));
                        if (m)
                            json_array_set(item, k, m);
                    }
                }
            }
        }
    }
}

static json_t *wire_list(json_t *wires, size_t port)
{
    while (json_array_size(wires) <= port)
        json_array_append_new(wires, json_array());
    return json_array_get(wires, port);
}

static void add_flat_node(loader *ld, json_t *obj, const char *tab, bool disabled,
                          const eddy_node_type *nt)
{
    eddy_flow_node *n = add_node(ld);
    if (!n)
        return;
    n->id = node__str(obj, "id");
    n->type = node__str(obj, "type");
    n->tab = tab;
    n->config = obj;
    n->ntype = nt;
    n->line = line_of(ld, n->id);
    n->disabled = disabled || json_is_true(json_object_get(obj, "d"));
}

/* Keys of ld->extra, which owns every JSON value made during expansion. */
static void keep(loader *ld, const char *prefix, const char *id, json_t *value)
{
    char key[600];
    snprintf(key, sizeof(key), "%s:%s", prefix, id);
    json_object_set_new(ld->extra, key, value);
}

/* Copies of the template's nodes, ids rewritten, in an array. New. */
static json_t *copy_template(loader *ld, const char *sid, const char *inst_id, json_t *id_map)
{
    json_t *copies = json_array();
    size_t i;
    json_t *obj;
    json_array_foreach(ld->doc, i, obj)
    {
        if (strcmp(node__str(obj, "z"), sid) != 0)
            continue;
        char cid[512];
        snprintf(cid, sizeof(cid), "%s-%s", inst_id, node__str(obj, "id"));
        json_object_set_new(id_map, node__str(obj, "id"), json_string(cid));
    }
    json_array_foreach(ld->doc, i, obj)
    {
        if (strcmp(node__str(obj, "z"), sid) != 0)
            continue;
        json_t *copy = json_deep_copy(obj);
        json_object_set(copy, "id", json_object_get(id_map, node__str(obj, "id")));
        json_object_set_new(copy, "z", json_string(inst_id));
        remap_copy(copy, id_map);
        json_array_append_new(copies, copy);
    }
    return copies;
}

/* Wires the template's output port 'p' ('port' object) to the "subflow out" node 'oid':
 * each source copy gets 'oid' on its port; a wire straight from the input port goes into
 * 'in_wires'. */
static void wire_out_port(json_t *port, const char *sid, const char *oid, json_t *id_map,
                          json_t *local, json_t *in_wires)
{
    size_t i;
    json_t *w;
    json_array_foreach(json_object_get(port, "wires"), i, w)
    {
        const char *src = node__str(w, "id");
        size_t sport = (size_t)json_integer_value(json_object_get(w, "port"));
        if (strcmp(src, sid) == 0) {
            json_array_append_new(in_wires, json_string(oid));
            continue;
        }
        json_t *copy = json_object_get(local, json_string_value(json_object_get(id_map, src)));
        if (!copy)
            continue;
        json_t *cw = json_object_get(copy, "wires");
        if (!json_is_array(cw)) {
            cw = json_array();
            json_object_set_new(copy, "wires", cw);
        }
        json_array_append_new(wire_list(cw, sport), json_string(oid));
    }
}

/* The instance becomes: a "subflow in" node with the instance's id and wires (its outputs
 * are the subflow's outputs) that forwards its input to the template's first nodes
 * ("inwires"); one "subflow out" node per output port that sends through the instance's
 * output; and copies of the template's nodes in scope 'inst_id'. */
static void expand_instance(loader *ld, json_t *inst, const char *inst_id, const char *parent,
                            bool disabled, int depth)
{
    const char *type = node__str(inst, "type");
    const char *sid = type + strlen("subflow:");
    json_t *tmpl = json_object_get(ld->subflows, sid);
    if (!tmpl) {
        problem(ld, inst_id, type, parent, EDDY_ENOTFOUND, "subflow '%s' is not in the flow", sid);
        return;
    }
    if (depth > SUBFLOW_MAX_DEPTH) {
        problem(ld, inst_id, type, parent, EDDY_EINVAL,
                "subflows nested deeper than %d (does a subflow contain itself?)",
                SUBFLOW_MAX_DEPTH);
        return;
    }
    eddy_flow_scope *scope = add_scope(ld);
    if (!scope)
        return;
    json_t *env = merge_env(json_object_get(tmpl, "env"), json_object_get(inst, "env"));
    keep(ld, "env", inst_id, env);
    scope->id = inst_id;
    scope->label = *node__str(inst, "name") ? node__str(inst, "name") : node__str(tmpl, "name");
    scope->parent = parent;
    scope->env = env;
    scope->subflow = sid;
    scope->disabled = disabled;

    json_t *id_map = json_object();
    json_t *copies = copy_template(ld, sid, inst_id, id_map);
    keep(ld, "copies", inst_id, copies);
    json_t *local = json_object(); /* id -> node, for wire checks inside the copy */
    size_t i;
    json_t *obj;
    json_array_foreach(copies, i, obj) json_object_set(local, node__str(obj, "id"), obj);

    json_t *in_node = json_deep_copy(inst);
    json_object_set_new(in_node, "type", json_string("subflow in"));
    json_object_set_new(in_node, "z", json_string(parent));
    json_t *in_wires = json_array();
    json_object_set_new(in_node, "inwires", in_wires);
    json_t *w;
    json_array_foreach(json_object_get(json_array_get(json_object_get(tmpl, "in"), 0), "wires"), i,
                       w)
    {
        json_t *m = json_object_get(id_map, node__str(w, "id"));
        if (m)
            json_array_append(in_wires, m);
    }
    json_t *port;
    json_array_foreach(json_object_get(tmpl, "out"), i, port)
    {
        char oid[600];
        snprintf(oid, sizeof(oid), "%s/out/%zu", inst_id, i);
        json_t *out_node =
            json_pack("{s:s,s:s,s:s,s:s,s:I,s:[]}", "id", oid, "type", "subflow out", "z", inst_id,
                      "instance", inst_id, "port", (json_int_t)i, "wires");
        wire_out_port(port, sid, oid, id_map, local, in_wires);
        json_array_append_new(copies, out_node);
        json_object_set(local, oid, out_node);
    }
    json_array_append_new(copies, in_node);

    json_array_foreach(copies, i, obj)
    {
        const char *cid = node__str(obj, "id");
        const char *ctype = node__str(obj, "type");
        keep(ld, "node", cid, json_incref(obj));
        if (obj == in_node) {
            add_flat_node(ld, obj, parent, disabled, eddy_flow__subflow_in());
            continue;
        }
        if (strcmp(ctype, "subflow out") == 0) {
            add_flat_node(ld, obj, inst_id, disabled, eddy_flow__subflow_out());
            continue;
        }
        if (strncmp(ctype, "subflow:", 8) == 0) {
            check_wires(ld, obj, cid, ctype, inst_id, NULL, local);
            expand_instance(ld, obj, cid, inst_id, disabled, depth + 1);
            continue;
        }
        const eddy_node_type *nt = check_node(ld, obj, cid, inst_id, id_map);
        check_wires(ld, obj, cid, ctype, inst_id, nt, local);
        if (nt && !(nt->flags & EDDY_NODE_NO_RUN))
            add_flat_node(ld, obj, inst_id, disabled, nt);
    }
    json_decref(id_map);
    json_decref(local);
}

/* ---- top level ---- */

static void load_top_level(loader *ld)
{
    const char *id;
    json_t *tab;
    json_object_foreach(ld->tabs, id, tab)
    {
        eddy_flow_scope *s = add_scope(ld);
        if (!s)
            return;
        s->id = node__str(tab, "id"); /* 'id' is the key of ld->tabs, freed after loading */
        s->label = node__str(tab, "label");
        s->env = json_object_get(tab, "env");
        s->disabled = json_is_true(json_object_get(tab, "disabled"));
    }
    size_t i;
    json_t *obj;
    json_array_foreach(ld->doc, i, obj)
    {
        const char *nid = json_string_value(json_object_get(obj, "id"));
        const char *type = json_string_value(json_object_get(obj, "type"));
        if (!nid || !type || is_structural(type))
            continue;
        const char *z = node__str(obj, "z");
        if (json_object_get(ld->subflows, z))
            continue; /* template contents: expanded per instance */
        bool disabled = false;
        if (*z) {
            json_t *tabobj = json_object_get(ld->tabs, z);
            if (!tabobj) {
                problem(ld, nid, type, z, EDDY_ENOTFOUND,
                        "is on tab '%s', which is not in the flow", z);
                continue;
            }
            disabled = json_is_true(json_object_get(tabobj, "disabled"));
        }
        if (strncmp(type, "subflow:", 8) == 0) {
            check_wires(ld, obj, nid, type, z, NULL, NULL);
            expand_instance(ld, obj, nid, z, disabled, 0);
            continue;
        }
        const eddy_node_type *nt = check_node(ld, obj, nid, z, NULL);
        check_wires(ld, obj, nid, type, z, nt, NULL);
        if (nt && !(nt->flags & EDDY_NODE_NO_RUN))
            add_flat_node(ld, obj, z, disabled, nt);
    }
}

void eddy_flow_free(eddy_flow *flow)
{
    if (!flow)
        return;
    json_decref(flow->doc);
    json_decref(flow->extra);
    eddy_free(flow->file);
    eddy_free(flow->nodes);
    eddy_free(flow->scopes);
    json_decref(flow->index);
    eddy_free(flow);
}

eddy_flow *eddy_flow_from_json(json_t *doc, const char *source_text, const char *file,
                               const eddy_registry *reg, eddy_problems *problems)
{
    int before = problems->count;
    eddy_flow *flow = eddy_calloc(1, sizeof(*flow));
    if (!flow) {
        json_decref(doc);
        return NULL;
    }
    flow->file = eddy_strdup(file ? file : "(flow)");
    /* Node-RED's v2 shape {flows:[...], rev} is accepted as well as the bare array. */
    if (json_is_object(doc) && json_is_array(json_object_get(doc, "flows"))) {
        json_t *arr = json_incref(json_object_get(doc, "flows"));
        json_decref(doc);
        doc = arr;
    }
    flow->doc = doc;
    flow->extra = json_object();
    loader ld = {.file = flow->file,
                 .text = source_text,
                 .reg = reg,
                 .problems = problems,
                 .doc = doc,
                 .by_id = json_object(),
                 .lines = json_object(),
                 .tabs = json_object(),
                 .subflows = json_object(),
                 .extra = flow->extra,
                 .flow = flow};
    if (!json_is_array(doc)) {
        eddy_err err;
        eddy_err_clear(&err);
        eddy_err_set(&err, EDDY_EINVAL, "a flow file must hold a JSON array of nodes, not %s",
                     eddy_json_type_name(doc));
        eddy_err_at_file(&err, flow->file, 1, 1);
        eddy_problems_add(problems, &err);
    } else {
        index_lines(&ld);
        index_objects(&ld);
        load_top_level(&ld);
    }
    json_decref(ld.by_id);
    json_decref(ld.lines);
    json_decref(ld.tabs);
    json_decref(ld.subflows);
    if (problems->count > before) {
        eddy_flow_free(flow);
        return NULL;
    }
    return flow;
}

eddy_flow *eddy_flow_load(const char *text, size_t len, const char *file, const eddy_registry *reg,
                          eddy_problems *problems)
{
    eddy_err err;
    eddy_err_clear(&err);
    json_t *doc = eddy_json_loadb(text, len, &err);
    if (!doc) {
        eddy_err_at_file(&err, file ? file : "(flow)", err.line, err.column);
        char msg[EDDY_ERR_MSG_MAX];
        snprintf(msg, sizeof(msg), "malformed JSON: %.480s", err.msg);
        snprintf(err.msg, sizeof(err.msg), "%s", msg);
        eddy_problems_add(problems, &err);
        return NULL;
    }
    /* The line index needs NUL-terminated text. */
    char *copy = eddy_strndup(text, len);
    eddy_flow *flow = eddy_flow_from_json(doc, copy, file, reg, problems);
    eddy_free(copy);
    return flow;
}

eddy_flow *eddy_flow_load_file(const char *path, const eddy_registry *reg, eddy_problems *problems)
{
    eddy_err err;
    eddy_err_clear(&err);
    FILE *f = fopen(path, "rb");
    if (!f) {
        eddy_err_set(&err, EDDY_EIO, "cannot open the flow file: %s", strerror(errno));
        eddy_err_at_file(&err, path, 0, 0);
        eddy_problems_add(problems, &err);
        return NULL;
    }
    size_t cap = 65536, len = 0;
    char *buf = eddy_malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + len, 1, cap - len, f)) > 0) {
        len += got;
        if (len == cap) {
            char *grown = eddy_realloc(buf, cap * 2);
            if (!grown) {
                eddy_free(buf);
                buf = NULL;
                break;
            }
            buf = grown;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf) {
        eddy_err_set(&err, EDDY_ENOMEM, "out of memory reading the flow file");
        eddy_err_at_file(&err, path, 0, 0);
        eddy_problems_add(problems, &err);
        return NULL;
    }
    eddy_flow *flow = eddy_flow_load(buf, len, path, reg, problems);
    eddy_free(buf);
    return flow;
}

const eddy_flow_scope *eddy_flow_find_scope(const eddy_flow *flow, const char *id)
{
    for (int i = 0; i < flow->scope_count; i++)
        if (strcmp(flow->scopes[i].id, id) == 0)
            return &flow->scopes[i];
    return NULL;
}

const eddy_flow_node *eddy_flow_node_find(const eddy_flow *flow, const char *id)
{
    eddy_flow *f = (eddy_flow *)flow; /* the index is a cache */
    if (!f->index) {
        f->index = json_object();
        if (!f->index)
            return NULL;
        for (int i = 0; i < f->node_count; i++)
            json_object_set_new(f->index, f->nodes[i].id, json_integer(i));
    }
    json_t *pos = json_object_get(f->index, id);
    return pos ? &f->nodes[json_integer_value(pos)] : NULL;
}
