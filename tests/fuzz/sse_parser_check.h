/*
 * sse_parser_check.h: what the SSE parser's unit test and its fuzz target share (header-only).
 * sse_check_transcript() runs the parser over an input cut into reads in a given way and writes
 * everything it reported (events, comments, the result) as text, so that two ways of cutting the
 * same input can be compared: they must give the same transcript.
 */
#ifndef ARUN_TESTS_SSE_PARSER_CHECK_H
#define ARUN_TESTS_SSE_PARSER_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "http/sse_parser.h"

#define SSE_CHECK_MAX_LINE 256   /* small caps, so that inputs reach them */
#define SSE_CHECK_MAX_EVENT 1024 /* ... */
#define SSE_CHECK_TRANSCRIPT (1u << 24)

static void sse_check_put(struct buf *t, const char *what, const char *s, size_t n)
{
    char len[32];
    snprintf(len, sizeof(len), "%s%zu:", what, n);
    if (buf_puts(t, len) != 0 || buf_append(t, s ? s : "", s ? n : 0) != 0 || buf_puts(t, "\n"))
        abort(); /* the transcript's cap is far above what the inputs can produce */
}

static int sse_check_event_cb(const struct sse_event *ev, void *arg)
{
    struct buf *t = arg;
    char retry[32];
    snprintf(retry, sizeof(retry), "%" PRId64, ev->retry_ms);
    sse_check_put(t, "E", "", 0);
    sse_check_put(t, " type", ev->type, ev->type ? strlen(ev->type) : 0);
    sse_check_put(t, " id", ev->id ? ev->id : "(none)", ev->id ? strlen(ev->id) : 6);
    sse_check_put(t, " retry", retry, strlen(retry));
    sse_check_put(t, " data", ev->data, ev->data_len);
    if (strlen(ev->data) > ev->data_len)
        abort(); /* data must be NUL-terminated at data_len */
    return 0;
}

static int sse_check_comment_cb(const char *text, size_t len, void *arg)
{
    sse_check_put(arg, "C", text, len);
    return 0;
}

/* Feeds in[0..n) in reads whose sizes come from cuts (a read ends after each offset listed,
 * ascending; the rest is the last read), or one byte at a time when byte_by_byte. Writes the
 * transcript into t (initialised by the caller, cap SSE_CHECK_TRANSCRIPT). */
static void sse_check_transcript(const char *in, size_t n, const size_t *cuts, size_t ncuts,
                                 bool byte_by_byte, struct buf *t)
{
    struct sse_parser p;
    sse_parser_init(&p, SSE_CHECK_MAX_LINE, SSE_CHECK_MAX_EVENT, sse_check_event_cb,
                    sse_check_comment_cb, t);
    int rc = 0;
    size_t at = 0, k = 0;
    while (at < n && rc == 0) {
        size_t next = byte_by_byte ? at + 1 : k < ncuts ? cuts[k++] : n;
        if (next > n)
            next = n;
        if (next <= at)
            continue;
        rc = sse_parser_feed(&p, in + at, next - at);
        at = next;
    }
    char end[64];
    snprintf(end, sizeof(end), "R%d last-id:", rc);
    sse_check_put(t, end, sse_parser_last_id(&p), strlen(sse_parser_last_id(&p)));
    sse_parser_cleanup(&p);
}

/* Feeds in[0..n) whole (transcript left in whole), byte by byte, and in the reads that cuts
 * make, into freshly reset buffers. Returns whether all gave the same transcript; other then
 * holds the first one that differed. */
static bool sse_check_same(const char *in, size_t n, const size_t *cuts, size_t ncuts,
                           struct buf *whole, struct buf *other)
{
    buf_reset(whole);
    buf_reset(other);
    sse_check_transcript(in, n, NULL, 0, false, whole);
    sse_check_transcript(in, n, NULL, 0, true, other);
    if (strcmp(buf_cstr(whole), buf_cstr(other)) != 0)
        return false;
    buf_reset(other);
    sse_check_transcript(in, n, cuts, ncuts, false, other);
    return strcmp(buf_cstr(whole), buf_cstr(other)) == 0;
}

#endif
