/* node_int.h: shared between the engine's files (flow.c, engine.c, node.c) and no one else. */
#ifndef EDDY_NODE_INT_H
#define EDDY_NODE_INT_H

#include <jansson.h>

#include "node.h"

/* Validates the declared props of 'type' against 'config' and writes them into 'state'
 * (state_size zeroed bytes). CONFIG props are checked for presence only (the pointer is
 * left NULL); 'config_exists' (may be NULL) tells whether an id names a node of a type.
 * Parsed defaults are kept in 'defaults' (a JSON object the caller owns and keeps as long
 * as 'state' is used, since STR props borrow from it).
 * Every problem is reported through 'report' (may be called several times); returns the
 * number of problems. */
typedef void (*node__report_fn)(void *data, int code, const char *msg);
typedef int (*node__config_check_fn)(void *data, const char *id, const char *type);
int node__props_fill(const eddy_node_type *type, const json_t *config, void *state,
                     json_t *defaults, node__config_check_fn config_check, node__report_fn report,
                     void *data);

/* Output count of a node of 'type' configured by 'config'. */
int node__output_count(const eddy_node_type *type, const json_t *config);

/* Node-RED's "${NAME}" property: a string that is one env reference, whole. */
bool node__is_env_ref(const json_t *value);
/* A copy of 'config' with every "${NAME}" property (outside "wires") replaced by what
 * 'resolve' returns for NAME (a new reference; NULL means ""). Ownership: new; NULL on
 * out-of-memory. 'depth' bounds the walk; pass 0. */
typedef json_t *(*node__env_fn)(void *data, const char *name);
json_t *node__substitute_env(const json_t *config, node__env_fn resolve, void *data);
/* true if 'config' holds a "${NAME}" property anywhere (outside "wires"). */
bool node__has_env_ref(const json_t *config);

/* The string at 'key' of 'config', or "" (borrowed). */
const char *node__str(const json_t *config, const char *key);

#endif
