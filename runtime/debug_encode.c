/* debug_encode.c: see debug_encode.h. The rules follow what Node-RED's editor decodes
 * (its debug sidebar reads "format" to choose a view and parses "msg" as JSON for objects
 * and arrays, where {"__enc__":true,...} marks a value that was cut or is not JSON). */
#include "debug_encode.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "mem.h"
#include "msg.h"

/* The byte length of the first 'units' UTF-16 units of 's'. */
static size_t js_prefix_bytes(const char *s, size_t bytes, size_t units)
{
    size_t n = 0, i = 0;
    while (i < bytes) {
        unsigned char c = (unsigned char)s[i];
        size_t w = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        size_t u = c >= 0xF0 ? 2 : 1;
        if (n + u > units)
            break;
        n += u;
        i += w;
    }
    return i < bytes ? i : bytes;
}

static bool is_buffer(const json_t *v)
{
    return json_is_object(v) && json_is_array(json_object_get(v, "data")) &&
           json_is_string(json_object_get(v, "type")) &&
           strcmp(json_string_value(json_object_get(v, "type")), "Buffer") == 0;
}

static json_t *cut_string(const json_t *v, size_t max_len)
{
    const char *s = json_string_value(v);
    size_t bytes = json_string_length(v);
    if (eddy_utf16_length(s, bytes) <= max_len)
        return json_incref((json_t *)v);
    size_t keep = js_prefix_bytes(s, bytes, max_len);
    char *text = eddy_malloc(keep + 4);
    if (!text)
        return NULL;
    memcpy(text, s, keep);
    memcpy(text + keep, "...", 4);
    json_t *out = json_stringn(text, keep + 3);
    eddy_free(text);
    return out;
}

static json_t *array_head(const json_t *v, size_t max_len)
{
    json_t *head = json_array();
    for (size_t i = 0; head && i < max_len && i < json_array_size(v); i++)
        json_array_append(head, json_array_get(v, i));
    return head;
}

/* A copy of 'v' with what the sidebar cannot show whole replaced (Node-RED's replacer). */
static json_t *prepare(const json_t *v, size_t max_len, int depth)
{
    if (depth > 64) /* messages are trees; the depth bound keeps the stack small */
        return json_pack("{s:b,s:s}", "__enc__", 1, "type", "internal");
    if (json_is_string(v))
        return cut_string(v, max_len);
    if (is_buffer(v)) {
        json_t *data = json_object_get(v, "data");
        size_t len = json_array_size(data);
        return json_pack("{s:s,s:o,s:b,s:I}", "type", "Buffer", "data", array_head(data, max_len),
                         "__enc__", 1, "length", (json_int_t)len);
    }
    if (json_is_array(v)) {
        size_t len = json_array_size(v);
        json_t *out = json_array();
        for (size_t i = 0; out && i < len && i < max_len; i++)
            if (json_array_append_new(out, prepare(json_array_get(v, i), max_len, depth + 1)))
                return json_decref(out), NULL;
        if (!out || len <= max_len)
            return out;
        return json_pack("{s:b,s:s,s:o,s:I}", "__enc__", 1, "type", "array", "data", out, "length",
                         (json_int_t)len);
    }
    if (json_is_object(v)) {
        json_t *out = json_object();
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)v, key, item)
        {
            if (!out || json_object_set_new(out, key, prepare(item, max_len, depth + 1)))
                return json_decref(out), NULL;
        }
        return out;
    }
    return json_incref((json_t *)v);
}

static int set_encoded(json_t *out, const char *format, json_t *msg)
{
    if (!msg || json_object_set_new(out, "msg", msg) != 0 ||
        json_object_set_new(out, "format", json_string(format)) != 0)
        return EDDY_ENOMEM;
    return EDDY_OK;
}

static int set_json_text(json_t *out, const char *format, json_t *prepared)
{
    if (!prepared)
        return EDDY_ENOMEM;
    char *text = json_dumps(prepared, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(prepared);
    if (!text)
        return EDDY_ENOMEM;
    json_t *msg = json_string(text);
    eddy_free(text);
    return set_encoded(out, format, msg);
}

static int encode_buffer(const json_t *value, size_t max_len, json_t *out)
{
    json_t *data = json_object_get(value, "data");
    size_t len = json_array_size(data);
    size_t shown = len * 2 > max_len ? max_len / 2 : len;
    char *hex = eddy_malloc(shown * 2 + 1);
    if (!hex)
        return EDDY_ENOMEM;
    for (size_t i = 0; i < shown; i++)
        snprintf(hex + i * 2, 3, "%02x",
                 (unsigned)(json_integer_value(json_array_get(data, i)) & 0xff));
    hex[shown * 2] = 0;
    char format[40];
    snprintf(format, sizeof(format), "buffer[%zu]", len);
    int rc = set_encoded(out, format, json_string(hex));
    eddy_free(hex);
    return rc;
}

int eddy_debug_encode(const json_t *value, size_t max_len, json_t *out)
{
    char format[40], num[32];
    if (!value)
        return set_encoded(out, "undefined", json_string("(undefined)"));
    switch (json_typeof(value)) {
    case JSON_NULL:
        return set_encoded(out, "null", json_string("(undefined)"));
    case JSON_TRUE:
    case JSON_FALSE:
        return set_encoded(out, "boolean", json_string(json_is_true(value) ? "true" : "false"));
    case JSON_INTEGER:
    case JSON_REAL:
        return set_encoded(out, "number",
                           json_string(eddy_format_number(json_number_value(value), num)));
    case JSON_STRING:
        snprintf(format, sizeof(format), "string[%zu]",
                 eddy_utf16_length(json_string_value(value), json_string_length(value)));
        return set_encoded(out, format, cut_string(value, max_len));
    case JSON_ARRAY:
        snprintf(format, sizeof(format), "array[%zu]", json_array_size(value));
        return set_json_text(out, format, prepare(value, max_len, 0));
    case JSON_OBJECT:
        if (is_buffer(value))
            return encode_buffer(value, max_len, out);
        return set_json_text(out, "Object", prepare(value, max_len, 0));
    }
    return EDDY_EINVAL;
}
