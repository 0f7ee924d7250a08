/* range.c: Node-RED's "range" node. Maps a numeric message property from an input range to a
 * target range (scale), optionally limiting (clamp), wrapping (roll) or dropping values
 * outside the input range, and rounding. Reading and writing the property is left to msg.h. */
#include <math.h>
#include <stddef.h>
#include <string.h>

#include "mem.h"
#include "msg.h"
#include "node.h"

struct range_state {
    double minin, maxin;   /* input range; swapped in setup so that minin <= maxin */
    double minout, maxout; /* target range, swapped along with the input range */
    const char *action;    /* "scale", "clamp", "roll" or "drop" */
    bool round;            /* round the result to the nearest integer (JavaScript rules) */
    const char *property;  /* message property to map, "payload" by default */
    eddy_path path;        /* 'property' parsed */
};

static const eddy_prop range_props[] = {
    {"minin", EDDY_PROP_NUM, NULL, true, offsetof(struct range_state, minin), "input range: from",
     NULL},
    {"maxin", EDDY_PROP_NUM, NULL, true, offsetof(struct range_state, maxin), "input range: to",
     NULL},
    {"minout", EDDY_PROP_NUM, NULL, true, offsetof(struct range_state, minout),
     "target range: from", NULL},
    {"maxout", EDDY_PROP_NUM, NULL, true, offsetof(struct range_state, maxout), "target range: to",
     NULL},
    {"action", EDDY_PROP_STR, "\"scale\"", false, offsetof(struct range_state, action),
     "scale; clamp (limit to the target range); roll (wrap within it); drop (drop values "
     "outside the input range)",
     "|scale|clamp|roll|drop|"},
    {"round", EDDY_PROP_BOOL, "false", false, offsetof(struct range_state, round),
     "round the result to the nearest integer", NULL},
    {"property", EDDY_PROP_STR, "\"payload\"", false, offsetof(struct range_state, property),
     "message property to map", NULL},
    {0},
};

/* ---- JavaScript number coercion ---- */

/* Number(text): white space around is ignored and "" is 0, as in JavaScript. */
static double string_to_number(const char *s)
{
    double v;
    const char *p = s;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
        p++;
    if (!*p)
        return 0;
    return eddy_parse_number(s, &v) ? v : NAN;
}

/* Number(value) for a JSON value; objects are NaN, arrays go through their string form. */
static double value_to_number(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_INTEGER:
    case JSON_REAL:
        return json_number_value(v);
    case JSON_STRING:
        return string_to_number(json_string_value(v));
    case JSON_TRUE:
        return 1;
    case JSON_FALSE:
    case JSON_NULL:
        return 0;
    case JSON_ARRAY: {
        char *s = eddy_json_to_string(v, false);
        double n = s ? string_to_number(s) : NAN;
        eddy_free(s);
        return n;
    }
    case JSON_OBJECT:
        break;
    }
    return NAN;
}

/* Math.round: halves go up (towards +Infinity), unlike C's round(). */
static double js_round(double x)
{
    double r = floor(x);
    if (x - r >= 0.5)
        r += 1.0;
    return r;
}

/* ---- callbacks ---- */

static const char *range_property(const char *prop)
{
    if (!*prop)
        return "payload";
    return strncmp(prop, "msg.", 4) == 0 ? prop + 4 : prop;
}

/* The engine checks the numbers and 'action' (a choice); the path is left to check here. */
static int range_validate(const eddy_node_type *type, const json_t *config, void *state,
                          eddy_err *err)
{
    struct range_state *st = state;
    eddy_path path;
    eddy_err perr;
    if (eddy_path_parse(range_property(st->property), &path, &perr) != EDDY_OK)
        return eddy_err_set(err, EDDY_EINVAL, "property '%s': %s", st->property, perr.msg);
    return EDDY_OK;
}

static int range_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct range_state *st = state;
    if (eddy_path_parse(range_property(st->property), &st->path, err) != EDDY_OK)
        return err ? err->code : EDDY_EINVAL;
    if (st->minin > st->maxin) {
        double t = st->minin;
        st->minin = st->maxin;
        st->maxin = t;
        t = st->minout;
        st->minout = st->maxout;
        st->maxout = t;
    }
    if (st->round) {
        st->maxout = floor(st->maxout);
        st->minout = ceil(st->minout);
    }
    return EDDY_OK;
}

static void range_input(eddy_node *node, void *state, json_t *msg)
{
    struct range_state *st = state;
    json_t *value = eddy_path_get(msg, &st->path);
    if (!value) { /* nothing to map: pass the message on */
        eddy_node_send(node, 0, msg);
        return;
    }
    double n = value_to_number(value);
    if (isnan(n)) {
        /* Node-RED only logs this (no error, so nothing reaches a catch node) */
        char *text = eddy_json_to_string(value, false);
        eddy_node_log(node, "Not a number: %s", text ? text : "");
        eddy_free(text);
        json_decref(msg);
        return;
    }
    const char *action = st->action;
    if (strcmp(action, "drop") == 0 && (n < st->minin || n > st->maxin)) {
        json_decref(msg);
        return;
    }
    if (strcmp(action, "clamp") == 0) {
        if (n < st->minin)
            n = st->minin;
        if (n > st->maxin)
            n = st->maxin;
    } else if (strcmp(action, "roll") == 0) {
        double divisor = st->maxin - st->minin;
        n = fmod(fmod(n - st->minin, divisor) + divisor, divisor) + st->minin;
    }
    double out =
        ((n - st->minin) / (st->maxin - st->minin) * (st->maxout - st->minout)) + st->minout;
    if (st->round)
        out = js_round(out);
    /* JSON has no NaN or Infinity (an empty input range gives them); JSON.stringify of the
     * message would show null as well */
    json_t *result = isfinite(out) ? eddy_json_number(out) : json_null();
    eddy_err err;
    if (eddy_path_set_take(msg, &st->path, result, &err) != EDDY_OK) {
        eddy_node_error(node, msg, "%s", err.msg);
        json_decref(msg);
        return;
    }
    eddy_node_send(node, 0, msg);
}

const eddy_node_type eddy_node_range = {
    .name = "range",
    .inputs = 1,
    .outputs = 1,
    .flags = 0,
    .props = range_props,
    .state_size = sizeof(struct range_state),
    .help = "Maps a numeric message property (msg.payload by default) linearly from an input "
            "range to a target range. 'clamp' limits the input to its range first, 'roll' "
            "wraps it around, 'drop' discards messages whose value lies outside the input "
            "range. Non-numeric values are logged and dropped; messages without the property "
            "pass unchanged.",
    .validate = range_validate,
    .setup = range_setup,
    .input = range_input,
    .close = NULL,
};
