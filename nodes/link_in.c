/* link_in.c: Node-RED's "link in": a named entry point that "link out" and "link call"
 * nodes anywhere in the flows send to (they find it by id through the engine). */
#include "node.h"

static void link_in_input(eddy_node *node, void *state, json_t *msg)
{
    eddy_node_send(node, 0, msg);
}

const eddy_node_type eddy_node_link_in = {
    .name = "link in",
    .inputs = 0,
    .outputs = 1,
    .flags = EDDY_NODE_LINK_IN,
    .help = "Receives messages from link out and link call nodes, on any tab.",
    .input = link_in_input,
};
