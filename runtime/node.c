/* node.c: the parts of a node's life that need no engine state: filling declared
 * properties from the flow JSON (used by `eddy check` and by start alike) and evaluating
 * Node-RED typed values. */
#include "node.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mem.h"
#include "node_int.h"

const char *node__str(const json_t *config, const char *key)
{
    const char *s = json_string_value(json_object_get(config, key));
    return s ? s : "";
}

int node__output_count(const eddy_node_type *type, const json_t *config)
{
    if (type->outputs >= 0)
        return type->outputs;
    json_t *outputs = json_object_get(config, "outputs");
    double n;
    if (json_is_number(outputs))
        return (int)json_number_value(outputs);
    if (json_is_string(outputs) && eddy_parse_number(json_string_value(outputs), &n))
        return (int)n;
    return (int)json_array_size(json_object_get(config, "wires"));
}

/* ---- property filling ---- */

typedef struct fill_ctx {
    node__report_fn report;
    void *data;
    int problems;
} fill_ctx;

static void fill_fail(fill_ctx *ctx, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void fill_fail(fill_ctx *ctx, int code, const char *fmt, ...)
{
    char msg[EDDY_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    ctx->problems++;
    if (ctx->report)
        ctx->report(ctx->data, code, msg);
}

/* The value to use for 'prop': the flow's, else the parsed default (a new reference kept
 * in 'defaults' so that borrowed strings stay valid), else NULL. */
static const json_t *prop_value(const eddy_prop *prop, const json_t *config, json_t *defaults)
{
    const json_t *v = json_object_get(config, prop->name);
    /* "" means "use the default" except for free-text strings (Node-RED's editor saves
     * untouched fields as "") */
    bool blank = !v || json_is_null(v) ||
                 (json_is_string(v) && json_string_length(v) == 0 &&
                  (prop->kind != EDDY_PROP_STR || prop->choices));
    if (!blank)
        return v;
    if (prop->def) {
        json_t *d = json_loads(prop->def, JSON_DECODE_ANY, NULL);
        /* set_new frees 'd' if it fails, so only a successful set may return it */
        if (d && json_object_set_new(defaults, prop->name, d) == 0)
            return d;
    }
    return v && json_is_string(v) && prop->kind == EDDY_PROP_STR ? v : NULL;
}

static bool number_of(const json_t *v, double *out)
{
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return true;
    }
    return json_is_string(v) && eddy_parse_number(json_string_value(v), out) && isfinite(*out);
}

static void fill_one(fill_ctx *ctx, const eddy_prop *p, const json_t *v, char *state,
                     node__config_check_fn config_check, void *check_data)
{
    double num;
    switch (p->kind) {
    case EDDY_PROP_STR: {
        const char *s = json_string_value(v);
        if (v && !s) {
            fill_fail(ctx, EDDY_EINVAL, "property '%s' must be a string, not %s", p->name,
                      eddy_json_type_name(v));
            return;
        }
        if (p->required && (!s || !*s)) {
            fill_fail(ctx, EDDY_EINVAL, "property '%s' is required", p->name);
            return;
        }
        if (s && p->choices) {
            char probe[160];
            snprintf(probe, sizeof(probe), "|%s|", s);
            if (!strstr(p->choices, probe)) {
                fill_fail(ctx, EDDY_EINVAL, "property '%s' is '%s'; expected one of %s", p->name, s,
                          p->choices);
                return;
            }
        }
        *(const char **)(state + p->offset) = s ? s : "";
        return;
    }
    case EDDY_PROP_NUM:
    case EDDY_PROP_INT:
        if (!v) {
            if (p->required)
                fill_fail(ctx, EDDY_EINVAL, "property '%s' is required", p->name);
            return;
        }
        if (!number_of(v, &num)) {
            char *text = eddy_json_dumps(v, 0);
            fill_fail(ctx, EDDY_EINVAL, "property '%s' must be a number, not %s", p->name,
                      text ? text : "?");
            eddy_free(text);
            return;
        }
        if (p->kind == EDDY_PROP_INT) {
            if (num != floor(num) || fabs(num) > 9e15) {
                fill_fail(ctx, EDDY_EINVAL, "property '%s' must be a whole number", p->name);
                return;
            }
            *(long *)(state + p->offset) = (long)num;
        } else {
            *(double *)(state + p->offset) = num;
        }
        return;
    case EDDY_PROP_BOOL:
        if (!v) {
            if (p->required)
                fill_fail(ctx, EDDY_EINVAL, "property '%s' is required", p->name);
            return;
        }
        if (json_is_boolean(v)) {
            *(bool *)(state + p->offset) = json_is_true(v);
        } else if (json_is_string(v) && (strcmp(json_string_value(v), "true") == 0 ||
                                         strcmp(json_string_value(v), "false") == 0)) {
            *(bool *)(state + p->offset) = strcmp(json_string_value(v), "true") == 0;
        } else {
            fill_fail(ctx, EDDY_EINVAL, "property '%s' must be true or false", p->name);
        }
        return;
    case EDDY_PROP_JSON:
        if (!v && p->required) {
            fill_fail(ctx, EDDY_EINVAL, "property '%s' is required", p->name);
            return;
        }
        *(const json_t **)(state + p->offset) = v;
        return;
    case EDDY_PROP_CONFIG: {
        const char *id = json_string_value(v);
        if (!id || !*id) {
            if (p->required)
                fill_fail(ctx, EDDY_EINVAL, "property '%s' must name a %s config node", p->name,
                          p->choices ? p->choices : "config");
            return;
        }
        if (config_check && !config_check(check_data, id, p->choices))
            fill_fail(ctx, EDDY_ENOTFOUND, "property '%s' refers to missing %s config node '%s'",
                      p->name, p->choices ? p->choices : "config", id);
        return;
    }
    }
}

int node__props_fill(const eddy_node_type *type, const json_t *config, void *state,
                     json_t *defaults, node__config_check_fn config_check, node__report_fn report,
                     void *data)
{
    fill_ctx ctx = {report, data, 0};
    if (!type->props)
        return 0;
    for (const eddy_prop *p = type->props; p->name; p++)
        fill_one(&ctx, p, prop_value(p, config, defaults), state, config_check, data);
    return ctx.problems;
}

/* ---- "${NAME}" properties ---- */

bool node__is_env_ref(const json_t *v)
{
    const char *s = json_string_value(v);
    size_t len = s ? strlen(s) : 0;
    return len > 3 && s[0] == '$' && s[1] == '{' && s[len - 1] == '}' &&
           !memchr(s + 2, '}', len - 3);
}

#define ENV_REF_DEPTH 8 /* how deep inside a node's properties references are looked for */

static bool has_env_ref_at(const json_t *v, int depth)
{
    if (node__is_env_ref(v))
        return true;
    if (depth > ENV_REF_DEPTH)
        return false;
    const char *key;
    json_t *item;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach((json_t *)v, key,
                            item) if (strcmp(key, "wires") != 0 &&
                                      has_env_ref_at(item, depth + 1)) return true;
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, item) if (has_env_ref_at(item, depth + 1)) return true;
    }
    return false;
}

bool node__has_env_ref(const json_t *config)
{
    return has_env_ref_at(config, 0);
}

/* The value of reference 'ref' ("${NAME}"), a new reference; "" when unresolved. */
static json_t *resolved(const json_t *ref, node__env_fn resolve, void *data)
{
    char name[256];
    const char *s = json_string_value(ref);
    snprintf(name, sizeof(name), "%.*s", (int)(strlen(s) - 3), s + 2);
    json_t *value = resolve ? resolve(data, name) : NULL;
    return value ? value : json_string("");
}

/* Replaces references inside 'v' (a copy the caller owns) in place. */
static void substitute_in(json_t *v, int depth, node__env_fn resolve, void *data)
{
    if (depth > ENV_REF_DEPTH)
        return;
    const char *key;
    json_t *item;
    size_t i;
    if (json_is_object(v)) {
        json_object_foreach(v, key, item)
        {
            if (strcmp(key, "wires") == 0)
                continue;
            if (node__is_env_ref(item))
                json_object_set_new(v, key, resolved(item, resolve, data));
            else
                substitute_in(item, depth + 1, resolve, data);
        }
    } else if (json_is_array(v)) {
        json_array_foreach(v, i, item)
        {
            if (node__is_env_ref(item))
                json_array_set_new(v, i, resolved(item, resolve, data));
            else
                substitute_in(item, depth + 1, resolve, data);
        }
    }
}

json_t *node__substitute_env(const json_t *config, node__env_fn resolve, void *data)
{
    json_t *copy = json_deep_copy(config);
    if (copy)
        substitute_in(copy, 0, resolve, data);
    return copy;
}

/* ---- typed values ---- */

static const char *const typed_types[] = {"str", "num",  "bool",   "json", "date", "env",
                                          "msg", "flow", "global", "re",   "bin",  NULL};

bool eddy_typed_supported(const char *type)
{
    for (int i = 0; typed_types[i]; i++)
        if (strcmp(type, typed_types[i]) == 0)
            return true;
    return false;
}

static json_t *iso_date(int64_t ms)
{
    char buf[64];
    time_t secs = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
    return json_string(buf);
}

/* Node-RED strips an optional "#:(store)::" context-store prefix from context keys. */
static const char *context_key(const char *key)
{
    if (key[0] == '#' && key[1] == ':' && key[2] == '(') {
        const char *end = strstr(key, ")::");
        if (end)
            return end + 3;
    }
    return key;
}

/* Replaces each "${NAME}" in 'text' by the env value (as text). Ownership: new string. */
static json_t *expand_env(eddy_node *node, const char *text)
{
    size_t cap = strlen(text) + 64, len = 0;
    char *out = eddy_malloc(cap);
    if (!out)
        return NULL;
    for (const char *p = text; *p;) {
        const char *end = p[0] == '$' && p[1] == '{' ? strchr(p + 2, '}') : NULL;
        char *piece = NULL;
        const char *src = p;
        size_t n = 1;
        if (end) {
            char name[256];
            snprintf(name, sizeof(name), "%.*s", (int)(end - p - 2), p + 2);
            json_t *v = eddy_node_env(node, name);
            piece = v ? eddy_json_to_string(v, true) : eddy_strdup("");
            src = piece;
            n = piece ? strlen(piece) : 0;
            p = end + 1;
        } else {
            p++;
        }
        if (len + n + 1 > cap) {
            cap = (len + n + 1) * 2;
            char *grown = eddy_realloc(out, cap);
            if (!grown) {
                eddy_free(piece);
                eddy_free(out);
                return NULL;
            }
            out = grown;
        }
        if (src)
            memcpy(out + len, src, n);
        len += n;
        eddy_free(piece);
    }
    out[len] = '\0';
    json_t *s = json_stringn(out, len);
    eddy_free(out);
    return s;
}

static int eval_scalar(eddy_node *node, const char *type, const json_t *value, const char *text,
                       json_t **out, eddy_err *err)
{
    double num;
    if (strcmp(type, "str") == 0 || strcmp(type, "re") == 0) {
        *out = json_is_string(value) ? json_incref((json_t *)value) : json_string(text);
    } else if (strcmp(type, "num") == 0) {
        if (json_is_number(value))
            *out = json_incref((json_t *)value);
        else if (eddy_parse_number(text, &num) && isfinite(num))
            *out = eddy_json_number(num);
        else
            return eddy_err_set(err, EDDY_EINVAL, "'%s' is not a number", text);
    } else if (strcmp(type, "bool") == 0) {
        *out = json_boolean(json_is_true(value) || strcasecmp(text, "true") == 0);
    } else if (strcmp(type, "json") == 0 || strcmp(type, "bin") == 0) {
        if (!json_is_string(value)) {
            *out = json_deep_copy(value);
            return EDDY_OK;
        }
        eddy_err perr;
        *out = eddy_json_loadb(text, strlen(text), &perr);
        if (!*out)
            return eddy_err_set(err, EDDY_EPARSE, "invalid JSON value '%.80s': %s", text, perr.msg);
    } else if (strcmp(type, "date") == 0) {
        int64_t now = eddy_loop_wall(eddy_node_loop(node));
        *out = strcmp(text, "iso") == 0 || strcmp(text, "object") == 0
                   ? iso_date(now)
                   : json_integer((json_int_t)now);
    } else if (strcmp(type, "env") == 0) {
        if (strstr(text, "${")) {
            *out = expand_env(node, text);
        } else {
            json_t *v = eddy_node_env(node, text);
            *out = v ? json_deep_copy(v) : NULL;
        }
    } else {
        return eddy_err_set(err, EDDY_EUNSUPPORTED, "value type '%s' is not supported", type);
    }
    return EDDY_OK;
}

int eddy_node_eval_typed(eddy_node *node, const json_t *msg, const char *type, const json_t *value,
                         json_t **out, eddy_err *err)
{
    *out = NULL;
    if (!type || !*type)
        type = "str";
    char numbuf[40];
    const char *text = json_string_value(value);
    if (!text) {
        text = json_is_number(value)  ? eddy_format_number(json_number_value(value), numbuf)
               : json_is_true(value)  ? "true"
               : json_is_false(value) ? "false"
                                      : "";
    }
    if (strcmp(type, "jsonata") == 0)
        return eddy_err_set(err, EDDY_EUNSUPPORTED,
                            "JSONata expressions are not supported by eddy; use a lua node");
    if (strcmp(type, "msg") == 0) {
        if (!msg)
            return EDDY_OK;
        eddy_path path;
        int rc = eddy_path_parse(strncmp(text, "msg.", 4) == 0 ? text + 4 : text, &path, err);
        if (rc)
            return rc;
        json_t *v = eddy_path_get((json_t *)msg, &path);
        *out = v ? json_deep_copy(v) : NULL;
        return EDDY_OK;
    }
    if (strcmp(type, "flow") == 0 || strcmp(type, "global") == 0) {
        json_t *v = eddy_node_context_get(
            node, strcmp(type, "flow") == 0 ? EDDY_CTX_FLOW : EDDY_CTX_GLOBAL, context_key(text));
        *out = v ? json_deep_copy(v) : NULL;
        return EDDY_OK;
    }
    int rc = eval_scalar(node, type, value, text, out, err);
    if (rc == EDDY_OK && !*out && strcmp(type, "env") != 0)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory evaluating a %s value", type);
    return rc;
}
