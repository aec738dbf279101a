/*
 * httpc.h: an asynchronous HTTP client on the arun loop: libcurl's multi interface driven by
 * libuv (one uv_poll per socket, one uv_timer). Used by engine health probes (many small GETs),
 * remote-engine probes and the OpenAI gateway's upstream requests, which stream SSE from an
 * engine to a client with backpressure both ways.
 *
 * Two transports: http:// URLs to this machine (the engines arun runs) go over a native
 * HTTP/1.1 client on libuv; everything else (https, names, proxies) over libcurl. The caller
 * cannot tell them apart: same callbacks, errors and sentences.
 *
 * Two modes per request: buffered (the whole body arrives in done's result, capped) and
 * streaming (on_data is set: chunks are handed over as they arrive, nothing is kept).
 * Connections to the same host are kept alive and reused across requests.
 *
 * Everything runs on the loop thread that owns the struct httpc; nothing here is thread-safe.
 * See docs/internals/httpc.md for who may call what from where.
 */
#ifndef ARUN_HTTP_HTTPC_H
#define ARUN_HTTP_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/common.h"

#define HTTPC_CONNECT_TIMEOUT_MS 10000             /* when opts.connect_timeout_ms is 0 */
#define HTTPC_MAX_BODY_BYTES (16u * 1024 * 1024)   /* when opts.max_body_bytes is 0 */
#define HTTPC_MAX_HEADER_BYTES (64u * 1024)        /* response headers kept per request */
#define HTTPC_MAX_REQUEST_HEADERS 256              /* opts.nheaders above this: -EINVAL */
#define HTTPC_MAX_REQUEST_BODY (64u * 1024 * 1024) /* opts.body_len above this: -E2BIG */
#define HTTPC_MAX_CONNECTS 256                     /* idle connections libcurl keeps */
#define HTTPC_MAX_IDLE 1024 /* idle native connections kept, at most a quarter of RLIMIT_NOFILE */
#define HTTPC_MAX_HOST 253  /* bytes of httpc_endpoint.host */
#define HTTPC_WARM_MIN 2    /* warm connections an endpoint keeps with no recent requests */
#define HTTPC_WARM_MAX 256  /* warm connections an endpoint keeps at most */

struct httpc;     /* one per loop: a CURLM driven by uv_poll per socket + one uv_timer */
struct httpc_req; /* one transfer */

/* What on_data tells the client to do next. */
enum httpc_data_result {
    HTTPC_CONTINUE, /* the chunk was taken; keep going */
    HTTPC_PAUSE,    /* the chunk was taken; deliver nothing more until httpc_resume() */
    HTTPC_ABORT,    /* end the transfer: done runs with -ECONNABORTED */
};

/* Where a request goes, in parts: plain HTTP to host:port, path. The engines arun runs are
 * reached this way, so no URL is put together per request only to be taken apart again. */
struct httpc_endpoint {
    const char *host; /* an address ("127.0.0.1", "::1", no brackets) or a name ("localhost") */
    uint16_t port;    /* 1-65535 */
    const char *path; /* origin form with any query: "/v1/chat/completions"; httpc_prewarm
                         ignores it */
};

struct httpc_opts {
    const char *method;             /* NULL = GET (POST when body is set); "HEAD" sends none */
    const char *url;                /* http:// or https://; NULL: the request goes to `to` */
    struct httpc_endpoint to;       /* when url is NULL: http://to.host:to.port to.path */
    const char *const *headers;     /* "Name: value" lines, nheaders of them (copied) */
    size_t nheaders;                /* at most HTTPC_MAX_REQUEST_HEADERS */
    const char *body;               /* request body (copied), or NULL */
    size_t body_len;                /* bytes of body */
    uint32_t connect_timeout_ms;    /* 0 = HTTPC_CONNECT_TIMEOUT_MS */
    uint32_t timeout_ms;            /* whole transfer; 0 = none */
    uint32_t first_byte_timeout_ms; /* from the start until the response headers; 0 = none */
    uint32_t idle_timeout_ms;       /* max gap between received chunks (not while paused); 0 =
                                       none */
    size_t max_body_bytes;          /* buffered mode cap; 0 = HTTPC_MAX_BODY_BYTES; past it:
                                       -E2BIG */
    /* Streaming mode when on_data is set: body chunks are handed over as they arrive and not
     * buffered. on_headers runs once when the status line and headers of the final (non-1xx)
     * response are complete; it may be set in either mode. Both run from inside libcurl: they
     * may call httpc_cancel(), httpc_resume() and httpc_request() (all deferred internally) but
     * must not free anything the transfer uses. */
    int (*on_headers)(struct httpc_req *r, int status, void *arg); /* 0, or HTTPC_ABORT */
    enum httpc_data_result (*on_data)(struct httpc_req *r, const char *p, size_t n, void *arg);
    void *arg; /* passed to on_headers/on_data/done */
};

struct httpc_result {
    int error;              /* 0, or -errno: -ECONNREFUSED, -ETIMEDOUT, -ECONNRESET, -EPROTO,
                               -E2BIG, -ECONNABORTED (HTTPC_ABORT), -EHOSTUNREACH (DNS), -EIO;
                               -ECANCELED is never seen: cancel calls nothing */
    const char *error_text; /* NULL when error is 0, else a sentence naming host:port:
                               "connection refused: 127.0.0.1:41001" */
    int status;             /* HTTP status, 0 when none arrived */
    const char *body;       /* buffered mode only: the whole body, NUL-terminated ("" when
                               empty); NULL in streaming mode */
    size_t body_len;        /* bytes of body, not counting the NUL */
    double connect_s;       /* from the start until connected (0 for a reused connection) */
    double ttfb_s;          /* from the start until the first response byte */
    double total_s;         /* from httpc_request() until done */
    long new_connects;      /* connections opened for this request: 0 when one was reused */
};

/* The end of a transfer. res and everything it points to are valid until done returns. */
typedef void (*httpc_done_cb)(struct httpc_req *r, const struct httpc_result *res, void *arg);

/* Makes a client on loop (curl_global_init runs once per process, on first use). Aborts when
 * libcurl cannot make a multi handle (out of memory). */
struct httpc *httpc_new(uv_loop_t *loop);
/* Closes every transfer (no callbacks) and every connection; the struct is freed after its
 * handles close (run the loop). NULL is a no-op. May be called from a done callback. */
void httpc_free(struct httpc *h);
/* Starts a transfer. Returns 0 and *out (out may be NULL if not wanted), or -errno without
 * calling done: -EINVAL (bad URL, endpoint or method, too many headers), -E2BIG (body over
 * HTTPC_MAX_REQUEST_BODY), -ESHUTDOWN (httpc_free was called). done runs exactly once, on the
 * loop, never from inside httpc_request itself; the req is freed after done returns. */
int httpc_request(struct httpc *h, const struct httpc_opts *o, httpc_done_cb done,
                  struct httpc_req **out) MUST_USE;
/* Resumes a transfer paused by HTTPC_PAUSE. Never runs on_data from inside itself: the
 * unpause happens in a later loop callback. May be called from any loop callback, on_data
 * included; a no-op when the transfer is not paused by then. A paused transfer whose body
 * ended with the paused chunk may complete without one: done runs and frees r, so whoever
 * scheduled a resume must drop it in done. */
void httpc_resume(struct httpc_req *r);
/* Aborts a transfer at once (the connection is closed, not returned to the pool); done is NOT
 * called; the req is freed. Safe to call from on_headers/on_data (deferred internally) and
 * from anywhere on the loop; a no-op from inside the req's own done. */
void httpc_cancel(struct httpc_req *r);
/* A response header (case-insensitive name), valid until done returns; NULL when absent.
 * With repeated headers, the first. */
const char *httpc_header(struct httpc_req *r, const char *name);
/* The transfers started and not yet finished or cancelled. */
size_t httpc_active(const struct httpc *h);
/* The idle keep-alive connections of the native transport (warm ones included). */
size_t httpc_idle(const struct httpc *h);
/* Keeps connections to the engine at `to` (host and port; path ignored) open ahead of its
 * requests, so a request does not wait for a connect. max: the most requests the engine takes
 * at once (its max_concurrency). Until more than HTTPC_WARM_MIN requests were in flight to it
 * at once, the pool holds max connections (in use, idle or connecting): with no history, the
 * engine's declared concurrency is the best guess of the burst to come. After that it holds
 * as many as requests were in flight to it at once during the last minute, at least
 * HTTPC_WARM_MIN. Never more than max, HTTPC_WARM_MAX, or
 * (all endpoints together) the idle cap. Missing ones are opened in the background now and
 * every second as they are used up or closed by the engine. Calling it again changes max.
 * max 0 forgets the endpoint and closes its idle connections: call it when the engine stops
 * being ready (a stopped engine's port may be someone else's next). Returns 0; -EINVAL for a
 * bad endpoint; -EAFNOSUPPORT, keeping nothing, for one the native transport does not take
 * (not loopback, or httpc_set_native(false)); -ESHUTDOWN after httpc_free. */
int httpc_prewarm(struct httpc *h, const struct httpc_endpoint *to, unsigned max) MUST_USE;
/* Whether http:// URLs to a loopback address (127.x.x.x, [::1], localhost) use the native
 * HTTP/1.1 transport (on, the default: a fraction of a libcurl transfer's work per request) or
 * libcurl like every other URL. For tests and comparisons; requests already started keep
 * theirs. */
void httpc_set_native(struct httpc *h, bool on);

#endif
