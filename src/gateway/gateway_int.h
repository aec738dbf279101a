/*
 * gateway_int.h: what the gateway's files share (private to src/gateway): the gateway, its
 * per-engine queues and the call being routed, queued and relayed. gateway.h is the public
 * face (api.c and the runs are its clients); see docs/internals/gateway.md for how the files
 * divide the work.
 */
#ifndef ARUN_GATEWAY_GATEWAY_INT_H
#define ARUN_GATEWAY_GATEWAY_INT_H

#include <h2o/linklist.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster/cluster.h"
#include "gateway/gateway.h"
#include "gateway/stats.h"
#include "gateway/usage.h"
#include "http/sse_parser.h"
#include "store/store.h"
#include "tenancy/limits.h"

#define GW_ROUTE_MAX 32 /* engines in one route; config allows fewer */
#define GW_PEERS_MAX                                                                               \
    8 /* other nodes one call may try: enough to get past a node or two that                       \
         went down since the view was read, few enough to fail in seconds */
_Static_assert(GW_PEERS_MAX <= GW_ROUTE_MAX, "a call's peers are its route");
#define GW_LABEL_MAX (96 + 1 + CLUSTER_NODE_ID_MAX + 1) /* "ENGINE@NODE", NUL included */

struct gw_queue {
    struct gateway *gw;
    struct engine *e;
    uint32_t in_flight;                    /* requests in GW_UPSTREAM for this engine */
    uint32_t waiting;                      /* requests in GW_QUEUED, the length of fifo */
    uint32_t durable_waiting;              /* of those, durable ones (not held to queue_limit) */
    uint32_t telling;                      /* of those, ones with an on_wait: the wait timer's walk
                                              ends after the last of them */
    h2o_linklist_t fifo;                   /* struct gateway_call by qlink, oldest first */
    struct supervisor_waiter *waiter;      /* while requests wait for the engine to be ready */
    bool depth_changed;                    /* waiting or in_flight changed since the last
                                              queue.depth event (sent at the next wait tick) */
    uint32_t told_waiting, told_in_flight; /* what the last queue.depth event said */
};

struct gateway {
    struct http_server *srv;
    const struct config *cfg;
    struct supervisor *sup;
    struct httpc *httpc;
    struct events *events;
    struct limits *limits;   /* per tenant, or NULL (gateway_set_limits) */
    struct gw_queue *queues; /* one per engine, in supervisor order */
    size_t nqueues;
    h2o_linklist_t active; /* struct gateway_call by alink: every live call, for shutdown */
    uv_timer_t wait_timer; /* tells waiting calls where they stand */
    uint64_t ticks;        /* wait_timer ticks, for the slower notes */
    uint64_t fifo_changes; /* calls that joined or left a fifo, so far: a walk of a fifo that
                              calls back sees whether the callback changed it */
    bool closing;          /* gateway_free runs: no supervisor calls, no dispatch */
    struct metrics_family *m_fallbacks, *m_upstream_errors, *m_queue_wait, *m_ttft, *m_egress;
    struct metrics_family *m_tokens;
    struct stats *stats;     /* the last hour per engine, for GET /v1/stats */
    struct cluster *cluster; /* the other nodes (gateway_set_cluster), or NULL */
    uint32_t to_peers;       /* calls in GW_PEER */
};

/* The other nodes a call with no engine or route here is sent to (cluster_peers_for, best
 * first), and what the one that answered said of itself. Only such calls have one; its
 * engines[i] point at p[i].engine. */
struct gw_peers {
    size_t n;
    struct cluster_peer p[GW_PEERS_MAX];
    char tenant[STORE_TENANT_MAX + 1];  /* x-arun-tenant: the submission's, "" for none */
    char node[CLUSTER_NODE_ID_MAX + 1]; /* the answer's x-arun-node (info.node points here) */
    char engine[96];                    /* the answer's x-arun-engine (info.engine) */
};

/* Where a call stands with its engine. Only gw_set_state() writes gateway_call.state. */
enum gw_state {
    GW_ROUTING,  /* choosing an engine of the route, or starting it (no queue, no slot) */
    GW_QUEUED,   /* in its engine's fifo, counted in waiting */
    GW_UPSTREAM, /* holds a slot of its engine (in_flight) and has an upstream transfer */
    GW_PEER,     /* sent to another node (gw_peers): has an upstream transfer and no queue or
                    slot here, the other node's queue holds it (counted in gw->to_peers) */
    GW_DONE,     /* answered or abandoned: holds nothing; only freeing is left */
};

/* One submitted request (gateway.h): what the gateway knows of it, nothing of its client. */
struct gateway_call {
    struct gateway *gw;
    enum gw_state state; /* see enum gw_state; only gw_set_state() writes it */
    const struct gateway_call_cbs *cbs;
    void *arg;                         /* the client's, for cbs */
    struct gateway_call_info info;     /* what gateway_call_info() shows */
    const char *path;                  /* /v1/chat/completions … */
    const char *engines[GW_ROUTE_MAX]; /* the route: engine names, tried in order */
    size_t nengines, idx;
    struct gw_queue *q;     /* the queue of engines[idx], once tried; NULL for peers */
    struct gw_peers *peers; /* the other nodes it goes to, or NULL: this node's engines */
    struct httpc_req *up;
    int up_status;
    struct buf err_body; /* a streaming upstream's error answer, to pass on or fall back */
    bool first_byte;     /* a byte of a streamed answer arrived: no fallback from here */
    bool paused;         /* the client asked for a pause: the transfer is (or is being) paused */
    bool hide_usage;     /* the usage-only chunk is read, not delivered */
    bool durable;        /* waits beyond queue_limit (gateway_submission.durable) */
    uint8_t held;        /* callbacks running: a cancel from inside them only marks */
    bool cancelled;      /* the client cancelled; torn down once nothing holds it */
    bool ending;         /* on_end runs: a cancel is a no-op */
    uint32_t relayed;    /* events passed to the client: a stream's tokens if no usage came */
    struct sse_parser events;          /* reads the engine's SSE stream (any line ends) */
    h2o_linklist_t qlink;              /* in q->fifo while GW_QUEUED */
    h2o_linklist_t alink;              /* in gw->active from submission to gw_call_free() */
    char model[GATEWAY_MODEL_MAX];     /* info.model */
    char id[HTTP_REQUEST_ID_MAX + 1];  /* the request id */
    char traceparent[256];             /* "traceparent: …" for the engine, "" when none */
    char tenant[STORE_TENANT_MAX + 1]; /* whose limits apply, "" for none */
    size_t body_len;
    char body[]; /* the body sent to the engine, NUL-terminated */
};

/* ---- call.c: submitting, ending and cancelling calls ---- */

/* Holds g while its client's callbacks run: a gateway_call_cancel() from inside only marks it. */
static inline void gw_call_hold(struct gateway_call *g)
{
    g->held++;
}
/* Ends a hold. Returns whether the client cancelled g meanwhile; g was then torn down and freed
 * when this was the last hold, and the caller must not touch it either way. */
bool gw_call_release(struct gateway_call *g) MUST_USE;
/* Ends g as failed: GW_DONE, on_end with status, code and the sentence, then frees it. */
void gw_call_fail(struct gateway_call *g, int status, const char *code, const char *fmt, ...)
    PRINTF_LIKE(4, 5);
/* Ends g with the engine's answer passed on (status): GW_DONE, on_end, then frees it. */
void gw_call_finish(struct gateway_call *g, int status);

/* ---- queue.c: states, queues, fallbacks, waiting ---- */

/* The one state setter: leaves the old state (out of the fifo; the slot given back, after which
 * the queue is pumped) and enters the new one (into the fifo; a slot taken). See
 * docs/internals/gateway.md for the transitions. */
void gw_set_state(struct gateway_call *g, enum gw_state st);
/* Tries engines[idx]: dispatches, queues (telling the client it waits), starts the engine, or
 * falls back / fails with why. g may be gone when it returns. */
void gw_try_engine(struct gateway_call *g);
/* Moves to the next engine of the route; fails with why (status) when none is left. g may be
 * gone when it returns. */
void gw_fall_back(struct gateway_call *g, int status, const char *why);
/* How logs, events and metrics name engines[i]: its name, or "ENGINE@NODE" for another
 * node's. Into buf (GW_LABEL_MAX bytes); returns buf. */
const char *gw_engine_label(const struct gateway_call *g, size_t i, char *buf, size_t size);
/* Fails every queued call with status, code and the sentence (the server is shutting down). */
void gw_fail_queued(struct gateway *gw, int status, const char *code, const char *msg);
/* Every GATEWAY_PEEK_MS: on_wait for every queued call, with a note every GATEWAY_WAIT_NOTE_MS;
 * a queue.depth event for each engine whose queue changed since the last tick; a node memory
 * sample for the stats every STATS_NODE_SAMPLE_MS. */
void gw_wait_timer_cb(uv_timer_t *t);

/* ---- route.c: model names to engines ---- */

/* The engines that serve model, in the order to try them, into out[0..cap). Returns how many;
 * 0 when no route or local engine serves it (a remote engine is reached only via a route). */
size_t gw_route_resolve(struct gateway *gw, const char *model, const char **out, size_t cap);

/* ---- upstream.c: the request to the engine and the relay of its answer ---- */

/* Sets up g's upstream side (error body, SSE reader); allocates nothing yet. */
void gw_upstream_init(struct gateway_call *g);
/* Frees what gw_upstream_init set up. */
void gw_upstream_cleanup(struct gateway_call *g);
/* Starts the upstream transfer: to engines[idx], taking a slot of g->q (GW_UPSTREAM), or, for
 * a call with peers, to the other node peers->p[idx] (GW_PEER: no slot here). Falls back when
 * it cannot start. */
void gw_dispatch(struct gateway_call *g);

/* ---- api.c: the HTTP side, one client of the calls ---- */

/* Registers the gateway's routes and shutdown hook with gw->srv. */
void gw_api_register(struct gateway *gw);

#endif
