/* switch.c: Node-RED's "switch" node. Evaluates a property against a list of rules and sends
 * the message to the output of each matching rule (or of the first one), with JavaScript's
 * comparison semantics; sequence rules (head, tail, index) read msg.parts, and 'repair'
 * rebuilds msg.parts per output. Regular expressions are translated to POSIX <regex.h>;
 * typed values and paths are left to node.h and msg.h. JSONata is not supported.
 *
 * Invariants:
 *   1. 'rules' holds 'nrules' parsed rules; constant values are evaluated once (setup),
 *      dynamic ones (msg, flow, global, env, date) for every message.
 *   2. Messages of a sequence are held in 'pending_in' (until the whole sequence arrived,
 *      when a rule needs msg.parts.count or 'repair' is set) and 'pending_out' (until each
 *      output's new sequence is complete, with 'repair'); close frees what is left. */
#include <math.h>
#include <regex.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "msg.h"
#include "node.h"

/* ---- data ---- */

enum sw_op {
    OP_EQ,
    OP_NEQ,
    OP_LT,
    OP_LTE,
    OP_GT,
    OP_GTE,
    OP_BTWN,
    OP_CONT,
    OP_REGEX,
    OP_TRUE,
    OP_FALSE,
    OP_NULL,
    OP_NNULL,
    OP_ISTYPE,
    OP_EMPTY,
    OP_NEMPTY,
    OP_HEAD,
    OP_TAIL,
    OP_INDEX,
    OP_HASK,
    OP_ELSE,
    OP_JSONATA, /* recognised only to be refused */
};

static const struct sw_op_info {
    const char *name;
    enum sw_op op;
    int nvalues; /* values the rule reads: 'v', or 'v' and 'v2' */
} sw_ops[] = {
    {"eq", OP_EQ, 1},       {"neq", OP_NEQ, 1},
    {"lt", OP_LT, 1},       {"lte", OP_LTE, 1},
    {"gt", OP_GT, 1},       {"gte", OP_GTE, 1},
    {"btwn", OP_BTWN, 2},   {"cont", OP_CONT, 1},
    {"regex", OP_REGEX, 1}, {"true", OP_TRUE, 0},
    {"false", OP_FALSE, 0}, {"null", OP_NULL, 0},
    {"nnull", OP_NNULL, 0}, {"istype", OP_ISTYPE, 0},
    {"empty", OP_EMPTY, 0}, {"nempty", OP_NEMPTY, 0},
    {"head", OP_HEAD, 1},   {"tail", OP_TAIL, 1},
    {"index", OP_INDEX, 2}, {"hask", OP_HASK, 1},
    {"else", OP_ELSE, 0},   {"jsonata_exp", OP_JSONATA, 1},
};

static const char *const sw_istypes[] = {"string", "number", "boolean", "array",    "buffer",
                                         "object", "json",   "null",    "undefined"};

enum sw_vkind {
    SV_UNDEF, /* JavaScript's undefined */
    SV_CONST, /* 'value' (str, num, bool, json, re, null) */
    SV_DYN,   /* evaluated per message: 'type' and the raw 'value' from the flow */
    SV_PREV,  /* the property's value for the previous message */
};

struct sw_value {
    enum sw_vkind kind;
    json_t *value;    /* SV_CONST: owned; SV_DYN: borrowed from the flow (may be NULL) */
    const char *type; /* SV_DYN: typed-input type, borrowed from the flow */
};

struct sw_rule {
    enum sw_op op;
    struct sw_value v, v2;
    bool icase;         /* regex: ignore case */
    bool has_re;        /* regex with a constant pattern: 're' is compiled */
    regex_t re;         /* valid when 'has_re' */
    const char *istype; /* istype: one of sw_istypes */
};

struct switch_state {
    /* properties */
    const char *property;      /* what is tested, "payload" by default */
    const char *property_type; /* msg, flow, global, env ... ("" = msg) */
    const json_t *rules_json;  /* the rules as in the flow, NULL = none */
    bool checkall;             /* all rules (true) or up to the first match */
    bool repair;               /* rebuild msg.parts for each output */
    /* set up */
    struct sw_rule *rules;
    size_t nrules;
    bool *matched;       /* scratch: which rule matched, 'nrules' entries */
    bool needs_count;    /* hold sequences until complete (a tail rule or 'repair') */
    bool keep_prev;      /* a rule compares with the previous value */
    json_t *prop_value;  /* 'property' as a JSON string, for eddy_node_eval_typed */
    json_t *prev;        /* the property of the last message; NULL = undefined */
    json_t *pending_in;  /* String(parts.id) -> {"msgs": [...], "count": n} */
    json_t *pending_out; /* String(parts.id) -> {"msgs": [...], "masks": [[bool...]...],
                            "received": n} */
};

static const eddy_prop switch_props[] = {
    {"property", EDDY_PROP_STR, "\"payload\"", false, offsetof(struct switch_state, property),
     "the property tested by the rules", NULL},
    {"propertyType", EDDY_PROP_STR, "\"msg\"", false, offsetof(struct switch_state, property_type),
     "where the property is: msg, flow, global or env", NULL},
    {"rules", EDDY_PROP_JSON, NULL, false, offsetof(struct switch_state, rules_json),
     "the rules: [{t, v, vt, v2, v2t, case}], one output each", NULL},
    {"checkall", EDDY_PROP_BOOL, "true", false, offsetof(struct switch_state, checkall),
     "check all rules (true) or stop after the first match (false)", NULL},
    {"repair", EDDY_PROP_BOOL, "false", false, offsetof(struct switch_state, repair),
     "recreate message sequences (msg.parts) on each output", NULL},
    {0},
};

/* ---- JavaScript values: coercions and comparisons ---- */

enum jsv_type { JV_UNDEF, JV_NULL, JV_BOOL, JV_NUM, JV_STR, JV_OBJ };

/* A JSON value as JavaScript sees it; 'owned' holds a string made by a conversion. */
struct jsv {
    enum jsv_type t;
    bool b;
    double n;
    const char *s;
    size_t len;
    const json_t *obj;
    char *owned;
};

static struct jsv jsv_of(const json_t *v)
{
    struct jsv x = {0};
    if (!v)
        return x;
    switch (json_typeof(v)) {
    case JSON_NULL:
        x.t = JV_NULL;
        break;
    case JSON_TRUE:
    case JSON_FALSE:
        x.t = JV_BOOL;
        x.b = json_is_true(v);
        break;
    case JSON_INTEGER:
    case JSON_REAL:
        x.t = JV_NUM;
        x.n = json_number_value(v);
        break;
    case JSON_STRING:
        x.t = JV_STR;
        x.s = json_string_value(v);
        x.len = json_string_length(v);
        break;
    case JSON_OBJECT:
    case JSON_ARRAY:
        x.t = JV_OBJ;
        x.obj = v;
        break;
    }
    return x;
}

static void jsv_free(struct jsv *x)
{
    eddy_free(x->owned);
    x->owned = NULL;
}

/* ToPrimitive: objects become their string ("[object Object]", arrays joined by ','). */
static struct jsv jsv_primitive(const struct jsv *x)
{
    if (x->t != JV_OBJ)
        return *x; /* the copy does not own anything */
    struct jsv p = {0};
    p.owned = eddy_json_to_string(x->obj, false);
    if (!p.owned)
        return p; /* out of memory: undefined */
    p.t = JV_STR;
    p.s = p.owned;
    p.len = strlen(p.owned);
    return p;
}

/* Number(text) */
static double js_string_to_number(const char *s)
{
    double v;
    const char *p = s;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
        p++;
    if (!*p)
        return 0;
    return eddy_parse_number(s, &v) ? v : NAN;
}

/* Number(x) */
static double jsv_number(const struct jsv *x)
{
    switch (x->t) {
    case JV_UNDEF:
        return NAN;
    case JV_NULL:
        return 0;
    case JV_BOOL:
        return x->b ? 1 : 0;
    case JV_NUM:
        return x->n;
    case JV_STR:
        return js_string_to_number(x->s);
    case JV_OBJ: {
        struct jsv p = jsv_primitive(x);
        double n = p.t == JV_STR ? js_string_to_number(p.s) : NAN;
        jsv_free(&p);
        return n;
    }
    }
    return NAN;
}

static double json_to_number(const json_t *v)
{
    struct jsv x = jsv_of(v);
    return jsv_number(&x);
}

/* The next UTF-16 code unit of a UTF-8 string (JavaScript compares strings by them). */
static unsigned utf16_next(const unsigned char **p, const unsigned char *end, unsigned *low)
{
    if (*low) {
        unsigned u = *low;
        *low = 0;
        return u;
    }
    unsigned c = *(*p)++;
    int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (more)
        c &= 0x3Fu >> more;
    while (more-- && *p < end)
        c = (c << 6) | (*(*p)++ & 0x3Fu);
    if (c >= 0x10000) {
        c -= 0x10000;
        *low = 0xDC00 + (c & 0x3FF);
        return 0xD800 + (c >> 10);
    }
    return c;
}

static int utf16_compare(const char *a, size_t alen, const char *b, size_t blen)
{
    const unsigned char *p = (const unsigned char *)a, *pe = p + alen;
    const unsigned char *q = (const unsigned char *)b, *qe = q + blen;
    unsigned plow = 0, qlow = 0;
    while ((p < pe || plow) && (q < qe || qlow)) {
        unsigned x = utf16_next(&p, pe, &plow), y = utf16_next(&q, qe, &qlow);
        if (x != y)
            return x < y ? -1 : 1;
    }
    bool pdone = p >= pe && !plow, qdone = q >= qe && !qlow;
    return pdone && qdone ? 0 : pdone ? -1 : 1;
}

/* a == b (abstract equality) */
static bool jsv_loose_equal(const struct jsv *a, const struct jsv *b)
{
    bool anull = a->t == JV_UNDEF || a->t == JV_NULL;
    bool bnull = b->t == JV_UNDEF || b->t == JV_NULL;
    if (anull || bnull)
        return anull && bnull;
    if (a->t == b->t) {
        switch (a->t) {
        case JV_BOOL:
            return a->b == b->b;
        case JV_NUM:
            return a->n == b->n;
        case JV_STR:
            return a->len == b->len && memcmp(a->s, b->s, a->len) == 0;
        case JV_OBJ:
            return a->obj == b->obj;
        default:
            return true;
        }
    }
    if (a->t == JV_BOOL || b->t == JV_BOOL) { /* booleans compare as numbers */
        struct jsv na = *a, nb = *b;
        if (a->t == JV_BOOL)
            na = (struct jsv){.t = JV_NUM, .n = a->b ? 1 : 0};
        if (b->t == JV_BOOL)
            nb = (struct jsv){.t = JV_NUM, .n = b->b ? 1 : 0};
        return jsv_loose_equal(&na, &nb);
    }
    if (a->t == JV_OBJ || b->t == JV_OBJ) { /* an object against a number or a string */
        struct jsv pa = jsv_primitive(a), pb = jsv_primitive(b);
        bool eq = pa.t != JV_UNDEF && pb.t != JV_UNDEF && jsv_loose_equal(&pa, &pb);
        if (a->t == JV_OBJ)
            jsv_free(&pa);
        if (b->t == JV_OBJ)
            jsv_free(&pb);
        return eq;
    }
    return jsv_number(a) == jsv_number(b); /* a number and a string */
}

#define JS_UNORDERED 2 /* a comparison with NaN */

/* Compares as JavaScript's relational operators do: -1, 0, 1 or JS_UNORDERED. */
static int jsv_compare(const struct jsv *a, const struct jsv *b)
{
    struct jsv pa = jsv_primitive(a), pb = jsv_primitive(b);
    int r;
    if (pa.t == JV_STR && pb.t == JV_STR) {
        r = utf16_compare(pa.s, pa.len, pb.s, pb.len);
    } else {
        double x = jsv_number(&pa), y = jsv_number(&pb);
        r = isnan(x) || isnan(y) ? JS_UNORDERED : x < y ? -1 : x > y ? 1 : 0;
    }
    if (a->t == JV_OBJ)
        jsv_free(&pa);
    if (b->t == JV_OBJ)
        jsv_free(&pb);
    return r;
}

static bool js_lt(const struct jsv *a, const struct jsv *b)
{
    return jsv_compare(a, b) == -1;
}

static bool js_lte(const struct jsv *a, const struct jsv *b)
{
    int r = jsv_compare(a, b);
    return r == -1 || r == 0;
}

/* String(x) as new memory ("undefined" for undefined); NULL when out of memory. */
static char *js_string(const json_t *v, size_t *len)
{
    if (json_is_string(v)) {
        *len = json_string_length(v);
        return eddy_strndup(json_string_value(v), *len);
    }
    char *s = eddy_json_to_string(v, false);
    if (s)
        *len = strlen(s);
    return s;
}

/* ---- regular expressions: JavaScript syntax to POSIX extended ---- */

struct sbuf {
    char *data;
    size_t len, cap;
    bool failed;
};

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *d = eddy_realloc(b->data, cap);
        if (!d) {
            b->failed = true;
            return;
        }
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

static void sb_utf8(struct sbuf *b, unsigned cp)
{
    char u[4];
    size_t n;
    if (cp < 0x80) {
        u[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    sb_add(b, u, n);
}

/* A literal character outside brackets. */
static void sb_literal(struct sbuf *b, unsigned cp)
{
    if (cp < 0x80 && strchr(".[\\()*+?{|^$", (int)cp)) {
        char e[2] = {'\\', (char)cp};
        sb_add(b, e, 2);
    } else {
        sb_utf8(b, cp);
    }
}

/* Reads 'n' hex digits at 'p'; -1 if they are not there. */
static long hex_digits(const char *p, int n)
{
    long v = 0;
    for (int i = 0; i < n; i++) {
        int h = eddy_hex_digit(p[i]);
        if (h < 0)
            return -1;
        v = v * 16 + h;
    }
    return v;
}

/* Decodes one UTF-8 character at '*p' and moves past it. */
static unsigned utf8_next(const char **p)
{
    const unsigned char *s = (const unsigned char *)*p;
    unsigned c = *s++;
    int more = c >= 0xF0 ? 3 : c >= 0xE0 ? 2 : c >= 0xC0 ? 1 : 0;
    if (more)
        c &= 0x3Fu >> more;
    while (more-- && *s)
        c = (c << 6) | (*s++ & 0x3Fu);
    *p = (const char *)s;
    return c;
}

/* An escape that stands for one character (\n, \x41, \u00e9, \/ ...): its code point, with
 * '*p' just past it; -1 for escapes that are not one character. */
static long escape_char(const char **p, bool in_class)
{
    static const char simple[] = "ntrfv", value[] = "\n\t\r\f\v";
    const char *s = *p; /* at the character after the backslash */
    const char *at = *s ? strchr(simple, *s) : NULL;
    long v = -1;
    if (at) {
        *p = s + 1;
        return value[at - simple];
    }
    if (*s == 'b' && in_class) { /* a backspace inside brackets, a word boundary outside */
        *p = s + 1;
        return '\b';
    }
    if (*s == 'x' || *s == 'u') { /* \xHH, \uHHHH; otherwise the letter itself */
        int digits = *s == 'x' ? 2 : 4;
        if ((v = hex_digits(s + 1, digits)) >= 0) {
            *p = s + 1 + digits;
            return v;
        }
    } else if (!*s || strchr("dDwWsSbBc0123456789", *s)) {
        return -1; /* classes, boundaries, back-references: not one character */
    }
    /* an identity escape: \. \/ \\ \q ... stands for the character itself */
    const char *q = s;
    unsigned cp = utf8_next(&q);
    *p = q;
    return cp;
}

static int re_fail(char *why, size_t whylen, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int re_fail(char *why, size_t whylen, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, whylen, fmt, ap);
    va_end(ap);
    return code;
}

/* Translates the bracket expression at '*p' (just past '['). */
static int re_class(const char **p, struct sbuf *out, char *why, size_t whylen)
{
    const char *s = *p;
    bool negate = false;
    if (*s == '^') {
        negate = true;
        s++;
    }
    if (*s == ']')
        return re_fail(why, whylen, EDDY_EUNSUPPORTED,
                       "empty character classes ([] and [^]) are not supported");
    struct sbuf body = {0};
    bool rbracket = false, lbracket = false, caret = false, dash = false;
    int rc = EDDY_OK;
    while (*s && *s != ']') {
        long lo;
        const char *cls = NULL;
        if (*s == '\\') {
            const char *e = s + 1;
            switch (*e) {
            case 'd':
                cls = "0-9";
                break;
            case 'w':
                cls = "A-Za-z0-9_";
                break;
            case 's':
                cls = "[:space:]";
                break;
            case 'D':
            case 'W':
            case 'S':
                rc = re_fail(why, whylen, EDDY_EUNSUPPORTED,
                             "\\%c inside a character class is not supported", *e);
                goto done;
            case '\0':
                rc = re_fail(why, whylen, EDDY_EINVAL, "\\ at end of pattern");
                goto done;
            }
            if (cls) {
                sb_str(&body, cls);
                s = e + 1;
                continue;
            }
            lo = escape_char(&e, true);
            if (lo < 0) {
                rc = re_fail(why, whylen, EDDY_EUNSUPPORTED,
                             "the escape \\%c inside a character class is not supported", *e);
                goto done;
            }
            s = e;
        } else {
            lo = (long)utf8_next(&s);
        }
        /* a range "lo-hi" */
        if (*s == '-' && s[1] && s[1] != ']') {
            const char *h = s + 1;
            long hi;
            if (*h == '\\') {
                h++;
                if (strchr("dwsDWS", *h) && *h) {
                    /* "a-\d": JavaScript takes the '-' literally */
                    hi = -1;
                } else {
                    hi = escape_char(&h, true);
                    if (hi < 0) {
                        rc = re_fail(why, whylen, EDDY_EUNSUPPORTED,
                                     "the escape \\%c inside a character class is not "
                                     "supported",
                                     *h);
                        goto done;
                    }
                }
            } else {
                hi = (long)utf8_next(&h);
            }
            if (hi >= 0) {
                if (hi < lo) {
                    rc = re_fail(why, whylen, EDDY_EINVAL, "range out of order in class");
                    goto done;
                }
                if (lo >= 0x80 || hi >= 0x80 || lo == 0) {
                    rc = re_fail(why, whylen, EDDY_EUNSUPPORTED,
                                 "ranges of non-ASCII characters are not supported");
                    goto done;
                }
                /* endpoints that mean something in a POSIX bracket go as collating
                 * elements, "[.-.]" */
                long ends[2] = {lo, hi};
                for (int i = 0; i < 2; i++) {
                    char c = (char)ends[i];
                    if (c == ']' || c == '-' || c == '^' || c == '[') {
                        char ce[5] = {'[', '.', c, '.', ']'};
                        sb_add(&body, ce, 5);
                    } else {
                        sb_add(&body, &c, 1);
                    }
                    if (i == 0)
                        sb_add(&body, "-", 1);
                }
                s = h;
                continue;
            }
        }
        if (lo == 0) {
            rc = re_fail(why, whylen, EDDY_EUNSUPPORTED, "NUL characters are not supported");
            goto done;
        }
        if (lo == ']')
            rbracket = true;
        else if (lo == '[')
            lbracket = true;
        else if (lo == '^')
            caret = true;
        else if (lo == '-')
            dash = true;
        else
            sb_utf8(&body, (unsigned)lo);
    }
    if (*s != ']') {
        rc = re_fail(why, whylen, EDDY_EINVAL, "unterminated character class");
        goto done;
    }
    *p = s + 1;
    /* POSIX: ']' goes first, '^' not first, '-' last */
    if (!negate && caret && !rbracket && !body.len && !lbracket && !dash) {
        sb_str(out, "\\^");
        goto done;
    }
    sb_str(out, negate ? "[^" : "[");
    if (rbracket)
        sb_str(out, "]");
    if (!rbracket && !body.len && !lbracket && caret && dash) {
        sb_str(out, "-^]");
        goto done;
    }
    if (body.len)
        sb_add(out, body.data, body.len);
    if (lbracket)
        sb_str(out, "[");
    if (caret)
        sb_str(out, "^");
    if (dash)
        sb_str(out, "-");
    sb_str(out, "]");
done:
    eddy_free(body.data);
    if (body.failed)
        out->failed = true;
    return rc;
}

/* true if '{' at 'p' starts a quantifier {n}, {n,} or {n,m} */
static bool re_is_quantifier(const char *p)
{
    p++;
    if (!(*p >= '0' && *p <= '9'))
        return false;
    while (*p >= '0' && *p <= '9')
        p++;
    if (*p == ',') {
        p++;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    return *p == '}';
}

/* Translates JavaScript pattern 'src' into POSIX extended syntax in 'out' (new, eddy_free).
 * Only whether a match exists matters here, so lazy quantifiers become greedy ones and
 * groups need not capture. EDDY_EUNSUPPORTED for constructs POSIX lacks (look-around,
 * back-references, \b), EDDY_EINVAL for bad syntax; 'why' says which. */
static int re_translate(const char *src, char **out, char *why, size_t whylen)
{
    struct sbuf b = {0};
    const char *p = src;
    int rc = EDDY_OK;
    bool after_quantifier = false;
    int depth = 0;  /* open groups */
    sb_str(&b, ""); /* an empty pattern is valid */
    while (*p && rc == EDDY_OK) {
        bool quantifier = false;
        char c = *p;
        if (c == '\\') {
            const char *e = p + 1;
            const char *cls = NULL;
            switch (*e) {
            case 'd':
                cls = "[0-9]";
                break;
            case 'D':
                cls = "[^0-9]";
                break;
            case 'w':
                cls = "[A-Za-z0-9_]";
                break;
            case 'W':
                cls = "[^A-Za-z0-9_]";
                break;
            case 's':
                cls = "[[:space:]]";
                break;
            case 'S':
                cls = "[^[:space:]]";
                break;
            case 'b':
            case 'B':
                rc = re_fail(why, whylen, EDDY_EUNSUPPORTED,
                             "word boundaries (\\%c) are not supported", *e);
                continue;
            case 'c':
                rc = re_fail(why, whylen, EDDY_EUNSUPPORTED,
                             "control escapes (\\c) are not supported");
                continue;
            case '\0':
                rc = re_fail(why, whylen, EDDY_EINVAL, "\\ at end of pattern");
                continue;
            }
            if (cls) {
                sb_str(&b, cls);
                p = e + 1;
            } else if (*e >= '0' && *e <= '9') {
                rc = re_fail(why, whylen, EDDY_EUNSUPPORTED,
                             *e == '0' ? "NUL characters (\\0) are not supported"
                                       : "back-references (\\%c) are not supported",
                             *e);
                continue;
            } else {
                long cp = escape_char(&e, false);
                if (cp <= 0) {
                    rc = re_fail(why, whylen, EDDY_EUNSUPPORTED, "the escape \\%c is not supported",
                                 *e);
                    continue;
                }
                sb_literal(&b, (unsigned)cp);
                p = e;
            }
        } else if (c == '[') {
            p++;
            rc = re_class(&p, &b, why, whylen);
        } else if (c == '(') {
            if (p[1] == '?') {
                if (p[2] == ':') {
                    p += 3;
                } else if (p[2] == '=' || p[2] == '!' ||
                           (p[2] == '<' && (p[3] == '=' || p[3] == '!'))) {
                    rc = re_fail(why, whylen, EDDY_EUNSUPPORTED,
                                 "look-ahead and look-behind groups are not supported");
                    continue;
                } else if (p[2] == '<') { /* a named group: only its grouping matters */
                    const char *q = strchr(p + 3, '>');
                    if (!q) {
                        rc = re_fail(why, whylen, EDDY_EINVAL, "unterminated group name");
                        continue;
                    }
                    p = q + 1;
                } else {
                    rc = re_fail(why, whylen, EDDY_EINVAL, "invalid group '(?%c'", p[2]);
                    continue;
                }
            } else {
                p++;
            }
            depth++;
            sb_str(&b, "(");
        } else if (c == ')') {
            if (depth-- == 0) {
                rc = re_fail(why, whylen, EDDY_EINVAL, "unmatched ')'");
                continue;
            }
            sb_str(&b, ")");
            p++;
        } else if (c == '?' && after_quantifier) {
            p++; /* lazy quantifier: the same matches exist */
            continue;
        } else if (c == '*' || c == '+' || c == '?') {
            sb_add(&b, p, 1);
            p++;
            quantifier = true;
        } else if (c == '{') {
            if (re_is_quantifier(p)) {
                const char *q = strchr(p, '}');
                sb_add(&b, p, (size_t)(q - p + 1));
                p = q + 1;
                quantifier = true;
            } else {
                sb_str(&b, "\\{");
                p++;
            }
        } else if (c == '.') {
            sb_str(&b, "[^\n\r]"); /* '.' does not match line breaks in JavaScript */
            p++;
        } else {
            sb_add(&b, p, 1);
            p++;
        }
        after_quantifier = quantifier;
    }
    if (rc == EDDY_OK && b.failed)
        rc = re_fail(why, whylen, EDDY_ENOMEM, "out of memory");
    if (rc != EDDY_OK) {
        eddy_free(b.data);
        return rc;
    }
    *out = b.data;
    return EDDY_OK;
}

/* Compiles JavaScript pattern 'pattern' into 're'. On failure 'why' says what is wrong. */
static int re_compile(regex_t *re, const char *pattern, bool icase, char *why, size_t whylen)
{
    char *posix = NULL;
    int rc = re_translate(pattern, &posix, why, whylen);
    if (rc != EDDY_OK)
        return rc;
    int flags = REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0);
    int r = regcomp(re, posix, flags);
    eddy_free(posix);
    if (r != 0) {
        regerror(r, re, why, whylen);
        return EDDY_EINVAL;
    }
    return EDDY_OK;
}

/* ---- rules: parsing ---- */

/* Problems found while parsing, gathered into one message. */
struct problems {
    char text[EDDY_ERR_MSG_MAX];
    size_t len;
    int code;
};

static void problem(struct problems *pr, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void problem(struct problems *pr, int code, const char *fmt, ...)
{
    if (!pr->code)
        pr->code = code;
    if (pr->len + 3 >= sizeof(pr->text))
        return;
    if (pr->len) {
        memcpy(pr->text + pr->len, "; ", 3);
        pr->len += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pr->text + pr->len, sizeof(pr->text) - pr->len, fmt, ap);
    va_end(ap);
    pr->len = strlen(pr->text);
}

static bool is_falsy_type(const json_t *t)
{
    return !t || (json_is_string(t) && json_string_length(t) == 0) || json_is_null(t) ||
           json_is_false(t);
}

/* Parses value 'key' ("v" or "v2") with type 'tkey' of rule 'index' (1-based). */
static void parse_value(const json_t *rule, const char *key, const char *tkey, int index,
                        struct sw_value *out, struct problems *pr)
{
    const json_t *v = json_object_get(rule, key);
    const json_t *t = json_object_get(rule, tkey);
    out->kind = SV_UNDEF;
    out->value = NULL;
    if (json_is_string(t) && strcmp(json_string_value(t), "prev") == 0) {
        out->kind = SV_PREV;
        return;
    }
    if (!v && strcmp(key, "v2") == 0)
        return; /* no second value: undefined */
    const char *type;
    if (is_falsy_type(t)) /* Node-RED guesses: a number if it looks like one */
        type = isnan(json_to_number(v)) ? "str" : "num";
    else if (json_is_string(t))
        type = json_string_value(t);
    else {
        problem(pr, EDDY_EINVAL, "rule %d: %s must be a string", index, tkey);
        return;
    }
    if (strcmp(type, "jsonata") == 0) {
        problem(pr, EDDY_EUNSUPPORTED,
                "rule %d: JSONata expressions (%s \"jsonata\") are not "
                "supported",
                index, tkey);
        return;
    }
    if (strcmp(type, "str") == 0 || strcmp(type, "re") == 0) {
        size_t len = 0;
        char *s = js_string(v, &len);
        out->value = s ? json_stringn(s, len) : NULL;
        eddy_free(s);
    } else if (strcmp(type, "num") == 0) {
        double n = json_to_number(v);
        if (!isfinite(n)) {
            char *s = eddy_json_to_string(v, false);
            problem(pr, EDDY_EINVAL, "rule %d: %s '%s' is not a (finite) number", index, key,
                    s ? s : "?");
            eddy_free(s);
            return;
        }
        out->value = eddy_json_number(n);
    } else if (strcmp(type, "bool") == 0) {
        size_t len = 0;
        char *s = js_string(v, &len);
        bool is_true = s && len == 4;
        for (size_t i = 0; is_true && i < 4; i++)
            is_true = (s[i] | 0x20) == "true"[i];
        out->value = json_boolean(is_true);
        eddy_free(s);
    } else if (strcmp(type, "json") == 0) {
        size_t len = 0;
        char *s = js_string(v, &len);
        eddy_err jerr;
        out->value = s ? eddy_json_loadb(s, len, &jerr) : NULL;
        if (s && !out->value)
            problem(pr, EDDY_EINVAL, "rule %d: %s is not valid JSON: %s", index, key, jerr.msg);
        eddy_free(s);
        if (!out->value)
            return;
    } else if (strcmp(type, "null") == 0) {
        out->value = json_null();
    } else if (strcmp(type, "msg") == 0 || strcmp(type, "flow") == 0 ||
               strcmp(type, "global") == 0 || strcmp(type, "env") == 0 ||
               strcmp(type, "date") == 0 || strcmp(type, "bin") == 0) {
        if (!eddy_typed_supported(type)) {
            problem(pr, EDDY_EUNSUPPORTED, "rule %d: %s \"%s\" is not supported", index, tkey,
                    type);
            return;
        }
        out->kind = SV_DYN;
        out->value = (json_t *)v;
        out->type = type;
        return;
    } else {
        problem(pr, EDDY_EINVAL, "rule %d: unknown value type %s \"%s\"", index, tkey, type);
        return;
    }
    if (!out->value) {
        problem(pr, EDDY_ENOMEM, "rule %d: out of memory", index);
        return;
    }
    out->kind = SV_CONST;
}

static void free_value(struct sw_value *v)
{
    if (v->kind == SV_CONST)
        json_decref(v->value);
    v->kind = SV_UNDEF;
    v->value = NULL;
}

static void free_rules(struct sw_rule *rules, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free_value(&rules[i].v);
        free_value(&rules[i].v2);
        if (rules[i].has_re)
            regfree(&rules[i].re);
    }
    eddy_free(rules);
}

static void parse_rule(const json_t *rule, int index, struct sw_rule *r, struct problems *pr)
{
    if (!json_is_object(rule)) {
        problem(pr, EDDY_EINVAL, "rule %d: not an object", index);
        return;
    }
    const json_t *t = json_object_get(rule, "t");
    if (!json_is_string(t)) {
        problem(pr, EDDY_EINVAL, "rule %d: no operator (t)", index);
        return;
    }
    const struct sw_op_info *info = NULL;
    for (size_t i = 0; i < sizeof(sw_ops) / sizeof(sw_ops[0]); i++)
        if (strcmp(sw_ops[i].name, json_string_value(t)) == 0)
            info = &sw_ops[i];
    if (!info) {
        problem(pr, EDDY_EINVAL, "rule %d: unknown operator '%s'", index, json_string_value(t));
        return;
    }
    if (info->op == OP_JSONATA) {
        problem(pr, EDDY_EUNSUPPORTED,
                "rule %d: JSONata expressions (operator jsonata_exp) are not supported", index);
        return;
    }
    r->op = info->op;
    r->icase = eddy_json_truthy(json_object_get(rule, "case"));
    if (info->op == OP_ISTYPE) {
        const json_t *v = json_object_get(rule, "v");
        for (size_t i = 0; i < sizeof(sw_istypes) / sizeof(sw_istypes[0]); i++)
            if (json_is_string(v) && strcmp(json_string_value(v), sw_istypes[i]) == 0)
                r->istype = sw_istypes[i];
        if (!r->istype)
            problem(pr, EDDY_EINVAL,
                    "rule %d: istype needs v to be one of string, number, boolean, array, "
                    "buffer, object, json, null, undefined",
                    index);
        return;
    }
    if (info->nvalues >= 1)
        parse_value(rule, "v", "vt", index, &r->v, pr);
    if (info->nvalues >= 2)
        parse_value(rule, "v2", "v2t", index, &r->v2, pr);
    if (info->op == OP_REGEX && r->v.kind == SV_CONST) {
        char why[256];
        size_t len = 0;
        char *pattern = js_string(r->v.value, &len); /* new RegExp(v) takes String(v) */
        int rc = pattern ? re_compile(&r->re, pattern, r->icase, why, sizeof(why)) : EDDY_ENOMEM;
        if (rc == EDDY_OK)
            r->has_re = true;
        else
            problem(pr, rc, "rule %d: regular expression /%s/: %s", index, pattern ? pattern : "",
                    pattern ? why : "out of memory");
        eddy_free(pattern);
    }
}

/* Parses the rules into a new array (eddy_free through free_rules). */
static int parse_rules(const json_t *rules_json, struct sw_rule **out, size_t *count,
                       struct problems *pr)
{
    *out = NULL;
    *count = 0;
    if (!rules_json || json_is_null(rules_json))
        return EDDY_OK;
    if (!json_is_array(rules_json)) {
        problem(pr, EDDY_EINVAL, "rules must be an array");
        return pr->code;
    }
    size_t n = json_array_size(rules_json);
    struct sw_rule *rules = n ? eddy_calloc(n, sizeof(*rules)) : NULL;
    if (n && !rules) {
        problem(pr, EDDY_ENOMEM, "out of memory");
        return pr->code;
    }
    for (size_t i = 0; i < n; i++)
        parse_rule(json_array_get(rules_json, i), (int)i + 1, &rules[i], pr);
    if (pr->code) {
        free_rules(rules, n);
        return pr->code;
    }
    *out = rules;
    *count = n;
    return EDDY_OK;
}

static const char *switch_property_type(const struct switch_state *st)
{
    return *st->property_type ? st->property_type : "msg";
}

static void check_property(const struct switch_state *st, struct problems *pr)
{
    const char *type = switch_property_type(st);
    if (strcmp(type, "jsonata") == 0)
        problem(pr, EDDY_EUNSUPPORTED,
                "propertyType 'jsonata': JSONata expressions are not supported");
    else if (strcmp(type, "prev") == 0 || !eddy_typed_supported(type))
        problem(pr, EDDY_EINVAL, "propertyType '%s' is not supported", type);
    if (!*st->property)
        problem(pr, EDDY_EINVAL, "property is empty");
}

static int switch_validate(const eddy_node_type *type, const json_t *config, void *state,
                           eddy_err *err)
{
    struct switch_state *st = state;
    struct problems pr = {0};
    struct sw_rule *rules;
    size_t n;
    check_property(st, &pr);
    if (parse_rules(st->rules_json, &rules, &n, &pr) == EDDY_OK)
        free_rules(rules, n);
    if (pr.code)
        return eddy_err_set(err, pr.code, "%s", pr.text);
    return EDDY_OK;
}

static int switch_close(eddy_node *node, void *state, bool removed);

static int switch_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct switch_state *st = state;
    struct problems pr = {0};
    check_property(st, &pr);
    if (!pr.code)
        parse_rules(st->rules_json, &st->rules, &st->nrules, &pr);
    if (pr.code)
        return eddy_err_set(err, pr.code, "%s", pr.text);
    st->needs_count = st->repair;
    for (size_t i = 0; i < st->nrules; i++) {
        if (st->rules[i].op == OP_TAIL)
            st->needs_count = true;
        if (st->rules[i].v.kind == SV_PREV || st->rules[i].v2.kind == SV_PREV)
            st->keep_prev = true;
    }
    st->matched = eddy_calloc(st->nrules ? st->nrules : 1, sizeof(bool));
    st->prop_value = json_string(st->property);
    st->prev = json_null(); /* Node-RED starts with null, not undefined */
    st->pending_in = json_object();
    st->pending_out = json_object();
    if (!st->matched || !st->prop_value || !st->pending_in || !st->pending_out) {
        switch_close(node, st, false);
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    }
    return EDDY_OK;
}

static int switch_close(eddy_node *node, void *state, bool removed)
{
    struct switch_state *st = state;
    free_rules(st->rules, st->nrules);
    st->rules = NULL;
    st->nrules = 0;
    eddy_free(st->matched);
    st->matched = NULL;
    json_decref(st->prop_value);
    json_decref(st->prev);
    json_decref(st->pending_in);
    json_decref(st->pending_out);
    st->prop_value = st->prev = st->pending_in = st->pending_out = NULL;
    return EDDY_CLOSE_DONE;
}

/* ---- rules: evaluation ---- */

/* Reads a message property as Node-RED's getMessageProperty does: an optional "msg." prefix,
 * and nested references ("payload[msg.topic]") resolved first. Borrowed; NULL when missing
 * or when the expression is invalid. */
static json_t *msg_property(json_t *msg, const char *expr, int depth)
{
    if (strncmp(expr, "msg.", 4) == 0)
        expr += 4;
    if (!strstr(expr, "[msg."))
        return eddy_path_lookup(msg, expr);
    if (depth > 8)
        return NULL;
    struct sbuf b = {0};
    json_t *result = NULL;
    for (const char *p = expr; *p;) {
        if (strncmp(p, "[msg.", 5) != 0) {
            sb_add(&b, p++, 1);
            continue;
        }
        const char *q = p + 1;
        int open = 1;
        while (*q && open) {
            open += *q == '[' ? 1 : *q == ']' ? -1 : 0;
            q++;
        }
        if (open)
            goto done;
        char *inner = eddy_strndup(p + 1, (size_t)(q - 1 - (p + 1)));
        json_t *key = inner ? msg_property(msg, inner, depth + 1) : NULL;
        eddy_free(inner);
        if (json_is_string(key)) {
            const char *k = json_string_value(key);
            const char *quote = !strchr(k, '"') ? "\"" : !strchr(k, '\'') ? "'" : NULL;
            if (!quote)
                goto done;
            sb_str(&b, "[");
            sb_str(&b, quote);
            sb_str(&b, k);
            sb_str(&b, quote);
            sb_str(&b, "]");
        } else if (json_is_integer(key) && json_integer_value(key) >= 0) {
            char num[32];
            snprintf(num, sizeof(num), "[%lld]", (long long)json_integer_value(key));
            sb_str(&b, num);
        } else {
            goto done; /* Node-RED refuses other keys */
        }
        p = q;
    }
    if (!b.failed && b.data)
        result = eddy_path_lookup(msg, b.data);
done:
    eddy_free(b.data);
    return result;
}

/* A typed value: msg properties are read in place, the rest by eddy_node_eval_typed. New
 * reference; NULL for undefined and for values that cannot be evaluated (as Node-RED). */
static json_t *eval_typed(eddy_node *node, json_t *msg, const char *type, const json_t *value)
{
    json_t *out = NULL;
    if (strcmp(type, "msg") == 0) {
        size_t len = 0;
        char *expr = js_string(value, &len);
        out = expr ? json_incref(msg_property(msg, expr, 0)) : NULL;
        eddy_free(expr);
        return out;
    }
    if (eddy_node_eval_typed(node, msg, type, value, &out, NULL) != EDDY_OK) {
        json_decref(out);
        return NULL;
    }
    return out;
}

/* The value of 'v' for 'msg' as a new reference (NULL = undefined). */
static json_t *eval_value(eddy_node *node, struct switch_state *st, const struct sw_value *v,
                          json_t *msg)
{
    switch (v->kind) {
    case SV_UNDEF:
        return NULL;
    case SV_CONST:
        return json_incref(v->value);
    case SV_PREV:
        return json_incref(st->prev);
    case SV_DYN:
        return eval_typed(node, msg, v->type, v->value);
    }
    return NULL;
}

static bool op_empty(const json_t *a, bool *known)
{
    *known = true;
    if (json_is_string(a))
        return json_string_length(a) == 0;
    if (json_is_array(a))
        return json_array_size(a) == 0;
    if (json_is_object(a))
        return json_object_size(a) == 0;
    *known = false; /* neither empty nor non-empty */
    return false;
}

static bool op_istype(const json_t *a, const char *type)
{
    if (strcmp(type, "array") == 0)
        return json_is_array(a);
    if (strcmp(type, "buffer") == 0)
        return false; /* messages here hold no Buffers */
    if (strcmp(type, "json") == 0) {
        size_t len = 0;
        char *s = js_string(a, &len);
        json_t *parsed = s ? json_loadb(s, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL) : NULL;
        eddy_free(s);
        json_decref(parsed);
        return parsed != NULL;
    }
    if (strcmp(type, "null") == 0)
        return json_is_null(a);
    if (strcmp(type, "undefined") == 0)
        return a == NULL;
    if (strcmp(type, "string") == 0)
        return json_is_string(a);
    if (strcmp(type, "number") == 0)
        return json_is_number(a);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(a);
    if (strcmp(type, "object") == 0)
        return json_is_object(a);
    return false;
}

/* a.hasOwnProperty(String(b)), for a not null or undefined and b not an object */
static bool op_hask(const json_t *a, const json_t *b)
{
    if (!a || json_is_null(a) || json_is_object(b) || json_is_array(b) || json_is_null(b))
        return false;
    size_t klen = 0;
    char *key = js_string(b, &klen);
    if (!key)
        return false;
    bool has = false;
    if (json_is_object(a)) {
        has = json_object_getn(a, key, klen) != NULL;
    } else if (json_is_array(a) || json_is_string(a)) {
        size_t size = json_is_array(a)
                          ? json_array_size(a)
                          : eddy_utf16_length(json_string_value(a), json_string_length(a));
        /* own properties: "length" and the canonical indexes "0", "1", ... */
        bool canonical = klen > 0 && klen < 16 && (key[0] != '0' || klen == 1);
        for (size_t i = 0; i < klen && canonical; i++)
            canonical = key[i] >= '0' && key[i] <= '9';
        has = strcmp(key, "length") == 0 || (canonical && strtoull(key, NULL, 10) < size);
    }
    eddy_free(key);
    return has;
}

/* String(a).indexOf(String(b)) != -1 */
static bool op_cont(const json_t *a, const json_t *b)
{
    size_t alen = 0, blen = 0;
    char *hay = js_string(a, &alen), *needle = js_string(b, &blen);
    bool found = false;
    if (hay && needle) {
        for (size_t i = 0; i + blen <= alen && !found; i++)
            found = memcmp(hay + i, needle, blen) == 0;
    }
    eddy_free(hay);
    eddy_free(needle);
    return found;
}

/* msg.parts.<key> as a number (NaN when missing). 'parts' is msg.parts, not null. */
static double parts_number(const json_t *parts, const char *key)
{
    return json_to_number(json_is_object(parts) ? json_object_get(parts, key) : NULL);
}

/* Evaluates rule 'r' (not else) on 'a'. EDDY_OK with '*match', or an error reported on
 * 'msg'. */
static int eval_rule(eddy_node *node, struct switch_state *st, const struct sw_rule *r,
                     const json_t *a, json_t *msg, bool *match)
{
    json_t *v1 = NULL, *v2 = NULL;
    int rc = EDDY_OK;
    struct jsv ja = jsv_of(a), jb, jc;
    const json_t *parts;
    bool known;
    if (r->v.kind != SV_UNDEF)
        v1 = eval_value(node, st, &r->v, msg);
    if (r->v2.kind != SV_UNDEF)
        v2 = eval_value(node, st, &r->v2, msg);
    jb = jsv_of(v1);
    jc = jsv_of(v2);
    *match = false;
    switch (r->op) {
    case OP_EQ:
        *match = jsv_loose_equal(&ja, &jb);
        break;
    case OP_NEQ:
        *match = !jsv_loose_equal(&ja, &jb);
        break;
    case OP_LT:
        *match = js_lt(&ja, &jb);
        break;
    case OP_LTE:
        *match = js_lte(&ja, &jb);
        break;
    case OP_GT:
        *match = js_lt(&jb, &ja);
        break;
    case OP_GTE:
        *match = js_lte(&jb, &ja);
        break;
    case OP_BTWN:
        *match = (js_lte(&jb, &ja) && js_lte(&ja, &jc)) || (js_lte(&ja, &jb) && js_lte(&jc, &ja));
        break;
    case OP_CONT:
        *match = op_cont(a, v1);
        break;
    case OP_REGEX: {
        size_t len = 0;
        char *text = js_string(a, &len);
        if (!text) {
            rc = EDDY_ENOMEM;
            eddy_node_error(node, msg, "out of memory");
            break;
        }
        if (r->has_re) {
            *match = regexec(&r->re, text, 0, NULL, 0) == 0;
        } else { /* a pattern from the message or context */
            size_t plen = 0;
            char *pattern = js_string(v1, &plen);
            char why[256];
            regex_t re;
            rc = pattern ? re_compile(&re, pattern, r->icase, why, sizeof(why)) : EDDY_ENOMEM;
            if (rc == EDDY_OK) {
                *match = regexec(&re, text, 0, NULL, 0) == 0;
                regfree(&re);
            } else {
                eddy_node_error(node, msg, "Invalid regular expression: /%s/: %s",
                                pattern ? pattern : "", pattern ? why : "out of memory");
            }
            eddy_free(pattern);
        }
        eddy_free(text);
        break;
    }
    case OP_TRUE:
        *match = json_is_true(a);
        break;
    case OP_FALSE:
        *match = json_is_false(a);
        break;
    case OP_NULL:
        *match = !a || json_is_null(a);
        break;
    case OP_NNULL:
        *match = a && !json_is_null(a);
        break;
    case OP_ISTYPE:
        *match = op_istype(a, r->istype);
        break;
    case OP_EMPTY:
        *match = op_empty(a, &known) && known;
        break;
    case OP_NEMPTY:
        *match = !op_empty(a, &known) && known;
        break;
    case OP_HEAD:
    case OP_TAIL:
    case OP_INDEX:
        parts = json_object_get(msg, "parts");
        if (!parts || json_is_null(parts)) {
            rc = EDDY_EINVAL;
            eddy_node_error(node, msg, "rule '%s' needs msg.parts (a message sequence)",
                            r->op == OP_HEAD   ? "head"
                            : r->op == OP_TAIL ? "tail"
                                               : "index");
            break;
        }
        if (r->op == OP_HEAD) {
            *match = parts_number(parts, "index") < jsv_number(&jb);
        } else if (r->op == OP_TAIL) {
            *match = parts_number(parts, "count") - jsv_number(&jb) <= parts_number(parts, "index");
        } else {
            double index = parts_number(parts, "index");
            *match = jsv_number(&jb) <= index && index <= jsv_number(&jc);
        }
        break;
    case OP_HASK:
        *match = op_hask(a, v1);
        break;
    case OP_ELSE:
    case OP_JSONATA:
        break;
    }
    json_decref(v1);
    json_decref(v2);
    return rc;
}

/* Applies the rules to 'a', filling st->matched; '*evaluated' rules were looked at. */
static int apply_rules(eddy_node *node, struct switch_state *st, const json_t *a, json_t *msg,
                       size_t *evaluated)
{
    bool elseflag = true; /* no rule matched since the start or the last 'else' */
    *evaluated = 0;
    for (size_t i = 0; i < st->nrules; i++) {
        const struct sw_rule *r = &st->rules[i];
        bool match;
        if (r->op == OP_ELSE) {
            match = elseflag;
            elseflag = true;
        } else {
            int rc = eval_rule(node, st, r, a, msg, &match);
            if (rc != EDDY_OK)
                return rc;
        }
        st->matched[i] = match;
        *evaluated = i + 1;
        if (match) {
            elseflag = false;
            if (!st->checkall)
                break;
        }
    }
    return EDDY_OK;
}

/* ---- sending, and message sequences ---- */

/* Sends 'msg' (taken) to each output whose rule matched. */
static void send_onward(eddy_node *node, struct switch_state *st, json_t *msg, size_t evaluated)
{
    size_t outputs = (size_t)eddy_node_output_count(node);
    size_t last = SIZE_MAX;
    for (size_t i = 0; i < evaluated && i < outputs; i++)
        if (st->matched[i])
            last = i;
    if (last == SIZE_MAX) {
        json_decref(msg);
        return;
    }
    for (size_t i = 0; i < last; i++) {
        if (!st->matched[i])
            continue;
        json_t *copy = eddy_msg_clone(msg);
        if (copy)
            eddy_node_send(node, (int)i, copy);
        else
            eddy_node_error(node, msg, "out of memory");
    }
    eddy_node_send(node, (int)last, msg);
}

/* The key of a sequence: String(msg.parts.id), as a JavaScript object key. New memory. */
static char *group_key(const json_t *parts)
{
    return eddy_json_to_string(json_object_get(parts, "id"), false);
}

/* 'repair': sends the held messages of a complete sequence, renumbered per output. */
static void send_group(eddy_node *node, json_t *group)
{
    json_t *msgs = json_object_get(group, "msgs"), *masks = json_object_get(group, "masks");
    size_t outputs = (size_t)eddy_node_output_count(node);
    size_t n = json_array_size(msgs);
    if (!outputs)
        return;
    long *counts = eddy_calloc(outputs, sizeof(long));
    long *indexes = eddy_calloc(outputs, sizeof(long));
    char(*ids)[17] = eddy_calloc(outputs, sizeof(*ids));
    if (!counts || !indexes || !ids) {
        eddy_node_error(node, NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *mask = json_array_get(masks, i);
        for (size_t j = 0; j < outputs; j++)
            counts[j] += json_is_true(json_array_get(mask, j));
    }
    for (size_t j = 0; j < outputs; j++)
        eddy_msg_new_id(ids[j]);
    for (size_t i = 0; i < n; i++) {
        json_t *mask = json_array_get(masks, i);
        for (size_t j = 0; j < outputs; j++) {
            if (!json_is_true(json_array_get(mask, j)))
                continue;
            json_t *copy = eddy_msg_clone(json_array_get(msgs, i));
            json_t *parts = copy ? json_object_get(copy, "parts") : NULL;
            if (!parts) {
                json_decref(copy);
                eddy_node_error(node, NULL, "out of memory");
                continue;
            }
            json_object_set_new(parts, "id", json_string(ids[j]));
            json_object_set_new(parts, "index", json_integer(indexes[j]++));
            json_object_set_new(parts, "count", json_integer(counts[j]));
            eddy_node_send(node, (int)j, copy);
        }
    }
done:
    eddy_free(counts);
    eddy_free(indexes);
    eddy_free(ids);
}

/* 'repair': holds 'msg' (taken) and what matched until its sequence is complete. */
static void hold_for_repair(eddy_node *node, struct switch_state *st, json_t *msg,
                            const json_t *parts, size_t evaluated)
{
    char *key = group_key(parts);
    json_t *group = key ? json_object_get(st->pending_out, key) : NULL;
    if (key && !group) {
        group = json_pack("{s:[],s:[],s:i}", "msgs", "masks", "received", 0);
        if (group)
            json_object_set_new(st->pending_out, key, group);
    }
    json_t *mask = json_array();
    if (!group || !mask) {
        eddy_node_error(node, msg, "out of memory");
        json_decref(mask);
        json_decref(msg);
        eddy_free(key);
        return;
    }
    for (size_t i = 0; i < evaluated; i++)
        json_array_append_new(mask, json_boolean(st->matched[i]));
    json_int_t received = json_integer_value(json_object_get(group, "received")) + 1;
    json_object_set_new(group, "received", json_integer(received));
    json_array_append_new(json_object_get(group, "msgs"), msg);
    json_array_append_new(json_object_get(group, "masks"), mask);
    const json_t *count = json_object_get(parts, "count");
    if (json_is_number(count) && json_number_value(count) == (double)received) {
        json_incref(group);
        json_object_del(st->pending_out, key);
        send_group(node, group);
        json_decref(group);
    }
    eddy_free(key);
}

static void switch_process(eddy_node *node, struct switch_state *st, json_t *msg, bool check_parts);

/* Holds 'msg' (taken) until its whole sequence is there, then processes the sequence. */
static void hold_sequence(eddy_node *node, struct switch_state *st, json_t *msg,
                          const json_t *parts)
{
    char *key = group_key(parts);
    json_t *group = key ? json_object_get(st->pending_in, key) : NULL;
    if (key && !group) {
        group = json_pack("{s:[]}", "msgs");
        if (group)
            json_object_set_new(st->pending_in, key, group);
    }
    if (!group) {
        eddy_node_error(node, msg, "out of memory");
        json_decref(msg);
        eddy_free(key);
        return;
    }
    json_t *count = json_object_get(parts, "count");
    if (count)
        json_object_set(group, "count", count);
    json_t *msgs = json_object_get(group, "msgs");
    json_array_append_new(msgs, msg);
    count = json_object_get(group, "count");
    if (json_is_number(count) && json_number_value(count) == (double)json_array_size(msgs)) {
        json_incref(msgs);
        json_incref(count);
        json_object_del(st->pending_in, key);
        for (size_t i = 0; i < json_array_size(msgs); i++) {
            json_t *m = json_incref(json_array_get(msgs, i));
            json_t *mparts = json_object_get(m, "parts");
            json_object_set(mparts, "count", count);
            switch_process(node, st, m, false);
        }
        json_decref(count);
        json_decref(msgs);
    }
    eddy_free(key);
}

/* Processes one message (taken). 'check_parts' is false for messages of a sequence that is
 * already complete. */
static void switch_process(eddy_node *node, struct switch_state *st, json_t *msg, bool check_parts)
{
    json_t *parts = json_object_get(msg, "parts");
    bool has_parts =
        json_is_object(parts) && json_object_get(parts, "id") && json_object_get(parts, "index");
    if (st->needs_count && check_parts && has_parts) {
        hold_sequence(node, st, msg, parts);
        return;
    }
    json_t *value = eval_typed(node, msg, switch_property_type(st), st->prop_value);
    size_t evaluated = 0;
    if (st->nrules == 0) { /* Node-RED does not even remember the value */
        json_decref(value);
        json_decref(msg);
        return;
    }
    if (apply_rules(node, st, value, msg, &evaluated) != EDDY_OK) {
        json_decref(value);
        json_decref(msg);
        return;
    }
    if (st->keep_prev) { /* a copy: the message goes on and may be changed downstream */
        json_decref(st->prev);
        st->prev = value ? json_deep_copy(value) : NULL;
    }
    json_decref(value);
    if (!st->repair || !has_parts)
        send_onward(node, st, msg, evaluated);
    else
        hold_for_repair(node, st, msg, parts, evaluated);
}

static void switch_input(eddy_node *node, void *state, json_t *msg)
{
    switch_process(node, state, msg, true);
}

const eddy_node_type eddy_node_switch = {
    .name = "switch",
    .inputs = 1,
    .outputs = -1,
    .flags = 0,
    .props = switch_props,
    .state_size = sizeof(struct switch_state),
    .help = "Routes each message to the outputs whose rule matches a property (msg.payload by "
            "default; or flow, global, env). Rules: eq, neq, lt, lte, gt, gte, btwn, cont, "
            "regex (POSIX-translated; no look-around, back-references or \\b), true, false, "
            "null, nnull, istype, empty, nempty, hask, else, and the sequence rules head, "
            "tail, index on msg.parts. Values are typed (str, num, bool, json, re, msg, flow, "
            "global, env, date, prev for the previous value). With checkall false it stops "
            "at the first match; 'repair' rebuilds msg.parts per output. JSONata is not "
            "supported.",
    .validate = switch_validate,
    .setup = switch_setup,
    .input = switch_input,
    .close = switch_close,
};
