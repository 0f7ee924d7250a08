/* keyed.c: key text, numbers and the key map of the per-key IoT nodes (keyed.h). */
#include "keyed.h"

#include <math.h>
#include <string.h>

#include "mem.h"
#include "msg.h"

const char *keyed_key_text(const json_t *value, char *buf, size_t *len, const char **why)
{
    const char *s = NULL;
    size_t n = 0;
    if (json_is_string(value)) {
        s = json_string_value(value);
        n = json_string_length(value);
        if (memchr(s, 0, n)) {
            *why = "the key holds a NUL character";
            return NULL;
        }
    } else if (json_is_number(value)) {
        s = eddy_format_number(json_number_value(value), buf);
        n = strlen(s);
    } else if (json_is_boolean(value)) {
        s = json_is_true(value) ? "true" : "false";
        n = strlen(s);
    } else {
        *why = value ? "the key is not a string, number or boolean" : "the key property is missing";
        return NULL;
    }
    if (n > KEYED_KEY_MAX) {
        *why = "the key is longer than 240 bytes";
        return NULL;
    }
    if (s != buf)
        memcpy(buf, s, n);
    buf[n] = '\0';
    *len = n;
    return buf;
}

bool keyed_number(const json_t *value, double *out)
{
    if (json_is_number(value))
        *out = json_number_value(value);
    else if (!json_is_string(value) || !eddy_parse_number(json_string_value(value), out))
        return false;
    return isfinite(*out);
}

const char *keyed_path(const char *prop)
{
    return strncmp(prop, "msg.", 4) == 0 ? prop + 4 : prop;
}

int keyed_parse_path(const char *prop, const char *what, eddy_path *path, eddy_err *err)
{
    eddy_err perr;
    if (eddy_path_parse(keyed_path(prop), path, &perr) != EDDY_OK)
        return eddy_err_set(err, EDDY_EINVAL, "%s '%s': %s", what, prop, perr.msg);
    return EDDY_OK;
}

void keyed_state_put(eddy_node *node, eddy_store *store, const char *key, size_t len, json_t *rec,
                     const char *what)
{
    char *text = rec ? eddy_json_dumps(rec, 0) : NULL;
    eddy_err err;
    if (!text)
        eddy_node_error(node, NULL, "cannot store the %s of key '%s': out of memory", what, key);
    else if (eddy_store_state_put(store, eddy_node_id(node), key, len, text, strlen(text), &err) !=
             EDDY_OK)
        eddy_node_error(node, NULL, "cannot store the %s of key '%s': %s", what, key, err.msg);
    eddy_free(text);
    json_decref(rec);
}

/* ---- the map ---- */

static uint64_t keyed_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h;
}

static keyed_entry **keyed_slot(const keyed_map *m, const char *key, size_t len, uint64_t h)
{
    keyed_entry **p = &m->buckets[h & (m->cap - 1)];
    while (*p && !((*p)->hash == h && (*p)->len == len && memcmp((*p)->key, key, len) == 0))
        p = &(*p)->next;
    return p;
}

void *keyed_get(const keyed_map *m, const char *key, size_t len)
{
    if (!m->buckets)
        return NULL;
    keyed_entry *e = *keyed_slot(m, key, len, keyed_hash(key, len));
    return e ? e->record : NULL;
}

static bool keyed_grow(keyed_map *m)
{
    size_t cap = m->cap ? m->cap * 2 : 16;
    keyed_entry **b = eddy_calloc(cap, sizeof(*b));
    if (!b)
        return false;
    for (size_t i = 0; i < m->cap; i++) {
        keyed_entry *e = m->buckets[i];
        while (e) {
            keyed_entry *next = e->next;
            e->next = b[e->hash & (cap - 1)];
            b[e->hash & (cap - 1)] = e;
            e = next;
        }
    }
    eddy_free(m->buckets);
    m->buckets = b;
    m->cap = cap;
    return true;
}

keyed_entry *keyed_put(keyed_map *m, const char *key, size_t len, void *record)
{
    if ((m->count + 1 > m->cap) && !keyed_grow(m))
        return NULL;
    keyed_entry *e = eddy_malloc(sizeof(*e) + len + 1);
    if (!e)
        return NULL;
    e->hash = keyed_hash(key, len);
    e->record = record;
    e->len = len;
    memcpy(e->key, key, len);
    e->key[len] = '\0';
    keyed_entry **slot = &m->buckets[e->hash & (m->cap - 1)];
    e->next = *slot;
    *slot = e;
    m->count++;
    return e;
}

void keyed_del(keyed_map *m, const char *key, size_t len)
{
    if (!m->buckets)
        return;
    keyed_entry **p = keyed_slot(m, key, len, keyed_hash(key, len));
    keyed_entry *e = *p;
    if (!e)
        return;
    *p = e->next;
    eddy_free(e);
    m->count--;
}

void keyed_each(keyed_map *m, void (*fn)(void *record, void *data), void *data)
{
    for (size_t i = 0; i < m->cap; i++)
        for (keyed_entry *e = m->buckets[i]; e; e = e->next)
            fn(e->record, data);
}

void keyed_free(keyed_map *m)
{
    for (size_t i = 0; i < m->cap; i++) {
        keyed_entry *e = m->buckets[i];
        while (e) {
            keyed_entry *next = e->next;
            eddy_free(e);
            e = next;
        }
    }
    eddy_free(m->buckets);
    *m = (keyed_map){0};
}
