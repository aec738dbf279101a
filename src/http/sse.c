/*
 * sse.c: the SSE response writer. See sse.h.
 *
 * DESIGN
 * h2o allows one h2o_send() in flight per request, and the bytes given to it must stay valid
 * until h2o calls the generator's proceed. So the stream keeps two buffers: `sending`, owned by
 * h2o until proceed, and `pending`, where new writes accumulate. On proceed, `sending` is
 * emptied and, if `pending` has bytes, the two swap and the next send starts. The cap applies to
 * pending bytes, which is what a slow reader makes grow.
 *
 * h2o calls the generator's stop when the client leaves before the final send; from then on the
 * request is being torn down, so we only tell the producer and never call h2o again. The
 * struct lives in the request's pool (freed with the request) and its buffers are freed by the
 * pool's dispose callback.
 */
#include "http/sse.h"

#include <errno.h>
#include <string.h>

#include "http/server_int.h"

struct sse_stream {
    h2o_generator_t gen; /* first: h2o hands it back to proceed/stop */
    struct http_request *r;
    struct buf sending;
    struct buf pending;
    bool in_flight; /* an h2o_send is outstanding */
    bool ending;    /* sse_end called: send FINAL when pending is flushed */
    bool failing;   /* sse_abort called: send ERROR instead of FINAL */
    bool done;      /* FINAL sent, or the client left */
    sse_close_cb on_close;
    sse_drain_cb on_drain;
    void *arg;
};

static void flush(struct sse_stream *s)
{
    if (s->in_flight || s->done)
        return;
    if (s->pending.len == 0 && !s->ending)
        return;
    struct buf tmp = s->sending;
    s->sending = s->pending;
    s->pending = tmp;
    buf_reset(&s->pending);
    h2o_iovec_t iov = h2o_iovec_init(s->sending.data, s->sending.len);
    h2o_send_state_t state = !s->ending   ? H2O_SEND_STATE_IN_PROGRESS
                             : s->failing ? H2O_SEND_STATE_ERROR
                                          : H2O_SEND_STATE_FINAL;
    s->in_flight = true;
    if (state != H2O_SEND_STATE_IN_PROGRESS)
        s->done = true;
    h2o_send(s->r->req, &iov, iov.len ? 1 : 0, state);
}

static void proceed_cb(h2o_generator_t *gen, h2o_req_t *req)
{
    struct sse_stream *s = (struct sse_stream *)gen;
    size_t before = s->pending.len;
    s->in_flight = false;
    buf_reset(&s->sending);
    if (s->done)
        return;
    flush(s);
    if (s->on_drain != NULL && !s->ending && before >= SSE_MAX_PENDING / 2 &&
        s->pending.len < SSE_MAX_PENDING / 2)
        s->on_drain(s, s->arg);
}

static void stop_cb(h2o_generator_t *gen, h2o_req_t *req)
{
    struct sse_stream *s = (struct sse_stream *)gen;
    bool notify = !s->done && !s->ending;
    s->done = true;
    if (notify && s->on_close != NULL)
        s->on_close(s, s->arg);
}

static void dispose(void *p)
{
    struct sse_stream *s = p;
    buf_cleanup(&s->sending);
    buf_cleanup(&s->pending);
}

struct sse_stream *sse_start(struct http_request *r, sse_close_cb on_close, sse_drain_cb on_drain,
                             void *arg)
{
    h2o_req_t *req = r->req;
    struct sse_stream *s = h2o_mem_alloc_shared(&req->pool, sizeof(*s), dispose);
    memset(s, 0, sizeof(*s));
    s->gen.proceed = proceed_cb;
    s->gen.stop = stop_cb;
    s->r = r;
    s->on_close = on_close;
    s->on_drain = on_drain;
    s->arg = arg;
    buf_init(&s->sending, SSE_MAX_PENDING);
    buf_init(&s->pending, SSE_MAX_PENDING);

    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-cache"));
    /* nginx in front of arun would otherwise buffer the stream. */
    h2o_add_header_by_str(&req->pool, &req->res.headers, H2O_STRLIT("x-accel-buffering"), 0, NULL,
                          H2O_STRLIT("no"));
    http_stamp_response(r);
    h2o_start_response(req, &s->gen);
    /* Send the headers now: a client waiting for its first event should see the 200 at once. */
    s->in_flight = true;
    h2o_send(req, NULL, 0, H2O_SEND_STATE_IN_PROGRESS);
    return s;
}

static int room(struct sse_stream *s, size_t n)
{
    if (s->done || s->ending)
        return -EPIPE;
    if (s->pending.len + n > SSE_MAX_PENDING)
        return -ENOBUFS;
    return 0;
}

int sse_write_raw(struct sse_stream *s, const char *data, size_t len)
{
    int rc = room(s, len);
    if (rc != 0)
        return rc;
    rc = buf_append(&s->pending, data, len);
    if (rc == 0)
        flush(s);
    return rc;
}

int sse_write(struct sse_stream *s, const char *type, const char *id, const char *data, size_t len)
{
    /* Worst case size: the fields plus a "data: " prefix per line. */
    size_t lines = 1;
    for (size_t i = 0; i < len; i++)
        lines += data[i] == '\n';
    size_t need = len + lines * 7 + (type ? strlen(type) + 8 : 0) + (id ? strlen(id) + 5 : 0) + 1;
    int rc = room(s, need);
    if (rc != 0)
        return rc;
    struct buf *b = &s->pending;
    if (type != NULL)
        rc = buf_printf(b, "event: %s\n", type);
    if (rc == 0 && id != NULL)
        rc = buf_printf(b, "id: %s\n", id);
    const char *p = data, *end = data + len;
    while (rc == 0) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        rc = buf_puts(b, "data: ");
        if (rc == 0)
            rc = buf_append(b, p, (size_t)(le - p));
        if (rc == 0)
            rc = buf_puts(b, "\n");
        if (nl == NULL)
            break;
        p = nl + 1;
    }
    if (rc == 0)
        rc = buf_puts(b, "\n");
    if (rc == 0)
        flush(s);
    return rc;
}

int sse_comment(struct sse_stream *s, const char *text)
{
    int rc = room(s, strlen(text) + 4);
    if (rc != 0)
        return rc;
    rc = buf_printf(&s->pending, ": %s\n\n", text);
    if (rc == 0)
        flush(s);
    return rc;
}

void sse_end(struct sse_stream *s)
{
    if (s->done || s->ending)
        return;
    s->ending = true;
    flush(s);
}

void sse_abort(struct sse_stream *s)
{
    if (s->done || s->ending)
        return;
    s->failing = true;
    sse_end(s);
}

size_t sse_pending(const struct sse_stream *s)
{
    return s->pending.len;
}

struct http_request *sse_request(struct sse_stream *s)
{
    return s->r;
}
