/* template.c: Node-RED's "template" node. Renders a mustache template (or plain text) against
 * the message, flow/global context and env, and puts the text, or the JSON value it holds,
 * into a message property or a context key. The mustache renderer is our own and follows
 * mustache.js 4.2 (the version Node-RED ships); partials and lambdas do not apply to JSON. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "msg.h"
#include "node.h"

/* ---- parsed templates ---- */

enum mt_kind {
    MT_TEXT,     /* literal text */
    MT_NAME,     /* {{name}}: HTML-escaped */
    MT_RAW,      /* {{{name}}} and {{&name}}: as is */
    MT_SECTION,  /* {{#name}} ... {{/name}} */
    MT_INVERTED, /* {{^name}} ... {{/name}} */
    MT_CLOSE,    /* {{/name}}: ends the section whose 'end' points here */
    MT_PARTIAL,  /* {{>name}}: renders nothing (Node-RED gives mustache no partials) */
};

typedef struct mt_token {
    enum mt_kind kind;
    const char *text; /* into mt_template.pool; tag names are NUL-terminated */
    size_t len;       /* bytes of 'text' */
    int end;          /* sections: index of the matching MT_CLOSE */
} mt_token;

typedef struct mt_template {
    mt_token *tokens;
    int count;
    char *pool; /* text of every token */
} mt_template;

static void mt_free(mt_template *t)
{
    eddy_free(t->tokens);
    eddy_free(t->pool);
    memset(t, 0, sizeof(*t));
}

/* ---- parsing, as mustache.js's parseTemplate ---- */

/* One raw token: text tokens are single bytes so that the white space of a line that holds
 * only section, comment or delimiter tags can be dropped afterwards ("standalone" lines). */
typedef struct mt_raw {
    char kind; /* 't' text, or the tag type: 'n' name, '&', '#', '^', '/', '>', '!', '=' */
    bool deleted;
    size_t start, len; /* byte range of the text, or of the tag's name */
} mt_raw;

typedef struct mt_parser {
    const char *src;
    size_t len;
    mt_raw *raw;
    int nraw, capraw;
    int *spaces; /* raw indices of white space on the current line */
    int nspaces, capspaces;
    bool has_tag, non_space;
    char open[32], close[32]; /* current delimiters */
    eddy_err *err;
    bool oom;
} mt_parser;

static bool mt_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

/* JavaScript string positions count UTF-16 units; mustache.js reports those. */
static size_t mt_js_pos(const char *s, size_t byte_pos)
{
    return eddy_utf16_length(s, byte_pos);
}

static bool mt_push_raw(mt_parser *p, char kind, size_t start, size_t len)
{
    if (p->nraw == p->capraw) {
        int cap = p->capraw ? p->capraw * 2 : 64;
        mt_raw *grown = eddy_realloc(p->raw, (size_t)cap * sizeof(*grown));
        if (!grown) {
            p->oom = true;
            return false;
        }
        p->raw = grown;
        p->capraw = cap;
    }
    p->raw[p->nraw++] = (mt_raw){kind, false, start, len};
    return true;
}

static bool mt_push_space(mt_parser *p, int index)
{
    if (p->nspaces == p->capspaces) {
        int cap = p->capspaces ? p->capspaces * 2 : 32;
        int *grown = eddy_realloc(p->spaces, (size_t)cap * sizeof(*grown));
        if (!grown) {
            p->oom = true;
            return false;
        }
        p->spaces = grown;
        p->capspaces = cap;
    }
    p->spaces[p->nspaces++] = index;
    return true;
}

static void mt_strip_space(mt_parser *p)
{
    if (p->has_tag && !p->non_space) {
        for (int i = 0; i < p->nspaces; i++)
            p->raw[p->spaces[i]].deleted = true;
    }
    p->nspaces = 0;
    p->has_tag = false;
    p->non_space = false;
}

/* Index of the first 'needle' at or after 'from', or p->len. */
static size_t mt_find(const mt_parser *p, size_t from, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = from; i + n <= p->len; i++)
        if (memcmp(p->src + i, needle, n) == 0)
            return i;
    return p->len;
}

/* Where /\s*needle/ first matches at or after 'from': the start of the white space run
 * before the first 'needle'; p->len if there is none. */
static size_t mt_find_ws(const mt_parser *p, size_t from, const char *needle)
{
    size_t at = mt_find(p, from, needle);
    if (at == p->len)
        return at;
    while (at > from && mt_is_space(p->src[at - 1]))
        at--;
    return at;
}

static int mt_set_tags(mt_parser *p, size_t start, size_t len)
{
    /* value.split(/\s+/, 2): two delimiters separated by white space */
    const char *s = p->src + start;
    size_t a = 0;
    while (a < len && !mt_is_space(s[a]))
        a++;
    size_t b = a;
    while (b < len && mt_is_space(s[b]))
        b++;
    size_t c = b;
    while (c < len && !mt_is_space(s[c]))
        c++;
    if (a == 0 || b == a || c == b || a >= sizeof(p->open) || c - b >= sizeof(p->close))
        return eddy_err_set(p->err, EDDY_EPARSE, "Invalid tags: %.*s", (int)len, s);
    memcpy(p->open, s, a);
    p->open[a] = '\0';
    memcpy(p->close, s + b, c - b);
    p->close[c - b] = '\0';
    return EDDY_OK;
}

static int mt_parse_tokens(mt_parser *p)
{
    size_t pos = 0;
    int stack[64];
    int depth = 0;
    while (pos < p->len) {
        size_t at = mt_find(p, pos, p->open);
        for (size_t i = pos; i < at; i++) {
            char c = p->src[i];
            if (mt_is_space(c)) {
                if (!mt_push_space(p, p->nraw))
                    return EDDY_ENOMEM;
            } else {
                p->non_space = true;
            }
            if (!mt_push_raw(p, 't', i, 1))
                return EDDY_ENOMEM;
            if (c == '\n')
                mt_strip_space(p);
        }
        pos = at;
        if (pos >= p->len)
            break;
        size_t tag_at = pos;
        pos += strlen(p->open);
        while (pos < p->len && mt_is_space(p->src[pos]))
            pos++;
        p->has_tag = true;
        char kind = 'n';
        if (pos < p->len && strchr("#^/>{&=!", p->src[pos]) && p->src[pos]) {
            kind = p->src[pos];
            pos++;
        }
        while (pos < p->len && mt_is_space(p->src[pos]))
            pos++;
        size_t vstart = pos, vend;
        if (kind == '=') {
            vend = mt_find_ws(p, pos, "=");
            pos = vend;
            while (pos < p->len && mt_is_space(p->src[pos]))
                pos++;
            if (pos < p->len && p->src[pos] == '=')
                pos++;
            pos = mt_find_ws(p, pos, p->close);
        } else if (kind == '{') {
            char curly_close[40];
            snprintf(curly_close, sizeof(curly_close), "}%s", p->close);
            vend = mt_find_ws(p, pos, curly_close);
            pos = vend;
            while (pos < p->len && mt_is_space(p->src[pos]))
                pos++;
            if (pos < p->len && p->src[pos] == '}')
                pos++;
            else
                pos = vend;
            pos = mt_find_ws(p, pos, p->close);
            kind = '&';
        } else {
            vend = mt_find_ws(p, pos, p->close);
            pos = vend;
        }
        while (pos < p->len && mt_is_space(p->src[pos]))
            pos++;
        size_t clen = strlen(p->close);
        if (pos + clen > p->len || memcmp(p->src + pos, p->close, clen) != 0)
            return eddy_err_set(p->err, EDDY_EPARSE, "Unclosed tag at %zu",
                                mt_js_pos(p->src, p->len));
        pos += clen;
        if (!mt_push_raw(p, kind, vstart, vend - vstart))
            return EDDY_ENOMEM;
        if (kind == '#' || kind == '^') {
            if (depth == (int)(sizeof(stack) / sizeof(stack[0])))
                return eddy_err_set(p->err, EDDY_EPARSE, "sections nested too deeply at %zu",
                                    mt_js_pos(p->src, tag_at));
            stack[depth++] = p->nraw - 1;
        } else if (kind == '/') {
            if (depth == 0)
                return eddy_err_set(p->err, EDDY_EPARSE, "Unopened section \"%.*s\" at %zu",
                                    (int)(vend - vstart), p->src + vstart,
                                    mt_js_pos(p->src, tag_at));
            const mt_raw *open = &p->raw[stack[--depth]];
            if (open->len != vend - vstart ||
                memcmp(p->src + open->start, p->src + vstart, open->len) != 0)
                return eddy_err_set(p->err, EDDY_EPARSE, "Unclosed section \"%.*s\" at %zu",
                                    (int)open->len, p->src + open->start,
                                    mt_js_pos(p->src, tag_at));
        } else if (kind == 'n' || kind == '&') {
            p->non_space = true;
        } else if (kind == '=') {
            int rc = mt_set_tags(p, vstart, vend - vstart);
            if (rc)
                return rc;
        }
    }
    mt_strip_space(p);
    if (depth > 0) {
        const mt_raw *open = &p->raw[stack[depth - 1]];
        return eddy_err_set(p->err, EDDY_EPARSE, "Unclosed section \"%.*s\" at %zu", (int)open->len,
                            p->src + open->start, mt_js_pos(p->src, p->len));
    }
    return EDDY_OK;
}

/* Squashes the raw tokens into 'out' and links sections to their ends. */
static int mt_build(mt_parser *p, mt_template *out)
{
    out->pool = eddy_malloc(p->len + (size_t)p->nraw + 1);
    out->tokens = eddy_calloc((size_t)p->nraw + 1, sizeof(mt_token));
    if (!out->pool || !out->tokens)
        return EDDY_ENOMEM;
    size_t used = 0;
    int stack[64], depth = 0;
    for (int i = 0; i < p->nraw; i++) {
        const mt_raw *r = &p->raw[i];
        if (r->deleted || r->kind == '!' || r->kind == '=')
            continue;
        char *dst = out->pool + used;
        memcpy(dst, p->src + r->start, r->len);
        if (r->kind == 't') {
            used += r->len;
            mt_token *last = out->count ? &out->tokens[out->count - 1] : NULL;
            if (last && last->kind == MT_TEXT && last->text + last->len == dst) {
                last->len += r->len;
                continue;
            }
            out->tokens[out->count++] = (mt_token){MT_TEXT, dst, r->len, 0};
            continue;
        }
        dst[r->len] = '\0';
        used += r->len + 1;
        mt_token *t = &out->tokens[out->count];
        *t = (mt_token){MT_NAME, dst, r->len, 0};
        switch (r->kind) {
        case '&':
            t->kind = MT_RAW;
            break;
        case '#':
        case '^':
            t->kind = r->kind == '#' ? MT_SECTION : MT_INVERTED;
            stack[depth++] = out->count;
            break;
        case '/':
            t->kind = MT_CLOSE;
            out->tokens[stack[--depth]].end = out->count;
            break;
        case '>':
            t->kind = MT_PARTIAL;
            break;
        default:
            break;
        }
        out->count++;
    }
    return EDDY_OK;
}

/* Parses 'src' (of 'len' bytes) into 'out'. Errors carry mustache.js's messages. */
static int mt_parse(const char *src, size_t len, mt_template *out, eddy_err *err)
{
    mt_parser p = {.src = src, .len = len, .err = err};
    memset(out, 0, sizeof(*out));
    strcpy(p.open, "{{");
    strcpy(p.close, "}}");
    int rc = mt_parse_tokens(&p);
    if (rc == EDDY_OK && p.oom)
        rc = EDDY_ENOMEM;
    if (rc == EDDY_OK)
        rc = mt_build(&p, out);
    if (rc == EDDY_ENOMEM)
        eddy_err_set(err, EDDY_ENOMEM, "out of memory parsing the template");
    eddy_free(p.raw);
    eddy_free(p.spaces);
    if (rc != EDDY_OK)
        mt_free(out);
    return rc;
}

/* ---- rendering ---- */

static void mt_add_escaped(eddy_buf *b, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&':
            eddy_buf_add(b, "&amp;", 5);
            break;
        case '<':
            eddy_buf_add(b, "&lt;", 4);
            break;
        case '>':
            eddy_buf_add(b, "&gt;", 4);
            break;
        case '"':
            eddy_buf_add(b, "&quot;", 6);
            break;
        case '\'':
            eddy_buf_add(b, "&#39;", 5);
            break;
        case '/':
            eddy_buf_add(b, "&#x2F;", 6);
            break;
        case '`':
            eddy_buf_add(b, "&#x60;", 6);
            break;
        case '=':
            eddy_buf_add(b, "&#x3D;", 6);
            break;
        default:
            eddy_buf_add(b, s, 1);
        }
    }
}

/* A mustache context: the view and the one it was pushed onto. */
typedef struct mt_frame {
    const json_t *view;
    const struct mt_frame *parent;
} mt_frame;

typedef struct mt_render {
    eddy_node *node;
    bool is_json; /* output "json": strings of the message are escaped for JSON text */
    json_t *keep; /* values made while rendering (string lengths, env values), freed after */
    eddy_buf out;
    int depth;
} mt_render;

static const json_t *mt_keep(mt_render *r, json_t *v)
{
    if (!v)
        return NULL;
    json_array_append_new(r->keep, v);
    return v;
}

/* 'key' as a canonical array index ("0", "12"; not "01"), or -1. */
static long mt_index(const char *key)
{
    if (!*key || (key[0] == '0' && key[1]) || strlen(key) > 9)
        return -1;
    for (const char *k = key; *k; k++)
        if (*k < '0' || *k > '9')
            return -1;
    return strtol(key, NULL, 10);
}

static size_t mt_utf16_len(const char *s, size_t n)
{
    return mt_js_pos(s, n);
}

/* The character at UTF-16 index 'idx' of a string, as a new JSON string, or NULL. */
static json_t *mt_char_at(const char *s, size_t n, long idx)
{
    size_t unit = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t clen = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        size_t units = c >= 0xF0 ? 2 : 1;
        if ((long)unit == idx)
            return json_stringn(s + i, clen);
        if ((long)(unit + units) > idx)
            return NULL; /* half of a surrogate pair */
        unit += units;
        i += clen;
    }
    return NULL;
}

/* JavaScript's 'key in v' for the values JSON has (own properties only), plus the lengths
 * and characters of strings (mustache.js checks primitives' own properties for dotted names).
 * Sets *hit; returns the value (borrowed from 'v' or kept by 'r'). */
static const json_t *mt_prop(mt_render *r, const json_t *v, const char *key, bool primitives,
                             bool *hit)
{
    *hit = false;
    if (json_is_object(v)) {
        const json_t *x = json_object_get(v, key);
        *hit = x != NULL;
        return x;
    }
    if (json_is_array(v)) {
        if (strcmp(key, "length") == 0) {
            *hit = true;
            return mt_keep(r, json_integer((json_int_t)json_array_size(v)));
        }
        long idx = mt_index(key);
        if (idx >= 0 && (size_t)idx < json_array_size(v)) {
            *hit = true;
            return json_array_get(v, (size_t)idx);
        }
        return NULL;
    }
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        size_t n = json_string_length(v);
        const json_t *x = NULL;
        if (strcmp(key, "length") == 0) {
            x = mt_keep(r, json_integer((json_int_t)mt_utf16_len(s, n)));
        } else {
            long idx = mt_index(key);
            if (idx >= 0)
                x = mt_keep(r, mt_char_at(s, n, idx));
        }
        *hit = primitives && x != NULL;
        return x;
    }
    return NULL;
}

/* mustache.js's Context.lookup: the innermost context where the whole name resolves. */
static const json_t *mt_lookup_chain(mt_render *r, const mt_frame *f, const char *name)
{
    if (strcmp(name, ".") == 0)
        return f->view;
    const char *dot = strchr(name, '.');
    for (; f; f = f->parent) {
        bool hit = false;
        const json_t *v;
        if (dot && dot != name) {
            char seg[256];
            const char *p = name;
            v = f->view;
            while (v && !json_is_null(v)) {
                const char *e = strchr(p, '.');
                size_t n = e ? (size_t)(e - p) : strlen(p);
                if (n >= sizeof(seg))
                    return NULL;
                memcpy(seg, p, n);
                seg[n] = '\0';
                v = mt_prop(r, v, seg, true, &hit);
                if (!e)
                    break;
                hit = false;
                p = e + 1;
            }
        } else {
            v = mt_prop(r, f->view, name, false, &hit);
        }
        if (hit)
            return v;
    }
    return NULL;
}

/* JSON output: backslash escapes for the control characters JSON text cannot hold. */
static json_t *mt_json_escape(const json_t *s)
{
    eddy_buf b = {0};
    const char *p = json_string_value(s);
    size_t n = json_string_length(s);
    eddy_buf_add(&b, "", 0);
    for (size_t i = 0; i < n; i++) {
        const char *esc = NULL;
        switch (p[i]) {
        case '\\':
            esc = "\\\\";
            break;
        case '\n':
            esc = "\\n";
            break;
        case '\t':
            esc = "\\t";
            break;
        case '\r':
            esc = "\\r";
            break;
        case '\f':
            esc = "\\f";
            break;
        case '\b':
            esc = "\\b";
            break;
        }
        if (esc)
            eddy_buf_add(&b, esc, 2);
        else
            eddy_buf_add(&b, p + i, 1);
    }
    json_t *out = b.failed ? NULL : json_stringn(b.data, b.len);
    eddy_free(b.data);
    return out;
}

/* Node-RED's NodeContext.lookup: the message first, then env.X, flow.x and global.x;
 * anything else renders as "". 'top' is true outside sections (where JSON escaping applies). */
static const json_t *mt_lookup(mt_render *r, const mt_frame *f, const char *name, bool top)
{
    const json_t *v = mt_lookup_chain(r, f, name);
    if (v) {
        if (top && r->is_json && json_is_string(v))
            return mt_keep(r, mt_json_escape(v));
        return v;
    }
    if (strncmp(name, "env.", 4) == 0 && name[4]) {
        json_t *key = json_string(name + 4), *out = NULL;
        if (key)
            eddy_node_eval_typed(r->node, NULL, "env", key, &out, NULL);
        json_decref(key);
        return mt_keep(r, out);
    }
    /* ^(flow|global)(\[(\w+)\])?\.(.+) */
    eddy_ctx_scope scope;
    const char *p;
    if (strncmp(name, "flow", 4) == 0) {
        scope = EDDY_CTX_FLOW;
        p = name + 4;
    } else if (strncmp(name, "global", 6) == 0) {
        scope = EDDY_CTX_GLOBAL;
        p = name + 6;
    } else {
        return NULL;
    }
    if (*p == '[') {
        const char *q = p + 1;
        while ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9') ||
               *q == '_')
            q++;
        if (q == p + 1 || *q != ']')
            return NULL;
        p = q + 1; /* the store name: eddy has one context store */
    }
    if (p[0] != '.' || !p[1])
        return NULL;
    return eddy_node_context_get(r->node, scope, p + 1);
}

static void mt_render_range(mt_render *r, const mt_template *t, int from, int to, const mt_frame *f,
                            bool top)
{
    if (++r->depth > 200) { /* sections over self-similar data cannot recurse without bound */
        r->out.failed = true;
        r->depth--;
        return;
    }
    for (int i = from; i < to && !r->out.failed; i++) {
        const mt_token *tok = &t->tokens[i];
        switch (tok->kind) {
        case MT_TEXT:
            eddy_buf_add(&r->out, tok->text, tok->len);
            break;
        case MT_NAME:
        case MT_RAW: {
            const json_t *v = mt_lookup(r, f, tok->text, top);
            if (!v || json_is_null(v))
                break;
            char *s = eddy_json_to_string(v, false);
            if (!s) {
                r->out.failed = true;
                break;
            }
            if (tok->kind == MT_RAW || json_is_number(v))
                eddy_buf_add(&r->out, s, strlen(s));
            else
                mt_add_escaped(&r->out, s);
            eddy_free(s);
            break;
        }
        case MT_SECTION: {
            const json_t *v = mt_lookup(r, f, tok->text, top);
            if (eddy_json_truthy(v)) {
                if (json_is_array(v)) {
                    for (size_t j = 0; j < json_array_size(v); j++) {
                        mt_frame inner = {json_array_get(v, j), f};
                        mt_render_range(r, t, i + 1, tok->end, &inner, false);
                    }
                } else if (json_is_object(v) || json_is_string(v) || json_is_number(v)) {
                    mt_frame inner = {v, f};
                    mt_render_range(r, t, i + 1, tok->end, &inner, false);
                } else {
                    mt_render_range(r, t, i + 1, tok->end, f, top);
                }
            }
            i = tok->end;
            break;
        }
        case MT_INVERTED: {
            const json_t *v = mt_lookup(r, f, tok->text, top);
            if (!eddy_json_truthy(v) || (json_is_array(v) && json_array_size(v) == 0))
                mt_render_range(r, t, i + 1, tok->end, f, top);
            i = tok->end;
            break;
        }
        case MT_CLOSE:
        case MT_PARTIAL:
            break;
        }
    }
    r->depth--;
}

/* Renders 't' against 'msg'. Ownership: new string (eddy_free), NULL on out-of-memory. */
static char *mt_render_msg(eddy_node *node, const mt_template *t, const json_t *msg, bool is_json)
{
    mt_render r = {.node = node, .is_json = is_json, .keep = json_array()};
    mt_frame top = {msg, NULL};
    if (!r.keep)
        return NULL;
    eddy_buf_add(&r.out, "", 0);
    mt_render_range(&r, t, 0, t->count, &top, true);
    json_decref(r.keep);
    if (r.out.failed) {
        eddy_free(r.out.data);
        return NULL;
    }
    return r.out.data;
}

/* ---- the node ---- */

struct template_state {
    const char *field;     /* where the result goes; "" means "payload" */
    const char *fieldType; /* "msg", "flow" or "global"; "" means "msg" */
    const char *template;  /* the template; "" means msg.template */
    const char *syntax;    /* "mustache" or "plain"; "" means "mustache" */
    const char *output;    /* "str" or "json" ("yaml" is refused); "" means "str" */
    const char *format;    /* editor highlighting only */
    bool mustache;         /* syntax is mustache */
    bool json_out;         /* output is "json" */
    eddy_ctx_scope scope;  /* for fieldType flow/global */
    bool to_msg;           /* fieldType msg */
    eddy_path path;        /* 'field' parsed, for fieldType msg */
    const char *ctx_key;   /* 'field' without a "#:(store)::" prefix, for flow/global */
    mt_template parsed;    /* 'template' parsed when mustache and not empty */
    bool has_parsed;
};

static const eddy_prop template_props[] = {
    {"field", EDDY_PROP_STR, "\"payload\"", false, offsetof(struct template_state, field),
     "property (or context key) that receives the result", NULL},
    {"fieldType", EDDY_PROP_STR, "\"msg\"", false, offsetof(struct template_state, fieldType),
     "where 'field' is: msg, flow or global", NULL},
    {"template", EDDY_PROP_STR, "\"\"", false, offsetof(struct template_state, template),
     "the template; when empty, msg.template is used", NULL},
    {"syntax", EDDY_PROP_STR, "\"mustache\"", false, offsetof(struct template_state, syntax),
     "mustache (render {{...}} tags) or plain (use the text as it is)", NULL},
    {"output", EDDY_PROP_STR, "\"str\"", false, offsetof(struct template_state, output),
     "str (text) or json (parse the rendered text)", NULL},
    {"format", EDDY_PROP_STR, "\"handlebars\"", false, offsetof(struct template_state, format),
     "editor highlighting only", NULL},
    {0},
};

static const char *tpl_or(const char *s, const char *def)
{
    return *s ? s : def;
}

static const char *tpl_msg_field(const char *field)
{
    field = tpl_or(field, "payload");
    return strncmp(field, "msg.", 4) == 0 ? field + 4 : field;
}

/* Node-RED's parseContextStore: "#:(store)::key" names a store; eddy has one. */
static const char *tpl_ctx_key(const char *key)
{
    if (strncmp(key, "#:(", 3) == 0) {
        const char *end = strstr(key, ")::");
        if (end)
            return end + 3;
    }
    return key;
}

/* Every problem of a node's configuration, in one message. */
typedef struct tpl_problems {
    char text[EDDY_ERR_MSG_MAX];
    int code; /* EDDY_OK, else the first code, EDDY_EUNSUPPORTED taking precedence */
} tpl_problems;

static void tpl_problem(tpl_problems *pr, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void tpl_problem(tpl_problems *pr, int code, const char *fmt, ...)
{
    size_t used = strlen(pr->text);
    if (used && used + 2 < sizeof(pr->text)) {
        strcat(pr->text, "; ");
        used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pr->text + used, sizeof(pr->text) - used, fmt, ap);
    va_end(ap);
    if (pr->code == EDDY_OK || code == EDDY_EUNSUPPORTED)
        pr->code = code;
}

static int template_validate(const eddy_node_type *type, const json_t *config, void *state,
                             eddy_err *err)
{
    struct template_state *st = state;
    const char *ft = tpl_or(st->fieldType, "msg");
    const char *syntax = tpl_or(st->syntax, "mustache");
    const char *output = tpl_or(st->output, "str");
    tpl_problems pr = {.code = EDDY_OK};

    if (strcmp(ft, "msg") && strcmp(ft, "flow") && strcmp(ft, "global"))
        tpl_problem(&pr, EDDY_EINVAL, "fieldType '%s' is not one of msg, flow, global", ft);
    if (strcmp(syntax, "mustache") && strcmp(syntax, "plain"))
        tpl_problem(&pr, EDDY_EINVAL, "syntax '%s' is not one of mustache, plain", syntax);
    if (strcmp(output, "yaml") == 0)
        tpl_problem(&pr, EDDY_EUNSUPPORTED,
                    "output 'yaml' (parse the result as YAML) is not supported by eddy; use "
                    "str or json");
    else if (strcmp(output, "str") && strcmp(output, "json"))
        tpl_problem(&pr, EDDY_EINVAL, "output '%s' is not one of str, json", output);
    if (strcmp(ft, "msg") == 0) {
        eddy_path path;
        eddy_err perr;
        if (eddy_path_parse(tpl_msg_field(st->field), &path, &perr) != EDDY_OK)
            tpl_problem(&pr, EDDY_EINVAL, "field '%s': %s", st->field, perr.msg);
    } else if (!*tpl_ctx_key(st->field)) {
        tpl_problem(&pr, EDDY_EINVAL, "field (the context key) is empty");
    }
    if (strcmp(syntax, "mustache") == 0 && *st->template) {
        mt_template t;
        eddy_err perr = {0};
        if (mt_parse(st->template, strlen(st->template), &t, &perr) == EDDY_OK)
            mt_free(&t);
        else
            tpl_problem(&pr, perr.code, "template: %s", perr.msg);
    }
    if (pr.code != EDDY_OK)
        return eddy_err_set(err, pr.code, "%s", pr.text);
    return EDDY_OK;
}

static int template_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct template_state *st = state;
    const char *ft = tpl_or(st->fieldType, "msg");
    st->mustache = strcmp(tpl_or(st->syntax, "mustache"), "mustache") == 0;
    st->json_out = strcmp(tpl_or(st->output, "str"), "json") == 0;
    st->to_msg = strcmp(ft, "msg") == 0;
    st->scope = strcmp(ft, "global") == 0 ? EDDY_CTX_GLOBAL : EDDY_CTX_FLOW;
    st->ctx_key = tpl_ctx_key(st->field);
    if (st->to_msg && eddy_path_parse(tpl_msg_field(st->field), &st->path, err) != EDDY_OK)
        return err ? err->code : EDDY_EINVAL;
    if (st->mustache && *st->template) {
        int rc = mt_parse(st->template, strlen(st->template), &st->parsed, err);
        if (rc != EDDY_OK)
            return rc;
        st->has_parsed = true;
    }
    return EDDY_OK;
}

/* The rendered text (or plain template) as the value to store, or NULL after reporting
 * why. Ownership: new. */
static json_t *template_value(eddy_node *node, struct template_state *st, const json_t *msg,
                              const char *text, size_t len)
{
    if (!st->json_out) {
        json_t *s = json_stringn(text, len);
        if (!s)
            eddy_node_error(node, msg, "the result is not valid UTF-8 text (or out of memory)");
        return s;
    }
    eddy_err err;
    eddy_err_clear(&err);
    json_t *v = eddy_json_loadb(text, len, &err);
    if (!v) {
        if (err.line > 0)
            eddy_node_error(node, msg, "%s (line %d, column %d)", err.msg, err.line, err.column);
        else
            eddy_node_error(node, msg, "%s", err.msg);
    }
    return v;
}

static void template_input(eddy_node *node, void *state, json_t *msg)
{
    struct template_state *st = state;
    eddy_err err;
    eddy_err_clear(&err);
    json_t *value = NULL;
    const json_t *msg_tpl = NULL;

    if (!*st->template)
        msg_tpl = json_object_get(msg, "template");
    if (!st->mustache) {
        if (!msg_tpl) {
            value = template_value(node, st, msg, st->template, strlen(st->template));
        } else if (json_is_string(msg_tpl)) {
            value = template_value(node, st, msg, json_string_value(msg_tpl),
                                   json_string_length(msg_tpl));
        } else if (st->json_out) {
            char *s = eddy_json_to_string(msg_tpl, false);
            value = s ? template_value(node, st, msg, s, strlen(s)) : NULL;
            if (!s)
                eddy_node_error(node, msg, "out of memory");
            eddy_free(s);
        } else if (!(value = json_deep_copy(msg_tpl))) {
            eddy_node_error(node, msg, "out of memory");
        }
    } else {
        mt_template local;
        const mt_template *t = &st->parsed;
        if (msg_tpl) {
            if (!json_is_string(msg_tpl)) {
                eddy_node_error(node, msg, "msg.template must be a string, not %s",
                                eddy_json_type_name(msg_tpl));
                json_decref(msg);
                return;
            }
            if (mt_parse(json_string_value(msg_tpl), json_string_length(msg_tpl), &local, &err) !=
                EDDY_OK) {
                eddy_node_error(node, msg, "%s", err.msg);
                json_decref(msg);
                return;
            }
            t = &local;
        } else if (!st->has_parsed) {
            memset(&local, 0, sizeof(local));
            t = &local;
        }
        char *text = mt_render_msg(node, t, msg, st->json_out);
        if (t == &local)
            mt_free(&local);
        if (!text) {
            eddy_node_error(node, msg, "out of memory rendering the template");
            json_decref(msg);
            return;
        }
        value = template_value(node, st, msg, text, strlen(text));
        eddy_free(text);
    }
    if (!value) { /* the error has been reported */
        json_decref(msg);
        return;
    }
    if (st->to_msg) {
        /* as setMessageProperty: a property that cannot be set is skipped silently */
        eddy_path_set_take(msg, &st->path, value, NULL);
    } else if (eddy_node_context_set(node, st->scope, st->ctx_key, value, &err) != EDDY_OK) {
        eddy_node_error(node, msg, "%s", err.msg);
        json_decref(msg);
        return;
    }
    eddy_node_send(node, 0, msg);
}

static int template_close(eddy_node *node, void *state, bool removed)
{
    struct template_state *st = state;
    if (st->has_parsed)
        mt_free(&st->parsed);
    st->has_parsed = false;
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_template = {
    .name = "template",
    .inputs = 1,
    .outputs = 1,
    .flags = 0,
    .props = template_props,
    .state_size = sizeof(struct template_state),
    .help = "Sets a property from a mustache template rendered against the message: "
            "{{payload}} (HTML-escaped), {{{payload}}} or {{&payload}} (as is), dotted names, "
            "{{#list}}...{{/list}} and {{^x}}...{{/x}} sections, {{! comments}}, {{=<% %>=}}; "
            "{{flow.x}}, {{global.x}} and {{env.NAME}} read context and environment. "
            "Output json parses the result (invalid JSON is an error catch nodes receive). "
            "An empty template takes msg.template. YAML output is not supported.",
    .validate = template_validate,
    .setup = template_setup,
    .input = template_input,
    .close = template_close,
};
