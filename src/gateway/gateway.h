/*
 * gateway.h: the OpenAI-compatible gateway (contract section 4): GET /v1/models and
 * POST /v1/chat/completions, /v1/completions, /v1/embeddings, routed by `model` to an engine,
 * queued per engine, relayed to it with libcurl on the loop (streaming chunk by chunk, with
 * backpressure both ways), falling back along a declared route when an engine cannot answer.
 *
 * A request for an engine that is stopped starts it and waits; a request that arrives while
 * its engine loads or is swapped in waits in that engine's queue and never fails for that
 * reason alone. Beyond max_concurrency in flight and queue_limit waiting, 429 with Retry-After.
 */
#ifndef ARUN_GATEWAY_GATEWAY_H
#define ARUN_GATEWAY_GATEWAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "core/events.h"
#include "core/metrics.h"
#include "engines/supervisor.h"
#include "gateway/usage.h"
#include "http/httpc.h"
#include "http/server.h"
#include "http/sse_parser.h"

#define GATEWAY_FIRST_BYTE_TIMEOUT_MS (10u * 60 * 1000) /* a long prompt on a slow GPU */
#define GATEWAY_IDLE_TIMEOUT_MS (5u * 60 * 1000)        /* between streamed chunks */
#define GATEWAY_RETRY_AFTER_S 1                         /* for 429 when the queue is full */
#define GATEWAY_WAIT_NOTE_MS 2000 /* a waiting stream hears where it stands this often */
#define GATEWAY_PEEK_MS 250       /* a waiting client that left is noticed within this */
#define GATEWAY_MODEL_MAX 256     /* bytes of a model name, NUL included */
#define GATEWAY_CALL_PAUSE 1      /* on_event/on_comment: stop reading the engine for now */

struct gateway;
struct limits;
struct cluster;

struct gateway *gateway_new(struct http_server *srv, const struct config *cfg,
                            struct supervisor *sup, struct httpc *httpc, struct events *events,
                            struct metrics *metrics);
/* Ends every call still queued or in flight (on_end with 503 shutting_down; the clients must not
 * call the gateway from it) and frees. NULL is a no-op. */
void gateway_free(struct gateway *gw);
/* The limits per tenant that submissions naming a tenant are held to (tenancy/limits.h: the
 * daily output-token budget is checked before a call is queued, and every answer's completion
 * tokens are counted); NULL (the default, auth.mode none): none. l outlives the gateway. */
void gateway_set_limits(struct gateway *gw, struct limits *l);
/* The cluster this node is in (cluster/cluster.h): a model no engine or route of this node
 * serves is sent to another node that serves it (cluster_peers_for), as that node's gateway
 * request; NULL (the default): none. cl outlives the gateway. */
void gateway_set_cluster(struct gateway *gw, struct cluster *cl);
/* Appends the model names served here, comma-separated, to out (for a 404's sentence). */
void gateway_models_served(struct gateway *gw, struct buf *out);

/* ---- calls: a request submitted by a client that is not HTTP (the runs; api.c is one) ----
 *
 * A call is one request to a model as the gateway sees it: its route, its place in an engine's
 * queue or its slot, its upstream transfer, fallbacks, usage and metrics. Its client is reached
 * only through the callbacks below, all on the loop thread:
 *
 *   on_wait*  (on_head (on_event | on_comment)* | on_head on_body)  on_end
 *
 * on_end runs exactly once unless the client cancels; nothing runs after on_end or after
 * gateway_call_cancel(). The one exception to the order: a stream that breaks off before its
 * first event falls back like an engine that could not answer, so on_head runs again, for the
 * next engine of the route, with no event in between.
 *
 * Ownership: the gateway owns the call; the pointer is valid from gateway_submit() until on_end
 * returns or gateway_call_cancel() is called. The callbacks' table and arg belong to the client
 * and must outlive the call. Pointers handed to a callback are valid during that call only.
 *
 * Re-entrancy: on_wait and on_end may run inside gateway_submit() (the call waits; the queue is
 * full, no engine can start), after *out is set; on_head, on_event, on_comment and on_body never
 * do. gateway_call_cancel() and gateway_call_resume() may be called from inside any callback but
 * on_end (where cancel is a no-op); a cancel there takes effect when the callback returns, and
 * no other callback of that call runs. */

struct gateway_call;

/* What a client submits. Everything is copied except path and the callbacks' table. */
struct gateway_submission {
    const char *path;        /* the endpoint asked of the engine: "/v1/chat/completions",
                                "/v1/completions" or "/v1/embeddings"; a literal (not copied) */
    const char *model;       /* routed on: a route's name or a model an engine lists */
    const char *body;        /* the JSON body sent to the engine as it is */
    size_t body_len;         /* bytes of body */
    bool stream;             /* the body asks for an event stream: events go to on_event */
    bool hide_usage;         /* the client added stream_options.include_usage for accounting:
                                the usage-only chunk is read, not delivered */
    const char *request_id;  /* X-Request-Id to the engine and in log lines (at most
                                HTTP_REQUEST_ID_MAX bytes) */
    const char *traceparent; /* W3C trace context passed on to the engine, or NULL; a value of
                                200 bytes or more is not passed on */
    bool durable;            /* a background run, whose durable queue is the store: it waits in
                                the engine's queue beyond queue_limit (and is not counted
                                against it), never getting 429 for a full queue */
    const char *tenant;      /* whose limits apply (gateway_set_limits), or NULL: none */
    bool local_only;         /* came from another node (x-arun-hop): served by this node's
                                engines or not at all, never sent on to a third */
};

/* What a call knows about itself, for the client's headers and log line. Read it through
 * gateway_call_info() while the call is valid; the strings live as long as the gateway. */
struct gateway_call_info {
    const char *model;      /* as submitted */
    const char *engine;     /* the engine of the route being tried, or that answered */
    bool remote;            /* that engine is remote: the answer left this machine (set when
                               the request is sent to it) */
    bool stream;            /* as submitted */
    uint64_t submit_ns;     /* clock_mono_ns() at gateway_submit() */
    uint64_t dispatch_ns;   /* when the request was last sent to an engine; 0 before */
    uint64_t first_byte_ns; /* when the first byte of a streamed answer came; 0 before */
    struct gw_usage usage;  /* the engine's token counts; -1 unknown */
    uint32_t tried;         /* engines of the route tried so far (1 + fallbacks taken) */
    uint32_t retry_after_s; /* a 429 for a tenant's limit: its Retry-After; 0 otherwise */
    const char *node;       /* the other node the call was sent to (x-arun-node), or NULL:
                               this one's engines answered */
};

struct gateway_call_cbs {
    /* Still waiting in an engine's queue (position counts from 1). It runs when the call starts
     * to wait and then every GATEWAY_PEEK_MS while it waits; note is a sentence saying where it
     * stands ("queued 2nd for qwen, engine loading, about 3 s left") when the call starts to
     * wait and every GATEWAY_WAIT_NOTE_MS, NULL otherwise. A client that learns here that it is
     * gone cancels. May be NULL. */
    void (*on_wait)(struct gateway_call *c, uint32_t position, const char *note, void *arg);
    /* The engine answered with status; gateway_call_info() names it. For a stream (200) it
     * runs when the answer's head arrives; for any other answer just before on_body. */
    void (*on_head)(struct gateway_call *c, int status, void *arg);
    /* One event of a streamed answer, as the engine framed it (any line ends). Returns 0 to go
     * on, GATEWAY_CALL_PAUSE to stop reading the engine until gateway_call_resume() (the events
     * the bytes already read complete still arrive), or -errno to abort the stream, which then
     * ends as cut (502 upstream_stream_cut). The usage-only chunk is not passed when the
     * submission hid it. Required when the submission streams. */
    int (*on_event)(struct gateway_call *c, const struct sse_event *ev, void *arg);
    /* A comment in the engine's stream (a keep-alive ping), NUL-terminated; comments of 256
     * bytes or more are dropped. Same results as on_event. May be NULL. */
    int (*on_comment)(struct gateway_call *c, const char *text, void *arg);
    /* A whole answer that is not an event stream: a non-streaming answer, or an engine's error
     * answer (4xx) to a stream; body is NUL-terminated; content_type is the engine's, or NULL. */
    void (*on_body)(struct gateway_call *c, const char *content_type, const char *body, size_t len,
                    void *arg);
    /* The end, exactly once. code is NULL when the engine's answer was passed on whole (status
     * is then the engine's: 200 for a stream); otherwise the call failed: status is the HTTP
     * status it means (429, 502, 503, 504), code an OpenAI error code (queue_full;
     * rate_limit_exceeded: the tenant's output_tokens_per_day is used up, see
     * info.retry_after_s; no_engine_available, engine_unavailable, upstream_error,
     * upstream_stream_cut, shutting_down) and message a sentence. A stream may fail after events
     * reached the client: what it got is then incomplete. */
    void (*on_end)(struct gateway_call *c, int status, const char *code, const char *message,
                   void *arg);
};

/* Submits a request along the route of s->model: it is sent to an engine at once, or queued,
 * or the engine is started first. Returns 0 with *out set, or -errno without calling back:
 * -ENOENT (no route or engine serves that model: gateway_models_served() says which do),
 * -EINVAL (no model or one of GATEWAY_MODEL_MAX bytes or more, no request id or a longer one,
 * no path, or a stream without on_event), -ESHUTDOWN (gateway_free runs). */
int gateway_submit(struct gateway *gw, const struct gateway_submission *s,
                   const struct gateway_call_cbs *cbs, void *arg,
                   struct gateway_call **out) MUST_USE;
/* Ends c at once with no callback, now or later: a queued call leaves its queue; one in flight
 * has its upstream transfer cancelled and its engine slot given back (the next queued call may
 * be sent at once). c is invalid afterwards. A no-op inside on_end. */
void gateway_call_cancel(struct gateway_call *c);
/* Reads the engine again after on_event or on_comment returned GATEWAY_CALL_PAUSE; a no-op
 * when the call is not paused. Events never arrive from inside this call. */
void gateway_call_resume(struct gateway_call *c);
/* What c knows about itself; valid while c is. */
const struct gateway_call_info *gateway_call_info(const struct gateway_call *c);

#endif
