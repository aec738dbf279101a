/*
 * gateway_int.h: what the gateway's files share (private to src/gateway): the gateway, its
 * per-engine queues and the request being routed, queued and relayed. gateway.h is the public
 * face; see docs/internals/gateway.md for how the files divide the work.
 */
#ifndef ARUN_GATEWAY_GATEWAY_INT_H
#define ARUN_GATEWAY_GATEWAY_INT_H

#include <h2o/linklist.h>
#include <stdbool.h>
#include <stdint.h>

#include "gateway/gateway.h"
#include "gateway/usage.h"
#include "http/sse.h"
#include "http/sse_parser.h"

#define GW_ROUTE_MAX 32 /* engines in one route; config allows fewer */

struct gw_queue {
    struct gateway *gw;
    struct engine *e;
    uint32_t in_flight;               /* requests in GW_UPSTREAM for this engine */
    uint32_t waiting;                 /* requests in GW_QUEUED, the length of fifo */
    h2o_linklist_t fifo;              /* struct gw_req by qlink, oldest first */
    struct supervisor_waiter *waiter; /* while requests wait for the engine to be ready */
};

struct gateway {
    struct http_server *srv;
    const struct config *cfg;
    struct supervisor *sup;
    struct httpc *httpc;
    struct events *events;
    struct gw_queue *queues; /* one per engine, in supervisor order */
    size_t nqueues;
    h2o_linklist_t active; /* struct gw_req by alink: every live request, for shutdown */
    uv_timer_t wait_timer; /* tells waiting streams where they stand */
    uint64_t ticks;        /* wait_timer ticks, for the slower notes */
    bool closing;          /* gateway_free runs: no supervisor calls, no dispatch */
    struct metrics_family *m_fallbacks, *m_upstream_errors, *m_queue_wait, *m_ttft, *m_egress;
    struct metrics_family *m_tokens;
};

/* Where a request stands with its engine. Only gw_set_state() writes gw_req.state. */
enum gw_state {
    GW_ROUTING,  /* choosing an engine of the route, or starting it (no queue, no slot) */
    GW_QUEUED,   /* in its engine's fifo, counted in waiting */
    GW_UPSTREAM, /* holds a slot of its engine (in_flight) and has an upstream transfer */
    GW_DONE,     /* answered or abandoned: holds nothing; only freeing is left */
};

struct gw_req {
    struct gateway *gw;
    struct http_request *r;
    enum gw_state state; /* see enum gw_state; only gw_set_state() writes it */
    char *body;
    size_t body_len;
    const char *path; /* /v1/chat/completions … */
    char model[256];
    bool stream;
    const char *engines[GW_ROUTE_MAX]; /* the route: engine names, tried in order */
    size_t nengines, idx;
    struct gw_queue *q; /* the queue of engines[idx], once tried */
    struct httpc_req *up;
    struct sse_stream *sse;
    size_t sse_idx; /* the engine x-arun-engine named when the stream opened */
    bool paused;
    int up_status;
    struct buf err_body; /* a streaming upstream's error answer, to pass on or fall back */
    uint64_t start_ns, dispatch_ns, ttft_ns;
    char r_id[HTTP_REQUEST_ID_MAX + 1]; /* the request id, kept past the request's end */
    bool first_byte;
    bool remote;   /* answered by a remote engine: the response says so */
    char *up_body; /* the body sent upstream when it differs from the client's */
    size_t up_body_len;
    bool strip_usage;         /* we asked for include_usage; the client did not: drop that chunk */
    struct sse_parser events; /* reads the engine's SSE stream (any line ends) */
    struct gw_usage usage;    /* from the engine's answer */
    int status_sent;
    const char *error_code; /* why the request failed (an OpenAI error code), NULL if it did not */
    h2o_linklist_t qlink;   /* in q->fifo while GW_QUEUED */
    h2o_linklist_t alink;   /* in gw->active from submission to gw_req_free() */
};

/* ---- queue.c: states, queues, fallbacks, waiting ---- */

/* The one state setter: leaves the old state (out of the fifo; the slot given back, after which
 * the queue is pumped) and enters the new one (into the fifo; a slot taken). See
 * docs/internals/gateway.md for the transitions. */
void gw_set_state(struct gw_req *g, enum gw_state st);
/* Tries engines[idx]: dispatches, queues (opening a waiting stream), starts the engine, or falls
 * back / fails with why. */
void gw_try_engine(struct gw_req *g);
/* Moves to the next engine of the route; answers with why (status) when none is left. */
void gw_fall_back(struct gw_req *g, int status, const char *why);
/* Says in an SSE comment where a waiting stream stands (position in its engine's queue). */
void gw_tell_waiting(struct gw_req *g, uint32_t position);
/* Every GATEWAY_PEEK_MS: drops queued requests whose client left; notes to waiting streams. */
void gw_wait_timer_cb(uv_timer_t *t);

/* ---- route.c: model names to engines ---- */

/* The engines that serve model, in the order to try them, into out[0..cap). Returns how many;
 * 0 when no route or local engine serves it (a remote engine is reached only via a route). */
size_t gw_route_resolve(struct gateway *gw, const char *model, const char **out, size_t cap);
/* Appends the model names served here, comma-separated, to out (for a 404). */
void gw_route_known_models(struct gateway *gw, struct buf *out);

/* ---- upstream.c: the request to the engine and the relay of its answer ---- */

/* Sets up g's upstream side (error body, SSE reader); allocates nothing yet. */
void gw_upstream_init(struct gw_req *g);
/* Frees what gw_upstream_init set up. */
void gw_upstream_cleanup(struct gw_req *g);
/* Takes a slot of g->q (GW_UPSTREAM) and starts the upstream transfer; falls back when it
 * cannot start. */
void gw_dispatch(struct gw_req *g);

/* ---- api.c: the HTTP side ---- */

/* Registers the gateway's routes and shutdown hook with gw->srv. */
void gw_api_register(struct gateway *gw);
/* Answers with an error (in the stream, then a cut transfer, when the stream is open) and ends
 * the request. */
void gw_fail(struct gw_req *g, int status, const char *code, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
/* Writes the access line and frees g (unlinked from gw->active). g must be GW_DONE or never
 * queued nor dispatched. */
void gw_req_free(struct gw_req *g);
/* Opens g's SSE stream (200 and headers now) naming the engine being tried. */
void gw_start_stream(struct gw_req *g);
/* x-arun-engine, and x-arun-egress when the answer left the machine. */
void gw_add_answer_headers(struct gw_req *g);

#endif
