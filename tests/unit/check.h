/* check.h: assertions that print file, line, expression and both values, and a test list
 * runner: each test file defines TEST_LIST and calls CHECK_MAIN. `prog NAME` runs one
 * test; no argument runs all and prints "N passed, N failed". */
#ifndef EDDY_CHECK_H
#define EDDY_CHECK_H

#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"

static jmp_buf check_jmp;

#define CHECK_FAIL_(...)                                                                           \
    do {                                                                                           \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                            \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fprintf(stderr, "\n");                                                                     \
        longjmp(check_jmp, 1);                                                                     \
    } while (0)

#define CHECK(expr)                                                                                \
    do {                                                                                           \
        if (!(expr))                                                                               \
            CHECK_FAIL_("check failed: %s", #expr);                                                \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                                         \
    do {                                                                                           \
        long long a_ = (long long)(a), b_ = (long long)(b);                                        \
        if (a_ != b_)                                                                              \
            CHECK_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);                                 \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                                         \
    do {                                                                                           \
        const char *a_ = (a), *b_ = (b);                                                           \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                                     \
            CHECK_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",                  \
                        b_ ? b_ : "(null)");                                                       \
    } while (0)

#define CHECK_CONTAINS(hay, needle)                                                                \
    do {                                                                                           \
        const char *h_ = (hay), *n_ = (needle);                                                    \
        if (!h_ || !strstr(h_, n_))                                                                \
            CHECK_FAIL_("\"%s\" does not contain \"%s\"", h_ ? h_ : "(null)", n_);                 \
    } while (0)

typedef struct check_test {
    const char *name;
    void (*fn)(void);
} check_test;

static inline int check_main(const check_test *tests, int argc, char **argv)
{
    volatile int passed = 0, failed = 0; /* survive longjmp */
    eddy_mem_install();
    for (const check_test *t = tests; t->name; t++) {
        if (argc > 1 && strcmp(argv[1], t->name) != 0)
            continue;
        if (setjmp(check_jmp) == 0) {
            t->fn();
            passed++;
            printf("ok   %s\n", t->name);
        } else {
            failed++;
            printf("FAIL %s\n", t->name);
        }
    }
    printf("%d passed, %d failed\n", passed, failed);
    return failed || passed == 0 ? 1 : 0;
}

#define CHECK_MAIN(list)                                                                           \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return check_main(list, argc, argv);                                                       \
    }

#endif
