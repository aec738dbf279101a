/*
 * run.h: a run (one response being produced) and the registry of the runs in memory
 * (docs/internals/runs.md). The loop thread owns every run; nothing here locks.
 *
 * A run's status moves queued -> in_progress -> completed | failed | cancelled | incomplete
 * (queued -> a terminal status too: a queued run can be cancelled or fail). Only
 * run_set_status() writes run.status: it checks the transition against a table, appends the
 * lifecycle event, updates the store's row, publishes `run.status` on /v1/events and counts
 * the metrics.
 *
 * A run stays in memory while it is unfinished, while a subscriber or a waiting request holds it
 * and until its last store write has committed; then it is freed (later, from a timer, never
 * inside a callback that still uses it) and GET reads it from the store.
 */
#ifndef ARUN_RUNS_RUN_H
#define ARUN_RUNS_RUN_H

#include <h2o/linklist.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "core/config.h"
#include "core/events.h"
#include "core/ids.h"
#include "core/metrics.h"
#include "gateway/gateway.h"
#include "runs/eventlog.h"
#include "runs/request.h"
#include "store/store.h"

enum run_status {
    RUN_QUEUED,
    RUN_IN_PROGRESS,
    RUN_COMPLETED,
    RUN_FAILED,
    RUN_CANCELLED,
    RUN_INCOMPLETE,
    RUN_NSTATUS,
};

#define RUNS_BUCKETS 4096      /* the registry's hash; chains stay short up to ~100k live runs */
#define RUNS_TENANT_BUCKETS 64 /* tenants with background runs queued: configured ones + keys' */
/* An Idempotency-Key answers the same response within this (OpenAI: 24 h); the sweep removes
 * older claims. */
#define RUNS_IDEM_TTL_MS (24LL * 3600 * 1000)

struct limits;
struct cluster;
struct follow;

/* What the runs need from the rest of the daemon. Nothing is owned. */
struct runs_options {
    uv_loop_t *loop;
    const struct config *cfg;
    struct store *store;
    struct gateway *gateway;
    struct supervisor *sup;
    struct events *events;
    struct metrics *metrics;
    struct limits *limits;   /* limits per tenant (auth.mode: keys), or NULL: none */
    struct cluster *cluster; /* the other nodes (cancel of their runs is forwarded), or NULL */
};

/* How many background runs of one tenant are queued (in memory, status queued). */
struct runs_tenant_queued {
    struct runs_tenant_queued *next;
    char tenant[STORE_TENANT_MAX + 1];
    uint32_t n; /* > 0: the entry goes when it reaches 0 */
};

/* The runs in memory and what they use. */
struct runs {
    struct runs_options o;
    struct run *buckets[RUNS_BUCKETS]; /* by id hash, chained through run.hnext */
    size_t count;                      /* runs in memory */
    h2o_linklist_t unscheduled;        /* queued runs waiting for their history (recovery) */
    uv_timer_t gc;                     /* frees released runs outside their callbacks */
    h2o_linklist_t garbage;            /* runs to free, by glink */
    bool closing;
    bool scanning;                /* recovery's scan is out: the registry outlives its callback */
    bool loaded;                  /* recovery put every unfinished run in memory (or gave up) */
    void (*on_loaded)(void *arg); /* told once, when loaded turns true (runs/api.c) */
    void *on_loaded_arg;
    bool draining;     /* runs_shutdown ran */
    bool gone;         /* the gc timer is closing */
    uint64_t requests; /* for request ids of the engine calls */
    struct metrics_family *m_status, *m_events, *m_queue_wait, *m_recovered, *m_taken_over;
    struct follow *follow; /* the streams of runs that live on other nodes (follow.c), or NULL */
    /* Background runs queued, per tenant (runs_queued), by tenant hash, chained. */
    struct runs_tenant_queued *queued[RUNS_TENANT_BUCKETS];
};

/* An HTTP request waiting for a run's end (a non-streaming POST). */
struct run_waiter {
    h2o_linklist_t link;
    void (*cb)(struct run *r, struct run_waiter *w);
};

struct run {
    struct runs *rs;
    struct run *hnext;
    char id[IDS_MAX];
    char tenant[STORE_TENANT_MAX + 1];
    struct run_request rq;
    enum run_status status;           /* only run_set_status() writes it (recovery:
                                         run_restore_status) */
    int64_t created_ms, completed_ms; /* wall clock (ms): timings survive a restart */
    int64_t dispatch_ms, first_token_ms, ended_ms;
    int64_t ttft_us; /* the gateway's measure, monotonic */
    struct eventlog log;
    struct xlate *x;           /* the engine's stream -> events */
    struct gateway_call *call; /* while the engine is asked */
    json_t *history;           /* earlier items for the engine (previous_response_id,
                                  conversation), or NULL */
    json_t *error;             /* {code, message} once failed */
    const char *incomplete_reason;
    char engine[96];        /* who answered (provenance) */
    char engine_model[128]; /* the model id the engine reported */
    json_t *route;          /* the engines tried, in order (provenance) */
    bool continued;         /* continued after a restart */
    bool row_stored;        /* the row's first write was submitted */
    bool deleted;           /* DELETE ran: lookups do not find it */
    bool scheduled;         /* submitted to the gateway once */
    uint32_t store_ops;     /* store writes submitted and not yet called back */
    uint32_t holds;         /* subscribers and waiting requests */
    h2o_linklist_t waiters; /* struct run_waiter: told at the end */
    h2o_linklist_t qlink;   /* in runs.unscheduled */
    h2o_linklist_t glink;   /* in runs.garbage */
    bool garbage;
    bool final_row;    /* the terminal row write was submitted */
    uint32_t row_ops;  /* row writes not yet called back */
    int head_status;   /* the engine's answer status, from on_head */
    bool submitting;   /* inside gateway_submit: an on_end there is reported */
    int submit_status; /* that on_end's status, code and sentence */
    char submit_code[48];
    char submit_message[320];
    uint32_t submit_retry_after_s; /* that on_end's call's info.retry_after_s */
    bool counted_queued;           /* counted in runs_queued (run.c's sync_queued) */
    bool fenced; /* another node owns the run now (a write got -ESTALE): stopped here, only
                    freed; lookups do not find it (run_fence) */
};

/* The registry. Registers the metrics families. */
struct runs *runs_new(const struct runs_options *o);
/* Cancels every live run's engine call and frees every run (a run the store still owes a
 * callback when that callback comes: the store drains on close). Runs whose rows are unfinished
 * stay so in the store: the next start recovers them. NULL is a no-op. */
void runs_free(struct runs *rs);

/* The cluster, made after the runs (serve.c's start_cluster): from now on a cancel of a run that
 * another node owns is forwarded to it (forward.c). NULL: none (the default). */
void runs_set_cluster(struct runs *rs, struct cluster *cl);

/* Recovery has put every unfinished run in memory (or could not read them): requests about
 * runs may be answered from now on. Sets loaded and tells on_loaded, once. */
void runs_loaded(struct runs *rs);
/* Recovery's scan came back: a closing registry may be freed now (runs_free waits for it). */
void runs_scan_done(struct runs *rs);

/* The server drains: every run stops talking to its engine (its stored status stays, for the
 * next start to recover) and requests waiting for a run's end are answered. */
void runs_shutdown(struct runs *rs);

/* A new run (queued, in memory, not yet stored or scheduled) of tenant (required: every store
 * call and event of the run carries it, through recovery too) for rq, whose reference it takes.
 * id NULL makes a new resp_ id. */
struct run *run_new(struct runs *rs, const char *tenant, const char *id, struct run_request *rq,
                    int64_t created_ms);
/* The run with that id of that tenant (required: the request's, reply_tenant), NULL when it
 * is not in memory (or deleted) or is another tenant's: the caller then asks the store with the
 * same tenant, exactly as for an id nobody has, so another tenant's run is the same 404 by the
 * same path (contract 6). */
struct run *run_find(struct runs *rs, const char *tenant, const char *id);

/* How many background runs of tenant are queued now (in memory with status queued: from
 * run_new until they leave queued or are freed), for the tenant's queued_runs limit. */
uint32_t runs_queued(const struct runs *rs, const char *tenant);

/* The creation time (wall ms) of the oldest run in memory, INT64_MAX when there is none. */
int64_t runs_oldest_created_ms(const struct runs *rs);

/* A new run is stored: it entered queued, the status run_new gives (no transition, so not
 * through run_set_status): publishes run.status on /v1/events and counts it, as the setter
 * does for every later status. */
void run_announce(struct run *r);

/* The status a run had in the store, set by recovery without the setter's entry work (nothing
 * happened: the run is only back in memory). */
void run_restore_status(struct run *r, enum run_status s);

/* The one status setter (see above). Invalid transitions are programming errors (asserted);
 * setting the status a run already has is a no-op. */
void run_set_status(struct run *r, enum run_status to);
/* run_set_status(r, RUN_IN_PROGRESS) with the Response object's text as it stands after the
 * change already made by the caller (a foreground create has it for response.created), so it
 * is not built again. Only for queued -> in_progress, whose entry work changes nothing the
 * object shows but its status. */
void run_set_status_text(struct run *r, enum run_status to, const char *obj, size_t len);
const char *run_status_name(enum run_status s);
bool run_finished(const struct run *r);

/* The Response object as it stands (new reference). */
json_t *run_object(const struct run *r);
/* The same as compact JSON text (heap, NUL-terminated; *len its bytes): the bytes
 * json_dumps(run_object(r), JSON_COMPACT) makes, with status shown instead of the run's own
 * unless NULL. Made once and shared by the row, the lifecycle events and an answer, each of
 * which would otherwise serialise the object again (the bulk of a create's CPU). */
char *run_object_text(const struct run *r, const char *status, size_t *len);
/* Writes the run's row (first time: store_response_put with the request; then updates). The
 * store's callback ends the hold it takes. Returns 0 or -errno (store refused). */
int run_store_row(struct run *r) MUST_USE;
/* The same with the object's text already made (run_object_text; obj[0..len) is copied). */
int run_store_row_text(struct run *r, const char *obj, size_t len) MUST_USE;

/* Appends a lifecycle event ({type, response:{…}}). */
int run_emit_lifecycle(struct run *r, const char *type) MUST_USE;
/* The same with the object's text already made: spliced into the event's text, the bytes
 * eventlog_append would make of {type, response, sequence_number}. */
int run_emit_lifecycle_text(struct run *r, const char *type, const char *obj, size_t len) MUST_USE;

/* A store op of r called back: counts it down. Returns true when the registry is closing (r may
 * be freed: the caller returns at once). */
bool run_store_done(struct run *r) MUST_USE;

/* Holds keep a finished run in memory: a subscriber, a waiting request, a store op. Release may
 * schedule the free (from a timer: never inside the caller's callback). */
void run_hold(struct run *r);
void run_release(struct run *r);
/* Schedules the free if nothing holds the run any more and it is finished or abandoned. */
void run_maybe_free(struct run *r);

/* A write of r was answered -ESTALE: another node claimed the run (this node's lease on it ran
 * out) and goes on with it. Stops it here, once: its engine call is cancelled, nothing of it is
 * written any more, its streams end without a terminal event (their clients resume, from the
 * store, wherever they ask next), requests waiting for its end are answered, and it leaves
 * memory, so a request about it reads the store from now on. */
void run_fence(struct run *r);

/* Waits for the run's end (terminal status, its row committed): cb runs once then. */
void run_wait_end(struct run *r, struct run_waiter *w);

/* The status by name, RUN_NSTATUS for an unknown one. */
enum run_status run_status_parse(const char *s);

#endif
