/*
 * buf.h: a growable byte buffer with a hard cap (curl's dynbuf "toobig"). Every buffer that
 * input can grow has a cap, so a peer can never make arun allocate without bound.
 *
 * An append that would pass the cap appends nothing, returns -ENOBUFS and sets `truncated`,
 * which stays set until the buffer is reset. Code that builds output from many appends (a
 * message, a JSON line, a table) appends without checking each result and looks at
 * `truncated` once at the end; code that takes input chunk by chunk checks each result.
 */
#ifndef ARUN_CORE_BUF_H
#define ARUN_CORE_BUF_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

#include "core/common.h"

struct buf {
    char *data;  /* always NUL-terminated when len > 0 or after any append; may be NULL if empty */
    size_t len;  /* bytes used, not counting the terminating NUL */
    size_t size; /* bytes allocated */
    size_t cap;  /* the most len may reach; appends past it fail with -ENOBUFS */
    bool truncated; /* an append was refused since the last reset: the contents are incomplete */
};

/* Sets up an empty buffer that may hold at most cap bytes. Allocates nothing yet. */
void buf_init(struct buf *b, size_t cap);
/* Frees the storage; the buffer is empty and usable again afterwards. */
void buf_cleanup(struct buf *b);
/* Forgets the contents (and a truncation) but keeps the storage. */
void buf_reset(struct buf *b);
/* Makes room for n more bytes in one allocation, so appends that follow do not grow the storage
 * step by step. Returns 0, or -ENOBUFS (nothing changed) when the cap would be passed;
 * a refused reservation is not a truncation. */
int buf_reserve(struct buf *b, size_t n) MUST_USE;
/* Appends n bytes. Returns 0, or -ENOBUFS (nothing appended, `truncated` set) when the cap
 * would be passed. The result may be ignored where `truncated` is checked once afterwards. */
int buf_append(struct buf *b, const void *p, size_t n);
/* Appends a NUL-terminated string. Same errors as buf_append. */
int buf_puts(struct buf *b, const char *s);
/* Appends printf output. Same errors as buf_append, and -EINVAL for a bad format. */
int buf_printf(struct buf *b, const char *fmt, ...) PRINTF_LIKE(2, 3);
int buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Removes the first n bytes (n <= len), keeping the rest. */
void buf_consume(struct buf *b, size_t n);
/* Returns the contents as a NUL-terminated string ("" when empty); the buffer keeps ownership. */
const char *buf_cstr(const struct buf *b);
/* Hands the storage to the caller (who frees it) and leaves the buffer empty. */
char *buf_steal(struct buf *b);

#endif
