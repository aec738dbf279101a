/*
 * queue.c: where a call stands with its engine (gateway_int.h): the per-engine queues, the
 * state setter, trying the engines of a route in order (fallbacks), and what a waiting call
 * hears (on_wait). It owns gateway_call.state, the fifos and the slot counts; it never talks
 * HTTP: whether a waiting client is still there is the client's to find out in on_wait.
 *
 * DESIGN
 * Each engine has a queue (struct gw_queue): at most max_concurrency requests in flight, then a
 * FIFO of at most queue_limit (an h2o_linklist_t: a request that leaves from the middle, its
 * client gone, is unlinked in O(1)). pump() is the one place that moves requests from the FIFO
 * to the engine: it runs when a slot frees and when the engine becomes ready. While any request
 * waits for an engine that is not ready, the queue holds one supervisor waiter, which starts the
 * engine if needed and calls back once it is ready or cannot be.
 *
 * A request tries the engines of its route in order. It falls back to the next one when an
 * engine cannot serve (failed, refused to start, connection refused, 5xx before the first
 * byte), never after bytes reached the client; every fallback is a log line, an event and a
 * metric, and the answer names the engine in x-arun-engine.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "gateway/gateway_int.h"

static void pump(struct gw_queue *q);

static struct gateway_call *fifo_head(struct gw_queue *q)
{
    if (h2o_linklist_is_empty(&q->fifo))
        return NULL;
    return H2O_STRUCT_FROM_MEMBER(struct gateway_call, qlink, q->fifo.next);
}

static const char *const state_names[] = {"routing", "queued", "upstream", "peer", "done"};
_Static_assert(ARRAY_SIZE(state_names) == GW_DONE + 1, "a name per state");

void gw_set_state(struct gateway_call *g, enum gw_state st)
{
    enum gw_state from = g->state;
    ASSERT(from != GW_DONE || st == GW_DONE); /* nothing comes back from done */
    if (from == st)
        return;
    struct gw_queue *q = g->q;
    bool tell = !g->gw->closing; /* the supervisor is going away with the gateway */
    log_debug("gateway", "request %s: %s -> %s", g->id, state_names[from], state_names[st]);
    g->state = st;
    if (from == GW_QUEUED) {
        h2o_linklist_unlink(&g->qlink);
        q->waiting--;
        q->durable_waiting -= g->durable;
        q->telling -= g->cbs->on_wait != NULL;
    }
    if (st == GW_QUEUED) {
        h2o_linklist_insert(&q->fifo, &g->qlink);
        q->waiting++;
        q->durable_waiting += g->durable;
        q->telling += g->cbs->on_wait != NULL;
    }
    if (from == GW_QUEUED || st == GW_QUEUED || from == GW_UPSTREAM || st == GW_UPSTREAM)
        q->depth_changed = true; /* told at the next wait tick, coalesced */
    if (from == GW_QUEUED || st == GW_QUEUED) {
        g->gw->fifo_changes++;
        if (tell)
            supervisor_set_queued(q->e, q->waiting);
    }
    /* Another node's queue holds a GW_PEER call: nothing here but the count. */
    if (st == GW_PEER)
        g->gw->to_peers++;
    if (from == GW_PEER)
        g->gw->to_peers--;
    if (st == GW_UPSTREAM) {
        q->in_flight++;
        supervisor_request_begin(q->e);
    }
    if (from == GW_UPSTREAM) {
        /* Last: the freed slot may go to the next request at once, and g is out of it. */
        q->in_flight--;
        if (tell) {
            supervisor_request_end(q->e);
            pump(q);
        }
    }
}

const char *gw_engine_label(const struct gateway_call *g, size_t i, char *buf, size_t size)
{
    if (g->peers == NULL)
        snprintf(buf, size, "%s", g->engines[i]);
    else
        snprintf(buf, size, "%s@%s", g->peers->p[i].engine, g->peers->p[i].node);
    return buf;
}

/* The end of a route with nothing left to try: why, in words. */
static void fail_route(struct gateway_call *g, int status, const char *from, const char *why)
{
    const char *code = g->nengines > 1 ? "no_engine_available"
                       : status == 503 ? "engine_unavailable"
                                       : "upstream_error";
    if (g->peers != NULL && g->nengines > 1)
        gw_call_fail(g, status, code,
                     "no other node serving %s could answer; the last one, engine %s: %s", g->model,
                     from, why);
    else if (g->peers != NULL)
        gw_call_fail(g, status, code, "the node serving %s could not answer: engine %s: %s",
                     g->model, from, why);
    else if (g->nengines > 1)
        gw_call_fail(g, status, code, "no engine of route %s could answer; the last one, %s: %s",
                     g->model, from, why);
    else
        gw_call_fail(g, status, code, "engine %s: %s", from, why);
}

/* Moves to the next engine of the route (or the next node); answers with why when none is
 * left. */
void gw_fall_back(struct gateway_call *g, int status, const char *why)
{
    char from[GW_LABEL_MAX], to[GW_LABEL_MAX];
    gw_engine_label(g, g->idx, from, sizeof(from));
    gw_set_state(g, GW_ROUTING);
    if (g->idx + 1 >= g->nengines) {
        fail_route(g, status, from, why);
        return;
    }
    g->idx++;
    g->info.engine = g->engines[g->idx];
    g->info.tried = (uint32_t)g->idx + 1;
    gw_engine_label(g, g->idx, to, sizeof(to));
    log_warn("gateway", "falling back from %s to %s for model %s: %s", from, to, g->model, why);
    events_publish(g->gw->events, "gateway.fallback",
                   json_pack("{s:s, s:s, s:s, s:s}", "model", g->model, "from", from, "to", to,
                             "reason", why));
    metrics_add(g->gw->m_fallbacks, 1, (const char *const[]){from, to});
    gw_try_engine(g);
}

static struct gw_queue *queue_of(struct gateway *gw, struct engine *e)
{
    for (size_t i = 0; i < gw->nqueues; i++)
        if (gw->queues[i].e == e)
            return &gw->queues[i];
    return NULL;
}

static const char *ordinal_suffix(uint32_t n)
{
    if (n % 100 >= 11 && n % 100 <= 13)
        return "th";
    return n % 10 == 1 ? "st" : n % 10 == 2 ? "nd" : n % 10 == 3 ? "rd" : "th";
}

/* Tells g's client where it waits (on_wait), with a sentence when note: an SSE comment for the
 * HTTP client, which keeps proxies (and h2o, which only notices a vanished client when it
 * writes) from idling. Returns whether the client cancelled g meanwhile (g is then gone). */
static bool tell_waiting(struct gateway_call *g, uint32_t position, bool note)
{
    if (g->cbs->on_wait == NULL)
        return false;
    char msg[256];
    if (note) {
        struct engine *e = g->q->e;
        char eta[64] = "";
        int64_t ms = engine_expected_ready_ms(e);
        if (ms >= 0)
            snprintf(eta, sizeof(eta), ", about %lld s left", (long long)((ms + 999) / 1000));
        enum engine_state st = engine_state(e);
        const char *what = st == ENGINE_READY      ? "engine busy"
                           : st == ENGINE_STOPPING ? "engine being swapped"
                           : st == ENGINE_STOPPED  ? "engine waiting to start"
                                                   : "engine loading";
        snprintf(msg, sizeof(msg), "queued %u%s for %s, %s%s", position, ordinal_suffix(position),
                 engine_name(e), what, eta);
    }
    gw_call_hold(g);
    g->cbs->on_wait(g, position, note ? msg : NULL, g->arg);
    return gw_call_release(g);
}

/* A queue.depth event for each engine whose queue or slots changed since the last tick and now
 * differ from what was last told: at most one per engine per GATEWAY_PEEK_MS however busy it
 * is (a console redraws a number, it needs no event per request), and none for an idle one.
 * System events: admins only (events.h). */
static void publish_depths(struct gateway *gw)
{
    for (size_t i = 0; i < gw->nqueues; i++) {
        struct gw_queue *q = &gw->queues[i];
        if (!q->depth_changed)
            continue;
        q->depth_changed = false;
        if (q->waiting == q->told_waiting && q->in_flight == q->told_in_flight)
            continue;
        q->told_waiting = q->waiting;
        q->told_in_flight = q->in_flight;
        events_publish(gw->events, "queue.depth",
                       json_pack("{s:s, s:i, s:i}", "engine", engine_name(q->e), "queued",
                                 (int)q->waiting, "in_flight", (int)q->in_flight));
    }
}

/* The node's memory into the stats ring (the supervisor's last sample: no I/O here). */
static void sample_node(struct gateway *gw)
{
    struct supervisor_node_use u;
    supervisor_node_use(gw->sup, &u);
    stats_node(gw->stats, clock_wall_ms(), u.ram_known ? (int64_t)u.ram_used_mb : -1,
               u.vram_known ? (int64_t)u.vram_used_mb : -1);
}

/* Every GATEWAY_PEEK_MS: each waiting call's client hears it still waits, and may leave the
 * queue before reaching the engine (an HTTP client that left); every GATEWAY_WAIT_NOTE_MS, with
 * a sentence saying where it stands. Calls with no on_wait (durable runs, whose queue is the
 * store: tens of thousands may wait) are only counted for the positions of those behind them:
 * the walk ends after the last call that has a client to tell, so a queue of them alone costs
 * nothing. */
void gw_wait_timer_cb(uv_timer_t *t)
{
    struct gateway *gw = t->data;
    bool note = ++gw->ticks % (GATEWAY_WAIT_NOTE_MS / GATEWAY_PEEK_MS) == 0;
    publish_depths(gw);
    if (gw->ticks % (STATS_NODE_SAMPLE_MS / GATEWAY_PEEK_MS) == 1)
        sample_node(gw);
    for (size_t i = 0; i < gw->nqueues; i++) {
        uint32_t pos = 0, left = gw->queues[i].telling;
        h2o_linklist_t *fifo = &gw->queues[i].fifo;
        for (h2o_linklist_t *n = fifo->next, *next; n != fifo && left > 0; n = next) {
            next = n->next;
            struct gateway_call *g = H2O_STRUCT_FROM_MEMBER(struct gateway_call, qlink, n);
            ++pos;
            if (g->cbs->on_wait == NULL)
                continue;
            left--;
            uint64_t changes = gw->fifo_changes;
            bool gone = tell_waiting(g, pos, note);
            /* g leaving its queue (its client cancelled it) leaves next where it was; a client
             * that cancelled or submitted other calls may have moved it: the rest of this queue
             * hears at the next tick. */
            if (gw->fifo_changes != changes + (gone ? 1 : 0))
                break;
            pos -= gone;
        }
    }
}

void gw_fail_queued(struct gateway *gw, int status, const char *code, const char *msg)
{
    for (size_t i = 0; i < gw->nqueues; i++) {
        struct gw_queue *q = &gw->queues[i];
        struct gateway_call *g;
        while ((g = fifo_head(q)) != NULL)
            gw_call_fail(g, status, code, "%s", msg);
    }
}

static void engine_ready_cb(struct engine *e, int status, const char *reason, void *arg)
{
    struct gw_queue *q = arg;
    q->waiter = NULL;
    if (status == 0) {
        pump(q);
        return;
    }
    /* The engine cannot serve now: every request waiting for it moves on. */
    struct gateway_call *g;
    while ((g = fifo_head(q)) != NULL)
        gw_fall_back(g, 503, reason ? reason : "engine failed");
}

static void ensure_waiter(struct gw_queue *q)
{
    if (q->waiter == NULL && engine_state(q->e) != ENGINE_READY)
        q->waiter = supervisor_wait_ready(q->e, engine_ready_cb, q);
}

static void pump(struct gw_queue *q)
{
    uint32_t max = engine_config(q->e)->max_concurrency;
    struct gateway_call *g;
    while ((g = fifo_head(q)) != NULL && q->in_flight < max && engine_state(q->e) == ENGINE_READY)
        gw_dispatch(g); /* GW_QUEUED -> GW_UPSTREAM */
    if (fifo_head(q) != NULL)
        ensure_waiter(q);
}

void gw_try_engine(struct gateway_call *g)
{
    struct gateway *gw = g->gw;
    if (g->peers != NULL) {
        gw_dispatch(g); /* the other node queues it, starts its engine, says 429 */
        return;
    }
    struct engine *e = supervisor_find(gw->sup, g->engines[g->idx]);
    struct gw_queue *q = e ? queue_of(gw, e) : NULL;
    if (q == NULL) {
        gw_fall_back(g, 503, "no such engine");
        return;
    }
    g->q = q;
    const struct config_engine *c = engine_config(e);
    enum engine_state st = engine_state(e);
    bool up = st == ENGINE_READY;
    bool coming = st == ENGINE_STARTING || st == ENGINE_LOADING || st == ENGINE_STOPPING;
    if (st == ENGINE_FAILED) {
        /* Failed is not restarted by requests: that is the restart policy's job, and a
         * request loop must not become a crash loop. The route moves on. */
        gw_fall_back(g, 503, engine_reason(e));
        return;
    }
    if (!up && !coming) {
        if (c->start == CONFIG_START_MANUAL) {
            gw_fall_back(g, 503,
                         "the engine is stopped and has start: manual (start it with "
                         "`arun engines start NAME`)");
            return;
        }
        struct buf why;
        buf_init(&why, 1024);
        int rc = supervisor_start_engine(e, "a request for it", &why);
        if (rc != 0) {
            gw_fall_back(g, 503, buf_cstr(&why));
            buf_cleanup(&why);
            return;
        }
        buf_cleanup(&why);
    }
    if (up && q->in_flight < c->max_concurrency && fifo_head(q) == NULL) {
        gw_dispatch(g);
        return;
    }
    if (!g->durable && q->waiting - q->durable_waiting >= c->queue_limit) {
        gw_call_fail(g, 429, "queue_full",
                     "engine %s is busy: %u requests in flight (max_concurrency "
                     "%u) and %u waiting (queue_limit %u); retry later",
                     engine_name(e), q->in_flight, c->max_concurrency,
                     q->waiting - q->durable_waiting, c->queue_limit);
        return;
    }
    gw_set_state(g, GW_QUEUED);
    /* It will wait (not merely pass through the queue behind others that pump sends now): its
     * client hears why at once (the HTTP client opens a waiting stream for it). */
    if (!(up && q->in_flight < c->max_concurrency))
        IGNORE_RESULT(tell_waiting(g, q->waiting, true)); /* gone: the pump goes on without it */
    pump(q);
}
