/* subflow.c: the two internal node types behind an expanded subflow instance (see
 * flow.c's expand_instance). They are structure, not user-visible types, so they live in
 * the runtime and are not in the registry. */
#include "flow_int.h"

#include <string.h>

#include "mem.h"
#include "node_int.h"

typedef struct subflow_in_state {
    const json_t *inwires; /* ids of the template's first nodes (copies) */
    eddy_node **targets;   /* resolved at setup */
    size_t count;
} subflow_in_state;

static const eddy_prop subflow_in_props[] = {
    {"inwires", EDDY_PROP_JSON, NULL, false, offsetof(subflow_in_state, inwires), NULL, NULL}, {0}};

static int subflow_in_setup(eddy_node *node, void *state, eddy_err *err)
{
    subflow_in_state *s = state;
    size_t n = json_array_size(s->inwires);
    if (n == 0)
        return EDDY_OK;
    s->targets = eddy_calloc(n, sizeof(*s->targets));
    if (!s->targets)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        eddy_node *t = eddy_node_find(node, json_string_value(json_array_get(s->inwires, i)));
        if (t)
            s->targets[s->count++] = t;
    }
    return EDDY_OK;
}

static void subflow_in_input(eddy_node *node, void *state, json_t *msg)
{
    subflow_in_state *s = state;
    if (s->count == 0) {
        json_decref(msg);
        return;
    }
    for (size_t i = 1; i < s->count; i++)
        eddy_node_deliver(node, s->targets[i], eddy_msg_clone(msg));
    eddy_node_deliver(node, s->targets[0], msg);
}

static int subflow_in_close(eddy_node *node, void *state, bool removed)
{
    subflow_in_state *s = state;
    eddy_free(s->targets);
    s->targets = NULL;
    return EDDY_CLOSE_DONE;
}

static const eddy_node_type subflow_in_type = {
    .name = "subflow in",
    .inputs = 1,
    .outputs = -1,
    .props = subflow_in_props,
    .state_size = sizeof(subflow_in_state),
    .setup = subflow_in_setup,
    .input = subflow_in_input,
    .close = subflow_in_close,
};

typedef struct subflow_out_state {
    const char *instance; /* id of the instance ("subflow in") node */
    long port;            /* its output to send through */
    eddy_node *target;
} subflow_out_state;

static const eddy_prop subflow_out_props[] = {
    {"instance", EDDY_PROP_STR, NULL, true, offsetof(subflow_out_state, instance), NULL, NULL},
    {"port", EDDY_PROP_INT, "0", false, offsetof(subflow_out_state, port), NULL, NULL},
    {0}};

static int subflow_out_setup(eddy_node *node, void *state, eddy_err *err)
{
    subflow_out_state *s = state;
    s->target = eddy_node_find(node, s->instance);
    return EDDY_OK;
}

static void subflow_out_input(eddy_node *node, void *state, json_t *msg)
{
    subflow_out_state *s = state;
    if (!s->target) {
        json_decref(msg);
        return;
    }
    eddy_node_send(s->target, (int)s->port, msg);
}

static const eddy_node_type subflow_out_type = {
    .name = "subflow out",
    .inputs = 1,
    .outputs = 0,
    .props = subflow_out_props,
    .state_size = sizeof(subflow_out_state),
    .setup = subflow_out_setup,
    .input = subflow_out_input,
};

const eddy_node_type *eddy_flow__subflow_in(void)
{
    return &subflow_in_type;
}

const eddy_node_type *eddy_flow__subflow_out(void)
{
    return &subflow_out_type;
}
