/*
 * common.c: assert reporting and aborting allocation. See common.h.
 */
#include "core/common.h"

#include <stdarg.h>
#include <string.h>

#include "core/log.h"

void common_assert_fail(const char *cond, const char *file, int line)
{
    log_flush(); /* what led here comes out before the verdict */
    fprintf(stderr, "arun: assertion failed: %s (%s:%d)\n", cond, file, line);
    abort();
}

static void *check(void *p)
{
    if (p == NULL) {
        log_flush();
        fputs("arun: out of memory\n", stderr);
        abort();
    }
    return p;
}

void *xmalloc(size_t n)
{
    return check(malloc(n ? n : 1));
}

void *xcalloc(size_t count, size_t n)
{
    return check(calloc(count ? count : 1, n ? n : 1));
}

void *xrealloc(void *p, size_t n)
{
    return check(realloc(p, n ? n : 1));
}

char *xstrdup(const char *s)
{
    return check(strdup(s));
}

char *xstrndup(const char *s, size_t n)
{
    return check(strndup(s, n));
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    char *s = NULL;

    va_start(ap, fmt);
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        check(NULL);
    return s;
}

size_t fmt_u64(char *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}
