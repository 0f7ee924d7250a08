/* status.c: Node-RED's "status" node. The engine sends it a message with msg.status
 * ({fill, shape, text, source}) whenever a node in its scope changes its status. */
#include <string.h>

#include "node.h"

struct status_state {
    const json_t *scope; /* null = all nodes of the tab; an array of ids; or "group" */
};

static const eddy_prop status_props[] = {
    {"scope", EDDY_PROP_JSON, NULL, false, offsetof(struct status_state, scope),
     "null (all nodes), an array of node ids, or \"group\"", NULL},
    {0}};

static int status_validate(const eddy_node_type *type, const json_t *config, void *state,
                           eddy_err *err)
{
    const struct status_state *s = state;
    if (s->scope && !json_is_null(s->scope) && !json_is_array(s->scope) &&
        !(json_is_string(s->scope) && strcmp(json_string_value(s->scope), "group") == 0))
        return eddy_err_set(err, EDDY_EINVAL,
                            "scope must be null, an array of node ids or \"group\"");
    return EDDY_OK;
}

static void status_input(eddy_node *node, void *state, json_t *msg)
{
    eddy_node_send(node, 0, msg);
}

const eddy_node_type eddy_node_status = {
    .name = "status",
    .inputs = 0,
    .outputs = 1,
    .flags = EDDY_NODE_STATUS,
    .props = status_props,
    .state_size = sizeof(struct status_state),
    .help = "Receives status changes of nodes in its scope, as msg.status.",
    .validate = status_validate,
    .input = status_input,
};
