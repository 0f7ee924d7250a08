/* readmodel.h: the read models served over HTTP (GET /api/state/<model>[/<key>]). A node
 * that keeps a read model ("state") registers its model name with a query callback while
 * it runs and unregisters when it closes; the admin server and `eddy events rebuild` find
 * models here by name. The registry knows no node type.
 *
 * Threads: the loop thread only (node callbacks and HTTP handlers run there). */
#ifndef EDDY_READMODEL_H
#define EDDY_READMODEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "err.h"

typedef struct eddy_readmodel_ops {
    /* The whole model ('key' NULL) or one key's record ('key_len' bytes) as JSON.
     * Ownership: new. NULL with 'err' set: EDDY_ENOTFOUND for a key the model lacks,
     * EDDY_EIO, EDDY_ENOMEM. */
    json_t *(*query)(void *data, const char *key, size_t key_len, eddy_err *err);
    /* True while the model is being rebuilt, with 'done' of 'total' events read (total 0:
     * unknown). May be NULL (never rebuilding). */
    bool (*progress)(void *data, uint64_t *done, uint64_t *total);
} eddy_readmodel_ops;

/* Registers model 'name' (copied; 1..255 bytes) served by 'ops' (borrowed, static) with
 * 'data' (borrowed until unregistered). EDDY_EDUPLICATE when the name is taken (the
 * message names it), EDDY_EINVAL for a bad name, EDDY_ENOMEM. */
int eddy_readmodel_register(const char *name, const eddy_readmodel_ops *ops, void *data,
                            eddy_err *err);
/* Removes the registration of 'name' made with 'data' (nothing if there is none). */
void eddy_readmodel_unregister(const char *name, void *data);

/* Queries model 'name' as its 'query' callback does. EDDY_ENOTFOUND (with a message naming
 * the model) when no such model is registered. Ownership: new. */
json_t *eddy_readmodel_query(const char *name, const char *key, size_t key_len, eddy_err *err);
/* Rebuild progress of 'name' (see 'progress'); false when unknown or not rebuilding. */
bool eddy_readmodel_progress(const char *name, uint64_t *done, uint64_t *total);
/* The names of the registered models, sorted. Ownership: new array of strings. */
json_t *eddy_readmodel_names(void);

#endif
