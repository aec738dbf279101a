/*
 * api.c: the Responses API's routes (api.h). Requests are checked by runs/request.c, objects
 * laid out by runs/object.c; this file decides what each route does with a run: create it,
 * stream it, wait for it, read it from memory (live) or from the store (finished), cancel or
 * delete it.
 *
 * POST /v1/responses, in order: parse and check the body; claim the Idempotency-Key (a key
 * already held by the same body answers the first response, by another body 409); read the
 * earlier turns (previous_response_id, conversation: 404 when absent); submit to the gateway
 * (404 for a model nobody serves, 429 for a full queue: nothing is stored for those); store the
 * row and the first events; then answer: the stream itself (stream), the queued Response once
 * the row and its first events committed (background), or the finished Response once its last
 * row committed (otherwise).
 *
 * A plain POST (neither stream nor background) holds its request until the run ends; h2o does
 * not read a connection while its request is handled, so such requests are on a list that a
 * timer looks at every GATEWAY_PEEK_MS (http_client_gone, as the gateway does for its queued
 * requests). A client that left cancels its run, so the engine's slot frees, unless the run has
 * other clients (a stream, another request with the same Idempotency-Key).
 *
 * Tenancy (docs/internals/runs.md): every lookup takes the request's tenant, reply_tenant(r).
 * A run in memory is found only by its own tenant (run_find); one that misses goes to the
 * store with that same tenant, exactly as an unknown id does, so another tenant's response
 * answers the same 404 by the same path and in the same time class. Idempotency keys are
 * claimed per tenant: the same key sent by two tenants makes two responses.
 */
#include "runs/api.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "runs/forward.h"
#include "runs/object.h"
#include "runs/reply.h"
#include "runs/scheduler.h"
#include "runs/stream.h"
#include "tenancy/limits.h"

#define IDEM_KEY_MAX 255 /* bytes of an Idempotency-Key */

struct runs_api {
    struct http_server *srv;
    struct runs *rs;
    h2o_linklist_t subs;    /* every stream_sub, by its `all` link */
    struct gate *gates;     /* one per route, freed with the api */
    h2o_linklist_t parked;  /* struct parked: requests that came before recovery loaded */
    h2o_linklist_t waiting; /* plain POSTs waiting for their run's end (struct pending.wlink) */
    uv_timer_t *peek;       /* looks at their clients while any waits (heap: closed async) */
};

/* Every route passes through a gate: until recovery has put the unfinished runs in memory
 * (milliseconds after start), a request about a run could find it only in the store and, say,
 * end a stream at the last stored event of a run that is about to continue. Such requests wait
 * for the load and then run as if they had just arrived. */
struct gate {
    struct gate *next;
    struct runs_api *api;
    http_handler_fn fn;
};

struct parked {
    h2o_linklist_t link;
    struct http_request *r;
    struct gate *g;
};

/* One request about a run being answered asynchronously. */
struct pending {
    struct runs_api *api;
    struct http_request *r;
    struct run *run; /* held while set */
    struct run_waiter w;
    h2o_linklist_t wlink; /* in runs_api.waiting while a plain POST waits */
    struct eventlog_watch watch;
    int64_t until_seq; /* background: answer once this is committed */
    char key[IDEM_KEY_MAX + 1];
    char fingerprint[RUN_FINGERPRINT_HEX + 1];
    int64_t after;  /* a stream's starting point */
    char *snapshot; /* background: the Response as created (queued, JSON text), sent once
                       committed */
    size_t snapshot_len;
    char id[STORE_ID_MAX + 1]; /* the response a row read is for */
    int64_t claim_ms;          /* when the Idempotency-Key's claim found held was made */
    bool stream, background;
};

static void not_found(struct http_request *r, const char *id)
{
    http_send_error(r, 404, "not_found", NULL, "Response with id '%.128s' not found.", id);
}

/* The {id} of a route, or NULL after answering 404 for one no response can have: empty, longer
 * than the store keeps, or with a byte no id has (the path is decoded: %00, invalid UTF-8),
 * which the store would refuse and the error's JSON could not quote. */
static const char *route_id(struct http_request *r)
{
    const char *id = r->params[0];
    size_t n = strlen(id);
    bool ok = n > 0 && n <= STORE_ID_MAX;
    for (size_t i = 0; ok && i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        ok = c > ' ' && c < 0x7f && c != '"' && c != '\\';
    }
    if (ok)
        return id;
    http_send_error(r, 404, "not_found", NULL, "Response not found.");
    return NULL;
}

static void ended_cb(struct run *run, struct run_waiter *w);

static struct pending *pending_new(struct runs_api *api, struct http_request *r)
{
    struct pending *p = xcalloc(1, sizeof(*p));
    p->api = api;
    p->r = r;
    p->w.cb = ended_cb;
    return p;
}

static void pending_free(struct pending *p)
{
    if (h2o_linklist_is_linked(&p->wlink))
        h2o_linklist_unlink(&p->wlink);
    eventlog_unwatch(&p->watch);
    free(p->snapshot);
    if (p->run != NULL)
        run_release(p->run);
    free(p);
}

static void send_object(struct http_request *r, const struct run *run)
{
    http_send_json(r, 200, run_object(run));
}

/* ---- answering with a run that exists ---- */

/* The run was fenced (another node took it over): this node cannot say how it ends. */
static void moved(struct http_request *r, const struct run *run)
{
    http_add_header(r, "retry-after", "1");
    http_send_error(r, 503, "run_moved", NULL,
                    "response %s was taken over by another node; GET /v1/responses/%s answers "
                    "from where it runs now (stream=true follows it).",
                    run->id, run->id);
}

static void ended_cb(struct run *run, struct run_waiter *w)
{
    struct pending *p = H2O_STRUCT_FROM_MEMBER(struct pending, w, w);
    if (run->fenced && !run_finished(run))
        moved(p->r, run);
    else if (p->api->rs->draining && !run_finished(run))
        http_send_error(p->r, 503, "shutting_down", NULL,
                        "arun is shutting down; the response %s goes on at the next start.",
                        run->id);
    else
        send_object(p->r, run);
    pending_free(p);
}

/* The run's object for p: the snapshot made at its create when there is one. */
static void send_answer(struct pending *p)
{
    if (p->snapshot != NULL)
        http_send_bytes(p->r, 200, "application/json", p->snapshot, p->snapshot_len);
    else
        send_object(p->r, p->run);
}

static void committed_cb(struct eventlog_watch *w)
{
    struct pending *p = H2O_STRUCT_FROM_MEMBER(struct pending, watch, w);
    if (p->run->log.committed < p->until_seq && !p->run->fenced)
        return;
    eventlog_unwatch(w);
    if (p->run->log.committed < p->until_seq)
        moved(p->r, p->run);
    else
        send_answer(p);
    pending_free(p);
}

/* The client of a waiting plain POST left: its run is cancelled (its engine slot frees) unless
 * someone else still follows it. Takes p. */
static void client_left(struct pending *p)
{
    struct run *run = p->run;
    h2o_linklist_unlink(&p->w.link); /* not told of the end any more */
    bool alone = h2o_linklist_is_empty(&run->waiters) && h2o_linklist_is_empty(&run->log.subs);
    if (alone && !run_finished(run)) {
        log_info("runs", "the client of request %s left before response %s ended; cancelled",
                 p->r->id, run->id);
        scheduler_cancel(run);
        run_set_status(run, RUN_CANCELLED);
    } else {
        log_info("runs", "the client of request %s left; response %s goes on for its other clients",
                 p->r->id, run->id);
    }
    http_send_error(p->r, 499, "client_closed_request", NULL,
                    "The client closed the connection before the response ended.");
    pending_free(p);
}

static void peek_cb(uv_timer_t *t)
{
    struct runs_api *api = t->data;
    h2o_linklist_t *n = api->waiting.next;
    while (n != &api->waiting) {
        struct pending *p = H2O_STRUCT_FROM_MEMBER(struct pending, wlink, n);
        n = n->next; /* p may go */
        if (http_client_gone(p->r))
            client_left(p);
    }
    if (h2o_linklist_is_empty(&api->waiting))
        uv_timer_stop(t);
}

/* p (a plain POST) waits for its run's end, its client looked at now and then. */
static void wait_plain(struct pending *p)
{
    struct runs_api *api = p->api;
    p->w.cb = ended_cb;
    if (h2o_linklist_is_empty(&api->waiting))
        uv_timer_start(api->peek, peek_cb, GATEWAY_PEEK_MS, GATEWAY_PEEK_MS);
    h2o_linklist_insert(&api->waiting, &p->wlink);
    run_wait_end(p->run, &p->w);
}

/* Answers p (its request for a run in memory) as its mode asks: the stream from the start, the
 * object once the first events committed (background), or once the run ended. Takes p. */
static void answer_live(struct pending *p)
{
    struct run *run = p->run;
    if (p->stream) {
        stream_open(p->api->rs, p->r, run, run->tenant, run->id, -1, &p->api->subs);
        pending_free(p);
    } else if (p->background || run_finished(run)) {
        if (run->log.committed >= p->until_seq && !(run_finished(run) && run->row_ops > 0)) {
            send_object(p->r, run);
            pending_free(p);
        } else if (run_finished(run)) {
            run_wait_end(run, &p->w);
        } else {
            p->watch.cb = committed_cb;
            eventlog_watch(&run->log, &p->watch);
        }
    } else {
        wait_plain(p);
    }
}

/* ---- POST /v1/responses ---- */

static void attach_existing(struct pending *p, const char *id);

static void created(struct pending *p)
{
    struct run *run = p->run;
    /* The Response object is serialised once for the row, the first events and the answer
     * (each dumping its own was the bulk of a create's CPU). A foreground run's
     * response.created shows in_progress, as OpenAI's does: that text serves its
     * response.in_progress and the row's update too; its first row still says queued. */
    bool bg = run->rq.background;
    size_t len, qlen = 0;
    char *obj = run_object_text(run, bg ? NULL : run_status_name(RUN_IN_PROGRESS), &len);
    char *queued = bg ? obj : run_object_text(run, NULL, &qlen);
    if (bg)
        qlen = len;
    int rc = run_store_row_text(run, queued, qlen);
    if (queued != obj)
        free(queued);
    if (rc == 0)
        rc = run_emit_lifecycle_text(run, "response.created", obj, len);
    if (rc == 0 && bg)
        rc = run_emit_lifecycle_text(run, "response.queued", obj, len);
    if (rc != 0) {
        /* The store sheds load: the run goes (its call too), the client may retry. */
        free(obj);
        scheduler_cancel(run);
        run->deleted = true;
        reply_store_failed(p->r, rc);
        pending_free(p);
        return;
    }
    run_announce(run);
    p->until_seq = eventlog_last(&run->log);
    if (bg) {
        p->snapshot = obj; /* OpenAI answers a background create as queued */
        p->snapshot_len = len;
    } else {
        run_set_status_text(run, RUN_IN_PROGRESS, obj, len);
        free(obj);
    }
    answer_live(p);
}

static void history_cb(struct run *run, int status, const struct run_error *err, void *arg)
{
    struct pending *p = arg;
    struct run_error serr = {0};
    if (status != 0) {
        run->deleted = true;
        reply_run_error(p->r, err);
        pending_free(p);
        return;
    }
    if (scheduler_start(run, NULL, &serr) != 0) {
        run->deleted = true;
        if (serr.status == 429) {
            char ra[16];
            snprintf(ra, sizeof(ra), "%u", serr.retry_after_s > 0 ? serr.retry_after_s : 1);
            http_add_header(p->r, "retry-after", ra);
        }
        reply_run_error(p->r, &serr);
        pending_free(p);
        return;
    }
    created(p);
}

static void start(struct pending *p)
{
    int rc = scheduler_load_history(p->run, history_cb, p);
    if (rc != 0) {
        p->run->deleted = true;
        reply_store_failed(p->r, rc);
        pending_free(p);
    }
}

static void idem_claim_cb(int status, void *arg);
static void read_row(struct pending *p, const char *id, void (*then)(struct pending *, json_t *));

/* The first response of p's key answers: p's own run is not needed. */
static void drop_and_attach(struct pending *p, const char *id)
{
    p->run->deleted = true;
    run_release(p->run);
    p->run = NULL;
    attach_existing(p, id);
}

/* The row of the response a claim names. A claim whose response was never stored (arun was
 * killed between the claim's commit and the row's, or the first request was refused) would
 * answer every retry with that key 404 for 24 h: p takes the key over instead, replacing only
 * that claim (a retry that replaced it first makes the claim fresh: p then attaches to its run). */
static void claimed_row(struct pending *p, json_t *row)
{
    if (row != NULL || run_find(p->api->rs, p->run->tenant, p->id) != NULL) {
        drop_and_attach(p, p->id);
        return;
    }
    log_warn("runs",
             "Idempotency-Key '%s' named response %s, which was never stored; response %s "
             "takes the key",
             p->key, p->id, p->run->id);
    p->run->deleted = false;
    int rc = store_idem_claim(p->api->rs->o.store, p->run->tenant, p->key, p->fingerprint,
                              p->run->id, clock_wall_ms(), p->claim_ms + 1, idem_claim_cb, p);
    if (rc != 0) {
        p->run->deleted = true;
        reply_store_failed(p->r, rc);
        pending_free(p);
    }
}

static void idem_get_cb(int status, const char *value, size_t len, void *arg)
{
    struct pending *p = arg;
    json_t *claim = status == 0 ? json_loadb(value, len, 0, NULL) : NULL;
    const char *hash = json_string_value(json_object_get(claim, "body_hash"));
    const char *id = json_string_value(json_object_get(claim, "response_id"));
    if (hash == NULL || id == NULL) {
        /* The claim went between the two calls (swept): this request is a new one. */
        start(p);
    } else if (strcmp(hash, p->fingerprint) != 0) {
        p->run->deleted = true;
        http_send_error(p->r, 409, "idempotency_key_reused", NULL,
                        "This Idempotency-Key was used within 24 h for a request with another "
                        "body; use a new key for a new request.");
        pending_free(p);
    } else if (run_find(p->api->rs, p->run->tenant, id) != NULL ||
               !json_is_integer(json_object_get(claim, "created_ms"))) {
        drop_and_attach(p, id);
    } else {
        /* Not in memory: stored, or never (see claimed_row). Ours is found by nobody meanwhile
         * and goes if the read fails. */
        p->claim_ms = json_integer_value(json_object_get(claim, "created_ms"));
        p->run->deleted = true;
        read_row(p, id, claimed_row);
    }
    json_decref(claim);
}

static void idem_claim_cb(int status, void *arg)
{
    struct pending *p = arg;
    if (status == 0) {
        start(p);
        return;
    }
    int rc = status == -EEXIST
                 ? store_idem_get(p->api->rs->o.store, p->run->tenant, p->key, idem_get_cb, p)
                 : status;
    if (rc != 0) {
        p->run->deleted = true;
        reply_store_failed(p->r, rc);
        pending_free(p);
    }
}

/* An Idempotency-Key is 1 to IDEM_KEY_MAX printable ASCII characters: it is stored, compared
 * and quoted in messages, and a client's key is a UUID or the like, never binary. */
static bool idem_key_ok(const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)key[i] < 0x20 || (unsigned char)key[i] > 0x7e)
            return false;
    return n > 0 && n <= IDEM_KEY_MAX;
}

static void create_response(struct http_request *r, void *arg)
{
    struct runs_api *api = arg;
    json_t *body;
    if (http_read_json(r, &body) != 0)
        return;
    struct run_request rq;
    struct run_error err = {0};
    int rc = run_request_parse(body, &rq, &err);
    json_decref(body); /* the request holds its own reference (request.c increfs) */
    if (rc != 0) {
        reply_run_error(r, &err);
        return;
    }
    const char *key = http_header(r, "idempotency-key");
    if (key != NULL && !idem_key_ok(key)) {
        run_request_free(&rq);
        http_send_error(r, 400, "invalid_value", "Idempotency-Key",
                        "The Idempotency-Key header must have 1 to %d printable ASCII "
                        "characters.",
                        IDEM_KEY_MAX);
        return;
    }
    /* The tenant's background runs already queued (queued_runs). The gateway's queue_limit does
     * not hold background runs (their queue is the store): this does, per tenant. */
    struct limits_refusal why;
    if (rq.background && limits_check_queued(api->rs->o.limits, reply_tenant(r),
                                             runs_queued(api->rs, reply_tenant(r)), &why) != 0) {
        run_request_free(&rq);
        limits_reply(r, &why);
        return;
    }
    struct pending *p = pending_new(api, r);
    p->stream = rq.stream;
    p->background = rq.background;
    p->run = run_new(api->rs, reply_tenant(r), NULL, &rq, clock_wall_ms());
    run_hold(p->run);
    if (key == NULL || !p->run->rq.store) {
        start(p);
        return;
    }
    snprintf(p->key, sizeof(p->key), "%s", key);
    run_request_fingerprint(r->req->entity.base, r->req->entity.len, p->fingerprint);
    int64_t now = clock_wall_ms();
    rc = store_idem_claim(api->rs->o.store, p->run->tenant, p->key, p->fingerprint, p->run->id, now,
                          now - RUNS_IDEM_TTL_MS, idem_claim_cb, p);
    if (rc != 0) {
        p->run->deleted = true;
        reply_store_failed(r, rc);
        pending_free(p);
    }
}

/* ---- reading a response from the store ---- */

struct row_read {
    struct pending *p;
    void (*then)(struct pending *p, json_t *row); /* row NULL: not found */
    char id[STORE_ID_MAX + 1];
};

static void row_cb(int status, const char *value, size_t len, void *arg)
{
    struct row_read *rr = arg;
    json_t *row = status == 0 ? json_loadb(value, len, 0, NULL) : NULL;
    if (status != 0 && status != -ENOENT) {
        reply_store_failed(rr->p->r, status);
        pending_free(rr->p);
    } else {
        rr->then(rr->p, row);
    }
    json_decref(row);
    free(rr);
}

/* Reads id's row for p, then calls then (on the loop). */
static void read_row(struct pending *p, const char *id, void (*then)(struct pending *, json_t *))
{
    struct row_read *rr = xcalloc(1, sizeof(*rr));
    rr->p = p;
    rr->then = then;
    snprintf(rr->id, sizeof(rr->id), "%s", id);
    if (id != p->id) /* claimed_row reads p->id itself: an overlapping copy would empty it */
        snprintf(p->id, sizeof(p->id), "%s", id);
    int rc = store_response_get(p->api->rs->o.store, reply_tenant(p->r), id, row_cb, rr);
    if (rc != 0) {
        free(rr);
        reply_store_failed(p->r, rc);
        pending_free(p);
    }
}

static void send_row_object(struct http_request *r, json_t *row)
{
    http_send_json(r, 200, json_incref(json_object_get(row, "object")));
}

/* Whether a row not in this node's memory is of a run unfinished on another node sharing the
 * store (on SQLite every unfinished run is in memory once loaded: there is no other node). */
static bool row_elsewhere(const struct runs *rs, const json_t *row)
{
    enum run_status st = run_status_parse(json_string_value(json_object_get(row, "status")));
    return store_shared(rs->o.store) && (st == RUN_QUEUED || st == RUN_IN_PROGRESS);
}

static void stream_stored(struct pending *p, json_t *row)
{
    if (row == NULL) {
        http_send_error(p->r, 404, "not_found", NULL, "Response not found.");
    } else {
        json_int_t last = json_integer_value(json_object_get(row, "last_seq"));
        if (p->after > last)
            http_send_error(
                p->r, 400, "invalid_value", "starting_after",
                "Invalid 'starting_after': %lld is past the last event of this response (%lld).",
                (long long)p->after, (long long)last);
        else if (row_elsewhere(p->api->rs, row))
            stream_follow(p->api->rs, p->r, reply_tenant(p->r),
                          json_string_value(json_object_get(row, "id")), p->after, &p->api->subs);
        else
            stream_open(p->api->rs, p->r, NULL, reply_tenant(p->r),
                        json_string_value(json_object_get(row, "id")), p->after, &p->api->subs);
    }
    pending_free(p);
}

static void send_stored(struct pending *p, json_t *row)
{
    if (row == NULL)
        http_send_error(p->r, 404, "not_found", NULL, "Response not found.");
    else
        send_row_object(p->r, row);
    pending_free(p);
}

/* The first response of an Idempotency-Key, answered in the mode of this request. */
static void attach_existing(struct pending *p, const char *id)
{
    struct run *run = run_find(p->api->rs, reply_tenant(p->r), id);
    if (run != NULL) {
        p->run = run;
        run_hold(run);
        p->until_seq = 0;
        answer_live(p);
        return;
    }
    p->after = -1;
    read_row(p, id, p->stream ? stream_stored : send_stored);
}

/* ---- GET /v1/responses/ID ---- */

/* starting_after (or Last-Event-ID): -1 when absent; -2 after answering 400. */
static int64_t starting_after(struct http_request *r)
{
    const char *v = http_query(r, "starting_after");
    const char *param = "starting_after";
    if (v == NULL) {
        v = http_header(r, "last-event-id");
        param = "Last-Event-ID";
    }
    if (v == NULL)
        return -1;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end != '\0' || errno != 0 || n < 0) {
        http_send_error(r, 400, "invalid_value", param,
                        "Invalid '%s': expected a sequence number (an integer >= 0), got '%.40s'.",
                        param, v);
        return -2;
    }
    return n;
}

static bool query_true(struct http_request *r, const char *name)
{
    const char *v = http_query(r, name);
    return v != NULL && (strcmp(v, "true") == 0 || strcmp(v, "1") == 0);
}

static void get_response(struct http_request *r, void *arg)
{
    struct runs_api *api = arg;
    const char *id = route_id(r);
    if (id == NULL)
        return;
    struct run *run = run_find(api->rs, reply_tenant(r), id);
    if (!query_true(r, "stream")) {
        if (run != NULL) {
            /* A finished run answers once its last writes (its items) committed: a client that
             * polls to completed and continues at once must find this turn stored. */
            struct pending *p = pending_new(api, r);
            p->run = run;
            run_hold(run);
            p->background = true;
            p->until_seq = -1; /* nothing to wait for before the end */
            answer_live(p);
            return;
        }
        read_row(pending_new(api, r), id, send_stored);
        return;
    }
    int64_t after = starting_after(r);
    if (after == -2)
        return;
    if (run != NULL) {
        if (after > run->log.next_seq) {
            http_send_error(
                r, 400, "invalid_value", "starting_after",
                "Invalid 'starting_after': %lld is past the next event of this response (%lld).",
                (long long)after, (long long)run->log.next_seq);
            return;
        }
        stream_open(api->rs, r, run, run->tenant, run->id, after, &api->subs);
        return;
    }
    struct pending *p = pending_new(api, r);
    p->after = after;
    read_row(p, id, stream_stored);
}

/* ---- POST /v1/responses/ID/cancel ---- */

static void cancel_stored(struct pending *p, json_t *row)
{
    const char *owner = row != NULL ? forward_cancel_to(p->api->rs, p->r, row) : NULL;
    if (row == NULL)
        http_send_error(p->r, 404, "not_found", NULL, "Response not found.");
    else if (!json_is_true(json_object_get(row, "background")))
        http_send_error(p->r, 400, "invalid_request", NULL,
                        "Only responses created with background=true can be cancelled.");
    else if (owner != NULL)
        forward_cancel(p->api->rs, p->r, reply_tenant(p->r), p->id, owner);
    else
        send_row_object(p->r, row); /* finished: cancel is idempotent */
    pending_free(p);
}

static void cancel_response(struct http_request *r, void *arg)
{
    struct runs_api *api = arg;
    const char *id = route_id(r);
    if (id == NULL)
        return;
    struct run *run = run_find(api->rs, reply_tenant(r), id);
    if (run == NULL) {
        read_row(pending_new(api, r), id, cancel_stored);
        return;
    }
    if (!run->rq.background) {
        http_send_error(r, 400, "invalid_request", NULL,
                        "Only responses created with background=true can be cancelled.");
        return;
    }
    if (!run_finished(run)) {
        scheduler_cancel(run); /* the engine's slot is free now */
        log_info("runs", "response %s cancelled by request %s", run->id, r->id);
        run_set_status(run, RUN_CANCELLED);
    }
    struct pending *p = pending_new(api, r);
    p->run = run;
    run_hold(run);
    p->w.cb = ended_cb;
    run_wait_end(run, &p->w);
}

/* ---- DELETE /v1/responses/ID ---- */

struct del {
    struct http_request *r;
    char id[STORE_ID_MAX + 1];
};

static void deleted_cb(int status, void *arg)
{
    struct del *d = arg;
    if (status == -ENOENT)
        http_send_error(d->r, 404, "not_found", NULL, "Response with id '%s' not found.", d->id);
    else if (status != 0)
        reply_store_failed(d->r, status);
    else
        http_send_json(d->r, 200, object_deleted(d->id, "response.deleted"));
    free(d);
}

static void delete_response(struct http_request *r, void *arg)
{
    struct runs_api *api = arg;
    const char *id = route_id(r);
    if (id == NULL)
        return;
    struct run *run = run_find(api->rs, reply_tenant(r), id);
    if (run != NULL) {
        if (!run_finished(run)) {
            scheduler_cancel(run);
            run_set_status(run, RUN_CANCELLED);
        }
        run->deleted = true;
        run_maybe_free(run);
        if (!run->rq.store) {
            http_send_json(r, 200, object_deleted(id, "response.deleted"));
            return;
        }
    }
    struct del *d = xcalloc(1, sizeof(*d));
    d->r = r;
    snprintf(d->id, sizeof(d->id), "%s", id);
    int rc = store_response_delete(api->rs->o.store, reply_tenant(r), id, deleted_cb, d);
    if (rc != 0) {
        free(d);
        reply_store_failed(r, rc);
    }
}

/* ---- GET /v1/responses/ID/input_items and GET /v1/responses ---- */

struct list {
    struct http_request *r;
    struct runs_api *api;
    struct run_list_query q;
    bool rows; /* a listing of responses (rows with "object") rather than items */
    char id[STORE_ID_MAX + 1];
    char after[STORE_ID_MAX + 1];
};

static void page_cb(int status, const char *value, size_t len, void *arg)
{
    struct list *l = arg;
    json_t *page = status == 0 ? json_loadb(value, len, 0, NULL) : NULL;
    json_t *data = json_object_get(page, "data");
    if (status == -ENOENT) {
        http_send_error(l->r, 404, "not_found", "after", "No item with id '%s' in this list.",
                        l->after);
    } else if (!json_is_array(data)) {
        reply_store_failed(l->r, status ? status : -EIO);
    } else {
        json_t *out = json_array();
        size_t i;
        json_t *v;
        json_array_foreach(data, i, v)
        {
            if (!l->rows) {
                json_array_append_new(out, object_item(v));
                continue;
            }
            /* An admin's every-tenant page (tenant=*) mixes tenants: each row says whose it is
             * (an arun extension; the store's row has it). A tenant's own page does not. */
            json_t *obj = json_object_get(v, "object");
            json_t *t = json_object_get(v, "tenant");
            if (t != NULL)
                json_object_set(obj, "tenant", t);
            json_array_append_new(out, json_incref(obj));
        }
        http_send_json(l->r, 200,
                       object_list(out, json_is_true(json_object_get(page, "has_more"))));
    }
    json_decref(page);
    free(l);
}

static void list_items(struct list *l)
{
    int rc = store_items_list(l->api->rs->o.store, reply_tenant(l->r), l->id, STORE_ITEMS_INPUT,
                              l->q.after ? l->after : NULL, l->q.limit, l->q.desc, page_cb, l);
    if (rc != 0) {
        reply_store_failed(l->r, rc);
        free(l);
    }
}

static void items_row_cb(int status, const char *value, size_t len, void *arg)
{
    struct list *l = arg;
    if (status == -ENOENT) {
        not_found(l->r, l->id);
        free(l);
    } else if (status != 0) {
        reply_store_failed(l->r, status);
        free(l);
    } else {
        list_items(l);
    }
}

static struct list *list_new(struct http_request *r, struct runs_api *api)
{
    struct run_error err = {0};
    struct run_list_query q;
    if (run_list_query_parse(http_query(r, "after"), http_query(r, "limit"), http_query(r, "order"),
                             &q, &err) != 0) {
        reply_run_error(r, &err);
        return NULL;
    }
    struct list *l = xcalloc(1, sizeof(*l));
    l->r = r;
    l->api = api;
    l->q = q;
    if (q.after != NULL)
        snprintf(l->after, sizeof(l->after), "%s", q.after);
    return l;
}

static void input_items(struct http_request *r, void *arg)
{
    struct runs_api *api = arg;
    struct list *l = list_new(r, api);
    if (l == NULL)
        return;
    const char *id = route_id(r);
    if (id == NULL) {
        free(l);
        return;
    }
    snprintf(l->id, sizeof(l->id), "%s", id);
    struct run *run = run_find(api->rs, reply_tenant(r), l->id);
    if (run != NULL && run->rq.store) {
        list_items(l);
        return;
    }
    int rc = store_response_get(api->rs->o.store, reply_tenant(r), l->id, items_row_cb, l);
    if (rc != 0) {
        reply_store_failed(r, rc);
        free(l);
    }
}

static void list_responses(struct http_request *r, void *arg)
{
    struct runs_api *api = arg;
    const char *status = http_query(r, "status");
    if (status != NULL && run_status_parse(status) == RUN_NSTATUS) {
        http_send_error(r, 400, "invalid_value", "status",
                        "Invalid 'status': expected one of queued, in_progress, completed, failed, "
                        "cancelled, incomplete; got '%.40s'.",
                        status);
        return;
    }
    struct list *l = list_new(r, api);
    if (l == NULL)
        return;
    l->rows = true;
    /* tenant=* (an admin): every tenant's runs, for the console's every-tenant view; a member's
     * tenant=* was let through by the gate and reaches its own tenant only. */
    const char *t = http_query(r, "tenant");
    bool all = t != NULL && strcmp(t, "*") == 0 && r->who.admin;
    int rc = all ? store_responses_list_all(api->rs->o.store, status, l->q.after ? l->after : NULL,
                                            l->q.limit, page_cb, l)
                 : store_responses_list(api->rs->o.store, reply_tenant(r), status,
                                        l->q.after ? l->after : NULL, l->q.limit, page_cb, l);
    if (rc != 0) {
        reply_store_failed(r, rc);
        free(l);
    }
}

/* ---- lifecycle ---- */

/* The server drains: streams end (their clients resume after the restart) and runs stop
 * talking to their engines, keeping their stored status for the next start. */
static void gate_cb(struct http_request *r, void *arg)
{
    struct gate *g = arg;
    if (g->api->rs->loaded) {
        g->fn(r, g->api);
        return;
    }
    struct parked *p = xcalloc(1, sizeof(*p));
    p->r = r;
    p->g = g;
    h2o_linklist_insert(&g->api->parked, &p->link);
}

/* Runs the parked requests, or answers them 503 (shutting down) when answer is false. */
static void unpark(struct runs_api *api, bool answer)
{
    while (!h2o_linklist_is_empty(&api->parked)) {
        struct parked *p = H2O_STRUCT_FROM_MEMBER(struct parked, link, api->parked.next);
        h2o_linklist_unlink(&p->link);
        if (answer)
            p->g->fn(p->r, api);
        else
            http_send_error(p->r, 503, "shutting_down", NULL, "arun is shutting down.");
        free(p);
    }
}

static void loaded_cb(void *arg)
{
    unpark(arg, true);
}

static void route(struct runs_api *a, const char *method, const char *pattern, http_handler_fn fn)
{
    struct gate *g = xcalloc(1, sizeof(*g));
    g->api = a;
    g->fn = fn;
    g->next = a->gates;
    a->gates = g;
    http_route(a->srv, method, pattern, HTTP_MEMBER, gate_cb, g);
}

static void on_shutdown(void *arg)
{
    struct runs_api *api = arg;
    unpark(api, false);
    while (!h2o_linklist_is_empty(&api->subs))
        stream_end(H2O_STRUCT_FROM_MEMBER(struct stream_sub, all, api->subs.next));
    runs_shutdown(api->rs);
}

struct runs_api *runs_api_new(struct http_server *srv, struct runs *rs)
{
    struct runs_api *a = xcalloc(1, sizeof(*a));
    a->srv = srv;
    a->rs = rs;
    h2o_linklist_init_anchor(&a->subs);
    h2o_linklist_init_anchor(&a->waiting);
    a->peek = xcalloc(1, sizeof(*a->peek));
    uv_timer_init(rs->o.loop, a->peek);
    a->peek->data = a;
    h2o_linklist_init_anchor(&a->parked);
    rs->on_loaded = loaded_cb;
    rs->on_loaded_arg = a;
    route(a, "POST", "/v1/responses", create_response);
    route(a, "GET", "/v1/responses", list_responses);
    route(a, "GET", "/v1/responses/{id}", get_response);
    route(a, "DELETE", "/v1/responses/{id}", delete_response);
    route(a, "POST", "/v1/responses/{id}/cancel", cancel_response);
    route(a, "GET", "/v1/responses/{id}/input_items", input_items);
    http_server_on_shutdown(srv, on_shutdown, a);
    return a;
}

static void peek_closed_cb(uv_handle_t *h)
{
    free(h);
}

void runs_api_free(struct runs_api *a)
{
    if (a == NULL)
        return;
    while (!h2o_linklist_is_empty(&a->subs))
        stream_end(H2O_STRUCT_FROM_MEMBER(struct stream_sub, all, a->subs.next));
    unpark(a, false);
    a->rs->on_loaded = NULL;
    while (a->gates != NULL) {
        struct gate *g = a->gates;
        a->gates = g->next;
        free(g);
    }
    uv_close((uv_handle_t *)a->peek, peek_closed_cb);
    free(a);
}
