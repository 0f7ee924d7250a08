/* split.c: Node-RED's "split" node. Turns one message into a sequence: a string cut on a
 * separator or into fixed lengths (optionally as a stream that keeps the tail for the next
 * message), an array cut into chunks, an object into one message per key; each piece carries
 * msg.parts for "join". Buffers are left out: JSON has no Buffer, so an array of bytes is
 * split as an array. */
#include <jansson.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "mem.h"
#include "msg.h"
#include "node.h"

/* Stream mode with a fixed length holds messages until their data went out (Node-RED calls
 * done() late there); past this many, the oldest is declared done early. */
#define SPLIT_MAX_HELD 1024

struct split_state {
    /* props, filled by the engine */
    const json_t *splt;      /* separator text (str), byte array text (bin) or length (len) */
    const char *splt_type;   /* "str", "bin" or "len" */
    const json_t *arraySplt; /* chunk length for arrays; absent = 1 */
    const char *arraySpltType;
    bool stream;          /* strings: keep the unfinished tail for the next message */
    const char *addname;  /* objects: msg property that gets each key; "" = none */
    const char *property; /* the msg property to split */

    /* set up from the props */
    char *sep;         /* str/bin: the separator (UTF-8, may hold NUL bytes) */
    size_t sep_len;    /* bytes in 'sep' */
    json_t *sep_bytes; /* bin: the byte array, reported as msg.parts.ch */
    long len;          /* len: characters per piece */
    long array_len;    /* elements per array chunk, >= 1 */
    bool has_addname;  /* 'addname' is set */
    bool is_payload;   /* 'property' is "payload" (msg.parts.property is left out) */
    eddy_path prop;    /* parsed 'property' */
    eddy_path addpath; /* parsed 'addname' */
    char *remainder;   /* stream mode: text not yet sent; NULL = none */
    size_t rem_len;    /* bytes in 'remainder' */
    long c;            /* next msg.parts.index in stream mode */
    json_t *held;      /* messages whose done waits for their text to go out (array) */
};

/* ---- configuration ---- */

typedef struct split_conf {
    char *sep;
    size_t sep_len;
    json_t *sep_bytes;
    long len;
    long array_len;
} split_conf;

static void conf_free(split_conf *c)
{
    eddy_free(c->sep);
    json_decref(c->sep_bytes);
    memset(c, 0, sizeof(*c));
}

/* JavaScript's parseInt of a string or number: leading digits after white space and a sign. */
static bool js_parse_int(const json_t *v, long *out)
{
    char buf[64];
    const char *s;
    if (json_is_number(v)) {
        double d = json_number_value(v);
        if (!isfinite(d) || fabs(d) >= 1e15)
            return false;
        *out = (long)trunc(d);
        return true;
    }
    if (!json_is_string(v))
        return false;
    s = json_string_value(v);
    while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r' || *s == '\f' || *s == '\v')
        s++;
    size_t n = 0;
    if (*s == '+' || *s == '-')
        buf[n++] = *s++;
    size_t digits = 0;
    while (*s >= '0' && *s <= '9' && n < sizeof(buf) - 1) {
        buf[n++] = *s++;
        digits++;
    }
    buf[n] = '\0';
    if (digits == 0 || digits > 15)
        return false;
    *out = strtol(buf, NULL, 10);
    return true;
}

/* Node-RED's escapes in separators: \n \r \t \e (a plain 'e') \f \0. 'out' gets 'n' bytes
 * at most. Returns the length written. */
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

/* A byte array given as JSON text ("[1,2]") or as a JSON array. New reference in '*out'. */
static int parse_byte_array(const json_t *v, const char *what, json_t **out, eddy_err *err)
{
    json_t *arr = NULL;
    if (json_is_string(v)) {
        arr = json_loads(json_string_value(v), JSON_DECODE_ANY, NULL);
    } else if (json_is_array(v)) {
        arr = json_incref((json_t *)v);
    }
    if (!json_is_array(arr)) {
        json_decref(arr);
        return eddy_err_set(err, EDDY_EINVAL, "%s: a binary value must be a JSON array of bytes",
                            what);
    }
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e)
    {
        if (!json_is_integer(e) || json_integer_value(e) < 0 || json_integer_value(e) > 255) {
            json_decref(arr);
            return eddy_err_set(err, EDDY_EINVAL, "%s: element %zu is not a byte (0-255)", what, i);
        }
    }
    *out = arr;
    return EDDY_OK;
}

static int split_conf_parse(const struct split_state *st, split_conf *c, eddy_err *err)
{
    const char *type = st->splt_type && *st->splt_type ? st->splt_type : "str";
    memset(c, 0, sizeof(*c));
    if (strcmp(type, "str") == 0) {
        /* Node-RED: (splt || "\\n"), so an empty or missing separator means a new line. */
        const json_t *v = st->splt;
        char num[32];
        const char *s = "\\n";
        size_t n = 2;
        if (json_is_string(v) && json_string_length(v) > 0) {
            s = json_string_value(v);
            n = json_string_length(v);
        } else if (json_is_number(v) && json_number_value(v) != 0) {
            s = eddy_format_number(json_number_value(v), num);
            n = strlen(s);
        } else if (v && !json_is_string(v) && !json_is_number(v) && !json_is_false(v) &&
                   !json_is_null(v)) {
            return eddy_err_set(err, EDDY_EINVAL, "splt: a separator must be a string, not %s",
                                eddy_json_type_name(v));
        }
        c->sep = eddy_malloc(n + 1);
        if (!c->sep)
            return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
        c->sep_len = unescape(s, n, c->sep);
        c->sep[c->sep_len] = '\0';
    } else if (strcmp(type, "bin") == 0) {
        if (!st->splt)
            return eddy_err_set(err, EDDY_EINVAL,
                                "splt: a binary separator needs a JSON array of bytes");
        int rc = parse_byte_array(st->splt, "splt", &c->sep_bytes, err);
        if (rc != EDDY_OK)
            return rc;
        size_t n = json_array_size(c->sep_bytes);
        unsigned char *b = eddy_malloc(n + 1);
        if (!b) {
            conf_free(c);
            return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
        }
        for (size_t i = 0; i < n; i++)
            b[i] = (unsigned char)json_integer_value(json_array_get(c->sep_bytes, i));
        c->sep = eddy_utf8_decode(b, n, &c->sep_len);
        eddy_free(b);
        if (!c->sep) {
            conf_free(c);
            return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
        }
    } else if (strcmp(type, "len") == 0) {
        if (!js_parse_int(st->splt, &c->len) || c->len < 1) {
            char *t = st->splt ? eddy_json_dumps(st->splt, 0) : NULL;
            eddy_err_set(err, EDDY_EINVAL, "invalid split length: %s (splt must be 1 or more)",
                         t ? t : "undefined");
            eddy_free(t);
            return EDDY_EINVAL;
        }
    } else {
        return eddy_err_set(err, EDDY_EINVAL, "spltType '%s': expected str, bin or len", type);
    }
    c->array_len = 1;
    if (st->arraySplt && !js_parse_int(st->arraySplt, &c->array_len))
        c->array_len = 0;
    if (c->array_len < 1) {
        char *t = eddy_json_dumps(st->arraySplt, 0);
        eddy_err_set(err, EDDY_EINVAL,
                     "invalid array split length: %s (arraySplt must be 1 or more)", t ? t : "?");
        eddy_free(t);
        conf_free(c);
        return EDDY_EINVAL;
    }
    return EDDY_OK;
}

static const char *split_property(const struct split_state *st)
{
    return st->property && *st->property ? st->property : "payload";
}

static int split_validate(const eddy_node_type *type, const json_t *config, void *state,
                          eddy_err *err)
{
    struct split_state *st = state;
    split_conf c;
    eddy_path p;
    int rc = split_conf_parse(st, &c, err);
    if (rc != EDDY_OK)
        return rc;
    conf_free(&c);
    if ((rc = eddy_path_parse(split_property(st), &p, err)) != EDDY_OK)
        return rc;
    if (st->addname && *st->addname && (rc = eddy_path_parse(st->addname, &p, err)) != EDDY_OK)
        return rc;
    return EDDY_OK;
}

static int split_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct split_state *st = state;
    split_conf c;
    int rc = split_conf_parse(st, &c, err);
    if (rc != EDDY_OK)
        return rc;
    st->sep = c.sep;
    st->sep_len = c.sep_len;
    st->sep_bytes = c.sep_bytes;
    st->len = c.len;
    st->array_len = c.array_len;
    st->is_payload = strcmp(split_property(st), "payload") == 0;
    if ((rc = eddy_path_parse(split_property(st), &st->prop, err)) != EDDY_OK)
        return rc;
    st->has_addname = st->addname && *st->addname;
    if (st->has_addname && (rc = eddy_path_parse(st->addname, &st->addpath, err)) != EDDY_OK)
        return rc;
    st->held = json_array();
    if (!st->held)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    return EDDY_OK;
}

static int split_close(eddy_node *node, void *state, bool removed)
{
    struct split_state *st = state;
    eddy_free(st->sep);
    json_decref(st->sep_bytes);
    eddy_free(st->remainder);
    json_decref(st->held);
    st->sep = NULL;
    st->sep_bytes = NULL;
    st->remainder = NULL;
    st->held = NULL;
    return EDDY_CLOSE_DONE;
}

/* ---- helpers ---- */

/* Reads 'path' in 'msg' as Node-RED's getMessageProperty: 1 with '*out' borrowed, 0 when the
 * value is undefined, -1 when a step before the last is undefined or null (JavaScript
 * throws there). */
static int read_prop(json_t *msg, const eddy_path *path, json_t **out)
{
    eddy_path prefix = *path;
    for (int i = 1; i < path->count; i++) {
        prefix.count = i;
        json_t *v = eddy_path_get(msg, &prefix);
        if (!v || json_is_null(v))
            return -1;
    }
    *out = eddy_path_get(msg, path);
    return *out ? 1 : 0;
}

/* Tells complete nodes that 'msg' is finished and frees it. Takes 'msg'. */
static void finish(eddy_node *node, json_t *msg)
{
    eddy_node_done(node, msg);
    json_decref(msg);
}

static void release_held(eddy_node *node, struct split_state *st)
{
    size_t i;
    json_t *m;
    json_array_foreach(st->held, i, m) eddy_node_done(node, m);
    json_array_clear(st->held);
}

/* Sets the split property of 'msg' to 'value' (taken) and sends a copy with a fresh
 * _msgid. Returns false (after reporting) if the property cannot be set. */
static bool send_piece(eddy_node *node, struct split_state *st, json_t *msg, json_t *value)
{
    eddy_err err;
    eddy_err_clear(&err);
    if (eddy_path_set_take(msg, &st->prop, value, &err) != EDDY_OK) {
        eddy_node_error(node, msg, "cannot set msg.%s: %s", split_property(st), err.msg);
        return false;
    }
    json_t *out = json_deep_copy(msg);
    char id[17];
    eddy_msg_new_id(id);
    if (!out || json_object_set_new(out, "_msgid", json_string(id)) != 0) {
        json_decref(out);
        eddy_node_error(node, msg, "out of memory");
        return false;
    }
    eddy_node_send(node, 0, out);
    return true;
}

static size_t utf8_step(const char *s, size_t i, size_t n)
{
    unsigned char b = (unsigned char)s[i];
    size_t k = b < 0x80 ? 1 : (b & 0xE0) == 0xC0 ? 2 : (b & 0xF0) == 0xE0 ? 3 : 4;
    return i + k > n ? n : i + k;
}

/* Byte offset after 'count' characters from byte 'i'. */
static size_t utf8_advance(const char *s, size_t i, size_t n, long count)
{
    while (count-- > 0 && i < n)
        i = utf8_step(s, i, n);
    return i;
}

static long utf8_chars(const char *s, size_t n)
{
    long c = 0;
    for (size_t i = 0; i < n; i = utf8_step(s, i, n))
        c++;
    return c;
}

/* First occurrence of 'pat' (m bytes, m > 0) in 's' from byte 'from', or n. */
static size_t find_bytes(const char *s, size_t n, size_t from, const char *pat, size_t m)
{
    for (size_t i = from; i + m <= n; i++)
        if (s[i] == pat[0] && memcmp(s + i, pat, m) == 0)
            return i;
    return n;
}

static void set_num(json_t *obj, const char *key, double v)
{
    json_object_set_new(obj, key, eddy_json_number(v));
}

/* Keeps the unsent tail (stream mode). */
static void keep_remainder(struct split_state *st, const char *s, size_t n)
{
    eddy_free(st->remainder);
    st->remainder = n ? eddy_strndup(s, n) : NULL;
    st->rem_len = st->remainder ? n : 0;
}

/* ---- strings ---- */

/* Fixed-length pieces; lengths count characters (code points). */
static void split_string_len(eddy_node *node, struct split_state *st, json_t *msg, json_t *parts,
                             const char *data, size_t n)
{
    long chars = utf8_chars(data, n);
    long count = (chars + st->len - 1) / st->len;
    json_object_set_new(parts, "ch", json_string(""));
    set_num(parts, "len", (double)st->len);
    if (!st->stream) {
        set_num(parts, "count", (double)count);
        st->c = 0;
    }
    size_t pos = 0;
    for (long i = 0; i < count - 1; i++) {
        size_t end = utf8_advance(data, pos, n, st->len);
        set_num(parts, "index", (double)st->c++);
        if (!send_piece(node, st, msg, json_stringn(data + pos, end - pos)))
            break;
        pos = end;
    }
    if (count > 1)
        release_held(node, st);
    const char *rest = data + pos;
    size_t rest_len = n - pos;
    if (!st->stream || utf8_chars(rest, rest_len) == st->len) {
        set_num(parts, "index", (double)st->c++);
        send_piece(node, st, msg, json_stringn(rest, rest_len));
        release_held(node, st);
        keep_remainder(st, NULL, 0);
        finish(node, msg);
        return;
    }
    keep_remainder(st, rest, rest_len);
    if (json_array_size(st->held) >= SPLIT_MAX_HELD) {
        eddy_node_done(node, json_array_get(st->held, 0));
        json_array_remove(st->held, 0);
    }
    json_array_append_new(st->held, msg);
}

/* Pieces between separators, as JavaScript's String.split; the last one is kept back in
 * stream mode. An empty separator cuts between characters. */
static void split_string_sep(eddy_node *node, struct split_state *st, json_t *msg, json_t *parts,
                             const char *data, size_t n)
{
    size_t count = 0;
    json_object_set_new(parts, "ch",
                        st->sep_bytes ? json_deep_copy(st->sep_bytes)
                                      : json_stringn(st->sep, st->sep_len));
    /* Count the pieces first: without stream mode each carries the total. */
    if (st->sep_len == 0) {
        count = n ? (size_t)utf8_chars(data, n) : 1;
    } else {
        count = 1;
        for (size_t p = find_bytes(data, n, 0, st->sep, st->sep_len); p < n;
             p = find_bytes(data, n, p + st->sep_len, st->sep, st->sep_len))
            count++;
    }
    size_t pos = 0;
    for (size_t i = 0; i + 1 < count; i++) {
        size_t end, next;
        if (st->sep_len == 0) {
            end = next = utf8_step(data, pos, n);
        } else {
            end = find_bytes(data, n, pos, st->sep, st->sep_len);
            next = end + st->sep_len;
        }
        set_num(parts, "index", (double)st->c++);
        if (!st->stream)
            set_num(parts, "count", (double)count);
        if (!send_piece(node, st, msg, json_stringn(data + pos, end - pos))) {
            st->c = 0;
            finish(node, msg);
            return;
        }
        pos = next;
    }
    if (!st->stream) {
        set_num(parts, "index", (double)st->c++);
        set_num(parts, "count", (double)count);
        send_piece(node, st, msg, json_stringn(data + pos, n - pos));
        st->c = 0;
    } else {
        keep_remainder(st, data + pos, n - pos);
    }
    finish(node, msg);
}

/* ---- arrays and objects ---- */

static void split_array(eddy_node *node, struct split_state *st, json_t *msg, json_t *parts,
                        json_t *value)
{
    size_t n = json_array_size(value);
    size_t size = (size_t)st->array_len;
    size_t count = (n + size - 1) / size;
    json_object_set_new(parts, "type", json_string("array"));
    set_num(parts, "count", (double)count);
    set_num(parts, "len", (double)st->array_len);
    for (size_t i = 0; i < count; i++) {
        json_t *piece;
        if (size == 1) {
            piece = json_incref(json_array_get(value, i));
        } else {
            piece = json_array();
            for (size_t k = i * size; k < n && k < (i + 1) * size; k++)
                json_array_append(piece, json_array_get(value, k));
        }
        set_num(parts, "index", (double)i);
        if (!send_piece(node, st, msg, piece))
            break;
    }
    finish(node, msg);
}

typedef struct key_entry {
    const char *key;
    size_t order;  /* position in the object */
    bool is_index; /* an array-index-like key ("0", "17"): JavaScript lists these first */
    unsigned long index;
} key_entry;

static int key_cmp(const void *a, const void *b)
{
    const key_entry *x = a, *y = b;
    if (x->is_index != y->is_index)
        return x->is_index ? -1 : 1;
    if (x->is_index && x->index != y->index)
        return x->index < y->index ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order;
}

static bool index_key(const char *k, unsigned long *out)
{
    size_t n = strlen(k);
    if (n == 0 || n > 10 || (n > 1 && k[0] == '0'))
        return false;
    for (size_t i = 0; i < n; i++)
        if (k[i] < '0' || k[i] > '9')
            return false;
    *out = strtoul(k, NULL, 10);
    return *out < 4294967295UL;
}

/* One message per key, in JavaScript's key order (index-like keys first, ascending). */
static void split_object(eddy_node *node, struct split_state *st, json_t *msg, json_t *parts,
                         json_t *value)
{
    size_t n = json_object_size(value), i = 0;
    key_entry *keys = eddy_calloc(n ? n : 1, sizeof(*keys));
    const char *k;
    json_t *v;
    if (!keys) {
        eddy_node_error(node, msg, "out of memory");
        finish(node, msg);
        return;
    }
    json_object_foreach(value, k, v)
    {
        keys[i].key = k;
        keys[i].order = i;
        keys[i].is_index = index_key(k, &keys[i].index);
        i++;
    }
    qsort(keys, n, sizeof(*keys), key_cmp);
    json_object_set_new(parts, "type", json_string("object"));
    for (i = 0; i < n; i++) {
        json_t *piece = json_incref(json_object_get(value, keys[i].key));
        if (st->has_addname) {
            eddy_err err;
            eddy_err_clear(&err);
            if (eddy_path_set_take(msg, &st->addpath, json_string(keys[i].key), &err) != EDDY_OK) {
                json_decref(piece);
                eddy_node_error(node, msg, "cannot set msg.%s: %s", st->addname, err.msg);
                break;
            }
        }
        json_object_set_new(parts, "key", json_string(keys[i].key));
        set_num(parts, "index", (double)i);
        set_num(parts, "count", (double)n);
        if (!send_piece(node, st, msg, piece))
            break;
    }
    eddy_free(keys);
    finish(node, msg);
}

/* ---- input ---- */

static void split_input(eddy_node *node, void *state, json_t *msg)
{
    struct split_state *st = state;
    json_t *value = NULL;
    int found = read_prop(msg, &st->prop, &value);
    if (found < 0) {
        eddy_node_error(node, msg, "cannot read msg.%s: a parent property is missing",
                        split_property(st));
        finish(node, msg);
        return;
    }
    if (!found || !(json_is_string(value) || json_is_array(value) || json_is_object(value) ||
                    json_is_null(value))) {
        finish(node, msg); /* nothing to split: Node-RED drops such messages */
        return;
    }
    if (json_is_null(value)) {
        eddy_node_error(node, msg, "cannot split msg.%s: it is null", split_property(st));
        finish(node, msg);
        return;
    }
    json_incref(value); /* the property is overwritten with each piece */

    /* msg.parts: a fresh group; an existing one is pushed down as parts.parts. */
    json_t *parts = json_object();
    json_t *outer = json_object_get(msg, "parts");
    char id[17];
    eddy_msg_new_id(id);
    if (outer)
        json_object_set(parts, "parts", outer);
    json_object_set_new(parts, "id", json_string(id));
    if (!st->is_payload)
        json_object_set_new(parts, "property", json_string(split_property(st)));
    json_object_set_new(msg, "parts", parts);
    json_object_del(msg, "_msgid");

    if (json_is_string(value)) {
        size_t n = st->rem_len + json_string_length(value);
        char *data = eddy_malloc(n + 1);
        if (!data) {
            eddy_node_error(node, msg, "out of memory");
            finish(node, msg);
        } else {
            if (st->rem_len)
                memcpy(data, st->remainder, st->rem_len);
            memcpy(data + st->rem_len, json_string_value(value), json_string_length(value));
            data[n] = '\0';
            json_object_set_new(parts, "type", json_string("string"));
            if (st->len > 0)
                split_string_len(node, st, msg, parts, data, n);
            else
                split_string_sep(node, st, msg, parts, data, n);
            eddy_free(data);
        }
    } else if (json_is_array(value)) {
        split_array(node, st, msg, parts, value);
    } else {
        split_object(node, st, msg, parts, value);
    }
    json_decref(value);
}

/* ---- registration ---- */

static const eddy_prop split_props[] = {
    {"splt", EDDY_PROP_JSON, "\"\\\\n\"", false, offsetof(struct split_state, splt),
     "strings: the separator (\\n, \\t ... escapes), the byte array (bin) or the length (len)",
     NULL},
    {"spltType", EDDY_PROP_STR, "\"str\"", false, offsetof(struct split_state, splt_type),
     "how strings are split: str (separator), bin (byte separator) or len (fixed length)",
     "||str|bin|len|"},
    {"arraySplt", EDDY_PROP_JSON, "1", false, offsetof(struct split_state, arraySplt),
     "arrays: elements per message", NULL},
    {"arraySpltType", EDDY_PROP_STR, "\"len\"", false, offsetof(struct split_state, arraySpltType),
     "arrays: always len", NULL},
    {"stream", EDDY_PROP_BOOL, "false", false, offsetof(struct split_state, stream),
     "strings: treat messages as one stream, keeping the unfinished tail for the next", NULL},
    {"addname", EDDY_PROP_STR, "\"\"", false, offsetof(struct split_state, addname),
     "objects: msg property that receives each key (e.g. topic); empty for none", NULL},
    {"property", EDDY_PROP_STR, "\"payload\"", false, offsetof(struct split_state, property),
     "the msg property to split", NULL},
    {0},
};

const eddy_node_type eddy_node_split = {
    .name = "split",
    .inputs = 1,
    .outputs = 1,
    .flags = EDDY_NODE_ASYNC_DONE,
    .props = split_props,
    .state_size = sizeof(struct split_state),
    .help = "Splits msg.payload (or another property) into a sequence of messages: a string "
            "on a separator or into fixed lengths, an array into chunks, an object into one "
            "message per key. Each message carries msg.parts so that a join node can put the "
            "sequence back together.",
    .validate = split_validate,
    .setup = split_setup,
    .input = split_input,
    .close = split_close,
};
