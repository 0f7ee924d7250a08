/* rbe.c: Node-RED's "rbe" node (shown as "filter" in the palette): report by exception. It
 * passes a message only when a property changed (rbe, rbei), changed by more than a gap
 * (deadband) or by less than one (narrowband), keeping the last value per topic. The
 * message itself is passed on untouched; paths and JSON helpers come from msg.h. */
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "msg.h"
#include "node.h"

enum rbe_func {
    RBE_RBE,           /* block unless the value changes */
    RBE_RBEI,          /* the same, but the first value of a topic is not sent */
    RBE_DEADBAND,      /* block unless |change| > gap */
    RBE_DEADBAND_EQ,   /* block unless |change| >= gap */
    RBE_NARROWBAND,    /* block if |change| > gap */
    RBE_NARROWBAND_EQ, /* block if |change| >= gap */
};

static const char *const rbe_func_names[] = {"rbe",        "rbei",       "deadband",
                                             "deadbandEq", "narrowband", "narrowbandEq"};

#define RBE_NO_TOPIC "_no_topic" /* the state key of messages without a topic */

struct rbe_state {
    /* properties */
    const char *func;     /* one of rbe_func_names; "" = "rbe" */
    const json_t *gap;    /* "10", "10%", a number, or absent/"" for 0 */
    const json_t *start;  /* narrowband start value; absent or "" = the first input */
    const char *inout;    /* "out": compare with the last value sent; "in": the last input */
    bool septopics;       /* keep one state per topic */
    const char *property; /* the property watched, "payload" by default */
    const char *topi;     /* the property holding the topic, "topic" by default */
    /* parsed in setup */
    enum rbe_func mode;
    bool percent;       /* 'gap' is a percentage of the previous value */
    double gap_value;   /* the gap, or the percentage when 'percent' */
    bool has_start;     /* 'start_value' is set */
    double start_value; /* narrowband: the previous value assumed for a new topic */
    bool compare_in;    /* inout is "in" */
    eddy_path prop_path, topic_path;
    json_t *previous; /* topic key -> last value (rbe, rbei) or number (the band modes) */
};

static const eddy_prop rbe_props[] = {
    {"func", EDDY_PROP_STR, "\"rbe\"", false, offsetof(struct rbe_state, func),
     "mode: rbe (block unless the value changes), rbei (same, ignoring the first value), "
     "deadband, deadbandEq, narrowband, narrowbandEq",
     NULL},
    {"gap", EDDY_PROP_JSON, NULL, false, offsetof(struct rbe_state, gap),
     "band modes: the change that counts, a number or a percentage of the last value (\"5%\")",
     NULL},
    {"start", EDDY_PROP_JSON, NULL, false, offsetof(struct rbe_state, start),
     "narrowband modes: the value a new topic is compared with; empty = its first value", NULL},
    {"inout", EDDY_PROP_STR, "\"out\"", false, offsetof(struct rbe_state, inout),
     "compare with the last valid output (out) or the last input (in)", NULL},
    {"septopics", EDDY_PROP_BOOL, "true", false, offsetof(struct rbe_state, septopics),
     "keep a separate state for each topic", NULL},
    {"property", EDDY_PROP_STR, "\"payload\"", false, offsetof(struct rbe_state, property),
     "message property to watch", NULL},
    {"topi", EDDY_PROP_STR, "\"topic\"", false, offsetof(struct rbe_state, topi),
     "message property holding the topic", NULL},
    {0},
};

/* ---- JavaScript number parsing ---- */

static const char *skip_space(const char *p)
{
    while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
        p++;
    return p;
}

/* Number(text): NaN unless the whole text (white space aside) is a number; "" is 0. */
static double js_string_to_number(const char *text)
{
    double v;
    if (!*skip_space(text))
        return 0;
    return eddy_parse_number(text, &v) ? v : NAN;
}

/* ---- configuration ---- */

static const char *rbe_path_text(const char *prop, const char *def)
{
    if (!*prop)
        return def;
    return strncmp(prop, "msg.", 4) == 0 ? prop + 4 : prop;
}

/* Adds one problem to 'text' (EDDY_ERR_MSG_MAX bytes), "; "-separated. */
static void rbe_problem(char *text, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void rbe_problem(char *text, const char *fmt, ...)
{
    size_t len = strlen(text);
    if (len && len + 2 < EDDY_ERR_MSG_MAX) {
        memcpy(text + len, "; ", 3);
        len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text + len, EDDY_ERR_MSG_MAX - len, fmt, ap);
    va_end(ap);
}

/* Parses everything into 'st' (validate and setup share it; it allocates nothing) and
 * reports every bad value at once. */
static int rbe_parse(struct rbe_state *st, eddy_err *err)
{
    char text[EDDY_ERR_MSG_MAX] = "";
    eddy_err perr;
    const char *func = *st->func ? st->func : "rbe";
    size_t nfuncs = sizeof(rbe_func_names) / sizeof(rbe_func_names[0]);
    size_t i;
    for (i = 0; i < nfuncs; i++)
        if (strcmp(func, rbe_func_names[i]) == 0)
            break;
    if (i == nfuncs)
        rbe_problem(text,
                    "func '%s' is not one of rbe, rbei, deadband, deadbandEq, narrowband, "
                    "narrowbandEq",
                    func);
    st->mode = i == nfuncs ? RBE_RBE : (enum rbe_func)i;
    bool narrow = st->mode == RBE_NARROWBAND || st->mode == RBE_NARROWBAND_EQ;

    const char *inout = *st->inout ? st->inout : "out";
    if (strcmp(inout, "in") && strcmp(inout, "out"))
        rbe_problem(text, "inout '%s' is neither 'in' nor 'out'", inout);
    st->compare_in = strcmp(inout, "in") == 0;

    /* gap: Node-RED takes a falsy gap as "0" and one ending in '%' as a percentage */
    st->percent = false;
    st->gap_value = 0;
    const json_t *gap = st->gap;
    if (json_is_string(gap) && json_string_length(gap) > 0) {
        const char *g = json_string_value(gap);
        size_t len = strlen(g);
        if (g[len - 1] == '%') {
            st->percent = true;
            st->gap_value = eddy_js_parse_float(g);
        } else {
            st->gap_value = js_string_to_number(g);
        }
        if (isnan(st->gap_value))
            rbe_problem(text, "gap '%s' is neither a number nor a percentage (\"10%%\")", g);
    } else if (json_is_number(gap)) {
        st->gap_value = json_number_value(gap);
    } else if (gap && !json_is_string(gap) && !json_is_null(gap) && !json_is_false(gap)) {
        rbe_problem(text, "gap must be a number or a percentage (\"10%%\")");
    }

    /* start: falsy (absent, "", 0) means "use the first value" */
    st->has_start = false;
    const json_t *start = st->start;
    if (json_is_string(start) && json_string_length(start) > 0) {
        st->start_value = js_string_to_number(json_string_value(start));
        st->has_start = true;
        if (isnan(st->start_value) && narrow)
            rbe_problem(text, "start '%s' is not a number", json_string_value(start));
    } else if (json_is_number(start) && json_number_value(start) != 0) {
        st->start_value = json_number_value(start);
        st->has_start = true;
    } else if (start && !json_is_string(start) && !json_is_number(start) && !json_is_null(start) &&
               !json_is_false(start)) {
        rbe_problem(text, "start must be a number");
    }

    if (eddy_path_parse(rbe_path_text(st->property, "payload"), &st->prop_path, &perr))
        rbe_problem(text, "property '%s': %s", st->property, perr.msg);
    if (eddy_path_parse(rbe_path_text(st->topi, "topic"), &st->topic_path, &perr))
        rbe_problem(text, "topi '%s': %s", st->topi, perr.msg);
    if (*text)
        return eddy_err_set(err, EDDY_EINVAL, "%s", text);
    return EDDY_OK;
}

static int rbe_validate(const eddy_node_type *type, const json_t *config, void *state,
                        eddy_err *err)
{
    return rbe_parse(state, err);
}

static int rbe_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct rbe_state *st = state;
    int rc = rbe_parse(st, err);
    if (rc != EDDY_OK)
        return rc;
    st->previous = json_object();
    if (!st->previous)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    return EDDY_OK;
}

static int rbe_close(eddy_node *node, void *state, bool removed)
{
    struct rbe_state *st = state;
    json_decref(st->previous);
    st->previous = NULL;
    return EDDY_CLOSE_DONE;
}

/* ---- the band modes keep numbers, which may be +-Infinity: JSON cannot hold those ---- */

static bool band_get(struct rbe_state *st, const char *key, double *out)
{
    json_t *v = json_object_get(st->previous, key);
    if (!v)
        return false;
    if (json_is_number(v))
        *out = json_number_value(v);
    else /* "Infinity", "-Infinity" or "NaN" */
        *out = strcmp(json_string_value(v), "NaN") == 0 ? NAN
               : json_string_value(v)[0] == '-'         ? -INFINITY
                                                        : INFINITY;
    return true;
}

static void band_set(struct rbe_state *st, const char *key, double v)
{
    json_t *j = isfinite(v) ? json_real(v)
                            : json_string(isnan(v) ? "NaN"
                                          : v < 0  ? "-Infinity"
                                                   : "Infinity");
    json_object_set_new(st->previous, key, j);
}

/* ---- input ---- */

static bool is_objectish(const json_t *v) /* typeof v === "object" */
{
    return json_is_object(v) || json_is_array(v) || json_is_null(v);
}

/* value !== previous for values that are not objects */
static bool strictly_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    if (json_typeof(a) != json_typeof(b))
        return false;
    return eddy_json_equal(a, b);
}

/* rbe and rbei: true if 'value' differs from what topic 'key' had (then it is kept). */
static bool rbe_changed(struct rbe_state *st, const char *key, const json_t *value, bool *send)
{
    json_t *prev = json_object_get(st->previous, key);
    *send = st->mode != RBE_RBEI || prev != NULL;
    if (is_objectish(value)) {
        /* Node-RED compares objects with an empty object when nothing object-like was
         * seen before, so a first {} is not a change */
        if (!prev || !is_objectish(prev)) {
            prev = json_object();
            json_object_set_new(st->previous, key, prev);
        }
        if (eddy_json_equal(value, prev))
            return false;
    } else if (prev && strictly_equal(value, prev)) {
        return false;
    }
    json_object_set_new(st->previous, key, json_deep_copy(value));
    return true;
}

/* The band modes: true if the message passes. */
static bool band_passes(eddy_node *node, struct rbe_state *st, const char *key, double n)
{
    enum rbe_func m = st->mode;
    bool narrow = m == RBE_NARROWBAND || m == RBE_NARROWBAND_EQ;
    double prev;
    bool has = band_get(st, key, &prev);
    if (!has && narrow) {
        prev = st->has_start ? st->start_value : n;
        has = true;
        band_set(st, key, prev);
    }
    double gap = st->gap_value;
    if (st->percent) {
        gap = has ? fabs(prev * st->gap_value / 100) : NAN;
        if (isnan(gap))
            gap = 0;
    }
    if (!has) { /* the first value always passes a deadband */
        prev = n - gap - 1;
        band_set(st, key, prev);
    }
    double change = fabs(n - prev);
    bool pass = false;
    if (change == gap)
        pass = m == RBE_DEADBAND_EQ || m == RBE_NARROWBAND;
    else if (change > gap)
        pass = m == RBE_DEADBAND || m == RBE_DEADBAND_EQ;
    else if (change < gap)
        pass = narrow;
    if (pass || st->compare_in)
        band_set(st, key, n);
    return pass;
}

static void rbe_input(eddy_node *node, void *state, json_t *msg)
{
    struct rbe_state *st = state;
    json_t *topic = eddy_path_get(msg, &st->topic_path);

    if (json_object_get(msg, "reset")) {
        if (st->septopics && json_is_string(topic) && json_string_length(topic) > 0)
            json_object_del(st->previous, json_string_value(topic));
        else
            json_object_clear(st->previous);
    }

    json_t *value = eddy_path_get(msg, &st->prop_path);
    if (!value) { /* nothing to compare: the message goes no further */
        json_decref(msg);
        return;
    }

    char *key = NULL;
    if (st->septopics && eddy_json_truthy(topic)) {
        key = eddy_json_to_string(topic, false);
        if (!key) {
            eddy_node_error(node, msg, "out of memory");
            json_decref(msg);
            return;
        }
    }
    const char *k = key ? key : RBE_NO_TOPIC;

    bool pass;
    if (st->mode == RBE_RBE || st->mode == RBE_RBEI) {
        bool send;
        pass = rbe_changed(st, k, value, &send) && send;
    } else {
        double n = NAN; /* parseFloat of the value; stays NaN if it is none */
        eddy_json_parse_float(value, &n);
        if (isnan(n)) {
            eddy_node_warn(node, "no number found in payload");
            pass = false;
        } else {
            pass = band_passes(node, st, k, n);
        }
    }
    eddy_free(key);
    if (pass)
        eddy_node_send(node, 0, msg);
    else
        json_decref(msg);
}

const eddy_node_type eddy_node_rbe = {
    .name = "rbe",
    .inputs = 1,
    .outputs = 1,
    .flags = 0,
    .props = rbe_props,
    .state_size = sizeof(struct rbe_state),
    .help = "Report by exception (the palette's \"filter\"): passes a message only when its "
            "property (msg.payload by default) changed (rbe; rbei also blocks the first "
            "value), changed by more than the gap (deadband, deadbandEq: or by exactly the "
            "gap), or by less than the gap (narrowband, narrowbandEq: not by exactly it). The "
            "gap may be a percentage of the last value. State is kept per topic unless "
            "septopics is false; a message with a 'reset' property clears it (for its topic "
            "only, when it has one).",
    .validate = rbe_validate,
    .setup = rbe_setup,
    .input = rbe_input,
    .close = rbe_close,
};
