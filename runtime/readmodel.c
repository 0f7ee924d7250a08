/* readmodel.c: the registry of read models (see readmodel.h): a short list, searched by
 * name; a process runs a handful of models, registered at node set-up. */
#include "readmodel.h"

#include <string.h>

#include "mem.h"
#include "store.h"

typedef struct rm_entry {
    struct rm_entry *next;
    const eddy_readmodel_ops *ops;
    void *data;
    char name[]; /* NUL-terminated */
} rm_entry;

static rm_entry *models; /* registered models, newest first */

static rm_entry *find(const char *name)
{
    for (rm_entry *e = models; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

int eddy_readmodel_register(const char *name, const eddy_readmodel_ops *ops, void *data,
                            eddy_err *err)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > EDDY_STORE_NAME_MAX)
        return eddy_err_set(err, EDDY_EINVAL, "a model name is 1..%d bytes", EDDY_STORE_NAME_MAX);
    if (find(name))
        return eddy_err_set(err, EDDY_EDUPLICATE,
                            "model '%s' is kept by another node already (model names are "
                            "unique in a process)",
                            name);
    rm_entry *e = eddy_malloc(sizeof(*e) + n + 1);
    if (!e)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    memcpy(e->name, name, n + 1);
    e->ops = ops;
    e->data = data;
    e->next = models;
    models = e;
    return EDDY_OK;
}

void eddy_readmodel_unregister(const char *name, void *data)
{
    for (rm_entry **p = &models; *p; p = &(*p)->next) {
        rm_entry *e = *p;
        if (e->data == data && strcmp(e->name, name) == 0) {
            *p = e->next;
            eddy_free(e);
            return;
        }
    }
}

json_t *eddy_readmodel_query(const char *name, const char *key, size_t key_len, eddy_err *err)
{
    rm_entry *e = find(name);
    if (!e) {
        eddy_err_set(err, EDDY_ENOTFOUND, "no read model '%s'", name);
        return NULL;
    }
    return e->ops->query(e->data, key, key_len, err);
}

bool eddy_readmodel_progress(const char *name, uint64_t *done, uint64_t *total)
{
    rm_entry *e = find(name);
    return e && e->ops->progress && e->ops->progress(e->data, done, total);
}

json_t *eddy_readmodel_names(void)
{
    json_t *names = json_array();
    for (rm_entry *e = models; e && names; e = e->next) {
        size_t i = 0;
        while (i < json_array_size(names) &&
               strcmp(json_string_value(json_array_get(names, i)), e->name) < 0)
            i++;
        json_array_insert_new(names, i, json_string(e->name));
    }
    return names;
}
