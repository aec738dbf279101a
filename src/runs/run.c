/*
 * run.c: the runs in memory (run.h): the registry, the run state machine with its one setter,
 * the Response object and its provenance, the store row, and when a run may be freed.
 *
 * DESIGN
 * run_set_status() is the only writer of run.status. Entering a status does its work in one
 * place: the lifecycle event (response.in_progress, .completed, .failed, .incomplete; a
 * cancelled run has no event of its own, as with OpenAI: its log just closes), before it the
 * closing events of a failed or cancelled run's open output items, the row update
 * (so lists and recovery see the status without folding events), the `run.status` runtime event
 * and the metrics. A run ends only through it.
 *
 * Lifetime: a run is held by each subscriber, each waiting request and each store op in flight
 * (their callbacks come back to it). When the last hold goes and the run is finished it joins
 * the garbage list, and a 0 ms timer frees it: never inside the callback that dropped the hold,
 * which may still be on the run's stack (an event commit, a gateway callback).
 */
#include "runs/run.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "engines/manifest.h"
#include "engines/supervisor.h"
#include "runs/follow.h"
#include "runs/object.h"
#include "runs/translate.h"

static const char *const status_names[RUN_NSTATUS] = {
    [RUN_QUEUED] = "queued", [RUN_IN_PROGRESS] = "in_progress", [RUN_COMPLETED] = "completed",
    [RUN_FAILED] = "failed", [RUN_CANCELLED] = "cancelled",     [RUN_INCOMPLETE] = "incomplete",
};

/* Which transitions exist: from (row) to (column). A queued run may end without running
 * (cancelled, or failed: its engine cannot be reached, a restart found it unschedulable). */
static const bool transitions[RUN_NSTATUS][RUN_NSTATUS] = {
    [RUN_QUEUED] = {[RUN_IN_PROGRESS] = true,
                    [RUN_FAILED] = true,
                    [RUN_CANCELLED] = true,
                    [RUN_COMPLETED] = false},
    [RUN_IN_PROGRESS] = {[RUN_COMPLETED] = true,
                         [RUN_FAILED] = true,
                         [RUN_CANCELLED] = true,
                         [RUN_INCOMPLETE] = true},
};

/* The lifecycle event of each status (NULL: none). */
static const char *const status_events[RUN_NSTATUS] = {
    [RUN_QUEUED] = "response.queued",         [RUN_IN_PROGRESS] = "response.in_progress",
    [RUN_COMPLETED] = "response.completed",   [RUN_FAILED] = "response.failed",
    [RUN_INCOMPLETE] = "response.incomplete",
};

const char *run_status_name(enum run_status s)
{
    return s < RUN_NSTATUS ? status_names[s] : "unknown";
}

enum run_status run_status_parse(const char *s)
{
    for (int i = 0; i < RUN_NSTATUS; i++)
        if (s != NULL && strcmp(s, status_names[i]) == 0)
            return (enum run_status)i;
    return RUN_NSTATUS;
}

bool run_finished(const struct run *r)
{
    return r->status >= RUN_COMPLETED;
}

static uint32_t hash_text(const char *s)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        h = (h ^ *p) * 16777619u;
    return h;
}

static uint32_t hash_id(const char *id)
{
    return hash_text(id) % RUNS_BUCKETS;
}

/* ---- background runs queued, per tenant: a background run counts while its status is
 * queued; sync_queued() runs wherever the status is written and at the free ---- */

static void count_queued(struct run *r, int delta)
{
    struct runs_tenant_queued **pp = &r->rs->queued[hash_text(r->tenant) % RUNS_TENANT_BUCKETS];
    while (*pp != NULL && strcmp((*pp)->tenant, r->tenant) != 0)
        pp = &(*pp)->next;
    if (*pp == NULL) {
        ASSERT(delta > 0);
        *pp = xcalloc(1, sizeof(**pp));
        snprintf((*pp)->tenant, sizeof((*pp)->tenant), "%s", r->tenant);
    }
    struct runs_tenant_queued *q = *pp;
    ASSERT(delta > 0 || q->n > 0);
    q->n += (uint32_t)delta;
    if (q->n == 0) {
        *pp = q->next;
        free(q);
    }
}

/* Counts r in or out as its status (and gone: it is being freed) says. */
static void sync_queued(struct run *r, bool gone)
{
    bool queued = !gone && r->rq.background && r->status == RUN_QUEUED;
    if (queued != r->counted_queued) {
        count_queued(r, queued ? 1 : -1);
        r->counted_queued = queued;
    }
}

uint32_t runs_queued(const struct runs *rs, const char *tenant)
{
    for (const struct runs_tenant_queued *q = rs->queued[hash_text(tenant) % RUNS_TENANT_BUCKETS];
         q != NULL; q = q->next)
        if (strcmp(q->tenant, tenant) == 0)
            return q->n;
    return 0;
}

static void gc_cb(uv_timer_t *t);
static void notify_waiters(struct run *r);

static void maybe_gone(struct runs *rs);

void runs_scan_done(struct runs *rs)
{
    rs->scanning = false;
    maybe_gone(rs);
}

void runs_loaded(struct runs *rs)
{
    if (rs->loaded)
        return;
    rs->loaded = true;
    if (rs->on_loaded != NULL)
        rs->on_loaded(rs->on_loaded_arg);
}

struct runs *runs_new(const struct runs_options *o)
{
    struct runs *rs = xcalloc(1, sizeof(*rs));
    rs->o = *o;
    h2o_linklist_init_anchor(&rs->unscheduled);
    h2o_linklist_init_anchor(&rs->garbage);
    uv_timer_init(o->loop, &rs->gc);
    rs->gc.data = rs;
    const char *status[] = {"status"}, *outcome[] = {"outcome"};
    rs->m_status = metrics_counter(o->metrics, "arun_runs",
                                   "Runs (responses) that entered each status since start "
                                   "(a counter: queued, in_progress, then the end status)",
                                   1, status);
    rs->m_events =
        metrics_counter(o->metrics, "arun_run_events_total",
                        "Run events committed to the store and offered to streams", 0, NULL);
    rs->m_queue_wait = metrics_histogram(
        o->metrics, "arun_run_queue_wait_seconds",
        "Time from a run's creation until its engine was asked (queue and engine start)", 0, NULL,
        metrics_latency_buckets, metrics_latency_nbuckets);
    rs->m_recovered = metrics_counter(
        o->metrics, "arun_runs_recovered_total",
        "Unfinished runs found at start: requeued, continued or failed (interrupted)", 1, outcome);
    rs->m_taken_over = metrics_counter(
        o->metrics, "arun_runs_taken_over_total",
        "Runs of another node whose lease ran out, taken over by this one: requeued, continued, "
        "failed (interrupted) or completed (answered)",
        1, outcome);
    return rs;
}

void runs_set_cluster(struct runs *rs, struct cluster *cl)
{
    rs->o.cluster = cl;
}

static void unlink_run(struct run *r)
{
    struct run **pp = &r->rs->buckets[hash_id(r->id)];
    while (*pp != NULL && *pp != r)
        pp = &(*pp)->hnext;
    if (*pp == r)
        *pp = r->hnext;
    r->rs->count--;
}

static void free_run(struct run *r)
{
    sync_queued(r, true);
    unlink_run(r);
    if (r->call != NULL)
        gateway_call_cancel(r->call);
    xlate_free(r->x);
    eventlog_cleanup(&r->log);
    json_decref(r->history);
    json_decref(r->error);
    json_decref(r->route);
    run_request_free(&r->rq);
    if (h2o_linklist_is_linked(&r->qlink))
        h2o_linklist_unlink(&r->qlink);
    free(r);
}

/* Whether nothing holds r any more: no subscriber, waiter, store op or engine call, and it is
 * finished (or was deleted, or never went anywhere). */
static bool freeable(struct run *r)
{
    if (r->holds > 0 || r->store_ops > 0 || r->call != NULL || !h2o_linklist_is_empty(&r->waiters))
        return false;
    return run_finished(r) || r->deleted || r->fenced;
}

static void gc_cb(uv_timer_t *t)
{
    struct runs *rs = t->data;
    while (!h2o_linklist_is_empty(&rs->garbage)) {
        struct run *r = H2O_STRUCT_FROM_MEMBER(struct run, glink, rs->garbage.next);
        h2o_linklist_unlink(&r->glink);
        r->garbage = false;
        /* Between the release and this timer the run may have been taken again (a store op
         * submitted by the rest of the callback that released it, a new subscriber). */
        if (freeable(r))
            free_run(r);
    }
}

static void rs_closed_cb(uv_handle_t *h)
{
    free(h->data);
}

/* Once closing and the last run is freed, the registry goes too. */
static void maybe_gone(struct runs *rs)
{
    if (rs->closing && rs->count == 0 && !rs->scanning && !rs->gone) {
        rs->gone = true;
        uv_close((uv_handle_t *)&rs->gc, rs_closed_cb);
    }
}

void runs_free(struct runs *rs)
{
    if (rs == NULL)
        return;
    rs->closing = true;
    follow_free(rs);
    gc_cb(&rs->gc);
    for (size_t i = 0; i < RUNS_BUCKETS; i++) {
        struct run *r = rs->buckets[i];
        while (r != NULL) {
            struct run *next = r->hnext;
            if (r->call != NULL)
                gateway_call_cancel(r->call);
            r->call = NULL;
            /* A run the store still owes a callback is freed by that callback. */
            if (r->store_ops == 0)
                free_run(r);
            r = next;
        }
    }
    maybe_gone(rs);
}

void runs_shutdown(struct runs *rs)
{
    rs->draining = true;
    for (size_t i = 0; i < RUNS_BUCKETS; i++) {
        for (struct run *r = rs->buckets[i]; r != NULL; r = r->hnext) {
            if (r->call != NULL)
                gateway_call_cancel(r->call);
            r->call = NULL;
            notify_waiters(r);
        }
    }
}

bool run_store_done(struct run *r)
{
    ASSERT(r->store_ops > 0);
    r->store_ops--;
    if (!r->rs->closing)
        return false;
    if (r->store_ops == 0) {
        struct runs *rs = r->rs;
        free_run(r);
        maybe_gone(rs);
    }
    return true;
}

struct run *run_new(struct runs *rs, const char *tenant, const char *id, struct run_request *rq,
                    int64_t created_ms)
{
    ASSERT(tenant != NULL && tenant[0] != '\0'); /* every run belongs to a tenant */
    struct run *r = xcalloc(1, sizeof(*r));
    r->rs = rs;
    if (id != NULL)
        snprintf(r->id, sizeof(r->id), "%s", id);
    else
        ids_new(r->id, sizeof(r->id), "resp_");
    snprintf(r->tenant, sizeof(r->tenant), "%s", tenant);
    r->rq = *rq;
    memset(rq, 0, sizeof(*rq));
    r->status = RUN_QUEUED;
    r->created_ms = created_ms;
    r->route = json_array();
    eventlog_init(&r->log, 0);
    h2o_linklist_init_anchor(&r->waiters);
    uint32_t b = hash_id(r->id);
    r->hnext = rs->buckets[b];
    rs->buckets[b] = r;
    rs->count++;
    sync_queued(r, false);
    return r;
}

struct run *run_find(struct runs *rs, const char *tenant, const char *id)
{
    ASSERT(tenant != NULL && tenant[0] != '\0'); /* every lookup is inside one tenant */
    for (struct run *r = rs->buckets[hash_id(id)]; r != NULL; r = r->hnext)
        if (!r->deleted && !r->fenced && strcmp(r->id, id) == 0 && strcmp(r->tenant, tenant) == 0)
            return r;
    return NULL;
}

int64_t runs_oldest_created_ms(const struct runs *rs)
{
    int64_t oldest = INT64_MAX;
    for (size_t i = 0; i < RUNS_BUCKETS; i++)
        for (const struct run *r = rs->buckets[i]; r != NULL; r = r->hnext)
            if (r->created_ms < oldest)
                oldest = r->created_ms;
    return oldest;
}

/* ---- provenance and the Response object ---- */

static json_t *ms_or_null(int64_t from, int64_t to)
{
    return from > 0 && to >= from ? json_integer(to - from) : json_null();
}

/* The `arun` extension: what produced this response, for explaining it months later. */
static json_t *provenance(const struct run *r)
{
    const struct run_request *rq = &r->rq;
    json_t *p = json_object();
    json_t *engine = r->engine[0] ? json_string(r->engine) : json_null();
    json_object_set_new(p, "engine", engine);
    struct engine *e = r->engine[0] ? supervisor_find(r->rs->o.sup, r->engine) : NULL;
    if (e != NULL) {
        char hash[17];
        manifest_hash(engine_config(e), hash);
        json_object_set_new(p, "backend", json_string(config_backend_name(engine_backend(e))));
        json_object_set_new(p, "manifest_hash", json_string(hash));
    } else {
        json_object_set_new(p, "backend", json_null());
        json_object_set_new(p, "manifest_hash", json_null());
    }
    json_object_set_new(p, "engine_model",
                        r->engine_model[0] ? json_string(r->engine_model) : json_null());
    json_object_set(p, "route", r->route);
    size_t tried = json_array_size(r->route);
    json_object_set_new(p, "fallbacks", json_integer(tried > 1 ? (json_int_t)tried - 1 : 0));
    json_t *s = json_object();
    json_object_set_new(s, "temperature",
                        rq->has_temperature ? json_real(rq->temperature) : json_null());
    json_object_set_new(s, "top_p", rq->has_top_p ? json_real(rq->top_p) : json_null());
    json_object_set_new(s, "max_output_tokens",
                        rq->max_output_tokens > 0 ? json_integer(rq->max_output_tokens)
                                                  : json_null());
    json_object_set_new(p, "sampling", s);
    json_t *t = json_object();
    json_object_set_new(t, "queued_ms", ms_or_null(r->created_ms, r->dispatch_ms));
    json_object_set_new(t, "ttft_ms",
                        r->first_token_ms ? json_real((double)r->ttft_us / 1e3) : json_null());
    json_object_set_new(t, "total_ms", ms_or_null(r->created_ms, r->ended_ms));
    json_object_set_new(p, "timings", t);
    json_t *usage = r->x ? xlate_usage(r->x) : NULL;
    json_object_set(p, "usage", usage ? usage : json_null());
    json_object_set_new(p, "continued_after_restart", json_boolean(r->continued));
    return p;
}

/* The Response object with status shown (the run's own unless told). */
static json_t *object_as(const struct run *r, const char *status)
{
    json_t *arun = provenance(r);
    struct object_response o = {
        .rq = &r->rq,
        .id = r->id,
        .created_at = r->created_ms / 1000,
        .completed_at = r->status == RUN_COMPLETED ? r->completed_ms / 1000 : 0,
        .status = status ? status : run_status_name(r->status),
        .output = r->x ? xlate_output(r->x) : NULL,
        .usage = r->x ? xlate_usage(r->x) : NULL,
        .error = r->error,
        .incomplete_reason = r->status == RUN_INCOMPLETE ? r->incomplete_reason : NULL,
        .arun = arun,
    };
    json_t *obj = object_response(&o);
    json_decref(arun);
    return obj;
}

json_t *run_object(const struct run *r)
{
    return object_as(r, NULL);
}

char *run_object_text(const struct run *r, const char *status, size_t *len)
{
    json_t *obj = object_as(r, status);
    char *text = json_dumps(obj, JSON_COMPACT);
    json_decref(obj);
    ASSERT(text != NULL);
    *len = strlen(text);
    return text;
}

int run_emit_lifecycle_text(struct run *r, const char *type, const char *obj, size_t len)
{
    /* {"type":TYPE,"response":OBJ}: the bytes json_dumps makes of that object, the object's
     * text spliced in rather than dumped again (eventlog adds sequence_number last). Event
     * types are literals: nothing to escape. */
    static const char mid[] = "\",\"response\":";
    size_t tlen = strlen(type);
    size_t n = 9 + tlen + sizeof(mid) - 1 + len + 1;
    char *ev = xmalloc(n);
    char *p = ev;
    memcpy(p, "{\"type\":\"", 9);
    p += 9;
    memcpy(p, type, tlen);
    p += tlen;
    memcpy(p, mid, sizeof(mid) - 1);
    p += sizeof(mid) - 1;
    memcpy(p, obj, len);
    p += len;
    *p++ = '}';
    ASSERT((size_t)(p - ev) == n);
    int rc = eventlog_append_text(r, type, ev, n);
    free(ev);
    return rc;
}

int run_emit_lifecycle(struct run *r, const char *type)
{
    size_t len;
    char *obj = run_object_text(r, NULL, &len);
    int rc = run_emit_lifecycle_text(r, type, obj, len);
    free(obj);
    return rc;
}

/* ---- the row ---- */

static void notify_waiters(struct run *r)
{
    while (!h2o_linklist_is_empty(&r->waiters)) {
        struct run_waiter *w = H2O_STRUCT_FROM_MEMBER(struct run_waiter, link, r->waiters.next);
        h2o_linklist_unlink(&w->link);
        w->cb(r, w);
    }
}

/* Whether the run's end is durable: finished and the terminal row committed (or nothing is
 * stored at all). */
static bool end_settled(const struct run *r)
{
    return run_finished(r) && r->row_ops == 0 && (r->final_row || !r->rq.store);
}

static void row_cb(int status, void *arg)
{
    struct run *r = arg;
    r->row_ops--;
    if (status == -ESTALE)
        run_fence(r); /* before run_store_done: a closing registry may free r there */
    else if (status != 0 && status != -ECANCELED)
        log_error("runs", "storing response %s failed: %s", r->id, strerror(-status));
    if (run_store_done(r))
        return;
    if (end_settled(r))
        notify_waiters(r);
    run_maybe_free(r);
}

static void op_cb(int status, void *arg)
{
    struct run *r = arg;
    if (status != 0 && status != -ECANCELED)
        log_error("runs", "storing the items of response %s failed: %s", r->id, strerror(-status));
    if (run_store_done(r))
        return;
    run_maybe_free(r);
}

/* Appends items (borrowed array) to an owner's list of that kind. */
static void store_items(struct run *r, const char *owner, enum store_items_kind kind, json_t *items)
{
    if (json_array_size(items) == 0)
        return;
    char *text = json_dumps(items, JSON_COMPACT);
    int rc =
        store_items_append(r->rs->o.store, r->tenant, owner, kind, text, strlen(text), op_cb, r);
    free(text);
    if (rc == 0)
        r->store_ops++;
    else
        log_error("runs", "the store refused the items of response %s: %s", r->id, strerror(-rc));
}

/* A finished answer's items: the response's output (what a later previous_response_id reads),
 * and for a conversation its input and output, in that order. */
static void store_output(struct run *r)
{
    if (!r->rq.store || r->x == NULL)
        return;
    json_t *output = xlate_output(r->x);
    store_items(r, r->id, STORE_ITEMS_OUTPUT, output);
    if (r->rq.conversation_id != NULL) {
        store_items(r, r->rq.conversation_id, STORE_ITEMS_CONVERSATION, r->rq.input);
        store_items(r, r->rq.conversation_id, STORE_ITEMS_CONVERSATION, output);
    }
}

int run_store_row(struct run *r)
{
    if (!r->rq.store)
        return 0;
    size_t len;
    char *obj = run_object_text(r, NULL, &len);
    int rc = run_store_row_text(r, obj, len);
    free(obj);
    return rc;
}

int run_store_row_text(struct run *r, const char *obj, size_t len)
{
    if (!r->rq.store || r->fenced)
        return 0;
    int rc;
    if (!r->row_stored) {
        char *req = json_dumps(r->rq.root, JSON_COMPACT);
        struct store_response row = {
            .tenant = r->tenant,
            .id = r->id,
            .status = run_status_name(r->status),
            .model = r->rq.model,
            .conversation_id = r->rq.conversation_id,
            .previous_response_id = r->rq.previous_response_id,
            .created_ms = r->created_ms,
            .background = r->rq.background,
            .request = req,
            .request_len = strlen(req),
            .object = obj,
            .object_len = len,
        };
        rc = store_response_put(r->rs->o.store, &row, row_cb, r);
        free(req);
        if (rc == 0) {
            r->row_stored = true;
            store_items(r, r->id, STORE_ITEMS_INPUT, r->rq.input);
        }
    } else {
        rc = store_response_update(r->rs->o.store, r->tenant, r->id, run_status_name(r->status),
                                   obj, len, row_cb, r);
    }
    if (rc == 0) {
        r->row_ops++;
        r->store_ops++;
        if (run_finished(r))
            r->final_row = true;
    } else {
        log_error("runs", "the store refused response %s's row: %s", r->id, strerror(-rc));
    }
    return rc;
}

/* ---- the state machine ---- */

/* The run as a console's runs table shows it: who, what, and the timings so far (null until
 * known); tokens_per_s once it ended, over the time from its first token to its end. */
static void publish(struct run *r)
{
    json_t *out = r->x ? json_object_get(xlate_usage(r->x), "output_tokens") : NULL; /* borrowed */
    json_int_t tokens = json_is_integer(out) ? json_integer_value(out) : -1;
    int64_t gen_ms = r->first_token_ms > 0 && r->ended_ms > r->first_token_ms
                         ? r->ended_ms - r->first_token_ms
                         : 0;
    json_t *data = json_pack(
        "{s:s, s:s, s:s, s:s, s:b, s:I, s:o, s:o, s:o, s:o}", "id", r->id, "tenant", r->tenant,
        "status", run_status_name(r->status), "model", r->rq.model, "background", r->rq.background,
        "created_at", (json_int_t)(r->created_ms / 1000), "queued_ms",
        ms_or_null(r->created_ms, r->dispatch_ms), "ttft_ms",
        r->first_token_ms ? json_real((double)r->ttft_us / 1e3) : json_null(), "tokens_per_s",
        tokens > 0 && gen_ms > 0 ? json_real(round((double)tokens * 1e5 / (double)gen_ms) / 100)
                                 : json_null(),
        "output_tokens", tokens >= 0 ? json_integer(tokens) : json_null());
    events_publish_tenant(r->rs->o.events, r->tenant, "run.status", data); /* its tenant's */
}

/* Entry work of a terminal status (before its event). */
static void enter_end(struct run *r)
{
    r->ended_ms = clock_wall_ms();
    if (r->status == RUN_COMPLETED)
        r->completed_ms = r->ended_ms;
    if (r->call != NULL) {
        gateway_call_cancel(r->call);
        r->call = NULL;
    }
}

void run_announce(struct run *r)
{
    ASSERT(r->status == RUN_QUEUED);
    publish(r);
    metrics_add(r->rs->m_status, 1, (const char *const[]){run_status_name(r->status)});
}

static void set_status(struct run *r, enum run_status to, const char *known, size_t known_len);

void run_restore_status(struct run *r, enum run_status s)
{
    r->status = s;
    sync_queued(r, false);
}

void run_set_status(struct run *r, enum run_status to)
{
    set_status(r, to, NULL, 0);
}

void run_set_status_text(struct run *r, enum run_status to, const char *obj, size_t len)
{
    ASSERT(to == RUN_IN_PROGRESS && obj != NULL);
    set_status(r, to, obj, len);
}

/* The setter. known: the object's text after the change, when the caller has it. */
static void set_status(struct run *r, enum run_status to, const char *known, size_t known_len)
{
    enum run_status from = r->status;
    if (from == to || r->fenced) /* a fenced run is another node's: it changes nothing here */
        return;
    ASSERT(to < RUN_NSTATUS && transitions[from][to]);
    r->status = to;
    sync_queued(r, false);
    if (run_finished(r))
        enter_end(r);
    /* A run that ends before its answer did (failed, cancelled) closes the answer's open items
     * as "incomplete": their …done events come before the end, as the SDK's stream helper
     * expects, and the final Response shows no item in_progress. */
    if ((to == RUN_FAILED || to == RUN_CANCELLED) && r->x != NULL && !r->log.closed &&
        xlate_finish(r->x) != 0)
        log_debug("runs", "response %s: its open items closed without all their events", r->id);
    log_debug("runs", "response %s: %s -> %s", r->id, run_status_name(from), run_status_name(to));
    /* The items before the terminal event: the writer is FIFO, so a client that read
     * response.completed (sent after its commit) and starts the next turn at once finds this
     * turn in the conversation and in previous_response_id's history. */
    if (to == RUN_COMPLETED || to == RUN_INCOMPLETE)
        store_output(r);
    /* The Response object is serialised once for the event and the row (it was 25-40% of the
     * loop's time per create when each dumped its own). */
    bool event = status_events[to] != NULL && !r->log.closed;
    size_t len = known_len;
    char *obj = NULL;
    if (known == NULL && (event || r->rq.store))
        known = obj = run_object_text(r, NULL, &len);
    if (event && run_emit_lifecycle_text(r, status_events[to], known, len) != 0)
        log_warn("runs", "response %s: its %s event could not be stored", r->id, status_events[to]);
    if (run_finished(r))
        eventlog_close(r);
    IGNORE_RESULT(run_store_row_text(r, known, len)); /* logged; the event log holds the truth */
    free(obj);
    publish(r);
    metrics_add(r->rs->m_status, 1, (const char *const[]){run_status_name(to)});
    if (end_settled(r))
        notify_waiters(r);
    run_maybe_free(r);
}

/* ---- lifetime ---- */

void run_hold(struct run *r)
{
    r->holds++;
}

void run_release(struct run *r)
{
    ASSERT(r->holds > 0);
    r->holds--;
    run_maybe_free(r);
}

void run_maybe_free(struct run *r)
{
    struct runs *rs = r->rs;
    if (r->garbage || rs->closing || !freeable(r))
        return;
    r->garbage = true;
    h2o_linklist_insert(&rs->garbage, &r->glink);
    uv_timer_start(&rs->gc, gc_cb, 0, 0);
}

void run_fence(struct run *r)
{
    if (r->fenced)
        return;
    r->fenced = true; /* first: the call's cancel below may end it, which must write nothing */
    log_warn("runs", "run %s was taken over by another node; stopping it here", r->id);
    if (r->call != NULL) {
        gateway_call_cancel(r->call);
        r->call = NULL;
    }
    eventlog_stop(r);
    notify_waiters(r);
    run_maybe_free(r);
}

void run_wait_end(struct run *r, struct run_waiter *w)
{
    h2o_linklist_insert(&r->waiters, &w->link);
    if (end_settled(r))
        notify_waiters(r);
}
