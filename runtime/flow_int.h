/* flow_int.h: internal to the flow loader and the engine. */
#ifndef EDDY_FLOW_INT_H
#define EDDY_FLOW_INT_H

#include "node.h"

/* The two node types a subflow instance expands into (runtime/subflow.c): "subflow in"
 * carries the instance's id and outputs and forwards input to the template's first nodes;
 * "subflow out" sends what reaches it through the instance's output 'port'. */
const eddy_node_type *eddy_flow__subflow_in(void);
const eddy_node_type *eddy_flow__subflow_out(void);

#endif
