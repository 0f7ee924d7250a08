/* catch.c: Node-RED's "catch" node. The engine routes errors of nodes in its scope to it
 * (all nodes of its tab, chosen nodes, its group, or only what nobody else caught); it
 * sends each such message, carrying msg.error, on its output. */
#include <string.h>

#include "node.h"

struct catch_state {
    const json_t *scope; /* null = all nodes of the tab; an array of ids; or "group" */
    bool uncaught;       /* only errors no other catch node handled */
};

static const eddy_prop catch_props[] = {
    {"scope", EDDY_PROP_JSON, NULL, false, offsetof(struct catch_state, scope),
     "null (all nodes), an array of node ids, or \"group\"", NULL},
    {"uncaught", EDDY_PROP_BOOL, "false", false, offsetof(struct catch_state, uncaught),
     "only errors not handled by another catch node", NULL},
    {0}};

static int catch_validate(const eddy_node_type *type, const json_t *config, void *state,
                          eddy_err *err)
{
    const struct catch_state *s = state;
    if (s->scope && !json_is_null(s->scope) && !json_is_array(s->scope) &&
        !(json_is_string(s->scope) && strcmp(json_string_value(s->scope), "group") == 0))
        return eddy_err_set(err, EDDY_EINVAL,
                            "scope must be null, an array of node ids or \"group\"");
    return EDDY_OK;
}

static void catch_input(eddy_node *node, void *state, json_t *msg)
{
    eddy_node_send(node, 0, msg);
}

const eddy_node_type eddy_node_catch = {
    .name = "catch",
    .inputs = 0,
    .outputs = 1,
    .flags = EDDY_NODE_CATCH,
    .props = catch_props,
    .state_size = sizeof(struct catch_state),
    .help = "Receives errors thrown by nodes in its scope, with msg.error.",
    .validate = catch_validate,
    .input = catch_input,
};
