/* mem.h: every heap allocation of eddy's own goes through here, so that memory is counted
 * and tests can make the Nth allocation fail. jansson is pointed at these functions too
 * (eddy_mem_install), so message memory is counted as well. */
#ifndef EDDY_MEM_H
#define EDDY_MEM_H

#include <stddef.h>

/* Ownership: each returns new memory the caller frees with eddy_free (NULL on failure). */
void *eddy_malloc(size_t size);
void *eddy_calloc(size_t count, size_t size);
void *eddy_realloc(void *ptr, size_t size);
char *eddy_strdup(const char *s);
char *eddy_strndup(const char *s, size_t n);
/* Accepts NULL. */
void eddy_free(void *ptr);

/* Routes jansson's allocations through eddy_malloc/eddy_free. Call once at start. With
 * EDDY_NO_MEM_CACHE set in the environment (valgrind runs), freed blocks are not cached. */
void eddy_mem_install(void);
/* Returns the calling thread's cached free blocks to the system (at thread or program
 * end, so leak checkers see nothing held). */
void eddy_mem_release_cache(void);
/* Bytes currently allocated through this module (all threads). */
size_t eddy_mem_in_use(void);
/* Tests: make the 'n'th allocation from now fail (1 = the next one); 0 turns it off. */
void eddy_mem_fail_after(long n);

#endif
