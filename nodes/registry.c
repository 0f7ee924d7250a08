/* registry.c: expands nodes.def into the table of native node types, and keeps the
 * run-time registry (native types plus those added later, e.g. Lua types). */
#include "registry.h"

#include <string.h>

#include "mem.h"

#define EDDY_NODE(stem)          extern const eddy_node_type eddy_node_##stem;
#define EDDY_NODE_SYM(stem, sym) extern const eddy_node_type eddy_node_##sym;
#include "nodes.def"
#undef EDDY_NODE
#undef EDDY_NODE_SYM

const eddy_node_type *const eddy_native_node_types[] = {
#define EDDY_NODE(stem)          &eddy_node_##stem,
#define EDDY_NODE_SYM(stem, sym) &eddy_node_##sym,
#include "nodes.def"
#undef EDDY_NODE
#undef EDDY_NODE_SYM
    NULL};

const char *const eddy_native_node_stems[] = {
#define EDDY_NODE(stem)          #stem,
#define EDDY_NODE_SYM(stem, sym) #stem,
#include "nodes.def"
#undef EDDY_NODE
#undef EDDY_NODE_SYM
    NULL};

struct eddy_registry {
    const eddy_node_type **types;
    int count, cap;
    struct registry_owned {
        const eddy_node_type *type;
        void (*release)(const eddy_node_type *type);
    } * owned; /* types the registry frees */
    int owned_count;
};

eddy_registry *eddy_registry_new(eddy_err *err)
{
    eddy_registry *reg = eddy_calloc(1, sizeof(*reg));
    if (!reg)
        eddy_err_set(err, EDDY_ENOMEM, "out of memory creating the node registry");
    return reg;
}

void eddy_registry_free(eddy_registry *reg)
{
    if (!reg)
        return;
    for (int i = 0; i < reg->owned_count; i++)
        reg->owned[i].release(reg->owned[i].type);
    eddy_free(reg->owned);
    eddy_free(reg->types);
    eddy_free(reg);
}

int eddy_registry_add(eddy_registry *reg, const eddy_node_type *type, eddy_err *err)
{
    if (!type->name || !*type->name)
        return eddy_err_set(err, EDDY_EINVAL, "a node type has no name");
    if (eddy_registry_find(reg, type->name))
        return eddy_err_set(err, EDDY_EDUPLICATE, "node type '%s' is registered twice", type->name);
    if (type->inputs > 0 && !type->input && !(type->flags & EDDY_NODE_NO_RUN))
        return eddy_err_set(err, EDDY_EINVAL, "node type '%s' has an input but no input handler",
                            type->name);
    if (reg->count == reg->cap) {
        int cap = reg->cap ? reg->cap * 2 : 64;
        const eddy_node_type **t = eddy_realloc(reg->types, (size_t)cap * sizeof(*t));
        if (!t)
            return eddy_err_set(err, EDDY_ENOMEM, "out of memory registering '%s'", type->name);
        reg->types = t;
        reg->cap = cap;
    }
    reg->types[reg->count++] = type;
    return EDDY_OK;
}

int eddy_registry_add_owned(eddy_registry *reg, const eddy_node_type *type,
                            void (*release)(const eddy_node_type *type), eddy_err *err)
{
    struct registry_owned *owned =
        eddy_realloc(reg->owned, (size_t)(reg->owned_count + 1) * sizeof(*owned));
    if (!owned) {
        release(type);
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory registering a node type");
    }
    reg->owned = owned;
    int rc = eddy_registry_add(reg, type, err);
    if (rc != EDDY_OK) {
        release(type);
        return rc;
    }
    reg->owned[reg->owned_count++] = (struct registry_owned){type, release};
    return EDDY_OK;
}

int eddy_registry_add_builtin(eddy_registry *reg, eddy_err *err)
{
    for (int i = 0; eddy_native_node_types[i]; i++) {
        int rc = eddy_registry_add(reg, eddy_native_node_types[i], err);
        if (rc != EDDY_OK)
            return rc;
    }
    return EDDY_OK;
}

const eddy_node_type *eddy_registry_find(const eddy_registry *reg, const char *name)
{
    for (int i = 0; i < reg->count; i++)
        if (strcmp(reg->types[i]->name, name) == 0)
            return reg->types[i];
    return NULL;
}

int eddy_registry_count(const eddy_registry *reg)
{
    return reg->count;
}

const eddy_node_type *eddy_registry_at(const eddy_registry *reg, int index)
{
    return index >= 0 && index < reg->count ? reg->types[index] : NULL;
}
