/*
 * common.h: the few things every module needs: asserts that state invariants, allocation that
 * aborts on failure (arun is a daemon: an allocation failure is not recoverable input), and
 * small helpers. Nothing here knows about any subsystem.
 */
#ifndef ARUN_CORE_COMMON_H
#define ARUN_CORE_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MUST_USE __attribute__((warn_unused_result))
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
/* Drops a MUST_USE result on purpose (GCC ignores a (void) cast there). Say why beside it. */
#define IGNORE_RESULT(x)                                                                           \
    do {                                                                                           \
        if (x) {                                                                                   \
        }                                                                                          \
    } while (0)

/* Cheap invariant checks, always on. Never used to validate input from outside the process. */
#define ASSERT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond))                                                                               \
            common_assert_fail(#cond, __FILE__, __LINE__);                                         \
    } while (0)

/* Expensive invariant checks, compiled only into debug builds. */
#ifdef NDEBUG
#define DEBUG_ASSERT(cond) ((void)0)
#else
#define DEBUG_ASSERT(cond) ASSERT(cond)
#endif

/* Prints the failed condition with its place and aborts. */
__attribute__((noreturn)) void common_assert_fail(const char *cond, const char *file, int line);

/* Allocation that aborts on failure; the x prefix follows Redis' zmalloc habit. */
void *xmalloc(size_t n);
void *xcalloc(size_t count, size_t n);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* printf into a fresh heap string. */
char *xasprintf(const char *fmt, ...) PRINTF_LIKE(1, 2);

/* Writes v in decimal and a NUL to out (at least 21 bytes); returns the digits' count. For hot
 * paths, where snprintf's format parsing showed in profiles. */
size_t fmt_u64(char *out, uint64_t v);

/* The value of a hexadecimal digit (either case), or -1. */
static inline int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
