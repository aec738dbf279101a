/*
 * gateway.c: the gateway's life (gateway.h): making it (queues, metrics, routes, the wait
 * timer) and freeing it with whatever is still queued or in flight. The work is in the files
 * beside it; docs/internals/gateway.md says which does what:
 *   call.c      the calls' interface (gateway_submit, cancel, resume) and their ends
 *   route.c     model names to engines
 *   queue.c     call states (gw_set_state), per-engine queues, fallbacks, waiting
 *   upstream.c  the upstream transfer and the relay of its answer to the call's client
 *   usage.c     token counts from answers
 *   stats.c     the last hour per engine in 10 s buckets (GET /v1/stats), fed at each call's end
 *   api.c       the HTTP routes: one client of the calls, its errors and access line
 */
#include <stdlib.h>

#include "core/clock.h"

#include "gateway/gateway_int.h"

static const char *const fallback_labels[] = {"from", "to"};
static const char *const upstream_labels[] = {"engine", "reason"};
static const char *const engine_labels[] = {"engine"};
static const char *const token_labels[] = {"engine", "kind"};

struct gateway *gateway_new(struct http_server *srv, const struct config *cfg,
                            struct supervisor *sup, struct httpc *httpc, struct events *events,
                            struct metrics *metrics)
{
    struct gateway *gw = xcalloc(1, sizeof(*gw));
    gw->srv = srv;
    gw->cfg = cfg;
    gw->sup = sup;
    gw->httpc = httpc;
    gw->events = events;
    gw->nqueues = supervisor_count(sup);
    gw->queues = xcalloc(gw->nqueues ? gw->nqueues : 1, sizeof(struct gw_queue));
    h2o_linklist_init_anchor(&gw->active);
    for (size_t i = 0; i < gw->nqueues; i++) {
        gw->queues[i].gw = gw;
        gw->queues[i].e = supervisor_engine_at(sup, i);
        h2o_linklist_init_anchor(&gw->queues[i].fifo);
    }
    const char **names = xcalloc(gw->nqueues ? gw->nqueues : 1, sizeof(*names));
    for (size_t i = 0; i < gw->nqueues; i++)
        names[i] = engine_name(gw->queues[i].e); /* the config's: it outlives the gateway */
    gw->stats = stats_new(names, gw->nqueues, clock_wall_ms());
    free(names);
    gw->m_fallbacks =
        metrics_counter(metrics, "arun_fallbacks_total",
                        "Requests moved to the next engine of their route", 2, fallback_labels);
    gw->m_upstream_errors =
        metrics_counter(metrics, "arun_upstream_errors_total",
                        "Engine requests that failed: connect or status_5xx before an answer, "
                        "stream_cut after it began",
                        2, upstream_labels);
    gw->m_queue_wait = metrics_histogram(metrics, "arun_queue_wait_seconds",
                                         "Time a request waited for its engine", 1, engine_labels,
                                         metrics_latency_buckets, metrics_latency_nbuckets);
    gw->m_ttft = metrics_histogram(
        metrics, "arun_ttft_seconds", "Time from dispatch to the first streamed byte", 1,
        engine_labels, metrics_latency_buckets, metrics_latency_nbuckets);
    gw->m_egress = metrics_counter(metrics, "arun_egress_total",
                                   "Requests answered by a remote engine (left this machine)", 1,
                                   engine_labels);
    gw->m_tokens = metrics_counter(metrics, "arun_tokens_total",
                                   "Tokens reported by engines, by kind (prompt, completion)", 2,
                                   token_labels);
    gw_api_register(gw);
    uv_timer_init(http_server_loop(srv), &gw->wait_timer);
    gw->wait_timer.data = gw;
    uv_timer_start(&gw->wait_timer, gw_wait_timer_cb, GATEWAY_PEEK_MS, GATEWAY_PEEK_MS);
    uv_unref((uv_handle_t *)&gw->wait_timer);
    return gw;
}

void gateway_set_limits(struct gateway *gw, struct limits *l)
{
    gw->limits = l;
}

void gateway_set_cluster(struct gateway *gw, struct cluster *cl)
{
    gw->cluster = cl;
    /* Every answer of the server names this node; a proxied call's names the other one. */
    http_server_set_node(gw->srv, cl != NULL ? cluster_node_id(cl) : NULL);
}

static void gw_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

void gateway_free(struct gateway *gw)
{
    if (gw == NULL)
        return;
    gw->closing = true; /* the supervisor is going away too: no calls to it from here */
    while (!h2o_linklist_is_empty(&gw->active)) {
        struct gateway_call *g =
            H2O_STRUCT_FROM_MEMBER(struct gateway_call, alink, gw->active.next);
        if (g->up != NULL)
            httpc_cancel(g->up);
        g->up = NULL;
        gw_call_fail(g, 503, "shutting_down", "arun is shutting down");
    }
    for (size_t i = 0; i < gw->nqueues; i++)
        if (gw->queues[i].waiter != NULL)
            supervisor_cancel_wait(gw->queues[i].waiter);
    free(gw->queues);
    stats_free(gw->stats);
    uv_close((uv_handle_t *)&gw->wait_timer, gw_closed_cb);
}
