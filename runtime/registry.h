/* registry.h: the node types eddy knows, looked up by Node-RED type name. Native types come
 * from one table (nodes/nodes.def, expanded in nodes/registry.c); later types (Lua ones,
 * test helpers) are added at run time. The engine knows no type by name: it asks here. */
#ifndef EDDY_REGISTRY_H
#define EDDY_REGISTRY_H

#include "err.h"
#include "node.h"

typedef struct eddy_registry eddy_registry;

/* Ownership: new, free with eddy_registry_free. Holds borrowed type pointers (types must
 * outlive the registry; native ones are static), except those added with
 * eddy_registry_add_owned, which it frees. */
eddy_registry *eddy_registry_new(eddy_err *err);
void eddy_registry_free(eddy_registry *reg);
/* Adds every native type of nodes/nodes.def. */
int eddy_registry_add_builtin(eddy_registry *reg, eddy_err *err);
/* Adds one type. EDDY_EDUPLICATE if the name is taken, EDDY_EINVAL if a callback that
 * its shape needs is missing (input for a type with inputs). */
int eddy_registry_add(eddy_registry *reg, const eddy_node_type *type, eddy_err *err);
/* Adds a type made at run time (a Lua type) and takes it: 'release' (not NULL) is called
 * with it when the registry is freed, or at once if adding fails. Errors as
 * eddy_registry_add. */
int eddy_registry_add_owned(eddy_registry *reg, const eddy_node_type *type,
                            void (*release)(const eddy_node_type *type), eddy_err *err);
/* The type called 'name', or NULL. Borrowed. */
const eddy_node_type *eddy_registry_find(const eddy_registry *reg, const char *name);
int eddy_registry_count(const eddy_registry *reg);
const eddy_node_type *eddy_registry_at(const eddy_registry *reg, int index);

/* The native table: NULL-terminated, in nodes.def order. */
extern const eddy_node_type *const eddy_native_node_types[];
/* The stems of those types (their files nodes/<stem>.c), in the same order. */
extern const char *const eddy_native_node_stems[];

#endif
