/* store.c: the event store on LMDB (see store.h for the contract, the states and the
 * durability policies). This file climbs from bytes to operations: key and record
 * layouts, the JSON checks that decide what is a dead letter, opening, the group (one
 * write transaction per loop iteration) and its waiters, appending, reading, and the
 * NDJSON form used by export and import.
 *
 * Invariants:
 *   1. 'next_position' is one past the last position in the events table as the open
 *      group sees it; when a group is lost it goes back to 'group_first'.
 *   2. Every event is in all four tables: events, ids, streams, times; a group commits all
 *      four entries of an event or none.
 *   3. Each waiter holds the attached loop once (if it had a loop when registered) and
 *      gives it back right after its callback ran, or when it is cancelled.
 *   4. Waiters and listeners run only from store_notify, never inside eddy_store_append.
 *   5. The stream-version cache holds what the tables say, for the write transaction id
 *      'heads_txn': each commit of ours moves it to the next id, and a group that starts
 *      with another id (another process wrote in between) or is lost empties it. */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "mem.h"
#include "msg.h"

#define DEFAULT_MAP_SIZE      ((size_t)16 << 30)
#define DEFAULT_MAX_BODY      ((size_t)1 << 20)
#define DEFAULT_GROUP_MAX     10000
#define DEFAULT_GROUP_LINGER  50  /* ms; see group_lingers */
#define LINGER_MAX_EVENTS     500 /* events after which a group no longer lingers */
#define DEFAULT_SYNC_INTERVAL 1000
#define JSON_MAX_DEPTH        512
#define MAX_KEY               (EDDY_STORE_NAME_MAX + 1 + 8 + 8)
#define DEADLETTER_TYPE       "deadletter"

/* ---- on-disk layout ----
 *
 * One LMDB file, DIR/events.mdb (MDB_NOSUBDIR; its lock file is events.mdb-lock), with
 * five named tables. Integers are big-endian so that keys sort by memcmp.
 *
 *   events   key: position (u64)                      value: record (below)
 *   ids      key: event id bytes                      value: position (u64)
 *   streams  key: stream bytes, 0x00, version (u64)   value: position (u64)
 *   times    key: stream bytes, 0x00, event time (i64 with the sign bit flipped, so that
 *                 it sorts), position (u64)           value: empty
 *   meta     "format" -> one byte, the record format (1)
 *            "cp:" + name -> checkpoint: position (u64), version (i64)
 *            "ns:" + owner, 0x00, key -> node state: the bytes a node type wrote
 *
 * A record (format 1):
 *
 *    0        1        2          4          6          8             16
 *   +--------+--------+----------+----------+----------+-------------+
 *   | format | flags  | stream   | type     | id       | version     |
 *   | (1)    | (0)    | len u16  | len u16  | len u16  | i64         |
 *   +--------+--------+----------+----------+----------+-------------+
 *   16             24             32          36
 *   +--------------+--------------+-----------+--------------------------------------+
 *   | event time   | ingest time  | data len  | stream \0 type \0 id \0 data \0      |
 *   | i64 ms       | i64 ms       | u32       |                                      |
 *   +--------------+--------------+-----------+--------------------------------------+
 *
 * The NULs let readers hand out C strings that point into the map. Stream names, types
 * and ids are 1..255 bytes of UTF-8 without NUL; data is compact JSON text (no white
 * space outside strings, so that every record is one NDJSON line on export). */

#define REC_HEADER 36

typedef struct waiter {
    eddy_store_commit_fn fn;
    void *data;
    int status; /* set when the group is done */
    bool held;  /* took a hold on the loop */
} waiter;

typedef struct waiter_list {
    waiter *items;
    size_t count, cap;
} waiter_list;

typedef struct commit_hook {
    eddy_store_hook_fn fn;
    void *data;
} commit_hook;

typedef struct listener {
    eddy_store_listen_fn fn;
    void *data;
} listener;

struct eddy_store {
    MDB_env *env;
    MDB_dbi db_events, db_ids, db_streams, db_times, db_meta;
    char *dir;  /* the data folder, owned */
    char *path; /* DIR/events.mdb, owned */
    eddy_store_opts opts;
    int format; /* of the file */

    /* the group */
    MDB_txn *wtxn;                      /* open write transaction; NULL when idle */
    MDB_cursor *wcur;                   /* cursor on 'streams' inside wtxn (reused); NULL if none */
    uint64_t next_position;             /* invariant 1 */
    uint64_t group_first;               /* next_position when the group began */
    size_t group_events;                /* events written in the open group */
    int64_t group_opened;               /* now_ms when the open group began */
    uint64_t committed;                 /* last committed position */
    uint64_t announced;                 /* last position told to listeners */
    waiter_list pending;                /* waiting for the open (or next) group */
    waiter_list ready;                  /* group done; to be called by store_notify */
    char group_error[EDDY_ERR_MSG_MAX]; /* why the last group failed */

    /* stream versions as the open group sees them (invariant 5) */
    struct head_entry *heads; /* open addressing; NULL stream = empty slot */
    size_t heads_cap, heads_count;
    size_t heads_txn; /* the write transaction id the cache is valid for; 0 = none */

    /* durability */
    eddy_loop *loop;        /* attached loop; NULL when detached */
    eddy_timer *sync_timer; /* interval policy: the pending fsync; NULL if none */
    int64_t last_sync;      /* monotonic ms of the last fsync */
    bool unsynced;          /* commits since the last fsync (interval, never) */

    listener *listeners;
    size_t listener_count, listener_cap;
    commit_hook *hooks; /* before-commit hooks */
    size_t hook_count, hook_cap;
    bool in_hooks; /* running them: their writes must not commit the group */

    uint64_t rng[2]; /* xorshift128+ state for event ids */
    eddy_store_stats counters;
};

/* ---- bytes ---- */

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)((p[0] << 8) | p[1]);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 3; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint32_t get_u32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static void put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        p[i] = (uint8_t)v;
}

static uint64_t get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Event times sort as signed numbers when the sign bit is flipped. */
static uint64_t time_to_key(int64_t t)
{
    return (uint64_t)t ^ 0x8000000000000000u;
}

static int64_t time_from_key(uint64_t k)
{
    return (int64_t)(k ^ 0x8000000000000000u);
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(const eddy_store *st)
{
    if (st->loop)
        return eddy_loop_wall(st->loop);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t now_ms(const eddy_store *st)
{
    return st->loop ? eddy_loop_now(st->loop) : mono_ms();
}

static int mdb_fail(eddy_err *err, int rc, const char *what)
{
    return eddy_err_set(err, EDDY_EIO, "event store: %s: %s", what, mdb_strerror(rc));
}

/* ---- JSON and UTF-8 checks: what the store refuses to store as an event ---- */

/* Length of the valid UTF-8 sequence at 'p' (at most 'n' bytes), 0 if invalid
 * (overlong forms, surrogates and code points past U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *p, size_t n)
{
    unsigned c = p[0];
    if (c < 0x80)
        return 1;
    size_t len;
    unsigned min;
    if (c >= 0xC2 && c <= 0xDF) {
        len = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        len = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        len = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    unsigned cp = c & (0x3Fu >> (len - 1));
    for (size_t i = 1; i < len; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return len;
}

static bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < n;) {
        size_t k = utf8_seq(p + i, n - i);
        if (k == 0)
            return false;
        i += k;
    }
    return true;
}

typedef struct jscan {
    const unsigned char *p, *end;
    int depth;
    bool space; /* white space seen outside strings */
} jscan;

static void js_ws(jscan *s)
{
    while (s->p < s->end && (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r')) {
        s->p++;
        s->space = true;
    }
}

static int hexval(unsigned c)
{
    if (c >= '0' && c <= '9')
        return (int)(c - '0');
    c |= 0x20;
    return c >= 'a' && c <= 'f' ? (int)(c - 'a' + 10) : -1;
}

static bool js_u4(jscan *s, unsigned *out)
{
    if (s->end - s->p < 4)
        return false;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s->p[i]);
        if (h < 0)
            return false;
        v = (v << 4) | (unsigned)h;
    }
    s->p += 4;
    *out = v;
    return true;
}

/* What a byte is inside a JSON string: 0 plain (printable ASCII but '"' and '\\'),
 * 1 the closing quote, 2 a backslash, 3 a control character (invalid), 4 the first byte
 * of a UTF-8 sequence (or an invalid byte). Scanning by table keeps the plain run, the
 * usual case, to a few instructions a byte. */
static const unsigned char str_class[256] = {
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
    4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4,
};

/* Skips plain bytes. */
static inline const unsigned char *skip_plain(const unsigned char *p, const unsigned char *end)
{
    while (p < end && !str_class[*p])
        p++;
    return p;
}

/* A string, 's->p' at the opening quote. As jansson: valid UTF-8, no control characters,
 * well-formed escapes and surrogate pairs, no \u0000. */
static bool js_string(jscan *s)
{
    s->p++;
    while (s->p < s->end) {
        s->p = skip_plain(s->p, s->end);
        if (s->p >= s->end)
            break;
        unsigned c = *s->p;
        if (c == '"') {
            s->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c == '\\') {
            if (++s->p >= s->end)
                return false;
            c = *s->p++;
            if (c == 'u') {
                unsigned u;
                if (!js_u4(s, &u) || u == 0)
                    return false;
                if (u >= 0xDC00 && u <= 0xDFFF)
                    return false;
                if (u >= 0xD800 && u <= 0xDBFF) {
                    unsigned lo;
                    if (s->end - s->p < 2 || s->p[0] != '\\' || s->p[1] != 'u')
                        return false;
                    s->p += 2;
                    if (!js_u4(s, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                        return false;
                }
            } else if (!strchr("\"\\/bfnrt", (int)c) || c == 0) {
                return false;
            }
            continue;
        }
        size_t k = utf8_seq(s->p, (size_t)(s->end - s->p));
        if (k == 0)
            return false;
        s->p += k;
    }
    return false;
}

static bool js_digits(jscan *s)
{
    const unsigned char *start = s->p;
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
        s->p++;
    return s->p > start;
}

/* A number as RFC 8259 writes it, and one jansson can hold (no overflow to infinity). */
static bool js_number(jscan *s)
{
    const unsigned char *start = s->p;
    bool big = false;
    if (*s->p == '-')
        s->p++;
    if (s->p < s->end && *s->p == '0')
        s->p++;
    else if (!js_digits(s))
        return false;
    if (s->p < s->end && *s->p == '.') {
        s->p++;
        if (!js_digits(s))
            return false;
    }
    if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
        big = true;
        s->p++;
        if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
            s->p++;
        if (!js_digits(s))
            return false;
    }
    size_t len = (size_t)(s->p - start);
    if (big || len > 300) {
        char buf[512];
        if (len >= sizeof(buf))
            return false;
        memcpy(buf, start, len);
        buf[len] = '\0';
        if (isinf(strtod(buf, NULL)))
            return false;
    }
    return true;
}

static bool js_literal(jscan *s, const char *word)
{
    size_t n = strlen(word);
    if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
        return false;
    s->p += n;
    return true;
}

static bool js_value(jscan *s);

static bool js_container(jscan *s, bool object)
{
    if (++s->depth > JSON_MAX_DEPTH)
        return false;
    s->p++;
    js_ws(s);
    char close = object ? '}' : ']';
    if (s->p < s->end && *s->p == close) {
        s->p++;
        s->depth--;
        return true;
    }
    for (;;) {
        if (object) {
            if (s->p >= s->end || *s->p != '"' || !js_string(s))
                return false;
            js_ws(s);
            if (s->p >= s->end || *s->p != ':')
                return false;
            s->p++;
            js_ws(s);
        }
        if (!js_value(s))
            return false;
        js_ws(s);
        if (s->p >= s->end)
            return false;
        if (*s->p == ',') {
            s->p++;
            js_ws(s);
            continue;
        }
        if (*s->p != close)
            return false;
        s->p++;
        s->depth--;
        return true;
    }
}

static bool js_value(jscan *s)
{
    if (s->p >= s->end)
        return false;
    switch (*s->p) {
    case '{':
        return js_container(s, true);
    case '[':
        return js_container(s, false);
    case '"':
        return js_string(s);
    case 't':
        return js_literal(s, "true");
    case 'f':
        return js_literal(s, "false");
    case 'n':
        return js_literal(s, "null");
    default:
        return (*s->p == '-' || (*s->p >= '0' && *s->p <= '9')) && js_number(s);
    }
}

/* true when 'text' is one JSON value (with optional surrounding white space); '*space'
 * tells whether it has white space outside strings (then it is stored minified). */
static bool json_check(const char *text, size_t len, bool *space)
{
    jscan s = {(const unsigned char *)text, (const unsigned char *)text + len, 0, false};
    js_ws(&s);
    if (!js_value(&s))
        return false;
    js_ws(&s);
    *space = s.space;
    return s.p == s.end;
}

/* Copies valid JSON 'text' without white space outside strings. Ownership: new
 * (eddy_free); '*out_len' gets the length. */
static char *json_minify(const char *text, size_t len, size_t *out_len)
{
    char *out = eddy_malloc(len + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    bool in_str = false, esc = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (c == '\\')
                esc = true;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
            continue;
        }
        out[n++] = c;
    }
    out[n] = '\0';
    *out_len = n;
    return out;
}

/* Finds the raw text of member 'key' of the JSON object 'text' (top level only; the key
 * must be written without escapes). Returns false if 'text' is not an object or lacks it. */
static bool json_member_span(const char *text, size_t len, const char *key, size_t *off, size_t *n)
{
    jscan s = {(const unsigned char *)text, (const unsigned char *)text + len, 0, false};
    size_t klen = strlen(key);
    js_ws(&s);
    if (s.p >= s.end || *s.p != '{')
        return false;
    s.p++;
    for (;;) {
        js_ws(&s);
        if (s.p >= s.end || *s.p != '"')
            return false;
        const unsigned char *kstart = s.p + 1;
        if (!js_string(&s))
            return false;
        bool match = (size_t)(s.p - 1 - kstart) == klen && memcmp(kstart, key, klen) == 0;
        js_ws(&s);
        if (s.p >= s.end || *s.p != ':')
            return false;
        s.p++;
        js_ws(&s);
        const unsigned char *vstart = s.p;
        if (!js_value(&s))
            return false;
        if (match) {
            *off = (size_t)(vstart - (const unsigned char *)text);
            *n = (size_t)(s.p - vstart);
            return true;
        }
        js_ws(&s);
        if (s.p >= s.end || *s.p != ',')
            return false;
        s.p++;
    }
}

/* ---- records ---- */

static size_t record_size(size_t slen, size_t tlen, size_t ilen, size_t dlen)
{
    return REC_HEADER + slen + 1 + tlen + 1 + ilen + 1 + dlen + 1;
}

static void record_encode(uint8_t *p, const char *stream, size_t slen, const char *type,
                          size_t tlen, const char *id, size_t ilen, int64_t version, int64_t time,
                          int64_t ingest, const char *data, size_t dlen)
{
    p[0] = EDDY_STORE_FORMAT;
    p[1] = 0;
    put_u16(p + 2, (uint16_t)slen);
    put_u16(p + 4, (uint16_t)tlen);
    put_u16(p + 6, (uint16_t)ilen);
    put_u64(p + 8, (uint64_t)version);
    put_u64(p + 16, (uint64_t)time);
    put_u64(p + 24, (uint64_t)ingest);
    put_u32(p + 32, (uint32_t)dlen);
    uint8_t *q = p + REC_HEADER;
    memcpy(q, stream, slen);
    q[slen] = 0;
    q += slen + 1;
    memcpy(q, type, tlen);
    q[tlen] = 0;
    q += tlen + 1;
    memcpy(q, id, ilen);
    q[ilen] = 0;
    q += ilen + 1;
    memcpy(q, data, dlen);
    q[dlen] = 0;
}

/* Decodes a stored record; NULL on success, else what is wrong with it. */
static const char *record_decode(const MDB_val *key, const MDB_val *val, eddy_store_record *rec)
{
    if (key->mv_size != 8)
        return "bad key";
    const uint8_t *p = val->mv_data;
    if (val->mv_size < REC_HEADER)
        return "record too short";
    if (p[0] != EDDY_STORE_FORMAT)
        return "unknown record format";
    size_t slen = get_u16(p + 2), tlen = get_u16(p + 4), ilen = get_u16(p + 6);
    size_t dlen = get_u32(p + 32);
    if (record_size(slen, tlen, ilen, dlen) != val->mv_size)
        return "record lengths do not add up";
    const char *q = (const char *)p + REC_HEADER;
    if (q[slen] || q[slen + 1 + tlen] || q[slen + tlen + ilen + 2] ||
        q[slen + tlen + ilen + dlen + 3])
        return "record strings are not terminated";
    rec->position = get_u64(key->mv_data);
    rec->version = (int64_t)get_u64(p + 8);
    rec->time = (int64_t)get_u64(p + 16);
    rec->ingest_time = (int64_t)get_u64(p + 24);
    rec->stream = q;
    rec->type = q + slen + 1;
    rec->id = q + slen + tlen + 2;
    rec->data = q + slen + tlen + ilen + 3;
    rec->data_len = dlen;
    return NULL;
}

static int record_damaged(eddy_err *err, uint64_t position, const char *why)
{
    return eddy_err_set(err, EDDY_EIO,
                        "event store: the record at position %llu is damaged (%s); export what "
                        "can be read and restore from a backup",
                        (unsigned long long)position, why);
}

/* Reads the record at 'position' in 'txn'. EDDY_ENOTFOUND, EDDY_EIO. */
static int record_get(eddy_store *st, MDB_txn *txn, uint64_t position, eddy_store_record *rec,
                      eddy_err *err)
{
    uint8_t kb[8];
    put_u64(kb, position);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(txn, st->db_events, &k, &v);
    if (rc == MDB_NOTFOUND)
        return eddy_err_set(err, EDDY_ENOTFOUND, "no event at position %llu",
                            (unsigned long long)position);
    if (rc)
        return mdb_fail(err, rc, "reading an event");
    const char *why = record_decode(&k, &v, rec);
    return why ? record_damaged(err, position, why) : EDDY_OK;
}

/* ---- keys ---- */

static size_t stream_key(uint8_t *buf, const char *stream, size_t slen, int64_t version)
{
    memcpy(buf, stream, slen);
    buf[slen] = 0;
    put_u64(buf + slen + 1, (uint64_t)version);
    return slen + 9;
}

static size_t time_key(uint8_t *buf, const char *stream, size_t slen, int64_t time,
                       uint64_t position)
{
    memcpy(buf, stream, slen);
    buf[slen] = 0;
    put_u64(buf + slen + 1, time_to_key(time));
    put_u64(buf + slen + 9, position);
    return slen + 17;
}

/* The last version of 'stream' as 'txn' sees it (-1 if none), using 'cur' on 'streams'. */
static int stream_head(MDB_cursor *cur, const char *stream, size_t slen, int64_t *version,
                       eddy_err *err)
{
    uint8_t kb[MAX_KEY];
    size_t klen = stream_key(kb, stream, slen, -1); /* version all ones: past the last */
    MDB_val k = {klen, kb}, v;
    int rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    if (rc == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    else if (rc == MDB_NOTFOUND)
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    *version = -1;
    if (rc == MDB_NOTFOUND)
        return EDDY_OK;
    if (rc)
        return mdb_fail(err, rc, "reading a stream's version");
    if (k.mv_size == slen + 9 && memcmp(k.mv_data, stream, slen) == 0 &&
        ((uint8_t *)k.mv_data)[slen] == 0)
        *version = (int64_t)get_u64((uint8_t *)k.mv_data + slen + 1);
    return EDDY_OK;
}

/* ---- the stream-version cache (invariant 5) ---- */

#define HEADS_MAX 65536 /* entries before the cache is emptied and refilled */

typedef struct head_entry {
    char *stream; /* owned; NULL for an empty slot */
    size_t slen;
    uint64_t hash;
    int64_t version;
} head_entry;

static uint64_t hash_name(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211u;
    return h;
}

static void heads_clear(eddy_store *st)
{
    for (size_t i = 0; i < st->heads_cap; i++)
        eddy_free(st->heads[i].stream);
    eddy_free(st->heads);
    st->heads = NULL;
    st->heads_cap = st->heads_count = 0;
}

static head_entry *heads_slot(eddy_store *st, const char *stream, size_t slen, uint64_t h)
{
    size_t i = (size_t)h & (st->heads_cap - 1);
    while (st->heads[i].stream && !(st->heads[i].hash == h && st->heads[i].slen == slen &&
                                    memcmp(st->heads[i].stream, stream, slen) == 0))
        i = (i + 1) & (st->heads_cap - 1);
    return &st->heads[i];
}

/* Remembers 'version' for 'stream'; out of memory only makes the cache forget. */
static void heads_put(eddy_store *st, const char *stream, size_t slen, int64_t version)
{
    if (st->heads_count * 2 >= st->heads_cap) {
        size_t cap = st->heads_cap ? st->heads_cap * 2 : 256;
        if (st->heads_count >= HEADS_MAX)
            cap = 256, heads_clear(st);
        head_entry *old = st->heads, *fresh = eddy_calloc(cap, sizeof(*fresh));
        if (!fresh)
            return;
        size_t old_cap = st->heads_cap;
        st->heads = fresh;
        st->heads_cap = cap;
        for (size_t i = 0; i < old_cap; i++)
            if (old[i].stream)
                *heads_slot(st, old[i].stream, old[i].slen, old[i].hash) = old[i];
        eddy_free(old);
    }
    uint64_t h = hash_name(stream, slen);
    head_entry *e = heads_slot(st, stream, slen, h);
    if (!e->stream) {
        if (!(e->stream = eddy_strndup(stream, slen)))
            return;
        e->slen = slen;
        e->hash = h;
        st->heads_count++;
    }
    e->version = version;
}

/* The stream's version in the open group: from the cache, else from the index. */
static int group_head(eddy_store *st, const char *stream, size_t slen, int64_t *version,
                      eddy_err *err)
{
    if (st->heads_cap) {
        head_entry *e = heads_slot(st, stream, slen, hash_name(stream, slen));
        if (e->stream) {
            *version = e->version;
            return EDDY_OK;
        }
    }
    int rc = stream_head(st->wcur, stream, slen, version, err);
    if (rc == EDDY_OK)
        heads_put(st, stream, slen, *version);
    return rc;
}

/* ---- event ids: UUIDv7 (ms time, then random bits) ---- */

static uint64_t rng_next(eddy_store *st)
{
    uint64_t s1 = st->rng[0];
    const uint64_t s0 = st->rng[1];
    st->rng[0] = s0;
    s1 ^= s1 << 23;
    st->rng[1] = s1 ^ s0 ^ (s1 >> 18) ^ (s0 >> 5);
    return st->rng[1] + s0;
}

static void rng_seed(eddy_store *st)
{
    if (getrandom(st->rng, sizeof(st->rng), 0) != (ssize_t)sizeof(st->rng)) {
        st->rng[0] = (uint64_t)mono_ms() * 0x9E3779B97F4A7C15u ^ (uint64_t)getpid();
        st->rng[1] = (uint64_t)time(NULL) * 0xBF58476D1CE4E5B9u ^ (uintptr_t)st;
    }
    if (!st->rng[0] && !st->rng[1])
        st->rng[0] = 1;
}

static void make_id(eddy_store *st, char out[40])
{
    uint64_t ms = (uint64_t)wall_ms(st);
    uint64_t a = rng_next(st), b = rng_next(st);
    uint8_t u[16];
    for (int i = 0; i < 6; i++)
        u[i] = (uint8_t)(ms >> (40 - 8 * i));
    u[6] = (uint8_t)(0x70 | (a & 0x0F));
    u[7] = (uint8_t)(a >> 8);
    u[8] = (uint8_t)(0x80 | ((b >> 56) & 0x3F));
    for (int i = 9; i < 16; i++)
        u[i] = (uint8_t)(b >> (8 * (15 - i)));
    static const char hex[] = "0123456789abcdef";
    size_t n = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[n++] = '-';
        out[n++] = hex[u[i] >> 4];
        out[n++] = hex[u[i] & 15];
    }
    out[n] = '\0';
}

/* ---- waiters and listeners ---- */

static int waiters_push(waiter_list *l, waiter w)
{
    if (l->count == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        waiter *items = eddy_realloc(l->items, cap * sizeof(*items));
        if (!items)
            return EDDY_ENOMEM;
        l->items = items;
        l->cap = cap;
    }
    l->items[l->count++] = w;
    return EDDY_OK;
}

/* Moves every pending waiter to 'ready' with 'status'. */
static void waiters_settle(eddy_store *st, int status)
{
    for (size_t i = 0; i < st->pending.count; i++) {
        waiter w = st->pending.items[i];
        w.status = status;
        if (waiters_push(&st->ready, w) != EDDY_OK) {
            /* Out of memory: call it now rather than lose it (invariant 4 bends). */
            w.fn(st, status, status ? st->group_error : NULL, w.data);
            if (w.held && st->loop)
                eddy_loop_release(st->loop, 1);
        }
    }
    st->pending.count = 0;
}

/* Runs the waiters whose group is done, then tells listeners about new positions. */
static void store_notify(eddy_store *st)
{
    while (st->ready.count > 0) {
        /* Callbacks may append and register waiters: take the list first. */
        waiter_list run = st->ready;
        st->ready = (waiter_list){0};
        for (size_t i = 0; i < run.count; i++) {
            waiter *w = &run.items[i];
            w->fn(st, w->status, w->status ? st->group_error : NULL, w->data);
            if (w->held && st->loop)
                eddy_loop_release(st->loop, 1);
        }
        eddy_free(run.items);
    }
    if (st->committed > st->announced) {
        st->announced = st->committed;
        for (size_t i = 0; i < st->listener_count; i++)
            st->listeners[i].fn(st, st->committed, st->listeners[i].data);
    }
}

int eddy_store_when_committed(eddy_store *st, eddy_store_commit_fn fn, void *data, eddy_err *err)
{
    waiter w = {fn, data, EDDY_OK, st->loop != NULL};
    if (waiters_push(&st->pending, w) != EDDY_OK)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory waiting for a commit");
    if (w.held)
        eddy_loop_hold(st->loop, 1);
    return EDDY_OK;
}

static void cancel_in(eddy_store *st, waiter_list *l, eddy_store_commit_fn fn, void *data)
{
    size_t k = 0;
    for (size_t i = 0; i < l->count; i++) {
        if (l->items[i].fn == fn && l->items[i].data == data) {
            if (l->items[i].held && st->loop)
                eddy_loop_release(st->loop, 1);
            continue;
        }
        l->items[k++] = l->items[i];
    }
    l->count = k;
}

void eddy_store_cancel_waiters(eddy_store *st, eddy_store_commit_fn fn, void *data)
{
    cancel_in(st, &st->pending, fn, data);
    cancel_in(st, &st->ready, fn, data);
}

int eddy_store_listen(eddy_store *st, eddy_store_listen_fn fn, void *data, eddy_err *err)
{
    if (st->listener_count == st->listener_cap) {
        size_t cap = st->listener_cap ? st->listener_cap * 2 : 4;
        listener *l = eddy_realloc(st->listeners, cap * sizeof(*l));
        if (!l)
            return eddy_err_set(err, EDDY_ENOMEM, "out of memory adding a store listener");
        st->listeners = l;
        st->listener_cap = cap;
    }
    st->listeners[st->listener_count++] = (listener){fn, data};
    return EDDY_OK;
}

void eddy_store_unlisten(eddy_store *st, eddy_store_listen_fn fn, void *data)
{
    for (size_t i = 0; i < st->listener_count; i++) {
        if (st->listeners[i].fn == fn && st->listeners[i].data == data) {
            memmove(&st->listeners[i], &st->listeners[i + 1],
                    (st->listener_count - i - 1) * sizeof(listener));
            st->listener_count--;
            return;
        }
    }
}

int eddy_store_add_before_commit(eddy_store *st, eddy_store_hook_fn fn, void *data, eddy_err *err)
{
    if (st->hook_count == st->hook_cap) {
        size_t cap = st->hook_cap ? st->hook_cap * 2 : 4;
        commit_hook *h = eddy_realloc(st->hooks, cap * sizeof(*h));
        if (!h)
            return eddy_err_set(err, EDDY_ENOMEM, "out of memory adding a before-commit hook");
        st->hooks = h;
        st->hook_cap = cap;
    }
    st->hooks[st->hook_count++] = (commit_hook){fn, data};
    return EDDY_OK;
}

void eddy_store_remove_before_commit(eddy_store *st, eddy_store_hook_fn fn, void *data)
{
    for (size_t i = 0; i < st->hook_count; i++) {
        if (st->hooks[i].fn == fn && st->hooks[i].data == data) {
            memmove(&st->hooks[i], &st->hooks[i + 1],
                    (st->hook_count - i - 1) * sizeof(commit_hook));
            st->hook_count--;
            return;
        }
    }
}

/* Lets the before-commit hooks write into the group about to commit. */
static void run_commit_hooks(eddy_store *st)
{
    if (!st->wtxn || st->in_hooks)
        return;
    st->in_hooks = true;
    for (size_t i = 0; i < st->hook_count && st->wtxn; i++)
        st->hooks[i].fn(st, st->hooks[i].data);
    st->in_hooks = false;
}

/* ---- the group: one write transaction ---- */

static int group_begin(eddy_store *st, eddy_err *err)
{
    if (st->wtxn)
        return EDDY_OK;
    if (st->opts.read_only)
        return eddy_err_set(err, EDDY_EINVAL, "event store %s is open read-only", st->path);
    int rc = mdb_txn_begin(st->env, NULL, 0, &st->wtxn);
    if (rc) {
        st->wtxn = NULL;
        return mdb_fail(err, rc, "starting a write transaction");
    }
    rc = mdb_cursor_open(st->wtxn, st->db_streams, &st->wcur);
    if (rc) {
        mdb_txn_abort(st->wtxn);
        st->wtxn = NULL;
        st->wcur = NULL;
        return mdb_fail(err, rc, "opening a cursor");
    }
    st->group_opened = now_ms(st);
    if (mdb_txn_id(st->wtxn) != st->heads_txn) {
        /* Another writer (eddy events import) may have come in between: forget cached
         * versions and read where the log ends now. */
        heads_clear(st);
        MDB_cursor *cur;
        MDB_val k, v;
        rc = mdb_cursor_open(st->wtxn, st->db_events, &cur);
        if (rc == 0) {
            rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
            mdb_cursor_close(cur);
        }
        if (rc == 0 && k.mv_size == 8)
            st->next_position = get_u64(k.mv_data) + 1;
        else if (rc == MDB_NOTFOUND)
            st->next_position = 1;
        else {
            mdb_txn_abort(st->wtxn);
            st->wtxn = NULL;
            st->wcur = NULL;
            return mdb_fail(err, rc ? rc : MDB_CORRUPTED, "finding the end of the log");
        }
        if (st->next_position - 1 > st->committed)
            st->committed = st->next_position - 1; /* others' events, listeners hear of them */
    }
    st->group_first = st->next_position;
    st->group_events = 0;
    return EDDY_OK;
}

/* Drops the open group after an LMDB error: nothing of it is stored (invariant 1). */
static void group_lose(eddy_store *st, const char *why)
{
    if (st->wtxn)
        mdb_txn_abort(st->wtxn); /* frees its cursors too */
    st->wtxn = NULL;
    st->wcur = NULL;
    st->next_position = st->group_first;
    st->group_events = 0;
    heads_clear(st);
    st->heads_txn = 0;
    snprintf(st->group_error, sizeof(st->group_error), "%s", why);
    eddy_log(EDDY_LOG_ERROR, "[store %s] a group of appends was lost: %s", st->path, why);
    waiters_settle(st, EDDY_EIO);
}

static void store_sync(eddy_store *st)
{
    int rc = mdb_env_sync(st->env, 1);
    if (rc)
        eddy_log(EDDY_LOG_ERROR, "[store %s] fsync failed: %s", st->path, mdb_strerror(rc));
    st->counters.syncs++;
    st->unsynced = false;
    st->last_sync = now_ms(st);
}

static int64_t sync_timer_fn(eddy_loop *loop, eddy_timer *timer, void *data)
{
    eddy_store *st = data;
    st->sync_timer = NULL;
    if (st->unsynced)
        store_sync(st);
    return EDDY_TIMER_STOP;
}

/* Interval policy: fsync now if the interval has passed, else make sure a timer will. */
static void sync_after_commit(eddy_store *st)
{
    if (st->opts.sync != EDDY_STORE_SYNC_INTERVAL)
        return;
    int64_t due = st->last_sync + st->opts.sync_interval_ms;
    if (now_ms(st) >= due) {
        store_sync(st);
        return;
    }
    if (st->loop && !st->sync_timer)
        st->sync_timer = eddy_timer_start(st->loop, due - now_ms(st), sync_timer_fn, st, NULL);
}

/* Commits the open group; waiters become ready. Does not call them (invariant 4). */
static int group_commit(eddy_store *st, eddy_err *err)
{
    run_commit_hooks(st);
    if (st->wtxn) {
        MDB_txn *txn = st->wtxn;
        st->wtxn = NULL;
        st->wcur = NULL; /* closed by the commit */
        size_t next_txn = mdb_txn_id(txn) + 1;
        int rc = mdb_txn_commit(txn);
        if (rc) {
            char why[EDDY_ERR_MSG_MAX];
            snprintf(why, sizeof(why), "commit failed: %s", mdb_strerror(rc));
            group_lose(st, why);
            return eddy_err_set(err, EDDY_EIO, "event store: %s", why);
        }
        st->counters.commits++;
        st->heads_txn = next_txn;
        st->committed = st->next_position - 1;
        st->group_events = 0;
        if (st->opts.sync == EDDY_STORE_SYNC_ALWAYS)
            st->counters.syncs++;
        else
            st->unsynced = true;
        sync_after_commit(st);
    }
    waiters_settle(st, EDDY_OK);
    return EDDY_OK;
}

int eddy_store_open_group(eddy_store *st, eddy_err *err)
{
    return group_begin(st, err);
}

int eddy_store_commit(eddy_store *st, eddy_err *err)
{
    int rc = group_commit(st, err);
    store_notify(st);
    return rc;
}

bool eddy_store_pending(const eddy_store *st)
{
    return st->wtxn != NULL;
}

/* Whether the open group waits for the input a source left for the next turn. A durable
 * commit costs a sync plus one write of every B-tree page the group touched, whether it
 * holds 64 events or 500, and nothing is read while it runs: under a burst, groups of
 * one turn each spend most of the time syncing. Waiting is bounded by the linger time, by
 * LINGER_MAX_EVENTS (LMDB holds every page a group dirties in memory until the commit,
 * 4 KiB each, about two per event when ids are random), and by the source: MQTT stops
 * sending QoS 1 messages once its in-flight window is unacknowledged, and
 * acknowledgements follow the commit. */
static bool group_lingers(const eddy_store *st)
{
    return st->wtxn && st->opts.group_linger_ms > 0 && st->group_events < LINGER_MAX_EVENTS &&
           eddy_loop_input_left(st->loop) &&
           now_ms(st) - st->group_opened < st->opts.group_linger_ms;
}

static void store_before_sleep(eddy_loop *loop, void *data)
{
    eddy_store *st = data;
    if (!st->wtxn && st->pending.count == 0 && st->ready.count == 0 &&
        st->committed <= st->announced)
        return;
    if (group_lingers(st)) {
        /* no sleeping meanwhile: the next turn reads on, or commits if nothing came */
        eddy_loop_work_pending(loop);
        return;
    }
    group_commit(st, NULL);
    store_notify(st);
}

int eddy_store_attach(eddy_store *st, eddy_loop *loop, eddy_err *err)
{
    if (st->loop)
        return eddy_err_set(err, EDDY_EINVAL, "event store is attached to a loop already");
    if (eddy_loop_add_before_sleep(loop, store_before_sleep, st) != EDDY_OK)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory attaching the event store");
    st->loop = loop;
    st->last_sync = now_ms(st);
    return EDDY_OK;
}

void eddy_store_detach(eddy_store *st)
{
    if (!st || !st->loop)
        return;
    eddy_store_commit(st, NULL);
    if (st->sync_timer) {
        eddy_timer_stop(st->loop, st->sync_timer);
        st->sync_timer = NULL;
    }
    if (st->unsynced)
        store_sync(st);
    eddy_loop_remove_before_sleep(st->loop, store_before_sleep, st);
    st->loop = NULL;
    st->last_sync = now_ms(st);
}

/* ---- opening ---- */

int eddy_store_sync_parse(const char *text, eddy_store_opts *opts, eddy_err *err)
{
    if (strcmp(text, "always") == 0) {
        opts->sync = EDDY_STORE_SYNC_ALWAYS;
    } else if (strcmp(text, "never") == 0) {
        opts->sync = EDDY_STORE_SYNC_NEVER;
    } else if (strncmp(text, "interval", 8) == 0 && (text[8] == '\0' || text[8] == ':')) {
        opts->sync = EDDY_STORE_SYNC_INTERVAL;
        opts->sync_interval_ms = DEFAULT_SYNC_INTERVAL;
        if (text[8] == ':') {
            char *end;
            long v = strtol(text + 9, &end, 10);
            if (*end || v < 1 || v > 3600000)
                return eddy_err_set(err, EDDY_EINVAL,
                                    "fsync interval must be 1 to 3600000 ms, not '%s'", text + 9);
            opts->sync_interval_ms = v;
        }
    } else {
        return eddy_err_set(err, EDDY_EINVAL,
                            "fsync policy must be always, interval[:MS] or never, not '%s'", text);
    }
    return EDDY_OK;
}

/* A file the size of which does not cover the pages LMDB's meta page names would fault on
 * access (SIGBUS); refuse it at open with a message instead. */
static int check_file_size(eddy_store *st, eddy_err *err)
{
    MDB_envinfo info;
    MDB_stat ms;
    struct stat sb;
    if (mdb_env_info(st->env, &info) || mdb_env_stat(st->env, &ms))
        return EDDY_OK;
    if (stat(st->path, &sb) != 0)
        return eddy_err_set(err, EDDY_EIO, "event store %s: %s", st->path, strerror(errno));
    uint64_t need = ((uint64_t)info.me_last_pgno + 1) * ms.ms_psize;
    if ((uint64_t)sb.st_size < need)
        return eddy_err_set(err, EDDY_EIO,
                            "event store %s is damaged: the file is %llu bytes but its last page "
                            "ends at %llu (truncated?)",
                            st->path, (unsigned long long)sb.st_size, (unsigned long long)need);
    return EDDY_OK;
}

static int open_tables(eddy_store *st, eddy_err *err)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, st->opts.read_only ? MDB_RDONLY : 0, &txn);
    if (rc)
        return mdb_fail(err, rc, "opening the tables");
    struct {
        const char *name;
        MDB_dbi *dbi;
    } tables[] = {{"events", &st->db_events},
                  {"ids", &st->db_ids},
                  {"streams", &st->db_streams},
                  {"times", &st->db_times},
                  {"meta", &st->db_meta}};
    for (size_t i = 0; i < sizeof(tables) / sizeof(tables[0]); i++) {
        rc = mdb_dbi_open(txn, tables[i].name, st->opts.read_only ? 0 : MDB_CREATE, tables[i].dbi);
        if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
            mdb_txn_abort(txn);
            return eddy_err_set(err, EDDY_EIO, "%s is not an eddy event store (no '%s' table: %s)",
                                st->path, tables[i].name, mdb_strerror(rc));
        }
        if (rc) {
            mdb_txn_abort(txn);
            return mdb_fail(err, rc, "opening the tables");
        }
    }
    MDB_val k = {6, "format"}, v;
    rc = mdb_get(txn, st->db_meta, &k, &v);
    MDB_cursor *cur = NULL;
    MDB_val ek, ev;
    int last = 0;
    if (rc == 0 || rc == MDB_NOTFOUND)
        last = mdb_cursor_open(txn, st->db_events, &cur);
    if (last == 0 && cur)
        last = mdb_cursor_get(cur, &ek, &ev, MDB_LAST);
    if (cur)
        mdb_cursor_close(cur); /* ek and ev stay valid until the transaction ends */
    if (rc == MDB_NOTFOUND) {
        if (last != MDB_NOTFOUND) {
            mdb_txn_abort(txn);
            return eddy_err_set(err, EDDY_EIO, "%s is not an eddy event store (no format mark)",
                                st->path);
        }
        st->format = EDDY_STORE_FORMAT;
        if (!st->opts.read_only) {
            uint8_t f = EDDY_STORE_FORMAT;
            MDB_val fv = {1, &f};
            rc = mdb_put(txn, st->db_meta, &k, &fv, 0);
        } else {
            rc = 0;
        }
    } else if (rc == 0) {
        if (v.mv_size != 1) {
            mdb_txn_abort(txn);
            return eddy_err_set(err, EDDY_EIO, "%s is damaged: bad format mark", st->path);
        }
        st->format = *(uint8_t *)v.mv_data;
        if (st->format > EDDY_STORE_FORMAT) {
            mdb_txn_abort(txn);
            return eddy_err_set(err, EDDY_EUNSUPPORTED,
                                "%s has record format %d; this eddy reads up to %d (a newer "
                                "eddy wrote it)",
                                st->path, st->format, EDDY_STORE_FORMAT);
        }
    }
    if (rc) {
        mdb_txn_abort(txn);
        return mdb_fail(err, rc, "reading the format mark");
    }
    if (last != 0 && last != MDB_NOTFOUND) {
        mdb_txn_abort(txn);
        return mdb_fail(err, last, "reading the last event");
    }
    st->committed = 0;
    if (last == 0) {
        eddy_store_record rec;
        const char *why = record_decode(&ek, &ev, &rec);
        if (why) {
            mdb_txn_abort(txn);
            return eddy_err_set(err, EDDY_EIO, "%s is damaged: the last record is bad (%s)",
                                st->path, why);
        }
        st->committed = rec.position;
    }
    st->next_position = st->committed + 1;
    st->announced = st->committed;
    rc = mdb_txn_commit(txn); /* keeps the table handles */
    if (rc)
        return mdb_fail(err, rc, "opening the tables");
    return EDDY_OK;
}

eddy_store *eddy_store_open(const char *dir, const eddy_store_opts *opts, eddy_err *err)
{
    eddy_store *st = eddy_calloc(1, sizeof(*st));
    if (!st) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory opening the event store");
        return NULL;
    }
    if (opts)
        st->opts = *opts;
    if (!st->opts.map_size)
        st->opts.map_size = DEFAULT_MAP_SIZE;
    if (!st->opts.max_body)
        st->opts.max_body = DEFAULT_MAX_BODY;
    if (!st->opts.group_max)
        st->opts.group_max = DEFAULT_GROUP_MAX;
    if (!st->opts.group_linger_ms)
        st->opts.group_linger_ms = DEFAULT_GROUP_LINGER;
    if (st->opts.sync_interval_ms <= 0)
        st->opts.sync_interval_ms = DEFAULT_SYNC_INTERVAL;
    size_t dlen = strlen(dir);
    st->dir = eddy_strdup(dir);
    st->path = eddy_malloc(dlen + sizeof(EDDY_STORE_FILE) + 1);
    if (!st->dir || !st->path) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory opening the event store");
        goto fail;
    }
    snprintf(st->path, dlen + sizeof(EDDY_STORE_FILE) + 1, "%s/%s", dir, EDDY_STORE_FILE);
    struct stat sb;
    if (st->opts.read_only) {
        if (stat(st->path, &sb) != 0) {
            eddy_err_set(err, EDDY_EIO, "no event store in %s (%s: %s)", dir, st->path,
                         strerror(errno));
            goto fail;
        }
    } else if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        eddy_err_set(err, EDDY_EIO, "cannot create data folder %s: %s", dir, strerror(errno));
        goto fail;
    }
    int rc = mdb_env_create(&st->env);
    if (rc) {
        st->env = NULL;
        mdb_fail(err, rc, "creating the environment");
        goto fail;
    }
    mdb_env_set_maxdbs(st->env, 8);
    mdb_env_set_mapsize(st->env, st->opts.map_size);
    unsigned flags = MDB_NOSUBDIR | MDB_NOTLS;
    if (st->opts.read_only)
        flags |= MDB_RDONLY;
    if (st->opts.sync != EDDY_STORE_SYNC_ALWAYS)
        flags |= MDB_NOSYNC;
    rc = mdb_env_open(st->env, st->path, flags, 0644);
    if (rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH) {
        eddy_err_set(err, EDDY_EIO, "%s is not an eddy event store, or is damaged: %s", st->path,
                     mdb_strerror(rc));
        goto fail;
    }
    if (rc) {
        eddy_err_set(err, EDDY_EIO, "cannot open event store %s: %s", st->path, mdb_strerror(rc));
        goto fail;
    }
    int dead = 0;
    mdb_reader_check(st->env, &dead); /* slots of killed readers */
    if (check_file_size(st, err) != EDDY_OK || open_tables(st, err) != EDDY_OK)
        goto fail;
    rng_seed(st);
    st->last_sync = now_ms(st);
    st->counters.format = st->format;
    return st;
fail:
    if (st->env)
        mdb_env_close(st->env);
    eddy_free(st->path);
    eddy_free(st->dir);
    eddy_free(st);
    return NULL;
}

void eddy_store_close(eddy_store *st)
{
    if (!st)
        return;
    eddy_store_detach(st);
    eddy_store_commit(st, NULL);
    if (st->unsynced && !st->opts.read_only)
        store_sync(st);
    mdb_env_close(st->env);
    heads_clear(st);
    eddy_free(st->pending.items);
    eddy_free(st->ready.items);
    eddy_free(st->listeners);
    eddy_free(st->hooks);
    eddy_free(st->path);
    eddy_free(st->dir);
    eddy_free(st);
}

const char *eddy_store_path(const eddy_store *st)
{
    return st->path;
}

/* ---- appending ---- */

typedef struct append_opts {
    bool allow_system;   /* stream names starting with '$' (import) */
    int64_t ingest_time; /* EDDY_STORE_TIME_NONE = now */
} append_opts;

/* One event of an append, checked. */
typedef struct prep {
    const char *type, *id, *data;
    size_t tlen, ilen, dlen;
    char *owned;     /* minified copy of the body, or NULL */
    const char *bad; /* why it is a dead letter; NULL if it is fine */
} prep;

static const char *check_name(const char *s, const char *too_long, const char *not_utf8)
{
    size_t n = strlen(s);
    if (n > EDDY_STORE_NAME_MAX)
        return too_long;
    return utf8_valid(s, n) ? NULL : not_utf8;
}

static const char *check_stream(const char *stream, bool allow_system)
{
    if (!stream || !*stream)
        return "missing stream";
    const char *why = check_name(stream, "stream name too long", "stream name is not valid UTF-8");
    if (!why && stream[0] == '$' && !allow_system)
        why = "stream names starting with $ are reserved";
    return why;
}

static void prep_event(eddy_store *st, const eddy_store_event *ev, prep *p)
{
    memset(p, 0, sizeof(*p));
    p->type = ev->type && *ev->type ? ev->type : "event";
    p->tlen = strlen(p->type);
    p->id = ev->id && *ev->id ? ev->id : NULL;
    p->ilen = p->id ? strlen(p->id) : 0;
    p->data = ev->data;
    p->dlen = ev->data_len;
    if ((p->bad = ev->invalid))
        return;
    if ((p->bad = check_name(p->type, "event type too long", "event type is not valid UTF-8")))
        return;
    if (p->id && (p->bad = check_name(p->id, "event id too long", "event id is not valid UTF-8")))
        return;
    if (!p->data) {
        p->bad = "missing body";
        return;
    }
    if (p->dlen > st->opts.max_body) {
        p->bad = "body over the size limit";
        return;
    }
    bool space;
    if (!json_check(p->data, p->dlen, &space)) {
        p->bad = "body is not valid JSON";
        return;
    }
    if (space) {
        p->owned = json_minify(p->data, p->dlen, &p->dlen);
        if (!p->owned)
            p->bad = "out of memory"; /* told as a dead letter rather than lost */
        else
            p->data = p->owned;
    }
}

/* Writes one event into the open group: the record and its three index entries. */
static int write_event(eddy_store *st, const char *stream, size_t slen, int64_t version,
                       const char *type, size_t tlen, const char *id, size_t ilen, bool id_indexed,
                       int64_t time, int64_t ingest, const char *data, size_t dlen,
                       uint64_t *pos_out, eddy_err *err)
{
    uint64_t pos = st->next_position;
    uint8_t pk[8], pv[8], kb[MAX_KEY];
    put_u64(pk, pos);
    put_u64(pv, pos);
    MDB_val k = {8, pk}, v = {record_size(slen, tlen, ilen, dlen), NULL};
    const char *what = "writing an event";
    int rc = mdb_put(st->wtxn, st->db_events, &k, &v, MDB_RESERVE | MDB_APPEND);
    if (rc)
        goto fail;
    record_encode(v.mv_data, stream, slen, type, tlen, id, ilen, version, time, ingest, data, dlen);
    what = "indexing an event id";
    k = (MDB_val){ilen, (void *)id};
    v = (MDB_val){8, pv};
    if (!id_indexed && (rc = mdb_put(st->wtxn, st->db_ids, &k, &v, MDB_NOOVERWRITE)))
        goto fail;
    what = "indexing a stream";
    k = (MDB_val){stream_key(kb, stream, slen, version), kb};
    v = (MDB_val){8, pv};
    if ((rc = mdb_put(st->wtxn, st->db_streams, &k, &v, MDB_NOOVERWRITE)))
        goto fail;
    what = "indexing an event time";
    k = (MDB_val){time_key(kb, stream, slen, time, pos), kb};
    v = (MDB_val){0, pv};
    if ((rc = mdb_put(st->wtxn, st->db_times, &k, &v, 0)))
        goto fail;
    st->next_position++;
    st->group_events++;
    heads_put(st, stream, slen, version);
    *pos_out = pos;
    return EDDY_OK;
fail:;
    char why[EDDY_ERR_MSG_MAX];
    snprintf(why, sizeof(why), "%s at position %llu: %s", what, (unsigned long long)pos,
             rc == MDB_KEYEXIST ? "the key exists (damaged index?)" : mdb_strerror(rc));
    group_lose(st, why);
    return eddy_err_set(err, EDDY_EIO, "event store: %s", why);
}

static void json_set_name(json_t *obj, const char *key, const char *s)
{
    if (!s)
        json_object_set_new(obj, key, json_null());
    else if (utf8_valid(s, strlen(s)))
        json_object_set_new(obj, key, json_string(s));
    else
        json_object_set_new(obj, key, json_string("(not valid UTF-8)"));
}

static char *base64(const char *data, size_t n)
{
    static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    char *out = eddy_malloc((n + 2) / 3 * 4 + 1);
    if (!out)
        return NULL;
    const uint8_t *p = (const uint8_t *)data;
    size_t o = 0, i = 0;
    for (; i + 2 < n; i += 3) {
        uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = tab[(v >> 6) & 63];
        out[o++] = tab[v & 63];
    }
    if (i < n) {
        uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0);
        out[o++] = tab[v >> 18];
        out[o++] = tab[(v >> 12) & 63];
        out[o++] = i + 1 < n ? tab[(v >> 6) & 63] : '=';
        out[o++] = '=';
    }
    out[o] = '\0';
    return out;
}

/* Stores what could not be stored as an event in $deadletter: the reason, what was given
 * (stream, type, id, time) and the original body (as text when it is UTF-8 without NUL,
 * else base64; cut at the size limit). */
static int deadletter(eddy_store *st, const char *stream, eddy_store_event *ev, const char *why,
                      int64_t ingest, eddy_err *err)
{
    json_t *body = json_object();
    if (!body)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory writing a dead letter");
    json_object_set_new(body, "reason", json_string(why));
    json_set_name(body, "stream", stream);
    json_set_name(body, "type", ev->type);
    json_set_name(body, "id", ev->id);
    json_object_set_new(body, "time",
                        ev->time == EDDY_STORE_TIME_NONE ? json_null() : json_integer(ev->time));
    json_object_set_new(body, "size", json_integer((json_int_t)ev->data_len));
    if (ev->data) {
        size_t n = ev->data_len < st->opts.max_body ? ev->data_len : st->opts.max_body;
        if (utf8_valid(ev->data, n) && !memchr(ev->data, 0, n)) {
            json_object_set_new(body, "original", json_stringn(ev->data, n));
        } else {
            char *b = base64(ev->data, n);
            json_object_set_new(body, "originalBase64", json_string(b ? b : ""));
            eddy_free(b);
        }
        if (n < ev->data_len)
            json_object_set_new(body, "truncated", json_true());
    }
    char *text = eddy_json_dumps(body, 0);
    json_decref(body);
    if (!text)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory writing a dead letter");
    static const char dl[] = EDDY_STORE_DEADLETTER_STREAM;
    int64_t head;
    char id[40];
    make_id(st, id);
    int rc = group_head(st, dl, sizeof(dl) - 1, &head, err);
    if (rc == EDDY_OK)
        rc = write_event(st, dl, sizeof(dl) - 1, head + 1, DEADLETTER_TYPE,
                         sizeof(DEADLETTER_TYPE) - 1, id, strlen(id), false, ingest, ingest, text,
                         strlen(text), &ev->position, err);
    eddy_free(text);
    if (rc != EDDY_OK)
        return rc;
    ev->outcome = EDDY_STORE_DEADLETTERED;
    ev->version = head + 1;
    ev->reason = why;
    st->counters.deadlettered++;
    eddy_log(EDDY_LOG_WARN, "[store] an event for stream '%s' went to %s: %s",
             stream && utf8_valid(stream, strlen(stream)) ? stream : "?", dl, why);
    return EDDY_OK;
}

/* The position of id 'id' in the group's view, or 0. */
static int id_lookup(eddy_store *st, MDB_txn *txn, const char *id, size_t ilen, uint64_t *pos,
                     eddy_err *err)
{
    MDB_val k = {ilen, (void *)id}, v;
    int rc = mdb_get(txn, st->db_ids, &k, &v);
    *pos = 0;
    if (rc == MDB_NOTFOUND)
        return EDDY_OK;
    if (rc)
        return mdb_fail(err, rc, "looking up an event id");
    if (v.mv_size != 8)
        return eddy_err_set(err, EDDY_EIO, "event store: the id index is damaged");
    *pos = get_u64(v.mv_data);
    return EDDY_OK;
}

static int refuse(eddy_store_event *events, const prep *p, size_t count, int code)
{
    for (size_t i = 0; i < count; i++)
        if (!p[i].bad)
            events[i].outcome = EDDY_STORE_REFUSED;
    return code;
}

static int conflict(eddy_store_event *events, const prep *p, size_t count, const char *stream,
                    int64_t expected, int64_t cur, const char *how, eddy_err *err)
{
    refuse(events, p, count, EDDY_ECONFLICT);
    char want[32];
    if (expected == EDDY_STORE_ANY)
        snprintf(want, sizeof(want), "any");
    else if (expected == EDDY_STORE_NO_STREAM)
        snprintf(want, sizeof(want), "no stream");
    else if (expected == EDDY_STORE_STREAM_EXISTS)
        snprintf(want, sizeof(want), "stream exists");
    else
        snprintf(want, sizeof(want), "%lld", (long long)expected);
    return eddy_err_set(err, EDDY_ECONFLICT, "stream '%s' is at version %lld, expected %s%s%s",
                        stream, (long long)cur, want, how ? ": " : "", how ? how : "");
}

/* Reports every checked event as already stored at 'pos[i]'. */
static int report_existing(eddy_store *st, eddy_store_event *events, const prep *p, size_t count,
                           const uint64_t *pos, eddy_store_result *res, eddy_err *err)
{
    for (size_t i = 0; i < count; i++) {
        if (p[i].bad)
            continue;
        eddy_store_record rec;
        int rc = record_get(st, st->wtxn, pos[i], &rec, err);
        if (rc != EDDY_OK)
            return rc == EDDY_ENOTFOUND ? eddy_err_set(err, EDDY_EIO,
                                                       "event store: the id index names "
                                                       "position %llu, which has no event",
                                                       (unsigned long long)pos[i])
                                        : rc;
        events[i].outcome = EDDY_STORE_EXISTING;
        events[i].position = pos[i];
        events[i].version = rec.version;
        res->existing++;
        st->counters.existing++;
    }
    return EDDY_OK;
}

static int store_append(eddy_store *st, const char *stream, int64_t expected,
                        eddy_store_event *events, size_t count, eddy_store_result *res,
                        const append_opts *o, eddy_err *err)
{
    eddy_store_result dummy;
    if (!res)
        res = &dummy;
    memset(res, 0, sizeof(*res));
    res->current_version = -1;
    for (size_t i = 0; i < count; i++) {
        events[i].outcome = 0;
        events[i].position = 0;
        events[i].version = -1;
        events[i].reason = NULL;
        events[i].made_id[0] = '\0';
    }
    if (expected < EDDY_STORE_ANY && expected != EDDY_STORE_STREAM_EXISTS)
        return eddy_err_set(err, EDDY_EINVAL, "expected version %lld is not valid",
                            (long long)expected);
    int rc = group_begin(st, err);
    if (rc != EDDY_OK)
        return rc;

    prep small[4];
    prep *p = count <= 4 ? small : eddy_malloc(count * sizeof(*p));
    uint64_t small_pos[4] = {0};
    uint64_t *pos = count <= 4 ? small_pos : eddy_calloc(count, sizeof(*pos));
    if (!p || !pos) {
        if (p != small)
            eddy_free(p);
        if (pos != small_pos)
            eddy_free(pos);
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory appending %zu events", count);
    }
    int64_t ingest = o->ingest_time != EDDY_STORE_TIME_NONE ? o->ingest_time : wall_ms(st);
    const char *stream_bad = check_stream(stream, o->allow_system);
    size_t slen = stream_bad ? 0 : strlen(stream);
    size_t valid = 0;
    for (size_t i = 0; i < count; i++) {
        prep_event(st, &events[i], &p[i]);
        if (stream_bad && !events[i].invalid) /* the caller's own verdict says more */
            p[i].bad = stream_bad;
        if (p[i].bad) {
            rc = deadletter(st, stream, &events[i], p[i].bad, ingest, err);
            if (rc != EDDY_OK)
                goto done;
            res->deadlettered++;
        } else {
            valid++;
        }
    }
    if (valid == 0)
        goto done;

    /* The same id twice in one batch. */
    for (size_t i = 0; i < count; i++) {
        if (p[i].bad || !p[i].id)
            continue;
        for (size_t j = i + 1; j < count; j++) {
            if (!p[j].bad && p[j].id && p[j].ilen == p[i].ilen &&
                memcmp(p[j].id, p[i].id, p[i].ilen) == 0) {
                rc = refuse(events, p, count, EDDY_EDUPLICATE);
                eddy_err_set(err, rc, "event id '%s' appears twice in one append", p[i].id);
                goto done;
            }
        }
    }

    int64_t cur;
    if ((rc = group_head(st, stream, slen, &cur, err)) != EDDY_OK)
        goto done;
    res->current_version = cur;
    bool exact = expected >= EDDY_STORE_NO_STREAM;
    if ((expected == EDDY_STORE_STREAM_EXISTS && cur < 0) || (exact && expected > cur)) {
        rc = conflict(events, p, count, stream, expected, cur, NULL, err);
        goto done;
    }
    if (exact && expected < cur) {
        /* Idempotent only if the events after 'expected' are these, in this order. */
        int64_t ver = expected;
        for (size_t i = 0; i < count; i++) {
            if (p[i].bad)
                continue;
            ver++;
            eddy_store_record rec;
            uint8_t kb[MAX_KEY];
            MDB_val k = {stream_key(kb, stream, slen, ver), kb}, v;
            int g = ver <= cur ? mdb_get(st->wtxn, st->db_streams, &k, &v) : MDB_NOTFOUND;
            if (g != 0 && g != MDB_NOTFOUND) {
                rc = mdb_fail(err, g, "reading a stream");
                goto done;
            }
            if (g == 0 && v.mv_size == 8)
                pos[i] = get_u64(v.mv_data);
            if (g != 0 || !p[i].id || record_get(st, st->wtxn, pos[i], &rec, NULL) != EDDY_OK ||
                strlen(rec.id) != p[i].ilen || memcmp(rec.id, p[i].id, p[i].ilen) != 0) {
                rc = conflict(events, p, count, stream, expected, cur,
                              ver > cur ? "the append runs past the end of the stream" : NULL, err);
                goto done;
            }
        }
        rc = report_existing(st, events, p, count, pos, res, err);
        goto done;
    }

    /* Which of the ids are stored already, and where. A single event (the usual append)
     * is looked up by indexing its id at once: if that succeeds it will be written, if
     * the id is there LMDB hands back its position and nothing was changed. */
    size_t found = 0, first = count;
    bool id_indexed = false;
    for (size_t i = 0; i < count; i++) {
        if (p[i].bad)
            continue;
        if (first == count)
            first = i;
        if (!p[i].id)
            continue;
        if (valid == 1) {
            uint8_t pv[8];
            put_u64(pv, st->next_position);
            MDB_val k = {p[i].ilen, (void *)p[i].id}, v = {8, pv};
            int g = mdb_put(st->wtxn, st->db_ids, &k, &v, MDB_NOOVERWRITE);
            if (g == 0) {
                id_indexed = true;
                continue;
            }
            if (g != MDB_KEYEXIST || v.mv_size != 8) {
                char why[EDDY_ERR_MSG_MAX];
                snprintf(why, sizeof(why), "indexing an event id: %s", mdb_strerror(g));
                group_lose(st, why);
                rc = eddy_err_set(err, EDDY_EIO, "event store: %s", why);
                goto done;
            }
            pos[i] = get_u64(v.mv_data);
        } else if ((rc = id_lookup(st, st->wtxn, p[i].id, p[i].ilen, &pos[i], err)) != EDDY_OK) {
            goto done;
        }
        if (!pos[i])
            continue;
        found++;
        eddy_store_record rec;
        if ((rc = record_get(st, st->wtxn, pos[i], &rec, err)) != EDDY_OK)
            goto done;
        if (strcmp(rec.stream, stream) != 0) {
            rc = refuse(events, p, count, EDDY_EDUPLICATE);
            eddy_err_set(err, rc,
                         "event id '%s' is stored already, in stream '%s' at position %llu",
                         p[i].id, rec.stream, (unsigned long long)pos[i]);
            goto done;
        }
    }
    if (found == valid) {
        rc = report_existing(st, events, p, count, pos, res, err);
        goto done;
    }
    if (found > 0) {
        if (!exact && pos[first]) {
            rc = conflict(events, p, count, stream, expected, cur,
                          "only the first part of the append is stored", err);
        } else {
            rc = refuse(events, p, count, EDDY_EDUPLICATE);
            for (size_t i = 0; i < count; i++) {
                if (!p[i].bad && pos[i]) {
                    eddy_err_set(err, rc,
                                 "the append is stored only in part (event id '%s' is at "
                                 "position %llu)",
                                 p[i].id, (unsigned long long)pos[i]);
                    break;
                }
            }
        }
        goto done;
    }

    /* Write. */
    int64_t ver = cur;
    for (size_t i = 0; i < count; i++) {
        if (p[i].bad)
            continue;
        eddy_store_event *ev = &events[i];
        const char *id = p[i].id;
        size_t ilen = p[i].ilen;
        if (!id) {
            make_id(st, ev->made_id);
            id = ev->made_id;
            ilen = strlen(id);
        }
        ver++;
        int64_t t = ev->time == EDDY_STORE_TIME_NONE ? ingest : ev->time;
        rc =
            write_event(st, stream, slen, ver, p[i].type, p[i].tlen, id, ilen,
                        id_indexed && p[i].id, t, ingest, p[i].data, p[i].dlen, &ev->position, err);
        if (rc != EDDY_OK)
            goto done;
        ev->outcome = EDDY_STORE_WRITTEN;
        ev->version = ver;
        res->written++;
        st->counters.appended++;
    }
    res->current_version = ver;
    if (st->group_events >= st->opts.group_max)
        rc = group_commit(st, err);
done:
    if (rc == EDDY_ECONFLICT || rc == EDDY_EDUPLICATE)
        st->counters.refused++;
    for (size_t i = 0; i < count; i++)
        eddy_free(p[i].owned);
    if (p != small)
        eddy_free(p);
    if (pos != small_pos)
        eddy_free(pos);
    return rc;
}

int eddy_store_append(eddy_store *st, const char *stream, int64_t expected,
                      eddy_store_event *events, size_t count, eddy_store_result *res, eddy_err *err)
{
    append_opts o = {false, EDDY_STORE_TIME_NONE};
    return store_append(st, stream, expected, events, count, res, &o, err);
}

/* ---- small reads ---- */

/* A read transaction, or the open group's when there is one ('*own' tells which). */
static int read_txn(eddy_store *st, MDB_txn **txn, bool *own, eddy_err *err)
{
    if (st->wtxn) {
        *txn = st->wtxn;
        *own = false;
        return EDDY_OK;
    }
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn);
    if (rc)
        return mdb_fail(err, rc, "starting a read transaction");
    *own = true;
    return EDDY_OK;
}

uint64_t eddy_store_last_position(const eddy_store *st)
{
    return st->committed;
}

int eddy_store_stream_version(eddy_store *st, const char *stream, int64_t *version, eddy_err *err)
{
    *version = -1;
    if (!stream || !*stream || strlen(stream) > EDDY_STORE_NAME_MAX)
        return EDDY_OK;
    if (st->wtxn)
        return group_head(st, stream, strlen(stream), version, err);
    MDB_txn *txn;
    bool own = false;
    int rc = read_txn(st, &txn, &own, err);
    if (rc != EDDY_OK)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, st->db_streams, &cur)) != 0) {
        mdb_txn_abort(txn);
        return mdb_fail(err, rc, "opening a cursor");
    }
    rc = stream_head(cur, stream, strlen(stream), version, err);
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return rc;
}

int eddy_store_find_id(eddy_store *st, const char *id, uint64_t *position, eddy_err *err)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return mdb_fail(err, rc, "starting a read transaction");
    rc = id_lookup(st, txn, id, strlen(id), position, err);
    mdb_txn_abort(txn);
    if (rc == EDDY_OK && *position == 0)
        return eddy_err_set(err, EDDY_ENOTFOUND, "no event with id '%s'", id);
    return rc;
}

/* ---- iterators ---- */

enum { IT_ALL, IT_STREAM, IT_TIME };

struct eddy_store_iter {
    eddy_store *st;
    eddy_store_query q;
    char *stream; /* owned copy of q.stream */
    size_t slen;
    int mode;        /* IT_* */
    MDB_txn *txn;    /* NULL before the first read */
    bool reset;      /* txn is reset (paused); renew before use */
    MDB_cursor *cur; /* on the driving table */
    bool positioned; /* the cursor is on 'last' in this transaction */
    bool finished;   /* an upper bound was passed: nothing more, ever */
    bool have_last;  /* 'last' holds the key of the last event returned */
    uint8_t last[MAX_KEY];
    size_t last_len;
};

eddy_store_iter *eddy_store_iter_open(eddy_store *st, const eddy_store_query *q, eddy_err *err)
{
    if (q->by_time && !q->stream) {
        eddy_err_set(err, EDDY_EINVAL, "reading by event time needs a stream");
        return NULL;
    }
    if (q->stream && (!*q->stream || strlen(q->stream) > EDDY_STORE_NAME_MAX)) {
        eddy_err_set(err, EDDY_EINVAL, "'%s' is not a valid stream name", q->stream);
        return NULL;
    }
    eddy_store_iter *it = eddy_calloc(1, sizeof(*it));
    if (!it || (q->stream && !(it->stream = eddy_strdup(q->stream)))) {
        eddy_free(it);
        eddy_err_set(err, EDDY_ENOMEM, "out of memory opening an iterator");
        return NULL;
    }
    it->st = st;
    it->q = *q;
    it->q.stream = it->stream;
    it->slen = it->stream ? strlen(it->stream) : 0;
    it->mode = !q->stream ? IT_ALL : q->by_time ? IT_TIME : IT_STREAM;
    return it;
}

void eddy_store_iter_pause(eddy_store_iter *it)
{
    if (it && it->txn && !it->reset) {
        mdb_txn_reset(it->txn);
        it->reset = true;
    }
    if (it)
        it->positioned = false;
}

void eddy_store_iter_close(eddy_store_iter *it)
{
    if (!it)
        return;
    if (it->cur)
        mdb_cursor_close(it->cur);
    if (it->txn)
        mdb_txn_abort(it->txn);
    eddy_free(it->stream);
    eddy_free(it);
}

static int iter_start_txn(eddy_store_iter *it, eddy_err *err)
{
    eddy_store *st = it->st;
    int rc;
    if (!it->txn) {
        if ((rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &it->txn)) != 0) {
            it->txn = NULL;
            return mdb_fail(err, rc, "starting a read transaction");
        }
        MDB_dbi dbi = it->mode == IT_ALL      ? st->db_events
                      : it->mode == IT_STREAM ? st->db_streams
                                              : st->db_times;
        if ((rc = mdb_cursor_open(it->txn, dbi, &it->cur)) != 0) {
            it->cur = NULL;
            return mdb_fail(err, rc, "opening a cursor");
        }
    } else if (it->reset) {
        if ((rc = mdb_txn_renew(it->txn)) != 0)
            return mdb_fail(err, rc, "renewing a read transaction");
        if ((rc = mdb_cursor_renew(it->txn, it->cur)) != 0)
            return mdb_fail(err, rc, "renewing a cursor");
        it->reset = false;
    }
    return EDDY_OK;
}

/* Moves the cursor to the next candidate key (first one in this transaction after the
 * last event returned, or the start). */
static int iter_step(eddy_store_iter *it, MDB_val *k, MDB_val *v)
{
    if (it->positioned)
        return mdb_cursor_get(it->cur, k, v, MDB_NEXT);
    it->positioned = true;
    uint8_t kb[MAX_KEY];
    if (it->have_last) {
        memcpy(kb, it->last, it->last_len);
        *k = (MDB_val){it->last_len, kb};
        int rc = mdb_cursor_get(it->cur, k, v, MDB_SET_RANGE);
        if (rc == 0 && k->mv_size == it->last_len &&
            memcmp(k->mv_data, it->last, it->last_len) == 0)
            rc = mdb_cursor_get(it->cur, k, v, MDB_NEXT);
        return rc;
    }
    const eddy_store_query *q = &it->q;
    size_t klen;
    if (it->mode == IT_ALL)
        put_u64(kb, q->from_position ? q->from_position : 1), klen = 8;
    else if (it->mode == IT_STREAM)
        klen = stream_key(kb, it->stream, it->slen, q->has_version ? q->from_version : 0);
    else
        klen = time_key(kb, it->stream, it->slen, q->has_time ? q->from_time : INT64_MIN, 0);
    *k = (MDB_val){klen, kb};
    return mdb_cursor_get(it->cur, k, v, MDB_SET_RANGE);
}

static bool in_stream(const eddy_store_iter *it, const MDB_val *k, size_t tail)
{
    const uint8_t *p = k->mv_data;
    return k->mv_size == it->slen + 1 + tail && memcmp(p, it->stream, it->slen) == 0 &&
           p[it->slen] == 0;
}

int eddy_store_iter_next(eddy_store_iter *it, eddy_store_record *rec, eddy_err *err)
{
    if (it->finished)
        return 0;
    int rc = iter_start_txn(it, err);
    if (rc != EDDY_OK)
        return rc;
    const eddy_store_query *q = &it->q;
    for (;;) {
        MDB_val k, v;
        rc = iter_step(it, &k, &v);
        if (rc == MDB_NOTFOUND) {
            it->positioned = false;
            return 0;
        }
        if (rc)
            return mdb_fail(err, rc, "reading events");
        uint64_t pos;
        if (it->mode == IT_ALL) {
            if (k.mv_size != 8)
                return record_damaged(err, 0, "bad key in the events table");
            pos = get_u64(k.mv_data);
            if (q->to_position && pos > q->to_position) {
                it->finished = true;
                return 0;
            }
            const char *why = record_decode(&k, &v, rec);
            if (why)
                return record_damaged(err, pos, why);
        } else {
            if (!in_stream(it, &k, it->mode == IT_STREAM ? 8 : 16)) {
                it->positioned = false;
                return 0; /* past the stream's last entry, for now */
            }
            const uint8_t *tail = (const uint8_t *)k.mv_data + it->slen + 1;
            if (it->mode == IT_STREAM) {
                int64_t ver = (int64_t)get_u64(tail);
                if (q->has_version && ver > q->to_version) {
                    it->finished = true;
                    return 0;
                }
                if (v.mv_size != 8)
                    return record_damaged(err, 0, "bad entry in the stream index");
                pos = get_u64(v.mv_data);
                if (q->to_position && pos > q->to_position) {
                    it->finished = true;
                    return 0;
                }
            } else {
                int64_t t = time_from_key(get_u64(tail));
                if (q->has_time && t > q->to_time) {
                    it->finished = true;
                    return 0;
                }
                pos = get_u64(tail + 8);
            }
            rc = record_get(it->st, it->txn, pos, rec, err);
            if (rc != EDDY_OK)
                return rc == EDDY_ENOTFOUND ? record_damaged(err, pos, "indexed but missing") : rc;
        }
        memcpy(it->last, k.mv_data, k.mv_size);
        it->last_len = k.mv_size;
        it->have_last = true;
        if ((q->from_position && rec->position < q->from_position) ||
            (q->to_position && rec->position > q->to_position))
            continue;
        if (q->has_time && (rec->time < q->from_time || rec->time > q->to_time))
            continue;
        if (q->has_version && it->mode == IT_TIME &&
            (rec->version < q->from_version || rec->version > q->to_version))
            continue;
        return 1;
    }
}

/* ---- bodies as JSON values ----
 *
 * A stored body is compact, valid JSON (checked at append), so reading it back needs no
 * general parser: this one builds jansson values directly, with the number rules of
 * eddy_json_loadb (integral values within +-2^53 are integers). It still checks every
 * byte, so a damaged record gives an error, not a bad value. */

typedef struct jbuild {
    const unsigned char *p, *end;
    int depth;
    char *scratch; /* unescaped strings; owned, grows */
    size_t cap;
} jbuild;

static bool jb_reserve(jbuild *b, size_t need)
{
    if (need <= b->cap)
        return true;
    size_t cap = b->cap ? b->cap * 2 : 256;
    while (cap < need)
        cap *= 2;
    char *s = eddy_realloc(b->scratch, cap);
    if (!s)
        return false;
    b->scratch = s;
    b->cap = cap;
    return true;
}

static size_t utf8_put(char *out, unsigned cp)
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A string at 'b->p' (the opening quote). '*out' points into the body when it has no
 * escapes, else into the scratch buffer (valid until the next string). */
static bool jb_string(jbuild *b, const char **out, size_t *len)
{
    const unsigned char *start = ++b->p;
    while (b->p < b->end) {
        b->p = skip_plain(b->p, b->end);
        if (b->p >= b->end)
            break;
        unsigned c = *b->p;
        if (c == '"') {
            *out = (const char *)start;
            *len = (size_t)(b->p - start);
            b->p++;
            return true;
        }
        if (c == '\\')
            break;
        if (c < 0x20)
            return false;
        if (c < 0x80) {
            b->p++;
        } else {
            size_t k = utf8_seq(b->p, (size_t)(b->end - b->p));
            if (!k)
                return false;
            b->p += k;
        }
    }
    /* escapes: decode into the scratch buffer (never longer than the text) */
    size_t n = (size_t)(b->p - start);
    if (!jb_reserve(b, (size_t)(b->end - start) + 1))
        return false;
    memcpy(b->scratch, start, n);
    jscan s = {b->p, b->end, 0, false};
    while (b->p < b->end) {
        unsigned c = *b->p;
        if (c == '"') {
            *out = b->scratch;
            *len = n;
            b->p++;
            return true;
        }
        if (c < 0x20)
            return false;
        if (c != '\\') {
            size_t k = c < 0x80 ? 1 : utf8_seq(b->p, (size_t)(b->end - b->p));
            if (!k)
                return false;
            memcpy(b->scratch + n, b->p, k);
            n += k;
            b->p += k;
            continue;
        }
        if (++b->p >= b->end)
            return false;
        c = *b->p++;
        static const char plain[] = "\"\\/bfnrt", real[] = "\"\\/\b\f\n\r\t";
        const char *e = c ? strchr(plain, (int)c) : NULL;
        if (e) {
            b->scratch[n++] = real[e - plain];
            continue;
        }
        if (c != 'u')
            return false;
        unsigned u, lo;
        s.p = b->p;
        if (!js_u4(&s, &u) || u == 0 || (u >= 0xDC00 && u <= 0xDFFF))
            return false;
        if (u >= 0xD800 && u <= 0xDBFF) {
            if (s.end - s.p < 2 || s.p[0] != '\\' || s.p[1] != 'u')
                return false;
            s.p += 2;
            if (!js_u4(&s, &lo) || lo < 0xDC00 || lo > 0xDFFF)
                return false;
            u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00);
        }
        b->p = s.p;
        n += utf8_put(b->scratch + n, u);
    }
    return false;
}

static json_t *jb_value(jbuild *b);

static json_t *jb_number(jbuild *b)
{
    jscan s = {b->p, b->end, 0, false};
    const unsigned char *start = b->p;
    if (!js_number(&s))
        return NULL;
    b->p = s.p;
    size_t len = (size_t)(b->p - start);
    bool neg = *start == '-';
    /* Fast paths: up to 15 digits with at most a fraction, no exponent. Integers are
     * exact; a fraction is m / 10^k with both exact in a double, and IEEE division rounds
     * correctly, so the result is strtod's (Clinger's fast path). */
    int64_t m = 0;
    int digits = 0, frac = -1;
    size_t i = neg;
    for (; i < len && digits <= 15; i++) {
        unsigned char c = start[i];
        if (c >= '0' && c <= '9') {
            m = m * 10 + (c - '0');
            digits++;
            if (frac >= 0)
                frac++;
        } else if (c == '.' && frac < 0) {
            frac = 0;
        } else {
            break;
        }
    }
    if (i == len && digits <= 15) {
        if (frac < 0 && !(neg && m == 0)) /* -0 stays a real, as the parser keeps it */
            return json_integer(neg ? -m : m);
        static const double pow10[] = {1e0, 1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
        double v = frac > 0 ? (double)m / pow10[frac] : (double)m;
        return eddy_json_number(neg ? -v : v);
    }
    char buf[512];
    if (len >= sizeof(buf))
        return NULL;
    memcpy(buf, start, len);
    buf[len] = '\0';
    return eddy_json_number(strtod(buf, NULL));
}

static json_t *jb_container(jbuild *b, bool object)
{
    if (++b->depth > JSON_MAX_DEPTH)
        return NULL;
    json_t *v = object ? json_object() : json_array();
    if (!v)
        return NULL;
    b->p++;
    char close = object ? '}' : ']';
    if (b->p < b->end && *b->p == close) {
        b->p++;
        b->depth--;
        return v;
    }
    for (;;) {
        if (object) {
            const char *key;
            size_t klen;
            char small[128];
            char *kcopy = NULL;
            if (b->p >= b->end || *b->p != '"' || !jb_string(b, &key, &klen))
                goto fail;
            if (key == b->scratch) { /* the value may reuse the scratch buffer */
                kcopy = klen < sizeof(small) ? small : eddy_malloc(klen + 1);
                if (!kcopy)
                    goto fail;
                memcpy(kcopy, key, klen);
                key = kcopy;
            }
            json_t *item = NULL;
            if (b->p < b->end && *b->p == ':') {
                b->p++;
                item = jb_value(b);
            }
            int rc = item ? json_object_setn_new_nocheck(v, key, klen, item) : -1;
            if (kcopy && kcopy != small)
                eddy_free(kcopy);
            if (rc != 0)
                goto fail;
        } else {
            json_t *item = jb_value(b);
            if (!item || json_array_append_new(v, item) != 0)
                goto fail;
        }
        if (b->p >= b->end)
            goto fail;
        if (*b->p == ',') {
            b->p++;
            continue;
        }
        if (*b->p != close)
            goto fail;
        b->p++;
        b->depth--;
        return v;
    }
fail:
    json_decref(v);
    return NULL;
}

static json_t *jb_value(jbuild *b)
{
    if (b->p >= b->end)
        return NULL;
    const char *s;
    size_t n;
    switch (*b->p) {
    case '{':
        return jb_container(b, true);
    case '[':
        return jb_container(b, false);
    case '"':
        return jb_string(b, &s, &n) ? json_stringn_nocheck(s, n) : NULL;
    case 't':
        return (size_t)(b->end - b->p) >= 4 && memcmp(b->p, "true", 4) == 0
                   ? (b->p += 4, json_true())
                   : NULL;
    case 'f':
        return (size_t)(b->end - b->p) >= 5 && memcmp(b->p, "false", 5) == 0
                   ? (b->p += 5, json_false())
                   : NULL;
    case 'n':
        return (size_t)(b->end - b->p) >= 4 && memcmp(b->p, "null", 4) == 0
                   ? (b->p += 4, json_null())
                   : NULL;
    default:
        return jb_number(b);
    }
}

json_t *eddy_store_record_json(const eddy_store_record *rec, eddy_err *err)
{
    jbuild b = {(const unsigned char *)rec->data, (const unsigned char *)rec->data + rec->data_len,
                0, NULL, 0};
    json_t *v = jb_value(&b);
    eddy_free(b.scratch);
    if (v && b.p != b.end) {
        json_decref(v);
        v = NULL;
    }
    if (!v)
        record_damaged(err, rec->position, "its body is not the JSON it was stored as");
    return v;
}

/* ---- stats ---- */

int eddy_store_get_stats(eddy_store *st, eddy_store_stats *out, eddy_err *err)
{
    *out = st->counters;
    out->format = st->format;
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return mdb_fail(err, rc, "starting a read transaction");
    MDB_stat ms;
    MDB_envinfo info;
    if ((rc = mdb_stat(txn, st->db_events, &ms)) != 0)
        goto fail;
    out->events = ms.ms_entries;
    mdb_env_info(st->env, &info);
    out->map_bytes = info.me_mapsize;
    struct stat sb;
    out->file_bytes = stat(st->path, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    MDB_cursor *cur;
    MDB_val k, v;
    if ((rc = mdb_cursor_open(txn, st->db_events, &cur)) != 0)
        goto fail;
    eddy_store_record rec;
    if (mdb_cursor_get(cur, &k, &v, MDB_FIRST) == 0 && !record_decode(&k, &v, &rec))
        out->first_ingest = rec.ingest_time;
    if (mdb_cursor_get(cur, &k, &v, MDB_LAST) == 0 && !record_decode(&k, &v, &rec)) {
        out->last_ingest = rec.ingest_time;
        out->last_position = rec.position;
    }
    mdb_cursor_close(cur);
    /* Streams: jump from one stream's entries to the next. */
    if ((rc = mdb_cursor_open(txn, st->db_streams, &cur)) != 0)
        goto fail;
    uint8_t kb[MAX_KEY + 1];
    int g = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    while (g == 0) {
        const uint8_t *z = memchr(k.mv_data, 0, k.mv_size);
        if (!z)
            break;
        size_t slen = (size_t)(z - (const uint8_t *)k.mv_data);
        out->streams++;
        if (slen == sizeof(EDDY_STORE_DEADLETTER_STREAM) - 1 &&
            memcmp(k.mv_data, EDDY_STORE_DEADLETTER_STREAM, slen) == 0) {
            int64_t head;
            if (stream_head(cur, EDDY_STORE_DEADLETTER_STREAM, slen, &head, NULL) == EDDY_OK)
                out->deadletters = (uint64_t)(head + 1);
        }
        memcpy(kb, k.mv_data, slen);
        kb[slen] = 1; /* just past every key of this stream */
        k = (MDB_val){slen + 1, kb};
        g = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    }
    mdb_cursor_close(cur);
    if ((rc = mdb_cursor_open(txn, st->db_meta, &cur)) != 0)
        goto fail;
    k = (MDB_val){3, "cp:"};
    g = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    while (g == 0 && k.mv_size >= 3 && memcmp(k.mv_data, "cp:", 3) == 0) {
        out->checkpoints++;
        g = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return EDDY_OK;
fail:
    mdb_txn_abort(txn);
    return mdb_fail(err, rc, "reading statistics");
}

/* ---- verifying ---- */

static int verify_fail(MDB_txn *txn, MDB_cursor *cur, eddy_err *err, uint64_t pos, const char *why)
{
    if (cur)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return record_damaged(err, pos, why);
}

int eddy_store_verify(eddy_store *st, eddy_store_progress_fn progress, void *data, eddy_err *err)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc)
        return mdb_fail(err, rc, "starting a read transaction");
    MDB_stat se, si, ss, stt;
    if ((rc = mdb_stat(txn, st->db_events, &se)) || (rc = mdb_stat(txn, st->db_ids, &si)) ||
        (rc = mdb_stat(txn, st->db_streams, &ss)) || (rc = mdb_stat(txn, st->db_times, &stt))) {
        mdb_txn_abort(txn);
        return mdb_fail(err, rc, "reading table sizes");
    }
    uint64_t total = se.ms_entries;
    if (si.ms_entries != total || ss.ms_entries != total || stt.ms_entries != total) {
        mdb_txn_abort(txn);
        return eddy_err_set(err, EDDY_EIO,
                            "event store: the indexes do not match the log (%llu events, %llu "
                            "ids, %llu stream entries, %llu time entries)",
                            (unsigned long long)total, (unsigned long long)si.ms_entries,
                            (unsigned long long)ss.ms_entries, (unsigned long long)stt.ms_entries);
    }
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, st->db_events, &cur))) {
        mdb_txn_abort(txn);
        return mdb_fail(err, rc, "opening a cursor");
    }
    MDB_val k, v;
    uint64_t done = 0;
    if (progress)
        progress(0, total, data);
    int g = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    for (; g == 0; g = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        eddy_store_record rec;
        uint64_t expect = done + 1;
        const char *why = record_decode(&k, &v, &rec);
        if (why)
            return verify_fail(txn, cur, err, k.mv_size == 8 ? get_u64(k.mv_data) : expect, why);
        if (rec.position != expect)
            return verify_fail(txn, cur, err, expect, "missing: the log has a gap here");
        size_t slen = strlen(rec.stream);
        uint8_t kb[MAX_KEY];
        MDB_val ik = {strlen(rec.id), (void *)rec.id}, iv;
        if (mdb_get(txn, st->db_ids, &ik, &iv) || iv.mv_size != 8 ||
            get_u64(iv.mv_data) != rec.position)
            return verify_fail(txn, cur, err, rec.position, "its id is not indexed to it");
        ik = (MDB_val){stream_key(kb, rec.stream, slen, rec.version), kb};
        if (mdb_get(txn, st->db_streams, &ik, &iv) || iv.mv_size != 8 ||
            get_u64(iv.mv_data) != rec.position)
            return verify_fail(txn, cur, err, rec.position,
                               "its stream version is not indexed to it");
        ik = (MDB_val){time_key(kb, rec.stream, slen, rec.time, rec.position), kb};
        if (mdb_get(txn, st->db_times, &ik, &iv))
            return verify_fail(txn, cur, err, rec.position, "its event time is not indexed");
        if (++done % 1024 == 0 && progress)
            progress(done, total, data);
    }
    mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    if (g != MDB_NOTFOUND)
        return mdb_fail(err, g, "reading the log");
    if (progress)
        progress(done, total, data);
    return EDDY_OK;
}

/* ---- checkpoints ---- */

static size_t checkpoint_key(uint8_t *buf, const char *name)
{
    size_t n = strlen(name);
    if (n > EDDY_STORE_NAME_MAX)
        n = EDDY_STORE_NAME_MAX;
    memcpy(buf, "cp:", 3);
    memcpy(buf + 3, name, n);
    return n + 3;
}

int eddy_store_checkpoint_get(eddy_store *st, const char *name, eddy_store_checkpoint *cp,
                              eddy_err *err)
{
    MDB_txn *txn;
    bool own = false;
    int rc = read_txn(st, &txn, &own, err);
    if (rc != EDDY_OK)
        return rc;
    uint8_t kb[EDDY_STORE_NAME_MAX + 3];
    MDB_val k = {checkpoint_key(kb, name), kb}, v;
    int g = mdb_get(txn, st->db_meta, &k, &v);
    if (g == 0 && v.mv_size == 16) {
        cp->position = get_u64(v.mv_data);
        cp->version = (int64_t)get_u64((uint8_t *)v.mv_data + 8);
        rc = EDDY_OK;
    } else if (g == MDB_NOTFOUND) {
        rc = eddy_err_set(err, EDDY_ENOTFOUND, "no checkpoint '%s'", name);
    } else {
        rc = g ? mdb_fail(err, g, "reading a checkpoint")
               : eddy_err_set(err, EDDY_EIO, "checkpoint '%s' is damaged", name);
    }
    if (own)
        mdb_txn_abort(txn);
    return rc;
}

int eddy_store_checkpoint_set(eddy_store *st, const char *name, const eddy_store_checkpoint *cp,
                              eddy_err *err)
{
    int rc = group_begin(st, err);
    if (rc != EDDY_OK)
        return rc;
    uint8_t kb[EDDY_STORE_NAME_MAX + 3], vb[16];
    put_u64(vb, cp->position);
    put_u64(vb + 8, (uint64_t)cp->version);
    MDB_val k = {checkpoint_key(kb, name), kb}, v = {16, vb};
    if ((rc = mdb_put(st->wtxn, st->db_meta, &k, &v, 0)) != 0) {
        char why[EDDY_ERR_MSG_MAX];
        snprintf(why, sizeof(why), "writing checkpoint '%s': %s", name, mdb_strerror(rc));
        group_lose(st, why);
        return eddy_err_set(err, EDDY_EIO, "event store: %s", why);
    }
    return EDDY_OK;
}

/* ---- node state ---- */

/* "ns:" owner 0x00 key; 0 when 'owner' or 'key' is not acceptable. */
static size_t state_key(uint8_t *buf, const char *owner, const char *key, size_t key_len)
{
    size_t n = owner ? strlen(owner) : 0;
    if (n == 0 || n > EDDY_STORE_NAME_MAX || key_len > EDDY_STORE_STATE_KEY_MAX ||
        (key_len && memchr(key, 0, key_len)))
        return 0;
    memcpy(buf, "ns:", 3);
    memcpy(buf + 3, owner, n);
    buf[3 + n] = 0;
    if (key_len)
        memcpy(buf + 4 + n, key, key_len);
    return 4 + n + key_len;
}

#define STATE_KEY_BUF (4 + EDDY_STORE_NAME_MAX + EDDY_STORE_STATE_KEY_MAX)

static int state_write(eddy_store *st, const char *owner, const char *key, size_t key_len,
                       const void *value, size_t len, bool del, eddy_err *err)
{
    uint8_t kb[STATE_KEY_BUF];
    MDB_val k = {state_key(kb, owner, key, key_len), kb};
    if (k.mv_size == 0)
        return eddy_err_set(err, EDDY_EINVAL,
                            "node state: owner must be 1..%d bytes and key at most %d bytes "
                            "without NUL",
                            EDDY_STORE_NAME_MAX, EDDY_STORE_STATE_KEY_MAX);
    if (!del && len > st->opts.max_body)
        return eddy_err_set(err, EDDY_EINVAL, "node state of '%s' is %zu bytes, over %zu", owner,
                            len, st->opts.max_body);
    int rc = group_begin(st, err);
    if (rc != EDDY_OK)
        return rc;
    MDB_val v = {len, (void *)value};
    rc = del ? mdb_del(st->wtxn, st->db_meta, &k, NULL) : mdb_put(st->wtxn, st->db_meta, &k, &v, 0);
    if (rc == MDB_NOTFOUND && del)
        return EDDY_OK;
    if (rc) {
        char why[EDDY_ERR_MSG_MAX];
        snprintf(why, sizeof(why), "writing node state of '%s': %s", owner, mdb_strerror(rc));
        group_lose(st, why);
        return eddy_err_set(err, EDDY_EIO, "event store: %s", why);
    }
    return EDDY_OK;
}

int eddy_store_state_put(eddy_store *st, const char *owner, const char *key, size_t key_len,
                         const void *value, size_t len, eddy_err *err)
{
    return state_write(st, owner, key, key_len, value, len, false, err);
}

int eddy_store_state_del(eddy_store *st, const char *owner, const char *key, size_t key_len,
                         eddy_err *err)
{
    return state_write(st, owner, key, key_len, NULL, 0, true, err);
}

/* Walks the records of 'owner' in 'txn'; with 'del' deletes each (a write transaction). */
static int state_walk(eddy_store *st, MDB_txn *txn, const char *owner, bool del,
                      eddy_store_state_fn fn, void *data, eddy_err *err)
{
    uint8_t kb[STATE_KEY_BUF];
    size_t plen = state_key(kb, owner, "", 0);
    if (plen == 0)
        return eddy_err_set(err, EDDY_EINVAL, "node state: owner must be 1..%d bytes",
                            EDDY_STORE_NAME_MAX);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->db_meta, &cur);
    if (rc)
        return mdb_fail(err, rc, "reading node state");
    MDB_val k = {plen, kb}, v;
    int g = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
    int out = EDDY_OK;
    while (g == 0 && k.mv_size >= plen && memcmp(k.mv_data, kb, plen) == 0) {
        if (del) {
            if ((g = mdb_cursor_del(cur, 0)) != 0)
                break;
            k = (MDB_val){plen, kb}; /* seek again: the simplest position after a delete */
            g = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
            continue;
        }
        out = fn((const char *)k.mv_data + plen, k.mv_size - plen, v.mv_data, v.mv_size, data);
        if (out != 0)
            break;
        g = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    mdb_cursor_close(cur);
    if (g != 0 && g != MDB_NOTFOUND)
        return mdb_fail(err, g, del ? "deleting node state" : "reading node state");
    return out;
}

int eddy_store_state_clear(eddy_store *st, const char *owner, eddy_err *err)
{
    int rc = group_begin(st, err);
    if (rc != EDDY_OK)
        return rc;
    rc = state_walk(st, st->wtxn, owner, true, NULL, NULL, err);
    if (rc == EDDY_EIO)
        group_lose(st, err && err->code ? err->msg : "deleting node state failed");
    return rc;
}

int eddy_store_state_scan(eddy_store *st, const char *owner, eddy_store_state_fn fn, void *data,
                          eddy_err *err)
{
    MDB_txn *txn;
    bool own = false;
    int rc = read_txn(st, &txn, &own, err);
    if (rc != EDDY_OK)
        return rc;
    rc = state_walk(st, txn, owner, false, fn, data, err);
    if (own)
        mdb_txn_abort(txn);
    return rc;
}

int eddy_store_state_get(eddy_store *st, const char *owner, const char *key, size_t key_len,
                         eddy_store_state_fn fn, void *data, eddy_err *err)
{
    uint8_t kb[STATE_KEY_BUF];
    MDB_val k = {state_key(kb, owner, key, key_len), kb}, v;
    if (k.mv_size == 0)
        return eddy_err_set(err, EDDY_EINVAL,
                            "node state: owner must be 1..%d bytes and key at most %d bytes "
                            "without NUL",
                            EDDY_STORE_NAME_MAX, EDDY_STORE_STATE_KEY_MAX);
    MDB_txn *txn;
    bool own = false;
    int rc = read_txn(st, &txn, &own, err);
    if (rc != EDDY_OK)
        return rc;
    int g = mdb_get(txn, st->db_meta, &k, &v);
    if (g == 0)
        rc = fn(key, key_len, v.mv_data, v.mv_size, data);
    else if (g == MDB_NOTFOUND)
        rc = EDDY_ENOTFOUND;
    else
        rc = mdb_fail(err, g, "reading node state");
    if (own)
        mdb_txn_abort(txn);
    return rc;
}

/* ---- times ---- */

static bool parse_digits(const char **p, int n, int *out)
{
    int v = 0;
    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

int eddy_store_parse_time(const char *text, int64_t *ms)
{
    if (!text || !*text)
        return EDDY_EINVAL;
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (!*end && !errno && end != text) {
        *ms = v;
        return EDDY_OK;
    }
    const char *p = text;
    int y, mo, d, h = 0, mi = 0, sec = 0, frac = 0;
    if (!parse_digits(&p, 4, &y) || *p++ != '-' || !parse_digits(&p, 2, &mo) || *p++ != '-' ||
        !parse_digits(&p, 2, &d))
        return EDDY_EINVAL;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!parse_digits(&p, 2, &h) || *p++ != ':' || !parse_digits(&p, 2, &mi))
            return EDDY_EINVAL;
        if (*p == ':') {
            p++;
            if (!parse_digits(&p, 2, &sec))
                return EDDY_EINVAL;
            if (*p == '.' || *p == ',') {
                p++;
                int digits = 0;
                while (*p >= '0' && *p <= '9') {
                    if (digits < 3)
                        frac = frac * 10 + (*p - '0');
                    digits++;
                    p++;
                }
                if (digits == 0)
                    return EDDY_EINVAL;
                for (; digits < 3; digits++)
                    frac *= 10;
            }
        }
    }
    int64_t offset_min = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
        if (!parse_digits(&p, 2, &oh))
            return EDDY_EINVAL;
        if (*p == ':')
            p++;
        if (*p && !parse_digits(&p, 2, &om))
            return EDDY_EINVAL;
        if (oh > 23 || om > 59)
            return EDDY_EINVAL;
        offset_min = sign * (oh * 60 + om);
    }
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (*p || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || sec > 60)
        return EDDY_EINVAL;
    int64_t days = days_from_civil(y, mo, d);
    *ms = ((days * 24 + h) * 60 + mi - offset_min) * 60000 + (int64_t)sec * 1000 + frac;
    return EDDY_OK;
}

char *eddy_store_format_time(int64_t ms, char *buf)
{
    int64_t days = ms >= 0 ? ms / 86400000 : -((-ms + 86399999) / 86400000);
    int64_t rem = ms - days * 86400000;
    /* civil_from_days, the inverse of days_from_civil */
    int64_t z = days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    int64_t d = doy - (153 * mp + 2) / 5 + 1;
    int64_t m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = yoe + era * 400 + (m <= 2);
    char tmp[96];
    snprintf(tmp, sizeof(tmp), "%04lld-%02d-%02dT%02d:%02d:%02d.%03dZ", (long long)y, (int)m,
             (int)d, (int)(rem / 3600000), (int)(rem / 60000 % 60), (int)(rem / 1000 % 60),
             (int)(rem % 1000));
    size_t n = strnlen(tmp, 31);
    memcpy(buf, tmp, n);
    buf[n] = '\0';
    return buf;
}

/* ---- NDJSON ---- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = eddy_realloc(b->p, cap);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(sbuf *b, const char *s)
{
    sb_add(b, "\"", 1);
    const char *run = s;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        sb_add(b, run, (size_t)(s - run));
        char esc[8];
        if (c == '"' || c == '\\')
            snprintf(esc, sizeof(esc), "\\%c", c);
        else if (c == '\n')
            snprintf(esc, sizeof(esc), "\\n");
        else if (c == '\t')
            snprintf(esc, sizeof(esc), "\\t");
        else if (c == '\r')
            snprintf(esc, sizeof(esc), "\\r");
        else
            snprintf(esc, sizeof(esc), "\\u%04x", c);
        sb_add(b, esc, strlen(esc));
        run = s + 1;
    }
    sb_add(b, run, (size_t)(s - run));
    sb_add(b, "\"", 1);
}

static void sb_int(sbuf *b, const char *key, long long v)
{
    char num[48];
    int n = snprintf(num, sizeof(num), "\"%s\":%lld", key, v);
    sb_add(b, num, (size_t)n);
}

char *eddy_store_record_ndjson(const eddy_store_record *rec, size_t *len)
{
    sbuf b = {0};
    char head[48];
    int n = snprintf(head, sizeof(head),
                     "{\"position\":%llu,\"stream\":", (unsigned long long)rec->position);
    sb_add(&b, head, (size_t)n);
    sb_str(&b, rec->stream);
    sb_add(&b, ",", 1);
    sb_int(&b, "version", rec->version);
    sb_add(&b, ",\"type\":", 8);
    sb_str(&b, rec->type);
    sb_add(&b, ",\"id\":", 6);
    sb_str(&b, rec->id);
    sb_add(&b, ",", 1);
    sb_int(&b, "time", rec->time);
    sb_add(&b, ",", 1);
    sb_int(&b, "ingestTime", rec->ingest_time);
    sb_add(&b, ",\"data\":", 8);
    sb_add(&b, rec->data, rec->data_len);
    sb_add(&b, "}\n", 2);
    if (b.oom) {
        eddy_free(b.p);
        return NULL;
    }
    *len = b.len;
    return b.p;
}

/* The integer member 'key' of an NDJSON line. */
static int line_int(const char *line, size_t len, const char *key, long long *out, eddy_err *err)
{
    size_t off, n;
    char buf[32];
    if (!json_member_span(line, len, key, &off, &n))
        return eddy_err_set(err, EDDY_EPARSE, "no \"%s\"", key);
    if (n == 0 || n >= sizeof(buf))
        return eddy_err_set(err, EDDY_EPARSE, "\"%s\" is not an integer", key);
    memcpy(buf, line + off, n);
    buf[n] = '\0';
    char *end;
    errno = 0;
    *out = strtoll(buf, &end, 10);
    if (*end || errno)
        return eddy_err_set(err, EDDY_EPARSE, "\"%s\" is not an integer", key);
    return EDDY_OK;
}

/* The string member 'key' of an NDJSON line. Ownership: '*out' is new (json_decref). */
static int line_str(const char *line, size_t len, const char *key, json_t **out, eddy_err *err)
{
    size_t off, n;
    if (!json_member_span(line, len, key, &off, &n))
        return eddy_err_set(err, EDDY_EPARSE, "no \"%s\"", key);
    json_error_t je;
    json_t *v = json_loadb(line + off, n, JSON_DECODE_ANY, &je);
    if (!json_is_string(v) || strlen(json_string_value(v)) != json_string_length(v)) {
        json_decref(v);
        return eddy_err_set(err, EDDY_EPARSE, "\"%s\" is not a string", key);
    }
    *out = v;
    return EDDY_OK;
}

int eddy_store_import_line(eddy_store *st, const char *line, size_t len,
                           eddy_store_import_result *out, eddy_err *err)
{
    memset(out, 0, sizeof(*out));
    bool space;
    if (!json_check(line, len, &space))
        return eddy_err_set(err, EDDY_EPARSE, "not a JSON object");
    long long position, version, t, ingest;
    json_t *stream = NULL, *type = NULL, *id = NULL;
    size_t doff, dlen;
    int rc;
    if ((rc = line_int(line, len, "position", &position, err)) ||
        (rc = line_int(line, len, "version", &version, err)) ||
        (rc = line_int(line, len, "time", &t, err)) ||
        (rc = line_int(line, len, "ingestTime", &ingest, err)) ||
        (rc = line_str(line, len, "stream", &stream, err)) ||
        (rc = line_str(line, len, "type", &type, err)) ||
        (rc = line_str(line, len, "id", &id, err)))
        goto done;
    if (!json_member_span(line, len, "data", &doff, &dlen)) {
        rc = eddy_err_set(err, EDDY_EPARSE, "no \"data\"");
        goto done;
    }
    if (version < 0 || t == EDDY_STORE_TIME_NONE || ingest == EDDY_STORE_TIME_NONE) {
        rc = eddy_err_set(err, EDDY_EPARSE, "\"version\" or a time is out of range");
        goto done;
    }
    eddy_store_event ev = {.type = json_string_value(type),
                           .id = json_string_value(id),
                           .time = t,
                           .data = line + doff,
                           .data_len = dlen};
    prep p;
    prep_event(st, &ev, &p);
    eddy_free(p.owned);
    const char *bad = check_stream(json_string_value(stream), true);
    if (!bad && !*json_string_value(type))
        bad = "empty event type";
    if (!bad && !*json_string_value(id))
        bad = "empty event id";
    if (bad || p.bad) {
        rc = eddy_err_set(err, EDDY_EPARSE, "%s", bad ? bad : p.bad);
        goto done;
    }
    append_opts o = {true, ingest};
    rc = store_append(st, json_string_value(stream), version - 1, &ev, 1, NULL, &o, err);
    if (rc == EDDY_OK) {
        out->position = ev.position;
        out->existing = ev.outcome == EDDY_STORE_EXISTING;
        out->renumbered = ev.position != (uint64_t)position;
    }
done:
    json_decref(stream);
    json_decref(type);
    json_decref(id);
    return rc;
}
