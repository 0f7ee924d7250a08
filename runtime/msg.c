/* msg.c: message ids and copies, Node-RED property paths, and JSON text and numbers the way
 * JavaScript prints them (what Node-RED users see in debug output and MQTT payloads). */
#include "msg.h"

#include <ctype.h>
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mem.h"

/* ---- ids ---- */

/* xorshift64*: message ids need to be unique in practice, not secret. */
static uint64_t id_state;

static uint64_t next_random(void)
{
    if (id_state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        id_state = ((uint64_t)ts.tv_sec * 1000000007u) ^ (uint64_t)ts.tv_nsec ^
                   ((uint64_t)(uintptr_t)&ts << 16);
        if (id_state == 0)
            id_state = 0x9E3779B97F4A7C15u;
    }
    id_state ^= id_state >> 12;
    id_state ^= id_state << 25;
    id_state ^= id_state >> 27;
    return id_state * 0x2545F4914F6CDD1Du;
}

void eddy_msg_new_id(char out[17])
{
    static const char hex[] = "0123456789abcdef";
    uint64_t r = next_random();
    for (int i = 0; i < 16; i++)
        out[i] = hex[(r >> (i * 4)) & 0xF];
    out[16] = '\0';
}

json_t *eddy_msg_new(void)
{
    json_t *msg = json_object();
    char id[17];
    eddy_msg_new_id(id);
    if (!msg || json_object_set_new(msg, "_msgid", json_string(id)) != 0) {
        json_decref(msg);
        return NULL;
    }
    return msg;
}

json_t *eddy_msg_clone(const json_t *msg)
{
    return json_deep_copy(msg);
}

/* ---- property paths ---- */

static int path_fail(eddy_err *err, const char *expr, size_t at, const char *why)
{
    return eddy_err_set(err, EDDY_EPARSE, "invalid property expression '%s' at %zu: %s", expr, at,
                        why);
}

static char *path_store(eddy_path *path, size_t *used, const char *key, size_t len)
{
    if (*used + len + 1 > sizeof(path->buf))
        return NULL;
    char *dst = path->buf + *used;
    memcpy(dst, key, len);
    dst[len] = '\0';
    *used += len + 1;
    return dst;
}

static int path_add(eddy_path *path, const char *expr, size_t at, const char *key, size_t len,
                    long index, size_t *used, eddy_err *err)
{
    if (path->count == EDDY_PATH_MAX_SEGMENTS)
        return path_fail(err, expr, at, "too many segments");
    eddy_path_seg *seg = &path->seg[path->count++];
    seg->index = index;
    seg->key = NULL;
    if (key) {
        seg->key = path_store(path, used, key, len);
        if (!seg->key)
            return path_fail(err, expr, at, "too long");
    }
    return EDDY_OK;
}

/* Parses "[...]" starting at expr[i] == '['; advances *pi past ']'. */
static int path_bracket(const char *expr, size_t *pi, eddy_path *path, size_t *used, eddy_err *err)
{
    size_t i = *pi + 1;
    if (expr[i] == '"' || expr[i] == '\'') {
        char quote = expr[i++];
        size_t start = i;
        while (expr[i] && expr[i] != quote)
            i++;
        if (!expr[i] || expr[i + 1] != ']')
            return path_fail(err, expr, i, "unterminated quoted key");
        int rc = path_add(path, expr, start, expr + start, i - start, 0, used, err);
        *pi = i + 2;
        return rc;
    }
    size_t start = i;
    while (isdigit((unsigned char)expr[i]))
        i++;
    if (i == start) {
        if (expr[i] == ']')
            return path_fail(err, expr, i, "empty brackets");
        return path_fail(err, expr, i, "nested property references are not supported");
    }
    if (expr[i] != ']')
        return path_fail(err, expr, i, "expected ']'");
    long index = strtol(expr + start, NULL, 10);
    *pi = i + 1;
    return path_add(path, expr, start, NULL, 0, index, used, err);
}

int eddy_path_parse(const char *expr, eddy_path *path, eddy_err *err)
{
    size_t used = 0, i = 0;
    path->count = 0;
    if (!expr || !*expr)
        return path_fail(err, expr ? expr : "", 0, "empty");
    if (expr[0] == '.' || expr[0] == '[')
        return path_fail(err, expr, 0, "must start with a name");
    while (expr[i]) {
        size_t start = i;
        while (expr[i] && expr[i] != '.' && expr[i] != '[' && expr[i] != ']')
            i++;
        if (expr[i] == ']')
            return path_fail(err, expr, i, "unexpected ']'");
        if (i == start)
            return path_fail(err, expr, i, "empty name");
        int rc = path_add(path, expr, start, expr + start, i - start, 0, &used, err);
        if (rc)
            return rc;
        while (expr[i] == '[') {
            rc = path_bracket(expr, &i, path, &used, err);
            if (rc)
                return rc;
        }
        if (expr[i] == '.') {
            i++;
            if (!expr[i])
                return path_fail(err, expr, i, "ends with '.'");
        } else if (expr[i]) {
            return path_fail(err, expr, i, "expected '.' or '['");
        }
    }
    return EDDY_OK;
}

static json_t *path_step(json_t *cur, const eddy_path_seg *seg)
{
    if (seg->key) {
        if (json_is_object(cur))
            return json_object_get(cur, seg->key);
        if (json_is_array(cur)) {
            char *end;
            long idx = strtol(seg->key, &end, 10);
            if (*seg->key && !*end && idx >= 0)
                return json_array_get(cur, (size_t)idx);
        }
        return NULL;
    }
    if (json_is_array(cur))
        return seg->index >= 0 ? json_array_get(cur, (size_t)seg->index) : NULL;
    if (json_is_object(cur)) {
        char k[24];
        snprintf(k, sizeof(k), "%ld", seg->index);
        return json_object_get(cur, k);
    }
    return NULL;
}

json_t *eddy_path_get(json_t *root, const eddy_path *path)
{
    json_t *cur = root;
    for (int i = 0; i < path->count && cur; i++)
        cur = path_step(cur, &path->seg[i]);
    return cur;
}

json_t *eddy_path_lookup(json_t *root, const char *expr)
{
    eddy_path path;
    if (eddy_path_parse(expr, &path, NULL) != EDDY_OK)
        return NULL;
    return eddy_path_get(root, &path);
}

/* Sets 'value' (taken) under 'seg' of container 'cur'. */
static int path_put(json_t *cur, const eddy_path_seg *seg, json_t *value, eddy_err *err)
{
    if (json_is_object(cur)) {
        char k[24];
        const char *key = seg->key;
        if (!key) {
            snprintf(k, sizeof(k), "%ld", seg->index);
            key = k;
        }
        return json_object_set_new(cur, key, value) == 0
                   ? EDDY_OK
                   : eddy_err_set(err, EDDY_ENOMEM, "out of memory setting '%s'", key);
    }
    long idx = seg->index;
    if (seg->key) {
        char *end;
        idx = strtol(seg->key, &end, 10);
        if (!*seg->key || *end || idx < 0) {
            json_decref(value);
            return eddy_err_set(err, EDDY_EINVAL, "cannot set key '%s' on an array", seg->key);
        }
    }
    if (idx > 1000000) {
        json_decref(value);
        return eddy_err_set(err, EDDY_EINVAL, "array index %ld too large", idx);
    }
    while (json_array_size(cur) < (size_t)idx)
        json_array_append_new(cur, json_null());
    int rc = (size_t)idx == json_array_size(cur) ? json_array_append_new(cur, value)
                                                 : json_array_set_new(cur, (size_t)idx, value);
    return rc == 0 ? EDDY_OK : eddy_err_set(err, EDDY_ENOMEM, "out of memory setting an element");
}

int eddy_path_set_take(json_t *root, const eddy_path *path, json_t *value, eddy_err *err)
{
    json_t *cur = root;
    if (!value)
        return eddy_err_set(err, EDDY_ENOMEM, "no value to set");
    for (int i = 0; i < path->count - 1; i++) {
        json_t *next = path_step(cur, &path->seg[i]);
        if (!next || json_is_null(next)) {
            next = path->seg[i + 1].key ? json_object() : json_array();
            json_incref(next);
            if (path_put(cur, &path->seg[i], next, err) != EDDY_OK) {
                json_decref(next);
                json_decref(value);
                return err ? err->code : EDDY_EINVAL;
            }
            json_decref(next);
        } else if (!json_is_object(next) && !json_is_array(next)) {
            json_decref(value);
            return eddy_err_set(err, EDDY_EINVAL, "cannot set a property beneath a %s",
                                eddy_json_type_name(next));
        }
        cur = next;
    }
    return path_put(cur, &path->seg[path->count - 1], value, err);
}

int eddy_path_assign_take(json_t *root, const char *expr, json_t *value, eddy_err *err)
{
    eddy_path path;
    int rc = eddy_path_parse(expr, &path, err);
    if (rc != EDDY_OK) {
        json_decref(value);
        return rc;
    }
    return eddy_path_set_take(root, &path, value, err);
}

bool eddy_path_delete(json_t *root, const eddy_path *path)
{
    json_t *cur = root;
    for (int i = 0; i < path->count - 1 && cur; i++)
        cur = path_step(cur, &path->seg[i]);
    if (!cur)
        return false;
    const eddy_path_seg *last = &path->seg[path->count - 1];
    if (json_is_object(cur)) {
        char k[24];
        const char *key = last->key;
        if (!key) {
            snprintf(k, sizeof(k), "%ld", last->index);
            key = k;
        }
        return json_object_del(cur, key) == 0;
    }
    if (json_is_array(cur)) {
        long idx = last->index;
        if (last->key)
            idx = strtol(last->key, NULL, 10);
        /* JavaScript's delete leaves a hole; JSON has none, so the slot becomes null. */
        return idx >= 0 && json_array_set_new(cur, (size_t)idx, json_null()) == 0;
    }
    return false;
}

/* ---- numbers and types ---- */

#define MAX_SAFE_INTEGER 9007199254740991.0

json_t *eddy_json_number(double v)
{
    if (v == floor(v) && fabs(v) <= MAX_SAFE_INTEGER && !(v == 0 && signbit(v)))
        return json_integer((json_int_t)v);
    return json_real(v);
}

bool eddy_parse_number(const char *text, double *out)
{
    if (!text)
        return false;
    while (isspace((unsigned char)*text))
        text++;
    if (!*text)
        return false;
    char *end;
    errno = 0;
    double v;
    if ((text[0] == '0' && (text[1] == 'x' || text[1] == 'X'))) {
        v = (double)strtoull(text, &end, 16);
    } else {
        /* strtod accepts "inf", "nan" and hex floats, which Number() does not */
        const char *p = text;
        if (*p == '+' || *p == '-')
            p++;
        if (strncmp(p, "Infinity", 8) == 0) {
            const char *rest = p + 8;
            while (isspace((unsigned char)*rest))
                rest++;
            if (*rest)
                return false;
            *out = text[0] == '-' ? -INFINITY : INFINITY;
            return true;
        }
        for (p = text; *p && !isspace((unsigned char)*p); p++)
            if (!strchr("0123456789+-.eE", *p))
                return false;
        v = strtod(text, &end);
    }
    if (end == text)
        return false;
    while (isspace((unsigned char)*end))
        end++;
    if (*end)
        return false;
    *out = v;
    return true;
}

double eddy_js_parse_float(const char *text)
{
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    const char *start = p;
    if (*p == '+' || *p == '-')
        p++;
    if (strncmp(p, "Infinity", 8) == 0)
        return *start == '-' ? -INFINITY : INFINITY;
    size_t digits = 0;
    while (*p >= '0' && *p <= '9')
        p++, digits++;
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++, digits++;
    }
    if (!digits)
        return NAN;
    if (*p == 'e' || *p == 'E') {
        const char *e = p + 1;
        if (*e == '+' || *e == '-')
            e++;
        if (*e >= '0' && *e <= '9') {
            while (*e >= '0' && *e <= '9')
                e++;
            p = e;
        }
    }
    size_t len = (size_t)(p - start);
    char small[64];
    char *buf = len < sizeof(small) ? small : eddy_malloc(len + 1);
    if (!buf)
        return NAN;
    memcpy(buf, start, len);
    buf[len] = '\0';
    double v = strtod(buf, NULL);
    if (buf != small)
        eddy_free(buf);
    return v;
}

bool eddy_json_parse_float(const json_t *value, double *out)
{
    if (!value)
        return false;
    if (json_is_number(value)) {
        *out = json_number_value(value);
        return true;
    }
    char *text = eddy_json_to_string(value, false);
    if (!text)
        return false;
    double v = eddy_js_parse_float(text);
    eddy_free(text);
    if (isnan(v))
        return false;
    *out = v;
    return true;
}

/* Decimals with few digits (21.45, 0.005), the common case, without printf: the fewest
 * decimal places k for which r = round(|v| * 10^k) gives r / 10^k == |v|. Both are exact
 * doubles (r < 2^50, 10^k for k <= 15), so the division is the nearest double to the
 * decimal r * 10^-k, which therefore reads back as v; below 2^50 the product is precise
 * enough that rounding it finds r whenever such a decimal exists, and at most one
 * decimal with k places reads back as v. So r is the shortest form, as the search in
 * eddy_format_number finds it. JavaScript writes |v| in [1e-6, 1e21) without an exponent.
 * false when no k fits (many digits, or outside [1e-6, 1e15)). */
static bool format_fixed(double v, char *buf)
{
    static const double p10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    double a = fabs(v);
    if (!(a >= 1e-6 && a < 1e15))
        return false;
    for (int k = 0; k <= 15; k++) {
        double r = nearbyint(a * p10[k]);
        if (r >= 1125899906842624.0) /* 2^50 */
            return false;
        if (r / p10[k] != a)
            continue;
        char digits[24];
        int n = sprintf(digits, "%lld", (long long)r);
        char *o = buf;
        if (v < 0)
            *o++ = '-';
        if (n > k) {
            memcpy(o, digits, (size_t)(n - k));
            o += n - k;
        } else {
            *o++ = '0';
        }
        if (k > 0) {
            *o++ = '.';
            for (int i = n; i < k; i++)
                *o++ = '0';
            memcpy(o, n > k ? digits + n - k : digits, (size_t)(n > k ? k : n));
            o += n > k ? k : n;
        }
        *o = '\0';
        return true;
    }
    return false;
}

char *eddy_format_number(double v, char *buf)
{
    if (isnan(v))
        return strcpy(buf, "NaN");
    if (isinf(v))
        return strcpy(buf, v < 0 ? "-Infinity" : "Infinity");
    if (v == 0)
        return strcpy(buf, "0");
    /* integers up to 2^53 are exact, and JavaScript prints them in full */
    if (fabs(v) < 9007199254740992.0 && v == (double)(long long)v) {
        sprintf(buf, "%lld", (long long)v);
        return buf;
    }
    if (format_fixed(v, buf))
        return buf;
    /* The shortest digits that read back as v: the first precision that round-trips.
     * A normal double whose shortest form has p <= DBL_DIG (15) digits prints at 15
     * digits as those digits and zeros (any decimal of up to 15 digits survives the trip
     * through the nearest double), and a 15-digit form that round-trips starts with the
     * shortest one; so one try at 15 stands for 1 to 15, then 16 and 17. Subnormals have
     * fewer digits of precision and try every precision. */
    char tmp[40];
    int prec;
    for (prec = fabs(v) >= DBL_MIN ? DBL_DIG : 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof(tmp), "%.*e", prec - 1, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    /* tmp is "-d.ddde[+-]XX": split into digits and decimal exponent */
    char digits[24];
    int k = 0;
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg)
        p++;
    for (; *p && *p != 'e'; p++)
        if (isdigit((unsigned char)*p))
            digits[k++] = *p;
    while (k > 1 && digits[k - 1] == '0')
        k--;
    digits[k] = '\0';
    int n = atoi(p + 1) + 1; /* value = 0.digits * 10^n */
    char *o = buf;
    if (neg)
        *o++ = '-';
    if (k <= n && n <= 21) {
        memcpy(o, digits, (size_t)k);
        o += k;
        for (int i = 0; i < n - k; i++)
            *o++ = '0';
    } else if (0 < n && n <= 21) {
        memcpy(o, digits, (size_t)n);
        o += n;
        *o++ = '.';
        memcpy(o, digits + n, (size_t)(k - n));
        o += k - n;
    } else if (-6 < n && n <= 0) {
        *o++ = '0';
        *o++ = '.';
        for (int i = 0; i < -n; i++)
            *o++ = '0';
        memcpy(o, digits, (size_t)k);
        o += k;
    } else {
        *o++ = digits[0];
        if (k > 1) {
            *o++ = '.';
            memcpy(o, digits + 1, (size_t)(k - 1));
            o += k - 1;
        }
        o += sprintf(o, "e%c%d", n - 1 >= 0 ? '+' : '-', abs(n - 1));
    }
    *o = '\0';
    return buf;
}

const char *eddy_json_type_name(const json_t *value)
{
    if (!value)
        return "undefined";
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_NULL:
        return "null";
    }
    return "undefined";
}

bool eddy_json_truthy(const json_t *value)
{
    if (!value || json_is_null(value) || json_is_false(value))
        return false;
    if (json_is_string(value))
        return json_string_length(value) > 0;
    if (json_is_number(value)) {
        double v = json_number_value(value);
        return v != 0 && !isnan(v);
    }
    return true;
}

/* ---- JSON text ---- */

static void sb_grow(eddy_buf *b, size_t more)
{
    if (b->failed || b->len + more + 1 <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + more + 1)
        cap *= 2;
    char *d = eddy_realloc(b->data, cap);
    if (!d) {
        b->failed = true;
        return;
    }
    b->data = d;
    b->cap = cap;
}

void eddy_buf_add(eddy_buf *b, const char *s, size_t n)
{
    sb_grow(b, n);
    if (b->failed)
        return;
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void eddy_buf_str(eddy_buf *b, const char *s)
{
    eddy_buf_add(b, s, strlen(s));
}

static void sb_quoted(eddy_buf *b, const char *s, size_t n)
{
    eddy_buf_add(b, "\"", 1);
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        const char *esc = NULL;
        char ubuf[8];
        switch (c) {
        case '"':
            esc = "\\\"";
            break;
        case '\\':
            esc = "\\\\";
            break;
        case '\b':
            esc = "\\b";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\t':
            esc = "\\t";
            break;
        default:
            if (c < 0x20) {
                snprintf(ubuf, sizeof(ubuf), "\\u%04x", c);
                esc = ubuf;
            }
        }
        if (esc) {
            eddy_buf_add(b, s + i - run, run);
            run = 0;
            eddy_buf_str(b, esc);
        } else {
            run++;
        }
    }
    eddy_buf_add(b, s + n - run, run);
    eddy_buf_add(b, "\"", 1);
}

static void sb_indent(eddy_buf *b, int depth)
{
    eddy_buf_add(b, "\n", 1);
    for (int i = 0; i < depth; i++)
        eddy_buf_add(b, "    ", 4);
}

#define DUMP_MAX_DEPTH 2048

static void dump_value(eddy_buf *b, const json_t *v, int flags, int depth)
{
    char num[40];
    bool pretty = flags & EDDY_JSON_PRETTY;
    if (depth > DUMP_MAX_DEPTH) {
        b->failed = true;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_NULL:
        eddy_buf_str(b, "null");
        break;
    case JSON_TRUE:
        eddy_buf_str(b, "true");
        break;
    case JSON_FALSE:
        eddy_buf_str(b, "false");
        break;
    case JSON_INTEGER:
        snprintf(num, sizeof(num), "%" JSON_INTEGER_FORMAT, json_integer_value(v));
        eddy_buf_str(b, num);
        break;
    case JSON_REAL: {
        double d = json_real_value(v);
        eddy_buf_str(b, isfinite(d) ? eddy_format_number(d, num) : "null");
        break;
    }
    case JSON_STRING:
        sb_quoted(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        eddy_buf_add(b, "[", 1);
        for (size_t i = 0; i < n; i++) {
            if (i)
                eddy_buf_add(b, ",", 1);
            if (pretty)
                sb_indent(b, depth + 1);
            dump_value(b, json_array_get(v, i), flags, depth + 1);
        }
        if (pretty && n)
            sb_indent(b, depth);
        eddy_buf_add(b, "]", 1);
        break;
    }
    case JSON_OBJECT: {
        const char *key;
        json_t *item;
        bool first = true;
        eddy_buf_add(b, "{", 1);
        json_object_foreach((json_t *)v, key, item)
        {
            if (!first)
                eddy_buf_add(b, ",", 1);
            first = false;
            if (pretty)
                sb_indent(b, depth + 1);
            sb_quoted(b, key, strlen(key));
            eddy_buf_str(b, pretty ? ": " : ":");
            dump_value(b, item, flags, depth + 1);
        }
        if (pretty && !first)
            sb_indent(b, depth);
        eddy_buf_add(b, "}", 1);
        break;
    }
    }
}

char *eddy_json_dumps(const json_t *value, int flags)
{
    eddy_buf b = {0};
    if (!value)
        return eddy_strdup("null");
    dump_value(&b, value, flags, 0);
    if (b.failed || !b.data) {
        eddy_free(b.data);
        return b.failed ? NULL : eddy_strdup("");
    }
    return b.data;
}

static void array_join(eddy_buf *b, const json_t *arr, int depth)
{
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *v = json_array_get(arr, i);
        if (i)
            eddy_buf_add(b, ",", 1);
        if (json_is_null(v))
            continue;
        if (json_is_array(v) && depth < 64) {
            array_join(b, v, depth + 1);
        } else {
            char *s = eddy_json_to_string(v, false);
            if (s)
                eddy_buf_str(b, s);
            eddy_free(s);
        }
    }
}

char *eddy_json_to_string(const json_t *value, bool json_objects)
{
    char num[40];
    if (!value)
        return eddy_strdup("undefined");
    switch (json_typeof(value)) {
    case JSON_STRING:
        return eddy_strndup(json_string_value(value), json_string_length(value));
    case JSON_INTEGER:
    case JSON_REAL:
        return eddy_strdup(eddy_format_number(json_number_value(value), num));
    case JSON_TRUE:
        return eddy_strdup("true");
    case JSON_FALSE:
        return eddy_strdup("false");
    case JSON_NULL:
        return eddy_strdup("null");
    case JSON_OBJECT:
        return json_objects ? eddy_json_dumps(value, 0) : eddy_strdup("[object Object]");
    case JSON_ARRAY: {
        if (json_objects)
            return eddy_json_dumps(value, 0);
        eddy_buf b = {0};
        array_join(&b, value, 0);
        if (b.failed) {
            eddy_free(b.data);
            return NULL;
        }
        return b.data ? b.data : eddy_strdup("");
    }
    }
    return NULL;
}

/* Integral reals (from JSON_DECODE_INT_AS_REAL) become integers within the safe range. */
static json_t *normalise_numbers(json_t *v, int depth)
{
    if (json_is_real(v)) {
        json_t *n = eddy_json_number(json_real_value(v));
        json_decref(v);
        return n;
    }
    if (depth > DUMP_MAX_DEPTH)
        return v;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            json_t *item = json_array_get(v, i);
            if (json_is_real(item) || json_is_array(item) || json_is_object(item))
                json_array_set_new(v, i, normalise_numbers(json_incref(item), depth + 1));
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *item;
        void *tmp;
        json_object_foreach_safe(v, tmp, key, item)
        {
            if (json_is_real(item) || json_is_array(item) || json_is_object(item))
                json_object_set_new(v, key, normalise_numbers(json_incref(item), depth + 1));
        }
    }
    return v;
}

/* ---- reading JSON: a fast path in front of jansson ---- */

/* jansson's reader goes through a byte stream, a token buffer and a UTF-8 check per byte:
 * for a device's reading of 170 bytes it took 4 to 6 microseconds, more than the MQTT client's
 * whole read path. This reader builds the same jansson values straight from the text, for the
 * common subset of JSON: no \u escapes, nesting up to FAST_MAX_DEPTH, numbers that strtod
 * reads to a finite value in at most FAST_NUMBER_MAX characters. On anything else, valid
 * or not, it gives up and jansson reads the text from the start, so every error, with its
 * message and position, is still jansson's.
 *
 * Invariant: what this reader accepts, jansson accepts too, with equal values in the same
 * key order, after normalise_numbers (numbers come out of eddy_json_number here).
 * tests/unit/msg_test.c compares the two on seeds and thousands of mutations of them. */

#define FAST_MAX_DEPTH  32 /* below DUMP_MAX_DEPTH, so every number is normalised */
#define FAST_NUMBER_MAX 64

static size_t utf8_sequence(const unsigned char *b, size_t i, size_t n);

typedef struct fast_reader {
    const char *p, *end;
} fast_reader;

static void fast_space(fast_reader *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

/* A string, 'r' just past its opening quote. Sets its bytes and length; '*owned' is set
 * (eddy_free) when escapes had to be decoded into a copy. False: not for the fast path. */
static bool fast_string(fast_reader *r, const char **out, size_t *out_len, char **owned)
{
    const char *start = r->p;
    bool escaped = false;
    *owned = NULL;
    while (r->p < r->end && *r->p != '"') {
        unsigned char c = (unsigned char)*r->p;
        if (c == '\\') {
            if (r->end - r->p < 2 || !strchr("\"\\/bfnrt", r->p[1]) || r->p[1] == '\0')
                return false; /* \u, an invalid escape or the end of the text */
            escaped = true;
            r->p += 2;
        } else if (c < 0x20) {
            return false;
        } else if (c < 0x80) {
            r->p++;
        } else {
            size_t n = utf8_sequence((const unsigned char *)r->p, 0, (size_t)(r->end - r->p));
            if (n == 0)
                return false;
            r->p += n;
        }
    }
    if (r->p == r->end)
        return false;
    size_t raw = (size_t)(r->p - start);
    r->p++; /* the closing quote */
    if (!escaped) {
        *out = start;
        *out_len = raw;
        return true;
    }
    char *copy = eddy_malloc(raw);
    if (!copy)
        return false;
    size_t k = 0;
    for (size_t i = 0; i < raw; i++) {
        char c = start[i];
        if (c == '\\') {
            c = start[++i];
            c = c == 'b'   ? '\b'
                : c == 'f' ? '\f'
                : c == 'n' ? '\n'
                : c == 'r' ? '\r'
                : c == 't' ? '\t'
                           : c;
        }
        copy[k++] = c;
    }
    *out = *owned = copy;
    *out_len = k;
    return true;
}

static bool fast_digit(const fast_reader *r, const char *q)
{
    return q < r->end && *q >= '0' && *q <= '9';
}

/* JSON's number grammar, valued as jansson does with JSON_DECODE_INT_AS_REAL (strtod).
 * Most numbers from devices have few digits: with at most 15 of them (so the digits as an
 * integer are exact in a double) and a power of ten up to 22 (exact too), one IEEE
 * multiplication or division gives the correctly rounded value, which is strtod's
 * (Clinger's fast path). Others go to strtod. */
static json_t *fast_number(fast_reader *r)
{
    static const double powers[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                    1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                    1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};
    const char *q = r->p;
    bool negative = q < r->end && *q == '-';
    uint64_t digits = 0; /* the first 19 digits as an integer */
    int count = 0, scale = 0;
    if (negative)
        q++;
    if (q < r->end && *q == '0') {
        q++;
        count = 1;
    } else if (fast_digit(r, q)) {
        for (; fast_digit(r, q); q++, count++)
            if (count < 19)
                digits = digits * 10 + (uint64_t)(*q - '0');
    } else {
        return NULL;
    }
    if (q < r->end && *q == '.') {
        if (!fast_digit(r, ++q))
            return NULL;
        for (; fast_digit(r, q); q++, count++, scale--)
            if (count < 19)
                digits = digits * 10 + (uint64_t)(*q - '0');
    }
    if (q < r->end && (*q == 'e' || *q == 'E')) {
        q++;
        int sign = 1, exponent = 0;
        if (q < r->end && (*q == '+' || *q == '-'))
            sign = *q++ == '-' ? -1 : 1;
        if (!fast_digit(r, q))
            return NULL;
        for (; fast_digit(r, q); q++)
            if (exponent < 100000)
                exponent = exponent * 10 + (*q - '0');
        scale += sign * exponent;
    }
    double v;
    if (FLT_EVAL_METHOD == 0 && count <= 15 && scale >= -22 && scale <= 22) {
        v = scale >= 0 ? (double)digits * powers[scale] : (double)digits / powers[-scale];
        if (negative)
            v = -v;
    } else {
        size_t n = (size_t)(q - r->p);
        char text[FAST_NUMBER_MAX];
        if (n >= sizeof(text))
            return NULL;
        memcpy(text, r->p, n);
        text[n] = '\0';
        char *stop;
        v = strtod(text, &stop);
        if (stop != text + n || isinf(v)) /* another locale's decimal point; overflow */
            return NULL;
    }
    r->p = q;
    return eddy_json_number(v);
}

static json_t *fast_value(fast_reader *r, int depth);

static json_t *fast_object(fast_reader *r, int depth)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    r->p++; /* { */
    fast_space(r);
    if (r->p < r->end && *r->p == '}') {
        r->p++;
        return obj;
    }
    for (;;) {
        const char *key;
        size_t key_len;
        char *owned;
        if (r->p == r->end || *r->p != '"')
            break;
        r->p++;
        if (!fast_string(r, &key, &key_len, &owned))
            break;
        fast_space(r);
        json_t *v = NULL;
        if (r->p < r->end && *r->p == ':') {
            r->p++;
            fast_space(r);
            v = fast_value(r, depth);
        }
        /* json_object_setn_new_nocheck releases 'v' when it fails */
        bool set = v && json_object_setn_new_nocheck(obj, key, key_len, v) == 0;
        eddy_free(owned);
        if (!set)
            break;
        fast_space(r);
        if (r->p < r->end && *r->p == '}') {
            r->p++;
            return obj;
        }
        if (r->p == r->end || *r->p != ',')
            break;
        r->p++;
        fast_space(r);
    }
    json_decref(obj);
    return NULL;
}

static json_t *fast_array(fast_reader *r, int depth)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    r->p++; /* [ */
    fast_space(r);
    if (r->p < r->end && *r->p == ']') {
        r->p++;
        return arr;
    }
    for (;;) {
        json_t *v = fast_value(r, depth);
        if (!v || json_array_append_new(arr, v) != 0)
            break;
        fast_space(r);
        if (r->p < r->end && *r->p == ']') {
            r->p++;
            return arr;
        }
        if (r->p == r->end || *r->p != ',')
            break;
        r->p++;
        fast_space(r);
    }
    json_decref(arr);
    return NULL;
}

static bool fast_word(fast_reader *r, const char *word, size_t n)
{
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, word, n) != 0)
        return false;
    r->p += n;
    return true;
}

/* Any value; what follows it is checked by the caller (a delimiter, or the end). */
static json_t *fast_value(fast_reader *r, int depth)
{
    if (r->p == r->end)
        return NULL;
    switch (*r->p) {
    case '{':
        return depth < FAST_MAX_DEPTH ? fast_object(r, depth + 1) : NULL;
    case '[':
        return depth < FAST_MAX_DEPTH ? fast_array(r, depth + 1) : NULL;
    case '"': {
        const char *s;
        size_t n;
        char *owned;
        r->p++;
        if (!fast_string(r, &s, &n, &owned))
            return NULL;
        json_t *v = json_stringn_nocheck(s, n);
        eddy_free(owned);
        return v;
    }
    case 't':
        return fast_word(r, "true", 4) ? json_true() : NULL;
    case 'f':
        return fast_word(r, "false", 5) ? json_false() : NULL;
    case 'n':
        return fast_word(r, "null", 4) ? json_null() : NULL;
    default:
        return fast_number(r);
    }
}

/* The value in 'text', or NULL when jansson should read it. */
static json_t *fast_load(const char *text, size_t len)
{
    fast_reader r = {text, text + len};
    fast_space(&r);
    json_t *v = fast_value(&r, 0);
    fast_space(&r);
    if (v && r.p != r.end) {
        json_decref(v);
        return NULL;
    }
    return v;
}

json_t *eddy_json_loadb(const char *text, size_t len, eddy_err *err)
{
    json_t *v = text ? fast_load(text, len) : NULL;
    if (v)
        return v;
    json_error_t je;
    v = json_loadb(text, len, JSON_DECODE_ANY | JSON_DECODE_INT_AS_REAL, &je);
    if (!v) {
        eddy_err_set(err, EDDY_EPARSE, "%s", je.text);
        eddy_err_at_file(err, NULL, je.line, je.column);
        return NULL;
    }
    return normalise_numbers(v, 0);
}

bool eddy_json_equal(const json_t *a, const json_t *b)
{
    if (!a || !b)
        return a == b;
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    if (json_typeof(a) != json_typeof(b))
        return false;
    if (json_is_array(a)) {
        if (json_array_size(a) != json_array_size(b))
            return false;
        for (size_t i = 0; i < json_array_size(a); i++)
            if (!eddy_json_equal(json_array_get(a, i), json_array_get(b, i)))
                return false;
        return true;
    }
    if (json_is_object(a)) {
        if (json_object_size(a) != json_object_size(b))
            return false;
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)a, key, item)
        {
            if (!eddy_json_equal(item, json_object_get(b, key)))
                return false;
        }
        return true;
    }
    return json_equal((json_t *)a, (json_t *)b);
}

/* ---- bytes ---- */

/* Length of the well-formed UTF-8 sequence at b[i], or 0 if it is not one. */
static size_t utf8_sequence(const unsigned char *b, size_t i, size_t n)
{
    size_t need = b[i] < 0x80             ? 1
                  : (b[i] & 0xE0) == 0xC0 ? 2
                  : (b[i] & 0xF0) == 0xE0 ? 3
                  : (b[i] & 0xF8) == 0xF0 ? 4
                                          : 0;
    if (need == 0 || i + need > n)
        return 0;
    if (need == 1)
        return 1;
    unsigned cp = b[i] & (0xFFu >> (need + 1));
    for (size_t j = 1; j < need; j++) {
        if ((b[i + j] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (b[i + j] & 0x3F);
    }
    unsigned lowest = need == 2 ? 0x80u : need == 3 ? 0x800u : 0x10000u;
    if (cp < lowest || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return need;
}

/* Length of the run of ASCII bytes at the start of 'b', checked 8 bytes at a time: most
 * payloads are ASCII, and a byte-by-byte decode was a tenth of eddy's time per MQTT message. */
static size_t ascii_prefix(const unsigned char *b, size_t n)
{
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t word;
        memcpy(&word, b + i, sizeof(word));
        if (word & 0x8080808080808080u)
            break;
    }
    while (i < n && b[i] < 0x80)
        i++;
    return i;
}

bool eddy_utf8_valid(const void *bytes, size_t n)
{
    const unsigned char *b = bytes;
    for (size_t i = 0; i < n;) {
        i += ascii_prefix(b + i, n - i);
        if (i == n)
            break;
        size_t len = utf8_sequence(b, i, n);
        if (len == 0)
            return false;
        i += len;
    }
    return true;
}

char *eddy_utf8_decode(const void *bytes, size_t n, size_t *out_len)
{
    const unsigned char *b = bytes;
    char *o = eddy_malloc(n * 3 + 1);
    size_t k = 0;
    if (!o)
        return NULL;
    size_t run = 0; /* valid bytes from 'run' up to 'i' are still to be copied */
    for (size_t i = 0; i < n;) {
        i += ascii_prefix(b + i, n - i);
        if (i == n)
            break;
        size_t len = utf8_sequence(b, i, n);
        if (len) {
            i += len;
            continue;
        }
        memcpy(o + k, b + run, i - run);
        k += i - run;
        memcpy(o + k, "\xEF\xBF\xBD", 3);
        k += 3;
        run = ++i;
    }
    if (n > run) {
        memcpy(o + k, b + run, n - run);
        k += n - run;
    }
    o[k] = '\0';
    *out_len = k;
    return o;
}

json_t *eddy_buffer_json(const void *bytes, size_t n)
{
    const unsigned char *b = bytes;
    json_t *data = json_array();
    json_t *buf = json_object();
    if (!data || !buf) {
        json_decref(data);
        json_decref(buf);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        json_array_append_new(data, json_integer(b[i]));
    json_object_set_new(buf, "type", json_string("Buffer"));
    json_object_set_new(buf, "data", data);
    return buf;
}

bool eddy_buffer_bytes(const json_t *value, unsigned char **out, size_t *len)
{
    const char *type = json_string_value(json_object_get(value, "type"));
    const json_t *data = json_object_get(value, "data");
    if (!type || strcmp(type, "Buffer") != 0 || !json_is_array(data))
        return false;
    size_t n = json_array_size(data);
    unsigned char *b = eddy_malloc(n ? n : 1);
    if (!b)
        return false;
    for (size_t i = 0; i < n; i++) {
        json_int_t v = json_integer_value(json_array_get(data, i));
        b[i] = (unsigned char)(v & 0xFF); /* as Buffer.from(array) keeps the low byte */
    }
    *out = b;
    *len = n;
    return true;
}

char *eddy_base64_encode(const void *bytes, size_t n)
{
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *b = bytes;
    char *o = eddy_malloc((n + 2) / 3 * 4 + 1);
    if (!o)
        return NULL;
    size_t k = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        unsigned v = (unsigned)b[i] << 16 | (unsigned)b[i + 1] << 8 | b[i + 2];
        o[k++] = alphabet[v >> 18];
        o[k++] = alphabet[(v >> 12) & 63];
        o[k++] = alphabet[(v >> 6) & 63];
        o[k++] = alphabet[v & 63];
    }
    if (i < n) {
        unsigned v = (unsigned)b[i] << 16 | (i + 1 < n ? (unsigned)b[i + 1] << 8 : 0);
        o[k++] = alphabet[v >> 18];
        o[k++] = alphabet[(v >> 12) & 63];
        o[k++] = i + 1 < n ? alphabet[(v >> 6) & 63] : '=';
        o[k++] = '=';
    }
    o[k] = '\0';
    return o;
}

size_t eddy_utf16_length(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((c & 0xC0) != 0x80)
            n += c >= 0xF0 ? 2 : 1;
    }
    return n;
}

int eddy_hex_digit(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *eddy_read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    eddy_buf b = {0};
    char chunk[65536];
    size_t got;
    while ((got = fread(chunk, 1, sizeof(chunk), f)) > 0)
        eddy_buf_add(&b, chunk, got);
    bool bad = ferror(f) != 0;
    fclose(f);
    if (bad || b.failed) {
        eddy_free(b.data);
        return NULL;
    }
    if (!b.data && !(b.data = eddy_strdup("")))
        return NULL;
    *len = b.len;
    return b.data;
}
