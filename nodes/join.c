/* join.c: Node-RED's "join" node. Collects messages into groups and sends one message per
 * group: automatically from msg.parts (undoing "split", nested sequences included), or by a
 * count, a timeout or msg.complete into a string, array, key/value object or merged object.
 * Reduce mode (JSONata) and Buffer results are not supported; held messages are bounded by
 * maxGroups and maxParts. */
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "err.h"
#include "mem.h"
#include "msg.h"
#include "node.h"

enum join_mode { JOIN_AUTO, JOIN_CUSTOM };

/* What a group builds: from msg.parts.type in auto mode, from 'build' in custom mode. */
enum join_kind {
    KIND_ARRAY,  /* "array" and anything unknown: parts by index, else in arrival order */
    KIND_STRING, /* like array, then joined with the separator */
    KIND_OBJECT, /* key/value: msg.parts.key (auto) or msg[key] (custom) */
    KIND_MERGED, /* the keys of each part copied into one object */
    KIND_BUFFER, /* Node-RED Buffers: not supported */
};

/* A sequence being collected. Invariant: 'held' holds every input message added to the
 * group since it last sent; each gets eddy_node_done when the group sends or is reset. */
typedef struct join_group {
    struct join_group *next;
    char *id;            /* String(msg.parts.id), or "_" for the single custom group */
    enum join_kind kind; /* fixed when the group starts */
    json_t *msg;         /* the outgoing message: top-level keys of every part, latest wins */
    json_t *payload;     /* array (array/string) or object (object/merged) */
    json_t *undef;       /* object kind: keys whose value was undefined (Node-RED counts them) */
    json_t *join_char;   /* string kind: the separator (string or byte array); NULL = "" */
    double array_len;    /* array kind: elements per part; > 1 means flatten one level */
    double target;       /* parts expected; NaN or 0 = unknown */
    long current;        /* parts counted so far (Node-RED's currentCount) */
    char *prop;          /* where the result goes; NULL = "payload" */
    json_t *held;        /* array of input messages waiting for done */
    eddy_timer *timer;   /* custom mode timeout; NULL when not running */
} join_group;

struct join_state {
    /* props, filled by the engine */
    const char *mode;         /* auto, custom (reduce is refused) */
    const char *build;        /* custom: string, array, object, merged */
    const char *property;     /* custom: the msg property to collect */
    const char *propertyType; /* msg, or full (the whole message) */
    const char *key;          /* custom object: msg property holding the key */
    const char *joiner;       /* custom string: separator (escapes as split) or byte array */
    const char *joinerType;   /* str or bin */
    bool accumulate;          /* custom: keep the group after sending */
    double timeout;           /* custom: seconds after the first part; 0 = none */
    const json_t *count;      /* custom: parts per group; "" = from msg.parts.count */
    const json_t *useparts;   /* custom: keep msg.parts of the input messages */
    long maxGroups;           /* most groups pending at once */
    long maxParts;            /* most messages held, and most parts in one group */

    /* set up from the props */
    enum join_mode m;
    enum join_kind kind; /* custom: from 'build' */
    bool full;           /* propertyType is full */
    bool count_blank;    /* 'count' is "": take the count and group id from msg.parts */
    bool keep_parts;     /* 'useparts' */
    double count_n;      /* 'count' as a number */
    int64_t timer_ms;    /* custom timeout in ms; 0 = none */
    char *joiner_text;   /* 'joiner' after escapes or byte decoding */
    size_t joiner_len;   /* bytes in 'joiner_text' */
    eddy_path prop;      /* parsed 'property' */
    eddy_path keypath;   /* parsed 'key' */
    join_group *groups;  /* pending groups, most recent first */
    long n_groups;       /* groups in 'groups' */
    long n_held;         /* messages held over all groups */
};

/* ---- small helpers ---- */

/* JavaScript's Number(v) for scalars; NaN for undefined, objects and arrays. */
static double js_number(const json_t *v)
{
    double d;
    if (!v)
        return NAN;
    switch (json_typeof(v)) {
    case JSON_INTEGER:
    case JSON_REAL:
        return json_number_value(v);
    case JSON_TRUE:
        return 1;
    case JSON_FALSE:
    case JSON_NULL:
        return 0;
    case JSON_STRING: {
        const char *s = json_string_value(v);
        while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
            s++;
        if (!*s)
            return 0;
        return eddy_parse_number(json_string_value(v), &d) ? d : NAN;
    }
    default:
        return NAN;
    }
}

static bool js_falsy_number(double d)
{
    return d == 0 || isnan(d);
}

static bool has(const json_t *obj, const char *key)
{
    return json_is_object(obj) && json_object_get(obj, key) != NULL;
}

/* Node-RED's getMessageProperty: 1 with '*out' borrowed, 0 when undefined, -1 when a step
 * before the last is undefined or null (JavaScript throws there). */
static int read_prop(json_t *msg, const eddy_path *path, json_t **out)
{
    eddy_path prefix = *path;
    *out = NULL;
    for (int i = 1; i < path->count; i++) {
        prefix.count = i;
        json_t *v = eddy_path_get(msg, &prefix);
        if (!v || json_is_null(v))
            return -1;
    }
    *out = eddy_path_get(msg, path);
    return *out ? 1 : 0;
}

static void finish(eddy_node *node, json_t *msg)
{
    eddy_node_done(node, msg);
    json_decref(msg);
}

/* Node-RED's escapes in joiners: \n \r \t \e (a plain 'e') \f \0. Returns bytes written. */
static size_t unescape(const char *s, size_t n, char *out)
{
    static const char from[] = "nrtef0", to[] = "\n\r\te\f";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        const char *f = i + 1 < n && s[i] == '\\' && s[i + 1] ? strchr(from, s[i + 1]) : NULL;
        if (f) {
            size_t k = (size_t)(f - from);
            out[o++] = k < 5 ? to[k] : '\0';
            i++;
        } else {
            out[o++] = s[i];
        }
    }
    return o;
}

/* Buffer.toString() of a byte array: UTF-8, each invalid byte becoming U+FFFD. 'arr' holds
 * numbers; others count as 0. Ownership: new (eddy_free). */
static char *bytes_decode(const json_t *arr, size_t *out_len)
{
    size_t n = json_array_size(arr);
    unsigned char *b = eddy_malloc(n + 1);
    if (!b)
        return NULL;
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)((long)js_number(json_array_get(arr, i)) & 0xFF);
    char *o = eddy_utf8_decode(b, n, out_len);
    eddy_free(b);
    return o;
}

static enum join_kind kind_of(const char *type)
{
    if (!type)
        return KIND_ARRAY;
    if (strcmp(type, "string") == 0)
        return KIND_STRING;
    if (strcmp(type, "object") == 0)
        return KIND_OBJECT;
    if (strcmp(type, "merged") == 0)
        return KIND_MERGED;
    if (strcmp(type, "buffer") == 0)
        return KIND_BUFFER;
    return KIND_ARRAY;
}

/* ---- configuration ---- */

typedef struct join_conf {
    enum join_mode m;
    enum join_kind kind;
    bool full, count_blank, keep_parts;
    double count_n;
    int64_t timer_ms;
    char *joiner_text;
    size_t joiner_len;
} join_conf;

static const char *join_property(const struct join_state *st, bool full)
{
    if (full || !st->property || !*st->property)
        return "payload";
    return st->property;
}

static const char *join_key(const struct join_state *st)
{
    return st->key && *st->key ? st->key : "topic";
}

/* Checks every setting; 'c' gets the parsed values (joiner_text is new, eddy_free). */
static int join_conf_parse(const json_t *config, const struct join_state *st, join_conf *c,
                           eddy_err *err)
{
    const char *mode = st->mode && *st->mode ? st->mode : "auto";
    const char *build = st->build && *st->build ? st->build : "array";
    const char *ptype = st->propertyType && *st->propertyType ? st->propertyType : "msg";
    const char *jtype = st->joinerType && *st->joinerType ? st->joinerType : "str";
    const json_t *count = json_object_get(config, "count");
    const json_t *useparts = json_object_get(config, "useparts");
    eddy_path p;
    int rc;

    memset(c, 0, sizeof(*c));
    if (strcmp(mode, "reduce") == 0)
        return eddy_err_set(err, EDDY_EUNSUPPORTED,
                            "mode 'reduce' needs JSONata expressions (reduceExp), which eddy "
                            "does not support");
    if (strcmp(mode, "auto") == 0)
        c->m = JOIN_AUTO;
    else if (strcmp(mode, "custom") == 0)
        c->m = JOIN_CUSTOM;
    else
        return eddy_err_set(err, EDDY_EINVAL, "mode '%s': expected auto, custom or reduce", mode);

    c->kind = kind_of(build);
    if (c->m == JOIN_CUSTOM && c->kind == KIND_BUFFER)
        return eddy_err_set(err, EDDY_EUNSUPPORTED,
                            "build 'buffer': Buffer results are not supported (JSON has no "
                            "Buffer); use 'string' or 'array'");
    if (c->m == JOIN_CUSTOM && c->kind == KIND_ARRAY && strcmp(build, "array") != 0)
        return eddy_err_set(err, EDDY_EINVAL,
                            "build '%s': expected string, array, object or merged", build);

    if (strcmp(ptype, "full") == 0)
        c->full = true;
    else if (strcmp(ptype, "msg") != 0)
        return eddy_err_set(err, EDDY_EINVAL, "propertyType '%s': expected msg or full", ptype);
    if ((rc = eddy_path_parse(join_property(st, c->full), &p, err)) != EDDY_OK)
        return rc;
    if ((rc = eddy_path_parse(join_key(st), &p, err)) != EDDY_OK)
        return rc;

    /* Node-RED: Number(count || 0); "" also means "use msg.parts.count". */
    c->count_blank = json_is_string(count) && json_string_length(count) == 0;
    c->count_n = count ? js_number(count) : 0;
    if (json_is_false(count))
        c->count_n = 0;
    if (isnan(c->count_n))
        return eddy_err_set(err, EDDY_EINVAL, "count: expected a number of message parts");
    /* Node-RED: useparts absent means true (flows from before the option), else its value. */
    c->keep_parts = !useparts || eddy_json_truthy(useparts);

    if (c->m == JOIN_CUSTOM && st->timeout > 0)
        c->timer_ms = (int64_t)llround(st->timeout * 1000.0);

    if (strcmp(jtype, "str") == 0) {
        const char *j = st->joiner ? st->joiner : "";
        size_t n = strlen(j);
        c->joiner_text = eddy_malloc(n + 1);
        if (!c->joiner_text)
            return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
        c->joiner_len = unescape(j, n, c->joiner_text);
        c->joiner_text[c->joiner_len] = '\0';
    } else if (strcmp(jtype, "bin") == 0) {
        const char *j = st->joiner && *st->joiner ? st->joiner : "[]";
        json_t *arr = json_loads(j, JSON_DECODE_ANY, NULL);
        size_t i;
        json_t *e;
        if (!json_is_array(arr)) {
            json_decref(arr);
            return eddy_err_set(err, EDDY_EINVAL,
                                "joiner: a binary joiner must be a JSON array of bytes, not '%s'",
                                j);
        }
        json_array_foreach(arr, i, e)
        {
            if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > 255) {
                json_decref(arr);
                return eddy_err_set(err, EDDY_EINVAL, "joiner: element %zu is not a byte (0-255)",
                                    i);
            }
        }
        c->joiner_text = bytes_decode(arr, &c->joiner_len);
        json_decref(arr);
        if (!c->joiner_text)
            return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    } else {
        return eddy_err_set(err, EDDY_EINVAL, "joinerType '%s': expected str or bin", jtype);
    }

    if (st->maxGroups < 1 || st->maxParts < 1) {
        eddy_free(c->joiner_text);
        c->joiner_text = NULL;
        return eddy_err_set(err, EDDY_EINVAL, "%s must be 1 or more",
                            st->maxGroups < 1 ? "maxGroups" : "maxParts");
    }
    return EDDY_OK;
}

static int join_validate(const eddy_node_type *type, const json_t *config, void *state,
                         eddy_err *err)
{
    join_conf c;
    int rc = join_conf_parse(config, state, &c, err);
    eddy_free(c.joiner_text);
    return rc;
}

static int join_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct join_state *st = state;
    join_conf c;
    int rc = join_conf_parse(eddy_node_config(node), st, &c, err);
    if (rc != EDDY_OK) {
        eddy_free(c.joiner_text);
        return rc;
    }
    st->m = c.m;
    st->kind = c.kind;
    st->full = c.full;
    st->count_blank = c.count_blank;
    st->keep_parts = c.keep_parts;
    st->count_n = c.count_n;
    st->timer_ms = c.timer_ms;
    st->joiner_text = c.joiner_text;
    st->joiner_len = c.joiner_len;
    eddy_path_parse(join_property(st, st->full), &st->prop, NULL);
    eddy_path_parse(join_key(st), &st->keypath, NULL);
    return EDDY_OK;
}

/* ---- groups ---- */

static join_group *group_find(struct join_state *st, const char *id)
{
    for (join_group *g = st->groups; g; g = g->next)
        if (strcmp(g->id, id) == 0)
            return g;
    return NULL;
}

/* Unlinks and frees 'g'. With 'done', the held messages are first declared done. */
static void group_drop(eddy_node *node, struct join_state *st, join_group *g, bool done)
{
    join_group **pp = &st->groups;
    while (*pp && *pp != g)
        pp = &(*pp)->next;
    if (*pp)
        *pp = g->next;
    st->n_groups--;
    if (g->timer)
        eddy_node_timer_stop(node, g->timer);
    size_t i;
    json_t *m;
    if (done)
        json_array_foreach(g->held, i, m) eddy_node_done(node, m);
    st->n_held -= (long)json_array_size(g->held);
    json_decref(g->held);
    json_decref(g->msg);
    json_decref(g->payload);
    json_decref(g->undef);
    json_decref(g->join_char);
    eddy_free(g->prop);
    eddy_free(g->id);
    eddy_free(g);
}

static void drop_all(eddy_node *node, struct join_state *st, bool done)
{
    while (st->groups)
        group_drop(node, st, st->groups, done);
}

/* The separator of a string group as text: strings as they are, byte arrays decoded,
 * numbers as JavaScript prints them, missing as "". Ownership: new (eddy_free). */
static char *join_char_text(const json_t *ch, size_t *len)
{
    if (!ch || json_is_null(ch)) {
        *len = 0;
        return eddy_strdup("");
    }
    if (json_is_string(ch)) {
        *len = json_string_length(ch);
        return eddy_strndup(json_string_value(ch), *len);
    }
    if (json_is_array(ch))
        return bytes_decode(ch, len);
    char *s = eddy_json_to_string(ch, false);
    *len = s ? strlen(s) : 0;
    return s;
}

/* Array.prototype.join: null (and holes) become "", others String(value). */
static json_t *join_strings(const json_t *arr, const json_t *ch)
{
    size_t sep_len, i;
    char *sep = join_char_text(ch, &sep_len);
    eddy_buf b = {0};
    json_t *v;
    if (!sep)
        return NULL;
    eddy_buf_add(&b, "", 0);
    json_array_foreach(arr, i, v)
    {
        if (i > 0)
            eddy_buf_add(&b, sep, sep_len);
        if (json_is_string(v)) {
            eddy_buf_add(&b, json_string_value(v), json_string_length(v));
        } else if (v && !json_is_null(v)) {
            char *s = eddy_json_to_string(v, false);
            if (!s)
                b.failed = true;
            else
                eddy_buf_add(&b, s, strlen(s));
            eddy_free(s);
        }
    }
    eddy_free(sep);
    json_t *out = b.failed ? NULL : json_stringn(b.data, b.len);
    eddy_free(b.data);
    return out;
}

/* The result of a group: a new value for the joined message. */
static json_t *group_result(const join_group *g)
{
    if (g->kind == KIND_STRING)
        return join_strings(g->payload, g->join_char);
    if (g->kind == KIND_ARRAY && g->array_len > 1) {
        /* Parts were chunks of an array: concatenate them (missing chunks are skipped). */
        json_t *out = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(g->payload, i, v)
        {
            if (json_is_array(v))
                json_array_extend(out, v);
            else if (!json_is_null(v))
                json_array_append(out, v);
        }
        json_t *copy = json_deep_copy(out);
        json_decref(out);
        return copy;
    }
    return json_deep_copy(g->payload);
}

/* Sends the joined message of 'g' and releases its held messages; drops the group unless it
 * accumulates. */
static void group_send(eddy_node *node, struct join_state *st, join_group *g)
{
    bool drop = st->m == JOIN_AUTO || !st->accumulate || has(g->msg, "complete");
    eddy_err err;
    eddy_err_clear(&err);
    if (g->timer) {
        eddy_node_timer_stop(node, g->timer);
        g->timer = NULL;
    }
    json_t *out = json_deep_copy(g->msg);
    json_t *result = group_result(g);
    if (!out || !result) {
        json_decref(out);
        json_decref(result);
        eddy_node_error(node, g->msg, "out of memory joining a group");
    } else if (eddy_path_assign_take(out, g->prop ? g->prop : "payload", result, &err) != EDDY_OK) {
        eddy_node_error(node, out, "cannot set msg.%s: %s", g->prop ? g->prop : "payload", err.msg);
        json_decref(out);
    } else {
        json_t *parts = json_object_get(out, "parts");
        json_t *outer = json_is_object(parts) ? json_object_get(parts, "parts") : NULL;
        if (outer)
            json_object_set(out, "parts", outer); /* back to the enclosing sequence */
        else
            json_object_del(out, "parts");
        json_object_del(out, "complete");
        eddy_node_send(node, 0, out);
    }
    if (drop) {
        group_drop(node, st, g, true);
        return;
    }
    size_t i;
    json_t *m;
    json_array_foreach(g->held, i, m) eddy_node_done(node, m);
    st->n_held -= (long)json_array_size(g->held);
    json_array_clear(g->held);
}

static int64_t group_timeout(eddy_node *node, void *state, void *data)
{
    join_group *g = data;
    g->timer = NULL; /* this timer stops with the return below */
    group_send(node, state, g);
    return EDDY_TIMER_STOP;
}

static void group_arm(eddy_node *node, struct join_state *st, join_group *g)
{
    if (g->timer)
        eddy_node_timer_stop(node, g->timer);
    g->timer =
        st->timer_ms > 0 ? eddy_node_timer_start(node, st->timer_ms, group_timeout, g, NULL) : NULL;
}

static join_group *group_new(eddy_node *node, struct join_state *st, const char *id,
                             enum join_kind kind)
{
    join_group *g = eddy_calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->id = eddy_strdup(id);
    g->kind = kind;
    g->msg = json_object();
    g->payload = kind == KIND_OBJECT || kind == KIND_MERGED ? json_object() : json_array();
    g->undef = json_object();
    g->held = json_array();
    g->target = NAN;
    g->array_len = NAN;
    if (!g->id || !g->msg || !g->payload || !g->undef || !g->held) {
        json_decref(g->msg);
        json_decref(g->payload);
        json_decref(g->undef);
        json_decref(g->held);
        eddy_free(g->id);
        eddy_free(g);
        return NULL;
    }
    g->next = st->groups;
    st->groups = g;
    st->n_groups++;
    group_arm(node, st, g);
    return g;
}

/* ---- input ---- */

/* What one input message says about its group. */
typedef struct part_info {
    char *id;            /* group id (new, eddy_free) */
    enum join_kind kind; /* how to add it */
    json_t *value;       /* the collected value, borrowed; NULL = undefined */
    json_t *key;         /* object kind: the key, borrowed */
    json_t *ch;          /* string kind: the separator, borrowed (NULL = the joiner) */
    double target;       /* count if known, else NaN */
    double array_len;    /* auto: msg.parts.len */
    double index;        /* auto: msg.parts.index; NaN = append */
    const char *prop;    /* auto: msg.parts.property; NULL = payload */
    bool array_type;     /* auto: msg.parts.type is "array" (chunks may be flattened) */
} part_info;

/* Reads the group information of 'msg'. Returns false (after reporting) to drop it. */
static bool part_read(eddy_node *node, struct join_state *st, json_t *msg, part_info *pi)
{
    json_t *parts = json_object_get(msg, "parts");
    const json_t *id = NULL;
    memset(pi, 0, sizeof(*pi));
    pi->target = NAN;
    pi->array_len = NAN;
    pi->index = NAN;
    if (st->m == JOIN_AUTO) {
        const char *prop = json_string_value(json_object_get(parts, "property"));
        eddy_path path;
        pi->prop = prop && *prop ? prop : NULL;
        id = json_object_get(parts, "id");
        pi->kind = kind_of(json_string_value(json_object_get(parts, "type")));
        pi->array_type = json_is_string(json_object_get(parts, "type")) &&
                         strcmp(json_string_value(json_object_get(parts, "type")), "array") == 0;
        pi->target = js_number(json_object_get(parts, "count"));
        pi->ch = json_object_get(parts, "ch");
        pi->key = json_object_get(parts, "key");
        pi->array_len = js_number(json_object_get(parts, "len"));
        pi->index = js_number(json_object_get(parts, "index"));
        if (eddy_path_parse(pi->prop ? pi->prop : "payload", &path, NULL) != EDDY_OK ||
            read_prop(msg, &path, &pi->value) < 0) {
            eddy_node_error(node, msg, "cannot read msg.%s (named by msg.parts.property)",
                            pi->prop ? pi->prop : "payload");
            return false;
        }
    } else {
        pi->kind = st->kind;
        pi->target = st->count_n;
        if (st->count_blank && parts) {
            double n = js_number(json_object_get(parts, "count"));
            pi->target = js_falsy_number(n) ? 0 : n;
            id = json_object_get(parts, "id");
        }
        if (st->full)
            pi->value = msg;
        else
            read_prop(msg, &st->prop, &pi->value); /* checked by the caller */
        if (st->kind == KIND_OBJECT && read_prop(msg, &st->keypath, &pi->key) < 0) {
            eddy_node_error(node, msg, "cannot read msg.%s: a parent property is missing",
                            join_key(st));
            return false;
        }
    }
    pi->id = id ? eddy_json_to_string(id, false) : eddy_strdup("_");
    if (!pi->id) {
        eddy_node_error(node, msg, "out of memory");
        return false;
    }
    return true;
}

/* Size of the group payload after adding 'pi' (to check maxParts before changing it). */
static size_t size_after(const join_group *g, const part_info *pi, const char *key)
{
    size_t n = json_array_size(g->payload) + json_object_size(g->payload);
    if (pi->kind == KIND_OBJECT && json_is_object(g->payload)) {
        return json_object_get(g->payload, key) || json_object_get(g->undef, key) ? n : n + 1;
    }
    if (pi->kind == KIND_MERGED && json_is_object(g->payload) && json_is_object(pi->value)) {
        const char *k;
        json_t *v;
        json_object_foreach(pi->value, k, v)
        {
            if (strcmp(k, "_msgid") != 0 && !json_object_get(g->payload, k))
                n++;
        }
        return n;
    }
    if (!isnan(pi->index))
        return (size_t)pi->index + 1 > n ? (size_t)pi->index + 1 : n;
    return pi->value ? n + 1 : n;
}

/* Adds the value of 'pi' to 'g'. Returns false (after reporting) to drop the message. */
static bool group_add(eddy_node *node, struct join_state *st, join_group *g, json_t *msg,
                      const part_info *pi, const char *key)
{
    bool obj_group = json_is_object(g->payload);
    bool obj_part = pi->kind == KIND_OBJECT || pi->kind == KIND_MERGED;
    if (obj_group != obj_part) {
        eddy_node_error(node, msg, "msg.parts.type does not match the group's type");
        return false;
    }
    if (!obj_part && !isnan(pi->index)) {
        if (pi->index < 0 || pi->index != floor(pi->index)) {
            eddy_node_error(node, msg, "msg.parts.index must be a whole number of 0 or more");
            return false;
        }
        if (pi->index >= (double)st->maxParts) {
            eddy_node_error(node, msg, "msg.parts.index %.0f is not below maxParts (%ld)",
                            pi->index, st->maxParts);
            return false;
        }
    }
    if (size_after(g, pi, key) > (size_t)st->maxParts) {
        eddy_node_error(node, msg, "group '%s' would hold more than maxParts (%ld) parts", g->id,
                        st->maxParts);
        return false;
    }

    if (pi->kind == KIND_OBJECT) {
        if (pi->value) {
            json_object_set(g->payload, key, pi->value);
            json_object_del(g->undef, key);
        } else {
            json_object_del(g->payload, key);
            json_object_set_new(g->undef, key, json_null());
        }
        g->current = (long)(json_object_size(g->payload) + json_object_size(g->undef));
    } else if (pi->kind == KIND_MERGED) {
        if (json_is_array(pi->value) || !(json_is_object(pi->value) || json_is_null(pi->value))) {
            if (!has(msg, "complete"))
                eddy_node_warn(node, "Cannot merge non-object types");
        } else if (json_is_object(pi->value)) {
            const char *k;
            json_t *v;
            json_object_foreach(pi->value, k, v)
            {
                if (strcmp(k, "_msgid") != 0)
                    json_object_set(g->payload, k, v);
            }
            g->current = (long)json_object_size(g->payload);
        }
    } else if (!isnan(pi->index)) {
        size_t idx = (size_t)pi->index;
        json_t *slot = json_array_get(g->payload, idx);
        if (!slot || json_is_null(slot))
            g->current++;
        while (json_array_size(g->payload) < idx)
            json_array_append_new(g->payload, json_null());
        json_t *v = pi->value ? json_incref(pi->value) : json_null();
        if (idx == json_array_size(g->payload))
            json_array_append_new(g->payload, v);
        else
            json_array_set_new(g->payload, idx, v);
    } else if (pi->value) {
        json_array_append(g->payload, pi->value);
        g->current++;
    }
    return true;
}

static void join_input(eddy_node *node, void *state, json_t *msg)
{
    struct join_state *st = state;
    json_t *parts;
    part_info pi;
    char *key = NULL;
    bool held = false;

    if (!st->full) {
        json_t *unused;
        if (read_prop(msg, &st->prop, &unused) < 0) {
            eddy_node_warn(node, "Message property %s not found", join_property(st, false));
            finish(node, msg);
            return;
        }
    }
    parts = json_object_get(msg, "parts");
    if (st->m == JOIN_AUTO && !has(parts, "id")) {
        if (json_object_get(msg, "reset"))
            drop_all(node, st, true);
        else
            eddy_node_warn(node, "Message missing msg.parts property - cannot join in 'auto' "
                                 "mode");
        finish(node, msg);
        return;
    }
    if (st->m == JOIN_CUSTOM && parts && !st->keep_parts) {
        /* Not using msg.parts: drop this level, keeping an enclosing sequence. */
        json_t *outer = json_is_object(parts) ? json_object_get(parts, "parts") : NULL;
        if (outer) {
            json_t *np = json_object();
            json_object_set(np, "parts", outer);
            json_object_set_new(msg, "parts", np);
        } else {
            json_object_del(msg, "parts");
        }
        parts = json_object_get(msg, "parts");
    }

    if (!part_read(node, st, msg, &pi)) {
        finish(node, msg);
        return;
    }
    join_group *g = group_find(st, pi.id);

    if (json_object_get(msg, "restartTimeout") && g)
        group_arm(node, st, g);
    if (json_object_get(msg, "reset")) {
        if (g)
            group_drop(node, st, g, true);
        goto done;
    }
    if (pi.kind == KIND_BUFFER) {
        eddy_node_error(node, msg, "cannot join Buffer parts: Buffers are not supported");
        goto done;
    }
    if (pi.kind == KIND_OBJECT && (!pi.key || json_is_null(pi.key) ||
                                   (json_is_string(pi.key) && json_string_length(pi.key) == 0))) {
        if (st->m == JOIN_AUTO) {
            eddy_node_warn(node, "Message missing 'msg.parts.key' property - cannot add to object");
        } else if (json_object_get(msg, "complete")) {
            if (g) {
                json_object_set(g->msg, "complete", json_object_get(msg, "complete"));
                group_send(node, st, g);
            }
        } else {
            eddy_node_warn(node, "Message missing key property 'msg.%s' - cannot add to object",
                           join_key(st));
        }
        goto done;
    }
    if (pi.kind == KIND_OBJECT) {
        key = json_is_string(pi.key) ? eddy_strdup(json_string_value(pi.key))
                                     : eddy_json_to_string(pi.key, false);
        if (!key) {
            eddy_node_error(node, msg, "out of memory");
            goto done;
        }
    }

    /* A message with msg.complete sends the group at once, so it may pass the bound. */
    if (st->n_held >= st->maxParts && !json_object_get(msg, "complete")) {
        eddy_node_error(node, msg, "too many pending messages (maxParts %ld); message dropped",
                        st->maxParts);
        goto done;
    }
    if (!g) {
        if (st->n_groups >= st->maxGroups) {
            eddy_node_error(node, msg, "too many pending groups (maxGroups %ld); message dropped",
                            st->maxGroups);
            goto done;
        }
        if (!(g = group_new(node, st, pi.id, pi.kind))) {
            eddy_node_error(node, msg, "out of memory");
            goto done;
        }
        if (pi.kind == KIND_STRING)
            g->join_char = st->m == JOIN_AUTO ? json_incref(pi.ch)
                                              : json_stringn(st->joiner_text, st->joiner_len);
        g->target = pi.target;
        if (pi.array_type)
            g->array_len = pi.array_len;
        if (st->m == JOIN_AUTO)
            g->prop = pi.prop ? eddy_strdup(pi.prop) : NULL;
        else
            g->prop = eddy_strdup(join_property(st, st->full));
    }
    if (!group_add(node, st, g, msg, &pi, key)) {
        if (json_array_size(g->held) == 0 && g->current == 0 &&
            json_array_size(g->payload) + json_object_size(g->payload) == 0)
            group_drop(node, st, g, false);
        goto done;
    }

    /* Object.assign(group.msg, msg): the latest part's top-level properties win. */
    json_object_update(g->msg, msg);
    json_array_append(g->held, msg);
    st->n_held++;
    held = true;
    if (parts && js_falsy_number(g->target))
        g->target = js_number(json_object_get(parts, "count"));
    if ((g->target > 0 && (double)g->current >= g->target) || json_object_get(msg, "complete"))
        group_send(node, st, g);

done:
    eddy_free(key);
    eddy_free(pi.id);
    if (held)
        json_decref(msg); /* the group keeps its reference until done */
    else
        finish(node, msg);
}

static int join_close(eddy_node *node, void *state, bool removed)
{
    struct join_state *st = state;
    drop_all(node, st, false);
    eddy_free(st->joiner_text);
    st->joiner_text = NULL;
    return EDDY_CLOSE_DONE;
}

/* ---- registration ---- */

static const eddy_prop join_props[] = {
    {"mode", EDDY_PROP_STR, "\"auto\"", false, offsetof(struct join_state, mode),
     "auto (from msg.parts, after a split), custom (manual) or reduce (not supported)",
     "||auto|custom|reduce|"},
    {"build", EDDY_PROP_STR, "\"array\"", false, offsetof(struct join_state, build),
     "custom: what to build: string, array, object (key/value) or merged", NULL},
    {"property", EDDY_PROP_STR, "\"payload\"", false, offsetof(struct join_state, property),
     "custom: the msg property to collect", NULL},
    {"propertyType", EDDY_PROP_STR, "\"msg\"", false, offsetof(struct join_state, propertyType),
     "custom: msg (the property) or full (whole messages)", NULL},
    {"key", EDDY_PROP_STR, "\"topic\"", false, offsetof(struct join_state, key),
     "custom object: the msg property whose value is the key", NULL},
    {"joiner", EDDY_PROP_STR, "\"\"", false, offsetof(struct join_state, joiner),
     "custom string: text between parts (\\n, \\t ... escapes) or a byte array (bin)", NULL},
    {"joinerType", EDDY_PROP_STR, "\"str\"", false, offsetof(struct join_state, joinerType),
     "str or bin", NULL},
    {"accumulate", EDDY_PROP_BOOL, "false", false, offsetof(struct join_state, accumulate),
     "custom: keep the group after sending, sending again on every later part", NULL},
    {"timeout", EDDY_PROP_NUM, "0", false, offsetof(struct join_state, timeout),
     "custom: seconds after the first part to send what arrived; empty for none", NULL},
    {"count", EDDY_PROP_JSON, NULL, false, offsetof(struct join_state, count),
     "custom: send after this many parts; empty to use msg.parts.count", NULL},
    {"useparts", EDDY_PROP_JSON, NULL, false, offsetof(struct join_state, useparts),
     "custom: keep msg.parts of the inputs (absent: true)", NULL},
    {"maxGroups", EDDY_PROP_INT, "1000", false, offsetof(struct join_state, maxGroups),
     "eddy: most groups pending at once; more is an error", NULL},
    {"maxParts", EDDY_PROP_INT, "100000", false, offsetof(struct join_state, maxParts),
     "eddy: most messages held, and most parts in one group; more is an error", NULL},
    {0},
};

const eddy_node_type eddy_node_join = {
    .name = "join",
    .inputs = 1,
    .outputs = 1,
    .flags = EDDY_NODE_ASYNC_DONE,
    .props = join_props,
    .state_size = sizeof(struct join_state),
    .help = "Joins a sequence of messages into one. Automatic mode undoes a split node using "
            "msg.parts; manual mode collects msg.payload (or another property, or whole "
            "messages) into a string, array, key/value object or merged object, sending after "
            "a count, a timeout or a message with msg.complete. msg.reset discards a group.",
    .validate = join_validate,
    .setup = join_setup,
    .input = join_input,
    .close = join_close,
};
