/* comment.c: Node-RED's "comment" node: notes on the canvas. Declared so flows that use
 * it validate; never instantiated. */
#include "node.h"

const eddy_node_type eddy_node_comment = {
    .name = "comment",
    .inputs = 0,
    .outputs = 0,
    .flags = EDDY_NODE_NO_RUN,
    .help = "A note on the canvas; does nothing at run time.",
};
