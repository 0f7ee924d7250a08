/* flow.h: loading a Node-RED flow file and validating it before anything runs. A flow that
 * does not validate produces a list of problems (every one, not the first), each naming the
 * file, line, node id, type and tab. Subflow instances are expanded here into plain nodes
 * so the engine sees one flat graph. */
#ifndef EDDY_FLOW_H
#define EDDY_FLOW_H

#include <jansson.h>
#include <stdbool.h>

#include "err.h"
#include "registry.h"

/* A growing list of errors. Zero-initialise; free with eddy_problems_clear. */
typedef struct eddy_problems {
    eddy_err *items;
    int count;
    int cap;
} eddy_problems;

/* Appends a copy of 'err'. Returns EDDY_OK or EDDY_ENOMEM (the list keeps what it had). */
int eddy_problems_add(eddy_problems *list, const eddy_err *err);
void eddy_problems_clear(eddy_problems *list);
/* Prints each problem on its own line to stderr-like 'out'. */
void eddy_problems_print(const eddy_problems *list, void *file /* FILE * */);

/* One runnable node after expansion. */
typedef struct eddy_flow_node {
    const char *id;              /* unique in the flow (subflow copies get "<inst>-<id>") */
    const char *type;            /* Node-RED type name */
    const char *tab;             /* tab id, or subflow instance id for subflow contents */
    json_t *config;              /* the node's JSON (for copies, a rewritten copy); borrowed
                                    from the flow */
    const eddy_node_type *ntype; /* registry entry; NULL for structural entries */
    int line;                    /* line of the node's id in the file; 0 if unknown */
    bool disabled;               /* node "d": true, or its tab disabled */
} eddy_flow_node;

/* A tab or a subflow instance: a scope for context, catch, status and env. */
typedef struct eddy_flow_scope {
    const char *id;
    const char *label;
    const char *parent;  /* enclosing scope id for subflow instances, NULL for tabs */
    json_t *env;         /* merged env entries [{name,type,value}], borrowed; may be NULL */
    const char *subflow; /* subflow template id for instances, NULL for tabs */
    bool disabled;
} eddy_flow_scope;

typedef struct eddy_flow {
    json_t *doc;   /* the parsed file (owned) */
    json_t *extra; /* owned JSON made during expansion (copies) */
    char *file;    /* file name for messages, owned */
    eddy_flow_node *nodes;
    int node_count;
    eddy_flow_scope *scopes;
    int scope_count;
    json_t *index; /* node id -> position in 'nodes', made on first lookup (owned) */
} eddy_flow;

/* Parses and validates 'text' (of 'len' bytes) against 'reg'. 'file' names the source in
 * messages (may be NULL). Returns a flow when there are no problems; otherwise NULL with
 * every problem appended to 'problems'. Ownership: new, free with eddy_flow_free. */
eddy_flow *eddy_flow_load(const char *text, size_t len, const char *file, const eddy_registry *reg,
                          eddy_problems *problems);
/* Reads 'path' and calls eddy_flow_load. */
eddy_flow *eddy_flow_load_file(const char *path, const eddy_registry *reg, eddy_problems *problems);
/* As above but takes a parsed JSON array (e.g. a deploy body). Takes 'doc'. */
eddy_flow *eddy_flow_from_json(json_t *doc, const char *source_text, const char *file,
                               const eddy_registry *reg, eddy_problems *problems);
void eddy_flow_free(eddy_flow *flow);
const eddy_flow_scope *eddy_flow_find_scope(const eddy_flow *flow, const char *id);
/* The node with 'id' (after expansion), or NULL. */
const eddy_flow_node *eddy_flow_node_find(const eddy_flow *flow, const char *id);

#endif
