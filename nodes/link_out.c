/* link_out.c: Node-RED's "link out". Mode "link" sends each message to the chosen
 * "link in" nodes (the first gets it, the others copies); mode "return" sends it back to
 * the "link call" node that called this path (the top of msg._linkSource). */
#include <string.h>

#include "node.h"

struct link_out_state {
    const char *mode;    /* "link" or "return" */
    const json_t *links; /* ids of link in nodes (mode "link") */
};

static const eddy_prop link_out_props[] = {
    {"mode", EDDY_PROP_STR, "\"link\"", false, offsetof(struct link_out_state, mode),
     "link (to chosen link in nodes) or return (to the calling link call node)", "|link|return|"},
    {"links", EDDY_PROP_JSON, "[]", false, offsetof(struct link_out_state, links),
     "ids of the link in nodes to send to", NULL},
    {0}};

static int link_out_validate(const eddy_node_type *type, const json_t *config, void *state,
                             eddy_err *err)
{
    const struct link_out_state *s = state;
    if (!json_is_array(s->links))
        return eddy_err_set(err, EDDY_EINVAL, "links must be an array of link in node ids");
    return EDDY_OK;
}

static int link_out_setup(eddy_node *node, void *state, eddy_err *err)
{
    const struct link_out_state *s = state;
    size_t i;
    json_t *id;
    if (strcmp(s->mode, "link") != 0)
        return EDDY_OK;
    json_array_foreach(s->links, i, id)
    {
        if (!eddy_node_find(node, json_string_value(id)))
            eddy_node_warn(node, "link target '%s' is not running; messages to it are dropped",
                           json_string_value(id) ? json_string_value(id) : "?");
    }
    return EDDY_OK;
}

/* Returns the message to the link call at the top of its _linkSource stack. */
static void link_return(eddy_node *node, json_t *msg)
{
    json_t *stack = json_object_get(msg, "_linkSource");
    json_t *top = json_array_get(stack, json_array_size(stack) - 1);
    eddy_node *caller =
        top ? eddy_node_find(node, json_string_value(json_object_get(top, "id"))) : NULL;
    if (!caller) {
        eddy_node_error(node, msg, "no link call node to return the message to");
        json_decref(msg);
        return;
    }
    json_object_set_new(top, "returning", json_true());
    eddy_node_deliver(node, caller, msg);
}

static void link_out_input(eddy_node *node, void *state, json_t *msg)
{
    const struct link_out_state *s = state;
    if (strcmp(s->mode, "return") == 0) {
        link_return(node, msg);
        return;
    }
    eddy_node *first = NULL;
    size_t i;
    json_t *id;
    json_array_foreach(s->links, i, id)
    {
        eddy_node *target = eddy_node_find(node, json_string_value(id));
        if (!target)
            continue;
        if (first)
            eddy_node_deliver(node, target, eddy_msg_clone(msg));
        else
            first = target;
    }
    if (first)
        eddy_node_deliver(node, first, msg);
    else
        json_decref(msg);
}

const eddy_node_type eddy_node_link_out = {
    .name = "link out",
    .inputs = 1,
    .outputs = 0,
    .props = link_out_props,
    .state_size = sizeof(struct link_out_state),
    .help = "Sends messages to link in nodes, or back to the calling link call node.",
    .validate = link_out_validate,
    .setup = link_out_setup,
    .input = link_out_input,
};
