/*
 * call.c: the calls' life (gateway.h): gateway_submit() makes a call and sends it along its
 * route, gateway_call_cancel() and the ends (gw_call_fail, gw_call_finish) free it, and the hold
 * around the client's callbacks makes a cancel from inside one of them safe. Where a call stands
 * is queue.c's; its transfer upstream.c's; its client only ever sees the callbacks.
 *
 * DESIGN
 * A client may cancel from inside any callback (a runs client stopping mid-stream, the HTTP
 * client learning in on_wait that its connection is gone), while the gateway's code that called
 * it is still on the stack: the SSE parser between two events, the wait timer between two calls
 * of a queue. So every place that calls back holds the call (gw_call_hold); a cancel meanwhile
 * only marks it, and the release tears it down (state GW_DONE, upstream cancelled, freed) once
 * the last hold ends, telling the caller to stop. The callbacks are reached through one table
 * per client: an indirect call per event, no copy and no allocation on the streaming path.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "gateway/gateway_int.h"

/* Frees g, which holds nothing any more; its token counts go to the metrics and its tenant's
 * daily count here, so that every call is counted once however it ends (a stream cut or
 * cancelled after its usage chunk counts too). */
static void call_free(struct gateway_call *g)
{
    ASSERT(g->state == GW_DONE || g->state == GW_ROUTING);
    struct gateway *gw = g->gw;
    const char *engine = g->info.engine;
    if (g->info.usage.prompt_tokens > 0)
        metrics_add(gw->m_tokens, (double)g->info.usage.prompt_tokens,
                    (const char *const[]){engine, "prompt"});
    if (g->info.usage.completion_tokens > 0)
        metrics_add(gw->m_tokens, (double)g->info.usage.completion_tokens,
                    (const char *const[]){engine, "completion"});
    /* A stream whose client left before the engine's usage came still made tokens: about one
     * per event passed on (a few more: the role and finish chunks), so that leaving just
     * before the end is no way around output_tokens_per_day. */
    int64_t out = g->info.usage.completion_tokens;
    if (out < 0)
        out = g->relayed;
    if (out > 0 && g->tenant[0] != '\0')
        limits_add_tokens(gw->limits, g->tenant, (uint64_t)out);
    /* The charts count every call that reached an engine's queue, however it ended. */
    if (g->q != NULL) {
        const struct gateway_call_info *in = &g->info;
        struct stats_request sr = {
            .ttft_ms = in->first_byte_ns && in->dispatch_ns
                           ? (double)(in->first_byte_ns - in->dispatch_ns) / 1e6
                           : -1,
            .queue_wait_ms = in->dispatch_ns ? (double)(in->dispatch_ns - in->submit_ns) / 1e6 : -1,
            .output_tokens = out,
        };
        stats_record(gw->stats, (size_t)(g->q - gw->queues), clock_wall_ms(), &sr);
    }
    h2o_linklist_unlink(&g->alink);
    gw_upstream_cleanup(g);
    free(g->peers);
    free(g);
}

/* A cancelled call: out of its queue or its slot (the next call may take it), its transfer
 * cancelled (httpc calls nothing afterwards, and defers the drop when inside its callback). */
static void tear_down(struct gateway_call *g)
{
    if (g->up != NULL)
        httpc_cancel(g->up);
    g->up = NULL;
    gw_set_state(g, GW_DONE);
    call_free(g);
}

bool gw_call_release(struct gateway_call *g)
{
    ASSERT(g->held > 0);
    if (--g->held > 0 || !g->cancelled)
        return g->cancelled;
    tear_down(g);
    return true;
}

static void end(struct gateway_call *g, int status, const char *code, const char *msg)
{
    gw_set_state(g, GW_DONE);
    g->ending = true;
    g->cbs->on_end(g, status, code, msg, g->arg);
    call_free(g);
}

void gw_call_fail(struct gateway_call *g, int status, const char *code, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    end(g, status, code, msg);
}

void gw_call_finish(struct gateway_call *g, int status)
{
    end(g, status, NULL, NULL);
}

/* The other nodes that serve s->model, best first, for a call no engine or route of this node
 * serves; NULL when none does, or when the call came from another node (it is never sent on
 * to a third: a view that is out of date could send it round in a circle). */
static struct gw_peers *find_peers(struct gateway *gw, const struct gateway_submission *s)
{
    if (gw->cluster == NULL || s->local_only)
        return NULL;
    struct gw_peers *p = xcalloc(1, sizeof(*p));
    p->n = cluster_peers_for(gw->cluster, s->model, p->p, GW_PEERS_MAX);
    if (p->n == 0) {
        free(p);
        return NULL;
    }
    if (s->tenant != NULL)
        snprintf(p->tenant, sizeof(p->tenant), "%s", s->tenant);
    return p;
}

int gateway_submit(struct gateway *gw, const struct gateway_submission *s,
                   const struct gateway_call_cbs *cbs, void *arg, struct gateway_call **out)
{
    size_t model_len = s->model != NULL ? strlen(s->model) : 0;
    size_t id_len = s->request_id != NULL ? strlen(s->request_id) : 0;
    if (model_len == 0 || model_len >= GATEWAY_MODEL_MAX || id_len == 0 ||
        id_len > HTTP_REQUEST_ID_MAX || s->path == NULL || (s->body == NULL && s->body_len > 0) ||
        cbs->on_end == NULL || cbs->on_head == NULL || cbs->on_body == NULL ||
        (s->stream && cbs->on_event == NULL))
        return -EINVAL;
    if (gw->closing)
        return -ESHUTDOWN;
    const char *engines[GW_ROUTE_MAX];
    size_t n = gw_route_resolve(gw, s->model, engines, ARRAY_SIZE(engines));
    struct gw_peers *peers = n == 0 ? find_peers(gw, s) : NULL;
    if (n == 0 && peers == NULL)
        return -ENOENT;
    for (size_t i = 0; peers != NULL && i < peers->n; i++)
        engines[n++] = peers->p[i].engine;
    /* One allocation with the body inside: it is sent again on a fallback. */
    struct gateway_call *g = xcalloc(1, sizeof(*g) + s->body_len + 1);
    g->gw = gw;
    g->cbs = cbs;
    g->arg = arg;
    g->path = s->path;
    g->peers = peers;
    memcpy(g->engines, engines, n * sizeof(engines[0]));
    g->nengines = n;
    memcpy(g->model, s->model, model_len + 1);
    memcpy(g->id, s->request_id, id_len + 1);
    if (s->traceparent != NULL && strlen(s->traceparent) < 200) {
        static const char name[] = "traceparent: ";
        memcpy(g->traceparent, name, sizeof(name) - 1);
        memcpy(g->traceparent + sizeof(name) - 1, s->traceparent, strlen(s->traceparent) + 1);
    }
    if (s->body_len > 0)
        memcpy(g->body, s->body, s->body_len);
    g->body_len = s->body_len;
    g->hide_usage = s->hide_usage;
    g->durable = s->durable;
    g->info = (struct gateway_call_info){
        .model = g->model,
        .engine = engines[0],
        .tried = 1,
        .stream = s->stream,
        .submit_ns = clock_mono_ns(),
        .usage = {.prompt_tokens = -1, .completion_tokens = -1},
        .node = peers != NULL ? peers->p[0].node : NULL,
    };
    if (s->tenant != NULL && gw->limits != NULL)
        snprintf(g->tenant, sizeof(g->tenant), "%s", s->tenant);
    gw_upstream_init(g);
    h2o_linklist_insert(&gw->active, &g->alink);
    *out = g;
    /* Embeddings make no output tokens: a tenant whose day's budget is spent may still embed. */
    struct limits_refusal why;
    if (g->tenant[0] != '\0' && strcmp(g->path, "/v1/embeddings") != 0 &&
        limits_check_tokens(gw->limits, g->tenant, &why) != 0) {
        g->info.retry_after_s = why.retry_after_s;
        gw_call_fail(g, 429, "rate_limit_exceeded", "%s", why.message);
        return 0;
    }
    gw_try_engine(g);
    return 0;
}

void gateway_call_cancel(struct gateway_call *c)
{
    if (c->cancelled || c->ending)
        return;
    c->cancelled = true;
    if (c->held == 0)
        tear_down(c);
}

void gateway_call_resume(struct gateway_call *c)
{
    if (!c->paused || c->up == NULL)
        return;
    c->paused = false;
    httpc_resume(c->up);
}

const struct gateway_call_info *gateway_call_info(const struct gateway_call *c)
{
    return &c->info;
}
