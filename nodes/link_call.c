/* link_call.c: Node-RED's "link call". Sends a message to a "link in" node, as a call:
 * an entry {id, link, event} is pushed on msg._linkSource, and when a "link out" in return
 * mode sends it back the entry is popped and the message leaves on this node's output.
 * A call that does not return within 'timeout' seconds is reported as an error. */
#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "node.h"

struct link_call_state {
    const json_t *links;   /* [id of the link in node] for linkType "static" */
    const char *link_type; /* "static" or "dynamic" (msg.target: the link in's id) */
    double timeout;        /* seconds; 0 = no timeout */
    json_t *pending;       /* event id -> the call's message copy (for the timeout error) */
    long next_event;
};

static const eddy_prop link_call_props[] = {
    {"links", EDDY_PROP_JSON, "[]", false, offsetof(struct link_call_state, links),
     "the link in node to call (static)", NULL},
    {"linkType", EDDY_PROP_STR, "\"static\"", false, offsetof(struct link_call_state, link_type),
     "static, or dynamic (msg.target is the id of the link in node)", "|static|dynamic|"},
    {"timeout", EDDY_PROP_NUM, "30", false, offsetof(struct link_call_state, timeout),
     "seconds to wait for the return", NULL},
    {0}};

typedef struct pending_call {
    eddy_node *node;
    char event[32];
} pending_call;

static int link_call_validate(const eddy_node_type *type, const json_t *config, void *state,
                              eddy_err *err)
{
    const struct link_call_state *s = state;
    if (!json_is_array(s->links))
        return eddy_err_set(err, EDDY_EINVAL, "links must be an array of link in node ids");
    if (strcmp(s->link_type, "static") == 0 && json_array_size(s->links) == 0)
        return eddy_err_set(err, EDDY_EINVAL, "no link in node chosen to call");
    if (s->timeout < 0)
        return eddy_err_set(err, EDDY_EINVAL, "timeout must not be negative");
    return EDDY_OK;
}

static int link_call_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct link_call_state *s = state;
    s->pending = json_object();
    return s->pending ? EDDY_OK : eddy_err_set(err, EDDY_ENOMEM, "out of memory");
}

static int64_t call_timed_out(eddy_node *node, void *state, void *data)
{
    struct link_call_state *s = state;
    pending_call *pc = data;
    json_t *msg = json_object_get(s->pending, pc->event);
    if (msg) {
        eddy_node_error(node, msg, "timeout");
        json_object_del(s->pending, pc->event);
    }
    return EDDY_TIMER_STOP;
}

/* The link in to call: static by id, dynamic by the id in msg.target. */
static eddy_node *call_target(eddy_node *node, struct link_call_state *s, json_t *msg)
{
    if (strcmp(s->link_type, "static") == 0)
        return eddy_node_find(node, json_string_value(json_array_get(s->links, 0)));
    const char *target = json_string_value(json_object_get(msg, "target"));
    return target ? eddy_node_find(node, target) : NULL;
}

static void returned(eddy_node *node, struct link_call_state *s, json_t *msg, json_t *stack)
{
    json_t *top = json_array_get(stack, json_array_size(stack) - 1);
    const char *event = json_string_value(json_object_get(top, "event"));
    bool waiting = event && json_object_get(s->pending, event);
    if (waiting)
        json_object_del(s->pending, event); /* its timer finds nothing and stops */
    json_array_remove(stack, json_array_size(stack) - 1);
    if (json_array_size(stack) == 0)
        json_object_del(msg, "_linkSource");
    if (waiting)
        eddy_node_send(node, 0, msg);
    else
        json_decref(msg); /* it came back after its timeout was reported */
}

static void link_call_input(eddy_node *node, void *state, json_t *msg)
{
    struct link_call_state *s = state;
    json_t *stack = json_object_get(msg, "_linkSource");
    json_t *top = json_array_get(stack, json_array_size(stack) - 1);
    if (top && json_is_true(json_object_get(top, "returning")) &&
        strcmp(json_string_value(json_object_get(top, "id")) ?: "", eddy_node_id(node)) == 0) {
        returned(node, s, msg, stack);
        return;
    }
    eddy_node *target = call_target(node, s, msg);
    if (!target) {
        eddy_node_error(node, msg, "target link-in node not found");
        json_decref(msg);
        return;
    }
    if (!json_is_array(stack)) {
        stack = json_array();
        json_object_set_new(msg, "_linkSource", stack);
    }
    pending_call *pc = eddy_calloc(1, sizeof(*pc));
    if (!pc) {
        eddy_node_error(node, msg, "out of memory");
        json_decref(msg);
        return;
    }
    pc->node = node;
    snprintf(pc->event, sizeof(pc->event), "%s:%ld", eddy_node_id(node), ++s->next_event);
    json_array_append_new(stack, json_pack("{s:s,s:s,s:s}", "id", eddy_node_id(node), "link",
                                           eddy_node_id(target), "event", pc->event));
    json_object_set_new(s->pending, pc->event, eddy_msg_clone(msg));
    if (s->timeout > 0)
        eddy_node_timer_start(node, (int64_t)(s->timeout * 1000), call_timed_out, pc, eddy_free);
    else
        eddy_free(pc);
    eddy_node_deliver(node, target, msg);
}

static int link_call_close(eddy_node *node, void *state, bool removed)
{
    struct link_call_state *s = state;
    json_decref(s->pending);
    s->pending = NULL;
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_link_call = {
    .name = "link call",
    .inputs = 1,
    .outputs = 1,
    .props = link_call_props,
    .state_size = sizeof(struct link_call_state),
    .help = "Calls a flow that starts at a link in node and ends at a link out in return "
            "mode; the returned message leaves on the output.",
    .validate = link_call_validate,
    .setup = link_call_setup,
    .input = link_call_input,
    .close = link_call_close,
};
