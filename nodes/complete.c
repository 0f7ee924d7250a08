/* complete.c: Node-RED's "complete" node. The engine sends it a copy of each message that
 * a node in its scope (a list of node ids) has finished with. */
#include "node.h"

struct complete_state {
    const json_t *scope; /* array of the node ids watched */
};

static const eddy_prop complete_props[] = {
    {"scope", EDDY_PROP_JSON, NULL, false, offsetof(struct complete_state, scope),
     "array of node ids whose completed messages are reported", NULL},
    {0}};

static int complete_validate(const eddy_node_type *type, const json_t *config, void *state,
                             eddy_err *err)
{
    const struct complete_state *s = state;
    if (s->scope && !json_is_null(s->scope) && !json_is_array(s->scope))
        return eddy_err_set(err, EDDY_EINVAL, "scope must be an array of node ids");
    return EDDY_OK;
}

static void complete_input(eddy_node *node, void *state, json_t *msg)
{
    eddy_node_send(node, 0, msg);
}

const eddy_node_type eddy_node_complete = {
    .name = "complete",
    .inputs = 0,
    .outputs = 1,
    .flags = EDDY_NODE_COMPLETE,
    .props = complete_props,
    .state_size = sizeof(struct complete_state),
    .help = "Receives each message that the chosen nodes finished handling.",
    .validate = complete_validate,
    .input = complete_input,
};
