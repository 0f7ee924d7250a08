/* junction.c: Node-RED's "junction": a wiring point that passes every message on. */
#include "node.h"

static void junction_input(eddy_node *node, void *state, json_t *msg)
{
    eddy_node_send(node, 0, msg);
}

const eddy_node_type eddy_node_junction = {
    .name = "junction",
    .inputs = 1,
    .outputs = 1,
    .help = "A wiring point: passes each message to everything wired to it.",
    .input = junction_input,
};
