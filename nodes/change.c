/* change.c: Node-RED's "change" node. Applies a list of rules to each message in order: set a
 * property (of the message, or of flow/global context) to a typed value, change text, numbers
 * or booleans inside it, delete it, or move it. Old (0.x) single-rule nodes are converted as
 * Node-RED converts them. JavaScript regular expressions are translated to POSIX extended
 * ones (regex.h), which covers the common syntax; JSONata values are refused. */
#include <regex.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "mem.h"
#include "msg.h"
#include "node.h"

/* ---- text building ---- */

static void ch_addc(eddy_buf *b, char c)
{
    eddy_buf_add(b, &c, 1);
}

/* Bytes in the UTF-8 sequence that starts with 'c'. */
static size_t ch_utf8_len(unsigned char c)
{
    return c < 0xC0 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
}

static void ch_add_utf8(eddy_buf *b, unsigned long cp)
{
    char u[4];
    if (cp < 0x80) {
        ch_addc(b, (char)cp);
    } else if (cp < 0x800) {
        u[0] = (char)(0xC0 | (cp >> 6));
        u[1] = (char)(0x80 | (cp & 0x3F));
        eddy_buf_add(b, u, 2);
    } else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12));
        u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F));
        eddy_buf_add(b, u, 3);
    } else {
        u[0] = (char)(0xF0 | (cp >> 18));
        u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[3] = (char)(0x80 | (cp & 0x3F));
        eddy_buf_add(b, u, 4);
    }
}

/* ---- problems found while reading the rules ---- */

typedef struct ch_problems {
    char text[EDDY_ERR_MSG_MAX];
    int code; /* EDDY_OK, else EDDY_EINVAL, or EDDY_EUNSUPPORTED when any is unsupported */
} ch_problems;

static void ch_problem(ch_problems *pr, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void ch_problem(ch_problems *pr, int code, const char *fmt, ...)
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

/* ---- JavaScript regular expressions as POSIX extended ones ---- */

#define CH_MAX_GROUPS 99  /* capturing groups a pattern may have */
#define CH_MAX_POSIX  255 /* POSIX groups after translation */

typedef struct ch_regex {
    regex_t re;
    int groups;                 /* capture groups of the JavaScript expression */
    int map[CH_MAX_GROUPS + 1]; /* JavaScript group -> POSIX group */
    size_t nposix;              /* POSIX groups (non-capturing ones included) */
} ch_regex;

static int ch_hex(const char *s, int n, unsigned long *out)
{
    unsigned long v = 0;
    for (int i = 0; i < n; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return -1;
        v = v * 16 + (unsigned long)d;
    }
    *out = v;
    return 0;
}

/* Translation of one pattern. POSIX regex.h in the C locale sees bytes, so constructs that
 * match "one character" are written to take a whole UTF-8 sequence, as JavaScript takes a
 * whole character (outside the astral planes). Each such construct is a POSIX group. */
typedef struct ch_re_tr {
    const char *src;
    size_t i;      /* position in 'src' */
    eddy_buf *out; /* the POSIX pattern */
    ch_regex *rx;  /* group map being filled */
    size_t posix;  /* POSIX groups opened so far */
    int js;        /* JavaScript capturing groups opened so far */
    char *why;     /* what is wrong, for the caller's message */
    size_t whylen;
} ch_re_tr;

static int ch_re_fail(ch_re_tr *t, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int ch_re_fail(ch_re_tr *t, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->why, t->whylen, fmt, ap);
    va_end(ap);
    return code;
}

/* The code point of the UTF-8 sequence at 's'; *len gets its length in bytes. */
static unsigned long ch_utf8_decode(const char *s, size_t *len)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = ch_utf8_len(u[0]);
    unsigned long cp = n == 1 ? u[0] : n == 2 ? u[0] & 0x1Fu : n == 3 ? u[0] & 0x0Fu : u[0] & 0x07u;
    for (size_t k = 1; k < n; k++) {
        if ((u[k] & 0xC0) != 0x80) {
            *len = 1;
            return u[0];
        }
        cp = (cp << 6) | (u[k] & 0x3Fu);
    }
    *len = n;
    return cp;
}

/* One character that is not one of the bracket 'items' (ASCII only; a '-' item goes in
 * 'dash' so that it can be placed last). */
static void ch_re_any_but(ch_re_tr *t, const char *items, bool dash)
{
    eddy_buf_str(t->out, "([^");
    eddy_buf_str(t->out, items);
    eddy_buf_str(t->out, "\x80-\xff");
    if (dash)
        ch_addc(t->out, '-');
    eddy_buf_str(t->out, "]|[\xc0-\xff][\x80-\xbf]*)");
    t->posix++;
}

static bool ch_re_quantifier_next(const ch_re_tr *t)
{
    char c = t->src[t->i];
    return c == '*' || c == '+' || c == '?' || c == '{';
}

/* A literal character outside brackets; 't->i' is already past it. */
static void ch_re_lit(ch_re_tr *t, unsigned long cp)
{
    if (cp < 0x80) {
        if (cp && strchr(".[]()*+?{}|^$\\", (int)cp))
            ch_addc(t->out, '\\');
        ch_addc(t->out, (char)cp);
        return;
    }
    bool group = ch_re_quantifier_next(t); /* a quantifier must apply to all its bytes */
    if (group) {
        ch_addc(t->out, '(');
        t->posix++;
    }
    ch_add_utf8(t->out, cp);
    if (group)
        ch_addc(t->out, ')');
}

/* Reads the character escape at src[*i] (just after the backslash) that stands for one
 * character; returns it, or -1 when the escape is not a single character. */
static long ch_re_char_escape(const char *s, size_t *i)
{
    unsigned long v;
    char d = s[*i];
    switch (d) {
    case 't':
        (*i)++;
        return '\t';
    case 'n':
        (*i)++;
        return '\n';
    case 'r':
        (*i)++;
        return '\r';
    case 'f':
        (*i)++;
        return '\f';
    case 'v':
        (*i)++;
        return '\v';
    case 'x':
        if (ch_hex(s + *i + 1, 2, &v) == 0) {
            *i += 3;
            return (long)v;
        }
        (*i)++;
        return 'x';
    case 'u':
        if (ch_hex(s + *i + 1, 4, &v) == 0) {
            *i += 5;
            return (long)v;
        }
        (*i)++;
        return 'u';
    default:
        return -1;
    }
}

/* One member of a bracket expression at t->src[t->i]: a character (returned), or a class
 * escape (\d, \w, \s: appended to 'classes', returns -2). -1 after an error. */
static long ch_re_member(ch_re_tr *t, eddy_buf *classes, int *rc)
{
    const char *src = t->src;
    if (src[t->i] != '\\') {
        size_t len;
        unsigned long cp = ch_utf8_decode(src + t->i, &len);
        t->i += len;
        return (long)cp;
    }
    t->i++;
    char d = src[t->i];
    const char *cls = d == 'd' ? "0-9" : d == 'w' ? "A-Za-z0-9_" : d == 's' ? "[:space:]" : NULL;
    if (cls) {
        eddy_buf_str(classes, cls);
        t->i++;
        return -2;
    }
    if (d == 'D' || d == 'W' || d == 'S') {
        *rc = ch_re_fail(t, EDDY_EUNSUPPORTED, "'\\%c' inside a character class", d);
        return -1;
    }
    if (!d) {
        *rc = ch_re_fail(t, EDDY_EINVAL, "unterminated character class");
        return -1;
    }
    if (d == 'b') {
        t->i++;
        return '\b';
    }
    long ch = ch_re_char_escape(src, &t->i);
    if (ch < 0) {
        size_t len;
        ch = (long)ch_utf8_decode(src + t->i, &len);
        t->i += len;
    }
    return ch;
}

/* Translates the bracket expression at t->src[t->i] == '['. */
static int ch_re_bracket(ch_re_tr *t)
{
    const char *src = t->src;
    bool neg = false, rbr = false, dash = false, caret = false, lbr = false;
    eddy_buf inner = {0}, wide = {0}; /* ASCII members; multi-byte members joined by '|' */
    int rc = EDDY_OK;
    t->i++;
    if (src[t->i] == '^') {
        neg = true;
        t->i++;
    }
    if (src[t->i] == ']')
        return ch_re_fail(t, EDDY_EUNSUPPORTED, "empty character class '[%s]'", neg ? "^" : "");
    eddy_buf_add(&inner, "", 0);
    while (src[t->i] != ']') {
        if (!src[t->i]) {
            rc = ch_re_fail(t, EDDY_EINVAL, "unterminated character class");
            goto done;
        }
        long lo = ch_re_member(t, &inner, &rc);
        if (lo == -1)
            goto done;
        if (lo == -2)
            continue;
        if (src[t->i] == '-' && src[t->i + 1] && src[t->i + 1] != ']') {
            t->i++;
            size_t at = t->i;
            long hi = ch_re_member(t, &inner, &rc);
            if (hi == -1)
                goto done;
            if (hi == -2 || lo >= 0x80 || hi >= 0x80 || strchr("]-^[\\", (int)lo) ||
                strchr("]-^[\\", (int)hi)) {
                rc = ch_re_fail(t, EDDY_EUNSUPPORTED, "character class range '%.*s'",
                                (int)(t->i - at + 2), src + at - 2);
                goto done;
            }
            ch_addc(&inner, (char)lo);
            ch_addc(&inner, '-');
            ch_addc(&inner, (char)hi);
            continue;
        }
        if (lo >= 0x80) {
            if (wide.len)
                ch_addc(&wide, '|');
            ch_add_utf8(&wide, (unsigned long)lo);
        } else if (lo == ']') {
            rbr = true;
        } else if (lo == '-') {
            dash = true;
        } else if (lo == '^') {
            caret = true;
        } else if (lo == '[') {
            lbr = true;
        } else if (lo) {
            ch_addc(&inner, (char)lo);
        } else {
            rc = ch_re_fail(t, EDDY_EUNSUPPORTED, "NUL character");
            goto done;
        }
    }
    t->i++;
    if (inner.failed || wide.failed) {
        rc = EDDY_ENOMEM;
        goto done;
    }
    /* POSIX places: ']' first, '-' last, '^' anywhere but first */
    eddy_buf items = {0};
    if (rbr)
        ch_addc(&items, ']');
    eddy_buf_add(&items, inner.data, inner.len);
    if (lbr)
        ch_addc(&items, '[');
    if (caret)
        ch_addc(&items, '^');
    if (items.failed) {
        eddy_free(items.data);
        rc = EDDY_ENOMEM;
        goto done;
    }
    if (neg) {
        if (wide.len) {
            eddy_free(items.data);
            rc = ch_re_fail(t, EDDY_EUNSUPPORTED, "non-ASCII character in a negated class");
            goto done;
        }
        ch_re_any_but(t, items.data ? items.data : "", dash);
        eddy_free(items.data);
        goto done;
    }
    bool ascii = items.len || dash;
    if (wide.len) {
        ch_addc(t->out, '(');
        t->posix++;
    }
    if (ascii) {
        if (items.len == 1 && caret && !dash) {
            eddy_buf_str(t->out, "\\^");
        } else if (items.len == 1 && caret) {
            eddy_buf_str(t->out, "[-^]");
        } else {
            ch_addc(t->out, '[');
            eddy_buf_add(t->out, items.data, items.len);
            if (dash)
                ch_addc(t->out, '-');
            ch_addc(t->out, ']');
        }
    }
    if (wide.len) {
        if (ascii)
            ch_addc(t->out, '|');
        eddy_buf_add(t->out, wide.data, wide.len);
        ch_addc(t->out, ')');
    }
    eddy_free(items.data);
done:
    eddy_free(inner.data);
    eddy_free(wide.data);
    return rc;
}

/* Translates JavaScript pattern 'src' into 'out'; fills the group map of 'rx'. Returns
 * EDDY_EUNSUPPORTED (or EDDY_EINVAL) with 'why' for what has no POSIX equivalent. */
static int ch_re_translate(const char *src, eddy_buf *out, ch_regex *rx, char *why, size_t whylen)
{
    ch_re_tr tr = {src, 0, out, rx, 0, 0, why, whylen};
    ch_re_tr *t = &tr;
    bool atom = false; /* something a quantifier may follow comes last */
    while (src[t->i]) {
        char c = src[t->i];
        if (c == '\\') {
            char d = src[t->i + 1];
            if (!d)
                return ch_re_fail(t, EDDY_EINVAL, "\\ at end of pattern");
            const char *cls = d == 'd'   ? "[0-9]"
                              : d == 'w' ? "[A-Za-z0-9_]"
                              : d == 's' ? "[[:space:]]"
                              : d == 'b' ? "\\b"
                              : d == 'B' ? "\\B"
                                         : NULL;
            const char *but = d == 'D'   ? "0-9"
                              : d == 'W' ? "A-Za-z0-9_"
                              : d == 'S' ? "[:space:]"
                                         : NULL;
            if (cls || but) {
                if (cls)
                    eddy_buf_str(out, cls);
                else
                    ch_re_any_but(t, but, false);
                t->i += 2;
                atom = d != 'b' && d != 'B';
                continue;
            }
            if (d >= '1' && d <= '9') {
                int n = d - '0';
                t->i += 2;
                if (n > t->js || rx->map[n] > 9)
                    return ch_re_fail(t, EDDY_EUNSUPPORTED, "back reference '\\%d'", n);
                ch_addc(out, '\\');
                ch_addc(out, (char)('0' + rx->map[n]));
                atom = true;
                continue;
            }
            if (d == '0' || d == 'c' || d == 'k' || d == 'p' || d == 'P')
                return ch_re_fail(t, EDDY_EUNSUPPORTED, "escape '\\%c'", d);
            t->i++;
            long ch = ch_re_char_escape(src, &t->i);
            if (ch < 0) {
                size_t len;
                ch = (long)ch_utf8_decode(src + t->i, &len);
                t->i += len;
            }
            ch_re_lit(t, (unsigned long)ch);
            atom = true;
            continue;
        }
        if (c == '[') {
            int rc = ch_re_bracket(t);
            if (rc)
                return rc;
            atom = true;
            continue;
        }
        if (c == '(') {
            if (src[t->i + 1] == '?') {
                if (src[t->i + 2] != ':')
                    return ch_re_fail(t, EDDY_EUNSUPPORTED, "group '(?%.2s'", src + t->i + 2);
                t->posix++;
                ch_addc(out, '(');
                t->i += 3;
                atom = false;
                continue;
            }
            if (t->js == CH_MAX_GROUPS)
                return ch_re_fail(t, EDDY_EUNSUPPORTED, "more than %d groups", CH_MAX_GROUPS);
            rx->map[++t->js] = (int)++t->posix;
            ch_addc(out, '(');
            t->i++;
            atom = false;
            continue;
        }
        if (c == '.') {
            ch_re_any_but(t, "\n\r", false);
            t->i++;
            atom = true;
            continue;
        }
        size_t qlen = 0; /* length of a quantifier at src[i] */
        if (c == '*' || c == '+' || c == '?') {
            qlen = 1;
        } else if (c == '{') {
            size_t j = t->i + 1, digits = 0;
            while (src[j] >= '0' && src[j] <= '9')
                j++, digits++;
            if (digits && src[j] == ',') {
                j++;
                while (src[j] >= '0' && src[j] <= '9')
                    j++;
            }
            if (digits && src[j] == '}')
                qlen = j + 1 - t->i;
        }
        if (qlen) {
            if (!atom)
                return ch_re_fail(t, EDDY_EINVAL, "Nothing to repeat");
            eddy_buf_add(out, src + t->i, qlen);
            t->i += qlen;
            if (src[t->i] == '?')
                return ch_re_fail(t, EDDY_EUNSUPPORTED, "lazy quantifier '%.*s?'", (int)qlen,
                                  src + t->i - qlen);
            atom = false;
            continue;
        }
        if (c == '|' || c == '^' || c == '$' || c == ')') {
            ch_addc(out, c);
            t->i++;
            atom = c == ')';
            continue;
        }
        size_t len;
        unsigned long cp = ch_utf8_decode(src + t->i, &len);
        t->i += len;
        ch_re_lit(t, cp);
        atom = true;
    }
    if (t->posix > CH_MAX_POSIX)
        return ch_re_fail(t, EDDY_EUNSUPPORTED,
                          "a pattern this long (over %d groups once translated)", CH_MAX_POSIX);
    rx->groups = t->js;
    rx->nposix = t->posix;
    return out->failed ? EDDY_ENOMEM : EDDY_OK;
}

/* Compiles JavaScript pattern 'src' into 'rx'. On failure reports through 'pr' (when given)
 * and returns the code. */
static int ch_regex_compile(ch_regex *rx, const char *src, int rule, ch_problems *pr)
{
    char why[160] = "";
    eddy_buf pat = {0};
    memset(rx, 0, sizeof(*rx));
    eddy_buf_add(&pat, "", 0);
    int rc = ch_re_translate(src, &pat, rx, why, sizeof(why));
    if (rc == EDDY_OK && pat.failed)
        rc = EDDY_ENOMEM;
    if (rc == EDDY_OK) {
        int rrc = regcomp(&rx->re, pat.data, REG_EXTENDED);
        if (rrc != 0) {
            regerror(rrc, &rx->re, why, sizeof(why));
            rc = EDDY_EINVAL;
        }
    }
    eddy_free(pat.data);
    if (rc == EDDY_EUNSUPPORTED)
        ch_problem(pr, rc, "rule %d: regular expression '%s': %s is not supported by eddy", rule,
                   src, why);
    else if (rc == EDDY_ENOMEM)
        ch_problem(pr, rc, "rule %d: out of memory compiling '%s'", rule, src);
    else if (rc != EDDY_OK)
        ch_problem(pr, rc, "rule %d: Invalid 'from' property: %s", rule, why);
    return rc;
}

/* ---- property references: msg paths and context keys ---- */

enum ch_scope { CH_MSG, CH_FLOW, CH_GLOBAL };

/* A property of the message or a context key, as Node-RED writes them. Keys may hold
 * nested message references ("lookup[msg.topic]"), resolved per message. */
typedef struct ch_ref {
    enum ch_scope scope;
    char *expr;     /* msg: without "msg."; context: without "#:(store)::" */
    bool nested;    /* holds "[msg." */
    eddy_path path; /* msg scope without nested references: parsed once */
} ch_ref;

#define CH_SKIP 1 /* a reference could not be resolved: Node-RED skips the rule silently */

static const char *ch_strip_msg(const char *s)
{
    return strncmp(s, "msg.", 4) == 0 ? s + 4 : s;
}

static const char *ch_strip_store(const char *s)
{
    if (strncmp(s, "#:(", 3) == 0) {
        const char *end = strstr(s, ")::");
        if (end)
            return end + 3;
    }
    return s;
}

/* Writes 'expr' with each nested "[msg.x]" replaced by the value of msg.x as a key ("['v']")
 * or index ("[3]"). With 'msg' NULL (validation) every reference becomes "['x']". Returns
 * EDDY_OK, CH_SKIP (a reference is undefined or not a string or integer) or EDDY_EINVAL. */
static int ch_resolve(const char *expr, const json_t *msg, eddy_buf *out, int depth)
{
    if (depth > 8)
        return EDDY_EINVAL;
    for (size_t i = 0; expr[i];) {
        char c = expr[i];
        if (c == '[' &&
            (strncmp(expr + i + 1, "msg.", 4) == 0 || strncmp(expr + i + 1, "msg[", 4) == 0)) {
            size_t j = i + 1;
            int level = 1;
            for (; expr[j]; j++) {
                if (expr[j] == '[')
                    level++;
                else if (expr[j] == ']' && --level == 0)
                    break;
            }
            if (!expr[j])
                return EDDY_EINVAL;
            char *inner_src = eddy_strndup(expr + i + 1 + 4, j - i - 1 - 4);
            eddy_buf inner = {0};
            int rc = inner_src ? ch_resolve(inner_src, msg, &inner, depth + 1) : EDDY_ENOMEM;
            eddy_free(inner_src);
            if (rc == EDDY_OK && inner.failed)
                rc = EDDY_ENOMEM;
            eddy_path path;
            if (rc == EDDY_OK && eddy_path_parse(inner.data, &path, NULL) != EDDY_OK)
                rc = EDDY_EINVAL;
            eddy_free(inner.data);
            if (rc != EDDY_OK)
                return rc;
            if (!msg) {
                eddy_buf_str(out, "['x']");
            } else {
                const json_t *v = eddy_path_get((json_t *)msg, &path);
                if (json_is_string(v)) {
                    const char *s = json_string_value(v);
                    char q = strchr(s, '\'') ? '"' : '\'';
                    if (q == '"' && strchr(s, '"'))
                        return CH_SKIP;
                    ch_addc(out, '[');
                    ch_addc(out, q);
                    eddy_buf_str(out, s);
                    ch_addc(out, q);
                    ch_addc(out, ']');
                } else if (json_is_number(v) && json_number_value(v) >= 0 &&
                           json_number_value(v) == (double)(long)json_number_value(v)) {
                    char num[32];
                    snprintf(num, sizeof(num), "[%ld]", (long)json_number_value(v));
                    eddy_buf_str(out, num);
                } else {
                    return CH_SKIP;
                }
            }
            i = j + 1;
            continue;
        }
        if (c == '[' && (expr[i + 1] == '\'' || expr[i + 1] == '"')) {
            /* a quoted key: copy it whole so that "[" inside is not taken for a reference */
            char q = expr[i + 1];
            size_t j = i + 2;
            while (expr[j] && expr[j] != q)
                j++;
            if (expr[j])
                j++;
            eddy_buf_add(out, expr + i, j - i);
            i = j;
            continue;
        }
        ch_addc(out, c);
        i++;
    }
    return out->failed ? EDDY_ENOMEM : EDDY_OK;
}

/* Reads a reference of 'scope' from 'text' (the rule's 'what' names it in messages). */
static int ch_ref_init(ch_ref *ref, enum ch_scope scope, const char *text, int rule,
                       const char *what, ch_problems *pr)
{
    memset(ref, 0, sizeof(*ref));
    ref->scope = scope;
    const char *e = scope == CH_MSG ? ch_strip_msg(text) : ch_strip_store(text);
    if (!*e) {
        ch_problem(pr, EDDY_EINVAL, "rule %d: %s is empty", rule, what);
        return EDDY_EINVAL;
    }
    ref->expr = eddy_strdup(e);
    if (!ref->expr) {
        ch_problem(pr, EDDY_ENOMEM, "rule %d: out of memory", rule);
        return EDDY_ENOMEM;
    }
    ref->nested = strstr(e, "[msg.") || strstr(e, "[msg[");
    eddy_buf probe = {0};
    int rc = ch_resolve(e, NULL, &probe, 0);
    eddy_err perr = {0};
    if (rc == EDDY_OK && eddy_path_parse(probe.data, &ref->path, &perr) != EDDY_OK)
        rc = EDDY_EINVAL;
    else if (rc != EDDY_OK)
        snprintf(perr.msg, sizeof(perr.msg), "invalid nested message reference");
    eddy_free(probe.data);
    if (rc != EDDY_OK) {
        ch_problem(pr, rc, "rule %d: %s '%s': %s", rule, what, text, perr.msg);
        return rc;
    }
    return EDDY_OK;
}

static void ch_ref_free(ch_ref *ref)
{
    eddy_free(ref->expr);
    ref->expr = NULL;
}

/* The parsed path of a msg reference for this message: 'ref->path' or 'tmp'. */
static int ch_ref_path(const ch_ref *ref, const json_t *msg, eddy_path *tmp, const eddy_path **out)
{
    if (!ref->nested) {
        *out = &ref->path;
        return EDDY_OK;
    }
    eddy_buf b = {0};
    int rc = ch_resolve(ref->expr, msg, &b, 0);
    if (rc == EDDY_OK && eddy_path_parse(b.data, tmp, NULL) != EDDY_OK)
        rc = CH_SKIP;
    eddy_free(b.data);
    *out = tmp;
    return rc == EDDY_OK ? EDDY_OK : CH_SKIP;
}

/* The context key of a flow/global reference for this message. Ownership: new (eddy_free). */
static char *ch_ref_key(const ch_ref *ref, const json_t *msg)
{
    if (!ref->nested)
        return eddy_strdup(ref->expr);
    eddy_buf b = {0};
    if (ch_resolve(ref->expr, msg, &b, 0) != EDDY_OK || b.failed) {
        eddy_free(b.data);
        return NULL;
    }
    return b.data;
}

static eddy_ctx_scope ch_ctx(enum ch_scope s)
{
    return s == CH_GLOBAL ? EDDY_CTX_GLOBAL : EDDY_CTX_FLOW;
}

/* ---- rules ---- */

enum ch_op { CH_SET, CH_CHANGE, CH_DELETE, CH_MOVE };

enum ch_type {
    CT_STR,
    CT_NUM,
    CT_BOOL,
    CT_JSON,
    CT_BIN,
    CT_DATE,
    CT_ENV,
    CT_RE,
    CT_MSG,
    CT_FLOW,
    CT_GLOBAL,
};

typedef struct ch_rule {
    enum ch_op op;
    ch_ref prop;        /* the property the rule works on (p, pt) */
    bool dc;            /* deep copy (eddy always copies) */
    enum ch_type tot;   /* type of 'to' */
    ch_ref to_ref;      /* tot msg/flow/global (and move's target) */
    json_t *to_value;   /* str/num/bool/json: the value; bin/date/env: the raw 'to' */
    enum ch_type fromt; /* type of 'from' (change) */
    char *from_text;    /* fromt str/num/bool/re/env: the text */
    ch_ref from_ref;    /* fromt msg/flow/global */
    bool has_regex;
    ch_regex regex; /* fromt re */
} ch_rule;

static const struct {
    const char *name;
    enum ch_type type;
} ch_types[] = {
    {"str", CT_STR}, {"num", CT_NUM},   {"bool", CT_BOOL},     {"json", CT_JSON},
    {"bin", CT_BIN}, {"date", CT_DATE}, {"env", CT_ENV},       {"re", CT_RE},
    {"msg", CT_MSG}, {"flow", CT_FLOW}, {"global", CT_GLOBAL},
};

static int ch_type_of(const char *name)
{
    for (size_t i = 0; i < sizeof(ch_types) / sizeof(ch_types[0]); i++)
        if (strcmp(name, ch_types[i].name) == 0)
            return (int)ch_types[i].type;
    return -1;
}

static enum ch_scope ch_scope_of(enum ch_type t)
{
    return t == CT_FLOW ? CH_FLOW : t == CT_GLOBAL ? CH_GLOBAL : CH_MSG;
}

static bool ch_is_ref(enum ch_type t)
{
    return t == CT_MSG || t == CT_FLOW || t == CT_GLOBAL;
}

static void ch_rule_free(ch_rule *r)
{
    ch_ref_free(&r->prop);
    ch_ref_free(&r->to_ref);
    ch_ref_free(&r->from_ref);
    json_decref(r->to_value);
    eddy_free(r->from_text);
    if (r->has_regex)
        regfree(&r->regex.re);
    memset(r, 0, sizeof(*r));
}

/* String(v) for rule fields that may be written as numbers or booleans in hand-made flows.
 * Ownership: new. */
static char *ch_text(const json_t *v)
{
    if (!v || json_is_null(v))
        return eddy_strdup("");
    return eddy_json_to_string(v, false);
}

/* JavaScript's Number(text) for plain decimal text: "" and white space are 0. */
static bool ch_number(const char *s, double *out)
{
    const char *p = s;
    while (*p == ' ' || (*p >= '\t' && *p <= '\r'))
        p++;
    if (!*p) {
        *out = 0;
        return true;
    }
    if ((p[0] == '0') && (p[1] == 'x' || p[1] == 'X') && p[2]) {
        char *end;
        unsigned long long v = strtoull(p + 2, &end, 16);
        while (*end == ' ' || (*end >= '\t' && *end <= '\r'))
            end++;
        if (*end)
            return false;
        *out = (double)v;
        return true;
    }
    return eddy_parse_number(s, out);
}

/* Reads the 'to' of rule 'n' (1-based). */
static void ch_parse_to(ch_rule *r, const json_t *obj, int n, ch_problems *pr)
{
    const json_t *to = json_object_get(obj, "to");
    const char *tot_name = json_string_value(json_object_get(obj, "tot"));
    char *text = ch_text(to);
    if (!text) {
        ch_problem(pr, EDDY_ENOMEM, "rule %d: out of memory", n);
        return;
    }
    if (!tot_name || !*tot_name) {
        if (r->op == CH_MOVE) {
            ch_problem(pr, EDDY_EINVAL,
                       "rule %d: move needs a target type (tot) of msg, flow "
                       "or global",
                       n);
            eddy_free(text);
            return;
        }
        /* Node-RED's migration of old rules: "msg.x" as a set value names a property */
        if (r->op == CH_SET && strncmp(text, "msg.", 4) == 0)
            tot_name = "msg";
        else
            tot_name = "str";
    }
    if (strcmp(tot_name, "jsonata") == 0) {
        ch_problem(pr, EDDY_EUNSUPPORTED,
                   "rule %d: JSONata expressions (to type 'jsonata') are not supported by "
                   "eddy; use a lua node",
                   n);
        eddy_free(text);
        return;
    }
    int t = ch_type_of(tot_name);
    if (t < 0 || t == CT_RE || (r->op == CH_MOVE && !ch_is_ref((enum ch_type)t))) {
        ch_problem(pr, EDDY_EINVAL, "rule %d: unknown %s type '%s'", n,
                   r->op == CH_MOVE ? "move target" : "value", tot_name);
        eddy_free(text);
        return;
    }
    r->tot = (enum ch_type)t;
    double num;
    eddy_err perr = {0};
    switch (r->tot) {
    case CT_STR:
        r->to_value =
            json_is_string(to) || !to || json_is_null(to) ? json_string(text) : json_deep_copy(to);
        break;
    case CT_NUM:
        if (json_is_number(to))
            r->to_value = json_deep_copy(to);
        else if (ch_number(text, &num))
            r->to_value = eddy_json_number(num);
        else
            ch_problem(pr, EDDY_EINVAL, "rule %d: '%s' is not a number", n, text);
        break;
    case CT_BOOL:
        r->to_value = json_boolean(strcasecmp(text, "true") == 0);
        break;
    case CT_JSON:
    case CT_BIN:
        if (json_is_string(to) || !to) {
            json_t *v = eddy_json_loadb(text, strlen(text), &perr);
            if (!v)
                ch_problem(pr, EDDY_EINVAL, "rule %d: Invalid 'to' JSON property: %s", n, perr.msg);
            else if (r->tot == CT_JSON)
                r->to_value = v;
            else {
                json_decref(v);
                r->to_value = json_string(text);
            }
        } else {
            r->to_value = json_deep_copy(to);
        }
        break;
    case CT_DATE:
    case CT_ENV:
        r->to_value = json_string(text);
        break;
    case CT_MSG:
    case CT_FLOW:
    case CT_GLOBAL:
        ch_ref_init(&r->to_ref, ch_scope_of(r->tot), text, n,
                    r->op == CH_MOVE ? "move target" : "value", pr);
        break;
    case CT_RE:
        break;
    }
    if (!r->to_value && !ch_is_ref(r->tot) && pr->code == EDDY_OK)
        ch_problem(pr, EDDY_ENOMEM, "rule %d: out of memory", n);
    eddy_free(text);
}

/* Reads the 'from' of change rule 'n'. */
static void ch_parse_from(ch_rule *r, const json_t *obj, int n, ch_problems *pr)
{
    const char *fromt = json_string_value(json_object_get(obj, "fromt"));
    if (!fromt || !*fromt)
        fromt = eddy_json_truthy(json_object_get(obj, "re")) ? "re" : "str";
    int t = ch_type_of(fromt);
    if (strcmp(fromt, "jsonata") == 0) {
        ch_problem(pr, EDDY_EUNSUPPORTED,
                   "rule %d: JSONata expressions (from type 'jsonata') are not supported by "
                   "eddy; use a lua node",
                   n);
        return;
    }
    if (t < 0 || t == CT_JSON || t == CT_BIN || t == CT_DATE) {
        ch_problem(pr, EDDY_EINVAL, "rule %d: unknown search type (fromt) '%s'", n, fromt);
        return;
    }
    r->fromt = (enum ch_type)t;
    char *text = ch_text(json_object_get(obj, "from"));
    if (!text) {
        ch_problem(pr, EDDY_ENOMEM, "rule %d: out of memory", n);
        return;
    }
    if (ch_is_ref(r->fromt)) {
        ch_ref_init(&r->from_ref, ch_scope_of(r->fromt), text, n, "search value", pr);
        eddy_free(text);
        return;
    }
    r->from_text = text;
    if (r->fromt == CT_RE && ch_regex_compile(&r->regex, text, n, pr) == EDDY_OK)
        r->has_regex = true;
}

static void ch_parse_rule(ch_rule *r, const json_t *obj, int n, ch_problems *pr)
{
    memset(r, 0, sizeof(*r));
    if (!json_is_object(obj)) {
        ch_problem(pr, EDDY_EINVAL, "rule %d: not an object", n);
        return;
    }
    const char *t = json_string_value(json_object_get(obj, "t"));
    if (!t || !*t) {
        ch_problem(pr, EDDY_EINVAL, "rule %d: no action (t)", n);
        return;
    }
    if (strcmp(t, "set") == 0)
        r->op = CH_SET;
    else if (strcmp(t, "change") == 0)
        r->op = CH_CHANGE;
    else if (strcmp(t, "delete") == 0)
        r->op = CH_DELETE;
    else if (strcmp(t, "move") == 0)
        r->op = CH_MOVE;
    else {
        ch_problem(pr, EDDY_EINVAL,
                   "rule %d: unknown action '%s' (expected set, change, delete or move)", n, t);
        return;
    }
    const char *pt = json_string_value(json_object_get(obj, "pt"));
    int scope = !pt || !*pt ? CT_MSG : ch_type_of(pt);
    if (scope < 0 || !ch_is_ref((enum ch_type)scope)) {
        ch_problem(pr, EDDY_EINVAL, "rule %d: property type '%s' is not one of msg, flow, global",
                   n, pt);
        return;
    }
    char *p = ch_text(json_object_get(obj, "p"));
    if (!p) {
        ch_problem(pr, EDDY_ENOMEM, "rule %d: out of memory", n);
        return;
    }
    ch_ref_init(&r->prop, ch_scope_of((enum ch_type)scope), p, n, "property", pr);
    eddy_free(p);
    r->dc = eddy_json_truthy(json_object_get(obj, "dc"));
    if (r->op != CH_DELETE)
        ch_parse_to(r, obj, n, pr);
    if (r->op == CH_CHANGE)
        ch_parse_from(r, obj, n, pr);
}

/* The rules of a change node's JSON: its 'rules', or the single rule of an old (0.x) node
 * made from action/property/from/to/reg as Node-RED makes it. Ownership: new array. */
static json_t *ch_rules_json(const json_t *config, ch_problems *pr)
{
    const json_t *rules = json_object_get(config, "rules");
    if (eddy_json_truthy(rules)) {
        if (!json_is_array(rules)) {
            ch_problem(pr, EDDY_EINVAL, "rules must be an array, not %s",
                       eddy_json_type_name(rules));
            return NULL;
        }
        return json_incref((json_t *)rules);
    }
    const char *action = json_string_value(json_object_get(config, "action"));
    json_t *out = json_array();
    if (!out || !action || !*action)
        return out; /* nothing configured: Node-RED's rule then does nothing */
    const char *t = strcmp(action, "replace") == 0 ? "set" : action;
    if (strcmp(t, "set") && strcmp(t, "change") && strcmp(t, "delete")) {
        ch_problem(pr, EDDY_EINVAL,
                   "old-style change node with action '%s' cannot be converted (expected "
                   "replace, change or delete); open and save it in Node-RED's editor",
                   action);
        json_decref(out);
        return NULL;
    }
    json_t *rule = json_object();
    const json_t *prop = json_object_get(config, "property");
    const json_t *to = json_object_get(config, "to");
    const json_t *from = json_object_get(config, "from");
    const json_t *reg = json_object_get(config, "reg");
    json_object_set_new(rule, "t", json_string(t));
    json_object_set_new(rule, "p", eddy_json_truthy(prop) ? json_deep_copy(prop) : json_string(""));
    if (strcmp(t, "delete")) {
        json_object_set_new(rule, "to",
                            eddy_json_truthy(to) ? json_deep_copy(to) : json_string(""));
    }
    if (strcmp(t, "change") == 0) {
        json_object_set_new(rule, "from",
                            eddy_json_truthy(from) ? json_deep_copy(from) : json_string(""));
        /* (n.reg === null || n.reg) */
        json_object_set_new(rule, "re", json_boolean(json_is_null(reg) || eddy_json_truthy(reg)));
    }
    json_array_append_new(out, rule);
    return out;
}

/* Parses every rule of 'config'. On success *out holds 'count' rules (free each with
 * ch_rule_free, then the array); otherwise every problem is in 'pr'. */
static int ch_parse_rules(const json_t *config, ch_rule **out, int *count, ch_problems *pr)
{
    *out = NULL;
    *count = 0;
    json_t *rules = ch_rules_json(config, pr);
    if (!rules)
        return pr->code ? pr->code : EDDY_ENOMEM;
    size_t n = json_array_size(rules);
    ch_rule *list = n ? eddy_calloc(n, sizeof(*list)) : NULL;
    if (n && !list) {
        json_decref(rules);
        ch_problem(pr, EDDY_ENOMEM, "out of memory reading %zu rules", n);
        return EDDY_ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        ch_parse_rule(&list[i], json_array_get(rules, i), (int)i + 1, pr);
    json_decref(rules);
    if (pr->code != EDDY_OK) {
        for (size_t i = 0; i < n; i++)
            ch_rule_free(&list[i]);
        eddy_free(list);
        return pr->code;
    }
    *out = list;
    *count = (int)n;
    return EDDY_OK;
}

/* ---- applying rules ---- */

enum { CH_NEXT = 0, CH_DROP = 2 }; /* and CH_SKIP: go on with the next rule */

/* The current value of a reference (borrowed), or NULL. *skip is set when the reference
 * cannot be resolved for this message. */
static json_t *ch_get(eddy_node *node, const ch_ref *ref, json_t *msg, bool *skip)
{
    *skip = false;
    if (ref->scope == CH_MSG) {
        eddy_path tmp;
        const eddy_path *path;
        if (ch_ref_path(ref, msg, &tmp, &path) != EDDY_OK) {
            *skip = true;
            return NULL;
        }
        return eddy_path_get(msg, path);
    }
    char *key = ch_ref_key(ref, msg);
    if (!key) {
        *skip = true;
        return NULL;
    }
    json_t *v = eddy_node_context_get(node, ch_ctx(ref->scope), key);
    eddy_free(key);
    return v;
}

/* Deletes as setMessageProperty(msg, p, undefined) does: array elements addressed by an
 * index are removed (splice). Returns false when a parent is missing or not a container. */
static bool ch_msg_delete(json_t *msg, const eddy_path *path)
{
    json_t *parent = msg;
    for (int i = 0; i < path->count - 1 && parent; i++) {
        eddy_path one = {.count = 1};
        one.seg[0] = path->seg[i];
        parent = eddy_path_get(parent, &one);
    }
    if (!json_is_object(parent) && !json_is_array(parent))
        return false;
    const eddy_path_seg *last = &path->seg[path->count - 1];
    if (json_is_array(parent) && !last->key) {
        if (last->index >= 0 && (size_t)last->index < json_array_size(parent))
            json_array_remove(parent, (size_t)last->index);
        return true;
    }
    eddy_path one = {.count = 1};
    one.seg[0] = *last;
    eddy_path_delete(parent, &one);
    return true;
}

/* setMessageProperty refuses to go through a value that is not an object (null included). */
static bool ch_msg_settable(json_t *msg, const eddy_path *path)
{
    json_t *cur = msg;
    for (int i = 0; i < path->count - 1; i++) {
        eddy_path one = {.count = 1};
        one.seg[0] = path->seg[i];
        json_t *next = eddy_path_get(cur, &one);
        if (!next)
            return true; /* created from here on */
        if (!json_is_object(next) && !json_is_array(next))
            return false;
        cur = next;
    }
    return true;
}

/* Stores 'value' (taken; NULL deletes) at 'ref'. 'warn' reports a message property that
 * cannot be set, as Node-RED's set rule does. Returns CH_NEXT, CH_SKIP or CH_DROP. */
static int ch_put(eddy_node *node, const ch_ref *ref, json_t *msg, json_t *value, bool warn)
{
    if (ref->scope == CH_MSG) {
        eddy_path tmp;
        const eddy_path *path;
        if (ch_ref_path(ref, msg, &tmp, &path) != EDDY_OK) {
            json_decref(value);
            return CH_SKIP;
        }
        bool ok;
        if (!value) {
            ok = ch_msg_delete(msg, path);
        } else if (!ch_msg_settable(msg, path)) {
            json_decref(value);
            ok = false;
        } else {
            ok = eddy_path_set_take(msg, path, value, NULL) == EDDY_OK;
        }
        if (!ok && warn)
            eddy_node_warn(node, "Cannot set property of non-object type: %s", ref->expr);
        return CH_NEXT;
    }
    char *key = ch_ref_key(ref, msg);
    if (!key) {
        json_decref(value);
        return CH_SKIP;
    }
    eddy_err err;
    eddy_err_clear(&err);
    int rc = eddy_node_context_set(node, ch_ctx(ref->scope), key, value, &err);
    eddy_free(key);
    if (rc != EDDY_OK) {
        eddy_node_error(node, msg, "%s", err.msg);
        return CH_DROP;
    }
    return CH_NEXT;
}

/* The rule's 'to' value for this message. Ownership: *out is new, NULL for undefined. */
static int ch_to_value(eddy_node *node, const ch_rule *r, json_t *msg, json_t **out)
{
    *out = NULL;
    eddy_err err;
    eddy_err_clear(&err);
    bool skip;
    switch (r->tot) {
    case CT_STR:
    case CT_NUM:
    case CT_BOOL:
    case CT_JSON:
        /* Scalars are never changed in place, so a constant one can be shared; objects and
         * arrays are copied because later rules and nodes may change them. */
        *out = json_is_object(r->to_value) || json_is_array(r->to_value)
                   ? json_deep_copy(r->to_value)
                   : json_incref(r->to_value);
        if (*out)
            return CH_NEXT;
        eddy_node_error(node, msg, "out of memory");
        return CH_DROP;
    case CT_BIN:
    case CT_DATE:
    case CT_ENV:
        if (eddy_node_eval_typed(node, msg,
                                 r->tot == CT_BIN    ? "bin"
                                 : r->tot == CT_DATE ? "date"
                                                     : "env",
                                 r->to_value, out, &err) != EDDY_OK) {
            eddy_node_error(node, msg, "%s", err.msg);
            return CH_DROP;
        }
        return CH_NEXT;
    case CT_MSG:
    case CT_FLOW:
    case CT_GLOBAL: {
        json_t *v = ch_get(node, &r->to_ref, msg, &skip);
        if (skip)
            return CH_SKIP;
        *out = v ? json_deep_copy(v) : NULL;
        return CH_NEXT;
    }
    case CT_RE:
        break;
    }
    return CH_NEXT;
}

/* Appends replacement 'repl' for the match [so, eo) of 's', expanding $$, $&, $`, $' and
 * $n as String.prototype.replace does. 'pm' and 'rx' are NULL for a plain text search. */
static void ch_expand(eddy_buf *b, const char *repl, const char *s, size_t slen, size_t so,
                      size_t eo, const regmatch_t *pm, const ch_regex *rx)
{
    int groups = rx ? rx->groups : 0;
    for (size_t i = 0; repl[i];) {
        if (repl[i] != '$' || !repl[i + 1]) {
            ch_addc(b, repl[i++]);
            continue;
        }
        char n = repl[i + 1];
        if (n == '$') {
            ch_addc(b, '$');
            i += 2;
        } else if (n == '&') {
            eddy_buf_add(b, s + so, eo - so);
            i += 2;
        } else if (n == '`') {
            eddy_buf_add(b, s, so);
            i += 2;
        } else if (n == '\'') {
            eddy_buf_add(b, s + eo, slen - eo);
            i += 2;
        } else if (n >= '0' && n <= '9') {
            int g = -1, used = 0;
            char n2 = repl[i + 2];
            if (n2 >= '0' && n2 <= '9' && (n - '0') * 10 + (n2 - '0') >= 1 &&
                (n - '0') * 10 + (n2 - '0') <= groups) {
                g = (n - '0') * 10 + (n2 - '0');
                used = 3;
            } else if (n - '0' >= 1 && n - '0' <= groups) {
                g = n - '0';
                used = 2;
            }
            if (g < 0) {
                ch_addc(b, '$');
                i++;
                continue;
            }
            const regmatch_t *m = &pm[rx->map[g]];
            if (m->rm_so >= 0 && m->rm_eo >= m->rm_so)
                eddy_buf_add(b, s + m->rm_so, (size_t)(m->rm_eo - m->rm_so));
            i += (size_t)used;
        } else {
            ch_addc(b, '$');
            i++;
        }
    }
}

/* s.replace(/re/g, repl) */
static void ch_replace_regex(eddy_buf *b, const ch_regex *rx, const char *s, size_t len,
                             const char *repl)
{
    regmatch_t pm[CH_MAX_POSIX + 1];
    size_t nmatch = rx->nposix + 1;
    size_t pos = 0, last = 0;
    while (pos <= len) {
        pm[0].rm_so = (regoff_t)pos;
        pm[0].rm_eo = (regoff_t)len;
        if (regexec(&rx->re, s, nmatch, pm, REG_STARTEND | (pos ? REG_NOTBOL : 0)) != 0)
            break;
        size_t so = (size_t)pm[0].rm_so, eo = (size_t)pm[0].rm_eo;
        eddy_buf_add(b, s + last, so - last);
        ch_expand(b, repl, s, len, so, eo, pm, rx);
        last = eo;
        if (eo == so) { /* an empty match: step over one character */
            if (so >= len)
                break;
            size_t n = ch_utf8_len((unsigned char)s[so]);
            if (so + n > len)
                n = len - so;
            eddy_buf_add(b, s + so, n);
            last = so + n;
        }
        pos = last;
    }
    if (last < len)
        eddy_buf_add(b, s + last, len - last);
}

/* s.replace(new RegExp(escaped(needle), "g"), repl) */
static void ch_replace_text(eddy_buf *b, const char *needle, const char *s, size_t len,
                            const char *repl)
{
    size_t nlen = strlen(needle), last = 0, pos = 0;
    while (pos <= len) {
        size_t at = pos;
        if (nlen) {
            while (at + nlen <= len && memcmp(s + at, needle, nlen) != 0)
                at++;
            if (at + nlen > len)
                break;
        }
        eddy_buf_add(b, s + last, at - last);
        ch_expand(b, repl, s, len, at, at + nlen, NULL, NULL);
        last = at + nlen;
        if (!nlen) {
            if (at >= len)
                break;
            size_t n = ch_utf8_len((unsigned char)s[at]);
            if (at + n > len)
                n = len - at;
            eddy_buf_add(b, s + at, n);
            last = at + n;
        }
        pos = last;
    }
    if (last < len)
        eddy_buf_add(b, s + last, len - last);
}

/* What 'from' is for this message, as Node-RED's getFromValue sees it. */
typedef struct ch_from {
    enum ch_type type;   /* str, num, bool, re or env */
    const char *text;    /* configured text, or the text of a string reference */
    const json_t *value; /* a number or boolean from a reference (no text then) */
} ch_from;

static int ch_apply_change(eddy_node *node, const ch_rule *r, json_t *msg, json_t *value)
{
    ch_from from = {r->fromt, r->from_text, NULL};
    bool skip;
    if (ch_is_ref(r->fromt)) {
        json_t *v = ch_get(node, &r->from_ref, msg, &skip);
        if (skip) {
            json_decref(value);
            return CH_SKIP;
        }
        if (json_is_number(v)) {
            from = (ch_from){CT_NUM, NULL, v};
        } else if (json_is_boolean(v)) {
            from = (ch_from){CT_BOOL, NULL, v};
        } else if (json_is_string(v)) {
            from = (ch_from){CT_STR, json_string_value(v), NULL};
        } else {
            eddy_node_error(node, msg, "Invalid 'from' property: unsupported type: %s",
                            v ? "object" : "undefined");
            json_decref(value);
            return CH_DROP;
        }
    }
    json_t *current = ch_get(node, &r->prop, msg, &skip);
    if (skip) {
        json_decref(value);
        return CH_SKIP;
    }
    if (json_is_string(current)) {
        const char *cur = json_string_value(current);
        size_t len = json_string_length(current);
        if (from.text && from.type != CT_RE && from.type != CT_ENV && strcmp(cur, from.text) == 0)
            return ch_put(node, &r->prop, msg, value, false);
        if (!from.text) { /* a number or boolean reference: no text to search for */
            json_decref(value);
            return CH_NEXT;
        }
        char *repl = eddy_json_to_string(value, false);
        eddy_buf b = {0};
        eddy_buf_add(&b, "", 0);
        if (repl && from.type == CT_RE)
            ch_replace_regex(&b, &r->regex, cur, len, repl);
        else if (repl)
            ch_replace_text(&b, from.text, cur, len, repl);
        json_t *result = NULL;
        if (repl && !b.failed) {
            /* a boolean 'to' that turned the whole text into "true"/"false" is the boolean */
            if (r->tot == CT_BOOL && r->prop.scope == CH_MSG && strcmp(b.data, repl) == 0)
                result = json_incref(value);
            else
                result = json_stringn(b.data, b.len);
        }
        eddy_free(repl);
        eddy_free(b.data);
        json_decref(value);
        if (!result) {
            eddy_node_error(node, msg, "out of memory changing '%s'", r->prop.expr);
            return CH_DROP;
        }
        return ch_put(node, &r->prop, msg, result, false);
    }
    if (json_is_number(current) && from.type == CT_NUM) {
        double want;
        bool ok =
            from.value ? (want = json_number_value(from.value), true) : ch_number(from.text, &want);
        if (ok && json_number_value(current) == want)
            return ch_put(node, &r->prop, msg, value, false);
    } else if (json_is_boolean(current) && from.type == CT_BOOL && from.text) {
        if (strcmp(json_is_true(current) ? "true" : "false", from.text) == 0)
            return ch_put(node, &r->prop, msg, value, false);
    }
    json_decref(value);
    return CH_NEXT;
}

static int ch_apply(eddy_node *node, const ch_rule *r, json_t *msg)
{
    json_t *value = NULL;
    bool skip;
    int rc;
    switch (r->op) {
    case CH_DELETE:
        return ch_put(node, &r->prop, msg, NULL, false);
    case CH_SET:
        rc = ch_to_value(node, r, msg, &value);
        if (rc != CH_NEXT)
            return rc;
        return ch_put(node, &r->prop, msg, value, true);
    case CH_CHANGE:
        rc = ch_to_value(node, r, msg, &value);
        if (rc != CH_NEXT)
            return rc;
        return ch_apply_change(node, r, msg, value);
    case CH_MOVE: {
        json_t *v = ch_get(node, &r->prop, msg, &skip);
        if (skip)
            return CH_SKIP;
        value = v ? json_incref(v) : NULL;
        rc = ch_put(node, &r->prop, msg, NULL, false);
        if (rc != CH_NEXT) {
            json_decref(value);
            return rc;
        }
        return ch_put(node, &r->to_ref, msg, value, true);
    }
    }
    return CH_NEXT;
}

/* ---- the node ---- */

struct change_state {
    const json_t *rules; /* the rules as in the flow (borrowed) */
    ch_rule *list;       /* parsed in setup */
    int count;
};

static const eddy_prop change_props[] = {
    {"rules", EDDY_PROP_JSON, NULL, false, offsetof(struct change_state, rules),
     "rules applied in order: {t: set|change|delete|move, p, pt, to, tot, from, fromt, dc}", NULL},
    {0},
};

static int change_validate(const eddy_node_type *type, const json_t *config, void *state,
                           eddy_err *err)
{
    ch_problems pr = {.code = EDDY_OK};
    ch_rule *list;
    int count;
    if (ch_parse_rules(config, &list, &count, &pr) != EDDY_OK)
        return eddy_err_set(err, pr.code ? pr.code : EDDY_ENOMEM, "%s", pr.text);
    for (int i = 0; i < count; i++)
        ch_rule_free(&list[i]);
    eddy_free(list);
    return EDDY_OK;
}

static int change_setup(eddy_node *node, void *state, eddy_err *err)
{
    struct change_state *st = state;
    ch_problems pr = {.code = EDDY_OK};
    if (ch_parse_rules(eddy_node_config(node), &st->list, &st->count, &pr) != EDDY_OK)
        return eddy_err_set(err, pr.code ? pr.code : EDDY_ENOMEM, "%s", pr.text);
    return EDDY_OK;
}

static void change_input(eddy_node *node, void *state, json_t *msg)
{
    struct change_state *st = state;
    for (int i = 0; i < st->count; i++) {
        if (ch_apply(node, &st->list[i], msg) == CH_DROP) {
            json_decref(msg);
            return;
        }
    }
    eddy_node_send(node, 0, msg);
}

static int change_close(eddy_node *node, void *state, bool removed)
{
    struct change_state *st = state;
    for (int i = 0; i < st->count; i++)
        ch_rule_free(&st->list[i]);
    eddy_free(st->list);
    st->list = NULL;
    st->count = 0;
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_change = {
    .name = "change",
    .inputs = 1,
    .outputs = 1,
    .flags = 0,
    .props = change_props,
    .state_size = sizeof(struct change_state),
    .help = "Applies rules to each message in order: set a message property or flow/global "
            "context key to a value (str, num, bool, json, bin, date, env, msg, flow, global), "
            "change text (every occurrence of a string or regular expression, with $1 groups) "
            "or replace an equal number or boolean, delete a property, or move it. Regular "
            "expressions are run as POSIX extended ones (lookarounds, lazy quantifiers and "
            "named groups are refused). JSONata values are not supported.",
    .validate = change_validate,
    .setup = change_setup,
    .input = change_input,
    .close = change_close,
};
