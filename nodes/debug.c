/* debug.c: Node-RED's "debug" node. Shows the whole message or one property: to the
 * editor's debug sidebar (through the engine's debug hook), to the log when "console" is
 * set, and as the node's status when "tostatus" is set. It sends nothing on. */
#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "node.h"

#define STATUS_TEXT_MAX 32 /* Node-RED trims status text to this many characters */

struct debug_state {
    bool active;             /* the editor's toggle; inactive nodes show nothing */
    bool tosidebar;          /* to the debug sidebar */
    bool console;            /* to the log */
    bool tostatus;           /* as the node's status */
    const char *complete;    /* "payload", a property path, or "true" for the whole msg */
    const char *target_type; /* "msg" or "full" */
    const char *status_val;  /* property shown as status ("" = same as 'complete') */
    const char *status_type; /* "auto", "msg" or "counter" */
    eddy_path path;          /* parsed 'complete' when it names a property */
    eddy_path status_path;   /* parsed 'status_val' */
    bool whole;              /* show the whole message */
    long count;              /* messages seen, for statusType "counter" */
};

static const eddy_prop debug_props[] = {
    {"active", EDDY_PROP_BOOL, "true", false, offsetof(struct debug_state, active),
     "show output (the editor's toggle button)", NULL},
    {"tosidebar", EDDY_PROP_BOOL, "true", false, offsetof(struct debug_state, tosidebar),
     "send to the debug sidebar", NULL},
    {"console", EDDY_PROP_BOOL, "false", false, offsetof(struct debug_state, console),
     "also write to the log", NULL},
    {"tostatus", EDDY_PROP_BOOL, "false", false, offsetof(struct debug_state, tostatus),
     "show the value as the node's status", NULL},
    {"complete", EDDY_PROP_STR, "\"payload\"", false, offsetof(struct debug_state, complete),
     "the property to show, or \"true\" for the whole message", NULL},
    {"targetType", EDDY_PROP_STR, "\"msg\"", false, offsetof(struct debug_state, target_type),
     "msg (a property) or full (the whole message)", "|msg|full|"},
    {"statusVal", EDDY_PROP_STR, "\"\"", false, offsetof(struct debug_state, status_val),
     "the property shown as status", NULL},
    {"statusType", EDDY_PROP_STR, "\"auto\"", false, offsetof(struct debug_state, status_type),
     "auto, msg or counter", "|auto|msg|counter|"},
    {0}};

static bool shows_whole(const struct debug_state *s)
{
    return strcmp(s->target_type, "full") == 0 || strcmp(s->complete, "true") == 0 ||
           strcmp(s->complete, "false") == 0;
}

static int debug_validate(const eddy_node_type *type, const json_t *config, void *state,
                          eddy_err *err)
{
    struct debug_state *s = state;
    eddy_path path;
    if (!shows_whole(s) && eddy_path_parse(s->complete, &path, err) != EDDY_OK)
        return EDDY_EINVAL;
    if (strcmp(s->status_type, "msg") == 0 && *s->status_val &&
        eddy_path_parse(s->status_val, &path, err) != EDDY_OK)
        return EDDY_EINVAL;
    return EDDY_OK;
}

static int debug_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct debug_state *s = state;
    s->whole = shows_whole(s);
    if (!s->whole && eddy_path_parse(s->complete, &s->path, err) != EDDY_OK)
        return EDDY_EINVAL;
    const char *sv = *s->status_val ? s->status_val : s->complete;
    if (strcmp(s->status_type, "msg") == 0 && eddy_path_parse(sv, &s->status_path, err) != EDDY_OK)
        return EDDY_EINVAL;
    return EDDY_OK;
}

static void show_status(eddy_node *node, struct debug_state *s, json_t *msg, const json_t *value)
{
    char text[STATUS_TEXT_MAX + 4];
    char *full = NULL;
    if (strcmp(s->status_type, "counter") == 0) {
        full = eddy_malloc(24);
        if (full)
            snprintf(full, 24, "%ld", s->count);
    } else {
        const json_t *v =
            strcmp(s->status_type, "msg") == 0 ? eddy_path_get(msg, &s->status_path) : value;
        full = eddy_json_to_string(v, true);
    }
    if (!full)
        return;
    size_t len = strlen(full);
    if (len > STATUS_TEXT_MAX)
        snprintf(text, sizeof(text), "%.*s...", STATUS_TEXT_MAX, full);
    else
        snprintf(text, sizeof(text), "%s", full);
    eddy_free(full);
    eddy_node_set_status(node, "grey", "dot", text);
}

static void debug_input(eddy_node *node, void *state, json_t *msg)
{
    struct debug_state *s = state;
    s->count++;
    if (s->active) {
        const json_t *value = s->whole ? msg : eddy_path_get(msg, &s->path);
        const char *property = s->whole ? "msg" : s->complete;
        if (s->tosidebar || s->console)
            eddy_node_debug_out(node, value, property, s->console);
        if (s->tostatus)
            show_status(node, s, msg, value);
    }
    json_decref(msg);
}

/* The editor's toggle button: POST debug/<id>/enable|disable. */
static int debug_command(eddy_node *node, void *state, const char *name, const json_t *arg,
                         eddy_err *err)
{
    struct debug_state *s = state;
    if (strcmp(name, "enable") == 0 || strcmp(name, "disable") == 0) {
        s->active = name[0] == 'e';
        return EDDY_OK;
    }
    return eddy_err_set(err, EDDY_EUNSUPPORTED, "debug takes no command '%s'", name);
}

const eddy_node_type eddy_node_debug = {
    .name = "debug",
    .inputs = 1,
    .outputs = 0,
    .props = debug_props,
    .state_size = sizeof(struct debug_state),
    .help = "Shows messages (or one property) in the debug sidebar, the log or its status.",
    .validate = debug_validate,
    .setup = debug_setup,
    .input = debug_input,
    .command = debug_command,
};
