/*
 * buf.c: capped growable buffer. See buf.h. Growth doubles, so appends are amortised O(1).
 */
#include "core/buf.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

void buf_init(struct buf *b, size_t cap)
{
    *b = (struct buf){.cap = cap};
}

void buf_cleanup(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->size = 0;
    b->truncated = false;
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    b->truncated = false;
    if (b->data != NULL)
        b->data[0] = '\0';
}

static int reserve(struct buf *b, size_t extra)
{
    if (extra > b->cap || b->len > b->cap - extra) {
        b->truncated = true;
        return -ENOBUFS;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->size)
        return 0;
    size_t size = b->size ? b->size : 64;
    while (size < need)
        size *= 2;
    b->data = xrealloc(b->data, size);
    b->size = size;
    return 0;
}

int buf_reserve(struct buf *b, size_t n)
{
    bool truncated = b->truncated;
    int rc = reserve(b, n);
    b->truncated = truncated; /* nothing was refused: no content is missing */
    return rc;
}

int buf_append(struct buf *b, const void *p, size_t n)
{
    int rc = reserve(b, n);
    if (rc != 0)
        return rc;
    if (n > 0)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int buf_puts(struct buf *b, const char *s)
{
    return buf_append(b, s, strlen(s));
}

int buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -EINVAL;
    int rc = reserve(b, (size_t)n);
    if (rc != 0)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = buf_vprintf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void buf_consume(struct buf *b, size_t n)
{
    ASSERT(n <= b->len);
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    if (b->data != NULL)
        b->data[b->len] = '\0';
}

const char *buf_cstr(const struct buf *b)
{
    return b->data != NULL ? b->data : "";
}

char *buf_steal(struct buf *b)
{
    char *p = b->data;
    if (p == NULL)
        p = xstrdup("");
    *b = (struct buf){.cap = b->cap};
    return p;
}
