/* mem.c: counted allocation with a failure switch for tests. A small header in front of
 * each block records its size, so eddy_mem_in_use is exact. */
#include "mem.h"

#include <jansson.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef union mem_header {
    size_t size;
    max_align_t align_; /* keeps the user block aligned */
} mem_header;

static atomic_size_t mem_in_use;
static atomic_long mem_fail_countdown; /* 0 = off; 1 = the next allocation fails */

static bool mem_should_fail(void)
{
    long n = atomic_load(&mem_fail_countdown);
    if (n <= 0)
        return false;
    if (atomic_fetch_sub(&mem_fail_countdown, 1) == 1)
        return true;
    return false;
}

void *eddy_malloc(size_t size)
{
    if (mem_should_fail() || size > SIZE_MAX - sizeof(mem_header))
        return NULL;
    mem_header *h = malloc(sizeof(mem_header) + size);
    if (!h)
        return NULL;
    h->size = size;
    atomic_fetch_add(&mem_in_use, size);
    return h + 1;
}

void *eddy_calloc(size_t count, size_t size)
{
    if (size && count > SIZE_MAX / size)
        return NULL;
    void *p = eddy_malloc(count * size);
    if (p)
        memset(p, 0, count * size);
    return p;
}

void *eddy_realloc(void *ptr, size_t size)
{
    if (!ptr)
        return eddy_malloc(size);
    if (mem_should_fail() || size > SIZE_MAX - sizeof(mem_header))
        return NULL;
    mem_header *old = (mem_header *)ptr - 1;
    size_t old_size = old->size;
    mem_header *h = realloc(old, sizeof(mem_header) + size);
    if (!h)
        return NULL;
    h->size = size;
    atomic_fetch_sub(&mem_in_use, old_size);
    atomic_fetch_add(&mem_in_use, size);
    return h + 1;
}

void eddy_free(void *ptr)
{
    if (!ptr)
        return;
    mem_header *h = (mem_header *)ptr - 1;
    atomic_fetch_sub(&mem_in_use, h->size);
    free(h);
}

char *eddy_strndup(const char *s, size_t n)
{
    size_t len = strnlen(s, n);
    char *d = eddy_malloc(len + 1);
    if (!d)
        return NULL;
    memcpy(d, s, len);
    d[len] = '\0';
    return d;
}

char *eddy_strdup(const char *s)
{
    return eddy_strndup(s, strlen(s));
}

void eddy_mem_install(void)
{
    json_set_alloc_funcs(eddy_malloc, eddy_free);
}

size_t eddy_mem_in_use(void)
{
    return atomic_load(&mem_in_use);
}

void eddy_mem_fail_after(long n)
{
    atomic_store(&mem_fail_countdown, n);
}
