/* keyed.h: what the per-key IoT nodes (window, alert; state and actuator for paths) share,
 * private to them: the key of a message as text, a number from a message value, property
 * paths, a small hash map from key text to the node's per-key record, and writing a
 * record as node state (the store's facility, store.h eddy_store_state_*). */
#ifndef EDDY_KEYED_H
#define EDDY_KEYED_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"
#include "msg.h"
#include "node.h"
#include "store.h"

/* Longest key, in bytes: a node state key in the store. */
#define KEYED_KEY_MAX EDDY_STORE_STATE_KEY_MAX

/* The key of a message from the value at its key property: a string as it is, a number as
 * JavaScript prints it, true/false. 'buf' (KEYED_KEY_MAX + 1 bytes) receives the text.
 * NULL with a reason in '*why' (static text) when the value is missing, of another type,
 * too long or holds a NUL. */
const char *keyed_key_text(const json_t *value, char *buf, size_t *len, const char **why);

/* A finite number from a JSON number or a numeric string ("21.5"). */
bool keyed_number(const json_t *value, double *out);

/* A message property path as the editor writes it ("msg.payload.x" or "payload.x"),
 * without "msg.". Borrowed from 'prop'. */
const char *keyed_path(const char *prop);

/* Parses the property 'prop' (keyed_path) into 'path'; an error names the property as
 * 'what'. EDDY_OK or EDDY_EINVAL. */
int keyed_parse_path(const char *prop, const char *what, eddy_path *path, eddy_err *err);

/* Writes 'rec' (taken) as key 'key' of 'node''s node state in 'store'; a failure is a node
 * error naming 'what' ("alerts", "windows") and the key. */
void keyed_state_put(eddy_node *node, eddy_store *store, const char *key, size_t len, json_t *rec,
                     const char *what);

/* ---- the map: key text -> record (void *), chained, grows by doubling ---- */

typedef struct keyed_entry {
    struct keyed_entry *next;
    uint64_t hash;
    void *record;
    size_t len;
    char key[]; /* NUL-terminated, 'len' bytes */
} keyed_entry;

typedef struct keyed_map {
    keyed_entry **buckets; /* NULL until the first put */
    size_t cap;            /* buckets, a power of two */
    size_t count;          /* entries */
} keyed_map;

/* The record of 'key', or NULL. */
void *keyed_get(const keyed_map *m, const char *key, size_t len);
/* Adds 'key' -> 'record' (the key must not be present). Returns the entry (its 'key' is
 * a stable copy for the life of the entry), NULL on out-of-memory. */
keyed_entry *keyed_put(keyed_map *m, const char *key, size_t len, void *record);
/* Removes 'key' (the record is the caller's to free). */
void keyed_del(keyed_map *m, const char *key, size_t len);
/* Calls 'fn' on every record (the map must not change meanwhile). */
void keyed_each(keyed_map *m, void (*fn)(void *record, void *data), void *data);
/* Frees the entries and buckets (not the records). */
void keyed_free(keyed_map *m);

#endif
