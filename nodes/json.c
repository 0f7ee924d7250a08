/* json.c: Node-RED's "json" node. Converts a message property between JSON text and the value
 * it encodes: toggling by type, or always to text ("str") or always to a value ("obj").
 * Parsing and printing are msg.h's; JSON Schema validation (msg.schema) is not offered. */
#include <stddef.h>
#include <string.h>

#include "mem.h"
#include "msg.h"
#include "node.h"

struct json_state {
    const char *action;   /* "" toggles by type, "str" always to text, "obj" always to a value */
    const char *property; /* message property to convert; "" means "payload" */
    bool pretty;          /* indent text by 4 spaces, as JSON.stringify(v, null, 4) */
    eddy_path path;       /* 'property' parsed in setup */
};

static const eddy_prop json_props[] = {
    {"action", EDDY_PROP_STR, "\"\"", false, offsetof(struct json_state, action),
     "\"\" converts either way by type; \"str\" always to JSON text; \"obj\" always to a value",
     NULL},
    {"property", EDDY_PROP_STR, "\"payload\"", false, offsetof(struct json_state, property),
     "message property to convert", NULL},
    {"pretty", EDDY_PROP_BOOL, "false", false, offsetof(struct json_state, pretty),
     "format JSON text over several lines, indented by 4 spaces", NULL},
    {0},
};

static const char *json_property(const char *prop)
{
    if (!*prop)
        return "payload";
    return strncmp(prop, "msg.", 4) == 0 ? prop + 4 : prop;
}

static int json_validate(const eddy_node_type *type, const json_t *config, void *state,
                         eddy_err *err)
{
    struct json_state *st = state;
    eddy_path path;
    eddy_err perr;
    if (strcmp(st->action, "") && strcmp(st->action, "str") && strcmp(st->action, "obj"))
        return eddy_err_set(err, EDDY_EINVAL,
                            "action '%s' is not one of \"\" (convert either way), str, obj",
                            st->action);
    if (eddy_path_parse(json_property(st->property), &path, &perr) != EDDY_OK)
        return eddy_err_set(err, EDDY_EINVAL, "property '%s': %s", st->property, perr.msg);
    return EDDY_OK;
}

static int json_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct json_state *st = state;
    if (eddy_path_parse(json_property(st->property), &st->path, err) != EDDY_OK)
        return err ? err->code : EDDY_EINVAL;
    return EDDY_OK;
}

static void json_input(eddy_node *node, void *state, json_t *msg)
{
    struct json_state *st = state;
    eddy_err err;
    eddy_err_clear(&err);

    /* Node-RED validates against msg.schema with ajv; eddy has no JSON Schema validator, and
     * passing the message on unchecked would claim a validation that did not happen. */
    if (eddy_json_truthy(json_object_get(msg, "schema"))) {
        eddy_node_error(node, msg, "JSON Schema validation (msg.schema) is not supported by eddy");
        json_decref(msg);
        return;
    }
    json_t *value = eddy_path_get(msg, &st->path);
    if (!value) { /* nothing to convert: pass the message on */
        eddy_node_send(node, 0, msg);
        return;
    }
    if (json_is_string(value)) {
        if (strcmp(st->action, "str") == 0) {
            eddy_node_send(node, 0, msg);
            return;
        }
        json_t *parsed = eddy_json_loadb(json_string_value(value), json_string_length(value), &err);
        if (!parsed) {
            if (err.line > 0)
                eddy_node_error(node, msg, "%s (line %d, column %d)", err.msg, err.line,
                                err.column);
            else
                eddy_node_error(node, msg, "%s", err.msg);
            json_decref(msg);
            return;
        }
        if (eddy_path_set_take(msg, &st->path, parsed, &err) != EDDY_OK) {
            eddy_node_error(node, msg, "%s", err.msg);
            json_decref(msg);
            return;
        }
        eddy_node_send(node, 0, msg);
        return;
    }
    /* objects, arrays, numbers, booleans and null */
    if (strcmp(st->action, "obj") == 0) {
        eddy_node_send(node, 0, msg);
        return;
    }
    char *text = eddy_json_dumps(value, st->pretty ? EDDY_JSON_PRETTY : 0);
    json_t *str = text ? json_string(text) : NULL;
    eddy_free(text);
    if (!str) {
        eddy_node_error(node, msg, "Failed to convert payload");
        json_decref(msg);
        return;
    }
    if (eddy_path_set_take(msg, &st->path, str, &err) != EDDY_OK) {
        eddy_node_error(node, msg, "%s", err.msg);
        json_decref(msg);
        return;
    }
    eddy_node_send(node, 0, msg);
}

const eddy_node_type eddy_node_json = {
    .name = "json",
    .inputs = 1,
    .outputs = 1,
    .flags = 0,
    .props = json_props,
    .state_size = sizeof(struct json_state),
    .help = "Converts a message property between a JSON string and the value it encodes. "
            "With action \"\" strings are parsed and other values are turned into JSON text; "
            "\"str\" and \"obj\" only convert towards text or towards a value. Invalid JSON "
            "text is an error that catch nodes receive. msg.schema (JSON Schema validation) "
            "is not supported: such messages are refused with an error.",
    .validate = json_validate,
    .setup = json_setup,
    .input = json_input,
    .close = NULL,
};
