/*
 * sse.h: a Server-Sent Events response with backpressure. The producer writes events; the
 * stream holds at most SSE_MAX_PENDING bytes that the client has not taken yet. When that is
 * full, sse_write() returns -ENOBUFS and the producer either waits for the drain callback
 * (a run replaying from the store) or drops the client (a console that cannot keep up). Memory
 * per stream is bounded either way.
 *
 * Lifetime: the stream lives in the request's pool. After close_cb has run (the client left) or
 * after sse_end(), the producer must not touch it again.
 */
#ifndef ARUN_HTTP_SSE_H
#define ARUN_HTTP_SSE_H

#include <stdbool.h>

#include "http/server.h"

#define SSE_MAX_PENDING                                                                            \
    (1024 * 1024)              /* per client: ~ thousands of deltas, a few ms of a fast link */
#define SSE_HEARTBEAT_MS 15000 /* proxies drop idle streams after 30-60 s */

struct sse_stream;

/* The client went away (or the server is draining and ended the stream for us). */
typedef void (*sse_close_cb)(struct sse_stream *s, void *arg);
/* Pending bytes fell below half the cap: the producer may write again. */
typedef void (*sse_drain_cb)(struct sse_stream *s, void *arg);

/* Starts a 200 text/event-stream response. The callbacks may be NULL. */
struct sse_stream *sse_start(struct http_request *r, sse_close_cb on_close, sse_drain_cb on_drain,
                             void *arg);
/* Queues one event: `event:` (when type is not NULL), `id:` (when id is not NULL), and data,
 * split into `data:` lines at newlines. Returns 0, -ENOBUFS (nothing queued: the client is too
 * far behind) or -EPIPE (the stream is over). */
int sse_write(struct sse_stream *s, const char *type, const char *id, const char *data,
              size_t len) MUST_USE;
/* Queues a comment line (": text"), ignored by clients; used for heartbeats and for telling a
 * waiting client why it waits. Same results as sse_write. */
int sse_comment(struct sse_stream *s, const char *text) MUST_USE;
/* Queues raw bytes as they are (an upstream's SSE relayed verbatim). Same results. */
int sse_write_raw(struct sse_stream *s, const char *data, size_t len) MUST_USE;
/* Ends the stream after what is queued has been sent. close_cb is not called afterwards. */
void sse_end(struct sse_stream *s);
/* Ends the stream as failed after what is queued has been sent (an error event, say): the
 * transfer is cut instead of closed cleanly (h2o's H2O_SEND_STATE_ERROR: HTTP/1.1 gets no
 * terminating chunk and the connection is closed, HTTP/2 a RST_STREAM), so that every client,
 * curl and fetch included, sees a failed transfer. close_cb is not called afterwards. */
void sse_abort(struct sse_stream *s);
/* Bytes queued and not yet handed to the socket. */
size_t sse_pending(const struct sse_stream *s);
/* The request the stream answers. */
struct http_request *sse_request(struct sse_stream *s);

#endif
