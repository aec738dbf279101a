/*
 * sse_parser.c: the SSE reader (sse_parser.h). It owns the parser's buffers and nothing else:
 * it never reads a socket, and what an event means is the caller's business. It promises the
 * same events and comments however the stream is cut into reads (tests/unit/test_sse_parser.c
 * feeds every input whole and byte by byte; fuzz/sse_parser_fuzz.c compares random cuts), and
 * that no input makes it hold more than its caps.
 *
 * DESIGN
 * Two layers. sse_lines_next() finds line ends (CR, LF, CRLF) and remembers only whether the
 * last byte was a CR, so a CRLF cut between two reads is one line end; engine logs use it alone.
 * sse_parser_feed() takes the pieces: a line that lies whole in one read is interpreted where it
 * is, only a line cut between reads is assembled in `line`. Each line is then one step of the
 * WHATWG algorithm (line()), and an empty line dispatches (dispatch()).
 */
#include "http/sse_parser.h"

#include <errno.h>
#include <string.h>

#define BOM_LEN 3
#define BOM_DONE 0xFF /* the stream's first bytes were looked at */

static const char bom_bytes[BOM_LEN] = {'\xEF', '\xBB', '\xBF'};

size_t sse_lines_next(struct sse_lines *l, const char *p, size_t n, struct sse_piece *out)
{
    size_t skip = 0;
    if (l->after_cr) {
        l->after_cr = false;
        if (p[0] == '\n')
            skip = 1; /* the LF of a CRLF whose CR ended the last read */
    }
    const char *s = p + skip;
    size_t rest = n - skip;
    const char *lf = rest ? memchr(s, '\n', rest) : NULL;
    size_t lim = lf ? (size_t)(lf - s) : rest;
    const char *cr = lim ? memchr(s, '\r', lim) : NULL;
    const char *e = cr ? cr : lf;
    *out = (struct sse_piece){.p = s, .len = e ? (size_t)(e - s) : rest, .end = e ? *e : 0};
    if (e == NULL)
        return n;
    l->after_cr = *e == '\r';
    return skip + (size_t)(e - s) + 1;
}

void sse_parser_init(struct sse_parser *p, size_t max_line, size_t max_event, sse_event_cb on_event,
                     sse_comment_cb on_comment, void *arg)
{
    ASSERT(on_event != NULL);
    *p = (struct sse_parser){
        .retry_ms = -1, .on_event = on_event, .on_comment = on_comment, .arg = arg};
    buf_init(&p->line, max_line);
    buf_init(&p->data, max_event);
    buf_init(&p->type, SSE_PARSER_MAX_FIELD);
    buf_init(&p->id, SSE_PARSER_MAX_FIELD);
}

void sse_parser_cleanup(struct sse_parser *p)
{
    buf_cleanup(&p->line);
    buf_cleanup(&p->data);
    buf_cleanup(&p->type);
    buf_cleanup(&p->id);
}

const char *sse_parser_last_id(const struct sse_parser *p)
{
    return buf_cstr(&p->id);
}

static int dispatch(struct sse_parser *p)
{
    int rc = 0;
    if (p->have_data) {
        struct sse_event ev = {.type = p->type.len ? buf_cstr(&p->type) : NULL,
                               .data = buf_cstr(&p->data),
                               .data_len = p->data.len,
                               .id = p->id_in_event ? buf_cstr(&p->id) : NULL,
                               .retry_ms = p->retry_ms};
        rc = p->on_event(&ev, p->arg);
    }
    buf_reset(&p->data);
    buf_reset(&p->type);
    p->have_data = false;
    p->id_in_event = false;
    p->retry_ms = -1;
    return rc;
}

/* Sets b to v[0..n). */
static int set(struct buf *b, const char *v, size_t n)
{
    buf_reset(b);
    return buf_append(b, v, n);
}

static void take_retry(struct sse_parser *p, const char *v, size_t n)
{
    int64_t ms = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return; /* WHATWG: only ASCII digits, else the field is ignored */
        ms = ms < INT64_MAX / 10 - 9 ? ms * 10 + (v[i] - '0') : ms;
    }
    if (n > 0)
        p->retry_ms = ms;
}

/* One field line: name, then the value after ':' less one optional space. */
static int field(struct sse_parser *p, const char *l, size_t n)
{
    const char *colon = memchr(l, ':', n);
    size_t name_len = colon ? (size_t)(colon - l) : n;
    const char *v = colon ? colon + 1 : l + n;
    size_t vlen = (size_t)(l + n - v);
    if (vlen > 0 && v[0] == ' ') {
        v++;
        vlen--;
    }
    if (name_len == 0)
        return p->on_comment ? p->on_comment(v, vlen, p->arg) : 0;
    if (name_len == 4 && memcmp(l, "data", 4) == 0) {
        int rc = p->have_data ? buf_append(&p->data, "\n", 1) : 0;
        p->have_data = true;
        return rc != 0 ? rc : buf_append(&p->data, v, vlen);
    }
    if (name_len == 5 && memcmp(l, "event", 5) == 0)
        return set(&p->type, v, vlen);
    if (name_len == 2 && memcmp(l, "id", 2) == 0) {
        if (memchr(v, '\0', vlen) != NULL)
            return 0; /* WHATWG: an id holding NUL is ignored */
        p->id_in_event = true;
        return set(&p->id, v, vlen);
    }
    if (name_len == 5 && memcmp(l, "retry", 5) == 0)
        take_retry(p, v, vlen);
    return 0; /* other fields mean nothing */
}

static int line(struct sse_parser *p, const char *l, size_t n)
{
    return n == 0 ? dispatch(p) : field(p, l, n);
}

static int feed_lines(struct sse_parser *p, const char *s, size_t n)
{
    int rc = 0;
    while (n > 0 && rc == 0) {
        struct sse_piece pc;
        size_t used = sse_lines_next(&p->lines, s, n, &pc);
        s += used;
        n -= used;
        if (pc.len > p->line.cap - p->line.len) {
            rc = -ENOBUFS; /* also for a line that came whole: the cap cannot depend on reads */
        } else if (pc.end == 0) {
            rc = buf_append(&p->line, pc.p, pc.len);
        } else if (p->line.len == 0) {
            rc = line(p, pc.p, pc.len); /* the whole line is in this read: no copy */
        } else {
            rc = buf_append(&p->line, pc.p, pc.len);
            if (rc == 0)
                rc = line(p, p->line.data, p->line.len);
            buf_reset(&p->line);
        }
    }
    return rc;
}

/* Skips a UTF-8 BOM at the stream's start; bytes that only began like one are read as text. */
static int skip_bom(struct sse_parser *p, const char **s, size_t *n)
{
    while (p->bom<BOM_LEN && * n> 0 && **s == bom_bytes[p->bom]) {
        p->bom++;
        (*s)++;
        (*n)--;
    }
    if (p->bom == BOM_LEN) {
        p->bom = BOM_DONE;
    } else if (*n > 0) {
        size_t matched = p->bom;
        p->bom = BOM_DONE;
        return feed_lines(p, bom_bytes, matched);
    }
    return 0;
}

int sse_parser_feed(struct sse_parser *p, const char *s, size_t n)
{
    if (p->error != 0)
        return p->error;
    int rc = p->bom != BOM_DONE ? skip_bom(p, &s, &n) : 0;
    if (rc == 0)
        rc = feed_lines(p, s, n);
    p->error = rc;
    return rc;
}
