/* msg.h: messages (jansson objects with _msgid, payload, topic, ...) and the JSON helpers
 * every node needs: property paths as Node-RED writes them ("payload.a[0]['b c']"), ids,
 * a JSON encoder that prints numbers the way JavaScript does, and numbers normalised so
 * that integral values are jansson integers.
 *
 * Ownership follows jansson's words: "new" references are the caller's to json_decref,
 * "borrowed" ones live as long as their container. */
#ifndef EDDY_MSG_H
#define EDDY_MSG_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "err.h"

/* ---- messages ---- */

/* A new message {_msgid: <fresh id>}. Ownership: new. NULL on out-of-memory. */
json_t *eddy_msg_new(void);
/* Writes a fresh 16-hex-digit message id (plus NUL) into 'out' (17 bytes). */
void eddy_msg_new_id(char out[17]);
/* A deep copy of 'msg' (same _msgid, as Node-RED's RED.util.cloneMessage). Ownership: new. */
json_t *eddy_msg_clone(const json_t *msg);

/* ---- property paths ---- */

#define EDDY_PATH_MAX_SEGMENTS 32

typedef struct eddy_path_seg {
    const char *key; /* points into eddy_path.buf; NULL when this is an array index */
    long index;      /* array index when key is NULL */
} eddy_path_seg;

typedef struct eddy_path {
    int count; /* number of segments, >= 1 */
    eddy_path_seg seg[EDDY_PATH_MAX_SEGMENTS];
    char buf[512]; /* the keys, NUL-separated */
} eddy_path;

/* Parses "a.b[0]['c d'].e" into 'path'. EDDY_EPARSE with a message naming the offset for
 * bad syntax (empty segment, unclosed bracket, "msg.x[msg.y]" nested references). */
int eddy_path_parse(const char *expr, eddy_path *path, eddy_err *err);
/* The value at 'path' inside 'root', or NULL if any step is missing. Borrowed. */
json_t *eddy_path_get(json_t *root, const eddy_path *path);
/* Parses then gets; NULL if the expression is bad or the value missing. Borrowed. */
json_t *eddy_path_lookup(json_t *root, const char *expr);
/* Sets the value at 'path', creating objects (or arrays, when the next segment is an index)
 * on the way, as Node-RED's setMessageProperty does. Takes 'value' (even on failure).
 * EDDY_EINVAL if a step is a non-container that cannot be replaced. */
int eddy_path_set_take(json_t *root, const eddy_path *path, json_t *value, eddy_err *err);
int eddy_path_assign_take(json_t *root, const char *expr, json_t *value, eddy_err *err);
/* Removes the value at 'path'; returns true if something was removed. */
bool eddy_path_delete(json_t *root, const eddy_path *path);

/* ---- numbers and types ---- */

/* A number as jansson: an integer when 'v' is integral and within +-2^53, else a real.
 * Ownership: new. */
json_t *eddy_json_number(double v);
/* Parses text as JavaScript's Number() would for plain decimal text (leading/trailing
 * white space allowed, "" is not a number here). Returns false if not a number. */
bool eddy_parse_number(const char *text, double *out);
/* JavaScript's parseFloat: the longest decimal prefix after white space ("12abc" is 12,
 * "Infinity" counts), NAN when there is none. */
double eddy_js_parse_float(const char *text);
/* parseFloat of a JSON value: numbers as they are, anything else through its String()
 * text. False (and 'out' untouched) when the result is not a number. */
bool eddy_json_parse_float(const json_t *value, double *out);
/* Formats 'v' as JavaScript's String(v) does (shortest round trip, "NaN", "Infinity",
 * exponent forms past 1e21). 'buf' needs 32 bytes. Returns 'buf'. */
char *eddy_format_number(double v, char *buf);
/* JavaScript's length of UTF-8 text of 'len' bytes: UTF-16 code units. */
size_t eddy_utf16_length(const char *s, size_t len);
/* The value of hex digit 'c', or -1. */
int eddy_hex_digit(int c);
/* JavaScript's typeof-like name: "string", "number", "boolean", "object", "array", "null",
 * "undefined" (value NULL). */
const char *eddy_json_type_name(const json_t *value);
/* JavaScript truthiness of a JSON value (NULL is undefined: false). */
bool eddy_json_truthy(const json_t *value);
/* JavaScript's String(value): strings as they are, numbers as JS prints them, objects as
 * "[object Object]" unless 'json_objects' (then their JSON text). Ownership: new, eddy_free. */
char *eddy_json_to_string(const json_t *value, bool json_objects);

/* ---- bytes ---- */

/* true when 'n' bytes are well-formed UTF-8 (no overlong forms, surrogates or code points
 * past U+10FFFF), as the is-utf8 check Node-RED uses. */
bool eddy_utf8_valid(const void *bytes, size_t n);
/* Decodes bytes as UTF-8 the way Node.js's Buffer.toString() does: each invalid byte becomes
 * U+FFFD. NUL-terminated; the length (NULs may occur inside) goes to 'out_len'.
 * Ownership: new (eddy_free), NULL on out-of-memory. */
char *eddy_utf8_decode(const void *bytes, size_t n, size_t *out_len);
/* Node.js's Buffer in JSON form: {"type":"Buffer","data":[bytes]}. Ownership: new. */
json_t *eddy_buffer_json(const void *bytes, size_t n);
/* The bytes of a {"type":"Buffer","data":[...]} value: true and a new buffer (eddy_free) in
 * '*out' of '*len' bytes, or false when 'value' is not such an object. */
bool eddy_buffer_bytes(const json_t *value, unsigned char **out, size_t *len);
/* Base64 text of 'n' bytes (RFC 4648, padded). Ownership: new, eddy_free. */
char *eddy_base64_encode(const void *bytes, size_t n);

/* ---- a growable text buffer ---- */

/* Text built piece by piece; 'data' stays NUL-terminated. After an allocation failure
 * 'failed' is set and later additions do nothing. Zero-initialise; the caller owns 'data'
 * (eddy_free). */
typedef struct eddy_buf {
    char *data;
    size_t len, cap;
    bool failed;
} eddy_buf;
void eddy_buf_add(eddy_buf *b, const char *s, size_t n);
void eddy_buf_str(eddy_buf *b, const char *s);
/* The whole file at 'path', NUL-terminated, its size in *len. NULL (errno set) if it
 * cannot be read, or out of memory. Ownership: new, eddy_free. */
char *eddy_read_file(const char *path, size_t *len);

/* ---- JSON text ---- */

#define EDDY_JSON_PRETTY 0x1 /* indent by 4 spaces, as JSON.stringify(v, null, 4) */

/* Encodes as JSON.stringify would: compact, numbers as JavaScript prints them, integral
 * reals without ".0". Ownership: new, eddy_free. NULL on out-of-memory. */
char *eddy_json_dumps(const json_t *value, int flags);
/* Parses JSON text of 'len' bytes; on error fills 'err' with line and column (EDDY_EPARSE).
 * Numbers are normalised (integral reals become integers). Ownership: new. */
json_t *eddy_json_loadb(const char *text, size_t len, eddy_err *err);
/* Compares like Node-RED's deep equality (numbers by value, objects by keys). */
bool eddy_json_equal(const json_t *a, const json_t *b);

#endif
