/* mem.c: counted allocation with a failure switch for tests, and a per-thread cache of
 * small blocks. A message is dozens of small jansson allocations that live a few
 * microseconds; glibc's own per-thread cache keeps only 7 blocks per size, so a burst of
 * messages in flight falls through to its slow paths. Our cache keeps freed blocks per
 * 16-byte size class, up to MEM_CACHE_BYTES per thread. It does not raise peak memory: it
 * holds only blocks that were in use a moment before.
 *
 * Invariants:
 *   1. Every block has a mem_header in front recording the size asked for; a small block's
 *      real capacity is its class times 16, so blocks of one class are interchangeable.
 *   2. The cache is off in sanitizer builds and when EDDY_NO_MEM_CACHE is set (valgrind
 *      runs), so that use-after-free is reported, not hidden by reuse. */
#include "mem.h"

#include <jansson.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct mem_header {
    alignas(16) size_t size; /* bytes asked for */
} mem_header;

#define MEM_CLASS_BYTES 16
#define MEM_CLASSES     16 /* blocks up to 256 bytes are cached */
#define MEM_CACHE_BYTES (4u << 20)

typedef struct mem_free_block {
    struct mem_free_block *next;
} mem_free_block;

typedef struct mem_class_cache {
    mem_free_block *head;
    unsigned count;
} mem_class_cache;

static _Thread_local mem_class_cache mem_cache[MEM_CLASSES + 1];
static _Thread_local size_t mem_cache_bytes; /* capacity held in mem_cache */
static atomic_size_t mem_in_use;
static atomic_long mem_fail_countdown; /* 0 = off; 1 = the next allocation fails */
#if defined(EDDY_DEBUG_ASSERT)
static bool mem_cache_on = false;
#else
static bool mem_cache_on = true;
#endif

static bool mem_should_fail(void)
{
    if (atomic_load_explicit(&mem_fail_countdown, memory_order_relaxed) <= 0)
        return false;
    return atomic_fetch_sub(&mem_fail_countdown, 1) == 1;
}

/* 1..MEM_CLASSES for cached sizes, 0 for blocks malloc handles alone. */
static size_t mem_class(size_t size)
{
    if (size == 0 || size > MEM_CLASSES * MEM_CLASS_BYTES)
        return 0;
    return (size + MEM_CLASS_BYTES - 1) / MEM_CLASS_BYTES;
}

void *eddy_malloc(size_t size)
{
    if (mem_should_fail() || size > SIZE_MAX - sizeof(mem_header) - MEM_CLASS_BYTES)
        return NULL;
    size_t c = mem_class(size);
    mem_header *h;
    if (c && mem_cache[c].head) {
        h = (mem_header *)mem_cache[c].head;
        mem_cache[c].head = mem_cache[c].head->next;
        mem_cache[c].count--;
        mem_cache_bytes -= c * MEM_CLASS_BYTES;
    } else {
        h = malloc(sizeof(mem_header) + (c ? c * MEM_CLASS_BYTES : size));
        if (!h)
            return NULL;
    }
    h->size = size;
    atomic_fetch_add_explicit(&mem_in_use, size, memory_order_relaxed);
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

void eddy_free(void *ptr)
{
    if (!ptr)
        return;
    mem_header *h = (mem_header *)ptr - 1;
    atomic_fetch_sub_explicit(&mem_in_use, h->size, memory_order_relaxed);
    size_t c = mem_class(h->size);
    if (c && mem_cache_on && mem_cache_bytes + c * MEM_CLASS_BYTES <= MEM_CACHE_BYTES) {
        mem_free_block *b = (mem_free_block *)h;
        b->next = mem_cache[c].head;
        mem_cache[c].head = b;
        mem_cache[c].count++;
        mem_cache_bytes += c * MEM_CLASS_BYTES;
        return;
    }
    free(h);
}

void *eddy_realloc(void *ptr, size_t size)
{
    if (!ptr)
        return eddy_malloc(size);
    mem_header *old = (mem_header *)ptr - 1;
    size_t old_size = old->size;
    size_t old_class = mem_class(old_size);
    if (old_class && old_class == mem_class(size)) { /* fits the same block */
        if (mem_should_fail())
            return NULL;
        old->size = size;
        atomic_fetch_sub_explicit(&mem_in_use, old_size, memory_order_relaxed);
        atomic_fetch_add_explicit(&mem_in_use, size, memory_order_relaxed);
        return ptr;
    }
    if (old_class || mem_class(size)) { /* moving between a class and malloc's own */
        void *p = eddy_malloc(size);
        if (!p)
            return NULL;
        memcpy(p, ptr, old_size < size ? old_size : size);
        eddy_free(ptr);
        return p;
    }
    if (mem_should_fail() || size > SIZE_MAX - sizeof(mem_header))
        return NULL;
    mem_header *h = realloc(old, sizeof(mem_header) + size);
    if (!h)
        return NULL;
    h->size = size;
    atomic_fetch_sub_explicit(&mem_in_use, old_size, memory_order_relaxed);
    atomic_fetch_add_explicit(&mem_in_use, size, memory_order_relaxed);
    return h + 1;
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
    if (getenv("EDDY_NO_MEM_CACHE"))
        mem_cache_on = false;
    json_set_alloc_funcs(eddy_malloc, eddy_free);
}

void eddy_mem_release_cache(void)
{
    for (int c = 1; c <= MEM_CLASSES; c++) {
        while (mem_cache[c].head) {
            mem_free_block *b = mem_cache[c].head;
            mem_cache[c].head = b->next;
            free(b);
        }
        mem_cache[c].count = 0;
    }
    mem_cache_bytes = 0;
}

size_t eddy_mem_in_use(void)
{
    return atomic_load(&mem_in_use);
}

void eddy_mem_fail_after(long n)
{
    atomic_store(&mem_fail_countdown, n);
}
